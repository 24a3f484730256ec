"""Ablation and patch-in contexts against values computed by hand."""

import pytest
import torch

import interp_audit as ia

from helpers import random_pairs


def _z(subject, tokens):
    _, cache = subject.model.run_with_cache(tokens)
    return cache


def test_zero_ablation_of_a_head_on_handbuilt(handbuilt, handbuilt_pairs):
    tokens = handbuilt_pairs.clean
    with ia.ablate(handbuilt, ["L1H0"], kind="zero"):
        logits = handbuilt.run(tokens)
    # only the direct c path is left: YES = 1, NO = 0
    assert logits[:, -1, 8].tolist() == [1.0, 1.0, 1.0]
    with ia.ablate(handbuilt, ["L0H0"], kind="zero"):
        assert handbuilt.run(tokens)[:, -1, 8].abs().max() == 0
    assert handbuilt.run(tokens)[:, -1, 8].tolist() == [4.0, 4.0, 4.0]


def test_mean_ablation_uses_per_position_reference_mean(causal_subject):
    pairs = random_pairs(seed=3)
    ref = torch.cat([pairs.clean, pairs.counterfactual])
    cache = _z(causal_subject, ref)
    mean = cache["blocks.1.attn.hook_z"][:, :, 2].mean(0)
    seen = {}

    def spy(act, *, hook):
        seen["z"] = act.clone()

    with (
        ia.ablate(causal_subject, ["L1H2"], kind="mean", reference=pairs),
        causal_subject.hooks([("blocks.1.attn.hook_z", spy)]),
    ):
        causal_subject.run(pairs.clean)
    torch.testing.assert_close(
        seen["z"][:, :, 2], mean.expand_as(seen["z"][:, :, 2]), atol=1e-6, rtol=0
    )
    clean_z = _z(causal_subject, pairs.clean)["blocks.1.attn.hook_z"]
    torch.testing.assert_close(seen["z"][:, :, 0], clean_z[:, :, 0], atol=1e-6, rtol=0)


def test_mean_ablation_per_position_false_uses_the_token_mean(causal_subject):
    """per_position=False: the mean over every real reference token (padding excluded), the
    same vector at every position, even when the input has the reference's length."""
    clean = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 0]])
    cf = torch.tensor([[5, 6, 12, 8], [9, 10, 13, 0]])
    pairs = ia.ContrastSet.from_tokens(clean, cf, lengths=torch.tensor([4, 3]))
    z = _z(causal_subject, torch.cat([clean, cf]))["blocks.1.attn.hook_z"][:, :, 2]
    real = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]] * 2, dtype=torch.bool)
    token_mean = z[real].mean(0)  # naive: every real token of both sides
    seen = {}

    def spy(act, *, hook):
        seen["z"] = act.clone()

    for per_position in (False, "auto"):  # ragged reference: "auto" falls back to the same
        with (
            ia.ablate(
                causal_subject, ["L1H2"], kind="mean", reference=pairs, per_position=per_position
            ),
            causal_subject.hooks([("blocks.1.attn.hook_z", spy)]),
        ):
            causal_subject.run(clean)
        torch.testing.assert_close(
            seen["z"][:, :, 2], token_mean.expand(2, 4, -1), atol=1e-6, rtol=0
        )
    equal = random_pairs(seed=3)
    ref_z = _z(causal_subject, torch.cat([equal.clean, equal.counterfactual]))
    flat = ref_z["blocks.1.attn.hook_z"][:, :, 2].reshape(-1, 8).mean(0)
    with (
        ia.ablate(causal_subject, ["L1H2"], kind="mean", reference=equal, per_position=False),
        causal_subject.hooks([("blocks.1.attn.hook_z", spy)]),
    ):
        causal_subject.run(equal.clean)
    torch.testing.assert_close(seen["z"][:, :, 2], flat.expand(5, 7, -1), atol=1e-6, rtol=0)
    with pytest.raises(ia.ContrastError, match="reference prompts of one length"):
        with ia.ablate(causal_subject, ["L1H2"], kind="mean", reference=pairs, per_position=True):
            pass
    with pytest.raises(ia.ContrastError, match="run inputs as long as the reference"):
        with ia.ablate(causal_subject, ["L1H2"], kind="mean", reference=equal, per_position=True):
            causal_subject.run(equal.clean[:, :4])
    assert causal_subject.live_hooks() == []


def test_resample_ablation_draws_reference_rows_with_seed(causal_subject):
    pairs = random_pairs(seed=5)
    ref_acts = _z(causal_subject, torch.cat([pairs.clean, pairs.counterfactual]))[
        "blocks.0.hook_mlp_out"
    ]
    got = []

    def spy(act, *, hook):
        got.append(act.clone())

    for _ in range(2):
        with (
            ia.ablate(causal_subject, ["L0.mlp"], kind="resample", reference=pairs, seed=7),
            causal_subject.hooks([("blocks.0.hook_mlp_out", spy)]),
        ):
            causal_subject.run(pairs.clean)
    assert torch.equal(got[0], got[1])  # seeded
    with (
        ia.ablate(causal_subject, ["L0.mlp"], kind="resample", reference=pairs, seed=7),
        causal_subject.hooks([("blocks.0.hook_mlp_out", spy)]),
    ):
        causal_subject.run(pairs.clean)
        causal_subject.run(pairs.counterfactual)  # the other side of each pair: same rows
    assert torch.equal(got[2], got[3]) and torch.equal(got[2], got[0])
    for row in got[0]:  # to float32 rounding: the engine's lean blocks vs TransformerLens's
        assert any(torch.allclose(row, r, atol=1e-5) for r in ref_acts)
    with pytest.raises(
        ia.ContrastError, match="resampling needs inputs as long as the reference prompts"
    ):
        with ia.ablate(causal_subject, ["L0.mlp"], kind="resample", reference=pairs):
            causal_subject.run(pairs.clean[:, :4])
    assert causal_subject.live_hooks() == []


def test_patch_in_equals_patching_result(causal_subject):
    pairs = random_pairs(seed=6)
    eff = ia.patch(causal_subject, pairs, sites=["L1H3", "L2.mlp@6"], normalize=False)
    for label in ["L1H3", "L2.mlp@6"]:
        with ia.patch_in(causal_subject, [label], source=pairs, which="clean"):
            logits = causal_subject.run(pairs.counterfactual)
        assert float(ia.metrics.logit_diff.from_logits(logits, pairs).mean()) == pytest.approx(
            eff[label], abs=1e-5
        )
    with pytest.raises(
        ia.ContrastError, match=r"run inputs with the source's batch size and length"
    ):
        with ia.patch_in(causal_subject, ["L1H3"], source=pairs):
            causal_subject.run(pairs.counterfactual[:2])


def test_ablation_errors(causal_subject, pairs):
    with pytest.raises(ia.AuditError, match="ablation kind must be 'zero', 'mean', 'resample'"):
        with ia.ablate(causal_subject, ["L0H0"], kind="median"):
            pass
    with pytest.raises(ia.AuditError, match="mean ablation needs reference="):
        with ia.ablate(causal_subject, ["L0H0"], kind="mean"):
            pass
    with pytest.raises(ia.SiteError, match="layer 9 does not exist"):
        with ia.ablate(causal_subject, ["L9H0"]):
            pass
    assert causal_subject.live_hooks() == []
