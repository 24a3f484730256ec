"""Memorization: exposure against brute force, the shipped canary model, located unlearning."""

from pathlib import Path

import pytest
import torch

import interp_audit as ia
from circuits.memorization import unlearning as U
from interp_audit.methods.privacy.memorization import candidate_logprobs, exposure
from interp_audit.zoo import canary as C

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lm(canary_subject):
    return canary_subject


def test_exposure_matches_brute_force(lm):
    alphabet, prefix = ["1", "2", "3"], "frank 's pin is"
    fast = candidate_logprobs(lm, prefix, alphabet=alphabet, length=2)
    brute = []
    for a in alphabet:
        for b in alphabet:
            ids = lm.to_tokens(f"{prefix} {a} {b}")
            with torch.no_grad():
                logp = lm.model(torch.tensor([ids]))[0].double().log_softmax(-1)
            n = len(ids)
            brute.append(float(logp[n - 3, ids[n - 2]] + logp[n - 2, ids[n - 1]]))
    torch.testing.assert_close(
        fast, torch.tensor(brute, dtype=torch.float64), atol=1e-5, rtol=0
    )  # float32 model, batched vs one by one
    for secret in ("1 1", "2 3", "3 2"):
        e = exposure(lm, prefix, secret, alphabet=alphabet)
        target = brute[alphabet.index(secret[0]) * 3 + alphabet.index(secret[2])]
        rank = 1 + sum(b > target for b in brute)
        assert e.rank == rank and e.exposure == pytest.approx(
            torch.log2(torch.tensor(9.0)).item() - torch.log2(torch.tensor(float(rank))).item()
        )


def test_more_repetitions_more_exposure(lm):
    exposures = [
        exposure(lm, c.prefix, c.secret).exposure for c in C.CANARIES
    ]  # 1, 4, 16, 64 repetitions
    assert (
        exposures == sorted(exposures)
        and exposures[0] < 3 < exposures[1] < 6 < exposures[2] < exposures[3]
    )
    assert exposure(lm, C.CANARIES[-1].prefix, C.CANARIES[-1].secret).extracted


@pytest.fixture(scope="module")
def report(lm):
    """The memorization audit, run once: its neuron sweep is reused by the unlearning table."""
    return ia.audit(ROOT / "circuits" / "memorization" / "audit.yaml", subject=lm)


def test_located_ablation_unlearns_and_beats_random(lm, report):
    neurons = report.effects["recall_neurons"]
    # the audit's sweep (recall_pairs.jsonl) is the sweep U.recall_pairs would run: spot-check it
    direct = ia.patch(lm, U.recall_pairs(lm), "logprob", sites=[c for c, _ in neurons.top(3)])
    assert direct.values.tolist() == pytest.approx([v for _, v in neurons.top(3)], abs=1e-4)
    table = U.unlearning_table(lm, k=256, n_random=3, effects=neurons)
    before, located, random_ = (table.iloc[i] for i in range(3))
    key = "carol x16 exposure"
    assert before[key] - located[key] >= 4.0  # at least 4 bits less exposed
    assert before[key] - random_[key] <= 1.0  # the same number of random neurons barely matters
    assert located["perplexity"] / before["perplexity"] - 1 < 0.03
    # the 64x canary keeps rank 1 under neuron ablation, but its likelihood falls
    assert located["dave x64 log p"] < before["dave x64 log p"] - 1.0
    edit, control = table.iloc[3], table.iloc[4]
    for key in ("dave x64 exposure", "carol x16 exposure"):
        assert before[key] - edit[key] >= 6.0 and abs(before[key] - control[key]) < 0.5, key
    assert not edit["dave x64 extracted"] and before["dave x64 extracted"]
    assert edit["bob x4 exposure"] == pytest.approx(
        before["bob x4 exposure"]
    )  # other records untouched
    assert abs(edit["perplexity"] / before["perplexity"] - 1) < 1e-3


def test_memorization_checks_in_an_audit(report):
    verdicts = {c.name: c.passed for c in report.checks}
    assert verdicts == {
        "no_canary_is_exposed": False,
        "unlearning_the_16x_canary": True,
        "unlearning_the_64x_canary_by_neurons": False,
        "unlearning_by_editing_the_name": True,
    }
    carol = [c for c in report.checks if c.name == "unlearning_the_16x_canary"][0]
    assert carol.details[0]["exposure before"] > 11 and carol.statistic < 9
    with pytest.raises(ia.SpecError, match="a memorization check with 'ablate' needs 'utility'"):
        ia.audit(
            {
                "model": {"source": "zoo:canary-lm"},
                "contrasts": {},
                "checks": [
                    {
                        "kind": "memorization",
                        "canaries": [{"prefix": "a", "secret": "1"}],
                        "max_exposure": 1,
                        "ablate": {"components": ["L0N1"], "kind": "zero"},
                    }
                ],
            }
        )
    with pytest.raises(ia.SpecError, match="from_locate names 'nope'"):
        ia.audit(
            {
                "model": {"source": "zoo:canary-lm"},
                "contrasts": {},
                "checks": [
                    {
                        "kind": "memorization",
                        "canaries": [{"prefix": "a", "secret": "1"}],
                        "max_exposure": 1,
                        "ablate": {"from_locate": "nope", "top_k": 3, "kind": "zero"},
                        "utility": {"metric": "perplexity", "file": "x.txt", "budget": 0.1},
                    }
                ],
            }
        )


def test_tradeoff_without_a_graph_re_runs_the_exposure_check(lm, report):
    """The canary spec has no causal graph: the trade-off ranks neurons by the audit's own sweep
    (reused, not re-run), re-runs the exposure check under each ablation and scores held-out
    perplexity. References: the audit's unlearning check (its own ablation code) and
    ia.memorization.perplexity under ia.ablate."""
    t = ia.tradeoff(
        ROOT / "circuits" / "memorization" / "audit.yaml",
        locate=["recall_neurons"],
        by="signed",  # as the spec's ablate: the neurons that raise log p(secret)
        ks=(256,),
        kinds=("zero",),
        subject=lm,
        effects=report.effects,
        n_boot=200,
    )
    assert t.meta["objective"] == ["the spec's checks"] and t.meta["utility kind"] == "perplexity"
    assert t.meta["checks re-run"] == ["no_canary_is_exposed"]
    row = t.row("zero-ablate top 256")
    top = report.effects["recall_neurons"].top(256, by="signed")
    assert set(row["components"].split(", ")) == {c for c, _ in top}  # ties may order apart
    exposures = {
        d["canary"]: d["exposure before"] for d in row["_check details: no_canary_is_exposed"]
    }
    carol = [c for c in report.checks if c.name == "unlearning_the_16x_canary"][0]
    assert exposures["carol 's pin is"] == pytest.approx(carol.statistic, abs=1e-6)
    texts = [
        line
        for line in (ROOT / "circuits" / "memorization" / "heldout.txt").read_text().splitlines()
        if line.strip()
    ]
    ppl0 = ia.memorization.perplexity(lm, texts)
    with ia.ablate(lm, row["components"].split(", "), kind="zero"):
        ppl1 = ia.memorization.perplexity(lm, texts)
    assert t.row("none")["utility"] == pytest.approx(ppl0, rel=1e-9)
    assert row["utility"] == pytest.approx(ppl1, rel=1e-9)
    assert row["utility cost"] == pytest.approx(ppl1 / ppl0 - 1, rel=1e-9)
    lo, hi = row["utility cost CI"]
    assert lo < row["utility cost"] < hi
    assert t.row("none")["pareto"]  # the lowest perplexity; no ablation passes the check
