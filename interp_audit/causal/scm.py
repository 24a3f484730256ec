"""Structural causal models from the user: equations in a Python file, or discrete conditional
probability tables in YAML. Units are exogenous noise draws; every world (factual, intervened,
path-specific) is computed from the same noise, so a counterfactual is the *same unit* elsewhere.

Python file protocol (the user's own code, imported from the path they give)::

    VARIABLES = ["A", "X", "Y"]          # equation names, in noise-sampling order
    VALUES = {"A": ["young", "old"]}     # optional: names of categorical values (index = value)
    SHARED_NOISE = {"Y_fair": "Y"}       # optional: a variable reusing another's noise
    def A(u): return u                   # parents are the parameter names; ``u`` is the noise
    def noise_A(n, generator): return torch.randint(0, 2, (n,), generator=generator)
    def support_A(): return torch.tensor([0, 1]), torch.tensor([0.5, 0.5])  # optional
    def X(A, u): ...

``support_NAME()`` declares that ``NAME``'s noise is discrete: its possible values and their
probabilities. When every noise a question depends on has a finite support (tables always do),
population effects are computed by exact enumeration (:mod:`interp_audit.causal.population`).

Tables (``variables:`` mapping, in sampling order)::

    A: {values: [young, old], p: [0.6, 0.4]}
    Z: {values: [private, public], parents: [A], p: {young: [0.7, 0.3], old: [0.2, 0.8]}}

Each table variable draws ``u ~ U(0, 1)`` and takes the value whose CDF interval holds it
(inverse CDF), so a parent's change moves a child only where its noise crosses a boundary.
Rows of multi-parent tables are keyed by the parents' value names joined by ``", "``.
A table variable's noise has a finite support for exact enumeration: the cells between
consecutive CDF boundaries of all its rows (any ``u`` in a cell gives the same value in every row).
"""

from __future__ import annotations

import importlib.util
import inspect
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from interp_audit.core.errors import SpecError, did_you_mean

if TYPE_CHECKING:
    from interp_audit.causal.graph import CausalGraph

__all__ = ["SCM", "Units", "Variable"]


@dataclass(frozen=True)
class Variable:
    """One structural equation: ``value = fn(**parents, u=noise)``."""

    name: str
    parents: tuple[str, ...]
    fn: Callable[..., Tensor]
    noise: Callable[[int, torch.Generator], Tensor] | None = None
    values: tuple[str, ...] | None = None  # names of categorical values (index = value)
    shares_noise_with: str | None = None
    takes_noise: bool = True
    #: a finite noise support: ``support() -> (noise values [k], probabilities [k])``
    support: Callable[[], tuple[Tensor, Tensor]] | None = None


@dataclass(frozen=True)
class Units:
    """Exogenous noise of ``n`` units, one tensor per variable (first axis = unit)."""

    noise: dict[str, Tensor]
    n: int

    def __len__(self) -> int:
        return self.n

    def select(self, idx: Tensor | Sequence[int]) -> Units:
        idx = torch.as_tensor(idx, dtype=torch.long)
        return Units({k: v[idx] for k, v in self.noise.items()}, len(idx))

    @staticmethod
    def cat(parts: Sequence[Units]) -> Units:
        keys = parts[0].noise.keys()
        return Units(
            {k: torch.cat([p.noise[k] for p in parts]) for k in keys}, sum(p.n for p in parts)
        )


