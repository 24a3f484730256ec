"""Sparse-autoencoder features with sae_lens: load or train, extract, patch, attribute, ablate.

An SAE at hook h splits the activation into features and an error term,
``x = decode(encode(x)) + err`` exactly. Every operation here keeps ``err``, so the model's
forward is unchanged until a feature is touched (Marks et al. 2024's sparse feature circuits:
the error is a node of its own, and features + error account for the whole activation).
Feature labels are ``L{layer}F{index}``, the error ``L{layer}.sae_err`` (one SAE per layer).
"""

from __future__ import annotations

import contextlib
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from .components import layer_of_hook
from .contrast import ContrastSet
from .effects import Effects
from .engine import Patch, RunContext, cached_run, default_max_rows, run_variants
from .errors import AuditError, ModelLoadError, SiteError
from .metrics import Metric, get_metric
from .subject import Subject, quiet_tl_warnings

__all__ = [
    "ablate_features",
    "attribute_features",
    "feature_diff",
    "load_sae",
    "patch_features",
    "reconstruction",
    "splice",
    "top_activating",
    "train_sae",
]


def hook_of(sae) -> str:
    meta = getattr(sae.cfg, "metadata", None)
    hook = getattr(meta, "hook_name", None) or getattr(sae.cfg, "hook_name", None)
    if not hook:
        raise SiteError(
            "this SAE does not say which hook it reads (cfg.metadata.hook_name is empty)"
        )
    return hook


def check_sae(subject: Subject, sae) -> str:
    """The SAE's hook exists on the model and its d_in matches that activation; returns the hook."""
    hook = hook_of(sae)
    subject.check_hook(hook)
    tokens = torch.zeros((1, 2), dtype=torch.long, device=subject.device)
    cache, _ = cached_run(subject, tokens, torch.ones_like(tokens), {hook})
    width = (
        cache[hook].shape[-1]
        if cache[hook].ndim == 3
        else int(torch.tensor(cache[hook].shape[2:]).prod())
    )
    if int(sae.cfg.d_in) != width:
        raise SiteError(
            f"SAE for {hook!r} has d_in={sae.cfg.d_in}, but that activation has width {width} "
            f"on this {subject.model_class}"
        )
    return hook


def load_sae(
    source: Any,
    subject: Subject | None = None,
    *,
    sae_id: str | None = None,
    device: str | None = None,
):
    """An SAE from an object, a local folder (sae_lens format), ``"zoo:NAME"``, or a pretrained
    release name with ``sae_id`` (downloads from the hub). Checked against ``subject`` if given."""
    with quiet_tl_warnings(), warnings.catch_warnings():
        # check_processing (below) compares the SAE's processing with the subject's instead
        warnings.filterwarnings("ignore", message="(?s).*model_from_pretrained_kwargs")
        from sae_lens import SAE

        dev = device or (str(subject.device) if subject is not None else "cpu")
        if hasattr(source, "encode") and hasattr(source, "decode"):
            sae = source
        elif isinstance(source, str) and source.startswith("zoo:"):
            folder = Path(__file__).resolve().parent / "zoo" / "weights" / "saes" / source[4:]
            if not folder.exists():
                avail = (
                    sorted(p.name for p in folder.parent.iterdir())
                    if folder.parent.exists()
                    else []
                )
                raise ModelLoadError(f"no zoo SAE {source[4:]!r}; available: {', '.join(avail)}")
            sae = SAE.load_from_disk(str(folder), device=dev)
        elif Path(str(source)).is_dir():
            sae = SAE.load_from_disk(str(source), device=dev)
        elif sae_id is not None:
            try:
                sae = SAE.from_pretrained(str(source), sae_id, device=dev)
                _record_release_processing(sae, str(source), sae_id)
            except Exception as err:
                raise ModelLoadError(
                    f"could not load SAE {source!r}/{sae_id!r} from the hub: "
                    f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                ) from err
        else:
            raise ModelLoadError(
                f"cannot load an SAE from {source!r}: give a folder, 'zoo:NAME', or a release "
                "name with sae_id="
            )
    sae.eval()
    if subject is not None:
        check_sae(subject, sae)
        check_processing(subject, sae)
    return sae


