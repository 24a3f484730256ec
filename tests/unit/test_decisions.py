"""Decision-level fairness checks (flip_rate, group_parity) against analytic answers.

The hand-built model (zoo:handbuilt-copy) answers YES with logit_diff +4 on subject A and NO
with -4 on subject B, whatever the filler; with a subject it cannot copy (``x``) every logit is
0 (a tie). So flip counts, rates, gaps and ratios of constructed pairs and populations are known
exactly, and every interval is compared with a naive cluster bootstrap written out here (resample
clusters, concatenate their rows, recompute, widen, take quantiles).
"""

import csv
import math
from dataclasses import replace

import pytest
import torch
from scipy.stats import norm, t

import interp_audit as ia
from interp_audit.core.errors import AuditError

# handbuilt-copy vocabulary: <bos>=0 <pad>=1 <unk>=2 A=3 B=4 x=5 y=6 ->=7 YES=8 NO=9
TOK = {"A": 3, "B": 4, "x": 5, "y": 6}
YES_NO = {"answers": ["YES", "NO"]}


def ids(subject: str, filler: str) -> list[int]:
    return [0, TOK[subject], TOK[filler], 7]


def pairs_of(rows, groups=None, clusters=None):
    """rows: [(clean subject, clean filler, cf subject, cf filler)] -> ContrastSet."""
    clean = [ids(a, b) for a, b, _, _ in rows]
    cf = [ids(c, d) for _, _, c, d in rows]
    return ia.ContrastSet.from_tokens(
        clean,
        cf,
        [[8, 9]] * len(rows),
        groups=groups,
        clusters=clusters or [str(i) for i in range(len(rows))],
    )


def naive_ci(rows, clusters, stat, *, n_boot=1000, seed=0, confidence=0.95):
    """The cluster bootstrap written out: draw G clusters with replacement (the generator the
    library seeds, one chunk), concatenate their rows, recompute; widen by sqrt(G/(G-1)) t/z."""
    order = list(dict.fromkeys(clusters))
    members = {c: [r for r, k in zip(rows, clusters, strict=True) if k == c] for c in order}
    g = len(order)
    point = stat(rows)
    gen = torch.Generator().manual_seed(seed)
    picks = torch.randint(0, g, (n_boot, g), generator=gen)
    draws = torch.tensor(
        [stat([r for i in pick.tolist() for r in members[order[i]]]) for pick in picks],
        dtype=torch.float64,
    )
    q = 1 - (1 - confidence) / 2
    widen = math.sqrt(g / (g - 1)) * t.ppf(q, g - 1) / norm.ppf(q)
    s = point + widen * (draws - point)
    lo, hi = torch.quantile(s, torch.tensor([1 - q, q], dtype=torch.float64)).tolist()
    return point, lo, hi


def row(res, **match):
    hits = [d for d in res.details if all(d.get(k) == v for k, v in match.items())]
    assert len(hits) == 1, (match, hits)
    return hits[0]


# ---- flip_rate ----------------------------------------------------------------------------------

SWAPS = [("A", "x", "B", "x"), ("B", "y", "A", "y")]  # the decision flips, opposite ways
FILLERS = [("A", "x", "A", "y"), ("B", "x", "B", "y")]  # it never flips


@pytest.fixture(scope="module")
def mixed():
    """10 copies of each of the 4 pair types, every pair its own cluster; groups by type."""
    rows = (SWAPS + FILLERS) * 10
    groups = (["subject"] * 2 + ["filler"] * 2) * 10
    return rows, pairs_of(rows, groups=groups)


