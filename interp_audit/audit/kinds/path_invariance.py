"""``path_invariance``: inadmissible paths carry no effect; admissible ones are reported beside.

Two forms. With ``source`` (one variable or several), the paths come from the spec's causal
graph: **every** path from each source to the outcome is measured on its own path-specific
contrast, the inadmissible ones are checked, the admissible ones reported (nothing is listed by
hand, so a path cannot be forgotten). Without it, ``inadmissible`` / ``admissible`` map path
names to contrast sets built elsewhere. Every inadmissible path's CI must lie inside ±tolerance
(pass); one entirely outside, Holm-corrected over the inadmissible paths, fails; anything else
is inconclusive.
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
    """(inadmissible tests, admissible measurements, rows for paths that change nothing)."""
    cm = causal_model(ctx, f"check {name!r}")
    tests: list[Measured] = []
    shown: list[Measured] = []
    exact: list[dict[str, Any]] = []
    for src in sources_of(chk.source, cm, f"check {name!r}"):
        for r in path_rows(ctx, src, cm.graph.paths(src), n=chk.n, seed=chk.seed, kw=kw):
            if r["_pairs"] is None:  # no unit's input changes: the effect is 0 exactly
                exact.append({**public(r), "verdict": "pass", "passed": True})
                continue
            fields = {k: v for k, v in public(r).items() if not k.startswith(("effect", "ci"))}
            item = (fields, r["_pairs"], clusters_of(r["_contrast"]))
            (tests if r["role"] == "inadmissible" else shown).append(item)
    return tests, shown, exact


def _named_form(chk: PathInvarianceCheck, ctx: AuditContext):
    tests: list[Measured] = []
    shown: list[Measured] = []
    for role, paths in (("inadmissible", chk.inadmissible), ("admissible", chk.admissible)):
        for path, cname in paths.items():
            cs = ctx.contrasts[cname]
            clean, cf = pair_effects(ctx.subject, cs, ctx.metric)
            item = ({"path": path, "role": role, "contrast": cname}, clean - cf, clusters_of(cs))
            (tests if role == "inadmissible" else shown).append(item)
    return tests, shown, []


def _over_all_units(row: dict[str, Any], iv, kw: dict[str, Any]) -> dict[str, Any]:
    frac = row.get("fraction_changed")
    if frac is not None:
        row["effect over all units"] = row["effect"] * frac
        row["ci over all units"] = over_all_units_ci(iv, frac, row.get("n_in_scope", 0), kw)
    return row


def run(chk: PathInvarianceCheck, ctx: AuditContext, name: str) -> CheckResult:
    kw = chk.resampling(ctx.seed).kw()
    graph = chk.source is not None
    tests, measured, exact = _graph_form(chk, ctx, name, kw) if graph else _named_form(chk, ctx)
    rows, ivs, verdict, correction = (
        band_family(tests, chk.tolerance, chk, ctx.seed) if tests else ([], [], "pass", "")
    )
    rows = [_over_all_units(r, iv, kw) for r, iv in zip(rows, ivs, strict=True)]
    shown = []
    for fields, values, clusters in measured:
        iv = mean_ci(values, clusters, **kw)
        row = {**fields, "n": len(values), "effect": iv.point, **interval_row(iv)}
        shown.append(_over_all_units({**row, "verdict": None, "passed": None}, iv, kw))
    allowed = ", ".join(f"{d['path']} {d['effect']:+.4f}" for d in shown)
    scope = " (conditional on the input changing)" if graph else ""
    if not rows:
        msg = f"no inadmissible path carries a change from {chk.source}: nothing to violate"
        msg += f"; admissible (allowed): {allowed}" if allowed else ""
        return CheckResult(
            name, chk.kind, "pass", 0.0, (0.0, 0.0), chk.tolerance, msg, exact + shown,
            chk.confidence, reason="no inadmissible path changes the input",
        )  # fmt: skip
    worst_i = max(range(len(rows)), key=lambda i: max(abs(ivs[i].lo), abs(ivs[i].hi)))
    worst, wiv = rows[worst_i], ivs[worst_i]
    bad = [d["path"] for d in rows if d["verdict"] == "fail"]
    unsure = [d for d in rows if d["verdict"] == "inconclusive"]
    msg = (
        f"largest inadmissible path effect{scope}: {worst['path']} {worst['effect']:+.4f} "
        f"[{worst['ci'][0]:+.4f}, {worst['ci'][1]:+.4f}] (±{wiv.half_width:.4f}); "
        f"tolerance ±{chk.tolerance}"
        + (f"; violated on {', '.join(bad)}" if bad else "")
        + (f"; inconclusive on {', '.join(d['path'] for d in unsure)}" if unsure else "")
        + (f"; admissible (allowed): {allowed}" if allowed else "")
    )
    if bad:
        reason = "; ".join(f"path {d['path']}: {d['reason']}" for d in rows if d["path"] in bad)
    elif unsure:
        reason = "; ".join(f"path {d['path']}: {d['reason']}" for d in unsure)
    else:
        reason = f"every inadmissible path's interval inside ±{chk.tolerance}"
    return CheckResult(
        name,
        chk.kind,
        verdict,
        worst["effect"],
        tuple(worst["ci"]),
        chk.tolerance,
        msg,
        rows + exact + shown,
        chk.confidence,
        reason=reason,
        clusters=min(iv.n_clusters for iv in ivs),
        correction=correction,
    )


register_check(
    CheckKind(
        "path_invariance",
        PathInvarianceCheck,
        run,
        "every inadmissible path's effect within ±tolerance; admissible paths reported",
    )
)
