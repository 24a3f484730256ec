"""The report a person reads, built from report.json's data: which sections, tables and figures.

The audit layer owns what a report says; :func:`interp_audit.output.html.render` only lays the
finished :class:`~interp_audit.output.view.ReportView` out. Order: the verdict of every check in
one compact table (one short row each), the causal paths as a table beside the graph, then each
check with its own figure (drawn by its kind's ``figure`` hook, through the registry) and its
evidence rows (typed, :mod:`interp_audit.audit.evidence`) below, the located effects, and the
audit record (how to reproduce the run) last.

``render_html(data)`` is what ``AuditReport.save`` and ``interp-audit report DIR`` call.
"""

from __future__ import annotations

import json
from typing import Any

from interp_audit.audit.evidence import EvidenceRow, MeasureRow, PathRow
from interp_audit.audit.result import CheckResult
from interp_audit.output.html import render
from interp_audit.output.validate import ReportFileError, data_digest, validate_report
from interp_audit.output.view import (
    Badge,
    Block,
    Cell,
    Columns,
    Details,
    Figure,
    Grid,
    KeyValues,
    Link,
    Markup,
    Pre,
    ReportView,
    Section,
    Svg,
    Table,
    Text,
)

__all__ = ["render_html", "report_view"]

NONE = "–"  # what a reader sees where there is no value


def render_html(data: dict[str, Any]) -> str:
    """report.json's data as one self-contained HTML page (validated first: a crafted or
    damaged report is refused naming the key, never rendered)."""
    validate_report(data)
    return render(report_view(data))


def report_view(data: dict[str, Any]) -> ReportView:
    """The finished view of a report (report.json's data, e.g. ``AuditReport.to_dict()``)."""
    checks = _checks(data)
    prov = data.get("provenance") or {}
    overall = data.get("verdict") or ("pass" if data["passed"] else "fail")
    sections = [_summary(checks)]
    sections += [_handed_down(i, t) for i, t in enumerate(data.get("sections") or ())]
    paths = _paths(checks, prov.get("causal"))
    if paths is not None:
        sections.append(paths)
    sections.append(Section("Checks", (), anchor="checks"))
    sections += [_check_section(i, c) for i, c in enumerate(checks)]
    located = _located(data.get("located") or {})
    if located is not None:
        sections.append(located)
    sections.append(_record(prov))
    footer = tuple(
        f"report.json {key}: {data[key]}"
        for key in ("results_sha256", "content_sha256")
        if data.get(key)
    )
    return ReportView(
        title=str(data["name"]),
        verdict=Badge(overall),
        sections=tuple(sections),
        data_digest=data_digest(data),
        intro=(
            Text(
                "pass = the confidence interval lies inside the tolerance; fail = entirely "
                "outside; inconclusive = it straddles the tolerance, or too few clusters "
                "(independent units) to decide. A gate (interp-audit run) exits 1 on fail or "
                "inconclusive.",
                small=True,
            ),
        ),
        footer=footer,
    )


def _checks(data: dict[str, Any]) -> list[CheckResult]:
    out = []
    for i, c in enumerate(data["checks"]):
        try:
            out.append(CheckResult.from_dict(c))
        except (ValueError, TypeError) as err:
            raise ReportFileError(f"report.json: checks[{i}]: {err}") from None
    return out


# ---- numbers as a reader sees them ------------------------------------------------------------


def _num(v: float | None, digits: int = 4) -> str:
    return NONE if v is None else f"{v:+.{digits}f}"


def _ci(ci: tuple[float, float] | None, digits: int = 4) -> str:
    return NONE if ci is None else f"[{ci[0]:+.{digits}f}, {ci[1]:+.{digits}f}]"


EXACT = "exact"  # what a reader sees for a quantity with no sampling interval


def _row_ci(row: EvidenceRow, digits: int = 4) -> str:
    """A row's interval, or ``exact`` for an exact population quantity (its ``[p, p]`` is not
    an interval)."""
    return EXACT if row.to_dict().get("exact") else _ci(row.ci, digits)


def _check_ci(c: CheckResult) -> str:
    return EXACT if c.exact else _ci(c.ci)


def _plain(v: Any) -> str:
    """Any JSON value as short readable text: no ``None``, no braces."""
    if v is None:
        return NONE
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, list | tuple):
        return ", ".join(_plain(x) for x in v) if v else NONE
    if isinstance(v, dict):
        parts = [f"{k}: {_plain(x)}" for k, x in v.items() if x is not None]
        return "; ".join(parts) if parts else NONE
    return str(v)


