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
.pass{color:#2e7d32;font-weight:bold}.fail{color:#c62828;font-weight:bold}small{color:#666}
"""


def _e(value: Any) -> str:
    """Escaped text: everything from report.json is data, never markup (also inside plots)."""
    return html.escape(str(value))


def _check_figure(c: dict[str, Any]) -> go.Figure:
    rows = [d for d in c["details"] if "ci" in d] or [
        {"label": c["name"], "effect": c["statistic"], "ci": c["ci"]}
    ]
    labels = [
        _e(d.get("group") or d.get("path") or d.get("measure") or d.get("label")) for d in rows
    ]
    vals = [d.get("effect", d.get("value", d.get("share", 0.0))) for d in rows]
    lo = [v - d["ci"][0] for v, d in zip(vals, rows, strict=True)]
    hi = [d["ci"][1] - v for v, d in zip(vals, rows, strict=True)]
    colors = [
        "#9e9e9e"
        if d.get("role") == "admissible"
        else ("#c62828" if d.get("passed") is False else "#1565c0")
        for d in rows
    ]
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
        "/ dashed line = tolerance; red = violated, grey = admissible",
        template="plotly_white",
        height=320,
    )
    return fig


def _effects_figure(name: str, e: dict[str, Any]) -> go.Figure:
    import torch

    from ..effects import Effects

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


def render_html(report: dict[str, Any]) -> str:
    from .validate import data_digest, validate_report

    validate_report(report)
    prov = report["provenance"]
    verdict = (
        "<span class='pass'>PASSED</span>"
        if report["passed"]
        else "<span class='fail'>FAILED</span>"
    )
    rows = "".join(
        f"<tr><td class='{'pass' if c['passed'] else 'fail'}'>"
        f"{'pass' if c['passed'] else 'FAIL'}</td><td>{html.escape(c['name'])}</td>"
        f"<td>{html.escape(c['kind'])}</td><td>{c['statistic']:+.4f}</td><td>"
        f"[{c['ci'][0]:+.4f}, {c['ci'][1]:+.4f}]</td><td>{_e(c['threshold'])}</td>"
        f"<td>{html.escape(c['message'])}</td></tr>"
        for c in report["checks"]
    )
    figs = [_check_figure(c) for c in report["checks"]] + [
        _effects_figure(k, e) for k, e in report["located"].items()
    ]
    fig_html = "".join(f.to_html(full_html=False, include_plotlyjs=False) for f in figs)
    model = prov.get("model", {})
    prov_rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>"
        f"{html.escape(json.dumps(v) if not isinstance(v, str) else v)}</td></tr>"
        for k, v in {
            "model source": model.get("source"),
            "model class": model.get("model_class"),
            "weight processing": model.get("weight_processing"),
            "device": model.get("device"),
            "dtype": model.get("dtype"),
            "metric": prov.get("metric"),
            "seed": prov.get("seed"),
            "contrast sets (pairs)": prov.get("contrasts"),
            "spec hash": prov.get("spec_hash"),
            "versions": prov.get("versions"),
            "run at": prov.get("timestamp"),
        }.items()
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<meta name='interp-audit-data' content='{data_digest(report)}'><title>interp_audit: "
        + html.escape(report["name"])
        + f"</title><style>{_STYLE}</style><script "
        f"type='text/javascript'>{get_plotlyjs()}</script></head><body>"
        + f"<h1>Audit {html.escape(report['name'])}: {verdict}</h1>"
        + "<table><tr><th></th><th>check</th><th>kind</th><th>statistic</th><th>CI</th><th>"
        f"tolerance</th><th>evidence</th></tr>{rows}</table>"
        + "<h2>Evidence</h2>"
        + fig_html
        + f"<h2>Provenance</h2><table>{prov_rows}</table><small>Every number here can be "
        "reproduced from the spec, seed and versions above.</small>" + "</body></html>"
    )
