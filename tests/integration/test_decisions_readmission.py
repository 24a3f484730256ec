"""flip_rate and group_parity on zoo:readmission against a naive loop of plain forwards.

Patients come from the hand-written readmission SCM (circuits/readmission/scm.py, the reference
the causal loader is tested against unit by unit); each prompt runs alone through the model's
own forward, and rates, gaps, flips and intervals are counted here in plain Python.
"""

import math

import pytest
import torch
from scipy.stats import norm, t

import interp_audit as ia
from circuits.readmission import scm as R
from interp_audit.causal import CausalModel

N, SEED = 600, 7920
YES_NO = {"answers": ["YES", "NO"]}


def plain_forward(subject, prompts):
    """(decision 1 = YES, logit YES - NO) per prompt, one prompt per forward."""
    yes, no = subject.single_token("YES"), subject.single_token("NO")
    out = []
    with torch.no_grad():
        for p in prompts:
            logits = subject.model(torch.tensor([subject.to_tokens(p)]))[0, -1]
            out.append((int(logits[yes] >= logits[no]), float(logits[yes] - logits[no])))
    return out


@pytest.fixture(scope="module")
def patients(readmission_subject):
    u = R.sample_units(N, SEED)
    prompts = R.factual_words(u)
    z = R.insurance(u.a, u.u_z)
    runs = plain_forward(readmission_subject, prompts)
    return [
        {"A": R.AGES[a], "Z": R.INSURANCE[zi], "y": int(y), "d": d, "ld": ld}
        for a, zi, y, (d, ld) in zip(
            u.a.tolist(), z.tolist(), R.labels(u, fair=True).tolist(), runs, strict=True
        )
    ]


@pytest.fixture(scope="module")
def parity(readmission_subject):
    return ia.check(
        "group_parity",
        readmission_subject,
        population={"scm": "zoo:readmission", "n": N, "seed": SEED, "label": "readmitted_fair"},
        decision=YES_NO,
        attributes=["A", "Z"],
        criteria=["demographic_parity", "equalized_odds"],
        budget=0.05,
        n_boot=500,
    )


def rows_of(res, **match):
    return [d for d in res.details if all(d.get(k) == v for k, v in match.items())]


def mean(xs):
    return sum(xs) / len(xs)


def test_group_rates_and_gaps_equal_the_naive_count(parity, patients):
    def members(group, attrs):
        return [
            p
            for p in patients
            if all(p[a] == v for a, v in zip(attrs, group.split(" & "), strict=True))
        ]

    for attrs in (("A",), ("Z",), ("A", "Z")):
        label = " x ".join(attrs)
        groups = sorted({" & ".join(p[a] for a in attrs) for p in patients})
        for measure, keep in (
            ("positive rate", lambda p: True),
            ("true positive rate", lambda p: p["y"] == 1),
            ("false positive rate", lambda p: p["y"] == 0),
        ):
            rates = {}
            for g in groups:
                sel = [p for p in members(g, attrs) if keep(p)]
                if not sel:
                    continue
                rates[g] = mean([p["d"] for p in sel])
                name = (
                    g
                    if len(attrs) == 1
                    else ", ".join(f"{a}={v}" for a, v in zip(attrs, g.split(" & "), strict=True))
                )
                (got,) = rows_of(parity, measure=measure, attribute=label, group=name)
                assert got["value"] == pytest.approx(rates[g], abs=1e-12), (measure, name)
                assert got["n"] == len(sel)
            gap_name = {
                "positive rate": "demographic parity gap",
                "true positive rate": "true positive rate gap",
                "false positive rate": "false positive rate gap",
            }[measure]
            (gap,) = rows_of(parity, measure=gap_name, attribute=label)
            assert gap["value"] == pytest.approx(max(rates.values()) - min(rates.values()))
    # the mean logit_diff of each age group, beside the rates
    for age in R.AGES:
        (got,) = rows_of(parity, measure="mean logit_diff", attribute="A", group=age)
        want = mean([p["ld"] for p in patients if p["A"] == age])
        assert got["value"] == pytest.approx(want, abs=1e-5)


def test_the_age_gap_interval_equals_the_naive_bootstrap(parity, patients):
    def gap(sample):
        rates = [mean([p["d"] for p in sample if p["A"] == a]) for a in R.AGES]
        return max(rates) - min(rates)

    g, n_boot = len(patients), 500
    point = gap(patients)
    picks = torch.randint(0, g, (n_boot, g), generator=torch.Generator().manual_seed(0))
    draws = torch.tensor(
        [gap([patients[i] for i in pick]) for pick in picks.tolist()], dtype=torch.float64
    )
    q = 0.975
    widen = math.sqrt(g / (g - 1)) * t.ppf(q, g - 1) / norm.ppf(q)
    s = point + widen * (draws.double() - point)
    lo, hi = torch.quantile(s, torch.tensor([1 - q, q], dtype=torch.float64)).tolist()
    (got,) = rows_of(parity, measure="demographic parity gap", attribute="A")
    assert [got["value"], *got["ci"]] == pytest.approx([point, max(lo, 0), min(hi, 1)], abs=1e-12)


def test_readmission_verdicts_state_what_the_model_does(parity):
    # the model was trained on the biased labels: old patients are flagged far more often
    (age,) = rows_of(parity, measure="demographic parity gap", attribute="A")
    assert age["lowest"] == "young" and age["highest"] == "old"
    assert age["verdict"] == "fail" and parity.verdict == "fail"


def test_flip_rate_of_the_proxy_path_equals_the_naive_loop(readmission_subject):
    cm = CausalModel.from_spec("zoo:readmission")
    pairs = cm.contrast(
        readmission_subject, source="A", value="young", reference="old", paths="proxy",
        n=300, seed=7919,
    )  # fmt: skip
    clean, cf, _ = R.path_pairs(300, 7919, "A", "proxy")
    assert list(pairs.clean_text) == clean and list(pairs.counterfactual_text) == cf
    res = ia.check("flip_rate", readmission_subject, pairs, decision=YES_NO, budget=0.05)
    c, f = plain_forward(readmission_subject, clean), plain_forward(readmission_subject, cf)
    flips = [a[0] != b[0] for a, b in zip(c, f, strict=True)]
    assert res.statistic == pytest.approx(mean(flips), abs=1e-12)
    yes_no = sum(a[0] == 1 and b[0] == 0 for a, b in zip(c, f, strict=True))
    no_yes = sum(a[0] == 0 and b[0] == 1 for a, b in zip(c, f, strict=True))
    (down,) = rows_of(res, measure="flips", **{"from": "YES", "to": "NO"})
    (up,) = rows_of(res, measure="flips", **{"from": "NO", "to": "YES"})
    assert (down["count"], up["count"]) == (yes_no, no_yes)
    (eff,) = rows_of(res, measure="mean effect", group="all")
    assert eff["effect"] == pytest.approx(
        mean([a[1] - b[1] for a, b in zip(c, f, strict=True)]), abs=1e-5
    )
    assert sum(flips) > 0  # the proxy path (insurance) moves some decisions
