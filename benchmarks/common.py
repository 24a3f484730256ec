"""The benchmark workload shared by patching.py and attribution.py: one random-init causal LM
and one contrast set, built the same way from the same arguments."""

from __future__ import annotations

import argparse


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--vocab", type=int, default=2000)
    p.add_argument("--pairs", type=int, default=16)
    p.add_argument("--tokens", type=int, default=24)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--arch",
        default="gpt2",
        choices=["gpt2", "pythia"],
        help="gpt2: learned positions, sequential blocks; pythia: rotary (a quarter of each "
        "head) and parallel attention + MLP",
    )


def model_config(args, heads: int | None = None) -> dict:
    heads = heads or args.heads
    arch = (
        dict(
            positional_embedding_type="rotary",
            rotary_dim=args.d_model // heads // 4,
            parallel_attn_mlp=True,
        )
        if getattr(args, "arch", "gpt2") == "pythia"
        else {}
    )
    return dict(
        **arch,
        n_layers=args.layers,
        d_model=args.d_model,
        n_heads=heads,
        d_head=args.d_model // heads,
        d_mlp=4 * args.d_model,
        d_vocab=args.vocab,
        n_ctx=max(64, args.tokens),
        act_fn="gelu",
        normalization_type="LN",
    )


def workload(args):
    """(subject, pairs): random model; pairs differ in one token a third of the way in."""
    import torch

    import interp_audit as ia
    from interp_audit.model.loading import build_model

    subject = ia.load_model(build_model(model_config(args), seed=0), device=args.device)
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(0, args.vocab, (args.pairs, args.tokens), generator=g)
    cf = clean.clone()
    cf[:, args.tokens // 3] = torch.randint(0, args.vocab, (args.pairs,), generator=g)
    answers = torch.randint(0, args.vocab, (args.pairs, 2), generator=g)
    return subject, ia.ContrastSet.from_tokens(clean, cf, answers)
