"""The engine's lean block call against TransformerLens's own block, configuration by
configuration: with and without past keys/values, one position and many, every hook firing."""

from __future__ import annotations

import pytest
import torch

from interp_audit.model.adapters import lean
from interp_audit.model.loading import build_model
from tests.helpers import build_cfg

CONFIGS = {
    "ln": {},
    "ln_pre": dict(normalization_type="LNPre"),
    "rms": dict(normalization_type="RMS", act_fn="silu", gated_mlp=True),
    "rms_pre": dict(normalization_type="RMSPre"),
    "rotary_parallel": dict(
        positional_embedding_type="rotary", rotary_dim=4, parallel_attn_mlp=True
    ),  # fmt: skip
    "gqa_rotary": dict(
        positional_embedding_type="rotary",
        rotary_dim=8,
        n_key_value_heads=2,
        normalization_type="RMS",
        act_fn="silu",
        gated_mlp=True,
    ),  # fmt: skip
    "attn_only": dict(attn_only=True),
    "mlp_in_hook": dict(use_hook_mlp_in=True),
}


def past(block, rows, n):
    cfg = block.cfg
    kv = cfg.n_key_value_heads or cfg.n_heads
    g = torch.Generator().manual_seed(n)
    return tuple(torch.randn(rows, n, kv, cfg.d_head, generator=g) for _ in range(2))


def tl_block(block, resid, kv):
    if kv is None:
        return block(resid)
    from transformer_lens.cache.key_value_cache_entry import TransformerLensKeyValueCacheEntry

    entry = TransformerLensKeyValueCacheEntry(past_keys=kv[0], past_values=kv[1], frozen=True)
    return block(resid, past_kv_cache_entry=entry)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_the_lean_block_equals_transformer_lens(name):
    model = build_model(build_cfg(**CONFIGS[name]), seed=3).eval()
    g = torch.Generator().manual_seed(0)
    for layer, block in enumerate(model.blocks):
        assert lean.supported(block), name
        for rows, n_new, n_past in [(3, 7, 0), (4, 5, 3), (2, 1, 6), (5, 1, 0)]:
            resid = torch.randn(rows, n_new, model.cfg.d_model, generator=g)
            kv = past(block, rows, n_past) if n_past else None
            seen_tl, seen_lean = {}, {}
            names = [n for n, _ in block.named_modules() if n.split(".")[-1].startswith("hook_")]
            names = [n for n in names if "ln" not in n and "attn_scores" not in n
                     and "pattern" not in n]  # fmt: skip
            with torch.no_grad():
                for seen, fn in ((seen_tl, tl_block), (seen_lean, lean_call)):
                    handles = [
                        block.get_submodule(n).register_forward_hook(
                            lambda m, i, o, n=n, seen=seen: seen.setdefault(n, o.clone())
                        )
                        for n in names
                    ]
                    try:
                        seen["out"] = fn(block, resid, kv)
                    finally:
                        for h in handles:
                            h.remove()
            assert seen_lean.keys() == seen_tl.keys(), (name, layer)
            for key in seen_tl:
                torch.testing.assert_close(seen_lean[key], seen_tl[key], atol=2e-5, rtol=1e-5,
                                           msg=f"{name} L{layer} {key}")  # fmt: skip
            with torch.no_grad():
                k, v = lean.block_kv(block, resid)
            torch.testing.assert_close(k, seen_tl["attn.hook_k"], atol=2e-5, rtol=1e-5)
            torch.testing.assert_close(v, seen_tl["attn.hook_v"], atol=2e-5, rtol=1e-5)


def lean_call(block, resid, kv):
    return lean.run_block(block, resid, kv)


def test_hooks_on_what_the_lean_block_skips_send_it_to_the_full_block():
    model = build_model(build_cfg(), seed=3)
    block = model.blocks[1]
    assert not lean.needs_full_block(block)
    handle = block.attn.hook_pattern.register_forward_hook(lambda *a: None)
    assert lean.needs_full_block(block)
    handle.remove()
    handle = block.ln1.hook_normalized.register_forward_hook(lambda *a: None)
    assert lean.needs_full_block(block)
    handle.remove()
    assert not lean.needs_full_block(block)


def test_a_causal_mask_that_is_not_minus_infinity_sends_it_to_the_full_block():
    """TransformerLens fills masked scores with its IGNORE buffer; a hand-set state dict can
    overwrite it (zoo:handbuilt-copy zeroes it): the lean block would mask differently."""
    model = build_model(build_cfg(), seed=3)
    block = model.blocks[0]
    assert not lean.needs_full_block(block)
    with torch.no_grad():
        block.attn.IGNORE.fill_(0.0)
    assert lean.needs_full_block(block)


def test_a_changed_weight_is_used_at_once():
    """The laid-out weights are rebuilt when a weight changes in place (a repair's fold)."""
    model = build_model(build_cfg(), seed=3).eval()
    block = model.blocks[0]
    resid = torch.randn(2, 4, model.cfg.d_model)
    with torch.no_grad():
        lean.run_block(block, resid)
        block.attn.W_Q[1].mul_(3.0)
        block.attn.b_O.add_(0.5)
        torch.testing.assert_close(lean.run_block(block, resid), block(resid), atol=2e-5,
                                   rtol=1e-5)  # fmt: skip


def test_unsupported_configurations_are_refused():
    for cfg in (dict(use_attn_result=True), dict(attention_dir="bidirectional")):
        model = build_model(build_cfg(**cfg), seed=3)
        assert not lean.supported(model.blocks[0]), cfg
