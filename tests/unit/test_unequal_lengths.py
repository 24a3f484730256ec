"""Pairs of unequal token counts against plain ``transformers``, for three position schemes.

GPT-2 (learned positions), Llama (rotary, grouped-query attention) and GPT-NeoX (partial rotary,
parallel blocks), tiny random-init folders. References are single unpadded forwards of the
Hugging Face model; patches are hand-made with forward pre-hooks on the attention output
projection (its input holds the heads' outputs side by side), at positions aligned here by a
plain loop, independent of :mod:`interp_audit.engine.alignment`.
"""

from __future__ import annotations

import pytest
import torch

import interp_audit as ia
from interp_audit.audit.measure import pair_effects

VOCAB = 100
N_LAYERS, N_HEADS, D_HEAD = 2, 4, 16
SIZE = dict(
    num_hidden_layers=N_LAYERS,
    num_attention_heads=N_HEADS,
    hidden_size=N_HEADS * D_HEAD,
    max_position_embeddings=64,
)
FAMILIES = {
    "gpt2": (
        dict(n_layer=N_LAYERS, n_head=N_HEADS, n_embd=N_HEADS * D_HEAD, n_positions=64),
        lambda m, layer: m.transformer.h[layer].attn.c_proj,
        lambda m: m.transformer.ln_f,
    ),
    "llama": (
        dict(**SIZE, num_key_value_heads=2, intermediate_size=128),
        lambda m, layer: m.model.layers[layer].self_attn.o_proj,
        lambda m: m.model.norm,
    ),
    "gpt_neox": (
        dict(**SIZE, intermediate_size=128, rotary_pct=0.5),
        lambda m, layer: m.gpt_neox.layers[layer].attention.dense,
        lambda m: m.gpt_neox.final_layer_norm,
    ),
}

#: mixed in one batch: a 2-token span vs 3 (insertion inside), an equal-length pair, a
#: deletion (empty clean span), a pair that differs in its last token
CLEAN = [[5, 6, 7, 8, 9, 10], [11, 12, 13, 14], [20, 21, 22, 23, 24], [30, 31, 32]]
CF = [[5, 40, 41, 42, 8, 9, 10], [11, 15, 13, 14], [20, 23, 24], [30, 31, 33, 34]]
ANSWERS = [[1, 2], [3, 4], [5, 6], [7, 8]]


def hand_alignment(a: list[int], b: list[int]) -> dict[int, int]:
    """b's position -> a's position: common prefix, common suffix, one to one if equal length."""
    if len(a) == len(b):
        return {p: p for p in range(len(b))}
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    s = 0
    while s < min(len(a), len(b)) - n and a[-1 - s] == b[-1 - s]:
        s += 1
    out = {p: p for p in range(n)}
    out.update({len(b) - k: len(a) - k for k in range(1, s + 1)})
    return out


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request, tmp_path_factory):
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    cfg = AutoConfig.for_model(request.param, vocab_size=VOCAB, **FAMILIES[request.param][0])
    hf = AutoModelForCausalLM.from_config(cfg).eval()
    folder = tmp_path_factory.mktemp(request.param)
    hf.save_pretrained(folder)
    return request.param, hf, ia.load_model(folder)


@pytest.fixture(scope="module")
def pairs():
    return ia.ContrastSet.from_tokens(CLEAN, CF, ANSWERS)


def _oproj(name, hf, layer):
    return FAMILIES[name][1](hf, layer)


@torch.no_grad()
def _hf_metric(hf, row, answers, pre_hooks=()) -> float:
    handles = [m.register_forward_pre_hook(fn) for m, fn in pre_hooks]
    try:
        logits = hf(torch.tensor([row])).logits[0, -1]
    finally:
        for h in handles:
            h.remove()
    return float(logits[answers[0]] - logits[answers[1]])


