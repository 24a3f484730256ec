"""SHA-256 of tensors: the identity of the weights that ran, whatever file they came from.

One definition for the audit record (``weights.state_sha256``), the repair record (source and
repaired weights) and ``verify``, so the three agree by construction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import torch

__all__ = ["state_sha256", "tensors_sha256"]


def tensors_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over named tensors (names, dtypes, shapes and bytes), in name order."""
    h = hashlib.sha256()
    for name, t in sorted(tensors.items()):
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def state_sha256(model: torch.nn.Module) -> str:
    """SHA-256 over a model's parameters and buffers (its state dict)."""
    return tensors_sha256(model.state_dict())
