"""The HTML report: one self-contained page (plotly.js inlined once), opens with no network."""

from __future__ import annotations

import html
import json
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
.pass{color:#2e7d32;font-weight:bold}.fail{color:#c62828;font-weight:bold}
.inconclusive{color:#ef6c00;font-weight:bold}small{color:#666}
pre{background:#f6f8fa;padding:8px;overflow-x:auto;font-size:12px}
"""


def _intervention_figure(c: dict[str, Any]) -> go.Figure:
    """Effect before/after against the tolerance band, and the utility cost against its budget,
    on two axes (they are in different units)."""
    from plotly.subplots import make_subplots

    by = {d["measure"]: d for d in c["details"] if "measure" in d}
    effects = [by[k] for k in ("effect before", "effect after") if k in by]
    cost = next((d for k, d in by.items() if k.endswith(" cost")), None)
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("effect on the contrast (tolerance band)", "utility cost (budget line)"),
    )
    comps = next((d["components"] for d in c["details"] if "components" in d), [])
    fig.add_trace(
        go.Bar(
            x=[d["measure"] for d in effects],
            y=[d["value"] for d in effects],
            error_y=_errors(effects, [d["value"] for d in effects]),
            marker_color=[_color(d) for d in effects],
            showlegend=False,
        ),
        row=1,
        col=1,
    )
    t = c["threshold"]
    fig.add_hrect(y0=-t, y1=t, fillcolor="#2e7d32", opacity=0.12, line_width=0, row=1, col=1)
    if cost is not None:
        fig.add_trace(
            go.Bar(
                x=[cost["measure"]],
                y=[cost["value"]],
                error_y=_errors([cost], [cost["value"]]),
                marker_color=[_color(cost)],
                showlegend=False,
            ),
            row=1,
            col=2,
        )
        fig.add_hline(y=cost["budget"], line_dash="dash", line_color="#c62828", row=1, col=2)
    fig.update_layout(
        title=f"{_e(c['name'])} (intervention: ablating {len(comps)} components): "
        f"{int(100 * c.get('confidence', 0.95))}% CI",
        template="plotly_white",
        height=340,
    )
    return fig


def _errors(rows, vals):
    return {
        "type": "data",
        "symmetric": False,
        "array": [d["ci"][1] - v if "ci" in d else 0 for v, d in zip(vals, rows, strict=True)],
        "arrayminus": [v - d["ci"][0] if "ci" in d else 0 for v, d in zip(vals, rows, strict=True)],
    }


def _color(d: dict[str, Any]) -> str:
    if d.get("role") == "admissible":
        return "#9e9e9e"
    return {"fail": "#c62828", "inconclusive": "#ef6c00"}.get(
        d.get("verdict") or ("fail" if d.get("passed") is False else ""), "#1565c0"
    )


def _e(value: Any) -> str:
    """Escaped text: everything from report.json is data, never markup (also inside plots)."""
    return html.escape(str(value))


def _check_figure(c: dict[str, Any]) -> go.Figure:
    from interp_audit.audit.kinds import check_kinds

    kind = check_kinds().get(c["kind"])
    if kind is not None and kind.figure is not None:
        return kind.figure(c)
    if c["kind"] == "intervention":
        return _intervention_figure(c)
    rows = [d for d in c["details"] if "ci" in d] or [
        {"label": c["name"], "effect": c["statistic"], "ci": c["ci"]}
    ]
    labels = [
        _e(
            d.get("group")
            or d.get("path")
            or d.get("component")
            or d.get("measure")
            or d.get("label")
        )
        for d in rows
    ]
    vals = [d.get("effect", d.get("value", d.get("share", 0.0))) for d in rows]
    lo = [v - d["ci"][0] for v, d in zip(vals, rows, strict=True)]
    hi = [d["ci"][1] - v for v, d in zip(vals, rows, strict=True)]
    colors = [_color(d) for d in rows]
    labels = [
        f"{lab} (admissible)" if d.get("role") == "admissible" else lab
        for lab, d in zip(labels, rows, strict=True)
    ]
    fig = go.Figure(
        go.Bar(
            x=labels,
            y=vals,
            error_y={"type": "data", "symmetric": False, "array": hi, "arrayminus": lo},
            marker_color=colors,
        )
    )
    t = c["threshold"]
    if c["kind"] != "component_mediation":
        fig.add_hrect(y0=-t, y1=t, fillcolor="#2e7d32", opacity=0.12, line_width=0)
    else:
        fig.add_hline(y=t, line_dash="dash", line_color="#c62828")
    fig.update_layout(
        title=f"{_e(c['name'])} ({_e(c['kind'])}): {int(100 * c.get('confidence', 0.95))}% CI; "
        "green band "
        "/ dashed line = tolerance; red = violated, orange = inconclusive, grey = admissible",
        template="plotly_white",
        height=320,
    )
    return fig


def _effects_figure(name: str, e: dict[str, Any]) -> go.Figure:
    import torch

    from interp_audit.engine.effects import Effects

    axes = {_e(k): [_e(x) for x in v] for k, v in e["axes"].items()}
    dims = tuple(_e(d) for d in e["dims"])
    comps = [str(i) for i in range(int(torch.tensor(e["values"]).numel()))]
    eff = Effects(
        values=torch.tensor(e["values"]),
        dims=dims,
        axes=axes,
        components=comps,
        metric=_e(e["metric"]),
        method=_e(e["method"]),
        normalized=e["normalized"],
    )
    return eff.plot(title=f"{_e(name)}: {eff.title()}")


def _causal_section(graph: dict[str, Any] | None) -> str:
    """The spec's causal graph (inline SVG; admissible paths green, inadmissible red)."""
    if not graph:
        return ""
    from interp_audit.causal import CausalGraph

    g = CausalGraph.from_dict(graph)
    return "<h2>Causal graph</h2>" + g._repr_html_()


def _esc(v: Any) -> str:
    return html.escape(v if isinstance(v, str) else json.dumps(v))


def _table(rows: dict[str, Any]) -> str:
    return (
        "<table>"
        + "".join(f"<tr><th>{html.escape(k)}</th><td>{_esc(v)}</td></tr>" for k, v in rows.items())
        + "</table>"
    )


def _record(prov: dict[str, Any]) -> str:
    """The audit record: what ran, on what, how to reproduce it (readable with no other file)."""
    from interp_audit.audit.gates import summary as gate_summary

    model = prov.get("model", {})
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
    out = "<h2>Audit record</h2>" + _table(what)
    ablations = prov.get("ablations") or {}
    if ablations:
        out += "<h3>Ablated components</h3><table><tr><th>check</th><th>kind</th><th>from</th>"
        out += "<th>components</th></tr>"
        for name, a in ablations.items():
            src = f"locate {a['from_locate']} (top {a['top_k']})" if a.get("from_locate") else ""
            out += (
                f"<tr><td>{html.escape(name)}</td><td>{html.escape(str(a['kind']))}</td>"
                f"<td>{html.escape(src) or 'listed in the spec'}</td>"
                f"<td>{html.escape(', '.join(a['components']))}</td></tr>"
            )
        out += "</table>"
    examples = prov.get("examples") or {}
    if examples:
        out += "<h3>Example pairs</h3><table><tr><th>contrast</th><th>clean tokens</th>"
        out += "<th>counterfactual tokens</th><th>answers</th><th>group / cluster</th></tr>"
        for name, rows in examples.items():
            for r in rows:
                ans = r.get("answer_tokens") or r.get("answers")
                out += (
                    f"<tr><td>{html.escape(name)}</td><td>{_esc(r['clean_tokens'])}</td>"
                    f"<td>{_esc(r['counterfactual_tokens'])}</td><td>{_esc(ans)}</td>"
                    f"<td>{html.escape(str(r.get('group', '')))} / "
                    f"{html.escape(str(r.get('cluster', '')))}</td></tr>"
                )
        out += "</table>"
    if prov.get("causal_graph"):
        out += f"<h3>Causal graph</h3><pre>{_esc(prov['causal_graph'])}</pre>"
    if prov.get("spec_text"):
        out += f"<h3>Spec (as written)</h3><pre>{html.escape(prov['spec_text'])}</pre>"
    return out


def _cards_html(located: dict[str, Any]) -> str:
    """Feature cards of the SAE locate steps (what each top located feature means)."""
    from interp_audit.methods.features.cards import FeatureCard

    return "".join(
        f"<h3>Feature cards: {html.escape(name)}</h3>"
        + "".join(FeatureCard.from_dict(c).to_html() for c in e["cards"])
        for name, e in located.items()
        if e.get("cards")
    )


def _sections(sections: list[dict[str, Any]] | None) -> str:
    """Tables the audit layer hands down ready-made (``report["sections"]``): a title, column
    names, rows of values and a note; every value is escaped text."""
    out = ""
    for sec in sections or ():
        head = "".join(f"<th>{_e(c)}</th>" for c in sec["columns"])
        rows = "".join(
            "<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in sec["rows"]
        )
        note = f"<p><small>{_e(sec['note'])}</small></p>" if sec.get("note") else ""
        out += f"<h2>{_e(sec['title'])}</h2>{note}<table><tr>{head}</tr>{rows}</table>"
    return out


def _cell(v: Any) -> str:
    if v in ("pass", "fail", "inconclusive"):
        return f"<span class='{v}'>{v}</span>"
    return _e(v if isinstance(v, str) else json.dumps(v))


def render_html(report: dict[str, Any]) -> str:
    from interp_audit.output.validate import data_digest, validate_report

    validate_report(report)
    prov = report["provenance"]
    overall = report.get("verdict") or ("pass" if report["passed"] else "fail")
    verdict = f"<span class='{overall}'>{overall.upper()}</span>"
    rows = ""
    for c in report["checks"]:
        v = c.get("verdict") or ("pass" if c["passed"] else "fail")
        half = c.get("half_width", (c["ci"][1] - c["ci"][0]) / 2)
        rows += (
            f"<tr><td class='{v}'>{v}</td><td>{html.escape(c['name'])}</td>"
            f"<td>{html.escape(c['kind'])}</td><td>{c['statistic']:+.4f}</td><td>"
            f"[{c['ci'][0]:+.4f}, {c['ci'][1]:+.4f}]</td><td>±{half:.4f}</td>"
            f"<td>{c['threshold']}</td><td>{c.get('clusters', '')}</td>"
            f"<td>{html.escape(c.get('reason', ''))}</td><td>{html.escape(c['message'])}"
            + (f"<br><small>{html.escape(c['correction'])}</small>" if c.get("correction") else "")
            + "</td></tr>"
        )
    figs = [_check_figure(c) for c in report["checks"]] + [
        _effects_figure(k, e) for k, e in report["located"].items()
    ]
    fig_html = "".join(f.to_html(full_html=False, include_plotlyjs=False) for f in figs)
    digest = report.get("content_sha256")
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<meta name='interp-audit-data' content='{data_digest(report)}'><title>interp_audit: "
        + html.escape(report["name"])
        + f"</title><style>{_STYLE}</style><script "
        f"type='text/javascript'>{get_plotlyjs()}</script></head><body>"
        + f"<h1>Audit {html.escape(report['name'])}: {verdict}</h1>"
        + "<p>pass = the confidence interval lies inside the tolerance; fail = entirely "
        "outside; inconclusive = it straddles the tolerance, or too few clusters (independent "
        "units) to decide. A gate (<code>interp-audit run</code>) exits 1 on fail or "
        "inconclusive.</p>"
        + "<table><tr><th></th><th>check</th><th>kind</th><th>statistic</th><th>CI</th>"
        "<th>half-width</th><th>tolerance</th><th>clusters</th><th>why</th><th>evidence</th>"
        f"</tr>{rows}</table>"
        + _sections(report.get("sections"))
        + _causal_section(prov.get("causal"))
        + "<h2>Evidence</h2>"
        + fig_html
        + _cards_html(report["located"])
        + _record(prov)
        + (f"<p><small>report.json content sha256: {digest}</small></p>" if digest else "")
        + "</body></html>"
    )