@torch.no_grad()
def _hf_z(name, hf, row) -> list[torch.Tensor]:
    """Each layer's heads' outputs (input of the attention output projection), one row."""
    seen = []
    handles = [
        _oproj(name, hf, layer).register_forward_pre_hook(
            lambda m, args: seen.append(args[0][0].clone())
        )
        for layer in range(N_LAYERS)
    ]
    hf(torch.tensor([row]))
    for h in handles:
        h.remove()
    return seen


def _replace_heads(src_z, heads, positions):
    """Pre-hook: heads ``heads`` at ``{base position: source position}`` take source values."""

    def fn(module, args):
        x = args[0].clone()
        for p, q in positions.items():
            for h in heads:
                x[0, p, h * D_HEAD : (h + 1) * D_HEAD] = src_z[q, h * D_HEAD : (h + 1) * D_HEAD]
        return (x,)

    return fn


def test_total_effects_equal_single_unpadded_forwards(family, pairs):
    name, hf, subject = family
    clean, cf = pair_effects(subject, pairs, ia.metrics.logit_diff)
    for i in range(len(CLEAN)):
        assert float(clean[i]) == pytest.approx(_hf_metric(hf, CLEAN[i], ANSWERS[i]), abs=1e-4)
        assert float(cf[i]) == pytest.approx(_hf_metric(hf, CF[i], ANSWERS[i]), abs=1e-4)


def test_left_and_right_padding_give_the_unpadded_logits(family):
    """Subject.run on a mixed-length batch, padded either side: rotary must not shift."""
    name, hf, subject = family
    rows = [CF[0], CLEAN[1], CF[2]]
    width = max(map(len, rows))
    for side in ("left", "right"):
        tokens = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros_like(tokens)
        for i, r in enumerate(rows):
            sl = slice(width - len(r), width) if side == "left" else slice(0, len(r))
            tokens[i, sl], mask[i, sl] = torch.tensor(r), 1
        got = subject.run(tokens, mask)
        for i, r in enumerate(rows):
            with torch.no_grad():
                ref = hf(torch.tensor([r])).logits[0]
            real = mask[i].bool()
            torch.testing.assert_close(got[i, real], ref, atol=1e-4, rtol=0, msg=side)
    # a left-padded contrast set gives the numbers of single unpadded forwards
    left = ia.ContrastSet.from_tokens(
        torch.tensor([[0, 0, *CLEAN[3]], [0, *CF[3]]]),
        torch.tensor([[0, *CF[3]], [0, 0, *CLEAN[3]]]),
        [ANSWERS[3]] * 2,
        clean_mask=torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 1, 1]]),
        counterfactual_mask=torch.tensor([[0, 1, 1, 1, 1], [0, 0, 1, 1, 1]]),
    )
    assert left.lengths.tolist() == [3, 4] and left.lengths_of("counterfactual").tolist() == [4, 3]
    clean, cf = pair_effects(subject, left, ia.metrics.logit_diff)
    short, long = (_hf_metric(hf, r, ANSWERS[3]) for r in (CLEAN[3], CF[3]))
    torch.testing.assert_close(clean, torch.tensor([short, long]), atol=1e-4, rtol=0)
    torch.testing.assert_close(cf, torch.tensor([long, short]), atol=1e-4, rtol=0)


def test_heads_patching_equals_a_hand_hooked_patch_at_aligned_positions(family, pairs):
    """denoise: run the counterfactual, clean head outputs at the aligned positions only."""
    name, hf, subject = family
    eff = ia.patch(subject, pairs, sites="heads", normalize=False)
    assert "differing span of 3 of 4 pairs" in eff.meta["not_patched"]
    for i in range(len(CLEAN)):
        src = _hf_z(name, hf, CLEAN[i])
        positions = hand_alignment(CLEAN[i], CF[i])
        for layer in range(N_LAYERS):
            for head in range(N_HEADS):
                hook = (_oproj(name, hf, layer), _replace_heads(src[layer], [head], positions))
                want = _hf_metric(hf, CF[i], ANSWERS[i], [hook])
                got = float(eff.per_example[layer, head, i])
                assert got == pytest.approx(want, abs=1e-4), (name, layer, head, i)


