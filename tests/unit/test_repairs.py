"""Repairs folded into weights (``ia.repaired``) against the hooked ablation they replace.

Reference: ``ia.ablate`` (hooks) on the unrepaired model, with ``per_position=False`` for mean
ablation (the token mean a fold carries), to 1e-5 in float32; every family the adapters
support (TL configs, the hand-built and readmission zoo models, BERT, every Hugging Face
family). Erasure: the folded model against the hooked map at the residual stream.
"""

from __future__ import annotations

import pytest
import torch

import interp_audit as ia
from interp_audit.engine.repairs import FoldRefused, repaired
from interp_audit.model.hashing import state_sha256
from interp_audit.model.loading import build_model

from helpers import build_cfg, random_pairs

TOL = 1e-5


def _hooked(subject, comps, kind, reference, tokens):
    if kind == "erase":
        ctx = ia.ablate(subject, comps, kind="erase", reference=reference)
    else:
        ctx = ia.ablate(subject, comps, kind=kind, reference=reference, per_position=False)
    with ctx:
        return subject.run(tokens)


def _check(subject, comps, kind, reference, tokens):
    """The repaired model equals the hooked run; the ablation changes the logits (the test
    can fail); the original is untouched."""
    before = state_sha256(subject.model)
    plain = subject.run(tokens)
    fixed = repaired(subject, comps, kind=kind, reference=reference)
    ref = _hooked(subject, comps, kind, reference, tokens)
    got = fixed.run(tokens)
    assert (ref - plain).abs().max() > 1e-3, (comps, kind)  # the repair does something
    torch.testing.assert_close(got, ref, atol=TOL, rtol=0)
    assert state_sha256(subject.model) == before
    torch.testing.assert_close(subject.run(tokens), plain, atol=0, rtol=0)
    assert subject.live_hooks() == [] and fixed.live_hooks() == []
    return fixed


CASES = [
    ("zero", ["L1H2", "L0N5", "L2H0"]),
    ("mean", ["L1H2", "L0N5", "L2H0"]),
    ("zero", ["L1H1.v", "L0H2.k", "L2H3.q"]),
    ("mean", ["L1H1.v", "L0H2.k", "L2H3.q"]),
    ("zero", ["L1.attn", "L0.mlp", "L1H0"]),
    ("mean", ["L1.attn", "L0.mlp", "L1H0"]),
    ("erase", ["L0.resid_pre"]),
    ("erase", ["L2.resid_pre"]),
    ("erase", ["L2.resid_post"]),
    ("erase", ["L1.resid_pre@2", "L1.resid_pre@4"]),  # fitted at two positions, applied at all
]


@pytest.mark.parametrize("kind, comps", CASES)
def test_fold_equals_hooked_ablation(causal_subject, kind, comps):
    pairs = random_pairs(seed=3)
    _check(causal_subject, comps, kind, pairs, pairs.clean)


@pytest.mark.parametrize(
    "cfg",
    [
        build_cfg(
            n_key_value_heads=2,
            positional_embedding_type="rotary",
            normalization_type="RMS",
            gated_mlp=True,
            act_fn="silu",
        ),
        build_cfg(parallel_attn_mlp=True, positional_embedding_type="rotary"),
        build_cfg(attn_only=True, d_mlp=None, normalization_type=None),
    ],
    ids=["gqa-rotary-rms-gated", "parallel", "attn-only"],
)
def test_fold_equals_hooked_on_other_configs(cfg):
    subject = ia.load_model(build_model(cfg, seed=4))
    pairs = random_pairs(seed=5)
    mlp = [] if cfg.get("attn_only") else ["L1N7"]
    for kind in ("zero", "mean"):
        _check(subject, ["L0H3", "L2H1", "L1H1.v", *mlp], kind, pairs, pairs.clean)
    _check(subject, ["L2.resid_pre"], "erase", pairs, pairs.clean)


def test_fold_on_handbuilt_is_the_analytic_answer(handbuilt, handbuilt_pairs):
    """zoo:handbuilt-copy: L0H0 copies the subject token, L1H0 reads it; with L1H0 folded to
    zero only the direct path is left (YES logit 1), as the hooked ablation gives."""
    tokens = handbuilt_pairs.clean
    fixed = _check(handbuilt, ["L1H0"], "zero", None, tokens)
    assert fixed.run(tokens)[:, -1, 8].tolist() == [1.0, 1.0, 1.0]
    _check(handbuilt, ["L1H0", "L0H0"], "mean", handbuilt_pairs, tokens)


