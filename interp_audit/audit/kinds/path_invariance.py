"""``path_invariance``: inadmissible paths carry no effect; admissible ones are reported beside.

Two forms. With ``source`` (one variable or several), the paths come from the spec's causal
graph: **every** path from each source to the outcome is measured on its own path-specific
contrast, the inadmissible ones are checked, the admissible ones reported (nothing is listed by
hand, so a path cannot be forgotten). Without it, ``inadmissible`` / ``admissible`` map path
names to contrast sets built elsewhere. Every inadmissible path's CI must lie inside ±tolerance
(pass); one entirely outside, Holm-corrected over the inadmissible paths, fails; anything else
is inconclusive.

Graph form over the population (``exact``): every path's effect is a weighted sum over the
distinct prompt pairs of the SCM's whole population: exact enumeration when every noise is
discrete (the default then; verdicts are exact: the effect itself against the band, no
interval, labelled ``exact``), otherwise ``n_units`` drawn units deduplicated (the interval
reflects the sampling of units only).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from interp_audit.audit.causal_measure import (
    causal_model,
    over_all_units_ci,
    path_rows,
    public,
    sources_of,
    use_population,
)
from interp_audit.audit.context import AuditContext
from interp_audit.audit.measure import band_family, clusters_of, pair_effects
from interp_audit.audit.registry import CheckKind, register_check
from interp_audit.audit.result import CheckResult
from interp_audit.audit.sections import CheckSpec
from interp_audit.stats.bootstrap import interval_row, mean_ci


class PathInvarianceCheck(CheckSpec):
    """``source`` (graph form), or path name -> contrast set for inadmissible / admissible."""

    kind: Literal["path_invariance"]
    """``path_invariance``."""
    source: str | list[str] | None = None
    """Graph form: the audited variable(s); every path from each to the outcome is measured."""
    n: int = Field(200, ge=1)
    """Graph form: units (pairs) per path whose rendered input changes."""
    seed: int = 0
    """Graph form: units are drawn with seeds seed * 1000 + k."""
    exact: bool | None = None
    """Graph form: measure each path over the SCM's population instead of ``n`` sampled pairs:
    exact enumeration when every noise is discrete (default then: the verdict is exact), else
    ``n_units`` drawn units deduplicated into distinct prompt pairs. ``false``: sampled pairs."""
    n_units: int = Field(100_000, ge=1, le=10_000_000)
    """Graph form with ``exact``: units drawn when some noise is continuous."""
    inadmissible: dict[str, str] = Field(default_factory=dict)
    """Named form: path name -> its path-specific contrast set; each must carry no effect."""
    admissible: dict[str, str] = Field(default_factory=dict)
    """Named form: path name -> contrast set, reported beside (allowed to carry signal)."""
    tolerance: float = Field(ge=0)
    """Every inadmissible path's effect must lie within ±tolerance."""

    @model_validator(mode="after")
    def _one_form(self):
        if self.source is not None and (self.inadmissible or self.admissible):
            raise ValueError(
                "give either 'source' (paths from the causal graph) or 'inadmissible'/"
                "'admissible' contrasts, not both"
            )
        if self.source is None and self.exact:
            raise ValueError("exact: true needs the graph form ('source'): a population of units")
        if self.source is None and not self.inadmissible:
            raise ValueError(
                "path_invariance needs 'source' (every path from it, from the causal graph) or "
                "'inadmissible' (path name -> contrast)"
            )
        return self

    def contrast_refs(self) -> list[tuple[str, str]]:
        return [(f"inadmissible.{p}", c) for p, c in self.inadmissible.items()] + [
            (f"admissible.{p}", c) for p, c in self.admissible.items()
        ]


Measured = tuple[dict[str, Any], Any, list[str] | None]


def _graph_form(chk: PathInvarianceCheck, ctx: AuditContext, name: str, kw):
    """(inadmissible rows, admissible rows, rows for paths that change nothing): graph rows
    with their per-pair effects (``_pairs``) and, over a population, their intervals."""
    cm = causal_model(ctx, f"check {name!r}")
    tests: list[dict[str, Any]] = []
    shown: list[dict[str, Any]] = []
    exact: list[dict[str, Any]] = []
    pop = use_population(ctx, chk.exact)
    for src in sources_of(chk.source, cm, f"check {name!r}"):
        rows = path_rows(
            ctx, src, cm.graph.paths(src), n=chk.n, seed=chk.seed, kw=kw,
            population=pop, exact=chk.exact, n_units=chk.n_units,
        )  # fmt: skip
        for r in rows:
            if r["_pairs"] is None:  # no unit's input changes: the effect is 0 exactly
                exact.append({**public(r), "verdict": "pass", "passed": True})
                continue
            (tests if r["role"] == "inadmissible" else shown).append(r)
    return tests, shown, exact


def _named_form(chk: PathInvarianceCheck, ctx: AuditContext):
    tests: list[dict[str, Any]] = []
    shown: list[dict[str, Any]] = []
    for role, paths in (("inadmissible", chk.inadmissible), ("admissible", chk.admissible)):
        for path, cname in paths.items():
            cs = ctx.contrasts[cname]
            clean, cf = pair_effects(ctx.subject, cs, ctx.metric)
            row = {"path": path, "role": role, "contrast": cname, "_pairs": clean - cf}
            row["_contrast"] = cs
            (tests if role == "inadmissible" else shown).append(row)
    return tests, shown, []


