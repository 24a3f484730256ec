"""``Tradeoff``: the repair sweep's table (one row per repair), its Pareto front and plot."""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["OBJECTIVES", "Tradeoff", "mark_pareto"]

# (column, better): the axes of the Pareto front, "up" (larger is better), "down" or "one"
# (closest to 1: an admissible path kept as it was, neither cut nor doubled); "other
# inadmissible left" joins them when the graph has audited sources the repair does not target.
OBJECTIVES = (
    ("inadmissible left", "down"),
    ("admissible kept", "one"),
    ("utility", "up"),
    ("worst-group utility", "up"),
    ("other inadmissible left", "down"),
)
SUMMARY = (
    "repair",
    "inadmissible left",
    "admissible kept",
    "other inadmissible left",
    "other worst path change",
    "utility",
    "utility cost",
    "worst group",
    "worst-group utility",
    "checks broken",
    "flip rate",
    "flip rate change",
    "outcome-rate gap",
    "outcome-rate gap change",
    "robustness (environment risk gap)",
    "privacy (membership AUC)",
    "explainability (faithfulness)",
    "pareto",
    "pareto (all objectives)",
    "pareto (four objectives)",
)


@dataclass
class Tradeoff:
    """One row per repair (the unrepaired model first): every graph path's effect, the target
    objective's largest inadmissible effect left, the least-kept admissible path, the other
    objectives (inadmissible paths of sources the repair does not target, the spec's other
    checks re-run on the repaired model), utility and the worst group's utility, each with its
    CI (``<column> CI``, at ``meta["confidence"]``), and whether the row is on the Pareto
    front. The CIs of the largest inadmissible effects and of the worst group's utility are
    those of the maximum / minimum (per bootstrap draw), so they account for the selection; the
    least-kept admissible ratio's CI is that path's own. Beside the mean effects, the decisions
    (:func:`~interp_audit.audit.tradeoff.objectives.decision_columns`): ``<path> flip rate``,
    ``flip rate`` (the largest, ``flip rate on`` which path), ``outcome-rate gap`` (``... over``
    which groups), each with ``... change`` from the unrepaired row and its CI."""

    rows: list[dict[str, Any]]
    ranking: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    def row(self, repair: str) -> dict[str, Any]:
        """The row of one repair by name (``"none"``, ``"mean-ablate top 8"``, ...)."""
        for r in self.rows:
            if r["repair"] == repair:
                return r
        raise KeyError(f"no repair {repair!r}; repairs: {[r['repair'] for r in self.rows]}")

    def to_frame(self, summary: bool = False):
        """A DataFrame, CIs as ``[lo, hi]`` text; ``summary=True``: the headline columns."""
        import pandas as pd

        flat = [
            {
                k: (f"[{v[0]:+.3f}, {v[1]:+.3f}]" if _is_ci(v) else v)
                for k, v in r.items()
                if not k.startswith("_")
            }
            for r in self.rows
        ]
        frame = pd.DataFrame(flat)
        if summary:
            cols = [c for c in SUMMARY if c in frame]
            frame = frame[cols]
        return frame

    def plot(self):
        """Pareto plot: target inadmissible effect left (x) against worst-group utility (y),
        one colour per repair family; diamonds on the front, crosses where a check broke."""
        import plotly.graph_objects as go

        from interp_audit.audit.figures import ci_error_bars

        fig = go.Figure()
        x_col = "inadmissible left" if "inadmissible left" in self.rows[0] else "checks passed"
        for family in dict.fromkeys(r["family"] for r in self.rows):
            rs = [r for r in self.rows if r["family"] == family]
            wg = [r["worst-group utility"] for r in rs]
            fig.add_trace(
                go.Scatter(
                    x=[r.get(x_col, 0.0) for r in rs],
                    y=wg,
                    error_y=ci_error_bars(wg, [r["worst-group utility CI"] for r in rs]),
                    mode="markers+text",
                    text=[str(r["k"]) if r["k"] else "" for r in rs],
                    textposition="top center",
                    marker=dict(
                        size=[14 if r["pareto"] else 8 for r in rs],
                        symbol=[
                            "x"
                            if r.get("checks broken")
                            else ("diamond" if r["pareto"] else "circle")
                            for r in rs
                        ],
                    ),
                    name=family,
                    hovertext=[_hover(r) for r in rs],
                )
            )
        fig.update_layout(
            title="repair trade-off (labels: k; diamonds: Pareto front; x: a check broke)",
            xaxis_title=(
                "largest inadmissible path effect left (target objective)"
                if x_col == "inadmissible left"
                else "checks passed"
            ),
            yaxis_title="worst group's utility",
            template="plotly_white",
        )
        return fig

    def to_markdown(
        self,
        repairs: list[str] | None = None,
        *,
        objectives: bool = False,
        decisions: bool = False,
    ) -> str:
        """The headline columns as a Markdown table, each number with its CI (for READMEs and
        reports); ``repairs``: only these rows, in this order. ``objectives``: the four
        objectives instead (fairness: the largest inadmissible effect left; robustness: the
        environment risk gap; privacy: membership AUC and TPR at low FPR; explainability: the
        least faithful located circuit), with utility, the worst group and the Pareto front
        over them. ``decisions``: the decisions beside the mean effects (the largest flip rate
        on the objective's inadmissible paths and the largest outcome-rate gap between groups,
        each with its change from the unrepaired model)."""
        rows = self.rows if repairs is None else [self.row(r) for r in repairs]
        if objectives:
            return self._objectives_markdown(rows)
        if decisions:
            return self._decisions_markdown(rows)
        cols = [
            ("inadmissible left", "inadmissible left", "worst inadmissible path"),
            ("admissible kept", "admissible kept", "least kept admissible path"),
            ("other inadmissible left", "other inadmissible left", "other worst path"),
            ("utility cost", "utility cost", None),
            ("worst-group utility", "worst-group utility", "worst group"),
        ]
        tail = []
        if any("checks broken" in r for r in rows):
            tail = [("checks broken", lambda r: r.get("checks broken", "") or "-")]
        return _markdown_table(rows, cols, _with_ci, tail)

    def _decisions_markdown(self, rows: list[dict[str, Any]]) -> str:
        cols = [
            ("inadmissible left (mean effect)", "inadmissible left", "worst inadmissible path"),
            ("flip rate", "flip rate", "flip rate on"),
            ("flip rate change", "flip rate change", None),
            ("outcome-rate gap", "outcome-rate gap", "outcome-rate gap over"),
            ("gap change", "outcome-rate gap change", None),
            ("utility cost", "utility cost", None),
            ("worst-group utility", "worst-group utility", "worst group"),
        ]

        def cell(r: dict[str, Any], c: str) -> str:
            lo, hi = r[f"{c} CI"]
            f = "{:+.3f}" if c.endswith("change") else "{:.3f}"
            return f"{f.format(r[c])} [{f.format(lo)}, {f.format(hi)}]"

        return _markdown_table(rows, cols, cell)

    def _objectives_markdown(self, rows: list[dict[str, Any]]) -> str:
        tpr = sorted({k for r in rows for k in r if k.startswith("privacy (TPR") and "CI" not in k})
        cols = [
            ("fairness: inadmissible left", "inadmissible left", "worst inadmissible path"),
            ("robustness: environment risk gap", "robustness (environment risk gap)", None),
            ("privacy: membership AUC", "privacy (membership AUC)", None),
            *[(f"privacy: {c[9:-1]}", c, None) for c in tpr],
            ("explainability: faithfulness", "explainability (faithfulness)", None),
            ("utility cost", "utility cost", None),
            ("worst-group utility", "worst-group utility", "worst group"),
        ]

        def cell(r: dict[str, Any], c: str) -> str:
            return f"{r[c]:.3f} (exact)" if r.get(f"{c} exact") else _with_ci(r, c)

        front = "pareto (four objectives)"
        return _markdown_table(rows, cols, cell, [(front, lambda r: "yes" if r.get(front) else "")])

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "ranking": self.ranking, "meta": self.meta}

    def save(self, directory: str | Path) -> Path:
        """``tradeoff.csv``, ``tradeoff.json``, ``tradeoff.md`` (headline columns with CIs) and
        ``tradeoff.html`` (plot + table)."""
        from interp_audit.core.files import check_output_folder, write_atomic

        out = check_output_folder(directory, "tradeoff output")
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / "tradeoff.csv", self.to_frame().to_csv(index=False))
        write_atomic(out / "tradeoff.json", json.dumps(self.to_dict(), indent=2))
        md = self.to_markdown() + "\n"
        if any("flip rate" in r or "outcome-rate gap" in r for r in self.rows):
            md += "\n" + self.to_markdown(decisions=True) + "\n"
        if any("pareto (four objectives)" in r for r in self.rows):
            md += "\n" + self.to_markdown(objectives=True) + "\n"
        write_atomic(out / "tradeoff.md", md)
        write_atomic(
            out / "tradeoff.html",
            "<html><head><meta charset='utf-8'></head><body>"
            + f"<h1>Trade-off: {html.escape(str(self.meta.get('spec', '')))}</h1>"
            + f"<p>{html.escape(_meta_line(self.meta))}</p>"
            + self.plot().to_html(full_html=False, include_plotlyjs=True)
            + self.to_frame().round(4).to_html(index=False)
            + "</body></html>",
        )
        return out

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(_meta_line(self.meta))}</p>" + self.to_frame(summary=True).round(
            3
        ).to_html(index=False)

    def __repr__(self) -> str:
        head = f"Tradeoff(the unrepaired model and {len(self.rows) - 1} repairs)\n"
        return head + self.to_frame(summary=True).round(3).to_string(index=False)


