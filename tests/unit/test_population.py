"""Population effects: exact enumeration of discrete noise, and drawn units deduplicated.

References: a hand enumeration of the hand-wired model's SCM (the tables' CDF cells integrated
by hand, tests/linear_paths.py) to 1e-6; the analytic path effects; a naive loop over every
drawn unit (one pair per unit, duplicates and all) for the deduplicated population.
"""

from __future__ import annotations

import itertools
import json

import pytest
import torch

import interp_audit as ia
from interp_audit.causal import CausalModel
from interp_audit.causal.population import path_population, population
from tests.linear_paths import (
    CAUSAL,
    P_L,
    P_M,
    P_Z,
    WEIGHT,
    analytic_effect,
    build_linear,
    linear_spec,
)

PATHS = [("A", "M", "Y"), ("A", "M", "Z", "Y"), ("A", "Y"), ("A", "Z", "Y")]


@pytest.fixture(scope="module")
def linear_subject():
    return build_linear()


@pytest.fixture(scope="module")
def cm():
    return CausalModel.from_spec(CAUSAL)


def cells(cuts: set[float]) -> list[tuple[float, float]]:
    """(midpoint, length) of the cells of [0, 1] between the given boundaries."""
    edges = sorted({0.0, 1.0} | cuts)
    return [((a + b) / 2, b - a) for a, b in itertools.pairwise(edges)]


def by_hand(path: tuple[str, ...]) -> tuple[float, float]:
    """(effect over all units with A = 0, fraction whose input changes) by enumerating the
    noise cells of M and Z by hand: M = 1 iff u_M >= 1 - P(M=1|A); Z likewise given (A, M)."""

    def m_of(a, u):
        return int(u >= 1 - P_M[str(a)])

    def z_of(a, m, u):
        return int(u >= 1 - P_Z[(str(a), str(m))])

    def logit_diff(a, m, z):
        return (WEIGHT["a:1"] * a + WEIGHT["m:1"] * m + WEIGHT["z:1"] * z) / 5

    total = changed = 0.0
    for (um, pm), (uz, pz) in itertools.product(
        cells({1 - p for p in P_M.values()}), cells({1 - p for p in P_Z.values()})
    ):
        a, m = 0, m_of(0, um)
        z = z_of(0, m, uz)
        m1 = m_of(1, um)  # M under A = 1
        world = {
            ("A", "Y"): (1, m, z),
            ("A", "M", "Y"): (0, m1, z),
            ("A", "Z", "Y"): (0, m, z_of(1, m, uz)),  # Z reads A = 1 and the factual M
            ("A", "M", "Z", "Y"): (0, m, z_of(0, m1, uz)),  # Z reads A = 0 and M under A = 1
        }[path]
        total += pm * pz * (logit_diff(a, m, z) - logit_diff(*world))
        changed += pm * pz * (world != (a, m, z))
    return total, changed


def test_hand_enumeration_agrees_with_the_analytic_effects():
    for path in PATHS:  # the two references agree with each other first
        assert by_hand(path)[0] == pytest.approx(analytic_effect(path), abs=1e-12), path


def test_table_supports_are_the_cdf_cells(cm):
    values, probs = cm.scm.variables["Z"].support()
    assert probs.sum() == pytest.approx(1.0, abs=1e-12)
    edges = [0.0, 0.1, 0.4, 0.5, 0.8, 1.0]  # 1 - P(Z = 1 | A, M) for the four rows
    torch.testing.assert_close(probs, torch.tensor(edges, dtype=torch.float64).diff())
    pop = population(cm.scm, ["A", "M", "Z"])
    assert pop.exact and pop.n_units == 2 * 3 * 5  # A, the M cells, the Z cells
    assert float(pop.weights.sum()) == pytest.approx(1.0, abs=1e-12)


@pytest.fixture(scope="module")
def exact_report(linear_subject):
    spec = linear_spec(
        {"name": "paths", "kind": "path_invariance", "source": "A", "tolerance": 0.3},
        {"name": "respond", "kind": "responsiveness", "sign": "scm", "label": "L", "floor": 0.1},
    )
    return ia.audit(spec, subject=linear_subject)