def test_flip_rate_counts_the_flips_a_zero_mean_effect_hides(handbuilt, mixed):
    rows, pairs = mixed
    res = ia.check("flip_rate", handbuilt, pairs, decision=YES_NO, budget=0.1)
    # half the pairs flip (the subject swaps), 10 each way; logit_diff +8 and -8 cancel: mean 0
    assert res.statistic == 0.5
    assert row(res, measure="flips", **{"from": "YES", "to": "NO"})["count"] == 10
    assert row(res, measure="flips", **{"from": "NO", "to": "YES"})["count"] == 10
    eff = row(res, measure="mean effect", group="all")
    assert eff["effect"] == 0.0 and eff["metric"] == "logit_diff"
    for outcome in ("YES", "NO"):
        net = row(res, measure="net change of the outcome's rate", outcome=outcome)
        assert net["value"] == 0.0 and net["clean rate"] == 0.5
    assert "10 'YES' -> 'NO', 10 'NO' -> 'YES'" in res.message
    assert "mean effect on logit_diff: +0.0000" in res.message
    # per group: every subject swap flips (fail), no filler swap does (pass); Holm over 3 tests
    assert row(res, measure="flip rate", group="subject")["value"] == 1.0
    assert row(res, measure="flip rate", group="subject")["verdict"] == "fail"
    assert row(res, measure="flip rate", group="filler")["verdict"] == "pass"
    assert row(res, measure="flip rate", group="filler")["ci"] == [0.0, 0.0]
    assert res.verdict == "fail" and "Holm correction over 3 tests" in res.correction
    # intervals: the naive cluster bootstrap, column by column
    clusters = [str(i) for i in range(len(rows))]
    flip = naive_ci(rows, clusters, lambda rs: sum(r[0] != r[2] for r in rs) / len(rs))
    assert (res.statistic, *res.ci) == pytest.approx((flip[0], max(flip[1], 0), flip[2]), abs=1e-12)
    ab = naive_ci(rows, clusters, lambda rs: sum(r[0] == "A" != r[2] for r in rs) / len(rs))
    got = row(res, measure="flips", **{"from": "YES", "to": "NO"})
    assert [got["value"], *got["ci"]] == pytest.approx([ab[0], max(ab[1], 0), ab[2]], abs=1e-12)
    ld = {"A": 4.0, "B": -4.0}
    mean = naive_ci(rows, clusters, lambda rs: sum(ld[r[0]] - ld[r[2]] for r in rs) / len(rs))
    assert [eff["effect"], *eff["ci"]] == pytest.approx(list(mean), abs=1e-9)


def test_flip_rate_verdicts_pass_fail_and_too_few_clusters(handbuilt):
    kw = dict(decision=YES_NO, budget=0.05)
    never = ia.check("flip_rate", handbuilt, pairs_of(FILLERS * 6), **kw)
    assert never.verdict == "pass" and never.statistic == 0.0 and never.ci == (0.0, 0.0)
    always = ia.check("flip_rate", handbuilt, pairs_of(SWAPS * 6), **kw)
    assert always.verdict == "fail" and always.statistic == 1.0
    few = ia.check("flip_rate", handbuilt, pairs_of(SWAPS * 2), **kw)
    assert few.verdict == "inconclusive" and "min_clusters 10" in few.reason
    # one cluster per pair type: 2 clusters, whatever the number of pairs
    clustered = pairs_of(SWAPS * 6, clusters=["a", "b"] * 6)
    assert ia.check("flip_rate", handbuilt, clustered, **kw).clusters == 2


def test_threshold_decisions_read_the_metric(handbuilt, mixed):
    _, pairs = mixed
    res = ia.check("flip_rate", handbuilt, pairs, decision={"threshold": 0.0}, budget=0.1)
    assert res.statistic == 0.5
    assert (
        row(res, measure="flips", **{"from": "logit_diff > 0", "to": "logit_diff <= 0"})["count"]
        == 10
    )
    # above every logit_diff (+-4): nothing is positive, nothing flips
    high = ia.check("flip_rate", handbuilt, pairs, decision={"threshold": 4.5}, budget=0.1)
    assert high.statistic == 0.0


