"""Path effects derived from the spec's causal graph, shared by the graph-aware check kinds
(path_invariance with ``source``, responsiveness, intervention's ``preserve``).

Every path from an audited variable to the outcome gets its own path-specific contrast (drawn
once per audit and memoised). Each effect is reported two ways, labelled: conditional on the
rendered input changing (the mean over the contrast's pairs, with its bootstrap CI), and over
all in-scope units (that times the fraction of units whose input changed: the others' input,
hence output, is identical, so their effect is exactly 0; its CI carries the fraction's own
sampling error too, see :func:`over_all_units_ci`).

With ``population`` (a check's ``exact``), a path is measured over the population instead: exact
enumeration of the SCM's discrete noise (no interval: the effect is exact) or ``n_units`` drawn
units deduplicated into distinct prompt pairs, each run once and weighted by its count (the
interval reflects the sampling of units only; :mod:`interp_audit.causal.population`).
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
from interp_audit.stats.population import population_intervals


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


def use_population(ctx: AuditContext, exact: bool | None, labels: tuple[str, ...] = ()) -> bool:
    """A check's ``exact``: True measures the population (exact enumeration when every noise
    is discrete, else drawn units); None does so only when enumeration is exact; False samples
    pairs."""
    if exact is None:
        return ctx.causal.enumerable(labels)
    return bool(exact)


def path_rows(
    ctx: AuditContext,
    source: str,
    paths: list[tuple[str, ...]],
    *,
    n: int,
    seed: int,
    kw: dict[str, Any],
    population: bool = False,
    exact: bool | None = None,
    n_units: int = 100_000,
    labels: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """One row per path: its role, why, the effect (conditional and over all units) with CIs,
    and the per-pair effects (key ``_pairs``, dropped before reporting).

    ``population``: measure the population (``exact``/``n_units``, units seeded by ``seed``)
    instead of ``n`` sampled pairs; rows then carry ``_iv`` (the conditional effect's interval,
    exact or over drawn units) and ``exact``, and exact rows have no ``ci``."""
    cm = ctx.causal.model
    rows = []
    setting = (population, exact, n_units, n, seed, tuple(labels), tuple(sorted(kw.items())))
    for path in paths:
        row: dict[str, Any] = {
            "source": source,
            "path": format_path(path),
            "role": "admissible" if cm.graph.admissible(path) else "inadmissible",
            "why": cm.graph.why(path),
        }
        key = ("path row", source, tuple(path), setting)
        if ctx.causal.reuse_measurements and key in ctx.causal._cache:
            rows.append({**ctx.causal._cache[key], **row})  # measured once, role as chosen now
            continue
        rows.append(_measure_path(ctx, row, source, path, n, seed, kw, population, exact,
                                  n_units, labels))  # fmt: skip
        if ctx.causal.reuse_measurements:  # a copy: checks annotate the rows they get
            ctx.causal._cache[key] = {k: v for k, v in rows[-1].items() if k not in ("role", "why")}
    return rows


def _measure_path(ctx, row, source, path, n, seed, kw, population, exact, n_units, labels):
    """One path's effect (sampled pairs, or over the population) into ``row``."""
    if population:
        return _population_row(ctx, row, source, path, exact, n_units, seed, labels, kw)
    try:
        cs = ctx.causal.path_contrast(source, path, n=n, seed=seed)
    except EmptyPathError:
        row.update(
            effect=0.0, ci=[0.0, 0.0], n=0, fraction_changed=0.0,
            note="no unit's rendered input changes along this path: effect 0 exactly",
            _pairs=None, _contrast=None,
        )  # fmt: skip
        return row
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
    return row


def _population_row(ctx, row, source, path, exact, n_units, seed, labels, kw) -> dict[str, Any]:
    try:
        pp = ctx.causal.path_population(
            source, [path], exact=exact, n_units=n_units, seed=seed, labels=labels
        )
    except EmptyPathError:
        pop = ctx.causal.population(exact=exact, n_units=n_units, seed=seed, labels=labels)
        row.update(
            effect=0.0, n=0, fraction_changed=0.0, exact=True, population=pop.describe(),
            note="no unit's rendered input changes along this path: effect 0 exactly",
            _pairs=None, _contrast=None, _iv=None, _exact=True,
        )  # fmt: skip
        return row
    cs = ctx.causal.population_contrast(pp, f"{source}: {format_path(path)}")
    clean, cf = pair_effects(ctx.subject, cs, ctx.metric)
    d = (clean - cf).double()
    iv, iv_all = weighted_effect(pp, d, kw)
    row.update(
        {
            "effect": iv.point,
            "effect over all units": iv_all.point,
            "fraction_changed": pp.fraction_changed,
            "n": len(d),
            "distinct pairs": len(d),
            "units": pp.n_units,
            "exact": pp.exact,
            "population": pp.description,
            "_pairs": d,
            "_contrast": cs,
            "_population": pp,
            "_iv": iv,
            "_exact": pp.exact,
        }
    )
    if not pp.exact:
        row.update(
            {
                "ci": [iv.lo, iv.hi],
                "half_width": iv.half_width,
                "clusters": iv.n_clusters,
                "ci over all units": [iv_all.lo, iv_all.hi],
                "interval": "resampling of the drawn units only",
            }
        )
    else:
        row["interval"] = "none: exact population effect"
    for label, value in pp.label_effects.items():
        row[f"_label effect {label}"] = value
    return row


def weighted_effect(pp, d: Tensor, kw: dict[str, Any]) -> tuple[Interval, Interval]:
    """(conditional on the input changing, over all in-scope units) of per-pair effects ``d``
    weighted by the population's pair masses: exact, or resampling its drawn units."""
    k = len(d)

    def stat(w: Tensor) -> Tensor:
        pairs = w[:, :k]
        total = pairs @ d
        return torch.stack([total / pairs.sum(1), total / w[:, : k + 1].sum(1)], 1)

    weights = torch.cat([pp.weights, pp.rest()])
    return tuple(population_intervals(stat, weights, exact=pp.exact, **_boot(kw)))


def _boot(kw: dict[str, Any]) -> dict[str, Any]:
    return {k: kw[k] for k in ("n_boot", "confidence", "seed") if k in kw}


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
