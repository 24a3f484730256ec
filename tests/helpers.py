"""Test helpers: model configs and random contrast sets (importable from any tier)."""

import torch

import interp_audit as ia

CAUSAL_CFG = dict(
    n_layers=3,
    d_model=32,
    n_ctx=16,
    d_head=8,
    n_heads=4,
    d_mlp=64,
    d_vocab=50,
    act_fn="gelu",
    normalization_type="LN",
)
ENCODER_CFG = dict(
    n_layers=2,
    d_model=32,
    n_ctx=16,
    d_head=8,
    n_heads=4,
    d_mlp=64,
    d_vocab=50,
    act_fn="gelu",
    attention_dir="bidirectional",
)


def build_cfg(**overrides):
    """A causal-LM config for tests; override any field (SAELens-style fixture builder)."""
    return {**CAUSAL_CFG, **overrides}


def random_pairs(
    d_vocab: int = 50,
    batch: int = 5,
    pos: int = 7,
    swap_at: int = 2,
    seed: int = 0,
    answers: bool = True,
):
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(5, d_vocab, (batch, pos), generator=g)
    cf = clean.clone()
    cf[:, swap_at] = (
        clean[:, swap_at] + 1 + torch.randint(0, d_vocab - 6, (batch,), generator=g)
    ) % (d_vocab - 5) + 5
    ans = torch.randint(0, d_vocab, (batch, 2), generator=g)
    ans[:, 1] = (ans[:, 0] + 1) % d_vocab
    return ia.ContrastSet.from_tokens(clean, cf, ans if answers else None)