def test_ties_go_to_the_answer_listed_first(handbuilt):
    # subject x is not copied: every logit is 0, so YES and NO tie
    pairs = ia.ContrastSet.from_tokens([ids("A", "y")] * 12, [[0, 5, 6, 7]] * 12, [[8, 9]] * 12)
    first_yes = ia.check("flip_rate", handbuilt, pairs, decision=YES_NO, budget=0.1)
    assert first_yes.statistic == 0.0  # A -> YES; tie -> YES
    first_no = ia.check(
        "flip_rate", handbuilt, pairs, decision={"answers": ["NO", "YES"]}, budget=0.1
    )
    assert first_no.statistic == 1.0  # A -> YES; tie -> NO
    assert row(first_no, measure="flips", **{"from": "YES", "to": "NO"})["count"] == 12


def test_three_answers_list_every_direction(handbuilt, mixed):
    _, pairs = mixed
    res = ia.check(
        "flip_rate", handbuilt, pairs, decision={"answers": ["YES", "NO", "x"]}, budget=0.1
    )
    moves = [d for d in res.details if d["measure"] == "flips"]
    assert len(moves) == 6  # every ordered pair of 3 outcomes, the ones that never happen too
    counts = {(d["from"], d["to"]): d["count"] for d in moves}
    assert counts[("YES", "NO")] == counts[("NO", "YES")] == 10
    assert sum(counts.values()) == 20
    x = row(res, measure="net change of the outcome's rate", outcome="x")
    assert x["clean rate"] == x["counterfactual rate"] == 0.0


# ---- group_parity -------------------------------------------------------------------------------


def applicants():
    """Group a: 30 A (20 labelled 1) and 10 B (5 labelled 1); group b: 10 A (5), 30 B (15).
    Attribute h alternates u/v. A is decided YES (positive), B NO."""
    out = []
    for group, n_a, pos_a, n_b, pos_b in (("a", 30, 20, 10, 5), ("b", 10, 5, 30, 15)):
        people = [("A", int(i < pos_a)) for i in range(n_a)] + [
            ("B", int(i < pos_b)) for i in range(n_b)
        ]
        for i, (s, y) in enumerate(people):
            out.append({"text": f"{s} x ->", "g": group, "h": "uv"[i % 2], "y": y})
    return out


def rate(rs, keep=lambda r: True):
    sel = [r for r in rs if keep(r)]
    return sum(r["text"].startswith("A") for r in sel) / len(sel)


@pytest.fixture(scope="module")
def parity(handbuilt):
    return ia.check(
        "group_parity",
        handbuilt,
        population={"rows": applicants(), "label": "y"},
        decision=YES_NO,
        attributes=["g", "h"],
        criteria=["demographic_parity", "equalized_odds"],
        budget=0.1,
        min_ratio=0.8,
    )


def test_group_parity_rates_gaps_and_ratio_are_the_analytic_ones(parity):
    res = parity
    assert row(res, measure="positive rate", group="a")["value"] == 0.75
    assert row(res, measure="positive rate", group="b")["value"] == 0.25
    dp = row(res, measure="demographic parity gap", attribute="g")
    assert dp["value"] == 0.5 and (dp["highest"], dp["lowest"]) == ("a", "b")
    assert row(res, measure="positive rate ratio (lowest / highest)", attribute="g")[
        "value"
    ] == pytest.approx(1 / 3)
    assert row(res, measure="true positive rate", group="a")["value"] == pytest.approx(20 / 25)
    assert row(res, measure="true positive rate", group="b")["value"] == pytest.approx(5 / 20)
    assert row(res, measure="true positive rate gap", attribute="g")["value"] == pytest.approx(0.55)
    assert row(res, measure="false positive rate gap", attribute="g")["value"] == pytest.approx(
        10 / 15 - 5 / 20
    )
    # mean logit_diff beside the rates: (30 * 4 - 10 * 4) / 40 = +2 and -2
    assert row(res, measure="mean logit_diff", group="a")["value"] == 2.0
    assert row(res, measure="logit_diff gap", attribute="g")["value"] == 4.0
    assert res.verdict == "fail" and "demographic parity gap over g" in res.message


