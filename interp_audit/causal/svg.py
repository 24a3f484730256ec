"""Inline SVG of a causal graph (no graphviz): a layered layout, left to right.

Layers are longest-path depths from the roots; within a layer nodes are ordered by the mean
position of their parents (one barycentre pass), which keeps small DAGs readable. Edges that lie
only on admissible paths are green, only on inadmissible paths red, on both amber; blocked
edges are dashed.
"""

from __future__ import annotations

import html
import math
from typing import Any

CausalGraph = Any  # a CausalGraph (not imported: graph.py imports this module)

GREEN, RED, AMBER, GREY = "#2e7d32", "#c62828", "#b26a00", "#9e9e9e"


def _layers(g: CausalGraph) -> dict[str, int]:
    depth: dict[str, int] = {}
    for n in g.topological_order():
        ps = g.parents(n)
        depth[n] = 1 + max(depth[p] for p in ps) if ps else 0
    depth[g.outcome] = max(depth.values())  # the outcome sits alone on the right
    return depth


def graph_svg(g: CausalGraph, source: str | None = None) -> str:
    depth = _layers(g)
    n_layers = max(depth.values()) + 1
    columns: list[list[str]] = [[] for _ in range(n_layers)]
    for n in g.topological_order():
        columns[depth[n]].append(n)
    ypos: dict[str, float] = {}
    for col in columns:

        def key(n: str) -> tuple[float, str]:
            ps = [ypos[p] for p in g.parents(n) if p in ypos]
            return (sum(ps) / len(ps) if ps else -1.0, n)

        col.sort(key=key)
        for i, n in enumerate(col):
            ypos[n] = i - (len(col) - 1) / 2
    height_n = max(len(c) for c in columns)
    dx, dy, r, pad = 130, 70, 22, 30
    width = pad * 2 + (n_layers - 1) * dx + 2 * r
    height = pad * 2 + (height_n - 1) * dy + 2 * r
    xy = {
        n: (pad + r + depth[n] * dx, pad + r + (ypos[n] + (height_n - 1) / 2) * dy) for n in g.nodes
    }
    on: dict[tuple[str, str], set[bool]] = {}
    for s in [source] if source else g.sources():
        for p in g.paths(s):
            ok = g.admissible(p)
            for e in zip(p, p[1:], strict=False):
                on.setdefault(e, set()).add(ok)
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}' font-family='sans-serif' font-size='13'>",
        "<defs>",
    ]
    for name, colour in (("g", GREEN), ("r", RED), ("a", AMBER), ("n", GREY)):
        parts.append(
            f"<marker id='arrow-{name}' viewBox='0 0 10 10' refX='10' refY='5' markerWidth='7' "
            f"markerHeight='7' orient='auto'><path d='M0,0 L10,5 L0,10 z' fill='{colour}'/>"
            "</marker>"
        )
    parts.append("</defs>")
    for u, kids in g.edges.items():
        for v in kids:
            (x1, y1), (x2, y2) = xy[u], xy[v]
            d = math.hypot(x2 - x1, y2 - y1) or 1.0
            ux, uy = (x2 - x1) / d, (y2 - y1) / d
            kinds = on.get((u, v), set())
            colour, tag = (
                (GREEN, "g")
                if kinds == {True}
                else (RED, "r")
                if kinds == {False}
                else (AMBER, "a")
                if kinds
                else (GREY, "n")
            )
            dash = " stroke-dasharray='5,3'" if (u, v) in g.blocked_edges else ""
            # long edges that skip layers bow a little so they do not run through nodes
            mx, my = (x1 + x2) / 2, (y1 + y2) / 2
            skip = abs(depth[v] - depth[u]) > 1
            bend = 0.25 * d if skip else 0.0
            cx, cy = mx - uy * bend, my + ux * bend
            sx, sy = x1 + ux * r, y1 + uy * r
            ex, ey = x2 - ux * r, y2 - uy * r
            parts.append(
                f"<path d='M{sx:.1f},{sy:.1f} Q{cx:.1f},{cy:.1f} {ex:.1f},{ey:.1f}' fill='none' "
                f"stroke='{colour}' stroke-width='2'{dash} marker-end='url(#arrow-{tag})'>"
                f"<title>{html.escape(u)} -&gt; {html.escape(v)}</title></path>"
            )
    for n, (x, y) in xy.items():
        fill = "#fff3e0" if n in g.resolving else ("#e3f2fd" if n == g.outcome else "#ffffff")
        parts.append(
            f"<circle cx='{x:.1f}' cy='{y:.1f}' r='{r}' fill='{fill}' stroke='#424242'/>"
            f"<text x='{x:.1f}' y='{y + 4:.1f}' text-anchor='middle'>{html.escape(n)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
