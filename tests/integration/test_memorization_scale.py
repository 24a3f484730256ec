"""Memorization at realistic scale: extrapolated exposure against exact enumeration, membership
inference against naive loops, the rank-one edit against ROME's closed form, random controls,
and the membership check on zoo:canary-lm10 (trained with the records) vs its clean twin."""

import math
import random
import zlib

import pytest
import torch

import interp_audit as ia
from interp_audit.audit.kinds.memorization import random_like
from interp_audit.methods.privacy.edits import rank_one_edit, solve_edit
from interp_audit.methods.privacy.membership import auc, auc_ci, record_scores
from interp_audit.methods.privacy.memorization import (
    SkewNormalFit,
    candidate_logprobs,
    exposure,
    extrapolated_rank,
    sample_logprobs,
    secret_logprobs,
    sequence_logprobs,
)
from interp_audit.zoo import canary as C4
from interp_audit.zoo import canary10 as C10

pytestmark = pytest.mark.integration

#: stated error of extrapolated exposure on the 10^4 space of zoo:canary-lm (2,000 samples), in
#: bits: random secrets (the bulk of the space), canaries (the tail), mean over all 56 secrets
BULK_ERROR, TAIL_ERROR, MEAN_ERROR = 1.0, 2.0, 0.15


def _index(secret: str) -> int:
    return int("".join(secret.split()))


def test_teacher_forced_scores_match_the_enumeration(lm4):
    prefix = C4.CANARIES[2].prefix
    exact = candidate_logprobs(lm4, prefix, length=3)
    cands = torch.tensor([[0, 0, 0], [9, 0, 6], [3, 1, 4], [9, 9, 9]])
    got = sequence_logprobs(lm4, prefix, cands)
    want = torch.stack([exact[int("".join(map(str, c.tolist())))] for c in cands])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_extrapolated_exposure_is_within_the_stated_error_of_the_exact_one(lm4):
    """4 canary prefixes x (the canary + 13 random secrets) = 56 secrets on a 10^4 space."""
    rng = random.Random(0)
    errors = {"random": [], "canary": []}
    for j, c in enumerate(C4.CANARIES):
        scores = candidate_logprobs(lm4, c.prefix, length=4)  # exact reference
        n = len(scores)
        samples = sample_logprobs(lm4, c.prefix, length=4, n_samples=2000, seed=j)
        fit = SkewNormalFit.fit(-samples)
        for kind, idx in [("canary", _index(c.secret))] + [
            ("random", rng.randrange(n)) for _ in range(13)
        ]:
            exact = math.log2(n) - math.log2(int((scores > scores[idx]).sum()) + 1)
            est = math.log2(n) - math.log2(extrapolated_rank(fit, float(scores[idx]), n))
            errors[kind].append(est - exact)
            if j == 0 and kind == "canary":
                first_estimate = est
    bulk = torch.tensor(errors["random"]).abs()
    tail = torch.tensor(errors["canary"]).abs()
    assert len(bulk) == 52 and bulk.max() <= BULK_ERROR, bulk
    assert tail.max() <= TAIL_ERROR, tail
    assert torch.cat([bulk, tail]).mean() <= MEAN_ERROR
    # the public function is the same computation (same seed, same samples, same fit)
    e = exposure(
        lm4, C4.CANARIES[0].prefix, C4.CANARIES[0].secret, method="extrapolated", n_samples=2000
    )
    assert e.method == "extrapolated" and e.fit.n_samples == 2000 and e.n_candidates == 10**4
    assert e.exposure == pytest.approx(first_estimate, abs=1e-4)  # float32, other batching


def test_ten_digit_exposure_is_extrapolated_and_grows_with_repetitions(lm10):
    low = [c for c in C10.CANARIES if c.repetitions == 1][0]
    high = [c for c in C10.CANARIES if c.repetitions == 64][0]
    e_low, e_high = (exposure(lm10, c.prefix, c.secret, n_samples=1000) for c in (low, high))
    assert e_low.method == "extrapolated" and e_low.n_candidates == 10**10
    # the memorized one: the best-first search finds every more likely number (exact rank)
    assert e_high.method == "search" and e_high.search.complete
    assert e_high.bounds == (e_high.exposure, e_high.exposure)
    assert e_high.extracted and e_high.exposure > e_low.exposure + 5
    # log p(secret) by teacher forcing equals the product of the greedy-free next-token probs
    ids = lm10.to_tokens(f"{high.prefix} {high.secret}")
    with torch.no_grad():
        lp = lm10.model(torch.tensor([ids]))[0].double().log_softmax(-1)
    n0 = len(lm10.to_tokens(high.prefix))
    naive = sum(float(lp[t - 1, ids[t]]) for t in range(n0, len(ids)))
    assert e_high.logprob == pytest.approx(naive, abs=1e-6)
    assert float(secret_logprobs(lm10, [high.prefix], [high.secret])[0]) == pytest.approx(naive)