def test_group_parity_intersections_match_a_naive_count(parity):
    people = applicants()
    for g in ("a", "b"):
        for h in ("u", "v"):
            name = f"g={g}, h={h}"
            want = rate(people, lambda r, g=g, h=h: r["g"] == g and r["h"] == h)
            assert row(parity, measure="positive rate", group=name)["value"] == pytest.approx(want)
            pos = [r for r in people if r["g"] == g and r["h"] == h and r["y"] == 1]
            assert row(parity, measure="true positive rate", group=name)["value"] == pytest.approx(
                rate(pos)
            )
    cells = [
        rate(people, lambda r, g=g, h=h: r["g"] == g and r["h"] == h) for g in "ab" for h in "uv"
    ]
    gap = row(parity, measure="demographic parity gap", attribute="g x h")
    assert gap["value"] == pytest.approx(max(cells) - min(cells))
    # the attribute h alone: u and v split every group evenly
    assert row(parity, measure="demographic parity gap", attribute="h")["value"] == pytest.approx(
        abs(rate(people, lambda r: r["h"] == "u") - rate(people, lambda r: r["h"] == "v"))
    )


def test_group_parity_intervals_equal_the_naive_bootstrap(parity):
    people = applicants()
    clusters = [str(i) for i in range(len(people))]

    def dp_gap(rs):
        rates = [rate(rs, lambda r, g=g: r["g"] == g) for g in "ab"]
        return max(rates) - min(rates)

    def tpr_gap(rs):
        rates = [rate(rs, lambda r, g=g: r["g"] == g and r["y"] == 1) for g in "ab"]
        return max(rates) - min(rates)

    for measure, stat in (("demographic parity gap", dp_gap), ("true positive rate gap", tpr_gap)):
        point, lo, hi = naive_ci(people, clusters, stat)
        got = row(parity, measure=measure, attribute="g")
        assert [got["value"], *got["ci"]] == pytest.approx(
            [point, max(lo, 0.0), min(hi, 1.0)], abs=1e-12
        )


def test_a_group_absent_from_a_draw_keeps_its_point_rate(handbuilt):
    # group c has 2 clusters: some draws leave it out; the naive loop imputes its point rate
    people = [{"text": "A x ->", "g": "a", "cluster": f"a{i}"} for i in range(6)]
    people += [{"text": "B x ->", "g": "a", "cluster": f"a{i}"} for i in range(6, 12)]
    people += [{"text": "B x ->", "g": "b", "cluster": f"b{i}"} for i in range(12)]
    people += [
        {"text": "A x ->", "g": "c", "cluster": "c0"},
        {"text": "B x ->", "g": "c", "cluster": "c1"},
    ]
    res = ia.check(
        "group_parity",
        handbuilt,
        population={"rows": people},
        decision=YES_NO,
        attributes=["g"],
        budget=0.1,
        n_boot=400,
        seed=3,
    )
    point_rates = {g: rate(people, lambda r, g=g: r["g"] == g) for g in "abc"}

    def gap(rs):
        rates = [
            rate(rs, lambda r, g=g: r["g"] == g) if any(r["g"] == g for r in rs) else point_rates[g]
            for g in "abc"
        ]
        return max(rates) - min(rates)

    point, lo, hi = naive_ci(people, [r["cluster"] for r in people], gap, n_boot=400, seed=3)
    got = row(res, measure="demographic parity gap", attribute="g")
    assert [got["value"], *got["ci"]] == pytest.approx([point, max(lo, 0), min(hi, 1)], abs=1e-12)
    # c has 2 clusters < min_clusters 10: the gap cannot pass; a and b alone (0.5 vs 0) fail it
    # (the gap over all three is biased upwards by c's noisy rate: it never decides a failure)
    assert got["verdict"] == "fail" and got["gap over groups with enough clusters"] == 0.5
    assert "c (2 clusters)" in got["reason"]