def test_noise_direction_patches_clean_with_aligned_counterfactual_values(family, pairs):
    name, hf, subject = family
    eff = ia.patch(subject, pairs, sites=["L1H2", "L0H1"], normalize=False, direction="noise")
    for i in range(len(CLEAN)):
        src = _hf_z(name, hf, CF[i])
        positions = hand_alignment(CF[i], CLEAN[i])  # clean position -> counterfactual one
        for k, (layer, head) in enumerate([(1, 2), (0, 1)]):
            hook = (_oproj(name, hf, layer), _replace_heads(src[layer], [head], positions))
            want = _hf_metric(hf, CLEAN[i], ANSWERS[i], [hook])
            assert float(eff.per_example[k, i]) == pytest.approx(want, abs=1e-4)


def test_per_position_results_are_indexed_by_slots(family, pairs):
    name, hf, subject = family
    eff = ia.patch(subject, pairs, sites="heads", per_position=True, normalize=False)
    # prefixes 1, 1, 1, 2 tokens; suffixes 3, 2, 2, 0; the span slot exists in pair 1 only
    assert eff.axes["pos"] == ["0", "1", "span", "-3", "-2", "-1"]
    assert eff.dims == ("layer", "pos", "head")
    for i in range(len(CLEAN)):
        src = _hf_z(name, hf, CLEAN[i])
        n_prefix = 2 if i == 3 else 1
        n_suffix = [3, 2, 2, 0][i]
        lc, lf = len(CLEAN[i]), len(CF[i])
        slots = {
            "0": {0: 0},
            "1": {1: 1} if n_prefix > 1 else None,
            "span": {1: 1} if i == 1 else None,  # equal lengths: one to one
            "-3": {lf - 3: lc - 3} if n_suffix >= 3 else None,
            "-2": {lf - 2: lc - 2} if n_suffix >= 2 else None,
            "-1": {lf - 1: lc - 1} if n_suffix >= 1 else None,
        }
        for layer in range(N_LAYERS):
            for k, (slot, positions) in enumerate(slots.items()):
                got = eff.per_example[layer, k, :, i]
                if positions is None:  # the pair lacks this slot: not patched, no number
                    assert bool(got.isnan().all()), (slot, i)
                    continue
                for head in (0, 3):
                    hook = (_oproj(name, hf, layer), _replace_heads(src[layer], [head], positions))
                    want = _hf_metric(hf, CF[i], ANSWERS[i], [hook])
                    assert float(got[head]) == pytest.approx(want, abs=1e-4), (slot, i, head)
    # a slot's value is the mean over the pairs that have it
    means = eff.per_example.nanmean(-1)
    torch.testing.assert_close(eff.values, means, atol=1e-6, rtol=0)
    # slot labels patch the same as the sweep's cells
    again = ia.patch(subject, pairs, sites=["L1H3@-1", "L0H0@span"], normalize=False)
    torch.testing.assert_close(again.per_example[0], eff.per_example[1, 5, 3], equal_nan=True)
    torch.testing.assert_close(again.per_example[1], eff.per_example[0, 2, 0], equal_nan=True)


