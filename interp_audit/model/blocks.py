"""Compatibility shims: the per-family code moved to :mod:`interp_audit.model.adapters`.

Each function delegates to ``subject.adapter``; new code calls the adapter directly.
"""

from __future__ import annotations

from jaxtyping import Float, Int
from torch import Tensor

from interp_audit.model.metrics import Readout
from interp_audit.model.subject import Subject


def fast_path(subject: Subject) -> bool:
    return subject.adapter.fast_path


def mid_block_entry(subject: Subject) -> bool:
    return subject.adapter.mid_block_entry


def mid_hook(subject: Subject, layer: int) -> str:
    return subject.adapter.mid_hook(layer)


def head_output(
    subject: Subject, layer: int, z: Float[Tensor, "rows pos head d_head"]
) -> Float[Tensor, "rows pos d_model"]:
    """What heads write into the residual stream for head vectors ``z`` (summed over heads)."""
    return subject.adapter.head_output(layer, z)


def run_block_after_attention(subject: Subject, layer: int, resid_mid: Tensor) -> Tensor:
    return subject.adapter.run_block_after_attention(layer, resid_mid)


def run_block(subject: Subject, layer: int, resid: Tensor, past_kv=None, encoder_mask=None):
    return subject.adapter.run_block(layer, resid, past_kv=past_kv, encoder_mask=encoder_mask)


def kv_hooks(layer: int) -> tuple[str, str]:
    return f"blocks.{layer}.attn.hook_k", f"blocks.{layer}.attn.hook_v"


def final_readout(
    subject: Subject,
    readout: Readout,
    resid_at: Float[Tensor, "rows d_model"] | None,
    answers: Int[Tensor, "rows 2"] | None = None,
    hidden: Tensor | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    return subject.adapter.final_readout(
        readout,
        resid_at,
        answers,
        hidden,
        mask,
        has_lm_head=subject.has_lm_head,
        source=subject.source,
    )


def resid_hook(layer: int) -> str:
    return f"blocks.{layer}.hook_resid_pre"


def final_hook(subject: Subject) -> str:
    return subject.final_hook()


def logit_directions(subject: Subject, directions: Float[Tensor, "n d_model"]) -> Tensor:
    """Direct logit effect of residual-stream directions, ``[n, vocab]``: through the final norm
    treated as linear (LayerNorm centres and scales by its weight, RMSNorm scales; the
    per-position 1/sigma is held fixed, as TransformerLens's ``apply_ln_to_stack`` does), then
    W_U. Causal LMs only: an encoder's output is a sentence embedding, not logits."""
    model = subject.model
    if subject.kind == "encoder":
        subject.adapter.raise_readout("final_logits", subject.source)
    d = directions.to(model.unembed.W_U.dtype)
    ln = getattr(model, "ln_final", None)
    if ln is not None:
        if subject.cfg.normalization_type in ("LN", "LNPre"):
            d = d - d.mean(-1, keepdim=True)
        w = getattr(ln, "w", None)
        if w is not None:
            d = d * w
    return d @ model.unembed.W_U
