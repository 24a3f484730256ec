"""Devices and dtypes: turn what a user typed (``--device cuda``, ``dtype: bf16``) into torch
objects, or a :class:`ModelLoadError` that says what is available.

torch's own messages for these mistakes ("Torch not compiled with CUDA enabled", "Expected one
of cpu, cuda, ... device type at start of device string: banana") name neither the option nor
what would work on this machine; an audit run in CI should say both in one line.

The stated tolerances for half-precision runs live here too (:data:`DTYPE_TOLERANCE`), so the
trust gates, the tests and the docs quote one table.
"""

from __future__ import annotations

import torch

from interp_audit.core.errors import ModelLoadError

__all__ = [
    "DTYPE_TOLERANCE",
    "available_devices",
    "resolve_device",
    "resolve_dtype",
    "tolerance",
]

#: Device types a user may name (``cuda:1`` names an index on top of ``cuda``).
DEVICE_TYPES = ("cpu", "cuda", "mps")

_DTYPE_ALIASES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float64": torch.float64,
    "fp64": torch.float64,
    "double": torch.float64,
}

#: Tolerance of a run in each dtype against the same model in float32, *relative to the logit
#: scale* (the largest |logit| the compared numbers are differences of): logits, logit
#: differences and patching effects in logit units all inherit the logits' absolute error.
#: Why these numbers: a half-precision forward rounds every matmul output and residual sum to
#: ``eps`` = 2**-10 (fp16) or 2**-7 (bf16) relative; the error on a logit then grows like a few
#: eps times the logit scale (measured on random-init 3-layer models and the zoo models: 1.2
#: eps for fp16 and 1.8 eps for bf16 on the logits, under 1 eps on effects). We allow 8 eps,
#: about 4x the measured error, so deeper models (error grows like sqrt(depth)) still pass and
#: a wrong computation (an error of order the effect itself) still fails. float32 gets 1e-5,
#: ~80 eps: batched and serial kernels sum in different orders, never more than that here.
DTYPE_TOLERANCE: dict[torch.dtype, float] = {
    torch.float64: 1e-10,
    torch.float32: 1e-5,
    torch.float16: 8 * 2.0**-10,
    torch.bfloat16: 8 * 2.0**-7,
}


def tolerance(dtype: torch.dtype, scale: float = 1.0) -> float:
    """Absolute tolerance for logit-scale numbers whose logits reach ``scale`` in ``dtype``."""
    return DTYPE_TOLERANCE.get(dtype, DTYPE_TOLERANCE[torch.float32]) * max(1.0, float(scale))


def available_devices() -> list[str]:
    """Device types this torch build can use on this machine, best first."""
    out = []
    if torch.cuda.is_available():
        out.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return [*out, "cpu"]


def resolve_device(device: str | torch.device | None) -> str:
    """``None``/``"auto"`` -> the best device present; else check the named one exists here.

    Raises:
        ModelLoadError: unknown device name, or a device this torch build or machine lacks
            (the message lists the ones that work).
    """
    here = available_devices()
    if device is None or str(device) == "auto":
        return here[0]
    text = str(device).strip().lower()
    kind, _, index = text.partition(":")
    if kind not in DEVICE_TYPES or (index and not index.isdigit()):
        raise ModelLoadError(
            f"unknown device {str(device)!r}: use one of auto, {', '.join(DEVICE_TYPES)} "
            f"(or cuda:N); available here: {', '.join(here)}"
        )
    if kind == "cuda":
        if not torch.cuda.is_available():
            why = (
                "this torch build has no CUDA support"
                if torch.version.cuda is None
                else "no CUDA GPU is visible (check CUDA_VISIBLE_DEVICES and the driver)"
            )
            raise ModelLoadError(
                f"device {text!r} is not available: {why} (torch {torch.__version__}); "
                f"available here: {', '.join(here)}"
            )
        if index and int(index) >= torch.cuda.device_count():
            raise ModelLoadError(
                f"device {text!r} is not available: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s), cuda:0..cuda:"
                f"{torch.cuda.device_count() - 1}"
            )
    if kind == "mps" and "mps" not in here:
        raise ModelLoadError(
            f"device 'mps' is not available: it needs Apple silicon and a torch build with MPS; "
            f"available here: {', '.join(here)}"
        )
    return text


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """A dtype name (``bf16``, ``float16``, ``torch.float32``) -> a float torch dtype, or None.

    Raises:
        ModelLoadError: anything but float32, float16, bfloat16 or float64 (reference checks);
            an int8 model would need a quantisation scheme, which load_model does not apply.
    """
    if dtype is None:
        return None
    if isinstance(dtype, torch.dtype):
        if dtype in DTYPE_TOLERANCE:
            return dtype
        name = str(dtype)
    else:
        name = str(dtype).strip().lower().removeprefix("torch.")
        if name in _DTYPE_ALIASES:
            return _DTYPE_ALIASES[name]
    raise ModelLoadError(
        f"unknown dtype {name!r}: use float32 (fp32), float16 (fp16) or bfloat16 (bf16)"
    )
