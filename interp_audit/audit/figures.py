"""Report figures shared by check kinds: estimates with their CIs against what they are tested
against. A kind without its own ``figure`` hook gets :func:`interval_figure`; a kind with its
own (``kinds/intervention.py``, ``kinds/membership.py``) may use the helpers here.

Figures take raw text (names, labels): the renderer escapes every string of a figure.
"""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from interp_audit.audit.evidence import EvidenceRow
from interp_audit.audit.result import CheckResult

__all__ = ["COLORS", "ci_error_bars", "error_bars", "interval_figure", "row_color", "short_layout"]

COLORS = {
    "pass": "#2e7d32",
    "fail": "#c62828",
    "inconclusive": "#ef6c00",
    "admissible": "#9e9e9e",
    "measured": "#1565c0",
}


def row_color(row: EvidenceRow) -> str:
    """Grey for an admissible path (reported, not tested), red violated, orange inconclusive,
    blue otherwise."""
    if row.role == "admissible" and row.outcome is None:
        return COLORS["admissible"]
    return {"fail": COLORS["fail"], "inconclusive": COLORS["inconclusive"]}.get(
        row.outcome or "", COLORS["measured"]
    )


def ci_error_bars(values: Sequence[float], cis: Sequence[Sequence[float] | None]) -> dict:
    """Plotly's asymmetric ``error_y`` (or ``error_x``) for ``values`` with their ``(lo, hi)``
    CIs (none drawn where a CI is None)."""
    pairs = list(zip(values, cis, strict=True))
    return {
        "type": "data",
        "symmetric": False,
        "array": [ci[1] - v if ci else 0.0 for v, ci in pairs],
        "arrayminus": [v - ci[0] if ci else 0.0 for v, ci in pairs],
    }


def error_bars(rows: Sequence[EvidenceRow]) -> dict:
    """Asymmetric error bars from each row's CI (none where a row has no CI)."""
    return ci_error_bars([float(r.estimate or 0.0) for r in rows], [r.ci for r in rows])


def short_layout(fig: go.Figure, title: str, height: int = 300) -> go.Figure:
    """A short title (the legend lives in the caption) and tight margins."""
    fig.update_layout(
        title={"text": title, "font": {"size": 14}},
        template="plotly_white",
        height=height,
        margin={"l": 50, "r": 20, "t": 40, "b": 40},
        showlegend=False,
    )
    return fig


def interval_figure(check: CheckResult) -> go.Figure:
    """Each evidence row with a CI as a bar with its error bar; the tolerance as a green band
    (two-sided limits), a dashed red line (upper limits: budgets, shares) or dashed lines at
    ±floor (lower limits). Without rows that have a CI: the check's statistic alone."""
    rows = [r for r in check.evidence if r.ci is not None and r.estimate is not None]
    if not rows:
        from interp_audit.audit.evidence import MeasureRow

        rows = [MeasureRow(measure=check.name, value=check.statistic, ci=check.ci)]
    labels = [f"{r.label} (admissible)" if r.role == "admissible" else r.label for r in rows]
    fig = go.Figure(
        go.Bar(
            x=labels,
            y=[float(r.estimate or 0.0) for r in rows],
            error_y=error_bars(rows),
            marker_color=[row_color(r) for r in rows],
        )
    )
    limits = {(r.limit.side, r.limit.value) for r in rows if r.limit is not None}
    if not limits:
        limits = {("band", check.threshold)}
    for side, value in sorted(limits):
        if side == "band":
            fig.add_hrect(y0=-value, y1=value, fillcolor=COLORS["pass"], opacity=0.12, line_width=0)
        elif side == "upper":
            fig.add_hline(y=value, line_dash="dash", line_color=COLORS["fail"])
        else:
            for y in (value, -value):
                fig.add_hline(y=y, line_dash="dash", line_color=COLORS["pass"])
    return short_layout(fig, f"{check.name}: {int(round(100 * check.confidence))}% CI")
