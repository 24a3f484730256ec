"""Lay out a :class:`~interp_audit.output.view.ReportView` as one self-contained HTML page.

Offline and self-contained: plotly.js is inlined once, gzip-compressed (1.5 MB instead of
4.8 MB) and unpacked by the browser's ``DecompressionStream`` (Chrome 80, Firefox 113, Safari
16.4); every figure is drawn from one JSON block, sharing its plotly template. Without that API
the tables and text still read, and each figure says why it is missing. The page fits a
laptop's width: text columns wrap, numbers do not, wide content scrolls inside its own block.

Every string from the view is escaped, in the markup and inside the figures' JSON (plotly shows
``&lt;`` as ``<``), so a crafted report.json cannot inject markup.
"""

from __future__ import annotations

import base64
import functools
import gzip
import html
import json
from typing import Any

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

__all__ = ["render"]

_STYLE = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;padding:1.2em 1.5em;
max-width:1240px;color:#222;line-height:1.4;font-size:15px}
h1{font-size:1.6em;margin:.2em 0 .4em}h2{margin:1.6em 0 .5em;border-bottom:1px solid #ddd;
padding-bottom:.2em}h3{margin:1.4em 0 .4em;font-size:1.1em}
table{border-collapse:collapse;margin:.6em 0;max-width:100%;font-size:.93em}
tr.group th{background:none;font-weight:600;padding-top:.6em;white-space:normal}
td,th{border-bottom:1px solid #e4e4e4;padding:3px 8px;text-align:left;vertical-align:top;
overflow-wrap:break-word}
th{background:#f6f8fa;font-weight:600;white-space:nowrap}
td.num,th.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
td.nw{white-space:nowrap}
table.compact td{padding:2px 8px}
table.kv th{text-align:left;white-space:normal;width:14em;background:none}
caption{caption-side:bottom;text-align:left;color:#666;font-size:.85em;padding-top:4px}
.badge{display:inline-block;min-width:5.6em;text-align:center;border-radius:3px;
padding:0 6px;font-size:.8em;font-weight:700;letter-spacing:.03em;color:#fff;white-space:nowrap}
.pass{background:#2e7d32}.fail{background:#c62828}.inconclusive{background:#ef6c00}
.allowed{background:#9e9e9e}.info{background:#607d8b}
h1 .badge,h2 .badge,h3 .badge{font-size:.65em;vertical-align:middle}
small,.small{color:#555;font-size:.85em}
pre{background:#f6f8fa;padding:8px;overflow-x:auto;font-size:12px;max-width:100%}
details{margin:.4em 0 .8em}summary{cursor:pointer;color:#1565c0}
.cols{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}
.cols>*{flex:1 1 560px;min-width:0}.cols>.svg{flex:0 1 auto;max-width:440px}
.svg figcaption{width:0;min-width:100%}
.grid{display:grid;gap:1em}
.svg svg{max-width:100%;height:auto}
.ia-fig{width:100%;min-height:60px}.ia-fig-missing{color:#c62828;font-size:.85em}
figure{margin:.4em 0}figcaption{color:#666;font-size:.85em}
a{color:#1565c0;text-decoration:none}a:hover{text-decoration:underline}
footer{margin-top:2em;color:#666;font-size:.8em;overflow-wrap:anywhere}
"""

#: Draws every figure once plotly.js is unpacked; says why when it cannot be.
_LOADER = """
(function () {
  var figs = JSON.parse(document.getElementById('ia-figures').textContent);
  var divs = document.querySelectorAll('.ia-fig');
  function missing(why) {
    divs.forEach(function (d) {
      d.textContent = 'figure not drawn: ' + why;
      d.className += ' ia-fig-missing';
    });
  }
  function draw() {
    divs.forEach(function (d) {
      var f = figs.figures[+d.getAttribute('data-fig')];
      var layout = Object.assign({}, f.layout, {autosize: true});
      if (f.t !== null) { layout.template = figs.templates[f.t]; }
      var config = {responsive: true, displaylogo: false, displayModeBar: 'hover'};
      Plotly.newPlot(d, f.data, layout, config);
    });
    document.querySelectorAll('details').forEach(function (det) {
      det.addEventListener('toggle', function () {
        det.querySelectorAll('.js-plotly-plot').forEach(function (g) { Plotly.Plots.resize(g); });
      });
    });
    document.documentElement.setAttribute('data-ia-figures', 'drawn');
  }
  if (!divs.length) { return; }
  if (typeof DecompressionStream === 'undefined') {
    missing('this browser cannot unpack the inlined plotly.js (it needs DecompressionStream: ' +
            'Chrome 80, Firefox 113, Safari 16.4 or later)');
    return;
  }
  var raw = atob(document.getElementById('ia-plotly').textContent.trim());
  var bytes = new Uint8Array(raw.length);
  for (var i = 0; i < raw.length; i++) { bytes[i] = raw.charCodeAt(i); }
  var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
  new Response(stream).text().then(function (js) {
    var s = document.createElement('script');
    s.textContent = js;
    document.head.appendChild(s);
    draw();
  }).catch(function (err) { missing(String(err)); });
})();
"""


@functools.lru_cache(maxsize=1)
def _plotly_gzip_b64() -> str:
    """plotly.js (the one the installed plotly ships), gzip level 9, base64: deterministic."""
    from plotly.offline import get_plotlyjs

    packed = gzip.compress(get_plotlyjs().encode("utf-8"), compresslevel=9, mtime=0)
    return base64.b64encode(packed).decode("ascii")


def _e(text: Any) -> str:
    return html.escape(str(text))


def _wrappable(text: Any) -> str:
    """Escaped text that may break after ``_`` (long check names wrap between words)."""
    return _e(text).replace("_", "_<wbr>")


def _escape_strings(value: Any) -> Any:
    """Every string inside a figure as text (plotly reads ``&lt;`` as ``<``)."""
    if isinstance(value, str):
        return html.escape(value, quote=False)
    if isinstance(value, dict):
        return {k: _escape_strings(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_escape_strings(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays (numbers, or strings)
        return _escape_strings(value.tolist())
    return value


def _script_json(value: Any) -> str:
    """JSON that is safe inside a ``<script>`` element (no ``<``, ``>`` or ``&`` in it)."""
    from plotly.utils import PlotlyJSONEncoder

    text = json.dumps(value, cls=PlotlyJSONEncoder, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class _Page:
    """Collects figures (and their shared templates) while the blocks are laid out."""

    def __init__(self) -> None:
        self.figures: list[dict[str, Any]] = []
        self.templates: list[Any] = []
        self._template_index: dict[str, int] = {}

    def figure(self, fig: Figure) -> str:
        spec = _escape_strings(fig.figure)
        layout = dict(spec.get("layout") or {})
        template = layout.pop("template", None)
        t = None
        if template is not None:
            key = json.dumps(template, sort_keys=True, default=str)
            t = self._template_index.setdefault(key, len(self.templates))
            if t == len(self.templates):
                self.templates.append(template)
        self.figures.append({"data": spec.get("data") or [], "layout": layout, "t": t})
        cap = f"<figcaption>{_e(fig.caption)}</figcaption>" if fig.caption else ""
        index = len(self.figures) - 1
        return f"<figure><div class='ia-fig' data-fig='{index}'></div>{cap}</figure>"

    # ---- blocks --------------------------------------------------------------------------
    def block(self, b: Block) -> str:
        if isinstance(b, Text):
            return f"<p class='small'>{_e(b.text)}</p>" if b.small else f"<p>{_e(b.text)}</p>"
        if isinstance(b, Table):
            return self.table(b)
        if isinstance(b, KeyValues):
            rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in b.items)
            return f"<table class='kv'>{rows}</table>"
        if isinstance(b, Figure):
            return self.figure(b)
        if isinstance(b, Svg):
            cap = f"<figcaption>{_e(b.caption)}</figcaption>" if b.caption else ""
            return f"<figure class='svg'>{b.markup}{cap}</figure>"
        if isinstance(b, Markup):
            return f"<div>{b.html}</div>"
        if isinstance(b, Pre):
            return f"<pre>{_e(b.text)}</pre>"
        if isinstance(b, Columns):
            return "<div class='cols'>" + "".join(self._child(x) for x in b.parts) + "</div>"
        if isinstance(b, Grid):
            width = f"min({b.min_width_px}px,100%)"
            style = f"grid-template-columns:repeat(auto-fit,minmax({width},1fr))"
            return (
                f"<div class='grid' style='{style}'>"
                + "".join(f"<div>{self.block(x)}</div>" for x in b.parts)
                + "</div>"
            )
        if isinstance(b, Details):
            inner = "".join(self.block(x) for x in b.parts)
            return (
                f"<details{' open' if b.open else ''}><summary>{_e(b.summary)}</summary>"
                f"{inner}</details>"
            )
        raise TypeError(f"not a report block: {type(b).__name__}")

    def _child(self, b: Block) -> str:
        cls = " class='svg'" if isinstance(b, Svg) else ""
        return f"<div{cls}>{self.block(b)}</div>"

    def table(self, t: Table) -> str:
        def cls(j: int) -> str:
            return " class='num'" if j in t.numeric else " class='nw'" if j in t.nowrap else ""

        head = "".join(f"<th{cls(j)}>{_e(c)}</th>" for j, c in enumerate(t.columns))
        groups = dict(t.groups)
        span = len(t.columns)
        body = "".join(
            (
                f"<tr class='group'><th colspan='{span}'>{_cell(groups[i])}</th></tr>"
                if i in groups
                else ""
            )
            + "<tr>"
            + "".join(f"<td{cls(j)}>{_cell(c)}</td>" for j, c in enumerate(row))
            + "</tr>"
            for i, row in enumerate(t.rows)
        )
        cap = f"<caption>{_e(t.caption)}</caption>" if t.caption else ""
        klass = " class='compact'" if t.compact else ""
        return f"<table{klass}>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def section(self, s: Section) -> str:
        level = 3 if s.level == 3 else 2
        anchor = f" id='{_e(s.anchor)}'" if s.anchor else ""
        badge = f" {_badge(s.badge)}" if s.badge else ""
        return (
            f"<section{anchor}><h{level}>{_e(s.title)}{badge}</h{level}>"
            + "".join(self.block(b) for b in s.parts)
            + "</section>"
        )


def _badge(b: Badge) -> str:
    return f"<span class='badge {b.kind}'>{_e((b.text or b.kind).upper())}</span>"


def _cell(c: Cell) -> str:
    if isinstance(c, Badge):
        return _badge(c)
    if isinstance(c, Link):
        return f"<a href='#{_e(c.anchor)}'>{_wrappable(c.text)}</a>"
    return _wrappable(c)


def render(view: ReportView) -> str:
    """The view as one self-contained HTML page (no network needed to open it)."""
    page = _Page()
    intro = "".join(page.block(b) for b in view.intro)
    body = "".join(page.section(s) for s in view.sections)
    footer = "".join(f"<div>{_e(line)}</div>" for line in view.footer)
    scripts = ""
    if page.figures:
        data = {"templates": page.templates, "figures": page.figures}
        scripts = (
            f"<script type='application/json' id='ia-figures'>{_script_json(data)}</script>"
            "<script type='application/octet-stream' id='ia-plotly'>"
            f"{_plotly_gzip_b64()}</script><script>{_LOADER}</script>"
        )
    meta = (
        f"<meta name='interp-audit-data' content='{_e(view.data_digest)}'>"
        if view.data_digest
        else ""
    )
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        + meta
        + "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        + f"<title>interp_audit: {_e(view.title)}</title><style>{_STYLE}</style></head><body>"
        + f"<h1>Audit {_e(view.title)}: {_badge(view.verdict)}</h1>"
        + intro
        + body
        + (f"<footer>{footer}</footer>" if footer else "")
        + scripts
        + "</body></html>"
    )
