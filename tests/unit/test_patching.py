"""Differential tests: ia.patch vs transformer_lens.patching, a naive loop, analytic answers."""

import pytest
import torch
from transformer_lens import patching as tlp

import interp_audit as ia
from interp_audit.model.loading import build_model

from helpers import CAUSAL_CFG, ENCODER_CFG, random_pairs

TL_SWEEPS = [
    ("heads", False, tlp.get_act_patch_attn_head_out_all_pos),
    ("heads", True, tlp.get_act_patch_attn_head_out_by_pos),
    ("resid_pre", True, tlp.get_act_patch_resid_pre),
    ("resid_mid", True, tlp.get_act_patch_resid_mid),
    ("attn_out", True, tlp.get_act_patch_attn_out),
    ("mlp_out", True, tlp.get_act_patch_mlp_out),
    ("heads_q", False, tlp.get_act_patch_attn_head_q_all_pos),
    ("heads_k", False, tlp.get_act_patch_attn_head_k_all_pos),
    ("heads_v", False, tlp.get_act_patch_attn_head_v_all_pos),
    ("heads_q", True, tlp.get_act_patch_attn_head_q_by_pos),
    ("heads_k", True, tlp.get_act_patch_attn_head_k_by_pos),
    ("heads_v", True, tlp.get_act_patch_attn_head_v_by_pos),
    ("pattern", False, tlp.get_act_patch_attn_head_pattern_all_pos),
    ("pattern", True, tlp.get_act_patch_attn_head_pattern_by_pos),
]


def _tl_reference(subject, pairs, fn, metric, kind="causal", direction="denoise"):
    base, src = (
        (pairs.counterfactual, pairs.clean)
        if direction == "denoise"
        else (pairs.clean, pairs.counterfactual)
    )
    clean_logits, cache = subject.model.run_with_cache(src)
    clean_logits = subject.model(pairs.clean)

    def tl_metric(logits):
        return metric.from_logits(logits, pairs, clean_logits=clean_logits, kind=kind).mean()

    return fn(subject.model, base, cache, tl_metric)


@pytest.fixture(scope="module", params=[False, True], ids=["raw", "fold_ln"])
def lm(request):
    return ia.load_model(
        build_model(CAUSAL_CFG, seed=3), fold_ln=request.param, center_writing_weights=request.param
    )


@pytest.mark.parametrize(
    "site, per_position, fn",
    TL_SWEEPS,
    ids=[f"{s}-{'pos' if p else 'all'}" for s, p, _ in TL_SWEEPS],
)
def test_matches_transformer_lens_causal(lm, site, per_position, fn):
    pairs = random_pairs(seed=4)
    ref = _tl_reference(lm, pairs, fn, ia.metrics.logit_diff)
    eff = ia.patch(
        lm, pairs, ia.metrics.logit_diff, sites=site, per_position=per_position, normalize=False
    )
    assert tuple(eff.values.shape) == tuple(ref.shape)
    torch.testing.assert_close(eff.values, ref, atol=1e-5, rtol=0)
    plain = ia.metrics.logit_diff.from_logits(lm.run(pairs.counterfactual), pairs).mean()
    assert eff.baseline["counterfactual"] == pytest.approx(float(plain), abs=1e-5)


@pytest.mark.parametrize(
    "site, per_position, fn",
    TL_SWEEPS[:6] + TL_SWEEPS[12:],
    ids=[f"{s}-{'pos' if p else 'all'}" for s, p, _ in TL_SWEEPS[:6] + TL_SWEEPS[12:]],
)
def test_matches_transformer_lens_encoder(site, per_position, fn):
    if site == "resid_mid":
        pytest.skip(
            "HookedEncoder (post-LN BERT block) has hook_resid_mid only between attn and MLP LNs"
        )
    enc = ia.load_model(build_model(ENCODER_CFG, kind="encoder", seed=5))
    p = random_pairs(seed=6)
    pairs = ia.ContrastSet.from_tokens(
        p.clean, p.counterfactual, p.answers, answer_pos=[3] * len(p)
    )
    ref = _tl_reference(enc, pairs, fn, ia.metrics.logit_diff, kind="encoder")
    eff = ia.patch(
        enc, pairs, ia.metrics.logit_diff, sites=site, per_position=per_position, normalize=False
    )
    torch.testing.assert_close(eff.values, ref, atol=1e-5, rtol=0)
    # the baselines (what normalisation divides by) are the plain forward's metric
    for name, tokens in (("clean", pairs.clean), ("counterfactual", pairs.counterfactual)):
        plain = ia.metrics.logit_diff.from_logits(enc.run(tokens), pairs, kind="encoder").mean()
        assert eff.baseline[name] == pytest.approx(float(plain), abs=1e-5)


