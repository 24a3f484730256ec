"""Causal graphs, structural equations and path-specific counterfactuals.

Path enumeration and classification are checked on random DAGs against brute-force
definitions; the SCM mechanism against the hand-written readmission SCM unit by unit; and
path-specific effects on a hand-wired model against their analytic values.
"""

import itertools
import random

import pytest
import torch

import interp_audit as ia
from interp_audit.causal import SCM, CausalGraph, CausalModel, Renderer
from interp_audit.core.errors import SpecError
from tests.linear_paths import CAUSAL, WEIGHT, analytic_effect, build_linear, linear_spec


# ---- graphs ------------------------------------------------------------------------------------
def random_dag(seed: int, n: int = 7, p: float = 0.45):
    rng = random.Random(seed)
    names = [f"V{i}" for i in range(n)]
    rng.shuffle(names)  # topological order is not the name order
    edges = {v: [] for v in names}
    for i, j in itertools.combinations(range(n), 2):
        if rng.random() < p:
            edges[names[i]].append(names[j])
    outcome = names[-1]
    for v in names[:-1]:  # make sure most nodes reach the outcome
        if rng.random() < 0.5 and outcome not in edges[v]:
            edges[v].append(outcome)
    return edges, outcome, rng


def brute_force_paths(edges, source, outcome):
    """Every sequence of distinct nodes from source to outcome whose steps are all edges."""
    others = [v for v in edges if v not in (source, outcome)]
    out = []
    for k in range(len(others) + 1):
        for mid in itertools.permutations(others, k):
            seq = (source, *mid, outcome)
            if all(b in edges[a] for a, b in zip(seq, seq[1:], strict=False)):
                out.append(seq)
    return sorted(out)


@pytest.mark.parametrize("seed", range(12))
def test_paths_match_brute_force_on_random_dags(seed):
    edges, outcome, rng = random_dag(seed)
    blocked = [(a, b) for a in edges for b in edges[a] if rng.random() < 0.25]
    resolving = [v for v in edges if v != outcome and rng.random() < 0.2]
    for mode in ("blocked", "resolving", "both"):
        kw = {}
        if mode in ("blocked", "both"):
            kw["blocked_edges"] = [f"{a} -> {b}" for a, b in blocked]
        if mode in ("resolving", "both"):
            kw["resolving"] = resolving
        g = CausalGraph(edges, outcome, **kw)
        for source in edges:
            if source == outcome:
                continue
            want = brute_force_paths(edges, source, outcome)
            if not want:
                with pytest.raises(SpecError, match="not reachable"):
                    g.paths(source)
                continue
            assert g.paths(source) == want
            for path in want:
                uses_blocked = any(e in blocked for e in zip(path, path[1:], strict=False))
                via = any(v in resolving for v in path[1:-1])
                expect = {
                    "blocked": not uses_blocked,
                    "resolving": via,
                    "both": via and not uses_blocked,
                }[mode]
                assert g.admissible(path) is expect, (mode, path)
            assert g.inadmissible_paths(source) == [p for p in want if not g.admissible(p)]


def test_design_example_and_explicit_paths():
    g = CausalGraph(
        {"A": ["X", "Z", "Y"], "E": ["X", "Y"], "X": ["Y"], "Z": ["Y"]},
        outcome="Y",
        resolving=["X"],
    )
    assert g.paths("A") == [("A", "X", "Y"), ("A", "Y"), ("A", "Z", "Y")]
    assert g.admissible(("A", "X", "Y")) and not g.admissible("A -> Y")
    h = CausalGraph(g.edges, "Y", admissible_paths=["A -> Z -> Y"])
    assert [h.admissible(p) for p in h.paths("A")] == [False, False, True]
    assert CausalGraph.from_dict(g.to_dict()) == g
    none = CausalGraph(g.edges, "Y")  # no declaration: every path must be invariant
    assert not any(none.admissible(p) for p in none.paths("A"))


