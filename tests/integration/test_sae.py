"""SAE features: exact splice, feature patching vs a naive loop, attribution completeness,
feature ablation vs component ablation on the readmission model, errors, reproducible training."""

import pytest
import torch

import interp_audit as ia
from circuits.readmission.experiment import Variant, evaluate
from interp_audit import sae as S
from interp_audit.engine import cached_run
from interp_audit.zoo import readmission as R

pytestmark = pytest.mark.integration
HOOK = "blocks.0.hook_attn_out"


@pytest.fixture(scope="module")
def subject(readmission_subject):
    return readmission_subject


@pytest.fixture(scope="module")
def sae(subject):
    return S.load_sae("zoo:readmission-attn0", subject)


@pytest.fixture(scope="module")
def direct(subject):
    return R.contrast(subject, "direct", n=120)


def test_splice_with_error_reproduces_the_forward(subject, sae, direct):
    ref = subject.run(direct.clean)

    def splice(x, *, hook):
        f = sae.encode(x)
        return sae.decode(f) + (x - sae.decode(f))

    with subject.hooks([(HOOK, splice)]):
        out = subject.run(direct.clean)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    with S.ablate_features(subject, sae, [], kind="zero"):  # touching no feature changes nothing
        torch.testing.assert_close(subject.run(direct.clean), ref, atol=1e-5, rtol=0)


def test_feature_patching_matches_a_naive_loop(subject, sae, direct):
    eff = S.patch_features(subject, direct, "logit_diff", sae, normalize=False)
    x_clean = cached_run(subject, direct.clean, direct.attention_mask(), {HOOK})[0][HOOK]
    x_cf = cached_run(subject, direct.counterfactual, direct.attention_mask(), {HOOK})[0][HOOK]
    f_clean, f_cf = sae.encode(x_clean), sae.encode(x_cf)
    err_cf = x_cf - sae.decode(f_cf)
    for label, _ in eff.top(5) + [("L0F3", 0.0)]:
        if label.endswith("err"):
            value = sae.decode(f_cf) + (x_clean - sae.decode(f_clean))
        else:
            i = int(label.split("F")[1])
            f = f_cf.clone()
            f[..., i] = f_clean[..., i]
            value = sae.decode(f) + err_cf
        with subject.hooks([(HOOK, lambda x, *, hook, value=value: value)]):
            naive = float(
                ia.metrics.logit_diff.from_logits(subject.run(direct.counterfactual), direct).mean()
            )
        assert eff[label] == pytest.approx(naive, abs=1e-5), label


def test_features_and_error_account_for_the_whole_activation(subject, sae, direct):
    """AtP is linear: the features' and the error's estimates add up to patching the activation."""
    feats = S.attribute_features(subject, direct, "logit_diff", sae, normalize=False)
    whole = ia.attribute(subject, direct, "logit_diff", sites=[HOOK], normalize=False)
    base = feats.baseline["counterfactual"]
    assert float((feats.values - base).sum()) == pytest.approx(
        float(whole.values[0]) - base, abs=1e-4
    )
    exact = S.patch_features(subject, direct, "logit_diff", sae)
    assert (
        ia.compare(exact, S.attribute_features(subject, direct, "logit_diff", sae)).spearman > 0.9
    )


def test_feature_ablation_beats_component_ablation_per_unit_of_utility(subject, sae):
    reference = torch.tensor(
        [subject.to_tokens(p) for p in R.factual_words(R.sample_units(1000, 31337))]
    )
    located = set()
    for path in ("direct", "proxy"):
        eff = S.patch_features(subject, R.contrast(subject, path, n=200), "logit_diff", sae)
        located |= {c for c, _ in eff.top(21) if not c.endswith("err")}
    base = evaluate(Variant("original", "A", subject))
    with S.ablate_features(subject, sae, sorted(located), kind="mean", reference=reference):
        feat = evaluate(Variant("features", "A", subject))
    with ia.ablate(subject, ["L0.attn"], kind="mean", reference=reference):
        comp = evaluate(Variant("component", "A", subject))

    def per_utility(row):
        removed = (base["A.direct"] - row["A.direct"]) + (base["A.proxy"] - row["A.proxy"])
        return removed / max(base["acc_observed"] - row["acc_observed"], 1e-3)

    assert (
        feat["A.direct"] < 0.7 * base["A.direct"]
    )  # the features remove a real part of the path...
    assert per_utility(feat) > 3 * per_utility(comp)  # ...at a far better rate than the component


