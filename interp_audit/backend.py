"""The one place that knows how TransformerLens models compute, piece by piece.

The patching engine runs a model from a given layer, on a slice of positions, reading out only
what a metric needs. That needs the block call conventions (KV cache entries for causal models,
additive masks for encoders) and the final norm/unembedding, which differ per model class.
Models this module does not know run through a plain hooked forward instead (slower, exact).
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .metrics import Readout, mean_pool
from .subject import Subject


def fast_path(subject: Subject) -> bool:
    """Can the engine call blocks directly (layer skipping)? Else it uses full forwards."""
    name = type(subject.model).__name__
    cfg = subject.cfg
    if name == "HookedEncoder":
        return not getattr(cfg, "use_split_qkv_input", False)
    if name not in ("HookedTransformer", "HookedSAETransformer"):
        return False
    return (
        getattr(cfg, "positional_embedding_type", "standard") in ("standard", "rotary")
        and not getattr(cfg, "use_split_qkv_input", False)
        and not getattr(cfg, "use_attn_in", False)
        and not getattr(cfg, "use_local_attn", False)
        and getattr(cfg, "n_devices", 1) == 1
    )


def mid_block_entry(subject: Subject) -> bool:
    """Can a variant that only changes head outputs join mid-block (attention reused)?

    True where a block's attention output adds linearly into the residual stream and the MLP
    reads that sum: pre-LN causal HookedTransformers without extra norms around sublayers.
    """
    cfg = subject.cfg
    return (
        subject.kind == "causal"
        and fast_path(subject)
        and not getattr(cfg, "use_normalization_before_and_after", False)
        and not getattr(cfg, "parallel_attn_mlp", False)
        and getattr(cfg, "original_architecture", None)
        not in ("Olmo2ForCausalLM", "Olmo3ForCausalLM")
    )


def mid_hook(subject: Subject, layer: int) -> str:
    """Hook holding the residual stream between attention and MLP (after it, if attention-only)."""
    return (
        f"blocks.{layer}.hook_resid_post"
        if subject.cfg.attn_only
        else f"blocks.{layer}.hook_resid_mid"
    )


def head_output(
    subject: Subject, layer: int, z: Float[Tensor, "rows pos head d_head"]
) -> Float[Tensor, "rows pos d_model"]:
    """What heads write into the residual stream for head vectors ``z`` (no output bias)."""
    return torch.einsum("rphd,hdm->rpm", z, subject.model.blocks[layer].attn.W_O)


def run_block_after_attention(
    subject: Subject, layer: int, resid_mid: Float[Tensor, "rows pos d_model"]
) -> Float[Tensor, "rows pos d_model"]:
    """The second half of a pre-LN block: from resid_mid to resid_post (the MLP and its hooks)."""
    block = subject.model.blocks[layer]
    cfg = subject.cfg
    if cfg.attn_only:
        return block.hook_resid_post(resid_mid)
    resid_mid = block.hook_resid_mid(resid_mid)
    mlp_in = (
        block.hook_mlp_in(resid_mid.clone())
        if getattr(cfg, "use_hook_mlp_in", False)
        else resid_mid
    )
    mlp_out = block.apply_mlp(block.ln2(mlp_in))
    return block.hook_resid_post(resid_mid + mlp_out)


def run_block(
    subject: Subject,
    layer: int,
    resid: Float[Tensor, "rows pos d_model"],
    past_kv: tuple[Tensor, Tensor] | None = None,
    encoder_mask: Float[Tensor, "rows 1 1 pos"] | None = None,
) -> Float[Tensor, "rows pos d_model"]:
    """One block; ``past_kv`` holds the (frozen) keys/values of the positions before ``resid``."""
    block = subject.model.blocks[layer]
    if subject.kind == "encoder":
        return block(resid, encoder_mask)
    if past_kv is None:
        return block(resid)
    from transformer_lens.cache.key_value_cache_entry import TransformerLensKeyValueCacheEntry

    entry = TransformerLensKeyValueCacheEntry(
        past_keys=past_kv[0], past_values=past_kv[1], frozen=True
    )
    return block(resid, past_kv_cache_entry=entry)


def kv_hooks(layer: int) -> tuple[str, str]:
    """Hook names whose activations are what the KV cache stores for ``layer``."""
    return f"blocks.{layer}.attn.hook_k", f"blocks.{layer}.attn.hook_v"


def encoder_additive_mask(
    mask: Int[Tensor, "b pos"], dtype: torch.dtype
) -> Float[Tensor, "b 1 1 pos"]:
    """HookedEncoder's additive attention mask from a one/zero mask."""
    add = torch.where(mask.bool(), 0.0, float("-inf")).to(dtype)
    return add[:, None, None, :]