def _handed_down(i: int, table: dict[str, Any]) -> Section:
    """A table an audit step hands down ready-made (``report["sections"]``: title, columns, rows,
    note), e.g. a repair's verdicts before and after; verdict words become badges."""

    def cell(v: Any) -> Cell:
        return Badge(v) if v in ("pass", "fail", "inconclusive") else _plain(v)

    rows = tuple(tuple(cell(v) for v in row) for row in table["rows"])
    blocks: list[Block] = [Table(tuple(table["columns"]), rows)]
    if table.get("note"):
        blocks.insert(0, Text(table["note"], small=True))
    return Section(table["title"], tuple(blocks), anchor=f"table-{i}")


def _threshold(c: CheckResult) -> str:
    from interp_audit.audit.kinds import check_kinds

    kind = check_kinds().get(c.kind)
    fmt = kind.threshold if kind is not None else "{:g}"
    return fmt(c) if callable(fmt) else fmt.format(c.threshold)


def _pct(c: CheckResult) -> int:
    return int(round(100 * c.confidence))


# ---- sections -----------------------------------------------------------------------------


def _summary(checks: list[CheckResult]) -> Section:
    """One short row per check: verdict, name (a link to its evidence), kind, statistic with
    its CI, what it is tested against, clusters."""
    pcts = {_pct(c) for c in checks}
    ci_head = f"{pcts.pop()}% CI" if len(pcts) == 1 else "CI"
    rows = tuple(
        (
            Badge(c.verdict),
            Link(c.name, f"check-{i}"),
            c.kind,
            _num(c.statistic),
            _check_ci(c) if len(pcts) <= 1 or c.exact else f"{_ci(c.ci)} ({_pct(c)}%)",
            _threshold(c),
            NONE if c.clusters is None else str(c.clusters),
        )
        for i, c in enumerate(checks)
    )
    table = Table(
        ("verdict", "check", "kind", "statistic", ci_head, "tested against", "clusters"),
        rows,
        numeric=frozenset({3, 4, 6}),
        compact=True,
    )
    return Section("Verdicts", (table,), anchor="verdicts")


def _path_demand(row: PathRow) -> str:
    if row.role == "admissible" and row.limit is None:
        return "reported"
    demand = str(row.limit) if row.limit is not None else NONE
    sign = {"positive": "> 0", "negative": "< 0"}.get(row.expected_sign or "", row.expected_sign)
    if sign:
        demand = sign if row.limit is None else f"{demand}, {sign}"
    return demand


def _paths(checks: list[CheckResult], graph: dict[str, Any] | None) -> Section | None:
    """Every causal path a check measured: admissible or not, its effect with CI, what it is
    tested against and the verdict; the causal graph beside the table."""
    rows, groups = [], []
    for i, c in enumerate(checks):
        first = True
        for r in c.evidence:
            if not isinstance(r, PathRow):
                continue
            if first:
                groups.append((len(rows), Link(f"{c.name} ({c.kind})", f"check-{i}")))
                first = False
            verdict = r.outcome
            badge = (
                Badge("allowed", "allowed")
                if verdict is None and r.role == "admissible"
                else Badge(verdict)
                if verdict
                else Badge("info", "measured")
            )
            admissible = {"admissible": "yes", "inadmissible": "no"}.get(r.role or "", NONE)
            rows.append(
                (r.path, admissible, _num(r.effect, 3), _row_ci(r, 3), _path_demand(r), badge)
            )
    if not rows:
        return _graph_only(graph) if graph else None
    table = Table(
        ("path", "admissible", "effect", "CI", "tested against", "verdict"),
        tuple(rows),
        numeric=frozenset({2, 3}),
        nowrap=frozenset({0, 4}),
        groups=tuple(groups),
        caption=(
            "Effect of each path on its own path-specific contrast, conditional on the input "
            "changing (the evidence below also gives it over all units). Inadmissible paths "
            "must stay within the tolerance; admissible ones are reported (allowed), or must "
            "respond where a responsiveness check asks."
        ),
    )
    blocks: list[Block] = [table]
    if graph:
        blocks.append(Svg(_graph_svg(graph), GRAPH_LEGEND))
    return Section("Causal paths", (Columns(tuple(blocks)),), anchor="paths")


