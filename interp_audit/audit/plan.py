"""How many clusters would make each check decidable? A power plan from a pilot run.

A cluster-bootstrap half-width shrinks as ``1 / sqrt(G)`` in the number of clusters ``G``
(``half_width ~ t * sd_between / sqrt(G)``). A test is decidable when the half-width is smaller
than the distance from the estimate to the tolerance (to pass or to fail), or smaller than the
tolerance itself for a zero effect. From a pilot's half-width ``h`` over ``G`` clusters and that
distance ``d``, the clusters needed are ``ceil(G * (h / d)^2)`` (and at least ``min_clusters``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from interp_audit.audit.evidence import EvidenceRow, Limit, ShareRow
from interp_audit.stats.bootstrap import z_value

__all__ = ["PlanRow", "plan", "plan_rows"]


@dataclass(frozen=True)
class PlanRow:
    """One tested quantity of a check, and the clusters it needs to be decided."""

    check: str
    part: str
    estimate: float
    threshold: float
    clusters: int
    half_width: float
    sd_between: float | None
    distance: float
    needed: int | None
    verdict: str
    note: str = ""

    def line(self) -> str:
        need = "-" if self.needed is None else str(self.needed)
        sd = "-" if self.sd_between is None else f"{self.sd_between:.4g}"
        return (
            f"{self.check:<42.42s} {self.part:<22.22s} {self.estimate:+9.4f} {self.threshold:>8g} "
            f"±{self.half_width:<8.4f} {sd:>8s} {self.clusters:>5d} {need:>7s}  {self.verdict}"
            + (f" ({self.note})" if self.note else "")
        )


HEADER = (
    f"{'check':<42s} {'tested':<22s} {'estimate':>9s} {'tol':>8s} {'half-w':<9s} "
    f"{'sd_betw':>8s} {'have':>5s} {'need':>7s}  verdict now"
)


def _row(check, part: str, row: EvidenceRow, limit: Limit, min_clusters: int) -> PlanRow:
    estimate = float(row.estimate or 0.0)
    g, h = int(row.clusters or 0), float(row.half_width or 0.0)
    if limit.side == "band":
        distance = abs(limit.value - abs(estimate)) if abs(estimate) > 0 else limit.value
    else:
        distance = abs(limit.value - estimate)
    sd = h * math.sqrt(g) / z_value(check.confidence) if g >= 2 else None
    note = ""
    if g < 2:
        needed, note = None, "one cluster: no between-cluster spread to plan from"
    elif distance <= 0:
        needed, note = None, "the estimate sits on the tolerance: no sample size decides it"
    else:
        needed = max(min_clusters, math.ceil(g * (h / distance) ** 2))
    return PlanRow(
        check.name,
        part,
        estimate,
        limit.value,
        g,
        h,
        sd,
        distance,
        needed,
        str(row.verdict or check.verdict),
        note,
    )


def _part(row: EvidenceRow) -> str:
    """The tested quantity's name: a group, a path, a measure or a component."""
    for key in ("group", "path", "measure", "component"):
        value = getattr(row, key, None)
        if value:
            return str(value)
    return row.label


def plan_rows(checks, min_clusters: dict[str, int] | None = None) -> list[PlanRow]:
    """Plan rows for a pilot's CheckResults (``min_clusters`` by check name, default 10): every
    evidence row with a half-width and a band (tolerance) or upper limit (budget, max share)."""
    from interp_audit.stats.bootstrap import DEFAULT_MIN_CLUSTERS

    rows = []
    for c in checks:
        m = (min_clusters or {}).get(c.name, DEFAULT_MIN_CLUSTERS)
        for row in c.evidence:
            limit = row.limit
            if row.half_width is None or limit is None or limit.side == "lower":
                continue
            part = _part(row)
            if isinstance(row, ShareRow):
                part = f"max share ({part})"
            rows.append(_row(c, part, row, limit, m))
    return rows


def plan(spec, **audit_kwargs) -> list[PlanRow]:
    """Run ``spec`` once as a pilot and plan every tested quantity from it."""
    from interp_audit.audit.run import audit
    from interp_audit.audit.spec import load_spec

    parsed, _ = load_spec(spec)
    report = audit(parsed if not isinstance(spec, str) else spec, **audit_kwargs)
    mins = dict(zip(parsed.check_names(), (c.min_clusters for c in parsed.checks), strict=True))
    return plan_rows(report.checks, mins)