def test_attribution_estimates_only_aligned_positions(family, pairs):
    """AtP: (source - base) . dM/dz at the base run, summed over aligned positions."""
    name, hf, subject = family
    eff = ia.attribute(subject, pairs, sites="heads", method="atp", normalize=False)
    est = eff.per_example - eff.base_values
    for i in range(len(CLEAN)):
        src = _hf_z(name, hf, CLEAN[i])
        positions = hand_alignment(CLEAN[i], CF[i])
        zs, handles = [], []
        for layer in range(N_LAYERS):

            def keep(module, args, zs=zs):  # in the graph: later layers' paths count too
                zs.append(args[0])

            handles.append(_oproj(name, hf, layer).register_forward_pre_hook(keep))
        try:
            logits = hf(torch.tensor([CF[i]])).logits[0, -1]
        finally:
            for h in handles:
                h.remove()
        grads = torch.autograd.grad(logits[ANSWERS[i][0]] - logits[ANSWERS[i][1]], zs)
        for layer in range(N_LAYERS):
            delta = torch.zeros_like(zs[layer][0])
            for p, q in positions.items():
                delta[p] = src[layer][q] - zs[layer][0, p].detach()
            per_head = (delta * grads[layer][0]).reshape(len(CF[i]), N_HEADS, D_HEAD).sum((0, 2))
            torch.testing.assert_close(est[layer, :, i], per_head, atol=1e-4, rtol=0)


def test_path_patching_to_logits_follows_the_alignment(family, pairs):
    """Sender at aligned source values, every other head frozen at its base value."""
    name, hf, subject = family
    eff = ia.patch_path(subject, pairs, senders=["L0H1", "L0H3"], normalize=False)
    for i in range(len(CLEAN)):
        src, base = _hf_z(name, hf, CLEAN[i]), _hf_z(name, hf, CF[i])
        positions = hand_alignment(CLEAN[i], CF[i])
        for k, head in enumerate((1, 3)):
            hooks = []
            for layer in range(N_LAYERS):

                def frozen(module, args, layer=layer, head=head, base=base, src=src, pos=positions):
                    x = base[layer][None].clone()
                    if layer == 0:
                        for p, q in pos.items():
                            sl = slice(head * D_HEAD, (head + 1) * D_HEAD)
                            x[0, p, sl] = src[0][q, sl]
                    return (x,)

                hooks.append((_oproj(name, hf, layer), frozen))
            want = _hf_metric(hf, CF[i], ANSWERS[i], hooks)
            assert float(eff.per_example[k, i]) == pytest.approx(want, abs=1e-4)


def test_edge_attribution_to_the_logits_follows_the_alignment(family, pairs):
    """EAP head->logits: (aligned source - base) head output . dM/d(final residual)."""
    name, hf, subject = family
    eff = ia.attribute_edges(subject, pairs)
    j = eff.axes["receiver"].index("logits")
    want = torch.zeros(N_LAYERS, N_HEADS, dtype=torch.float64)
    for i in range(len(CLEAN)):
        src, base = _hf_z(name, hf, CLEAN[i]), _hf_z(name, hf, CF[i])
        positions = hand_alignment(CLEAN[i], CF[i])
        seen = {}

        def keep(module, args, seen=seen):
            seen["x"] = args[0]

        handle = FAMILIES[name][2](hf).register_forward_pre_hook(keep)
        try:
            logits = hf(torch.tensor([CF[i]])).logits[0, -1]
        finally:
            handle.remove()
        (g,) = torch.autograd.grad(logits[ANSWERS[i][0]] - logits[ANSWERS[i][1]], [seen["x"]])
        for layer in range(N_LAYERS):
            w = _oproj(name, hf, layer).weight.detach()
            if name == "gpt2":  # Conv1D: [in, out]
                w = w.T
            for head in range(N_HEADS):
                sl = slice(head * D_HEAD, (head + 1) * D_HEAD)
                for p, q in positions.items():
                    d_out = (src[layer][q, sl] - base[layer][p, sl]) @ w[:, sl].T
                    want[layer, head] += float(d_out @ g[0, p]) / len(CLEAN)
    for layer in range(N_LAYERS):
        for head in range(N_HEADS):
            got = float(eff.values[eff.axes["sender"].index(f"L{layer}H{head}"), j])
            assert got == pytest.approx(float(want[layer, head]), abs=1e-4), (layer, head)