_MEASURED = ("effect", "ci", "half_width", "clusters", "n", "ci over all units")


def _fields(r: dict[str, Any]) -> dict[str, Any]:
    """A row's descriptive fields (the family test adds the effect and its interval)."""
    return {k: v for k, v in public(r).items() if k not in _MEASURED}


def _over_all_units(row: dict[str, Any], iv, kw: dict[str, Any], src: dict[str, Any]):
    if "_population" in src:  # a population row carries its own (exact or resampled) value
        if "ci over all units" in src:
            row["ci over all units"] = src["ci over all units"]
        return row
    frac = row.get("fraction_changed")
    if frac is not None:
        row["effect over all units"] = row["effect"] * frac
        row["ci over all units"] = over_all_units_ci(iv, frac, row.get("n_in_scope", 0), kw)
    return row


def run(chk: PathInvarianceCheck, ctx: AuditContext, name: str) -> CheckResult:
    kw = chk.resampling(ctx.seed).kw()
    graph = chk.source is not None
    tests, measured, zero = _graph_form(chk, ctx, name, kw) if graph else _named_form(chk, ctx)
    family = [(_fields(r), r["_pairs"], clusters_of(r["_contrast"])) for r in tests]
    is_exact = [bool(r.get("_exact")) for r in tests]
    rows, ivs, verdict, correction = (
        band_family(
            family, chk.tolerance, chk, ctx.seed,
            intervals=[r.get("_iv") for r in tests], exact=is_exact,
        )
        if tests
        else ([], [], "pass", "")
    )  # fmt: skip
    rows = [_over_all_units(r, iv, kw, t) for r, iv, t in zip(rows, ivs, tests, strict=True)]
    shown = []
    for r in measured:
        iv = r.get("_iv") or mean_ci(r["_pairs"], clusters_of(r["_contrast"]), **kw)
        row = {**_fields(r), "n": len(r["_pairs"]), "effect": iv.point}
        if not r.get("_exact"):
            row.update(interval_row(iv))
        shown.append(_over_all_units({**row, "verdict": None, "passed": None}, iv, kw, r))
    all_exact = bool(tests) and all(is_exact)
    allowed = ", ".join(f"{d['path']} {d['effect']:+.4f}" for d in shown)
    scope = (
        " (exact, over the population; conditional on the input changing)"
        if all_exact
        else " (over the population; conditional on the input changing)"
        if graph and any("_population" in r for r in tests + measured)
        else " (conditional on the input changing)"
        if graph
        else ""
    )
    if not rows:
        msg = f"no inadmissible path carries a change from {chk.source}: nothing to violate"
        msg += f"; admissible (allowed): {allowed}" if allowed else ""
        return CheckResult(
            name, chk.kind, "pass", 0.0, (0.0, 0.0), chk.tolerance, msg, zero + shown,
            chk.confidence, reason="no inadmissible path changes the input",
        )  # fmt: skip
    worst_i = max(range(len(rows)), key=lambda i: max(abs(ivs[i].lo), abs(ivs[i].hi)))
    worst, wiv = rows[worst_i], ivs[worst_i]
    bad = [d["path"] for d in rows if d["verdict"] == "fail"]
    unsure = [d for d in rows if d["verdict"] == "inconclusive"]
    stated = (
        f"{worst['path']} {worst['effect']:+.4f} (exact: no sampling interval)"
        if all_exact
        else f"{worst['path']} {worst['effect']:+.4f} [{wiv.lo:+.4f}, {wiv.hi:+.4f}] "
        f"(±{wiv.half_width:.4f})"
    )
    msg = (
        f"largest inadmissible path effect{scope}: {stated}; tolerance ±{chk.tolerance}"
        + (f"; violated on {', '.join(bad)}" if bad else "")
        + (f"; inconclusive on {', '.join(d['path'] for d in unsure)}" if unsure else "")
        + (f"; admissible (allowed): {allowed}" if allowed else "")
    )
    if bad:
        reason = "; ".join(f"path {d['path']}: {d['reason']}" for d in rows if d["path"] in bad)
    elif unsure:
        reason = "; ".join(f"path {d['path']}: {d['reason']}" for d in unsure)
    else:
        reason = f"every inadmissible path's {'effect' if all_exact else 'interval'} inside " + (
            f"±{chk.tolerance}"
        )
    return CheckResult(
        name,
        chk.kind,
        verdict,
        worst["effect"],
        (wiv.lo, wiv.hi),
        chk.tolerance,
        msg,
        rows + zero + shown,
        chk.confidence,
        reason=reason,
        clusters=None if all_exact else min(iv.n_clusters for iv in ivs),
        correction=correction,
        exact=all_exact,
    )


register_check(
    CheckKind(
        "path_invariance",
        PathInvarianceCheck,
        run,
        "every inadmissible path's effect within ±tolerance; admissible paths reported",
    )
)