@pytest.mark.parametrize("metric", ["prob_diff", "logprob", "kl_to_clean"])
def test_matches_transformer_lens_other_metrics_and_noise_direction(lm, metric):
    pairs = random_pairs(seed=7)
    m = ia.metrics.get_metric(metric)
    ref = _tl_reference(lm, pairs, tlp.get_act_patch_resid_pre, m, direction="noise")
    eff = ia.patch(
        lm, pairs, m, sites="resid_pre", per_position=True, normalize=False, direction="noise"
    )
    torch.testing.assert_close(eff.values, ref, atol=1e-5, rtol=0)


def test_ragged_prompts_match_transformer_lens(lm):
    pairs = ia.ContrastSet.from_tokens(
        [[5, 6, 7, 8, 9], [5, 9, 7, 8, 0], [5, 6, 7, 0, 0]],
        [[5, 16, 7, 8, 9], [5, 19, 7, 8, 0], [5, 16, 7, 0, 0]],
        answers=[[1, 2], [3, 4], [5, 6]],
        lengths=[5, 4, 3],
    )
    ref = _tl_reference(lm, pairs, tlp.get_act_patch_attn_head_out_all_pos, ia.metrics.logit_diff)
    eff = ia.patch(lm, pairs, sites="heads", normalize=False)
    torch.testing.assert_close(eff.values, ref, atol=1e-5, rtol=0)
    with pytest.raises(
        ia.ContrastError,
        match=r"per-position patching needs prompts of one length; "
        r"this set has lengths \[3, 4, 5\]",
    ):
        ia.patch(lm, pairs, sites="resid_pre", per_position=True)


def test_batch_knob_does_not_change_numbers(lm):
    pairs = random_pairs(seed=8, batch=6)
    full = ia.patch(lm, pairs, sites="heads", per_position=True)
    tiny = ia.patch(lm, pairs, sites="heads", per_position=True, batch_size=4)
    torch.testing.assert_close(full.values, tiny.values, atol=1e-5, rtol=0)
    torch.testing.assert_close(full.per_example, tiny.per_example, atol=1e-5, rtol=0)


def test_matches_naive_loop_for_component_lists(lm):
    pairs = random_pairs(seed=9)
    labels = [
        "L0H1",
        "L2H3",
        "L1.mlp",
        "L1.attn",
        "L2.resid_pre@4",
        "L0H2.v@2",
        "L1N7",
        "L1H0.pattern@6",
    ]
    eff = ia.patch(lm, pairs, sites=labels, normalize=False)
    model = lm.model
    _, clean_cache = model.run_with_cache(pairs.clean)
    for label in labels:
        comp = ia.parse_component(label)

        def hook(act, *, hook, comp=comp):
            act = act.clone()
            act[comp.index()] = clean_cache[comp.hook_name][comp.index()]
            return act

        with lm.hooks([(comp.hook_name, hook)]):
            logits = model(pairs.counterfactual)
        naive = ia.metrics.logit_diff.from_logits(logits, pairs).mean()
        assert eff[label] == pytest.approx(float(naive), abs=1e-5), label


def test_normalised_is_zero_unpatched_one_restored(lm):
    pairs = random_pairs(seed=10)
    eff = ia.patch(
        lm, pairs, sites="resid_pre"
    )  # all positions of resid_pre at layer 0 = the clean input
    assert float(eff.values[0]) == pytest.approx(1.0, abs=1e-5)
    base = eff.baseline
    assert base["clean"] != base["counterfactual"]
    raw = ia.patch(lm, pairs, sites="resid_pre", normalize=False)
    expected = (raw.values - base["counterfactual"]) / (base["clean"] - base["counterfactual"])
    torch.testing.assert_close(eff.values, expected, atol=1e-6, rtol=0)


# ---- the hand-built model: analytic answers --------------------------------------------------


def test_handbuilt_heads_analytic(handbuilt, handbuilt_pairs):
    eff = ia.patch(handbuilt, handbuilt_pairs, sites="heads")
    torch.testing.assert_close(
        eff.values, torch.tensor([[1.0, 0.0], [0.75, 0.0]]), atol=1e-6, rtol=0
    )
    assert eff.baseline == {"clean": 4.0, "counterfactual": -4.0}
    assert [c for c, _ in eff.top(2)] == ["L0H0", "L1H0"]