def test_fold_on_readmission(readmission_subject):
    from circuits.readmission.scm import contrast

    pairs = contrast(readmission_subject, "total", n=64, seed=11)
    for kind in ("zero", "mean"):
        _check(readmission_subject, ["L0H1", "L1H3", "L0N17", "L1N3"], kind, pairs, pairs.clean)
    _check(readmission_subject, ["L1.resid_pre"], "erase", pairs, pairs.clean)


def test_fold_on_bert_encoder(encoder_subject):
    pairs = random_pairs(seed=6)
    mask = torch.ones_like(pairs.clean)
    for kind in ("zero", "mean"):
        for comps in (["L0H1", "L1N9"], ["L1.attn", "L0.mlp"], ["L0H2.v", "L1H0.k"]):
            fixed = repaired(encoder_subject, comps, kind=kind, reference=pairs)
            ref = _hooked(encoder_subject, comps, kind, pairs, pairs.clean)
            got = fixed.run(pairs.clean, mask)
            torch.testing.assert_close(got, ref, atol=TOL, rtol=0)
            assert (ref - encoder_subject.run(pairs.clean, mask)).abs().max() > 1e-3
    with pytest.raises(FoldRefused, match=r"'L1.resid_pre'.*post-LN"):
        repaired(encoder_subject, ["L1.resid_pre"], kind="erase", reference=pairs)


@pytest.mark.parametrize(
    "comps, kind, kw, match",
    [
        (["L0H1", "L0H0.v@1"], "mean", {}, r"'L0H0.v@1'.*restricted to position 1"),
        (["L0H1"], "mean", {"per_position": True}, r"'L0H1'.*per-position mean"),
        (["L0H1"], "mean", {"per_position": "auto"}, r"per-position mean"),
        (["L0H1"], "resample", {}, r"'L0H1'.*resample ablation"),
        (["L0F12"], "zero", {}, r"'L0F12'.*nonlinear encoder"),
        (["L1.resid_pre"], "zero", {}, r"'L1.resid_pre'.*residual-stream ablation"),
        (["L0H1.pattern"], "zero", {}, r"'L0H1.pattern'.*attention pattern"),
        (
            ["L1.resid_pre@3"],
            "erase",
            {"erase_at": "positions"},
            r"'L1.resid_pre@3'.*position 3 only",
        ),
    ],
)
def test_unfoldable_repairs_are_refused_by_name(causal_subject, comps, kind, kw, match):
    pairs = random_pairs(seed=3)
    with pytest.raises(FoldRefused, match=match) as err:
        repaired(causal_subject, comps, kind=kind, reference=pairs, **kw)
    assert isinstance(err.value, ia.AuditError)


def test_repair_record(causal_subject):
    pairs = random_pairs(seed=3)
    source = state_sha256(causal_subject.model)
    fixed = repaired(causal_subject, ["L1H2", "L0N5"], kind="mean", reference=pairs)
    rec = fixed.repair
    assert rec["source"]["state_sha256"] == source
    assert rec["weights_sha256"] == state_sha256(fixed.model) != source
    assert rec["repair"]["components"] == ["L1H2", "L0N5"] and rec["repair"]["kind"] == "mean"
    assert rec["repair"]["reference"]["pairs"] == len(pairs)
    other = random_pairs(seed=4)
    again = repaired(causal_subject, ["L1H2", "L0N5"], kind="mean", reference=other)
    assert again.repair["repair"]["reference"]["sha256"] != rec["repair"]["reference"]["sha256"]
    # only tensors whose values moved: the slices zeroed and the biases that took the means
    assert sorted(rec["changed_parameters"]) == [
        "blocks.0.mlp.W_out",
        "blocks.0.mlp.b_out",
        "blocks.1.attn.W_O",
        "blocks.1.attn.b_O",
    ]
    assert fixed.describe()["repair"]["components"] == ["L1H2", "L0N5"]


def test_repaired_model_round_trips_through_save(readmission_subject, tmp_path):
    from circuits.readmission.scm import contrast

    pairs = contrast(readmission_subject, "total", n=32, seed=11)
    fixed = repaired(readmission_subject, ["L0H1", "L1N3"], kind="mean", reference=pairs)
    back = ia.load_model(fixed.save(tmp_path / "model"))
    assert back.repair == fixed.repair
    assert state_sha256(back.model) == fixed.repair["weights_sha256"]
    assert back.source == str(tmp_path / "model")  # not the zoo name: these are other weights
    torch.testing.assert_close(back.run(pairs.clean), fixed.run(pairs.clean), atol=0, rtol=0)
    # a second repair keeps the first one in its record
    twice = repaired(back, ["L0H2"], kind="zero")
    assert twice.repair["source"]["prior_repair"]["repair"]["components"] == ["L0H1", "L1N3"]
