"""The Subject: one model under audit, with its tokenizer, hook names and provenance.

What differs between model families lives in the subject's :attr:`Subject.adapter` (chosen
once at load, see :mod:`interp_audit.model.adapters`); everything downstream speaks hook names and
:class:`Component` addresses.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Int
from torch import Tensor

from interp_audit.core.errors import ContrastError, ModelLoadError, SiteError, did_you_mean
from interp_audit.model.adapters import ModelAdapter, adapter_for
from interp_audit.model.adapters.quiet import quiet_tl_warnings
from interp_audit.model.components import Component, ModelShape

HookFn = Callable[..., Tensor | None]
Kind = Literal["causal", "encoder"]

#: The defaults of :func:`interp_audit.load_model`: no silent weight processing.
DEFAULT_WEIGHT_PROCESSING = {
    "fold_ln": False,
    "center_writing_weights": False,
    "center_unembed": False,
    "fold_value_biases": False,
}

_context_levels = itertools.count(10_000)


@dataclass
class Subject:
    """A model under audit.

    Attributes:
        model: the TransformerLens module (HookedTransformer, HookedEncoder,
            HookedSAETransformer or TransformerBridge).
        tokenizer: a Hugging Face tokenizer, or None for token-only work.
        source: where the model came from, as the user named it.
        weight_processing: the processing flags applied at load time (for reports).
        prepend_bos: whether :meth:`to_tokens` puts the BOS token first (causal LMs), under the
            TransformerLens convention.
        has_lm_head: False for sentence encoders without a masked-LM head.
        adapter: the model family's :class:`ModelAdapter` (hook roles, block calls,
            capabilities); derived from ``model`` when not given.
        origin: where the weights were read from (``{"format": "hf", "folder": ...,
            "model_type": ...}`` for Hugging Face folders), for exports; None when built here.
        repair: the record of a repair folded into these weights
            (:func:`interp_audit.engine.repairs.repaired`), None for a model as trained.
    """

    model: torch.nn.Module
    tokenizer: Any = None
    source: str = "<in-memory>"
    weight_processing: dict[str, bool] = field(
        default_factory=lambda: dict(DEFAULT_WEIGHT_PROCESSING)
    )
    prepend_bos: bool = True
    has_lm_head: bool = True
    adapter: ModelAdapter | None = None
    origin: dict[str, Any] | None = None
    repair: dict[str, Any] | None = None
    #: ``"tokenizer"``: prompts are tokenized exactly as the model's own tokenizer does
    #: (``tokenizer(text)``, its ``add_special_tokens`` behaviour: what the deployed model sees;
    #: the default for Hugging Face sources); ``"transformer_lens"``: the text's tokens with BOS
    #: first when ``prepend_bos`` (TransformerLens's convention; TL models and the zoo).
    tokenization: Literal["tokenizer", "transformer_lens"] = "transformer_lens"
    #: where the weights came from beyond ``source`` (e.g. a GGUF file's hash and quantization)
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.adapter is None:
            self.adapter = adapter_for(self.model)
        if self.tokenization not in ("tokenizer", "transformer_lens"):
            raise ContrastError(
                f"tokenization={self.tokenization!r}: use 'tokenizer' (the model's own "
                "tokenizer) or 'transformer_lens' (BOS first when prepend_bos)"
            )

    @property
    def kind(self) -> Kind:
        """``"causal"`` (next-token LM) or ``"encoder"`` (bidirectional, e.g. BERT)."""
        return self.adapter.kind

    # ---- facts about the model -------------------------------------------------------------
    @property
    def cfg(self):
        """The model's own config (TransformerLens's); package code asks the adapter."""
        return self.adapter.cfg

    @property
    def n_layers(self) -> int:
        return self.adapter.n_layers

    @property
    def n_heads(self) -> int:
        return self.adapter.n_heads

    @property
    def d_model(self) -> int:
        return self.adapter.d_model

    @property
    def d_vocab(self) -> int:
        return self.adapter.d_vocab

    @property
    def n_ctx(self) -> int | None:
        return self.adapter.n_ctx

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def model_class(self) -> str:
        return type(self.model).__name__

    @property
    def shape(self) -> ModelShape:
        return ModelShape(
            n_layers=self.n_layers,
            n_heads=self.n_heads,
            d_mlp=self.adapter.d_mlp,
            has_mlp=not self.adapter.attn_only,
            has_resid_mid=self.adapter.has_resid_mid,
            n_kv_heads=self.adapter.n_key_value_heads,
        )

    @property
    def hook_dict(self) -> dict[str, Any]:
        return self.adapter.hook_dict

    def has_hook(self, name: str) -> bool:
        return name in self.adapter.hook_dict

    def hook_name(self, component: Component) -> str:
        """The hook holding ``component``'s activation in this model (its adapter's name)."""
        return self.adapter.hook(component.kind, component.layer)

    def final_hook(self) -> str:
        """The hook holding the final residual stream (input of the final readout)."""
        return self.adapter.final_hook(self.n_layers)

    def scored_positions(self, contrast, side: str = "clean") -> Tensor:
        """``[pair]`` position each pair's metric reads on ``side`` (``"clean"`` or
        ``"counterfactual"``, whose lengths may differ): set answer positions, else default."""
        pos = contrast.answer_positions(side)
        if pos is not None:
            return pos
        return self.adapter.default_scored(contrast.lengths_of(side))

    def describe(self) -> dict[str, Any]:
        """Provenance for reports: what was loaded, how, and where it runs."""
        return {
            "source": self.source,
            "model_class": self.model_class,
            "kind": self.kind,
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "d_model": self.d_model,
            "d_vocab": self.d_vocab,
            "weight_processing": dict(self.weight_processing),
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
            **({"repair": _repair_summary(self.repair)} if self.repair else {}),
            "tokenization": self.tokenization_rule(),
            **({"provenance": dict(self.provenance)} if self.provenance else {}),
        }

    def tokenization_rule(self) -> str:
        """How :meth:`to_tokens` turns text into ids, in words (for reports)."""
        if self.tokenizer is None:
            return "no tokenizer (token ids given)"
        if self.tokenization == "tokenizer" or not self.adapter.causal:
            return "the model's own tokenizer (tokenizer(text), its special tokens)"
        return f"TransformerLens convention ({'BOS first' if self.prepend_bos else 'no BOS'})"

    def __repr__(self) -> str:
        return (
            f"Subject({self.source!r}, {self.model_class}, {self.kind}, layers={self.n_layers}, "
            f"heads={self.n_heads}, d_model={self.d_model}, device={self.device})"
        )

    # ---- tokens ----------------------------------------------------------------------------
    def _need_tokenizer(self, what: str) -> Any:
        if self.tokenizer is None:
            raise ContrastError(
                f"cannot tokenize {what!r}: this model has no tokenizer; "
                "build the contrast set with ContrastSet.from_tokens(...)"
            )
        return self.tokenizer

    def to_tokens(self, text: str) -> list[int]:
        """Token ids of one prompt, with the special tokens this model expects.

        Under ``tokenization="tokenizer"`` these are exactly the tokenizer's own ids
        (``tokenizer(text)["input_ids"]``); else the family's convention (BOS first for causal
        LMs when ``prepend_bos``).
        """
        tok = self._need_tokenizer(text)
        if self.tokenization == "tokenizer":
            return [int(i) for i in tok(text)["input_ids"]]
        return self.adapter.to_tokens(tok, text, self.prepend_bos)

    def answer_token(self, text: str) -> list[int]:
        """Token ids of an answer string (no special tokens): must be one id to be an answer."""
        tok = self._need_tokenizer(text)
        return list(tok(text, add_special_tokens=False)["input_ids"])

    def single_token(self, text: str, what: str = "token") -> int:
        """The one token id of ``text``; a ContrastError naming it otherwise."""
        toks = self.answer_token(text)
        if len(toks) != 1:
            raise ContrastError(
                f"{what} {text!r} is {len(toks)} tokens {self.token_str(toks)}, not one"
            )
        return toks[0]

    def token_str(self, ids: Sequence[int] | Tensor) -> list[str]:
        """Readable strings for token ids (for labels and HTML)."""
        ids = [int(i) for i in ids]
        if self.tokenizer is None:
            return [f"#{i}" for i in ids]
        return [self.tokenizer.decode([i]) for i in ids]

    @property
    def pad_token_id(self) -> int:
        tok = self.tokenizer
        if tok is not None:
            for name in ("pad_token_id", "eos_token_id", "bos_token_id"):
                val = getattr(tok, name, None)
                if val is not None:
                    return int(val)
        return 0

    # ---- hooks -----------------------------------------------------------------------------
    def check_hook(self, name: str) -> None:
        if not self.has_hook(name):
            raise SiteError(
                f"hook {name!r} does not exist on this {self.model_class} "
                f"(layers 0..{self.n_layers - 1}){did_you_mean(name, self.adapter.hook_dict)}"
            )

    @contextlib.contextmanager
    def hooks(
        self, fwd: Sequence[tuple[str, HookFn]] = (), bwd: Sequence[tuple[str, HookFn]] = ()
    ) -> Iterator[Subject]:
        """Attach ``fn(activation, *, hook)`` hooks for the body of a ``with`` block.

        Hooks are removed on exit, also when the body raises, and only the hooks this context
        added: hooks the user attached outside stay. Hook names are checked first, so a typo
        fails before anything is attached.
        """
        for name, _ in [*fwd, *bwd]:
            self.check_hook(name)
        level = next(_context_levels)
        touched = []
        try:
            for direction, pairs in (("fwd", fwd), ("bwd", bwd)):
                for name, fn in pairs:
                    touched.append(self.adapter.add_hook(name, fn, direction, level))
            yield self
        finally:
            for handle in touched:
                self.adapter.remove_hooks(handle, level)

    def live_hooks(self) -> list[str]:
        """Names of hook points that currently have any non-permanent hook attached."""
        return [n for n in self.adapter.hook_dict if self.adapter.has_hooks(n)]

    # ---- running ---------------------------------------------------------------------------
    def run(
        self,
        tokens: Int[Tensor, "batch pos"],
        attention_mask: Tensor | None = None,
        return_type: str = "logits",
    ) -> Tensor:
        """Plain forward: logits for causal LMs (and encoders with an MLM head)."""
        tokens = tokens.to(self.device)
        mask = None if attention_mask is None else attention_mask.to(self.device)
        with torch.no_grad(), quiet_tl_warnings():
            if return_type == "resid":
                return self.adapter.forward_resid(tokens, mask)
            return self.adapter.forward_logits(tokens, mask)

    def embed(self, texts: Sequence[str]) -> Tensor:
        """Mean-pooled last hidden state of each text (encoders): anchors for embedding metrics."""
        from interp_audit.model.metrics import mean_pool

        if self.adapter.causal:
            raise ContrastError(f"embed() needs an encoder; {self.source!r} is a causal LM")
        tok = self._need_tokenizer(texts[0] if texts else "")
        enc = tok(list(texts), padding=True, return_tensors="pt")
        hidden = self.run(enc["input_ids"], enc["attention_mask"], return_type="resid")
        return mean_pool(hidden, enc["attention_mask"].to(hidden.device))

    # ---- persistence -----------------------------------------------------------------------
    def clone(self, source: str | None = None) -> Subject:
        """A copy with its own weights (the tokenizer is shared): edit one, the other stays."""
        import copy
        import dataclasses

        tok = getattr(self.model, "tokenizer", None)
        try:
            if tok is not None:
                self.model.tokenizer = None  # shared, not copied
            model = copy.deepcopy(self.model)
        finally:
            if tok is not None:
                self.model.tokenizer = tok
        if tok is not None:
            model.tokenizer = tok
        return dataclasses.replace(
            self,
            model=model,
            adapter=None,
            source=self.source if source is None else source,
            weight_processing=dict(self.weight_processing),
            origin=None if self.origin is None else dict(self.origin),
            repair=None if self.repair is None else dict(self.repair),
        )

    def save(
        self, directory: str | Path, format: Literal["interp_audit", "hf"] = "interp_audit"
    ) -> Path:
        """Write the model so that :func:`interp_audit.load_model` reads it back.

        ``format="interp_audit"``: ``config.json`` + ``model.safetensors`` (+ ``tokenizer/``),
        with the repair record if this model carries one. ``format="hf"`` (models read from a
        Hugging Face folder): a folder plain ``transformers.AutoModelForCausalLM`` loads, with
        the repair record in ``repair.json`` (see :mod:`interp_audit.model.adapters.hf_export`).
        """
        if format == "hf":
            from interp_audit.model.adapters.hf_export import export_hf

            return export_hf(self, Path(directory))
        if format != "interp_audit":
            raise ModelLoadError(f"save format must be 'interp_audit' or 'hf'; got {format!r}")
        from safetensors.torch import save

        from interp_audit.core.files import write_atomic

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.model.state_dict().items()}
        write_atomic(out / "model.safetensors", save(state))  # whole or absent
        meta = {
            "interp_audit_format": 1,
            "model_class": self.model_class,
            "kind": self.kind,
            "tl_config": self.adapter.config_json(),
            "weight_processing": self.weight_processing,
            "prepend_bos": self.prepend_bos,
            "tokenization": self.tokenization,
            "has_lm_head": self.has_lm_head,
            "source": self.source,
            **({"origin": self.origin} if self.origin else {}),
            **({"repair": self.repair} if self.repair else {}),
            **({"provenance": self.provenance} if self.provenance else {}),
        }
        write_atomic(out / "config.json", json.dumps(meta, indent=2))
        if self.tokenizer is not None and hasattr(self.tokenizer, "save_pretrained"):
            self.tokenizer.save_pretrained(str(out / "tokenizer"))
        return out


def _repair_summary(record: dict[str, Any]) -> dict[str, Any]:
    """The repair in a model description: what was folded, from which weights."""
    rep = record.get("repair", {})
    return {
        "kind": rep.get("kind"),
        "components": rep.get("components"),
        "source": record.get("source", {}).get("model"),
        "source_sha256": record.get("source", {}).get("state_sha256"),
        "weights_sha256": record.get("weights_sha256"),
    }