def test_handbuilt_resid_by_position_analytic(handbuilt, handbuilt_pairs):
    eff = ia.patch(handbuilt, handbuilt_pairs, sites="resid_pre", per_position=True)
    expected = torch.zeros(2, 4)
    expected[0, 1] = 1.0  # the subject token itself
    expected[1, 3] = 1.0  # after L0H0 moved it to the last position
    torch.testing.assert_close(eff.values, expected, atol=1e-6, rtol=0)
    noise = ia.patch(handbuilt, handbuilt_pairs, sites="heads", direction="noise")
    torch.testing.assert_close(
        noise.values, torch.tensor([[1.0, 0.0], [0.75, 0.0]]), atol=1e-6, rtol=0
    )


@pytest.mark.parametrize(
    "receivers, expected",
    [
        ("logits", [0.25, 0.0, 0.75, 0.0]),
        (["L1H0.v"], [0.75, 0, 0, 0]),
        (["L1H0.q"], [0, 0, 0, 0]),
        (["L1H0.k"], [0, 0, 0, 0]),
        (["L1H0"], [0.75, 0, 0, 0]),
        (["L1H1"], [0, 0, 0, 0]),
    ],
)
def test_handbuilt_path_patching_analytic(handbuilt, handbuilt_pairs, receivers, expected):
    eff = ia.patch_path(handbuilt, handbuilt_pairs, senders="heads", receivers=receivers)
    torch.testing.assert_close(
        eff.values.flatten(), torch.tensor(expected, dtype=torch.float32), atol=1e-6, rtol=0
    )


def test_path_patching_on_random_model_matches_manual_two_step(lm):
    """Sender L0H1 -> receiver L2H0.v with all other heads frozen, recomputed by hand."""
    pairs = random_pairs(seed=11)
    model = lm.model
    _, clean = model.run_with_cache(pairs.clean)
    _, base = model.run_with_cache(pairs.counterfactual)
    frozen = [f"blocks.{layer}.attn.hook_z" for layer in range(3)]
    recorded = {}

    def freeze(act, *, hook):
        out = base[hook.name].clone()
        if hook.name == "blocks.0.attn.hook_z":
            out[:, :, 1] = clean[hook.name][:, :, 1]
        return out

    def record(act, *, hook):
        recorded["v"] = act.clone()

    with lm.hooks([(h, freeze) for h in frozen] + [("blocks.2.attn.hook_v", record)]):
        model(pairs.counterfactual)

    def put(act, *, hook):
        act = act.clone()
        act[:, :, 0] = recorded["v"][:, :, 0]
        return act

    with lm.hooks([("blocks.2.attn.hook_v", put)]):
        logits = model(pairs.counterfactual)
    manual = float(ia.metrics.logit_diff.from_logits(logits, pairs).mean())
    eff = ia.patch_path(lm, pairs, senders=["L0H1"], receivers=["L2H0.v"], normalize=False)
    assert eff.values.item() == pytest.approx(manual, abs=1e-5)


def test_bad_sites_are_named(lm):
    pairs = random_pairs()
    with pytest.raises(ia.SiteError, match=r"unknown sites 'head'.*did you mean 'heads'"):
        ia.patch(lm, pairs, sites="head")
    with pytest.raises(ia.SiteError, match="position 9 is past the prompts' 7 positions"):
        ia.patch(lm, pairs, sites=["L0.resid_pre@9"])
    with pytest.raises(ia.AuditError, match="direction must be 'denoise'"):
        ia.patch(lm, pairs, direction="forward")


def test_normalising_a_flat_behaviour_is_refused(lm):
    pairs = ia.ContrastSet.from_tokens(
        [[5, 6, 7]], [[5, 6, 8]], answers=[[1, 2]]
    )  # last token differs...
    same = ia.ContrastSet.from_tokens(
        [[5, 6, 7]], [[5, 6, 8]], answers=[[1, 2]], answer_pos=[1]
    )  # ...but scored before it
    ia.patch(lm, pairs, sites="heads")
    with pytest.raises(ia.AuditError, match="the metric is .* on both runs"):
        ia.patch(lm, same, sites="heads")


def test_hooked_sae_transformer_is_a_subject_too():
    """sae_lens's HookedSAETransformer (a HookedTransformer subclass) takes the same fast path."""
    from sae_lens import HookedSAETransformer
    from transformer_lens import HookedTransformerConfig

    model = HookedSAETransformer(HookedTransformerConfig(**{**CAUSAL_CFG, "seed": 3}))
    subject = ia.load_model(model)
    pairs = random_pairs(seed=12)
    ref = _tl_reference(
        subject, pairs, tlp.get_act_patch_attn_head_out_all_pos, ia.metrics.logit_diff
    )
    eff = ia.patch(subject, pairs, sites="heads", normalize=False)
    torch.testing.assert_close(eff.values, ref, atol=1e-5, rtol=0)