def final_readout(
    subject: Subject,
    readout: Readout,
    resid_at: Float[Tensor, "rows d_model"] | None,
    answers: Int[Tensor, "rows 2"] | None = None,
    hidden: Float[Tensor, "rows pos d_model"] | None = None,
    mask: Int[Tensor, "rows pos"] | None = None,
) -> Tensor:
    """The metric's readout from the final residual stream.

    ``answer_logits`` unembeds only the two answer tokens of each row; ``final_logits`` the
    whole vocabulary at the scored position; ``embedding`` mean-pools ``hidden`` (encoders).
    """
    model = subject.model
    if readout == "embedding":
        if subject.kind != "encoder":
            raise_readout(subject, readout)
        return mean_pool(hidden, mask)
    if subject.kind == "encoder":
        if not subject.has_lm_head:
            raise_readout(subject, readout)
        x = model.mlm_head(resid_at[:, None, :])[:, 0]
    else:
        ln = getattr(model, "ln_final", None)  # absent when normalization_type is None
        x = resid_at if ln is None else ln(resid_at[:, None, :])[:, 0]
    if readout == "answer_logits":
        w = model.unembed.W_U[:, answers]  # [d, rows, 2]
        out = torch.einsum("rd,drk->rk", x, w)
        b = getattr(model.unembed, "b_U", None)
        return out if b is None else out + b[answers]
    return model.unembed(x[:, None, :])[:, 0]


def raise_readout(subject: Subject, readout: str):
    from .errors import AuditError

    if readout == "embedding":
        raise AuditError(
            f"metric reads a sentence embedding, but {subject.source!r} is a causal LM; use "
            "logit_diff, prob_diff, logprob or kl_to_clean"
        )
    raise AuditError(
        f"metric reads logits, but {subject.source!r} has no language-model head (a sentence "
        "encoder); "
        "use ia.metrics.embedding_similarity(...)"
    )


def resid_hook(layer: int) -> str:
    return f"blocks.{layer}.hook_resid_pre"


def final_hook(subject: Subject) -> str:
    """The hook whose activation is the final residual stream (BERT blocks end in a LayerNorm)."""
    last = subject.n_layers - 1
    if subject.kind == "encoder" and type(subject.model).__name__ == "HookedEncoder":
        return f"blocks.{last}.hook_normalized_resid_post"
    return f"blocks.{last}.hook_resid_post"


def logit_directions(subject: Subject, directions: Float[Tensor, "n d_model"]) -> Tensor:
    """Direct logit effect of residual-stream directions, ``[n, vocab]``: through the final norm
    treated as linear (LayerNorm centres and scales by its weight, RMSNorm scales; the
    per-position 1/sigma is held fixed, as TransformerLens's ``apply_ln_to_stack`` does), then
    W_U. Causal LMs only: an encoder's output is a sentence embedding, not logits."""
    model = subject.model
    if subject.kind == "encoder":
        raise_readout(subject, "final_logits")
    d = directions.to(model.unembed.W_U.dtype)
    ln = getattr(model, "ln_final", None)
    if ln is not None:
        if subject.cfg.normalization_type in ("LN", "LNPre"):
            d = d - d.mean(-1, keepdim=True)
        w = getattr(ln, "w", None)
        if w is not None:
            d = d * w
    return d @ model.unembed.W_U
