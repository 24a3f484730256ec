"""Devices and dtypes: clear errors for absent devices, half precision within stated tolerance.

The bf16/fp16 checks run on CPU (torch 2.13 has bf16 and fp16 matmuls there): the same weights
in each dtype, the same sweep, compared with float32 at the tolerance ``devices.tolerance``
states. Each also asserts the half-precision run differs from float32 at all, so a dtype that
was silently ignored (the model left in float32) fails instead of passing trivially.
"""

from __future__ import annotations

import pytest
import torch

import interp_audit as ia
from interp_audit.cli.main import main as cli_main
from interp_audit.core.errors import ModelLoadError
from interp_audit.model.devices import resolve_device, resolve_dtype, tolerance
from interp_audit.model.loading import build_model

from helpers import build_cfg


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"device": "banana"}, ["unknown device 'banana'", "cpu, cuda, mps", "available here"]),
        ({"device": "cuda:x"}, ["unknown device 'cuda:x'"]),
        ({"dtype": "int8"}, ["unknown dtype 'int8'", "bfloat16 (bf16)"]),
        ({"dtype": torch.int64}, ["unknown dtype 'torch.int64'"]),
    ],
)
def test_bad_device_or_dtype_is_a_model_load_error(kwargs, words):
    with pytest.raises(ModelLoadError) as err:
        ia.load_model("zoo:handbuilt-copy", **kwargs)
    for w in words:
        assert w in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_absent_cuda_names_the_reason_and_what_is_available(capsys):
    with pytest.raises(
        ModelLoadError, match=r"device 'cuda' is not available: .*available here: cpu"
    ):
        ia.load_model("zoo:handbuilt-copy", device="cuda")
    argv = ["sweep", "--model", "zoo:handbuilt-copy", "--clean", "A x ->", "--counterfactual"]
    rc = cli_main([*argv, "B x ->", "--answers", "YES", "NO", "--device", "cuda"])
    err = capsys.readouterr().err
    assert rc == 2 and "device 'cuda' is not available" in err and "Torch not compiled" not in err


def test_resolution():
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("CPU") == "cpu"
    assert (
        resolve_dtype("bf16") is torch.bfloat16 and resolve_dtype("torch.float16") is torch.float16
    )
    assert resolve_dtype(None) is None
    assert tolerance(torch.bfloat16, 10.0) == pytest.approx(10 * 8 * 2**-7)
    assert tolerance(torch.float32, 0.1) == pytest.approx(1e-5)  # scale floors at 1


@pytest.fixture(scope="module")
def dtype_runs():
    """The same random-init rotary, parallel-attention model and sweep in three dtypes."""
    cfg = build_cfg(positional_embedding_type="rotary", rotary_dim=8, parallel_attn_mlp=True)
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(0, 50, (6, 9), generator=g)
    cf = clean.clone()
    cf[:, 3] = (clean[:, 3] + 11) % 50
    pairs = ia.ContrastSet.from_tokens(clean, cf, torch.randint(0, 50, (6, 2), generator=g))
    out = {}
    for dt in ("float32", "bfloat16", "float16"):
        subject = ia.load_model(build_model(cfg, seed=4), dtype=dt)
        assert subject.dtype == getattr(torch, dt)
        out[dt] = {
            "logits": subject.run(pairs.clean).float(),
            "heads": ia.patch(subject, pairs, sites="heads", normalize=False).values,
            "atp": ia.attribute(
                subject, pairs, sites="heads", method="atp", normalize=False
            ).values,
        }
    return out


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("what", ["logits", "heads", "atp"])
def test_half_precision_within_stated_tolerance_of_fp32(dtype_runs, dtype, what):
    ref, got = dtype_runs["float32"][what], dtype_runs[dtype][what]
    scale = float(dtype_runs["float32"]["logits"].abs().max())
    err = float((got - ref).abs().max())
    assert err <= tolerance(getattr(torch, dtype), scale), (what, dtype, err, scale)
    assert err > 1e-7, f"{dtype} run equals float32 exactly: was the dtype applied?"
