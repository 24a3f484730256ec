"""A user's causal graph: which directed paths lead from a variable to the outcome, and which of
them are admissible (may carry influence) or must be invariant.

Admissibility can be declared three ways, and combined:

* ``blocked_edges``: a path using any blocked edge is inadmissible;
* ``resolving``: Kilbertus et al. (2017) resolving variables: a path through one (as an interior
  node) is admissible, a path through none is not;
* ``admissible_paths``: paths named explicitly are admissible.

Rule: a path that uses a blocked edge is inadmissible. Otherwise it is admissible when it is
named in ``admissible_paths`` or passes through a resolving variable; when neither
``admissible_paths`` nor ``resolving`` is given, every path without a blocked edge is
admissible. With no declaration at all every path is inadmissible (counterfactual fairness:
the outcome must not depend on the source at all). Naming an admissible path that uses a blocked
edge is a conflict and an error.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

from interp_audit.core.errors import SpecError, did_you_mean

__all__ = ["CausalGraph", "format_path", "parse_path"]

Path = tuple[str, ...]


def parse_path(path: str | Sequence[str]) -> Path:
    """``"A -> X -> Y"`` or ``["A", "X", "Y"]`` -> ``("A", "X", "Y")``."""
    if isinstance(path, str):
        parts = tuple(p.strip() for p in path.split("->"))
    else:
        parts = tuple(str(p).strip() for p in path)
    if len(parts) < 2 or any(not p for p in parts):
        raise SpecError(
            f"path {path!r} is not a path: write it as 'A -> X -> Y' (at least two variables)"
        )
    return parts


def format_path(path: Sequence[str]) -> str:
    return " -> ".join(path)


def _parse_edge(edge: str | Sequence[str]) -> tuple[str, str]:
    p = parse_path(edge)
    if len(p) != 2:
        raise SpecError(f"edge {edge!r} must name exactly two variables, as 'A -> Y'")
    return p[0], p[1]


class CausalGraph:
    """A DAG (parent -> children), its outcome, and which paths to the outcome are admissible.

    >>> g = CausalGraph({"A": ["X", "Z", "Y"], "X": ["Y"], "Z": ["Y"]}, "Y", resolving=["X"])
    >>> g.paths("A")
    [('A', 'X', 'Y'), ('A', 'Y'), ('A', 'Z', 'Y')]
    >>> g.admissible(("A", "X", "Y")), g.admissible("A -> Y")
    (True, False)
    """

    def __init__(
        self,
        edges: dict[str, Iterable[str]],
        outcome: str,
        *,
        admissible_paths: Iterable[str | Sequence[str]] | None = None,
        blocked_edges: Iterable[str | Sequence[str]] | None = None,
        resolving: Iterable[str] | None = None,
    ) -> None:
        if not isinstance(edges, dict):
            raise SpecError(
                "edges must be a mapping parent -> list of children, e.g. {'A': ['X', 'Y']}; "
                f"got {type(edges).__name__}"
            )
        children: dict[str, list[str]] = {}
        for parent, kids in edges.items():
            if isinstance(kids, str):
                kids = [kids]
            kids = [str(k) for k in (kids or [])]
            if str(parent) in kids:
                raise SpecError(f"edge {parent} -> {parent} is a self-loop (cycle {parent})")
            children.setdefault(str(parent), [])
            for k in kids:
                if k not in children[str(parent)]:
                    children[str(parent)].append(k)
                children.setdefault(k, [])
        self._children = {k: sorted(v) for k, v in children.items()}
        self.nodes: tuple[str, ...] = tuple(sorted(self._children))
        self._parents: dict[str, list[str]] = {n: [] for n in self.nodes}
        for p, kids in self._children.items():
            for k in kids:
                self._parents[k].append(p)
        for v in self._parents.values():
            v.sort()
        self._check_acyclic()
        self.outcome = self._node(outcome, "outcome")
        if self._children[self.outcome]:
            raise SpecError(
                f"the outcome {self.outcome!r} has children {self._children[self.outcome]}; the "
                "outcome must be a sink (what the model predicts)"
            )
        self.blocked_edges: tuple[tuple[str, str], ...] = tuple(
            sorted({self._edge(e) for e in (blocked_edges or [])})
        )
        self.resolving: tuple[str, ...] = tuple(
            sorted({self._node(r, "resolving variable") for r in (resolving or [])})
        )
        if self.outcome in self.resolving:
            raise SpecError(
                f"the outcome {self.outcome!r} cannot be a resolving variable; resolving "
                "variables are interior nodes of paths"
            )
        self._explicit_given = admissible_paths is not None
        self._resolving_given = resolving is not None
        self.admissible_paths: tuple[Path, ...] = tuple(
            sorted({self._existing_path(p) for p in (admissible_paths or [])})
        )
        for p in self.admissible_paths:
            bad = self._blocked_in(p)
            if bad:
                raise SpecError(
                    f"conflicting admissibility: path {format_path(p)!r} is declared admissible "
                    f"but uses the blocked edge {format_path(bad)!r}"
                )

    # ---- structure -------------------------------------------------------------------------
    def _node(self, name: str, what: str) -> str:
        name = str(name)
        if name not in self._children:
            raise SpecError(
                f"{what} {name!r} is not a variable of the graph (variables: "
                f"{', '.join(self.nodes)}){did_you_mean(name, self.nodes)}"
            )
        return name

    def _edge(self, edge) -> tuple[str, str]:
        u, v = _parse_edge(edge)
        self._node(u, f"edge {u} -> {v}: variable")
        self._node(v, f"edge {u} -> {v}: variable")
        if v not in self._children[u]:
            raise SpecError(
                f"edge {u} -> {v} is not in the graph ({u}'s children: "
                f"{self._children[u] or 'none'})"
            )
        return u, v

    def _check_acyclic(self) -> None:
        state: dict[str, int] = {}
        stack: list[str] = []

        def visit(n: str) -> None:
            state[n] = 1
            stack.append(n)
            for c in self._children[n]:
                if state.get(c) == 1:
                    cycle = stack[stack.index(c) :] + [c]
                    raise SpecError(
                        f"the graph has a cycle: {format_path(cycle)}; a causal graph must be "
                        "acyclic"
                    )
                if c not in state:
                    visit(c)
            stack.pop()
            state[n] = 2

        for n in self.nodes:
            if n not in state:
                visit(n)

    def parents(self, node: str) -> list[str]:
        return list(self._parents[self._node(node, "variable")])

    def children(self, node: str) -> list[str]:
        return list(self._children[self._node(node, "variable")])

    @property
    def edges(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self._children.items() if v}

    def topological_order(self) -> list[str]:
        """Variables, parents before children (ties broken by name, so deterministic)."""
        indeg = {n: len(self._parents[n]) for n in self.nodes}
        ready = sorted(n for n, d in indeg.items() if d == 0)
        out: list[str] = []
        while ready:
            n = ready.pop(0)
            out.append(n)
            for c in self._children[n]:
                indeg[c] -= 1
                if indeg[c] == 0:
                    ready.append(c)
                    ready.sort()
        return out

    def sources(self) -> list[str]:
        """Variables with no parents that reach the outcome."""
        return [
            n for n in self.nodes if not self._parents[n] and n != self.outcome and self._reaches(n)
        ]

    def _reaches(self, node: str) -> bool:
        seen, todo = set(), [node]
        while todo:
            n = todo.pop()
            if n == self.outcome:
                return True
            if n not in seen:
                seen.add(n)
                todo.extend(self._children[n])
        return False

    # ---- paths -----------------------------------------------------------------------------
    def paths(self, source: str) -> list[Path]:
        """Every directed path from ``source`` to the outcome, sorted (tuple order)."""
        source = self._node(source, "source")
        if source == self.outcome:
            raise SpecError(f"source {source!r} is the outcome itself")
        out: list[Path] = []

        def walk(path: list[str]) -> None:
            here = path[-1]
            if here == self.outcome:
                out.append(tuple(path))
                return
            for c in self._children[here]:
                walk([*path, c])

        walk([source])
        if not out:
            raise SpecError(
                f"the outcome {self.outcome!r} is not reachable from {source!r} (its "
                f"descendants: {sorted(self._descendants(source)) or 'none'})"
            )
        return sorted(out)

    def _descendants(self, node: str) -> set[str]:
        seen: set[str] = set()
        todo = list(self._children[node])
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(self._children[n])
        return seen

    def _existing_path(self, path: str | Sequence[str]) -> Path:
        p = parse_path(path)
        for n in p:
            self._node(n, f"path {format_path(p)!r}: variable")
        missing = [(a, b) for a, b in zip(p, p[1:], strict=False) if b not in self._children[a]]
        if missing:
            a, b = missing[0]
            raise SpecError(
                f"path {format_path(p)!r} does not exist: there is no edge {a} -> {b} "
                f"({a}'s children: {self._children[a] or 'none'})"
            )
        if p[-1] != self.outcome:
            raise SpecError(f"path {format_path(p)!r} does not end at the outcome {self.outcome!r}")
        return p

    def _blocked_in(self, path: Path) -> tuple[str, str] | None:
        for e in zip(path, path[1:], strict=False):
            if e in self.blocked_edges:
                return e
        return None

    def with_admissibility(self, choices: dict[str | Sequence[str], bool]) -> CausalGraph:
        """A copy in which the given paths are taken as admissible (True) or not (False),
        whatever the declared rules say: one choice about contested paths (``interp-audit
        sensitivity``). ``why`` says so; the copy counts the admissibility questions asked of
        it (``queries``), so a caller can tell which results depend on the choice."""
        import copy

        out = copy.copy(self)
        out._overrides = {self._existing_path(p): bool(v) for p, v in choices.items()}
        out.queries = 0
        return out

    def admissible(self, path: str | Sequence[str]) -> bool:
        """Whether ``path`` (an existing source -> outcome path) may carry influence."""
        p = self._existing_path(path)
        self.queries = getattr(self, "queries", 0) + 1
        if p in getattr(self, "_overrides", {}):
            return self._overrides[p]
        if self._blocked_in(p):
            return False
        if p in self.admissible_paths:
            return True
        if any(n in self.resolving for n in p[1:-1]):
            return True
        if self._explicit_given or self._resolving_given:
            return False
        return bool(self.blocked_edges)

    def why(self, path: str | Sequence[str]) -> str:
        """A short reason for the path's classification (shown in reports)."""
        p = self._existing_path(path)
        self.queries = getattr(self, "queries", 0) + 1
        if p in getattr(self, "_overrides", {}):
            taken = "admissible" if self._overrides[p] else "inadmissible"
            return f"contested: taken as {taken} (sensitivity choice)"
        bad = self._blocked_in(p)
        if bad:
            return f"uses blocked edge {format_path(bad)}"
        if p in self.admissible_paths:
            return "declared admissible"
        via = [n for n in p[1:-1] if n in self.resolving]
        if via:
            return f"through resolving variable {', '.join(via)}"
        if self._explicit_given or self._resolving_given:
            return "not declared admissible" + (
                " and through no resolving variable" if self._resolving_given else ""
            )
        return "no blocked edge" if self.blocked_edges else "no admissibility declared"

    def admissible_paths_from(self, source: str) -> list[Path]:
        return [p for p in self.paths(source) if self.admissible(p)]

    def inadmissible_paths(self, source: str) -> list[Path]:
        return [p for p in self.paths(source) if not self.admissible(p)]

    def check_paths(self, source: str, paths: Iterable[str | Sequence[str]]) -> list[Path]:
        """Validate paths named for ``source`` (they must exist and start there)."""
        out = []
        for path in paths:
            p = self._existing_path(path)
            if p[0] != source:
                raise SpecError(f"path {format_path(p)!r} does not start at {source!r}")
            out.append(p)
        return out

    # ---- serialisation and display -----------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "edges": self.edges,
            "outcome": self.outcome,
            "admissible_paths": [format_path(p) for p in self.admissible_paths]
            if self._explicit_given
            else None,
            "blocked_edges": [format_path(e) for e in self.blocked_edges],
            "resolving": list(self.resolving) if self._resolving_given else None,
            "paths": {
                s: [
                    {"path": format_path(p), "admissible": self.admissible(p), "why": self.why(p)}
                    for p in self.paths(s)
                ]
                for s in self.sources()
            },
            **(
                {"contested": {format_path(p): v for p, v in self._overrides.items()}}
                if getattr(self, "_overrides", None)
                else {}
            ),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CausalGraph:
        known = {
            "edges", "outcome", "admissible_paths", "blocked_edges", "resolving", "paths",
            "contested",
        }  # fmt: skip
        unknown = set(d) - known
        if unknown:
            key = sorted(unknown)[0]
            raise SpecError(
                f"unknown causal graph key {key!r}{did_you_mean(key, known)}; valid keys: "
                f"{', '.join(sorted(known - {'paths', 'contested'}))}"
            )
        if "edges" not in d or "outcome" not in d:
            raise SpecError("a causal graph needs 'edges' (parent -> children) and 'outcome'")
        graph = cls(
            d["edges"],
            d["outcome"],
            admissible_paths=d.get("admissible_paths"),
            blocked_edges=d.get("blocked_edges"),
            resolving=d.get("resolving"),
        )
        return graph.with_admissibility(d["contested"]) if d.get("contested") else graph

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CausalGraph) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(repr(self.to_dict()))

    def __repr__(self) -> str:
        lines = [f"CausalGraph(outcome={self.outcome!r}, {len(self.nodes)} variables)"]
        for s in self.sources():
            for p in self.paths(s):
                tag = "admissible  " if self.admissible(p) else "INADMISSIBLE"
                lines.append(f"  [{tag}] {format_path(p)}  ({self.why(p)})")
        return "\n".join(lines)

    def to_svg(self, source: str | None = None) -> str:
        from interp_audit.causal.svg import graph_svg

        return graph_svg(self, source)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td style='color:{'#2e7d32' if self.admissible(p) else '#c62828'};"
            f"font-weight:bold'>{'admissible' if self.admissible(p) else 'inadmissible'}</td>"
            f"<td>{html.escape(format_path(p))}</td><td>{html.escape(self.why(p))}</td></tr>"
            for s in self.sources()
            for p in self.paths(s)
        )
        return (
            f"<div>{self.to_svg()}<table><tr><th></th><th>path</th><th>why</th></tr>{rows}"
            "</table></div>"
        )
