"""Decisions before and after a repair, on the hand-wired model where every decision is known.

Two heads read the prompt uniformly: head 1 the age token (a:1 weighs +2), head 0 the mediator
and the proxy (m:1 +1, z:1 -2.5), so logit(YES) - logit(NO) = (2a + m - 2.5z) / 5 and the
decision is YES exactly when 2a + m - 2.5z >= 0 (the one tie, all weights 0, goes to YES, the
first answer); zero-ablating head 1 leaves m - 2.5z. Each pair's and each unit's decision is
read off its text by hand (and checked against a plain forward), flip rates and YES-rate gaps
are counted in plain Python, and every interval is a naive paired cluster bootstrap: resample
the units once, recompute before and after on the same draw, widen, take quantiles.

Analytic facts the numbers must show: along A -> Z -> Y every decision flips (z: 0 -> 1 turns
m >= 0 into m - 2.5 < 0), with or without the age head; along A -> Y a pair flips exactly when
m = z = 1, and never once head 1 is gone; in the population the YES-rate gap between ages is
P(z=0 | a=0) - (1 - P(m=0, z=1 | a=1)) = 0.71 - 0.82 before and 0.71 - 0.19 after, so removing
the direct path *widens* the outcome gap (the proxy remains).
"""

import math

import pytest
import torch
from scipy.stats import norm, t

import interp_audit as ia
from interp_audit.audit.tradeoff import tradeoff
from tests.linear_paths import CAUSAL, P_M, P_Z, linear_spec

W = {"a:1": 2.0, "m:1": 1.0, "z:1": -2.5}
HEAD_OF = {"a:1": 1}  # the age token's head
N_PATHS, N_UNITS, SEED, UNITS_SEED, N_BOOT = 100, 300, 5, 11, 200
TARGET = [
    "A -> Y",
    "A -> Z -> Y",
]  # A's inadmissible paths (through M, the resolving one: admissible)


def decide(text: str, age_head: bool = True) -> int:
    """1 (YES) when 2a + m - 2.5z >= 0 (without the age head: m - 2.5z), from the words."""
    words = dict(w.split(":") for w in text.split() if ":" in w)
    s = (W["a:1"] * int(words["a"]) if age_head else 0.0) + W["m:1"] * int(words["m"])
    return int(s + W["z:1"] * int(words["z"]) >= 0)


def widen(g: int, confidence: float = 0.95) -> float:
    q = 1 - (1 - confidence) / 2
    return math.sqrt(g / (g - 1)) * t.ppf(q, g - 1) / norm.ppf(q)


def draws(before, after, stat, seed=0):
    """Naive paired bootstrap: (point before, point after, widened draws before, after) of
    stat over units resampled with replacement (each unit its own cluster)."""
    g = len(before)
    picks = torch.randint(0, g, (N_BOOT, g), generator=torch.Generator().manual_seed(seed))
    out = []
    for vals in (before, after):
        point = stat(vals)
        d = torch.tensor([stat([vals[i] for i in p]) for p in picks.tolist()], dtype=torch.float64)
        out.append((point, point + widen(g) * (d - point)))
    return out