def test_trust_gate_rederives_aligned_patches_serially(family, pairs):
    from interp_audit.audit.gates import batched_vs_serial

    name, hf, subject = family
    for per_position in (False, True):
        eff = ia.patch(subject, pairs, sites="heads", per_position=per_position, normalize=False)
        gate = batched_vs_serial(
            subject, pairs, eff, ia.metrics.logit_diff, target="t", n_variants=6, n_pairs=4
        )
        assert gate.passed and gate.checked == 24, gate


def test_slot_patches_equal_absolute_ones_where_they_coincide(causal_subject):
    """On equal-length pairs differing at position 2 of 7: ``@span`` is position 2 and ``@-1``
    position 6 in every pair, so slot code paths must give the absolute-position numbers."""
    from helpers import random_pairs

    pairs = random_pairs(seed=3, batch=4)

    def run(method, sites):
        if method == "patch":
            return ia.patch(causal_subject, pairs, sites=sites, normalize=False)
        return ia.attribute(
            causal_subject, pairs, sites=sites, method=method, graddrop=False, normalize=False
        )

    labels = ["L1H0@{}", "L2H3.q@{}", "L1H1.k@{}", "L2.mlp@{}", "L0.resid_pre@{}"]
    for method in ("patch", "atp", "atp*"):
        for slot, absolute in (("span", 2), ("-1", 6)):
            a = run(method, [lab.format(slot) for lab in labels]).per_example
            b = run(method, [lab.format(absolute) for lab in labels]).per_example
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=f"{method} @{slot}")


def test_atp_slot_estimates_add_up_to_the_aligned_all_position_estimate(family, pairs):
    name, hf, subject = family
    whole = ia.attribute(subject, pairs, sites="heads", method="atp", normalize=False)
    slots = ia.attribute(
        subject, pairs, sites="heads", method="atp", per_position=True, normalize=False
    )
    est_slots = (slots.per_example - slots.base_values).nan_to_num(0.0).sum(1)
    torch.testing.assert_close(est_slots, whole.per_example - whole.base_values, atol=1e-5, rtol=0)


def test_interventions_refuse_slot_positions(causal_subject):
    with pytest.raises(ia.SiteError, match=r"'L0H1@span': @span names a slot"):
        with ia.ablate(causal_subject, ["L0H1@span"]):
            pass


def test_an_audit_runs_on_fillers_of_unequal_token_counts(tmp_path):
    """A spec whose swap fillers differ in token count: checks, located effects, trust gates
    (the token gate and the serial re-derivation of aligned patches) and the report."""
    spec = {
        "name": "unequal",
        "model": {"source": "zoo:handbuilt-copy"},
        "contrasts": {
            "swap": {
                "template": "{subject} {filler} ->",
                "slots": {"filler": ["x", "y"]},
                "swap": {"slot": "subject", "pairs": [["A", "B x"], ["A x", "B"]]},
                "answers": ["YES", "NO"],
            }
        },
        "locate": [
            {"method": "patch", "contrast": "swap", "sites": "heads", "name": "heads"},
            {
                "method": "patch",
                "contrast": "swap",
                "sites": "resid_pre",
                "per_position": True,
                "name": "slots",
            },
        ],
        "checks": [{"kind": "invariance", "contrast": "swap", "tolerance": 100, "min_clusters": 1}],
    }
    report = ia.audit(spec)
    gates = {(g["name"], g["target"]): g for g in report.provenance["trust_gates"]}
    assert gates[("tokens_vs_tokenizer", "swap")]["passed"]
    assert gates[("batched_vs_serial", "heads")]["passed"]
    assert gates[("batched_vs_serial", "slots")]["passed"]
    assert "differing span" in report.effects["heads"].meta["not_patched"]
    assert "span" in report.effects["slots"].axes["pos"]
    report.save(tmp_path / "out")
    assert (tmp_path / "out" / "report.json").exists()