def _record_release_processing(sae, release: str, sae_id: str) -> None:
    """sae_lens's release directory says how the release's model was loaded (e.g. centred
    writing weights) but does not put it on the loaded SAE: record it there for the check."""
    from sae_lens.loading.pretrained_saes_directory import get_config_overrides

    kwargs = get_config_overrides(release, sae_id).get("model_from_pretrained_kwargs")
    meta = getattr(sae.cfg, "metadata", None)
    if kwargs and meta is not None and not getattr(meta, "model_from_pretrained_kwargs", None):
        meta.model_from_pretrained_kwargs = dict(kwargs)


# weight processing that changes the activation an SAE reads, by the hooks it changes
_ACTIVATION_FLAGS = {
    "center_writing_weights": ("resid", "hook_out", "attn_out", "mlp_out", "hook_result"),
    "fold_value_biases": ("hook_z", "hook_v", "hook_result"),
    "fold_ln": ("normalized", "ln"),
}


def check_processing(subject: Subject, sae) -> None:
    """An SAE reads the activations of the model it was trained on: hub releases record the
    TransformerLens weight processing that model had (``gpt2-small-res-jb``: centred writing
    weights). Processing that changes this SAE's hook must match the subject's, or every
    feature reads a shifted activation."""
    meta = getattr(sae.cfg, "metadata", None)
    wanted = dict(getattr(meta, "model_from_pretrained_kwargs", None) or {})
    hook = hook_of(sae)
    for flag, hooks in _ACTIVATION_FLAGS.items():
        if flag not in wanted or not any(h in hook for h in hooks):
            continue
        have = bool(subject.weight_processing.get(flag, False))
        if bool(wanted[flag]) != have:
            raise ModelLoadError(
                f"this SAE was trained on {hook!r} of a model loaded with {flag}="
                f"{bool(wanted[flag])}, but the subject has {flag}={have}: the activations "
                f"differ; load the model with ia.load_model(..., {flag}={bool(wanted[flag])})"
            )


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
    if subject.kind == "encoder":  # sentences: pad, mask the padding, train on real tokens only
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
        self.cfg = subject.model.cfg
        self.tokenizer = subject.tokenizer
        self._memo: dict[tuple, dict[str, Tensor]] = {}

    @property
    def W_E(self) -> Tensor:  # noqa: N802 (sae_lens reads the input device from W_E)
        return self.model.W_E

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


def _labels(sae) -> tuple[int, list[str]]:
    layer = layer_of_hook(hook_of(sae))
    layer = 0 if layer is None else layer
    return layer, [f"L{layer}F{i}" for i in range(int(sae.cfg.d_sae))] + [f"L{layer}.sae_err"]


@torch.no_grad()
def _split(sae, x: Tensor) -> tuple[Tensor, Tensor]:
    """Features and error of activations ``x``: x == decode(f) + err."""
    f = sae.encode(x)
    return f, x - sae.decode(f)


def feature_activations(
    subject: Subject, sae, tokens: Tensor, mask: Tensor | None = None
) -> Tensor:
    hook = hook_of(sae)
    mask = torch.ones_like(tokens) if mask is None else mask
    cache, _ = cached_run(subject, tokens.to(subject.device), mask.to(subject.device), {hook})
    return _split(sae, cache[hook])[0]


def _texts_to_batch(subject: Subject, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
    """Right-padded token ids and the mask of real tokens for a list of texts."""
    rows = [subject.to_tokens(t) for t in texts]
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), subject.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(tokens)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return tokens, mask


@dataclass(frozen=True)
class Reconstruction:
    """How well an SAE reconstructs its activation on some text, over real tokens.

    ``explained_variance``: 1 - sum|x - x_hat|^2 / sum|x - mean(x)|^2 (sae_lens's definition,
    pooled over tokens); ``l0``: mean number of active features per token; ``dead``: features
    that never fire on this text; ``cosine``: mean cosine of x_hat with x."""

    tokens: int
    explained_variance: float
    l0: float
    dead: int
    d_sae: int
    cosine: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


@torch.no_grad()
def reconstruction(subject: Subject, sae, texts: Sequence[str]) -> Reconstruction:
    """Explained variance, L0 and dead features of ``sae`` on ``texts`` (padding excluded)."""
    hook = check_sae(subject, sae)
    tokens, mask = _texts_to_batch(subject, texts)
    if subject.kind == "causal":
        mask = torch.ones_like(mask) if tokens.shape[0] == 1 else mask
    cache, _ = cached_run(subject, tokens.to(subject.device), mask.to(subject.device), {hook})
    x = cache[hook][mask.bool().to(subject.device)]  # [tokens, d]
    f = sae.encode(x)
    x_hat = sae.decode(f)
    resid = ((x - x_hat) ** 2).sum()
    total = ((x - x.mean(0)) ** 2).sum()
    return Reconstruction(
        tokens=int(x.shape[0]),
        explained_variance=float(1 - resid / total),
        l0=float((f > 0).sum(-1).float().mean()),
        dead=int(((f > 0).sum(0) == 0).sum()),
        d_sae=int(sae.cfg.d_sae),
        cosine=float(torch.nn.functional.cosine_similarity(x, x_hat, dim=-1).mean()),
    )


