"""Feature ablation (zero / mean, error kept) as a context: the model is clean again afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Literal

import torch
from torch import Tensor

from interp_audit.core.errors import AuditError, SiteError
from interp_audit.engine.contrasts import ContrastSet
from interp_audit.methods.features.saes import check_sae, split_activation
from interp_audit.model.subject import Subject

__all__ = ["ablate_features", "feature_indices"]


def feature_indices(sae, features: Sequence[int | str]) -> list[int]:
    out = []
    for f in features:
        if isinstance(f, str):
            f = int(f.rsplit("F", 1)[-1]) if "F" in f else int(f)
        if not 0 <= f < int(sae.cfg.d_sae):
            raise SiteError(
                f"feature {f} does not exist; this SAE has features 0..{int(sae.cfg.d_sae) - 1}"
            )
        out.append(f)
    return out


@contextlib.contextmanager
def ablate_features(
    subject: Subject,
    sae,
    features: Sequence[int | str],
    kind: Literal["zero", "mean", "clamp"] = "zero",
    *,
    value: float | None = None,
    reference: ContrastSet | Tensor | None = None,
) -> Iterator[Subject]:
    """Zero-ablate, mean-ablate (mean over ``reference``) or clamp SAE features, the error kept:
    the activation becomes decode(f') + err, so untouched features leave the model unchanged."""
    hook = check_sae(subject, sae)
    idx = feature_indices(sae, features)
    if kind == "clamp" and value is None:
        raise AuditError("clamping features needs value=")
    fill = None
    if kind == "mean":
        if reference is None:
            raise AuditError("mean-ablating features needs reference=")
        from interp_audit.engine.interventions import reference_activations

        acts, mask = reference_activations(subject, reference, [hook])
        f_ref = split_activation(sae, acts[hook])[0]
        m = mask[..., None].to(f_ref.dtype)
        fill = ((f_ref * m).sum((0, 1)) / m.sum((0, 1)))[idx]
    if kind not in ("zero", "mean", "clamp"):
        raise AuditError(f"feature ablation kind must be 'zero', 'mean' or 'clamp'; got {kind!r}")

    def fn(x, *, hook):
        with torch.no_grad():
            f = sae.encode(x)
            err = x - sae.decode(f)
            if kind == "zero":
                f[..., idx] = 0.0
            elif kind == "clamp":
                f[..., idx] = float(value)
            else:
                f[..., idx] = fill.to(f.dtype)
            return sae.decode(f) + err

    with subject.hooks([(hook, fn)]):
        yield subject