def test_membership_scores_and_auc_match_naive_loops(lm10):
    texts = [C10.CANARIES[-1].sentence, *C10.non_members(per_canary=1)[:3]]
    got = record_scores(lm10, texts, min_k=0.3)
    for i, t in enumerate(texts):
        ids = lm10.to_tokens(t)
        with torch.no_grad():
            lp = lm10.model(torch.tensor([ids]))[0].double().log_softmax(-1)
        tok = [float(lp[j - 1, ids[j]]) for j in range(1, len(ids))]
        loss = -sum(tok) / len(tok)
        k = math.ceil(0.3 * len(tok))
        # float32 model, batched vs one by one
        assert float(got["loss"][i]) == pytest.approx(-loss, abs=1e-5)
        assert float(got["zlib"][i]) == pytest.approx(
            -loss / len(zlib.compress(t.encode())), abs=1e-6
        )
        assert float(got["min_k"][i]) == pytest.approx(sum(sorted(tok)[:k]) / k, abs=1e-5)
    a = torch.tensor([0.9, 0.4, 0.7, 0.7])
    b = torch.tensor([0.1, 0.7, 0.5])
    naive = sum((x > y) + 0.5 * (x == y) for x in a.tolist() for y in b.tolist()) / 12
    assert auc(a, b) == pytest.approx(naive)
    value, lo, hi = auc_ci(a, b, n_boot=200)
    assert value == pytest.approx(naive) and 0 <= lo <= value <= hi <= 1


def _membership_spec(source: str) -> dict:
    return {
        "model": {"source": source},
        "contrasts": {},
        "checks": [
            {
                "kind": "membership",
                "members": "members10.txt",
                "non_members": "nonmembers10.txt",
                "max_auc": 0.65,
                "loss_tolerance": 0.1,
                "n_boot": 300,
            }
        ],
    }


def test_membership_check_fails_with_the_records_and_passes_without(monkeypatch):
    from pathlib import Path

    monkeypatch.chdir(Path(__file__).resolve().parents[2] / "circuits" / "memorization")
    trained = ia.audit(_membership_spec("zoo:canary-lm10")).checks[0]
    clean = ia.audit(_membership_spec("zoo:canary-lm10-clean")).checks[0]
    assert not trained.passed and trained.statistic > 0.95  # near-perfect attack
    assert clean.passed and abs(clean.statistic - 0.5) < 0.1, clean.message
    gap = [d for d in trained.details if "gap" in d][0]
    assert gap["gap"] > 1.0 and not gap["passed"]