@contextlib.contextmanager
def splice(subject: Subject, sae, *, keep_error: bool = False) -> Iterator[Subject]:
    """Run the model with the SAE's reconstruction in place of its activation. Without the error
    term this measures what the SAE misses (the gap to the real forward); with it, the forward
    is unchanged (a test of the splice itself)."""
    hook = check_sae(subject, sae)

    def fn(x, *, hook):
        with torch.no_grad():
            x_hat = sae.decode(sae.encode(x))
            return x_hat + (x - x_hat) if keep_error else x_hat

    with subject.hooks([(hook, fn)]):
        yield subject


def feature_diff(subject: Subject, sae, contrast: ContrastSet) -> Effects:
    """Mean feature activation, clean minus counterfactual, over pairs and real positions."""
    check_sae(subject, sae)
    layer, labels = _labels(sae)
    mask = contrast.attention_mask().to(subject.device)
    fc = feature_activations(subject, sae, contrast.clean, mask)
    ff = feature_activations(subject, sae, contrast.counterfactual, mask)
    m = mask[..., None].to(fc.dtype)
    per_pair = ((fc - ff) * m).sum(1) / m.sum(1)  # [pair, feature]
    values = per_pair.mean(0).cpu()
    return Effects(
        values=values,
        dims=("feature",),
        axes={"feature": labels[:-1]},
        components=labels[:-1],
        metric="activation",
        method="feature_diff",
        normalized=False,
        per_example=per_pair.T.cpu(),
    )


def top_activating(
    subject: Subject, sae, feature: int, texts: Sequence[str], k: int = 5
) -> list[tuple[str, str, float]]:
    """The ``k`` texts (and token) where ``feature`` fires most: (text, token, activation)."""
    rows = [subject.to_tokens(t) for t in texts]
    out = []
    for text, row in zip(texts, rows, strict=True):
        acts = feature_activations(subject, sae, torch.tensor([row]))[0, :, feature]
        pos = int(acts.argmax())
        out.append((text, subject.token_str([row[pos]])[0], float(acts[pos])))
    return sorted(out, key=lambda r: -r[2])[:k]


def _finish(
    values_pe: Tensor,
    base_pe: Tensor,
    source_pe: Tensor,
    labels: list[str],
    metric: Metric,
    method: str,
    normalize: bool,
    direction: str,
) -> Effects:
    from .locate.patching import normalise

    mean = values_pe.mean(1)
    base, source = float(base_pe.mean()), float(source_pe.mean())
    values = normalise(mean, base, source, "feature effects") if normalize else mean
    clean, cf = (source, base) if direction == "denoise" else (base, source)
    return Effects(
        values=values,
        dims=("feature",),
        axes={"feature": labels},
        components=labels,
        metric=metric.name,
        method=method,
        normalized=normalize,
        per_example=values_pe,
        baseline={"clean": clean, "counterfactual": cf},
        meta={"direction": direction, "error_node": labels[-1]},
        base_values=base_pe.float(),
        source_values=source_pe.float(),
    )


def _affine(sae) -> bool:
    return getattr(sae.cfg, "normalize_activations", "none") == "none"


@torch.no_grad()
def _pooled_feature_metrics(ctx: RunContext, x_base, delta, sae, todo: list[int]) -> Tensor:
    """Encoders, SAE on the final hidden state: the metric with each feature in ``todo``
    patched, from pooled(x_base) + pool(delta_i) W_dec[i]. ``[len(todo), batch]``."""
    from .metrics import mean_pool

    pooled = mean_pool(x_base, ctx.mask)  # [b, d]
    coef = mean_pool(delta[..., todo].to(x_base.dtype), ctx.mask)  # [b, k]
    out = []
    for start in range(0, len(todo), 128):
        k = todo[start : start + 128]
        c = coef[:, start : start + len(k)]
        emb = pooled[None] + torch.einsum("bk,kd->kbd", c, sae.W_dec[k].to(pooled.dtype))
        mctx = ctx.metric_ctx.repeat(len(k))
        out.append(ctx.metric(emb.flatten(0, 1), mctx).view(len(k), -1))
    return torch.cat(out)


