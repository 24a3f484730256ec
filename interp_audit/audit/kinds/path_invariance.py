"""``path_invariance``: inadmissible paths carry no effect; admissible ones are reported beside.

Each path is measured on its own path-specific contrast set (only the tokens the path reaches
change); every inadmissible path's CI must lie inside ±tolerance (pass); one entirely outside,
Holm-corrected over the inadmissible paths, fails; anything else is inconclusive.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..context import AuditContext
from ..measure import band_family, clusters_of, pair_effects
from ..registry import CheckKind, register_check
from ..result import CheckResult
from ..sections import CheckSpec
from ..stats import interval_row, mean_ci


class PathInvarianceCheck(CheckSpec):
    """Path name -> contrast set, for inadmissible paths (checked) and admissible ones (shown)."""

    kind: Literal["path_invariance"]
    """``path_invariance``."""
    inadmissible: dict[str, str]
    """Path name -> its path-specific contrast set; each must carry no effect (Holm-corrected)."""
    admissible: dict[str, str] = Field(default_factory=dict)
    """Path name -> contrast set, reported beside (allowed to carry signal)."""
    tolerance: float = Field(ge=0)
    """Every inadmissible path's effect must lie within ±tolerance."""

    def contrast_refs(self) -> list[tuple[str, str]]:
        return [(f"inadmissible.{p}", c) for p, c in self.inadmissible.items()] + [
            (f"admissible.{p}", c) for p, c in self.admissible.items()
        ]


def run(chk: PathInvarianceCheck, ctx: AuditContext, name: str) -> CheckResult:
    kw = dict(n_boot=chk.n_boot, confidence=chk.confidence, seed=ctx.seed)
    tests, shown = [], []
    for path, cname in chk.inadmissible.items():
        cs = ctx.contrasts[cname]
        clean, cf = pair_effects(ctx.subject, cs, ctx.metric)
        tests.append(
            ({"path": path, "role": "inadmissible", "contrast": cname}, clean - cf, clusters_of(cs))
        )
    rows, ivs, verdict, correction = band_family(tests, chk.tolerance, chk, ctx.seed)
    for path, cname in chk.admissible.items():
        cs = ctx.contrasts[cname]
        clean, cf = pair_effects(ctx.subject, cs, ctx.metric)
        iv = mean_ci(clean - cf, clusters_of(cs), **kw)
        shown.append(
            {
                "path": path,
                "role": "admissible",
                "contrast": cname,
                "n": len(cs),
                "effect": iv.point,
                **interval_row(iv),
                "verdict": None,
                "passed": None,
            }
        )
    worst_i = max(range(len(rows)), key=lambda i: max(abs(ivs[i].lo), abs(ivs[i].hi)))
    worst, wiv = rows[worst_i], ivs[worst_i]
    bad = [d["path"] for d in rows if d["verdict"] == "fail"]
    unsure = [d for d in rows if d["verdict"] == "inconclusive"]
    allowed = ", ".join(f"{d['path']} {d['effect']:+.4f}" for d in shown)
    msg = (
        f"largest inadmissible path effect: {worst['path']} {worst['effect']:+.4f} "
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
        rows + shown,
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