def _is_ci(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 2 and all(isinstance(x, float | int) for x in v)


def _hover(r: dict[str, Any]) -> str:
    parts = [r["repair"]]
    if "admissible kept" in r:
        parts.append(f"admissible kept {r['admissible kept']:.3f}")
    if "other inadmissible left" in r:
        parts.append(f"other inadmissible {r['other inadmissible left']:.3f}")
    if "flip rate" in r:
        parts.append(f"flip rate {r['flip rate']:.3f} ({r['flip rate on']})")
    if "outcome-rate gap" in r:
        parts.append(f"outcome-rate gap {r['outcome-rate gap']:.3f}")
    if r.get("checks broken"):
        parts.append(f"broke: {r['checks broken']}")
    return "<br>".join(parts)


def _meta_line(meta: dict[str, Any]) -> str:
    return (
        f"target: {', '.join(meta.get('objective', []))}; ranked by {meta.get('locate')}; "
        f"utility: {meta.get('utility')}; effects {meta.get('effects', '')}; "
        f"{meta.get('confidence', 0.95):.0%} CIs, {meta.get('n_boot')} bootstrap draws"
    )


def mark_pareto(rows: list[dict[str, Any]], *, utility_higher_is_better: bool = True) -> None:
    """``pareto``: no other row is at least as good on the target's axes (inadmissible left,
    admissible kept, utility, worst-group utility) and better on one; ``pareto (all
    objectives)`` adds the other sources' largest inadmissible effect."""
    util = "up" if utility_higher_is_better else "down"
    objectives = [(c, util if "utility" in c else better) for c, better in OBJECTIVES]
    if not any("inadmissible left" in r for r in rows):  # no graph: the checks are the target
        objectives.append(("checks passed", "up"))
    _front(rows, "pareto", [o for o in objectives if o[0] != "other inadmissible left"])
    if all("other inadmissible left" in r for r in rows):
        _front(rows, "pareto (all objectives)", objectives)
    four = [(c, b) for c, b in _check_objectives() if all(c in r for r in rows)]
    if four:  # fairness, robustness, privacy, explainability, with utility
        fair = (
            ("inadmissible left", "down")
            if any("inadmissible left" in r for r in rows)
            else ("checks passed", "up")
        )
        _front(rows, "pareto (four objectives)", [fair, *four, ("utility", util)])


def _check_objectives() -> list[tuple[str, str]]:
    """(column, better) of every registered check kind that measures a trade-off objective."""
    from interp_audit.audit.kinds import check_kinds

    return [k.objective for k in check_kinds().values() if k.objective is not None]


def _front(rows: list[dict[str, Any]], key: str, objectives) -> None:
    axes = [(c, better) for c, better in objectives if all(c in r for r in rows)]
    sign = {"up": lambda x: x, "down": lambda x: -x, "one": lambda x: -abs(x - 1.0)}

    def vec(r):
        return tuple(sign[better](r[c]) for c, better in axes)

    for r in rows:
        a = vec(r)
        r[key] = not any(
            all(x >= y for x, y in zip(vec(o), a, strict=True)) and vec(o) != a
            for o in rows
            if o is not r
        )


def _with_ci(r: dict[str, Any], c: str) -> str:
    lo, hi = r[f"{c} CI"]
    return f"{r[c]:.3f} [{lo:.3f}, {hi:.3f}]"


def _markdown_table(
    rows: list[dict[str, Any]],
    cols: list[tuple[str, str, str | None]],
    cell: Callable[[dict[str, Any], str], str],
    tail: Sequence[tuple[str, Callable[[dict[str, Any]], str]]] = (),
) -> str:
    """One Markdown row per repair. ``cols``: (heading, key, where) for each column any row
    has, its cell ``cell(row, key)`` after the row's ``where`` (the worst path or group);
    ``tail``: (heading, cell) columns every row has."""
    cols = [c for c in cols if any(c[1] in r for r in rows)]
    head = ["repair", *[c[0] for c in cols], *[h for h, _ in tail]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["repair"]]
        for _, c, where in cols:
            at = f"{r[where]} " if where and r.get(where) else ""
            cells.append(f"{at}{cell(r, c)}" if c in r else "")
        cells += [fn(r) for _, fn in tail]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