def test_a_small_group_blocks_a_pass(handbuilt):
    people = [{"text": "A x ->", "g": "a"}] * 12 + [{"text": "A y ->", "g": "b"}] * 12
    people += [{"text": "A x ->", "g": "c"}] * 3
    res = ia.check(
        "group_parity", handbuilt, population={"rows": people}, decision=YES_NO,
        attributes=["g"], budget=0.1,
    )  # fmt: skip
    gap = row(res, measure="demographic parity gap", attribute="g")
    assert gap["value"] == 0.0 and gap["verdict"] == "inconclusive"
    assert "groups below min_clusters 10: c (3 clusters)" in gap["reason"]
    fine = ia.check(
        "group_parity", handbuilt, population={"rows": people[:24]}, decision=YES_NO,
        attributes=["g"], budget=0.1,
    )  # fmt: skip
    assert fine.verdict == "pass"


def test_population_from_a_template_and_an_attribute_table(handbuilt, tmp_path):
    with (tmp_path / "subjects.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerows([["subject", "kind"], ["A", "first"], ["B", "second"]])
    res = ia.check(
        "group_parity",
        handbuilt,
        population={
            "template": ["{subject} {filler} ->"],
            "tables": {"subject": "subjects.csv"},
            "slots": {"filler": ["x", "y"]},
        },
        decision=YES_NO,
        attributes=["kind", "filler"],
        budget=0.1,
        min_clusters=1,
        base=tmp_path,
    )
    assert row(res, measure="positive rate", group="first")["value"] == 1.0
    assert row(res, measure="positive rate", group="second")["value"] == 0.0
    # clusters default to the table's slot: 2 subjects, whatever the fillers
    assert row(res, measure="positive rate", group="all")["clusters"] == 2
    assert row(res, measure="demographic parity gap", attribute="kind")["value"] == 1.0
    assert row(res, measure="demographic parity gap", attribute="filler")["value"] == 0.0
    assert row(res, measure="positive rate", group="kind=first, filler=y")["n"] == 1


def test_population_from_a_csv_file(handbuilt, tmp_path):
    people = applicants()
    with (tmp_path / "people.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["text", "g", "h", "y"])
        w.writeheader()
        w.writerows(people)
    res = ia.check(
        "group_parity",
        handbuilt,
        population={"file": "people.csv", "label": "y"},
        decision=YES_NO,
        attributes=["g"],
        criteria=["equalized_odds"],
        budget=0.1,
        base=tmp_path,
    )
    assert row(res, measure="true positive rate gap", attribute="g")["value"] == pytest.approx(0.55)
    assert not [
        d for d in res.details if d.get("measure") == "demographic parity gap" and "budget" in d
    ]


@pytest.mark.parametrize(
    "keys, message",
    [
        (dict(decision={"answers": ["YES"]}), "at least two answers"),
        (dict(decision={"answers": ["YES", "NO"], "threshold": 0}), "exactly one of"),
        (dict(decision={"answers": ["YES", "NO"], "positive": "MAYBE"}), "not one of the answers"),
        (dict(decision={"answers": ["YES", "A x"]}), "'A x' is 2 tokens"),
        (dict(attributes=["gg"]), "no attribute 'gg' (it has: g, h, y) (did you mean 'g'?)"),
        (dict(criteria=["equalized_odds"]), "give population.label"),
        (dict(population={"rows": [{"text": "A x ->", "g": "a"}], "n": 5}), "'n' does not apply"),
        (
            dict(population={"rows": [{"text": "A x ->", "g": "a", "y": 2}], "label": "y"}),
            "label '2' is not 0/1",
        ),
        (dict(population={"rows": [{"txt": "A x ->", "g": "a"}]}), "no prompt column 'text'"),
        (dict(population={"rows": [{"text": "A z ->", "g": "a"}]}), "'z' outside the model"),
        (dict(population={"rows": [{"text": "A x ->", "g": "a"}] * 3}), "'g' has 1 group"),
    ],
)
def test_group_parity_refuses_bad_input_naming_it(handbuilt, keys, message):
    base = dict(population={"rows": applicants()}, decision=YES_NO, attributes=["g"], budget=0.1)
    with pytest.raises(AuditError) as err:
        ia.check("group_parity", handbuilt, **{**base, **keys})
    assert message in str(err.value)


# ---- from a spec: report, figure, plan, CLI ------------------------------------------------------

SPEC = """
name: decisions
model: {source: zoo:handbuilt-copy}
contrasts:
  subject_swap:
    template: "{subject} {filler} ->"
    slots: {filler: [x, y]}
    swap: {slot: subject, pairs: [[A, B], [B, A]]}
    answers: [YES, NO]
    cluster_by: pair
checks:
  - name: subject_flips
    kind: flip_rate
    contrast: subject_swap
    decision: {answers: [YES, NO]}
    budget: 0.1
    min_clusters: 1
  - name: parity
    kind: group_parity
    population: {file: people.csv, label: y}
    decision: {answers: [YES, NO]}
    attributes: [g, h]
    criteria: [demographic_parity, equalized_odds]
    budget: 0.1
"""


def test_decision_checks_run_from_a_spec_and_render(tmp_path):
    import json

    from interp_audit.audit.plan import plan_rows
    from interp_audit.cli.main import main as cli

    with (tmp_path / "people.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["text", "g", "h", "y"])
        w.writeheader()
        w.writerows(applicants())
    (tmp_path / "audit.yaml").write_text(SPEC)
    report = ia.audit(str(tmp_path / "audit.yaml"))
    flips, parity = report.checks
    # 4 pairs, every one flips (A <-> B both ways): the mean logit_diff is 0 exactly
    assert flips.statistic == 1.0 and flips.verdict == "fail"
    assert row(flips, measure="mean effect", group="all")["effect"] == 0.0
    assert row(parity, measure="demographic parity gap", attribute="g")["value"] == 0.5
    assert parity.verdict == "fail"
    out = report.save(tmp_path / "out")
    data = json.loads((out / "report.json").read_text())
    assert [c["kind"] for c in data["checks"]] == ["flip_rate", "group_parity"]
    page = (out / "report.html").read_text()
    assert "subject_flips (flip_rate): share of pairs" in page
    assert "parity (group_parity)" in page and "tested gaps" in page
    # the plan reads the tested rows (budget), not the rows reported beside
    planned = {(r.check, r.part) for r in plan_rows(report.checks)}
    assert ("subject_flips", "all") in planned
    assert sum(r.check == "parity" for r in plan_rows(report.checks)) == 3 * 3  # g, h, g x h
    assert cli(["run", str(tmp_path / "audit.yaml"), "--out", str(tmp_path / "cli")]) == 1


def test_a_template_may_use_the_columns_of_its_tables(handbuilt, tmp_path):
    # the filler follows the subject's row (as an article follows its occupation)
    (tmp_path / "subjects.csv").write_text("subject,tail,kind\nA,x,first\nB,y,second\n")
    pop = {"template": "{subject} {tail} ->", "tables": {"subject": "subjects.csv"}}
    res = ia.check(
        "group_parity", handbuilt, population=pop, decision=YES_NO, attributes=["tail"],
        budget=0.1, min_clusters=1, base=tmp_path,
    )  # fmt: skip
    assert row(res, measure="positive rate", group="x")["value"] == 1.0
    assert row(res, measure="positive rate", group="y")["value"] == 0.0
    bad = {"template": "{subject} {tale} ->", "tables": {"subject": "subjects.csv"}}
    with pytest.raises(AuditError, match="field 'tale' is neither a slot nor a column"):
        ia.check(
            "group_parity", handbuilt, population=bad, decision=YES_NO, attributes=["kind"],
            budget=0.1, base=tmp_path,
        )  # fmt: skip


def test_a_thresholded_metric_needs_answers_to_score(handbuilt):
    bare = ia.ContrastSet.from_tokens([ids("A", "x")] * 3, [ids("B", "x")] * 3)
    with pytest.raises(AuditError, match="has none: give it answers"):
        ia.check("flip_rate", handbuilt, bare, decision={"threshold": 0.0}, budget=0.1)
    people = {"rows": [{"text": "A x ->", "g": "a"}, {"text": "B x ->", "g": "b"}]}
    with pytest.raises(AuditError, match="give population.answers"):
        ia.check(
            "group_parity", handbuilt, population=people, decision={"threshold": 0.0},
            attributes=["g"], budget=0.1,
        )  # fmt: skip
    ok = ia.check(
        "group_parity", handbuilt, population={**people, "answers": ["YES", "NO"]},
        decision={"threshold": 0.0}, attributes=["g"], budget=0.1, min_clusters=1,
    )  # fmt: skip
    assert row(ok, measure="demographic parity gap", attribute="g")["value"] == 1.0
    assert row(ok, measure="mean logit_diff", group="a")["value"] == 4.0


def test_one_forward_serves_the_decision_and_the_metric_beside_it(causal_subject):
    """pair_values reads several metrics from one forward per side: the same numbers as a
    forward per metric (pair_decisions), on pairs of unequal lengths spanning two batches,
    under an ablation (hooks respected), with each metric's own answers."""
    from interp_audit.audit import decisions
    from interp_audit.audit.decisions import _top_answer_metric, pair_decisions, pair_values
    from interp_audit.model.metrics import get_metric

    g = torch.Generator().manual_seed(3)
    n = decisions.BATCH + 6  # two batches
    clean = [torch.randint(5, 50, (int(k),), generator=g).tolist() for k in
             torch.randint(3, 9, (n,), generator=g)]  # fmt: skip
    cf = [torch.randint(5, 50, (int(k),), generator=g).tolist() for k in
          torch.randint(3, 9, (n,), generator=g)]  # fmt: skip
    ans = torch.randint(0, 50, (n, 2), generator=g)
    ans[:, 1] = (ans[:, 0] + 1) % 50
    cs = ia.ContrastSet.from_tokens(clean, cf, ans)
    top = _top_answer_metric(torch.tensor([7, 11, 13]), ("a", "b", "c"))
    ld = get_metric("logit_diff")
    other = torch.tensor([[20, 21]] * n)
    with ia.ablate(causal_subject, ["L1H2", "L0.mlp"], kind="zero"):
        (tc, lc, oc), (tf, lf, of) = pair_values(
            causal_subject, cs, [top, ld, ld], [None, None, other]
        )
        want_top = pair_decisions(causal_subject, cs, top)
        want_ld = pair_decisions(causal_subject, cs, ld)
        want_other = pair_decisions(causal_subject, replace(cs, answers=other), ld)
    assert torch.equal(tc, want_top[0]) and torch.equal(tf, want_top[1])
    torch.testing.assert_close(lc, want_ld[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(lf, want_ld[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(oc, want_other[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(of, want_other[1], atol=1e-5, rtol=0)
    # and the ablation changed them (a test that hooks are respected can fail)
    assert not torch.allclose(lc, pair_decisions(causal_subject, cs, ld)[0])
    ((only_clean, _),) = pair_values(causal_subject, cs, [ld, top], sides=("clean",))
    torch.testing.assert_close(only_clean, pair_decisions(causal_subject, cs, ld)[0])


def test_clean_values_hand_the_contrasts_extras_to_the_metric(encoder_subject):
    """A metric that reads per-pair extras (query_similarity) works on the clean-only path too.
    Reference: a plain forward's mean-pooled final residual (as Subject.embed pools), by cosine
    against each pair's query."""
    from interp_audit.audit.measure import clean_values
    from interp_audit.model.metrics import mean_pool
    from tests.helpers import random_pairs

    pairs = random_pairs(seed=9)
    queries = torch.randn(len(pairs), 32, generator=torch.Generator().manual_seed(0))
    got = clean_values(
        encoder_subject, pairs.with_extra(query=queries), ia.metrics.query_similarity()
    )
    mask = pairs.attention_mask()
    hidden = encoder_subject.run(pairs.clean, mask, return_type="resid")
    want = torch.nn.functional.cosine_similarity(mean_pool(hidden, mask), queries, dim=-1)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
