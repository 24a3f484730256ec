"""Structure: layers that only look down, no import cycles, and a new check kind or locate
method is one registration."""

from __future__ import annotations

import ast
import re
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
from interp_audit.methods.locate.methods import (
    exact_component_methods,
    feature_methods,
    locate_methods,
)
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


def test_capabilities_are_read_from_registry_flags_not_names():
    exact = set(exact_component_methods())
    assert "patch" in exact and not exact & {"atp", "atp*", "ig", "sae_patch", "sae_atp"}
    assert {"sae_patch", "sae_atp"} <= set(feature_methods())
    assert "patch" not in feature_methods()
    # no audit-layer module names a locate method where a registry flag answers
    named = [
        f"{f.relative_to(PACKAGE.parent)}:{node.lineno}"
        for f in sorted((PACKAGE / "audit").rglob("*.py"))
        for node in ast.walk(ast.parse(f.read_text()))
        if isinstance(node, ast.Compare)
        and any(
            isinstance(c, ast.Constant) and c.value in locate_methods()
            for c in [node.left, *node.comparators]
        )
    ]
    assert named == []


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
    # registered exact over components (the default flags): the batched-vs-serial gate checks it
    gates = report.provenance["trust_gates"]
    assert [g["target"] for g in gates if g["name"] == "batched_vs_serial"] == ["z"]
    with pytest.raises(ia.SpecError, match="unknown key 'checks.0.flor'.*did you mean 'floor'"):
        ia.audit({**spec, "checks": [{"kind": "sign_test_kind", "contrast": "swap", "flor": 1}]})


# ---- the adapter boundary: hook names, model families and TransformerLens stay in adapters/ ---

ADAPTERS = PACKAGE / "model" / "adapters"
#: a TransformerLens hook name, or a piece of one (f-strings split ``blocks.{L}.attn.hook_z``)
_HOOK_NAME = re.compile(
    r"hook_(resid_\w+|attn_\w+|mlp_\w+|[qkvz]|[qkv]_input|rot_[qk]|pattern|result|post|pre|"
    r"pre_linear|embed|pos_embed|normalized\w*|scale|out|in)\b|(^|[^\w])blocks\.|ln_final"
)
#: TransformerLens module / parameter attributes (HookedTransformer, HookedEncoder, bridges)
_TL_ATTRIBUTES = {
    "blocks", "hook_dict", "mod_dict", "unembed", "ln_final", "pos_embed", "mlm_head",
    "W_U", "W_E", "W_pos", "W_O", "W_Q", "W_K", "W_V", "W_in", "W_out",
    "b_U", "b_O", "b_Q", "b_K", "b_V", "b_in", "b_out",
    "normalization_type", "run_with_cache", "run_with_hooks", "process_weights_",
}  # fmt: skip
_FAMILIES = {"causal", "encoder", "HookedTransformer", "HookedEncoder", "TransformerBridge"}


def _docstrings(tree: ast.AST) -> set[int]:
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }


