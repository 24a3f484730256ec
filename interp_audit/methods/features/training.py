"""Train a small SAE with sae_lens's runner on the subject's own activations (CPU, seconds)."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from interp_audit.core.errors import AuditError
from interp_audit.engine.batched import (
    cached_run,
)
from interp_audit.model.subject import Subject, quiet_tl_warnings

__all__ = ["train_sae"]


def train_sae(
    subject: Subject,
    hook: str,
    tokens: Tensor | Sequence[Sequence[int]],
    *,
    d_sae: int = 256,
    l1_coefficient: float = 1.0,
    training_tokens: int = 200_000,
    lr: float = 3e-3,
    batch_tokens: int = 512,
    seed: int = 0,
):
    """Train a standard SAE on ``hook`` with sae_lens's runner, offline (override_model and
    override_dataset, no wandb), reproducible with ``seed``. Returns an inference SAE."""
    subject.check_hook(hook)
    rows = tokens.tolist() if isinstance(tokens, Tensor) else [list(r) for r in tokens]
    lengths = {len(r) for r in rows}
    exclude: list[int] | bool = False
    model: Any = subject.model
    if not subject.adapter.causal:  # sentences: pad, mask the padding, train on real tokens only
        context = max(lengths)
        pad = subject.pad_token_id
        if any(pad in r for r in rows):
            raise AuditError(f"token rows may not contain the pad token {pad}; pass unpadded rows")
        rows = [r + [pad] * (context - len(r)) for r in rows]
        exclude, model = [pad], _EncoderForSaeLens(subject)
    elif len(lengths) != 1:
        raise AuditError(
            f"train_sae needs token rows of one length (got lengths {sorted(lengths)}); pad "
            "or group them"
        )
    else:
        context = lengths.pop()
    with quiet_tl_warnings():
        import logging

        from datasets import Dataset
        from sae_lens import (
            SAE,
            LanguageModelSAERunnerConfig,
            LanguageModelSAETrainingRunner,
            LoggingConfig,
            StandardTrainingSAEConfig,
        )

        logging.getLogger("sae_lens").setLevel(logging.ERROR)
        cache, _ = cached_run(
            subject,
            torch.tensor(rows[:1], device=subject.device),
            torch.ones((1, context), dtype=torch.long, device=subject.device),
            {hook},
        )
        d_in = cache[hook].shape[-1]
        torch.manual_seed(seed)
        cfg = LanguageModelSAERunnerConfig(
            sae=StandardTrainingSAEConfig(d_in=d_in, d_sae=d_sae, l1_coefficient=l1_coefficient),
            model_name=subject.source,
            hook_name=hook,
            dataset_path="interp_audit-tokens",
            is_dataset_tokenized=True,
            streaming=False,
            context_size=context,
            training_tokens=training_tokens,
            train_batch_size_tokens=batch_tokens,
            store_batch_size_prompts=128,
            n_batches_in_buffer=max(8, 2 * batch_tokens // context),
            device=str(subject.device),
            seed=seed,
            lr=lr,
            logger=LoggingConfig(log_to_wandb=False),
            checkpoint_path=None,
            output_path=None,
            verbose=False,
            prepend_bos=False,
            n_batches_for_norm_estimate=10,
            exclude_special_tokens=exclude,
        )
        runner = LanguageModelSAETrainingRunner(
            cfg,
            override_dataset=Dataset.from_dict({"input_ids": rows}),
            override_model=model,
        )
        trained = runner.run()
        with tempfile.TemporaryDirectory() as tmp:  # training SAE -> inference SAE
            trained.save_model(tmp)
            sae = SAE.load_from_disk(tmp, device=str(subject.device))
    sae.eval()
    left = subject.live_hooks()
    if left:  # sae_lens's runner hooks the model while training; none may outlive it
        raise AuditError(f"sae_lens left hooks on the model after training: {left}")
    return sae


class _EncoderForSaeLens(torch.nn.Module):
    """What sae_lens's activation store calls, for a bidirectional encoder: a forward over
    padded rows with the padding masked out (TL's HookedEncoder takes neither ``stop_at_layer``
    nor ``prepend_bos``, and without a mask padding would leak into every real token)."""

    def __init__(self, subject: Subject):
        super().__init__()
        self.subject = subject
        self.model = subject.model
        self.cfg = subject.adapter.cfg
        self.tokenizer = subject.tokenizer
        self._memo: dict[tuple, dict[str, Tensor]] = {}

    @property
    def W_E(self) -> Tensor:  # noqa: N802 (sae_lens reads the input device from W_E)
        return self.subject.adapter.embedding_matrix()

    def run_with_cache(self, tokens: Tensor, *, names_filter=None, **_: Any):
        """Activations of each row, computed once per distinct row: a small sentence set is
        cycled many times during training and the frozen model's forward is deterministic."""
        names = sorted(names_filter or [])
        keys = [(tuple(r), tuple(names)) for r in tokens.tolist()]
        todo = sorted({i for i, k in enumerate(keys) if k not in self._memo})
        if todo:
            part = tokens[todo].to(self.subject.device)
            mask = (part != self.subject.pad_token_id).long()
            cache, _ = cached_run(self.subject, part, mask, set(names))
            for j, i in enumerate(todo):
                self._memo[keys[i]] = {n: cache[n][j] for n in names}
        return None, {n: torch.stack([self._memo[k][n] for k in keys]) for n in names}
