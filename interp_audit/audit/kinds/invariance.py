"""``invariance``: the output must not change when the audited variable is swapped.

The statistic is the mean per-pair effect (clean minus counterfactual metric) with its bootstrap
CI, overall and per group; the check passes only when every interval lies inside ±tolerance.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..context import AuditContext
from ..measure import groups_of, pair_effects, within
from ..registry import CheckKind, register_check
from ..result import CheckResult
from ..sections import CheckSpec
from ..stats import mean_ci


class InvarianceCheck(CheckSpec):
    """Total effect of a swap on the metric must stay within ±tolerance (overall and per group)."""

    kind: Literal["invariance"]
    contrast: str
    tolerance: float = Field(ge=0)
    per_group: bool = True


def run(chk: InvarianceCheck, ctx: AuditContext, name: str) -> CheckResult:
    cs = ctx.contrasts[chk.contrast]
    clean, cf = pair_effects(ctx.subject, cs, ctx.metric)
    effect = clean - cf
    kw = dict(n_boot=chk.n_boot, confidence=chk.confidence, seed=ctx.seed)
    point, lo, hi = mean_ci(effect, **kw)
    passed = within(lo, hi, chk.tolerance)
    details = [
        {"group": "all", "n": len(effect), "effect": point, "ci": [lo, hi], "passed": passed}
    ]
    if chk.per_group:
        for g, idx in groups_of(cs).items():
            gp, glo, ghi = mean_ci(effect[idx], **kw)
            ok = within(glo, ghi, chk.tolerance)
            details.append(
                {"group": g, "n": len(idx), "effect": gp, "ci": [glo, ghi], "passed": ok}
            )
            passed = passed and ok
    worst = max(details, key=lambda d: max(abs(d["ci"][0]), abs(d["ci"][1])))
    msg = (
        f"total effect of {chk.contrast!r} on {ctx.metric.name}: {point:+.4f} [{lo:+.4f}, "
        f"{hi:+.4f}]; tolerance ±{chk.tolerance}"
    )
    if not passed:
        msg += (
            f"; violated by group {worst['group']!r} ({worst['effect']:+.4f} "
            f"[{worst['ci'][0]:+.4f}, {worst['ci'][1]:+.4f}])"
        )
    return CheckResult(
        name, chk.kind, passed, point, (lo, hi), chk.tolerance, msg, details, chk.confidence
    )


register_check(
    CheckKind(
        "invariance",
        InvarianceCheck,
        run,
        "the total effect of a swap must stay within ±tolerance, overall and per group",
    )
)
