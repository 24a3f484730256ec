"""``path_invariance``: inadmissible paths carry no effect; admissible ones are reported beside.

Each path is measured on its own path-specific contrast set (only the tokens the path reaches
change); every inadmissible path's CI must lie inside ±tolerance.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..context import AuditContext
from ..measure import pair_effects, within
from ..registry import CheckKind, register_check
from ..result import CheckResult
from ..sections import CheckSpec
from ..stats import mean_ci


class PathInvarianceCheck(CheckSpec):
    """Path name -> contrast set, for inadmissible paths (checked) and admissible ones (shown)."""

    kind: Literal["path_invariance"]
    inadmissible: dict[str, str]
    admissible: dict[str, str] = Field(default_factory=dict)
    tolerance: float = Field(ge=0)

    def contrast_refs(self) -> list[tuple[str, str]]:
        return [(f"inadmissible.{p}", c) for p, c in self.inadmissible.items()] + [
            (f"admissible.{p}", c) for p, c in self.admissible.items()
        ]


def run(chk: PathInvarianceCheck, ctx: AuditContext, name: str) -> CheckResult:
    kw = dict(n_boot=chk.n_boot, confidence=chk.confidence, seed=ctx.seed)
    details, passed = [], True
    worst = None
    for role, paths in (("inadmissible", chk.inadmissible), ("admissible", chk.admissible)):
        for path, cname in paths.items():
            clean, cf = pair_effects(ctx.subject, ctx.contrasts[cname], ctx.metric)
            point, lo, hi = mean_ci(clean - cf, **kw)
            ok = within(lo, hi, chk.tolerance) if role == "inadmissible" else None
            row = {
                "path": path,
                "role": role,
                "contrast": cname,
                "effect": point,
                "ci": [lo, hi],
                "passed": ok,
            }
            details.append(row)
            if role == "inadmissible":
                passed = passed and ok
                reach = max(abs(lo), abs(hi))
                if worst is None or reach > max(abs(worst["ci"][0]), abs(worst["ci"][1])):
                    worst = row
    bad = [d["path"] for d in details if d["passed"] is False]
    allowed = ", ".join(
        f"{d['path']} {d['effect']:+.4f}" for d in details if d["role"] == "admissible"
    )
    msg = (
        f"largest inadmissible path effect: {worst['path']} {worst['effect']:+.4f} "
        f"[{worst['ci'][0]:+.4f}, {worst['ci'][1]:+.4f}]; tolerance ±{chk.tolerance}"
        + (f"; violated on {', '.join(bad)}" if bad else "")
        + (f"; admissible (allowed): {allowed}" if allowed else "")
    )
    return CheckResult(
        name,
        chk.kind,
        passed,
        worst["effect"],
        tuple(worst["ci"]),
        chk.tolerance,
        msg,
        details,
        chk.confidence,
    )


register_check(
    CheckKind(
        "path_invariance",
        PathInvarianceCheck,
        run,
        "every inadmissible path's effect within ±tolerance; admissible paths reported",
    )
)