def test_exact_path_effects_equal_the_hand_enumeration(exact_report):
    chk = exact_report.checks[0]
    rows = {d["path"]: d for d in chk.details}
    assert set(rows) == {" -> ".join(p) for p in PATHS}
    for path in PATHS:
        d = rows[" -> ".join(path)]
        total, changed = by_hand(path)
        assert d["effect over all units"] == pytest.approx(total, abs=1e-6), path
        assert d["fraction_changed"] == pytest.approx(changed, abs=1e-9), path
        assert d["effect"] == pytest.approx(total / changed, abs=1e-6), path
        assert d["exact"] is True and "ci" not in d and "half_width" not in d, path
        assert d["interval"] == "none: exact population effect"


def test_exact_verdicts_are_labelled_exact(exact_report, tmp_path):
    paths, respond = exact_report.checks
    rows = {d["path"]: d for d in paths.details}
    # A -> Y moves a:0 -> a:1 in every unit: -0.4, outside ±0.3, an exact fail
    assert rows["A -> Y"]["verdict"] == "fail" and "exact effect" in rows["A -> Y"]["reason"]
    assert paths.verdict == "fail" and paths.exact and paths.ci == (paths.statistic,) * 2
    assert "exact" in paths.message and "no sampling interval" in paths.message
    assert paths.correction.startswith("exact population effects")
    # the SCM's own effect on L over the same population: L flips with M where U_L is in
    # [0.2, 0.8), so conditional on M moving, -0.6 exactly
    r = {d["path"]: d for d in respond.details}
    assert r["A -> M -> Y"]["SCM effect on L"] == pytest.approx(-(P_L["1"] - P_L["0"]), abs=1e-9)
    assert respond.exact
    exact_report.save(tmp_path / "out")
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["checks"][0]["exact"] is True
    assert all(d.get("exact") is True for d in data["checks"][0]["details"])


def test_drawn_population_equals_a_naive_loop_over_every_unit(cm, linear_subject):
    """exact: false draws units; deduplicated pairs, weighted by their counts, give the mean
    over all drawn units of one forward per unit."""
    from interp_audit.audit.causal_measure import weighted_effect
    from interp_audit.audit.measure import pair_effects

    pop = population(cm.scm, ["A", "M", "Z"], exact=False, n_units=3000, seed=3)
    assert not pop.exact and pop.n_units == 3000
    for path in PATHS:
        pp = path_population(cm, pop, source="A", value="1", paths=[path], reference="0")
        distinct = ia.ContrastSet.from_prompts(
            linear_subject, pp.clean, pp.counterfactual, answers=("YES", "NO")
        )
        c, f = pair_effects(linear_subject, distinct, ia.metrics.logit_diff)
        iv, iv_all = weighted_effect(pp, (c - f).double(), {"n_boot": 400, "seed": 0})
        # naive: every unit in scope, rendered and run on its own
        fact = cm.scm.values(pop.units)
        world = cm.scm.path_specific(pop.units, cm.graph, "A", "1", [path], factual=fact)
        scope = fact["A"] == 0
        clean = cm.render.render(cm.scm, {k: v[scope] for k, v in fact.items()})
        cf = cm.render.render(cm.scm, {k: v[scope] for k, v in {**fact, **world}.items()})
        naive = torch.tensor(
            [ld_by_hand(a) - ld_by_hand(b) for a, b in zip(clean, cf, strict=True)],
            dtype=torch.float64,
        )
        assert iv_all.point == pytest.approx(float(naive.mean()), abs=1e-6), path
        moved = torch.tensor([a != b for a, b in zip(clean, cf, strict=True)])
        assert iv.point == pytest.approx(float(naive[moved].mean()), abs=1e-6), path
        assert pp.mass_in_scope == int(scope.sum())
        # the interval is over units: it covers the exact effect here
        truth = by_hand(path)[0]
        assert iv_all.lo - 1e-6 <= truth <= iv_all.hi + 1e-6, path  # float32 forwards


