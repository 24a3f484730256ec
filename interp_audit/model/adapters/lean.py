"""A leaner call of one HookedTransformer block for the patching engine: same hooks, same math.

The engine calls blocks on slices (a few rows, a few positions), hundreds of times per sweep.
There TransformerLens's per-call work, not the matmuls, sets the time: its block normalises its
input three times (once per q/k/v input), rearranges the q/k/v/output weights on every call, and
materialises attention scores, a causal mask, a softmax, a NaN guard and the pattern. This call
normalises once, projects with weights laid out once per weight version, and runs attention with
``scaled_dot_product_attention`` (no score-sized tensor kept: less memory on long prompts too).

It fires the block's hook points in TransformerLens's order (``hook_resid_pre``, ``hook_q``,
``hook_k``, ``hook_v``, ``hook_rot_q``, ``hook_rot_k``, ``hook_z``, ``hook_attn_out``,
``hook_resid_mid``, ``hook_mlp_in``, the MLP's own hooks, ``hook_mlp_out``,
``hook_resid_post``), so patches and interventions apply as in a plain forward. It is used only
where it computes what TransformerLens computes, to float32 rounding: the configurations
:func:`supported` accepts, and only while nothing is hooked that it does not compute (attention
scores and pattern, the norms' scale and normalised input; :func:`needs_full_block`). Elsewhere
the adapter runs TransformerLens's own block. Checked block by block against it in
``tests/unit/test_lean_block.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["block_kv", "layout_bytes", "mlp", "needs_full_block", "norm", "run_block", "supported"]

_NORMS = ("LayerNorm", "LayerNormPre", "RMSNorm", "RMSNormPre")
_ATTENTION = ("Attention", "GroupedQueryAttention")
_POST_NORM = ("Olmo2ForCausalLM", "Olmo3ForCausalLM", "OlmoeForCausalLM")


def supported(block: nn.Module) -> bool:
    """Can :func:`run_block` stand in for this block exactly?"""
    cfg = getattr(block, "cfg", None)
    if cfg is None or type(block).__name__ != "TransformerBlock":
        return False

    def c(name, default=None):
        return getattr(cfg, name, default)

    attn = getattr(block, "attn", None)
    norms = [block.ln1] + ([] if c("attn_only", False) else [block.ln2])
    return (
        type(attn).__name__ in _ATTENTION
        and getattr(attn, "attn_type", "global") == "global"
        and all(type(n).__name__ in _NORMS or isinstance(n, nn.Identity) for n in norms)
        and c("positional_embedding_type", "standard") in ("standard", "rotary")
        and c("attention_dir", "causal") == "causal"
        and not c("use_attn_in", False)
        and not c("use_split_qkv_input", False)
        and not c("use_attn_result", False)
        and not c("use_local_attn", False)
        and not c("use_qk_norm", False)
        and not c("use_logn_attn", False)
        and not c("use_attention_sinks", False)
        and not c("use_normalization_before_and_after", False)
        and not c("ungroup_grouped_query_attention", False)
        and not c("use_dynamic_ntk_rope", False)
        and not c("load_in_4bit", False)
        and c("clip_qkv", None) is None
        and not (c("attn_scores_soft_cap", -1.0) or -1.0) > 0
        and c("original_architecture", None) not in _POST_NORM
    )


def _hooked(point: nn.Module | None) -> bool:
    return point is not None and bool(point._forward_hooks)


def needs_full_block(block: nn.Module) -> bool:
    """True while a hook sits on what the lean call does not compute, or the causal mask is
    not -inf (TransformerLens fills masked scores with its ``IGNORE`` buffer, which a state
    dict can overwrite): then run the full block."""
    attn = block.attn
    points = [attn.hook_attn_scores, attn.hook_pattern]
    for ln in (block.ln1, getattr(block, "ln2", None)):
        points += [getattr(ln, "hook_scale", None), getattr(ln, "hook_normalized", None)]
    return any(_hooked(p) for p in points) or not _weights(attn)["masks_with_-inf"]


def norm(module: nn.Module, x: Tensor) -> Tensor:
    """TransformerLens's LayerNorm / RMSNorm (with or without weights), fused; half-precision
    inputs normalised in float32 and cast back before the weights, as it does."""
    kind = type(module).__name__
    if kind not in _NORMS:
        return module(x)
    dtype = x.dtype
    up = x if dtype in (torch.float32, torch.float64) else x.float()
    shape = (x.shape[-1],)
    if kind.startswith("LayerNorm"):
        out = F.layer_norm(up, shape, eps=module.eps)
    else:
        out = F.rms_norm(up, shape, eps=module.eps)
    out = out.to(dtype)
    if kind == "LayerNorm":
        return out * module.w + module.b
    if kind == "RMSNorm":
        return out * module.w
    return out


def _weights(attn: nn.Module) -> dict:
    """q/k/v/output weights as ``F.linear`` takes them, rebuilt when a weight changes."""
    grouped = hasattr(attn, "_W_K")
    params = {
        "q": (attn.W_Q, attn.b_Q),
        "k": (attn._W_K, attn._b_K) if grouped else (attn.W_K, attn.b_K),
        "v": (attn._W_V, attn._b_V) if grouped else (attn.W_V, attn.b_V),
    }
    tensors = [t for pair in params.values() for t in pair] + [attn.W_O, attn.b_O, attn.IGNORE]
    version = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)
    hit = attn.__dict__.get("_interp_audit_layout")
    if hit is not None and hit[0] == version:
        return hit[1]
    out: dict[str, Tensor] = {}
    with torch.no_grad():
        for name, (w, b) in params.items():  # [head, d_model, d_head] -> [head * d_head, d_model]
            out[f"W_{name}"] = w.detach().permute(0, 2, 1).reshape(-1, w.shape[1]).contiguous()
            out[f"b_{name}"] = b.detach().reshape(-1)
        w_o = attn.W_O.detach()  # [head, d_head, d_model] -> [d_model, head * d_head]
        out["W_O"] = w_o.reshape(-1, w_o.shape[-1]).T.contiguous()
        out["b_O"] = attn.b_O.detach()
        out["masks_with_-inf"] = bool(torch.isneginf(attn.IGNORE).all())
    attn.__dict__["_interp_audit_layout"] = (version, out)  # rebuilt when a weight changes
    return out


def _weights_for_grad(attn: nn.Module) -> dict[str, Tensor]:
    """The same layout built from the live parameters (gradients flow to them if asked)."""
    grouped = hasattr(attn, "_W_K")
    out = {}
    for name, (w, b) in {
        "q": (attn.W_Q, attn.b_Q),
        "k": (attn._W_K, attn._b_K) if grouped else (attn.W_K, attn.b_K),
        "v": (attn._W_V, attn._b_V) if grouped else (attn.W_V, attn.b_V),
    }.items():
        out[f"W_{name}"] = w.permute(0, 2, 1).reshape(-1, w.shape[1])
        out[f"b_{name}"] = b.reshape(-1)
    out["W_O"] = attn.W_O.reshape(-1, attn.W_O.shape[-1]).T
    out["b_O"] = attn.b_O
    return out


def _layout(attn: nn.Module) -> dict[str, Tensor]:
    if torch.is_grad_enabled() and attn.W_Q.requires_grad:
        return _weights_for_grad(attn)
    return _weights(attn)


def _qkv(attn: nn.Module, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    w = _layout(attn)
    rows, pos = x.shape[:2]
    d_head = attn.cfg.d_head
    q = attn.hook_q(F.linear(x, w["W_q"], w["b_q"]).view(rows, pos, -1, d_head))
    k = attn.hook_k(F.linear(x, w["W_k"], w["b_k"]).view(rows, pos, -1, d_head))
    v = attn.hook_v(F.linear(x, w["W_v"], w["b_v"]).view(rows, pos, -1, d_head))
    return q, k, v


def _attention(attn: nn.Module, x: Tensor, past_kv: tuple[Tensor, Tensor] | None) -> Tensor:
    q, k, v = _qkv(attn, x)
    offset = 0
    if past_kv is not None:  # keys/values before the slice: the base run's (pre-rotary)
        offset = past_kv[0].shape[1]
        k = torch.cat([past_kv[0].to(k.dtype), k], dim=1)
        v = torch.cat([past_kv[1].to(v.dtype), v], dim=1)
    if attn.cfg.positional_embedding_type == "rotary":
        q = attn.hook_rot_q(attn.apply_rotary(q, offset, None))
        k = attn.hook_rot_k(attn.apply_rotary(k, 0, None))
    n_q, n_k = q.shape[1], k.shape[1]
    # query i (absolute offset + i) sees keys 0..offset + i; one query at the end sees them all
    mask = (
        None
        if n_q == 1 and offset == n_k - 1
        else torch.ones(n_q, n_k, dtype=torch.bool, device=q.device).tril(offset)
    )
    z = F.scaled_dot_product_attention(
        q.transpose(1, 2),
        k.transpose(1, 2),
        v.transpose(1, 2),
        attn_mask=mask,
        scale=1.0 / float(attn.attn_scale),
        enable_gqa=k.shape[2] != q.shape[2],
    )
    z = attn.hook_z(z.transpose(1, 2))  # [rows, pos, head, d_head]
    w = _layout(attn)
    return F.linear(z.reshape(*z.shape[:2], -1), w["W_O"], w["b_O"])


def _mlp_in(block: nn.Module, resid: Tensor) -> Tensor:
    return block.hook_mlp_in(resid.clone()) if block.cfg.use_hook_mlp_in else resid


def layout_bytes(block: nn.Module) -> int:
    """Bytes of the attention weights laid out for the lean call (kept beside the model's)."""
    attn = block.attn
    grouped = hasattr(attn, "_W_K")
    params = [attn.W_Q, attn.W_O, *((attn._W_K, attn._W_V) if grouped else (attn.W_K, attn.W_V))]
    return sum(p.numel() * p.element_size() for p in params)


def mlp(block: nn.Module, x: Tensor) -> Tensor:
    """The block's MLP and ``hook_mlp_out`` on normalised ``x`` (lean where it can be)."""
    return _mlp(block, x)


def _lean_mlp(mlp: nn.Module) -> bool:
    kind = type(mlp).__name__
    return kind in ("MLP", "GatedMLP") and not mlp.cfg.is_layer_norm_activation()


def _mlp(block: nn.Module, x: Tensor) -> Tensor:
    """``block.apply_mlp(x)``: TransformerLens's MLP and gated MLP without their per-call
    weight copies (``W.T.contiguous()``), reading the weights where they are; same hooks."""
    mlp = block.mlp
    if not _lean_mlp(mlp):
        return block.apply_mlp(x)
    if type(mlp).__name__ == "GatedMLP":
        pre = mlp.hook_pre(torch.matmul(x, mlp.W_gate))
        pre_linear = mlp.hook_pre_linear(torch.matmul(x, mlp.W_in))
        post = mlp.hook_post(mlp.act_fn(pre) * pre_linear + mlp.b_in)
    else:
        post = mlp.hook_post(mlp.act_fn(mlp.hook_pre(torch.matmul(x, mlp.W_in) + mlp.b_in)))
    return block.hook_mlp_out(torch.matmul(post, mlp.W_out) + mlp.b_out)


def run_block(block: nn.Module, resid: Tensor, past_kv: tuple[Tensor, Tensor] | None = None):
    """``block(resid, past_kv_cache_entry=...)``, leaner (see the module docstring)."""
    cfg = block.cfg
    resid_pre = block.hook_resid_pre(resid)
    attn_out = block.hook_attn_out(_attention(block.attn, norm(block.ln1, resid_pre), past_kv))
    if cfg.attn_only:
        return block.hook_resid_post(resid_pre + attn_out)
    if cfg.parallel_attn_mlp:  # the MLP reads resid_pre
        mlp_out = _mlp(block, norm(block.ln2, _mlp_in(block, resid_pre)))
        return block.hook_resid_post(resid_pre + attn_out + mlp_out)
    resid_mid = block.hook_resid_mid(resid_pre + attn_out)
    mlp_out = _mlp(block, norm(block.ln2, _mlp_in(block, resid_mid)))
    return block.hook_resid_post(resid_mid + mlp_out)


def block_kv(block: nn.Module, resid: Tensor) -> tuple[Tensor, Tensor]:
    """Keys and values the block computes from ``resid`` (through its hooks), no queries."""
    _, k, v = _qkv(block.attn, norm(block.ln1, block.hook_resid_pre(resid)))
    return k, v