def test_sae_errors(subject, sae):
    with pytest.raises(
        ia.SiteError, match="feature 999 does not exist; this SAE has features 0..255"
    ):
        with S.ablate_features(subject, sae, [999]):
            pass
    wrong = S.load_sae("zoo:readmission-attn0")
    wrong.cfg.metadata.hook_name = "blocks.0.hook_attn_outt"
    with pytest.raises(ia.SiteError, match="did you mean 'blocks.0.hook_attn_out'"):
        S.check_sae(subject, wrong)
    mlp = S.load_sae("zoo:readmission-attn0")
    mlp.cfg.metadata.hook_name = "blocks.0.mlp.hook_post"
    with pytest.raises(ia.SiteError, match="has d_in=64, but that activation has width 128"):
        S.check_sae(subject, mlp)
    with pytest.raises(ia.ModelLoadError, match="no zoo SAE 'nope'; available: readmission-attn0"):
        S.load_sae("zoo:nope")
    assert subject.live_hooks() == []


def test_training_is_reproducible(subject):
    tokens = torch.tensor([subject.to_tokens(p) for p in R.factual_words(R.sample_units(2000, 1))])
    a = S.train_sae(
        subject, "blocks.1.hook_resid_pre", tokens, d_sae=32, training_tokens=12_000, seed=3
    )
    b = S.train_sae(
        subject, "blocks.1.hook_resid_pre", tokens, d_sae=32, training_tokens=12_000, seed=3
    )
    assert S.hook_of(a) == "blocks.1.hook_resid_pre"
    torch.testing.assert_close(a.W_dec, b.W_dec, atol=0, rtol=0)
    assert subject.live_hooks() == []


def test_feature_ablation_in_an_audit_spec(subject):
    spec = {
        "model": {"source": "zoo:readmission"},
        "contrasts": {
            "direct": {"scm": "readmission", "path": "direct", "n": 100},
            "utility": {"scm": "readmission", "path": "total", "n": 200, "answers": "observed"},
        },
        "locate": [],
        "checks": [
            {
                "name": "features",
                "kind": "intervention",
                "contrast": "direct",
                "tolerance": 0.1,
                "ablate": {
                    "sae": "zoo:readmission-attn0",
                    "components": ["L0F110", "L0F34", "L0F18"],
                    "kind": "zero",
                },
                "utility": {"contrast": "utility", "metric": "accuracy", "budget": 0.05},
            }
        ],
    }
    report = ia.audit(spec, subject=subject)
    before = [d for d in report.checks[0].details if d["measure"] == "effect before"][0]["value"]
    assert report.checks[0].statistic < before  # the features carry part of the direct path


def test_feature_diff_and_top_activating(subject, sae, direct):
    diff = S.feature_diff(subject, sae, direct)
    top, value = diff.top(1)[0]
    i = int(top.split("F")[1])
    fc = S.feature_activations(subject, sae, direct.clean)[..., i]
    ff = S.feature_activations(subject, sae, direct.counterfactual)[..., i]
    assert value == pytest.approx(float((fc - ff).mean()), abs=1e-5)  # equal lengths: plain mean
    texts = [
        "age:old ins:medicare lab:high hosp:1 ->",
        "age:young ins:private lab:low hosp:0 ->",
        "age:mid ins:medicaid lab:normal hosp:3 ->",
    ]
    best = S.top_activating(subject, sae, i, texts, k=3)
    acts = [
        float(
            S.feature_activations(subject, sae, torch.tensor([subject.to_tokens(t)]))[0, :, i].max()
        )
        for t in texts
    ]
    assert [b[2] for b in best] == pytest.approx(sorted(acts, reverse=True))
