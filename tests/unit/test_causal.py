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
from interp_audit.errors import SpecError


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
    from interp_audit.zoo import readmission as R

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
    from interp_audit.zoo import readmission as R

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
VOCAB = ["<bos>", "<pad>", "<unk>", "->", "YES", "NO", "a:0", "a:1", "m:0", "m:1", "z:0", "z:1"]
WEIGHT = {"a:1": 2.0, "m:1": 1.0, "z:1": -3.0}  # logit_diff = mean over the 5 tokens of these


@pytest.fixture(scope="module")
def linear_subject():
    """One attention-only layer with zero queries/keys: uniform attention over the prompt, so
    logit(YES) - logit(NO) at the last position is the mean of per-token weights."""
    from interp_audit.loading import _subject_from_module, build_model
    from interp_audit.zoo.tokenizers import word_tokenizer

    d = len(VOCAB) + 1
    cfg = dict(
        n_layers=1,
        d_model=d,
        n_ctx=8,
        d_head=2,
        n_heads=1,
        d_vocab=len(VOCAB),
        d_mlp=None,
        attn_only=True,
        normalization_type=None,
        act_fn="relu",
        default_prepend_bos=True,
        positional_embedding_type="standard",
        model_name="linear-paths",
    )
    model = build_model(cfg, seed=0, device="cpu")
    sd = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    sd["embed.W_E"][torch.arange(len(VOCAB)), torch.arange(len(VOCAB))] = 1.0
    for tok, w in WEIGHT.items():
        sd["blocks.0.attn.W_V"][0][VOCAB.index(tok), 0] = w
    sd["blocks.0.attn.W_O"][0][0, d - 1] = 1.0
    sd["unembed.W_U"][d - 1, VOCAB.index("YES")] = 1.0
    model.load_state_dict(sd)
    return _subject_from_module(
        model, "linear-paths", {}, tokenizer=word_tokenizer(VOCAB), prepend_bos=True
    )


P_M = {"0": 0.3, "1": 0.7}  # P(M = 1 | A)
P_Z = {("0", "0"): 0.2, ("0", "1"): 0.5, ("1", "0"): 0.6, ("1", "1"): 0.9}  # P(Z = 1 | A, M)


@pytest.fixture(scope="module")
def linear_case():
    tables = {
        "A": {"values": ["0", "1"], "p": [0.5, 0.5]},
        "M": {"values": ["0", "1"], "parents": ["A"], "p": {a: [1 - p, p] for a, p in P_M.items()}},
        "Z": {
            "values": ["0", "1"],
            "parents": ["A", "M"],
            "p": {f"{a}, {m}": [1 - p, p] for (a, m), p in P_Z.items()},
        },
    }
    g = CausalGraph({"A": ["M", "Z", "Y"], "M": ["Z", "Y"], "Z": ["Y"]}, "Y", resolving=["M"])
    render = Renderer("{A} {M} {Z} ->", {"A": "a:{}", "M": "m:{}", "Z": "z:{}"})
    return CausalModel(g, SCM.from_tables(tables), render, answers=("YES", "NO"))


def analytic_effect(path: tuple[str, ...]) -> float:
    """E[logit_diff(factual) - logit_diff(path-specific A := 1)] over units with A = 0, from the
    tables (inverse-CDF coupling: M switches 0 -> 1 exactly when U_M falls in [0.3, 0.7))."""
    pm0, pm1 = P_M["0"], P_M["1"]
    if path == ("A", "Y"):
        diff = WEIGHT["a:1"]
    elif path == ("A", "M", "Y"):
        diff = (pm1 - pm0) * WEIGHT["m:1"]
    elif path == ("A", "Z", "Y"):  # Z(A=1, M factual) vs Z(A=0, M factual)
        diff = (
            (1 - pm0) * (P_Z[("1", "0")] - P_Z[("0", "0")])
            + pm0 * (P_Z[("1", "1")] - P_Z[("0", "1")])
        ) * WEIGHT["z:1"]
    else:  # A -> M -> Z -> Y: Z(A=0, M under A=1) vs Z(A=0, M factual); M moves on pm1 - pm0
        diff = (pm1 - pm0) * (P_Z[("0", "1")] - P_Z[("0", "0")]) * WEIGHT["z:1"]
    return -diff / 5  # 5 tokens: <bos> A M Z ->; factual minus counterfactual


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