def _patcher(sae, x_base, f_base, e_base, f_src, e_src, err_index: int):
    """``patched(i)``: the activation with feature ``i`` taken from the source run, the error
    kept (or, for ``err_index``, the source's error). An SAE whose decoder is affine (no output
    normalisation) changes by (f_src - f_base)_i W_dec[i]: one rank-one update, not a decode."""
    affine = _affine(sae)
    shape = x_base.shape[2:]

    @torch.no_grad()
    def patched(i: int) -> Tensor:
        if i == err_index:
            return x_base - e_base + e_src
        if affine:
            delta = (f_src[..., i] - f_base[..., i]).to(x_base.dtype)
            return x_base + delta[..., None] * sae.W_dec[i].view(*([1] * 2), *shape)
        f = f_base.clone()
        f[..., i] = f_src[..., i]
        return sae.decode(f) + e_base

    return patched


@torch.no_grad()
def _metric_of_final(ctx: RunContext, final: Tensor, n: int) -> Tensor:
    """The metric of ``n`` variants (stacked variant-major on the batch axis) whose final
    residual stream is ``final``: an SAE on that hook needs no forward at all. ``[n, batch]``."""
    from .readout import readout

    mctx = ctx.metric_ctx.repeat(n)
    read = readout(
        subject=ctx.subject,
        metric=ctx.metric,
        final=final,
        logits=None,
        scored=ctx.scored.repeat(n),
        answers=mctx.answers,
        mask=ctx.mask.repeat(n, 1),
    )
    return ctx.metric(read, mctx).view(n, -1)


def patch_features(
    subject: Subject,
    contrast: ContrastSet,
    metric: Metric | str,
    sae,
    *,
    direction: Literal["denoise", "noise"] = "denoise",
    normalize: bool = True,
    batch_size: int | None = None,
) -> Effects:
    """Exact patching of every SAE feature (and the error node), one at a time, error kept."""
    from .backend import final_hook

    metric = get_metric(metric)
    hook = check_sae(subject, sae)
    final = final_hook(subject)
    _, labels = _labels(sae)
    rows = batch_size or default_max_rows(subject, contrast.seq_len)
    per_example, bases, sources, joint = [], [], [], []
    for part in contrast.batches(max(1, rows)):
        ctx = RunContext.build(
            subject,
            part,
            metric,
            direction=direction,
            source_hooks=[hook],
            need_kv=True,
        )
        x_base, x_src = ctx.base_sites[hook], ctx.source[hook]
        f_base, e_base = _split(sae, x_base)
        f_src, e_src = _split(sae, x_src)
        vals = ctx.base_values.new_empty((len(labels), ctx.batch)).double()
        todo = []
        for i in range(len(labels) - 1):
            if torch.equal(f_base[..., i], f_src[..., i]):
                vals[i] = ctx.base_values.double()  # the feature does not change: nothing to patch
            else:
                todo.append(i)

        patched = _patcher(sae, x_base, f_base, e_base, f_src, e_src, len(labels) - 1)
        together = x_src - e_src + e_base  # every feature from the source, the base's error
        if hook == final:
            joint.append(_metric_of_final(ctx, together, 1)[0].cpu())
        else:
            joint.append(
                run_variants(ctx, [(Patch(hook, (), value=together),)], progress=False)[0].cpu()
            )
        if hook == final and metric.readout == "embedding" and _affine(sae) and todo:
            # mean pooling is linear too: every feature's pooled embedding in one product
            vals[todo] = _pooled_feature_metrics(ctx, x_base, f_src - f_base, sae, todo).double()
            todo = []
        todo.append(len(labels) - 1)
        step = 16 if hook == final else 64  # built one chunk at a time: d_sae copies are large
        for start in range(0, len(todo), step):
            chunk = todo[start : start + step]
            if hook == final:  # the patched activation is what the metric reads: no forward
                values = torch.cat([patched(i) for i in chunk])
                vals[chunk] = _metric_of_final(ctx, values, len(chunk)).double()
            else:
                variants = [(Patch(hook, (), value=patched(i)),) for i in chunk]
                vals[chunk] = run_variants(ctx, variants, max_rows=rows, progress=False).double()
        per_example.append(vals.float().cpu())
        bases.append(ctx.base_values.cpu())
        sources.append(ctx.source_values.cpu())
    eff = _finish(
        torch.cat(per_example, 1),
        torch.cat(bases),
        torch.cat(sources),
        labels,
        metric,
        "feature_patch",
        normalize,
        direction,
    )
    # the two-way split the error node belongs to: all features at once vs the error alone
    from .locate.patching import normalise

    both = float(torch.cat(joint).double().mean())
    base, src = float(eff.base_values.mean()), float(eff.source_values.mean())
    eff.meta["all_features"] = normalise(both, base, src, "feature effects") if normalize else both
    return eff