def quantiles(d):
    return torch.quantile(d, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()


def clip(ci, lo, hi):
    return [min(max(ci[0], lo), hi), max(min(ci[1], hi), lo)]


def mean(xs):
    return sum(xs) / len(xs)


def gap(units):  # [(age word, decision)] -> highest YES rate minus lowest
    rates = [mean([d for a, d in units if a == g]) for g in ("a:0", "a:1")]
    return max(rates) - min(rates)


@pytest.fixture(scope="module")
def two_heads():
    from tests.linear_paths import build_linear

    return build_linear(weight=W, head_of=HEAD_OF)


def the_spec(*checks):
    spec = linear_spec(
        *checks,
        direct={"scm": "causal", "source": "A", "paths": "A -> Y", "n": N_PATHS, "seed": SEED},
        units={"scm": "causal", "factual": True, "n": N_UNITS, "seed": UNITS_SEED,
               "group_by": "A", "label": "L"},
    )  # fmt: skip
    spec["seed"] = 0
    spec["locate"] = [{"method": "patch", "contrast": "direct", "sites": "heads", "name": "d"}]
    return spec


@pytest.fixture(scope="module")
def units(two_heads):
    cs = ia.CausalModel.from_spec(CAUSAL).factual_set(
        two_heads, n=N_UNITS, seed=UNITS_SEED, label="L", group_by="A"
    )
    return list(cs.clean_text), list(cs.groups)


def test_the_hand_decision_is_the_models(two_heads, units):
    prompts, _ = units
    yes, no = two_heads.single_token("YES"), two_heads.single_token("NO")
    with torch.no_grad():
        for p in prompts[:40]:
            logits = two_heads.model(torch.tensor([two_heads.to_tokens(p)]))[0, -1]
            assert int(logits[yes] >= logits[no]) == decide(p), p


@pytest.fixture(scope="module")
def table(two_heads, tmp_path_factory):
    """The sweep: the unrepaired model, head 1 zeroed, and a 'retrained' model whose input
    hides the age (``a:?``, weight 0): it decides as the zeroed model does, on the same units."""
    from interp_audit.audit.tradeoff import Baseline
    from tests.linear_paths import VOCAB, build_linear

    folder = tmp_path_factory.mktemp("hides-a") / "model"
    build_linear(vocab=[*VOCAB, "a:?"], weight=W, head_of=HEAD_OF).save(folder)
    return tradeoff(
        the_spec(FLIPS), ks=(1,), kinds=("zero",), n=N_PATHS, n_boot=N_BOOT, subject=two_heads,
        baselines=[Baseline(str(folder), mask=("A",), name="hides A")],
    )  # fmt: skip


FLIPS = {"name": "flips", "kind": "flip_rate", "contrast": "direct", "n_boot": N_BOOT,
         "decision": {"answers": ["YES", "NO"]}, "budget": 0.05}  # fmt: skip


def test_tradeoff_flip_rates_and_their_change_equal_the_naive_loop(table, two_heads):
    cm = ia.CausalModel.from_spec(CAUSAL)
    none, fixed = table.row("none"), table.row("zero-ablate top 1")
    assert fixed["components"] == "L0H1"
    per_path = {}
    for path in TARGET:
        cs = cm.contrast(
            two_heads, source="A", value="1", reference="0", paths=[path], n=N_PATHS, seed=SEED
        )
        flips = [
            [float(decide(c, head) != decide(f, head)) for c, f in zip(
                cs.clean_text, cs.counterfactual_text, strict=True)]
            for head in (True, False)
        ]  # fmt: skip
        per_path[path] = draws(*flips, mean)
        assert none[f"{path} flip rate"] == pytest.approx(mean(flips[0]), abs=1e-12)
        assert fixed[f"{path} flip rate"] == pytest.approx(mean(flips[1]), abs=1e-12)
    # analytic: the proxy flips every decision it touches, head or no head; the direct path
    # flips exactly the m = z = 1 units, and none without the age head
    assert none["A -> Z -> Y flip rate"] == fixed["A -> Z -> Y flip rate"] == 1.0
    assert 0 < none["A -> Y flip rate"] < 0.5 and fixed["A -> Y flip rate"] == 0.0
    # the largest flip rate (CI of the maximum per draw) and its paired change
    (pb, _), (pa, _) = per_path[TARGET[0]]
    top_b = torch.stack([d[0][1] for d in per_path.values()]).max(0).values
    top_a = torch.stack([d[1][1] for d in per_path.values()]).max(0).values
    for row, top in ((none, top_b), (fixed, top_a)):
        assert row["flip rate"] == 1.0 and row["flip rate on"] == "A -> Z -> Y"
        assert row["flip rate CI"] == pytest.approx(clip(quantiles(top), 0, 1), abs=1e-12)
    assert fixed["flip rate change"] == 0.0 and fixed["flip rate paired"] is True
    assert fixed["flip rate change CI"] == pytest.approx(quantiles(top_a - top_b), abs=1e-12)
    assert none["flip rate change CI"] == [0.0, 0.0]


def test_tradeoff_outcome_gap_and_its_paired_change_equal_the_naive_loop(table, units):
    prompts, ages = units
    before = [(a, decide(p)) for p, a in zip(prompts, ages, strict=True)]
    after = [(a, decide(p, age_head=False)) for p, a in zip(prompts, ages, strict=True)]
    (gb, db), (ga, da) = draws(before, after, gap)
    none, fixed = table.row("none"), table.row("zero-ablate top 1")
    assert none["outcome-rate gap"] == pytest.approx(gb, abs=1e-12)
    assert fixed["outcome-rate gap"] == pytest.approx(ga, abs=1e-12)
    assert fixed["outcome-rate gap CI"] == pytest.approx(clip(quantiles(da), 0, 1), abs=1e-12)
    assert fixed["outcome-rate gap change"] == pytest.approx(ga - gb, abs=1e-12)
    assert fixed["outcome-rate gap change CI"] == pytest.approx(quantiles(da - db), abs=1e-12)
    assert fixed["outcome-rate gap over"] == "a:0 vs a:1"  # young patients now get YES more
    # the population values (from the SCM tables) within sampling error of 300 units
    p_z1_a0 = (1 - P_M["0"]) * P_Z[("0", "0")] + P_M["0"] * P_Z[("0", "1")]
    p_z1_a1 = (1 - P_M["1"]) * P_Z[("1", "0")] + P_M["1"] * P_Z[("1", "1")]
    yes_a0 = 1 - p_z1_a0  # m - 2.5z >= 0 exactly when z = 0
    gap_before = abs((1 - (1 - P_M["1"]) * P_Z[("1", "0")]) - yes_a0)
    gap_after = abs((1 - p_z1_a1) - yes_a0)
    assert gap_before == pytest.approx(0.11) and gap_after == pytest.approx(0.52)
    assert abs(gb - gap_before) < 0.12 and abs(ga - gap_after) < 0.12
    assert fixed["outcome-rate gap change CI"][0] > 0  # removing A -> Y widened the gap


def test_a_baseline_that_hides_age_is_compared_on_the_same_units(table):
    """Along A -> Y no unit's input changes once age is hidden: nothing flips (0 exactly) and
    that path's change is unpaired; A -> Z -> Y holds the same units (paired). Its YES rates
    are the zeroed model's, unit by unit, so the gap and its paired change are too."""
    hides, fixed = table.row("hides A"), table.row("zero-ablate top 1")
    assert hides["A -> Y flip rate"] == 0.0 and hides["A -> Y flip rate CI"] == [0.0, 0.0]
    assert hides["A -> Z -> Y flip rate"] == 1.0 and hides["flip rate paired"] is False
    assert hides["flip rate change"] == 0.0 and hides["flip rate change CI"] == [0.0, 0.0]
    for col in ("outcome-rate gap", "outcome-rate gap CI", "outcome-rate gap change",
                "outcome-rate gap change CI", "outcome-rate gap over"):  # fmt: skip
        assert hides[col] == fixed[col], col
    assert hides["outcome-rate gap paired"] is True
    # the spec's flip_rate check reads the direct contrast, empty once age is hidden: not run
    assert hides["check: flips"] == "not run" and hides["checks not run"] == "flips"
    assert table.row("none")["check: flips statistic"] == table.row("none")["A -> Y flip rate"]
    assert table.row("zero-ablate top 1")["check: flips"] == "pass"


def test_a_group_parity_check_is_the_outcome_gap(table, two_heads):
    """With a group_parity check the gap is its population's (here the same 300 units as the
    utility set, by the same draw): the same numbers, and the check's own statistic."""
    parity = {"name": "parity", "kind": "group_parity", "n_boot": N_BOOT, "budget": 0.3,
              "population": {"scm": "causal", "n": N_UNITS, "seed": UNITS_SEED},
              "decision": {"answers": ["YES", "NO"]}, "attributes": ["A"]}  # fmt: skip
    other = tradeoff(
        the_spec(parity), ks=(1,), kinds=("zero",), n=N_PATHS, n_boot=N_BOOT, subject=two_heads
    )
    for name in ("none", "zero-ablate top 1"):
        mine, theirs = other.row(name), table.row(name)
        for col in ("outcome-rate gap", "outcome-rate gap CI", "outcome-rate gap change",
                    "outcome-rate gap change CI"):  # fmt: skip
            assert mine[col] == pytest.approx(theirs[col], abs=1e-12), (name, col)
        # the population names A's values, the utility set its rendered words (a:0, a:1)
        assert mine["outcome-rate gap over"] == "A: " + theirs["outcome-rate gap over"].replace(
            "a:", ""
        )
        assert mine["check: parity statistic"] == pytest.approx(mine["outcome-rate gap"])


def test_tradeoff_tables_carry_the_decisions(table, tmp_path):
    md = table.to_markdown(decisions=True)
    assert "| flip rate |" in md and "outcome-rate gap" in md
    assert "A -> Z -> Y 1.000 [1.000, 1.000]" in md
    table.save(tmp_path)
    assert "flip rate change" in (tmp_path / "tradeoff.md").read_text()
    assert "outcome-rate gap" in (tmp_path / "tradeoff.html").read_text()
    frame = table.to_frame(summary=True)
    assert {"flip rate", "outcome-rate gap", "pareto"} <= set(frame.columns)


def test_repair_report_decisions_without_decision_checks(two_heads, units, tmp_path):
    """A spec with no flip_rate or group_parity check: the flip rate on the repaired check's own
    contrast and the YES-rate gap between its utility set's groups, before and after the
    shipped repair (head 1 zeroed in the weights, read back from disk)."""
    from interp_audit.audit.repair import repair

    folder = tmp_path / "two-heads"
    two_heads.save(folder)
    spec = the_spec(
        {"name": "fix", "kind": "intervention", "contrast": "direct", "n_boot": N_BOOT,
         "ablate": {"components": ["L0H1"], "kind": "zero"}, "tolerance": 0.05,
         "utility": {"contrast": "units", "metric": "accuracy", "budget": 0.5}},
    )  # fmt: skip
    spec["model"] = {"source": str(folder)}
    spec.pop("locate")
    out = repair(spec, "fix", tmp_path / "out")
    rows = out.decisions
    cs = ia.CausalModel.from_spec(CAUSAL).contrast(
        two_heads, source="A", value="1", reference="0", paths=["A -> Y"], n=N_PATHS, seed=SEED
    )
    flips = [
        [float(decide(c, head) != decide(f, head)) for c, f in zip(
            cs.clean_text, cs.counterfactual_text, strict=True)]
        for head in (True, False)
    ]  # fmt: skip
    (pb, db), (pa, da) = draws(*flips, mean)
    flip, effect, parity = rows
    assert flip["measure"] == "flip rate" and flip["check"] is None
    assert [flip["before"], flip["after"]] == pytest.approx([pb, 0.0], abs=1e-12)
    assert flip["change ci"] == pytest.approx(clip(quantiles(da - db), -1, 1), abs=1e-12)
    assert flip["before ci"] == pytest.approx(clip(quantiles(db), 0, 1), abs=1e-12)
    # beside it the mean effect: -2/5 on every pair before (a:0 vs a:1), 0 after
    assert effect["before"] == pytest.approx(-0.4, abs=1e-6)
    assert effect["after"] == pytest.approx(0.0, abs=1e-6)
    prompts, ages = units
    before = [(a, decide(p)) for p, a in zip(prompts, ages, strict=True)]
    after = [(a, decide(p, age_head=False)) for p, a in zip(prompts, ages, strict=True)]
    (gb, db), (ga, da) = draws(before, after, gap)
    assert parity["measure"] == "demographic parity gap"
    assert parity["attribute"] == "groups of units"
    assert [parity["before"], parity["after"]] == pytest.approx([gb, ga], abs=1e-12)
    assert parity["change ci"] == pytest.approx(quantiles(da - db), abs=1e-12)
    assert parity["highest, lowest after"] == ["a:0", "a:1"]
    section = [s for s in out.after.sections if s["title"].startswith("Decisions")][0]
    assert section["rows"][0][0] == "(contrast direct, no flip_rate check)"
    assert "positive, and ties: 'YES'" in section["note"]
