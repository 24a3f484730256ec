"""Path effects derived from the spec's causal graph, shared by the graph-aware check kinds
(path_invariance with ``source``, responsiveness, intervention's ``preserve``).

Every path from an audited variable to the outcome gets its own path-specific contrast (drawn
once per audit and memoised). Each effect is reported two ways, labelled: conditional on the
rendered input changing (the mean over the contrast's pairs, with its bootstrap CI), and over
all in-scope units (that times the fraction of units whose input changed: the others' input,
hence output, is identical, so their effect is exactly 0; its CI carries the fraction's own
sampling error too, see :func:`over_all_units_ci`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from interp_audit.audit.context import AuditContext
from interp_audit.audit.measure import clusters_of, pair_effects
from interp_audit.causal.graph import format_path
from interp_audit.core.errors import EmptyPathError, SpecError
from interp_audit.stats.bootstrap import Interval, mean_ci, percentile_ci


def causal_model(ctx: AuditContext, where: str):
    if ctx.causal is None or ctx.causal.model is None:
        raise SpecError(
            f"{where} derives its paths from the causal graph: add a 'causal' section (graph, "
            "scm, render, interventions) to the spec"
        )
    return ctx.causal.model


def sources_of(source: str | list[str] | None, cm, where: str) -> list[str]:
    if source is None:
        if not cm.interventions:
            raise SpecError(f"{where}: name 'source' or declare causal.interventions")
        return list(cm.interventions)
    out = [source] if isinstance(source, str) else list(source)
    for s in out:
        cm.graph._node(s, f"{where}: source")
    return out


def path_rows(
    ctx: AuditContext,
    source: str,
    paths: list[tuple[str, ...]],
    *,
    n: int,
    seed: int,
    kw: dict[str, Any],
) -> list[dict[str, Any]]:
    """One row per path: its role, why, the effect (conditional and over all units) with CIs,
    and the per-pair effects (key ``_pairs``, dropped before reporting)."""
    cm = ctx.causal.model
    rows = []
    for path in paths:
        row: dict[str, Any] = {
            "source": source,
            "path": format_path(path),
            "role": "admissible" if cm.graph.admissible(path) else "inadmissible",
            "why": cm.graph.why(path),
        }
        try:
            cs = ctx.causal.path_contrast(source, path, n=n, seed=seed)
        except EmptyPathError:
            row.update(
                effect=0.0, ci=[0.0, 0.0], n=0, fraction_changed=0.0,
                note="no unit's rendered input changes along this path: effect 0 exactly",
                _pairs=None, _contrast=None,
            )  # fmt: skip
            rows.append(row)
            continue
        clean, cf = pair_effects(ctx.subject, cs, ctx.metric)
        iv = mean_ci(clean - cf, clusters_of(cs), **kw)
        frac = float(cs.meta.get("fraction_changed", 1.0))
        scope = int(cs.meta.get("n_in_scope", 0))
        row.update(
            {
                "effect": iv.point,
                "ci": [iv.lo, iv.hi],
                "n": len(cs),
                "effect over all units": iv.point * frac,
                "ci over all units": over_all_units_ci(iv, frac, scope, kw),
                "fraction_changed": frac,
                "n_in_scope": scope,
                "_pairs": clean - cf,
                "_contrast": cs,
            }
        )
        rows.append(row)
    return rows


def over_all_units_ci(
    iv: Interval, frac: float, n_in_scope: int, kw: dict[str, Any]
) -> list[float]:
    """CI of the effect over all in-scope units, ``conditional effect x fraction changed``,
    with both sampling errors: the conditional mean's bootstrap draws times binomial draws of
    the fraction (the fraction counts every unit drawn; independent of the kept pairs' values).
    Without the scope size (``n_in_scope`` 0) the fraction is taken as exact."""
    if n_in_scope <= 0:
        return [iv.lo * frac, iv.hi * frac]
    gen = torch.Generator().manual_seed(int(kw.get("seed", 0)) + 1)
    m = len(iv.samples)
    draws = torch.binomial(
        torch.full((m,), float(n_in_scope), dtype=torch.float64),
        torch.full((m,), frac, dtype=torch.float64),
        generator=gen,
    )
    confidence = float(kw.get("confidence", iv.confidence))
    lo, hi = percentile_ci(iv.samples.double() * draws / n_in_scope, confidence).tolist()
    return [lo, hi]


def public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not k.startswith("_")}


def pair_values(row: dict[str, Any]) -> Tensor | None:
    return row.get("_pairs")