@dataclass
class SCM:
    """Structural equations over named variables, in noise-sampling order."""

    variables: dict[str, Variable]
    source: str = "<memory>"
    _order: list[str] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        for v in self.variables.values():
            for p in v.parents:
                if p not in self.variables:
                    raise SpecError(
                        f"SCM {self.source}: equation {v.name} reads {p!r}, which has no equation "
                        f"(variables: {', '.join(self.variables)}){did_you_mean(p, self.variables)}"
                    )
            if v.shares_noise_with is not None and v.shares_noise_with not in self.variables:
                raise SpecError(
                    f"SCM {self.source}: {v.name} shares noise with unknown variable "
                    f"{v.shares_noise_with!r}"
                )
        self._order = self._topo()

    def _topo(self) -> list[str]:
        done: list[str] = []
        state: dict[str, int] = {}

        def visit(n: str, trail: list[str]) -> None:
            if state.get(n) == 2:
                return
            if state.get(n) == 1:
                cyc = trail[trail.index(n) :] + [n]
                raise SpecError(f"SCM {self.source}: the equations are cyclic: {' -> '.join(cyc)}")
            state[n] = 1
            for p in self.variables[n].parents:
                visit(p, [*trail, n])
            state[n] = 2
            done.append(n)

        for n in self.variables:
            visit(n, [])
        return done

    # ---- loading ---------------------------------------------------------------------------
    @classmethod
    def from_python(cls, path: str | Path) -> SCM:
        """Equations from a Python file (see the module docstring for the protocol)."""
        path = Path(path)
        if not path.exists():
            raise SpecError(f"SCM file {str(path)!r} does not exist")
        spec = importlib.util.spec_from_file_location(f"_ia_scm_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as err:  # the user's file: say which and why
            raise SpecError(f"SCM file {path.name} failed to import: {err!r}") from err
        names = getattr(module, "VARIABLES", None)
        if not names:
            raise SpecError(
                f"SCM file {path.name} must define VARIABLES = [...] naming its equations in "
                "noise-sampling order"
            )
        values = getattr(module, "VALUES", {}) or {}
        shared = getattr(module, "SHARED_NOISE", {}) or {}
        out: dict[str, Variable] = {}
        for name in names:
            fn = getattr(module, name, None)
            if not callable(fn):
                raise SpecError(f"SCM file {path.name}: VARIABLES names {name!r}, no such function")
            params = list(inspect.signature(fn).parameters)
            noise = getattr(module, f"noise_{name}", None)
            support = getattr(module, f"support_{name}", None)
            if support is not None and not callable(support):
                raise SpecError(
                    f"SCM file {path.name}: support_{name} must be a function returning "
                    "(noise values, probabilities)"
                )
            takes_u = "u" in params
            if takes_u and noise is None and name not in shared:
                raise SpecError(
                    f"SCM file {path.name}: {name}(..., u) takes noise but there is no "
                    f"noise_{name}(n, generator) sampler and no SHARED_NOISE entry"
                )
            out[name] = Variable(
                name=name,
                parents=tuple(p for p in params if p != "u"),
                fn=fn,
                noise=noise,
                values=tuple(values[name]) if name in values else None,
                shares_noise_with=shared.get(name),
                takes_noise=takes_u,
                support=support,
            )
        return cls(out, source=path.name)

    @classmethod
    def from_tables(cls, tables: dict[str, Any] | str | Path) -> SCM:
        """Discrete conditional probability tables (a mapping, or a YAML file holding one)."""
        source = "<tables>"
        if not isinstance(tables, dict):
            path = Path(tables)
            if not path.exists():
                raise SpecError(f"SCM tables file {str(path)!r} does not exist")
            source = path.name
            from interp_audit.core.yamlio import (
                load_yaml,  # YAML 1.2 booleans: YES / NO stay strings
            )

            tables = load_yaml(path.read_text())
        spec = tables.get("variables", tables) if isinstance(tables, dict) else None
        if not isinstance(spec, dict) or not spec:
            raise SpecError(f"SCM tables {source}: expected 'variables: {{NAME: {{values, p}}}}'")
        out: dict[str, Variable] = {}
        for name, entry in spec.items():
            out[name] = _table_variable(str(name), entry, out, source)
        return cls(out, source=source)

    # ---- worlds ----------------------------------------------------------------------------
    def sample(self, n: int, seed: int) -> Units:
        """Noise of ``n`` units: one generator seeded once, samplers called in declared order."""
        g = torch.Generator().manual_seed(seed)
        noise: dict[str, Tensor] = {}
        for name, v in self.variables.items():
            if v.noise is not None and v.shares_noise_with is None:
                u = torch.as_tensor(v.noise(n, g))
                if u.shape[:1] != (n,):
                    raise SpecError(
                        f"SCM {self.source}: noise_{name}({n}, generator) returned shape "
                        f"{tuple(u.shape)}; the first axis must be the {n} units"
                    )
                noise[name] = u
        return Units(noise, n)

    def _noise(self, units: Units, name: str) -> Tensor | None:
        v = self.variables[name]
        key = v.shares_noise_with or name
        return units.noise.get(key)

    def _eval(self, name: str, parents: dict[str, Tensor], units: Units) -> Tensor:
        v = self.variables[name]
        kw = dict(parents)
        if v.takes_noise:
            kw["u"] = self._noise(units, name)
        out = torch.as_tensor(v.fn(**kw))
        if out.shape[:1] != (units.n,):
            raise SpecError(
                f"SCM {self.source}: equation {name} returned shape {tuple(out.shape)} for "
                f"{units.n} units"
            )
        return out

    def values(self, units: Units, do: dict[str, Any] | None = None) -> dict[str, Tensor]:
        """Every variable's value for each unit (``do``: variables held fixed)."""
        do = {k: self.encode(k, v) for k, v in (do or {}).items()}
        vals: dict[str, Tensor] = {}
        for name in self._order:
            if name in do:
                vals[name] = torch.full((units.n,), do[name])
            else:
                ps = {p: vals[p] for p in self.variables[name].parents}
                vals[name] = self._eval(name, ps, units)
        return vals

    def encode(self, name: str, value: Any):
        """A value given by name (``"young"``) or number -> what the equations compute with."""
        if name not in self.variables:
            raise SpecError(
                f"SCM {self.source} has no variable {name!r} (variables: "
                f"{', '.join(self.variables)}){did_you_mean(str(name), self.variables)}"
            )
        names = self.variables[name].values
        if isinstance(value, str):
            if names is None or value not in names:
                if value.lstrip("-").isdigit():
                    return int(value)
                raise SpecError(
                    f"{value!r} is not a value of {name} (values: "
                    f"{list(names) if names else 'numbers'}){did_you_mean(value, names or [])}"
                )
            return names.index(value)
        return value

    def value_name(self, name: str, value) -> str:
        names = self.variables[name].values
        v = value.item() if isinstance(value, Tensor) else value
        if names is not None and float(v).is_integer() and 0 <= int(v) < len(names):
            return names[int(v)]
        return str(int(v)) if float(v).is_integer() else f"{v:g}"

    def path_specific(
        self,
        units: Units,
        graph: CausalGraph,
        source: str,
        value: Any,
        paths: Sequence[tuple[str, ...]],
        *,
        factual: dict[str, Tensor] | None = None,
        targets: Sequence[str] = (),
    ) -> dict[str, Tensor]:
        """Nested path-specific counterfactual (Avin, Shpitser & Pearl 2005) for each parent of
        the outcome: the value it takes when ``source`` is set to ``value`` along ``paths`` only.

        A variable reached along an audited path prefix computes its equation from its parents'
        values on those prefixes; every other variable keeps its factual (reference) value; all
        share the unit's noise. Formally val(V, K) for a set K of path prefixes ending at V:
        the factual value if K is empty, ``value`` if V is the source, otherwise
        f_V(val(P, {k[:-1] : k in K, k[-2] = P}) for each parent P; u_V).

        ``targets``: SCM variables outside the graph (e.g. the true label) to evaluate in the same
        world, so the SCM's own path effect (its sign) can be compared with the model's.
        """
        self.check_graph(graph)
        fact = factual if factual is not None else self.values(units)
        x = self.encode(source, value)
        memo: dict[tuple[str, frozenset], Tensor] = {}

        def val(node: str, prefixes: frozenset) -> Tensor:
            if not prefixes:
                return fact[node]
            key = (node, prefixes)
            if key not in memo:
                if node == source:
                    memo[key] = torch.full_like(fact[node], x)
                else:
                    ps = {
                        p: val(p, frozenset(k[:-1] for k in prefixes if k[-2] == p))
                        for p in self.variables[node].parents
                    }
                    memo[key] = self._eval(node, ps, units)
            return memo[key]

        full = frozenset(tuple(p) for p in paths)
        out = {
            p: val(p, frozenset(k[:-1] for k in full if k[-2] == p))
            for p in graph.parents(graph.outcome)
        }
        for target in targets:
            # an SCM variable outside the graph (a label) in place of the outcome: on each path
            # it reads the *last* variable of the path that it has as a parent (true labs in place
            # of measured labs), at that variable's value on the path prefix; the source itself
            # only on the direct path; everything else factual
            reads = set(self.variables[target].parents)
            pre: dict[str, set] = {p: set() for p in reads}
            for k in full:
                hits = [i for i in range(1, len(k) - 1) if k[i] in reads]
                if hits:
                    pre[k[hits[-1]]].add(k[: hits[-1] + 1])
                elif len(k) == 2 and k[0] in reads:
                    pre[k[0]].add(k[:1])
            ps = {p: val(p, frozenset(pre[p])) for p in self.variables[target].parents}
            out[target] = self._eval(target, ps, units)
        return out

    def check_graph(self, graph: CausalGraph) -> None:
        """Every graph variable but the outcome has an equation whose parents are its parents in
        the graph; the outcome (the model's prediction) reads the rendered variables."""
        for node in graph.nodes:
            if node == graph.outcome:
                continue
            if node not in self.variables:
                raise SpecError(
                    f"graph variable {node!r} has no equation in SCM {self.source} (equations: "
                    f"{', '.join(self.variables)}){did_you_mean(node, self.variables)}"
                )
            want, got = sorted(graph.parents(node)), sorted(self.variables[node].parents)
            if want != got:
                raise SpecError(
                    f"graph and SCM {self.source} disagree on {node}'s parents: the graph says "
                    f"{want}, the equation reads {got}"
                )


def _table_variable(name: str, entry: Any, known: dict[str, Variable], source: str) -> Variable:
    if not isinstance(entry, dict) or "values" not in entry or "p" not in entry:
        raise SpecError(f"SCM tables {source}: {name} needs 'values' and 'p'")
    unknown = set(entry) - {"values", "parents", "p"}
    if unknown:
        raise SpecError(
            f"SCM tables {source}: unknown key {sorted(unknown)[0]!r} under {name} "
            "(valid: values, parents, p)"
        )
    values = tuple(str(v) for v in entry["values"])
    parents = tuple(str(p) for p in entry.get("parents") or [])
    for p in parents:
        if p not in known:
            raise SpecError(
                f"SCM tables {source}: {name}'s parent {p!r} must be declared before it "
                f"(declared so far: {', '.join(known) or 'none'})"
            )

    def row(probs, where: str) -> list[float]:
        probs = [float(x) for x in probs]
        if len(probs) != len(values) or any(x < 0 for x in probs):
            raise SpecError(
                f"SCM tables {source}: {name}{where} needs {len(values)} probabilities "
                f"(for {list(values)}), got {probs}"
            )
        if abs(sum(probs) - 1) > 1e-6:
            raise SpecError(
                f"SCM tables {source}: {name}{where} probabilities sum to {sum(probs)}, not 1"
            )
        return probs

    if not parents:
        cdf = torch.tensor(row(entry["p"], ""), dtype=torch.float64).cumsum(0)[None]
    else:
        table = entry["p"]
        if not isinstance(table, dict):
            raise SpecError(f"SCM tables {source}: {name} has parents, so 'p' maps rows to lists")
        combos = list(itertools.product(*(known[p].values for p in parents)))
        keys = [", ".join(c) for c in combos]
        extra = set(map(str, table)) - set(keys)
        if extra:
            k = sorted(extra)[0]
            raise SpecError(
                f"SCM tables {source}: {name} row {k!r} is not a combination of "
                f"{', '.join(parents)} (rows: {keys}){did_you_mean(k, keys)}"
            )
        missing = [k for k in keys if k not in table]
        if missing:
            raise SpecError(f"SCM tables {source}: {name} has no row for {missing[0]!r}")
        cdf = torch.tensor([row(table[k], f"[{k}]") for k in keys], dtype=torch.float64).cumsum(-1)
    sizes = [len(known[p].values) for p in parents]

    def fn(u, **pv):
        idx = torch.zeros_like(u, dtype=torch.long)
        for p, size in zip(parents, sizes, strict=True):
            idx = idx * size + pv[p].long()
        return (u.double()[:, None] >= cdf[idx]).sum(-1).clamp(max=len(values) - 1)

    def noise(n: int, g: torch.Generator) -> Tensor:
        return torch.rand(n, generator=g, dtype=torch.float64)

    def support() -> tuple[Tensor, Tensor]:
        """The cells between consecutive CDF boundaries (of every row): midpoints and lengths."""
        cuts = torch.cat([torch.tensor([0.0, 1.0], dtype=torch.float64), cdf.flatten()])
        cuts = cuts.clamp(0.0, 1.0).unique(sorted=True)
        keep = torch.cat([torch.tensor([True]), cuts.diff() > 1e-12])  # merge rounding twins
        cuts = cuts[keep]
        cuts[-1] = 1.0
        return (cuts[:-1] + cuts[1:]) / 2, cuts.diff()

    fn.__signature__ = inspect.Signature(
        [inspect.Parameter(p, inspect.Parameter.KEYWORD_ONLY) for p in parents]
        + [inspect.Parameter("u", inspect.Parameter.KEYWORD_ONLY)]
    )
    return Variable(name, parents, fn, noise, values, support=support)