def _graph_only(graph: dict[str, Any]) -> Section:
    """No check measured a path: the graph and what it says about each path."""
    rows = tuple(
        (
            str(p.get("path")),
            "yes" if p.get("admissible") else "no",
            _plain(p.get("why")),
        )
        for paths in (graph.get("paths") or {}).values()
        for p in paths
    )
    blocks: list[Block] = []
    if rows:
        blocks.append(Table(("path", "admissible", "why"), rows, nowrap=frozenset({0})))
    blocks.append(Svg(_graph_svg(graph), GRAPH_LEGEND))
    return Section("Causal paths", (Columns(tuple(blocks)),), anchor="paths")


GRAPH_LEGEND = (
    "green: edges on admissible paths only; red: on inadmissible paths only; amber: both; "
    "dashed: blocked edges"
)


def _graph_svg(graph: dict[str, Any]) -> str:
    from interp_audit.causal import CausalGraph

    try:
        return CausalGraph.from_dict(graph).to_svg()
    except Exception as err:  # a report must render even when its graph cannot be drawn
        raise ReportFileError(f"report.json: provenance.causal: {err}") from None


def _more(row: EvidenceRow) -> str:
    """The row's fields not already in the table's columns, as one line."""
    shown = {row.key, "ci", "half_width", "verdict", "passed", "reason", "role", "exact"}
    shown |= {"effect", "value", "share", "auc", "gap", "exposure"}  # the estimate column
    shown |= {"tolerance", "budget", "max_share", "floor", "bounds"}  # "tested against"
    data = row.to_dict()
    parts = []
    if row.reason:
        parts.append(row.reason)
    for k, v in data.items():
        if k in shown or v is None:
            continue
        if isinstance(v, float):
            parts.append(f"{k} {v:.4g}")
        elif isinstance(v, list) and len(v) == 2 and all(isinstance(x, float) for x in v):
            parts.append(f"{k} [{v[0]:+.4f}, {v[1]:+.4f}]")
        else:
            parts.append(f"{k}: {_plain(v)}")
    return "; ".join(parts)


def _evidence_table(c: CheckResult) -> Table:
    rows = []
    for r in c.evidence:
        outcome = r.outcome
        badge = (
            Badge(outcome)
            if outcome
            else Badge("allowed", "allowed")
            if r.role == "admissible"
            else ""
        )
        label = r.label
        if isinstance(r, MeasureRow) and r.components and r.value is None:
            label = f"{r.measure} ({len(r.components)})"
        rows.append(
            (
                badge,
                label,
                _num(r.estimate),
                _row_ci(r),
                NONE if r.limit is None else str(r.limit),
                _more(r),
            )
        )
    return Table(
        ("", "what", "estimate", f"{_pct(c)}% CI", "tested against", "details"),
        tuple(rows),
        numeric=frozenset({2, 3}),
    )


def _check_section(i: int, c: CheckResult) -> Section:
    from interp_audit.audit.figures import interval_figure
    from interp_audit.audit.kinds import check_kinds

    kind = check_kinds().get(c.kind)
    draw = kind.figure if kind is not None and kind.figure is not None else interval_figure
    blocks: list[Block] = [
        Text(
            f"{c.kind}: {_num(c.statistic)} "
            + ("(exact: no sampling interval)" if c.exact else f"{_ci(c.ci)} ({_pct(c)}% CI)")
            + f", tested against {_threshold(c)}"
            + ("" if c.clusters is None else f", {c.clusters} clusters")
            + (f". {c.reason}" if c.reason else "")
        ),
        Text(c.message, small=True),
    ]
    if c.correction:
        blocks.append(Text(c.correction, small=True))
    blocks.append(
        Figure(
            draw(c).to_plotly_json(),
            "bars: estimates with their CI; green band = tolerance, dashed line = limit; red = "
            "violated, orange = inconclusive, grey = admissible (reported, not tested)",
        )
    )
    blocks.append(Details(f"evidence ({len(c.details)} rows)", (_evidence_table(c),)))
    return Section(c.name, tuple(blocks), anchor=f"check-{i}", badge=Badge(c.verdict), level=3)


def _located(located: dict[str, Any]) -> Section | None:
    if not located:
        return None
    figures: list[Block] = [Figure(_effects_figure(name, e)) for name, e in located.items()]
    blocks: list[Block] = [Grid(tuple(figures))]
    from interp_audit.methods.features.cards import FeatureCard

    for name, e in located.items():
        cards = e.get("cards") or []
        if cards:
            blocks.append(
                Details(
                    f"feature cards: {name} ({len(cards)})",
                    tuple(Markup(FeatureCard.from_dict(card).to_html()) for card in cards),
                    open=True,
                )
            )
    return Section("Located effects", tuple(blocks), anchor="located")


