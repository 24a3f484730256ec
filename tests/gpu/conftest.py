"""The GPU tier: every test here is marked ``gpu`` and skipped where CUDA is absent.

Run it with ``scripts/gpu-check LOGDIR`` on a CUDA machine (or ``pytest tests/gpu``). CI has no
GPU, so this tier never runs there; it checks that the same numbers come out on CUDA as on CPU
and as TransformerLens's own patching on CUDA, in float32 and within the stated half-precision
tolerances.
"""

from __future__ import annotations

import pytest
import torch
from gpu_helpers import DEVICE, GPU_CFG, gpu_pairs

import interp_audit as ia
from interp_audit.model.loading import build_model

CUDA = torch.cuda.is_available()
RUNNABLE = CUDA or DEVICE != "cuda"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/gpu" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.gpu)
            if not RUNNABLE:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))


@pytest.fixture(scope="session", autouse=True)
def _exact_fp32():
    """Full float32 matmuls (no TF32), so float32 results compare at float32 tolerances."""
    if CUDA:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


@pytest.fixture(scope="session")
def cuda_subject():
    return ia.load_model(build_model(GPU_CFG, seed=3), device=DEVICE)


@pytest.fixture(scope="session")
def cpu_twin():
    return ia.load_model(build_model(GPU_CFG, seed=3), device="cpu")


@pytest.fixture(scope="session")
def pairs():
    return gpu_pairs()