def _boundary_findings(source: str) -> list[tuple[int, str]]:
    """(line, what) for each place ``source`` reaches past the adapter boundary."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        what = None
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docs and _HOOK_NAME.search(node.value):
                what = f"hook name {node.value!r}: ask subject.adapter (hook, role_of, ...)"
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            owner = ast.unparse(node.value)
            if owner.endswith("adapter"):
                continue  # the adapter's own interface
            if node.attr == "kind" and re.search(r"(^|\.)subject$", owner):
                what = f"{owner}.kind: ask the adapter for a capability instead"
            elif node.attr in _TL_ATTRIBUTES:
                what = f"TransformerLens internal {owner}.{node.attr}"
            elif node.attr == "cfg" and re.search(r"(^|\.)(subject|model|self)$", owner):
                what = f"TransformerLens config {owner}.cfg: ask subject / subject.adapter"
        elif isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            families = [s.value for s in sides if isinstance(s, ast.Constant)]
            if any(f in _FAMILIES for f in families if isinstance(f, str)) and any(
                isinstance(s, ast.Attribute) and s.attr in ("kind", "model_class") for s in sides
            ):
                what = f"branch on the model family: {ast.unparse(node)}"
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            if any(n.split(".")[0] == "transformer_lens" for n in names):
                what = "imports transformer_lens"
        if what:
            found.append((node.lineno, what))
    return sorted(found)


def test_only_the_adapters_know_hook_names_families_and_transformer_lens():
    """Hook-name literals, ``subject.kind`` branches, TransformerLens imports and internals
    (``model.blocks``, ``W_O``, ``hook_dict``, ``cfg``) live in ``model/adapters/`` alone."""
    offending = [
        f"{f.relative_to(PACKAGE.parent)}:{line}: {what}"
        for f in sorted(PACKAGE.rglob("*.py"))
        if ADAPTERS not in f.parents
        for line, what in _boundary_findings(f.read_text())
    ]
    assert offending == [], "\n".join(offending)


@pytest.mark.parametrize(
    "line",
    [
        'name = f"blocks.{layer}.attn.hook_z"',
        'x = cache["hook_embed"]',
        "ok = hook.endswith(('attn.hook_q', 'attn.hook_k'))",
        'if subject.kind == "causal": pass',
        "if ctx.subject.kind: pass",
        'if adapter_like.kind == "encoder": pass',
        'if subject.adapter.kind != "causal": pass',
        "w = subject.model.blocks[0].attn.W_O",
        "v = subject.cfg.d_vocab",
        "names = model.hook_dict",
        "from transformer_lens import HookedTransformer",
        "import transformer_lens.patching",
    ],
)
def test_the_boundary_scan_sees_each_kind_of_leak(line):
    assert _boundary_findings(line)


def test_the_boundary_scan_allows_adapter_calls_docstrings_and_other_kinds():
    clean = '''
def f(subject, spec, comp):
    """Patches ``blocks.0.attn.hook_z`` (a docstring may name hooks)."""
    name = subject.adapter.attn(0, "z")
    table = subject.adapter.hook_dict
    if spec.kind == "rank_one" or comp.kind == "head":
        return subject.adapter.cfg, subject.d_vocab, name, table
'''
    assert _boundary_findings(clean) == []


# ---- one declaration per setting ----------------------------------------------------------


def test_the_tradeoff_settings_are_declared_once():
    """The spec's ``tradeoff:`` section is the declaration: ``ia.tradeoff``'s settings keywords
    and the CLI's flags are its keys, and a value given either way is validated by it."""
    import argparse
    import inspect

    from interp_audit.audit.sections import TradeoffSpec
    from interp_audit.audit.tradeoff import tradeoff
    from interp_audit.cli.commands import tradeoff as command

    keys = set(TradeoffSpec.model_fields)
    params = set(inspect.signature(tradeoff).parameters) - {"spec", "seed", "subject", "effects"}
    assert params == keys
    p = argparse.ArgumentParser()
    command.add_arguments(p)
    assert {a.dest for a in p._actions} - {"help", "spec", "out"} == keys
    args = p.parse_args(["s.yaml", "--out", "o", "--k", "2", "3", "--kinds", "mean"])
    assert args.ks == [2, 3] and args.kinds == ["mean"] and args.n_boot is None
    cfg = TradeoffSpec(n_boot=700, sae="zoo:x", sae_id="a").overridden(
        n_boot=None, ks=(2,), sae="zoo:y"
    )
    assert (cfg.n_boot, cfg.ks, cfg.sae, cfg.sae_id) == (700, [2], "zoo:y", None)
    with pytest.raises(ia.SpecError, match=r"tradeoff.n_boot: .*greater than or equal to 100"):
        TradeoffSpec().overridden(n_boot=50)
    with pytest.raises(ia.SpecError, match="tradeoff.by: Input should be 'abs' or 'signed'"):
        TradeoffSpec().overridden(by="size")


def test_checks_and_the_tradeoff_share_one_resampling_declaration():
    from interp_audit.audit.sections import CheckSpec, TradeoffSpec
    from interp_audit.stats.bootstrap import MIN_BOOT, Resampling

    for model in (CheckSpec, TradeoffSpec, Resampling):
        for key in ("n_boot", "confidence"):
            assert model.model_fields[key].metadata == Resampling.model_fields[key].metadata
    assert CheckSpec.model_fields["n_boot"].default == 1000  # documented defaults kept
    assert TradeoffSpec.model_fields["n_boot"].default == 500
    with pytest.raises(ia.SpecError, match=f"n_boot=99: .*greater than or equal to {MIN_BOOT}"):
        Resampling.of(n_boot=99)
    assert Resampling(n_boot=200, confidence=0.9, seed=3).kw() == {
        "n_boot": 200,
        "confidence": 0.9,
        "seed": 3,
    }


def test_bootstrap_settings_and_percentile_intervals_are_built_in_stats_only():
    """No module outside ``stats/`` assembles the bootstrap keyword dict or computes a
    percentile interval itself (``Resampling.kw()``, ``percentile_ci``)."""
    stats = PACKAGE / "stats"
    found = []
    for f in sorted(PACKAGE.rglob("*.py")):
        if stats in f.parents:
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            keys: list = []
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "dict":
                keys = [k.arg for k in node.keywords]
            elif isinstance(node, ast.Dict):
                keys = [k.value for k in node.keys if isinstance(k, ast.Constant)]
            if {"n_boot", "confidence", "seed"} <= set(keys):
                found.append(f"{f.relative_to(PACKAGE.parent)}:{node.lineno}: settings dict")
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("quantile"):
                found.append(f"{f.relative_to(PACKAGE.parent)}:{node.lineno}: a quantile")
    assert found == [], "\n".join(found)


def test_the_plan_reads_the_checks_confidence():
    from interp_audit.audit.plan import plan_rows
    from interp_audit.stats.bootstrap import z_value

    row = {"measure": "mean effect", "effect": 0.0, "half_width": 0.02, "clusters": 5,
           "tolerance": 0.01}  # fmt: skip
    for confidence in (0.95, 0.8):
        res = CheckResult("c", "invariance", "inconclusive", 0.0, (-0.02, 0.02), 0.01, "m",
                          [row], confidence)  # fmt: skip
        (plan,) = plan_rows([res])
        assert plan.sd_between == pytest.approx(0.02 * 5**0.5 / z_value(confidence))
    assert z_value(0.95) == pytest.approx(1.959963984540054, abs=1e-15)
    assert z_value(0.8) == pytest.approx(1.2815515655446004)