def test_graph_display():
    g = CausalGraph({"A": ["X", "Y"], "X": ["Y"]}, "Y", blocked_edges=["A -> Y"])
    svg = g.to_svg()
    import re

    assert svg.startswith("<svg") and svg.count("<circle") == 3
    edges = {
        title: (colour, dash)
        for colour, dash, title in re.findall(
            r"stroke='(#\w+)' stroke-width='2'( stroke-dasharray='5,3')? "
            r"marker-end=[^>]*><title>(.*?)</title>",
            svg,
        )
    }
    green, red = "#2e7d32", "#c62828"
    assert edges == {
        "A -&gt; X": (green, ""),
        "X -&gt; Y": (green, ""),
        "A -&gt; Y": (red, " stroke-dasharray='5,3'"),
    }
    html = g._repr_html_()
    assert "A -&gt; X -&gt; Y" in html and "inadmissible" in html


@pytest.mark.parametrize(
    "build, message",
    [
        (
            lambda: CausalGraph({"A": ["B"], "B": ["C"], "C": ["A", "Y"]}, "Y"),
            "cycle: A -> B -> C -> A",
        ),
        (lambda: CausalGraph({"A": ["Y"]}, "Q"), "outcome 'Q' is not a variable"),
        (
            lambda: CausalGraph({"A": ["B"], "C": ["Y"]}, "Y").paths("A"),
            "'Y' is not reachable from 'A'",
        ),
        (lambda: CausalGraph({"A": ["Y"]}, "Y").admissible("A -> B -> Y"), "variable 'B'"),
        (
            lambda: CausalGraph({"A": ["X", "Y"], "X": ["Y"]}, "Y").admissible("X -> A -> Y"),
            "no edge X -> A",
        ),
        (
            lambda: CausalGraph({"A": ["Y"]}, "Y", blocked_edges=["Y -> A"]),
            "edge Y -> A is not in the graph",
        ),
        (lambda: CausalGraph({"A": ["Y"]}, "Y", resolving=["Z"]), "resolving variable 'Z'"),
        (
            lambda: CausalGraph(
                {"A": ["X", "Y"], "X": ["Y"]},
                "Y",
                admissible_paths=["A->X->Y"],
                blocked_edges=["X->Y"],
            ),
            "conflicting admissibility",
        ),
    ],
)
def test_graph_errors_name_the_problem(build, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(")):
        build()


# ---- the readmission SCM through the general mechanism -------------------------------------
@pytest.fixture(scope="module")
def readmission():
    return CausalModel.from_spec("zoo:readmission")


PATHS = {
    ("A", "young"): {"total": "all", "direct": "direct", "proxy": "proxy", "via_labs": "via_labs"},
    ("E", "2"): {"total": "all", "contextual": "contextual", "spurious": "spurious"},
}


def test_readmission_counterfactuals_match_the_hand_written_scm(readmission):
    from circuits.readmission import scm as R

    cm = readmission
    u, units = R.sample_units(3000, 9), cm.scm.sample(3000, 9)
    fact = cm.scm.values(units)
    assert torch.equal(fact["readmitted"], R.labels(u))
    assert torch.equal(fact["readmitted_fair"], R.labels(u, fair=True))
    for (source, value), named in PATHS.items():
        for hand, ours in named.items():
            paths = cm.resolve_paths(source, ours)
            world = cm.scm.path_specific(units, cm.graph, source, value, paths, factual=fact)
            f, c = R.path_words(u, source, hand)
            assert cm.render.render(cm.scm, fact) == f
            assert cm.render.render(cm.scm, {**fact, **world}) == c, (source, hand)
    # the drawing loop (changed units only, old patients for A) picks the same patients
    d = cm.draw(source="A", value="young", paths="proxy", n=150, seed=3, reference="old")
    clean, cf, _ = R.path_pairs(150, 3, "A", "proxy")
    assert (d.clean, d.counterfactual) == (clean, cf)
    assert 0 < d.fraction_changed < 1 and d.n_changed >= 150


def test_tables_scm_inverse_cdf_matches_the_hand_written_insurance():
    from circuits.readmission import scm as R

    scm = SCM.from_tables(
        {
            "A": {"values": ["young", "mid", "old"], "p": [0.35, 0.35, 0.30]},
            "Z": {
                "values": ["private", "medicare", "medicaid"],
                "parents": ["A"],
                "p": {
                    "young": [0.70, 0.05, 0.25],
                    "mid": [0.60, 0.10, 0.30],
                    "old": [0.15, 0.80, 0.05],
                },
            },
        }
    )
    units = scm.sample(5000, 1)
    vals = scm.values(units)
    assert torch.equal(vals["Z"], R.insurance(vals["A"], units.noise["Z"].float()))
    freq = torch.bincount(vals["A"], minlength=3) / 5000
    assert torch.allclose(freq, torch.tensor([0.35, 0.35, 0.30]), atol=0.03)
    young = scm.values(units, do={"A": "young"})
    assert torch.equal(
        young["Z"], R.insurance(torch.zeros(5000, dtype=torch.long), units.noise["Z"].float())
    )


def test_scm_errors():
    with pytest.raises(SpecError, match="sum to 0.9"):
        SCM.from_tables({"A": {"values": ["a", "b"], "p": [0.5, 0.4]}})
    with pytest.raises(SpecError, match="declared before"):
        SCM.from_tables({"Z": {"values": ["a"], "parents": ["A"], "p": {"x": [1]}}})
    tables = {"A": {"values": ["a", "b"], "p": [0.5, 0.5]}}
    g = CausalGraph({"A": ["M", "Y"], "M": ["Y"]}, "Y")
    with pytest.raises(SpecError, match="graph variable 'M' has no equation"):
        CausalModel(g, SCM.from_tables(tables), Renderer("{A} {M} ->"))
    with pytest.raises(SpecError, match="no slot for 'M'"):
        full = {
            **tables,
            "M": {"values": ["0", "1"], "parents": ["A"], "p": {"a": [1, 0], "b": [0, 1]}},
        }
        CausalModel(g, SCM.from_tables(full), Renderer("{A} ->"))


# ---- path-specific effects on a hand-wired model: analytic answers -------------------------
@pytest.fixture(scope="module")
def linear_subject():
    return build_linear()


@pytest.fixture(scope="module")
def linear_case():
    return CausalModel.from_spec(CAUSAL)


def test_path_effects_on_a_hand_wired_model_match_the_analytic_answer(linear_subject, linear_case):
    from interp_audit.audit.measure import pair_effects

    metric = ia.metrics.logit_diff
    for path in linear_case.graph.paths("A"):
        cs = linear_case.contrast(
            linear_subject, source="A", value="1", paths=[path], n=1500, seed=5, reference="0"
        )
        clean, cf = pair_effects(linear_subject, cs, metric)
        per_pair = clean - cf
        # conditional on the input changing: each pair differs exactly at the slot of the
        # variable the path enters Y through (<bos> A M Z ->)
        slot = {"A": 1, "M": 2, "Z": 3}[path[-2]]
        assert all(d == [slot] for d in cs.differing_positions()), path
        over_all = float(per_pair.mean()) * cs.meta["fraction_changed"]
        assert over_all == pytest.approx(analytic_effect(path), abs=0.02), path
        if path in (("A", "Y"), ("A", "M", "Y")):  # monotone: the same change in every pair
            expect = -(WEIGHT["a:1"] if path == ("A", "Y") else WEIGHT["m:1"]) / 5
            assert torch.allclose(per_pair, torch.full_like(per_pair, expect), atol=1e-5)
    assert linear_case.graph.admissible(("A", "M", "Y")) and linear_case.graph.admissible(
        ("A", "M", "Z", "Y")
    )
    assert not linear_case.graph.admissible(("A", "Z", "Y"))


def test_nested_counterfactual_keeps_the_mediator_factual_on_the_longer_path(linear_case):
    cm = linear_case
    units = cm.scm.sample(2000, 0)
    fact = cm.scm.values(units)
    world = cm.scm.path_specific(units, cm.graph, "A", "1", [("A", "M", "Z", "Y")], factual=fact)
    assert torch.equal(world["A"], fact["A"]) and torch.equal(world["M"], fact["M"])
    m_under_1 = cm.scm.values(units, do={"A": "1"})["M"]
    z_nested = cm.scm._eval("Z", {"A": fact["A"], "M": m_under_1}, units)
    assert torch.equal(world["Z"], z_nested)
    total = cm.scm.path_specific(units, cm.graph, "A", "1", cm.graph.paths("A"), factual=fact)
    do = cm.scm.values(units, do={"A": "1"})
    assert all(torch.equal(total[v], do[v]) for v in ("A", "M", "Z"))


# ---- the causal section in audit specs -------------------------------------------------------
@pytest.fixture(scope="module")
def linear_report(linear_subject):
    spec = linear_spec(
        # sampled pairs (exact: false); tests/unit/test_population.py measures the population
        {"name": "paths", "kind": "path_invariance", "source": "A", "n": 400, "seed": 5,
         "tolerance": 0.3, "exact": False},
        {"name": "respond", "kind": "responsiveness", "sign": "scm", "label": "L", "floor": 0.1,
         "n": 400, "seed": 5, "exact": False},
        {"name": "too_weak", "kind": "responsiveness", "paths": "mediated", "floor": 0.3,
         "n": 400, "seed": 5, "exact": False},
        {"name": "repair", "kind": "intervention", "contrast": "direct",
         "ablate": {"components": ["L0H0"], "kind": "zero"}, "tolerance": 0.05,
         "preserve": {"tolerance": 0.05, "n": 400, "seed": 5},
         "utility": {"contrast": "units", "metric": "logit_diff", "budget": 1.0,
                     "per_group": True}},
        direct={"scm": "causal", "source": "A", "paths": "A -> Y", "n": 50},
        units={"scm": "causal", "factual": True, "n": 300, "group_by": "A", "label": "L"},
    )  # fmt: skip
    return ia.audit(spec, subject=linear_subject)


def test_graph_derived_path_invariance_checks_every_path(linear_report):
    paths = {d["path"]: d for d in linear_report.checks[0].details}
    assert set(paths) == {"A -> M -> Y", "A -> M -> Z -> Y", "A -> Y", "A -> Z -> Y"}
    assert (
        paths["A -> Y"]["role"] == "inadmissible" and paths["A -> M -> Y"]["role"] == "admissible"
    )
    # every changed pair moves exactly one token: a:0 -> a:1 costs 2/5, m:0 -> m:1 costs 1/5
    assert paths["A -> Y"]["effect"] == pytest.approx(-0.4, abs=1e-5)
    assert paths["A -> Y"]["ci"] == pytest.approx([-0.4, -0.4], abs=1e-5)
    assert paths["A -> M -> Y"]["effect"] == pytest.approx(-0.2, abs=1e-5)
    for p, d in paths.items():  # over all units: the analytic expectation
        assert d["effect over all units"] == pytest.approx(
            analytic_effect(tuple(p.split(" -> "))), abs=0.04
        ), p
    # A -> Y (|-0.4| > 0.3) fails; A -> Z -> Y moves z:0 -> z:1 (+3/5 each) and fails too
    assert paths["A -> Y"]["passed"] is False and paths["A -> Z -> Y"]["passed"] is False
    assert paths["A -> M -> Y"]["passed"] is None and not linear_report.checks[0].passed


def test_responsiveness_with_the_scm_sign_and_a_floor(linear_report):
    respond, weak = linear_report.checks[1], linear_report.checks[2]
    rows = {d["path"]: d for d in respond.details}
    assert set(rows) == {"A -> M -> Y", "A -> M -> Z -> Y"}  # the admissible paths
    # the label L rises with M, so factual - counterfactual is negative along A -> M -> Y
    assert rows["A -> M -> Y"]["expected sign"] == "negative"
    # on the drawn units M flips 0 -> 1; L flips with it when U_L is in [0.2, 0.8): -0.6
    assert rows["A -> M -> Y"]["SCM effect on L"] == pytest.approx(-0.6, abs=0.08)
    # A -> M -> Z -> Y: L reads M (the last variable of the path it reads), so the SCM says
    # negative, but the model's effect through Z (z:0 -> z:1 weighs -3/5) is positive
    assert rows["A -> M -> Z -> Y"]["expected sign"] == "negative"
    assert rows["A -> M -> Z -> Y"]["effect"] == pytest.approx(0.6, abs=1e-5)
    assert not rows["A -> M -> Z -> Y"]["passed"] and rows["A -> M -> Y"]["passed"]
    assert not respond.passed
    assert weak.details[0]["effect"] == pytest.approx(-0.2, abs=1e-5) and not weak.passed


def test_intervention_preserve_and_worst_group(linear_report):
    chk = linear_report.checks[3]
    kept = {d["path"]: d for d in chk.details if str(d.get("measure", "")).startswith("admissible")}
    assert set(kept) == {"A -> M -> Y", "A -> M -> Z -> Y"}
    # zero-ablating the only head removes every path: after = 0, so the change = -before
    assert kept["A -> M -> Y"]["before"] == pytest.approx(-0.2, abs=1e-5)
    assert kept["A -> M -> Y"]["after"] == pytest.approx(0.0, abs=1e-6)
    assert not kept["A -> M -> Y"]["passed"] and not chk.passed
    groups = {d["group"]: d for d in chk.details if "group" in d}
    assert set(groups) == {"a:0", "a:1"}
    # logit_diff utility per group: before = mean token weight / 5, after = 0
    for d in groups.values():
        assert d["after"] == pytest.approx(0.0, abs=1e-6)
        assert d["value"] == pytest.approx(d["before"], abs=1e-6)
    assert groups["a:1"]["before"] > groups["a:0"]["before"]  # a:1 adds 2/5 to every unit


def test_spec_errors_for_the_causal_section():
    from interp_audit.audit.spec import load_spec

    no_section = linear_spec()
    del no_section["causal"]
    with pytest.raises(SpecError, match="scm: causal needs a 'causal' section"):
        load_spec(no_section)
    cyclic = linear_spec()
    cyclic["causal"] = {**CAUSAL, "graph": {"edges": {"A": ["M"], "M": ["A", "Y"]}, "outcome": "Y"}}
    with pytest.raises(SpecError, match="cycle: A -> M -> A"):
        load_spec(cyclic)
    both = linear_spec(
        {"kind": "path_invariance", "source": "A", "inadmissible": {"d": "direct"}, "tolerance": 1}
    )
    with pytest.raises(SpecError, match="either 'source'"):
        load_spec(both)


def test_unknown_path_names_are_spec_errors(linear_subject):
    spec = linear_spec(bad={"scm": "causal", "source": "A", "paths": "mediatd"})
    with pytest.raises(SpecError, match="contrasts.bad: .*'mediatd'.*did you mean 'mediated'"):
        ia.audit(spec, subject=linear_subject)


def test_the_report_carries_the_graph(linear_report):
    from interp_audit.audit.report_view import render_html

    data = linear_report.to_dict()
    graph = data["provenance"]["causal"]
    assert CausalGraph.from_dict(graph).admissible("A -> M -> Y")
    assert [p["path"] for p in graph["paths"]["A"] if not p["admissible"]] == [
        "A -> Y",
        "A -> Z -> Y",
    ]
    page = render_html(data)
    assert "<h2>Causal paths</h2>" in page and "<figure class='svg'><svg" in page
    assert "<td class='nw'>A -&gt; Z -&gt; Y</td>" in page  # a row of the path table