def ld_by_hand(prompt: str) -> float:
    """logit(YES) - logit(NO) of the hand-wired model: the mean token weight over 5 tokens."""
    return sum(WEIGHT.get(t, 0.0) for t in prompt.split()) / 5


EQUATIONS = """import torch
VARIABLES = ['A', 'M', 'Z', 'L']
VALUES = {'A': ['0', '1'], 'M': ['0', '1'], 'Z': ['0', '1'], 'L': ['0', '1']}
def noise_A(n, g): return torch.randint(0, 2, (n,), generator=g)
def A(u): return u
def noise_M(n, g): return torch.rand(n, generator=g)
def M(A, u): return (u >= torch.where(A == 1, 0.3, 0.7)).long()
def noise_Z(n, g): return torch.rand(n, generator=g)
P = torch.tensor([[0.2, 0.5], [0.6, 0.9]])
def Z(A, M, u): return (u >= 1 - P[A, M]).long()
def noise_L(n, g): return torch.rand(n, generator=g)
def L(M, u): return (u >= torch.where(M == 1, 0.2, 0.8)).long()
"""
SUPPORTS = """
def support_A(): return torch.tensor([0, 1]), torch.tensor([0.5, 0.5])
def support_M(): return torch.tensor([0.15, 0.5, 0.85]), torch.tensor([0.3, 0.4, 0.3])
def support_Z(): return (torch.tensor([0.05, 0.25, 0.45, 0.65, 0.9]),
                         torch.tensor([0.1, 0.3, 0.1, 0.3, 0.2]))
"""


def python_spec(tmp_path, supports: bool, *checks):
    (tmp_path / "eq.py").write_text(EQUATIONS + (SUPPORTS if supports else ""))
    spec = linear_spec(*checks)
    spec["causal"] = {**CAUSAL, "scm": str(tmp_path / "eq.py")}
    return spec


def test_a_python_scm_that_declares_its_support_is_enumerated(tmp_path, linear_subject):
    check = {"name": "paths", "kind": "path_invariance", "source": "A", "tolerance": 0.3}
    spec = python_spec(tmp_path, True, check)
    rows = {d["path"]: d for d in ia.audit(spec, subject=linear_subject).checks[0].details}
    for path in PATHS:
        d = rows[" -> ".join(path)]
        assert d["exact"] is True, path
        assert d["effect over all units"] == pytest.approx(by_hand(path)[0], abs=1e-6)
    # L's noise has no declared support: a question about L is drawn, and says why
    cm = CausalModel.from_spec(spec["causal"])
    pop = population(cm.scm, ["L"], n_units=500)
    assert not pop.exact and "noise of L (a Python SCM declares support_NAME()" in pop.note


def test_continuous_noise_samples_pairs_by_default_and_draws_units_with_exact(
    tmp_path, linear_subject
):
    spec = python_spec(
        tmp_path, False,
        {"name": "default", "kind": "path_invariance", "source": "A", "tolerance": 0.3,
         "n": 300},
        {"name": "drawn", "kind": "path_invariance", "source": "A", "tolerance": 0.3,
         "exact": True, "n_units": 20000},
    )  # fmt: skip
    sampled, drawn = ia.audit(spec, subject=linear_subject).checks
    assert all("exact" not in d and d["n"] == 300 for d in sampled.details)
    for d in drawn.details:
        path = tuple(d["path"].split(" -> "))
        assert d["exact"] is False and d["units"] == 20000 and d["n"] == d["distinct pairs"]
        assert d["interval"] == "resampling of the drawn units only"
        lo, hi = d["ci over all units"]
        assert lo - 1e-6 <= by_hand(path)[0] <= hi + 1e-6, path  # covers the exact value
        assert d["half_width"] < 0.01  # 20000 units: far narrower than 300 pairs
    assert not drawn.exact and drawn.clusters == 20000


def test_exact_needs_the_graph_form():
    from interp_audit.audit.spec import load_spec
    from interp_audit.core.errors import SpecError

    spec = linear_spec(
        {"kind": "path_invariance", "inadmissible": {"d": "direct"}, "tolerance": 1, "exact": True}
    )
    with pytest.raises(SpecError, match="exact: true needs the graph form"):
        load_spec(spec)
