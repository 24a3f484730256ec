"""Shapes and pairs shared by the GPU tier's tests and fixtures."""

from __future__ import annotations

import os

import torch

import interp_audit as ia

from helpers import build_cfg

#: The tier's device: CUDA; ``IA_GPU_TIER_DEVICE=cpu`` dry-runs the same tests on CPU.
DEVICE = os.environ.get("IA_GPU_TIER_DEVICE", "cuda")

GPU_CFG = build_cfg(n_layers=4, d_model=128, d_head=32, n_heads=4, d_mlp=512, d_vocab=300, n_ctx=32)


def gpu_pairs(vocab: int = 300, n: int = 8, pos: int = 12, swap: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, vocab, (n, pos), generator=g)
    cf = clean.clone()
    cf[:, swap] = (clean[:, swap] + 17) % vocab
    answers = torch.randint(0, vocab, (n, 1), generator=g)
    return ia.ContrastSet.from_tokens(clean, cf, torch.cat([answers, (answers + 1) % vocab], 1))
