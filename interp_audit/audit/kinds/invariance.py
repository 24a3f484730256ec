"""``invariance``: the output must not change when the audited variable is swapped.

The statistic is the mean per-pair effect (clean minus counterfactual metric) with its cluster
bootstrap CI, overall and per group: pass when every interval lies inside ±tolerance, fail when
one lies entirely outside (Holm-corrected over the groups), else inconclusive.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from interp_audit.audit.context import AuditContext
from interp_audit.audit.measure import (
    band_family,
    clusters_of,
    first_reasons,
    groups_of,
    pair_effects,
)
from interp_audit.audit.registry import CheckKind, register_check
from interp_audit.audit.result import CheckResult
from interp_audit.audit.sections import CheckSpec


class InvarianceCheck(CheckSpec):
    """Total effect of a swap on the metric must stay within ±tolerance (overall and per group)."""

    kind: Literal["invariance"]
    """``invariance``."""
    contrast: str
    """The contrast set (swap of the audited variable)."""
    tolerance: float = Field(ge=0)
    """The mean effect (clean minus counterfactual metric) must lie within ±tolerance."""
    per_group: bool = True
    """Also test every group of the contrast set (Holm-corrected)."""


def run(chk: InvarianceCheck, ctx: AuditContext, name: str) -> CheckResult:
    cs = ctx.contrasts[chk.contrast]
    clean, cf = pair_effects(ctx.subject, cs, ctx.metric)
    effect = clean - cf
    tests = [({"group": "all"}, effect, clusters_of(cs))]
    if chk.per_group:
        tests += [
            ({"group": g}, effect[idx], clusters_of(cs, idx)) for g, idx in groups_of(cs).items()
        ]
    rows, ivs, verdict, correction = band_family(tests, chk.tolerance, chk, ctx.seed)
    overall = ivs[0]
    msg = (
        f"total effect of {chk.contrast!r} on {ctx.metric.name}: {overall.point:+.4f} "
        f"[{overall.lo:+.4f}, {overall.hi:+.4f}] (±{overall.half_width:.4f} over "
        f"{overall.n_clusters} clusters); tolerance ±{chk.tolerance}"
    )
    bad = [r for r in rows if r["verdict"] == "fail"]
    unsure = [r for r in rows if r["verdict"] == "inconclusive"]
    if bad:
        worst = max(bad, key=lambda d: max(abs(d["ci"][0]), abs(d["ci"][1])))
        reason = f"group {worst['group']!r}: {worst['reason']}"
        msg += (
            f"; violated by group {worst['group']!r} ({worst['effect']:+.4f} "
            f"[{worst['ci'][0]:+.4f}, {worst['ci'][1]:+.4f}])"
        )
    elif unsure:
        reason = first_reasons(unsure, lambda r: f"group {r['group']!r}", "more groups")
    else:
        reason = f"every interval inside ±{chk.tolerance}"
    return CheckResult(
        name,
        chk.kind,
        verdict,
        overall.point,
        (overall.lo, overall.hi),
        chk.tolerance,
        msg,
        rows,
        chk.confidence,
        reason=reason,
        clusters=overall.n_clusters,
        correction=correction,
    )


register_check(
    CheckKind(
        "invariance",
        InvarianceCheck,
        run,
        "the total effect of a swap must stay within ±tolerance, overall and per group",
    )
)
