"""``ia.check(kind, subject, contrast, **keys)``: one check from Python, no YAML.

The keys are the same as a spec's check section (``interp-audit schema``, docs/spec-reference.md)
and are validated by the same pydantic model; wherever a spec names a contrast set, pass a
:class:`~interp_audit.ContrastSet` instead::

    res = ia.check("invariance", subject, pairs, tolerance=0.01, min_clusters=5)
    res = ia.check("intervention", subject, pairs, tolerance=0.01,
                   ablate={"components": ["L0H0"], "kind": "mean", "reference": pairs},
                   utility={"contrast": utility_pairs, "metric": "accuracy", "budget": 0.02})
    res = ia.check("path_invariance", subject, None, inadmissible={"direct": direct_pairs},
                   tolerance=0.25)
    res            # displays itself (verdict, interval, half-width, evidence rows)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from interp_audit.audit.context import AuditContext
from interp_audit.audit.kinds import check_kinds
from interp_audit.audit.registry import run_check
from interp_audit.audit.result import CheckResult
from interp_audit.core.errors import SpecError, did_you_mean
from interp_audit.engine.contrasts import ContrastSet
from interp_audit.model.metrics import Metric, get_metric
from interp_audit.model.subject import Subject

__all__ = ["check"]


def _name_contrasts(value: Any, found: dict[str, ContrastSet], key: str) -> Any:
    """Replace every ContrastSet in the keys by a generated name, remembering the set."""
    if isinstance(value, ContrastSet):
        for name, cs in found.items():
            if cs is value:
                return name
        found[key] = value
        return key
    if isinstance(value, dict):
        return {k: _name_contrasts(v, found, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_name_contrasts(v, found, f"{key}[{i}]") for i, v in enumerate(value)]
    return value


def check(
    kind: str,
    subject: Subject,
    contrast: ContrastSet | None = None,
    *,
    metric: str | Metric = "logit_diff",
    seed: int = 0,
    name: str | None = None,
    effects: dict | None = None,
    base: str | Path | None = None,
    **keys: Any,
) -> CheckResult:
    """Run one check of a registered ``kind`` on in-memory objects.

    Args:
        kind: ``invariance``, ``path_invariance``, ``component_mediation``, ``intervention``,
            ``memorization`` or any registered kind.
        subject: the model (``ia.load_model(...)``).
        contrast: the check's ``contrast`` (kinds that take one).
        metric: a metric name or :class:`~interp_audit.model.metrics.Metric`.
        seed: seeds the bootstrap (and resample ablations).
        effects: located Effects by name, for ``ablate: {from_locate: NAME, top_k: k}``.
        base: folder that relative data files (utility CSVs, SAEs) resolve against.
        **keys: the check's spec keys; ContrastSets wherever a spec names a contrast.
    """
    kinds = check_kinds()
    if kind not in kinds:
        raise SpecError(
            f"unknown check kind {kind!r}; valid kinds: {', '.join(kinds)}"
            f"{did_you_mean(kind, kinds)}"
        )
    found: dict[str, ContrastSet] = {}
    if contrast is not None:
        keys["contrast"] = contrast
    raw = _name_contrasts(keys, found, "contrast")
    spec_model = kinds[kind].spec
    try:
        spec = spec_model.model_validate({"kind": kind, **raw})
    except ValidationError as err:
        errors = err.errors()
        e = next((x for x in errors if x["type"] == "extra_forbidden"), errors[0])
        where = ".".join(str(x) for x in e["loc"])
        if e["type"] == "extra_forbidden":
            valid = list(spec_model.model_fields)
            raise SpecError(
                f"ia.check({kind!r}): unknown key {where!r}"
                f"{did_you_mean(str(e['loc'][-1]), valid)}; valid keys: {', '.join(valid)}"
            ) from None
        raise SpecError(f"ia.check({kind!r}): {where}: {e['msg']}") from None
    for key, cname in spec.contrast_refs():
        if cname not in found:
            raise SpecError(
                f"ia.check({kind!r}): {key} must be a ContrastSet (got the name {cname!r})"
            )
    for key, step in spec.locate_refs():
        if step not in (effects or {}):
            raise SpecError(
                f"ia.check({kind!r}): {key} names {step!r}; pass effects={{{step!r}: Effects}}"
            )
    ctx = AuditContext(
        subject=subject,
        contrasts=found,
        metric=get_metric(metric),
        seed=seed,
        base=Path(base) if base is not None else Path.cwd(),
        effects=dict(effects or {}),
    )
    return run_check(kinds[kind], spec, ctx, name or kind)
