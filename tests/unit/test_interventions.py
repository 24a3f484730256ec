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
    for row in got[0]:
        assert any(torch.allclose(row, r) for r in ref_acts)
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
    with pytest.raises(ia.AuditError, match="ablation kind must be 'zero', 'mean' or 'resample'"):
        with ia.ablate(causal_subject, ["L0H0"], kind="median"):
            pass
    with pytest.raises(ia.AuditError, match="mean ablation needs reference="):
        with ia.ablate(causal_subject, ["L0H0"], kind="mean"):
            pass
    with pytest.raises(ia.SiteError, match="layer 9 does not exist"):
        with ia.ablate(causal_subject, ["L9H0"]):
            pass
    assert causal_subject.live_hooks() == []