def attribute_features(
    subject: Subject,
    contrast: ContrastSet,
    metric: Metric | str,
    sae,
    *,
    direction: Literal["denoise", "noise"] = "denoise",
    normalize: bool = True,
) -> Effects:
    """AtP over features: (f_src - f_base)_i * (W_dec[i] . dM/dx), plus (e_src - e_base) . dM/dx.
    Features + error add up to the AtP estimate of patching the whole activation."""
    from .locate.gradients import gradient_run

    metric = get_metric(metric)
    hook = check_sae(subject, sae)
    _, labels = _labels(sae)
    per_example, bases, sources = [], [], []
    for part in contrast.batches(default_max_rows(subject, contrast.seq_len)):
        ctx = RunContext.build(
            subject, part, metric, direction=direction, source_hooks=[hook], base_run=False
        )
        acts, grads, base_values = gradient_run(ctx, ctx.base_tokens, [hook])
        g, x_base = grads[0][hook], acts[hook]
        f_base, e_base = _split(sae, x_base)
        f_src, e_src = _split(sae, ctx.source[hook])
        with torch.no_grad():
            per_feature = torch.einsum("bpf,fd,bpd->bf", f_src - f_base, sae.W_dec, g)
            err = ((e_src - e_base) * g).sum((1, 2))
        est = torch.cat([per_feature, err[:, None]], dim=1).T  # [label, pair]
        per_example.append((base_values[None] + est).float().cpu())
        bases.append(base_values.cpu())
        sources.append(ctx.source_values.cpu())
    return _finish(
        torch.cat(per_example, 1),
        torch.cat(bases),
        torch.cat(sources),
        labels,
        metric,
        "feature_atp",
        normalize,
        direction,
    )


def _feature_indices(sae, features: Sequence[int | str]) -> list[int]:
    out = []
    for f in features:
        if isinstance(f, str):
            f = int(f.rsplit("F", 1)[-1]) if "F" in f else int(f)
        if not 0 <= f < int(sae.cfg.d_sae):
            raise SiteError(
                f"feature {f} does not exist; this SAE has features 0..{int(sae.cfg.d_sae) - 1}"
            )
        out.append(f)
    return out


@contextlib.contextmanager
def ablate_features(
    subject: Subject,
    sae,
    features: Sequence[int | str],
    kind: Literal["zero", "mean", "clamp"] = "zero",
    *,
    value: float | None = None,
    reference: ContrastSet | Tensor | None = None,
) -> Iterator[Subject]:
    """Zero-ablate, mean-ablate (mean over ``reference``) or clamp SAE features, the error kept:
    the activation becomes decode(f') + err, so untouched features leave the model unchanged."""
    hook = check_sae(subject, sae)
    idx = _feature_indices(sae, features)
    if kind == "clamp" and value is None:
        raise AuditError("clamping features needs value=")
    fill = None
    if kind == "mean":
        if reference is None:
            raise AuditError("mean-ablating features needs reference=")
        from .interventions import reference_activations

        acts, mask = reference_activations(subject, reference, [hook])
        f_ref = _split(sae, acts[hook])[0]
        m = mask[..., None].to(f_ref.dtype)
        fill = ((f_ref * m).sum((0, 1)) / m.sum((0, 1)))[idx]
    if kind not in ("zero", "mean", "clamp"):
        raise AuditError(f"feature ablation kind must be 'zero', 'mean' or 'clamp'; got {kind!r}")

    def fn(x, *, hook):
        with torch.no_grad():
            f = sae.encode(x)
            err = x - sae.decode(f)
            if kind == "zero":
                f[..., idx] = 0.0
            elif kind == "clamp":
                f[..., idx] = float(value)
            else:
                f[..., idx] = fill.to(f.dtype)
            return sae.decode(f) + err

    with subject.hooks([(hook, fn)]):
        yield subject
