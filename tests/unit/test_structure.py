"""Structure: layers that only look down, no import cycles, and a new check kind or locate
method is one registration."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Literal

import pytest
from pydantic import Field

import interp_audit as ia
from interp_audit.audit.context import AuditContext
from interp_audit.audit.kinds import check_kinds
from interp_audit.audit.measure import pair_effects
from interp_audit.audit.registry import CheckKind, register_check
from interp_audit.audit.result import CheckResult
from interp_audit.audit.sections import CheckSpec
from interp_audit.methods.locate.methods import locate_methods
from interp_audit.methods.locate.registry import LocateMethod, register_locate

PACKAGE = Path(ia.__file__).resolve().parent


#: The layers, bottom to top (docs/architecture.md). A module may import its own layer and the
#: layers below it, never one above, not even inside a function. ``stats`` and ``output`` sit low:
#: they know numbers and files, not models or audits (the audit layer hands the renderer a
#: finished view), so every layer can use them.
LAYERS = {
    "core": 0,
    "stats": 1,
    "output": 1,
    "model": 2,
    "zoo": 2,
    "engine": 3,
    "methods": 4,
    "causal": 5,
    "audit": 6,
    "": 6.5,  # the package root: the public API, made of everything below
    "cli": 7,
}

#: Known upward edges, each to be removed by the issue that owns it (this set only shrinks; it
#: is empty: issue 26 item 6 gave the renderer a finished view from the audit layer).
KNOWN_UPWARD: set[tuple[str, str]] = set()


def _modules() -> dict[str, Path]:
    mods = {}
    for f in PACKAGE.rglob("*.py"):
        parts = ["interp_audit", *f.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


def _import_graph() -> dict[str, set[str]]:
    """Module -> modules its import statements execute: module- and function-level imports alike,
    and the ``__init__`` of every package on the way (``import a.b.c`` runs ``a`` and ``a.b``)."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, f in mods.items():
        pkg = mod if f.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(f.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = pkg
                for _ in range(node.level - 1):
                    base = base.rsplit(".", 1)[0]
                target = (
                    node.module if not node.level else ".".join(filter(None, [base, node.module]))
                )
                for a in node.names:
                    sub = f"{target}.{a.name}"
                    targets.append(sub if sub in mods else target)
            for t in targets:
                parts = t.split(".")
                executed = {".".join(parts[:i]) for i in range(2, len(parts) + 1)}
                graph[mod] |= {
                    e for e in executed if e in mods and e != mod and not mod.startswith(e + ".")
                }
    return graph


def _layer(module: str) -> float:
    parts = module.split(".")
    return LAYERS[parts[1] if len(parts) > 1 else ""]


def _upward(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {(m, t) for m, ts in graph.items() for t in ts if _layer(t) > _layer(m)}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_belongs_to_a_layer():
    unknown = sorted(m for m in _modules() if m.count(".") and m.split(".")[1] not in LAYERS)
    assert unknown == [], "add each new top-level folder to LAYERS (docs/architecture.md)"


def test_no_layer_imports_a_layer_above_it():
    upward = _upward(_import_graph())
    assert upward - KNOWN_UPWARD == set()
    # the allowance only shrinks: an entry that no longer occurs must be deleted from it
    assert KNOWN_UPWARD - upward == set()


def test_the_import_graph_has_no_cycles():
    graph = _import_graph()
    for m, t in KNOWN_UPWARD:
        graph[m].discard(t)
    assert _cycles(graph) == []


def test_the_graph_counts_package_init_edges():
    # importing a module runs its package's __init__: the graph must show that edge too
    graph = _import_graph()
    assert "interp_audit.engine.executor_base" in graph["interp_audit.engine.batched"]
    assert "interp_audit.methods.features" in graph["interp_audit.methods.locate.features"]


def test_the_layer_test_sees_an_upward_import():
    assert _upward({"interp_audit.model.x": {"interp_audit.audit.y"}}) == {
        ("interp_audit.model.x", "interp_audit.audit.y")
    }


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_only_the_registries_know_kinds_and_methods():
    assert {"invariance", "path_invariance", "component_mediation", "intervention"} <= set(
        check_kinds()
    )
    assert {"patch", "atp", "atp*", "ig"} <= set(locate_methods())
    with pytest.raises(ValueError, match="already registered"):
        register_check(check_kinds()["invariance"])
    with pytest.raises(ValueError, match="already registered"):
        register_locate(locate_methods()["patch"])


class _SignCheck(CheckSpec):
    """Test kind: the mean effect of a swap must be positive."""

    kind: Literal["sign_test_kind"]
    contrast: str
    floor: float = Field(0.0)


def _run_sign(chk: _SignCheck, ctx: AuditContext, name: str) -> CheckResult:
    clean, cf = pair_effects(ctx.subject, ctx.contrasts[chk.contrast], ctx.metric)
    mean = float((clean - cf).mean())
    return CheckResult(name, chk.kind, mean > chk.floor, mean, (mean, mean), chk.floor, "sign")


def _zero(step, contrast, metric, ctx):
    eff = ia.patch(ctx.subject, contrast, metric, sites=step.sites, normalize=False)
    eff.values.zero_()
    eff.method = "zeros_test_method"
    return eff


@pytest.fixture
def test_registrations(monkeypatch):
    """Register the test kind and method for one test only (the spec reference, generated from
    the registries, must not see them afterwards)."""
    from interp_audit.audit import registry as checks
    from interp_audit.methods.locate import registry as methods

    monkeypatch.setattr(checks, "_CHECKS", dict(checks._CHECKS))
    monkeypatch.setattr(methods, "_METHODS", dict(methods._METHODS))
    register_check(CheckKind("sign_test_kind", _SignCheck, _run_sign, "test kind"))
    register_locate(LocateMethod("zeros_test_method", _zero, "test method"))


def test_a_new_kind_and_method_are_one_registration_each(handbuilt, test_registrations):
    spec = {
        "model": {"source": "zoo:handbuilt-copy"},
        "contrasts": {
            "swap": {
                "template": "{s} x ->",
                "swap": {"slot": "s", "pairs": [["A", "B"]]},
                "answers": ["YES", "NO"],
            }
        },
        "locate": [{"method": "zeros_test_method", "contrast": "swap", "name": "z"}],
        "checks": [{"kind": "sign_test_kind", "contrast": "swap", "floor": 7.9}],
    }
    report = ia.audit(spec, subject=handbuilt)
    # handbuilt: logit_diff is +4 on A, -4 on B, so the swap's effect is exactly 8
    assert report.checks[0].statistic == pytest.approx(8.0, abs=1e-4)
    assert report.checks[0].passed
    assert float(report.effects["z"].values.abs().sum()) == 0.0
    with pytest.raises(ia.SpecError, match="unknown key 'checks.0.flor'.*did you mean 'floor'"):
        ia.audit({**spec, "checks": [{"kind": "sign_test_kind", "contrast": "swap", "flor": 1}]})