def test_rank_one_edit_writes_the_target_and_matches_rome(lm10):
    held = C10.held_out()[:40]
    like = C10.OTHER_NAMES[:6]
    c = C10.CANARIES[-1]
    W0 = lm10.model.blocks[0].mlp.W_out.detach().clone()
    with rank_one_edit(lm10, "L0.mlp@1", [c.prefix], like, held) as edit:
        assert edit.rank == 1
        toks = torch.tensor([lm10.to_tokens(c.prefix)])
        got = {}
        with lm10.hooks([("blocks.0.hook_mlp_out", lambda a, hook: got.update(v=a.clone()))]):
            lm10.run(toks)
    assert torch.equal(lm10.model.blocks[0].mlp.W_out, W0)  # restored
    # reference: ROME's closed form, computed here by hand
    acts = {}

    def keep(name):
        return lambda a, hook: acts.update({name: a.detach().double()})

    with lm10.hooks([("blocks.0.mlp.hook_post", keep("k"))]):
        lm10.run(toks)
    k = acts["k"][0, 1]
    vs = []
    for name in like:
        swapped = toks.clone()
        swapped[0, 1] = lm10.single_token(name)
        with lm10.hooks([("blocks.0.hook_mlp_out", keep("v"))]):
            lm10.run(swapped)
        vs.append(acts["v"][0, 1])
    v = torch.stack(vs).mean(0)
    keys = []
    for t in held:
        with lm10.hooks([("blocks.0.mlp.hook_post", keep("k"))]):
            lm10.run(torch.tensor([lm10.to_tokens(t)]))
        keys.append(acts["k"][0])
    K = torch.cat(keys)
    Cm = K.T @ K / len(K)
    Cm = Cm + 1e-2 * Cm.diagonal().mean() * torch.eye(len(Cm), dtype=Cm.dtype)
    W, b = W0.double(), lm10.model.blocks[0].mlp.b_out.detach().double()
    cik = torch.linalg.solve(Cm, k)
    rome = torch.outer(cik, v - k @ W - b) / (k @ cik)
    torch.testing.assert_close(edit.delta, rome, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(got["v"][0, 1].double(), v, atol=1e-4, rtol=0)
    # several keys: every key writes its target exactly
    Ks, Vs = torch.randn(3, 512, dtype=torch.float64), torch.randn(3, 128, dtype=torch.float64)
    d = solve_edit(W, b, Ks, Vs, Cm)
    torch.testing.assert_close(Ks @ (W + d) + b, Vs, atol=1e-8, rtol=1e-8)


def test_rank_one_edit_restores_weights_on_error(lm10):
    W0 = lm10.model.blocks[1].mlp.W_out.detach().clone()
    with pytest.raises(RuntimeError, match="boom"):
        with rank_one_edit(lm10, "L1.mlp", ["dave 's number is 1 2"], ["erin"], ["a cat ."]):
            assert not torch.equal(lm10.model.blocks[1].mlp.W_out, W0)
            raise RuntimeError("boom")
    assert torch.equal(lm10.model.blocks[1].mlp.W_out, W0)
    with pytest.raises(ia.SiteError, match="rank-one edit edits an MLP"):
        with rank_one_edit(lm10, "L1H0", ["dave 's number is"], ["erin"], ["a cat ."]):
            pass


def test_random_controls_match_the_located_set_per_layer(lm10):
    located = ["L0N3", "L0N7", "L1N5", "L1H2"]
    drawn = random_like(located, lm10, random.Random(0))
    assert sorted(x[:2] + ("N" if "N" in x else "H") for x in drawn) == sorted(
        x[:2] + ("N" if "N" in x else "H") for x in located
    )
    assert not set(drawn) & set(located) and len(set(drawn)) == 4
    with pytest.raises(ia.SpecError, match="cannot draw 1 random head components"):
        random_like([f"L0H{h}" for h in range(4)] + ["L0H0@1"], lm10, random.Random(0))


def test_held_out_controls_in_the_check_match_a_naive_loop(lm10, monkeypatch):
    """Neurons located on canary10.LOCATE, evaluated on two EVALUATE canaries against 3 random
    sets of the same size; every drop recomputed here by hand."""
    from pathlib import Path

    from interp_audit.engine.interventions import ablate

    monkeypatch.chdir(Path(__file__).resolve().parents[2] / "circuits" / "memorization")
    held = [c for c in C10.EVALUATE if c.repetitions == 64][:2]
    assert not {c.name for c in held} & {c.name for c in C10.LOCATE}
    spec = {
        "model": {"source": "zoo:canary-lm10"},
        "metric": {"name": "logprob"},
        "contrasts": {"recall": {"file": "recall10_locate.jsonl"}},
        "locate": [{"method": "atp", "contrast": "recall", "sites": "neurons", "name": "n"}],
        "checks": [
            {
                "kind": "memorization",
                "canaries": [{"prefix": c.prefix, "secret": c.secret} for c in held],
                "exposure": {"samples": 200},
                "ablate": {"from_locate": "n", "top_k": 256, "kind": "zero"},
                "controls": 3,
                "margin": 2.0,
                "utility": {"metric": "perplexity", "file": "heldout10.txt", "budget": 0.05},
            }
        ],
    }
    report = ia.audit(spec, subject=lm10)
    chk = report.checks[0]
    ctrl = [d for d in chk.details if "controls" in d][0]
    located = [c for c, _ in report.effects["n"].top(256, by="signed")]
    prefixes, secrets = [c.prefix for c in held], [c.secret for c in held]
    before = float(secret_logprobs(lm10, prefixes, secrets).mean())
    with ablate(lm10, located, "zero"):
        after = float(secret_logprobs(lm10, prefixes, secrets).mean())
    assert ctrl["located"] == pytest.approx(before - after, abs=1e-9)
    rng = random.Random(0)  # the audit's seed
    for drop in ctrl["controls"]:
        with ablate(lm10, random_like(located, lm10, rng), "zero"):
            naive = before - float(secret_logprobs(lm10, prefixes, secrets).mean())
        assert drop == pytest.approx(naive, abs=1e-9)
    assert chk.passed == (ctrl["located"] - max(ctrl["controls"]) >= 2.0)
    assert chk.statistic == pytest.approx(ctrl["located"] - max(ctrl["controls"]))
    level = [d for d in chk.details if "level" in d][0]["level"]
    assert level.startswith("weight-level")