def _effects_figure(name: str, e: dict[str, Any]) -> dict[str, Any]:
    import torch

    from interp_audit.engine.effects import Effects

    values = torch.tensor(e["values"])
    eff = Effects(
        values=values,
        dims=tuple(str(d) for d in e["dims"]),
        axes={str(k): [str(x) for x in v] for k, v in e["axes"].items()},
        components=[str(i) for i in range(values.numel())],
        metric=str(e["metric"]),
        method=str(e["method"]),
        normalized=bool(e["normalized"]),
    )
    kind = "normalised" if eff.normalized else "mean"
    fig = eff.plot(title=f"{name}: {eff.method}, {eff.metric} ({kind})")
    fig.update_layout(title={"font": {"size": 14}}, margin={"l": 60, "r": 20, "t": 50, "b": 40})
    return fig.to_plotly_json()


def _record(prov: dict[str, Any]) -> Section:
    """What ran, on what, how to reproduce it: readable with no other file."""
    from interp_audit.audit.gates import summary as gate_summary

    model = prov.get("model") or {}
    weights = prov.get("weights") or {}
    what = {
        "reproduce with": prov.get("command"),
        "verify with": "interp-audit verify <this folder>",
        "model source": model.get("source"),
        "model class": model.get("model_class"),
        "weights sha256 (tensors that ran)": weights.get("state_sha256"),
        "weight files": {"folder": weights.get("folder"), "sha256": weights.get("files")},
        "weight processing": model.get("weight_processing"),
        "device": model.get("device"),
        "dtype": model.get("dtype"),
        "metric": prov.get("metric"),
        "seed": prov.get("seed"),
        "contrast sets (pairs)": prov.get("contrasts"),
        "contrast sets (clusters)": prov.get("clusters"),
        "statistics": prov.get("statistics"),
        "spec file": prov.get("spec_path"),
        "spec sha256 (text)": prov.get("spec_sha256"),
        "spec hash (canonical)": prov.get("spec_hash"),
        "data files": prov.get("data_files"),
        "project commit": prov.get("git"),
        "versions": prov.get("versions"),
        "platform": prov.get("platform"),
        "run at": prov.get("timestamp"),
        "trust gates": gate_summary(prov.get("trust_gates", [])),
    }
    items = tuple((k, _plain(v)) for k, v in what.items() if _plain(v) != NONE)
    blocks: list[Block] = [KeyValues(items)]
    ablations = prov.get("ablations") or {}
    if ablations:
        rows = []
        for name, a in ablations.items():
            src = (
                f"locate {a['from_locate']} (top {a['top_k']})"
                if a.get("from_locate")
                else "listed in the spec"
            )
            rows.append((str(name), _plain(a.get("kind")), src, _plain(a.get("components"))))
        blocks.append(Text("Ablated components"))
        blocks.append(Table(("check", "kind", "from", "components"), tuple(rows)))
    examples = prov.get("examples") or {}
    if examples:
        rows = []
        for name, pairs in examples.items():
            for r in pairs:
                ans = r.get("answer_tokens") or r.get("answers")
                unit = " / ".join(_plain(r.get(k)) for k in ("group", "cluster") if r.get(k))
                rows.append(
                    (
                        str(name),
                        " ".join(map(str, r.get("clean_tokens") or [])),
                        " ".join(map(str, r.get("counterfactual_tokens") or [])),
                        _plain(ans),
                        unit or NONE,
                    )
                )
        blocks.append(Text("Example pairs"))
        blocks.append(
            Table(
                ("contrast", "clean tokens", "counterfactual tokens", "answers", "group / cluster"),
                tuple(rows),
            )
        )
    if prov.get("causal_graph"):
        graph = prov["causal_graph"]
        text = graph if isinstance(graph, str) else json.dumps(graph, indent=1)
        blocks += [Text("Causal graph (as given)"), Pre(text)]
    if prov.get("spec_text"):
        blocks += [Text("Spec (as written)"), Pre(str(prov["spec_text"]))]
    return Section(
        "Audit record",
        (Details("what ran, on what, and how to reproduce it", tuple(blocks)),),
        anchor="record",
    )
