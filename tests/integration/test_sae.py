"""SAE features: exact splice, feature patching vs a naive loop, attribution completeness,
feature ablation vs component ablation on the readmission model, errors, reproducible training."""

import pytest
import torch

import interp_audit as ia
from circuits.readmission import scm as R
from circuits.readmission.experiment import Variant, evaluate
from interp_audit import sae as S
from interp_audit.engine.batched import cached_run

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
    together = x_clean - (x_clean - sae.decode(f_clean)) + err_cf  # all features, cf's error
    with subject.hooks([(HOOK, lambda x, *, hook: together)]):
        naive = ia.metrics.logit_diff.from_logits(subject.run(direct.counterfactual), direct)
    assert eff.meta["all_features"] == pytest.approx(float(naive.mean()), abs=1e-5)


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
    with pytest.raises(
        ia.ModelLoadError,
        match="no zoo SAE 'nope'; available: hiring-attn0, minilm-l5, readmission-attn0",
    ):
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
        "causal": "zoo:readmission",
        "contrasts": {
            "direct": {"scm": "causal", "source": "A", "paths": "direct", "n": 100, "seed": 7919},
            "utility": {
                "scm": "causal",
                "source": "A",
                "paths": "all",
                "n": 200,
                "seed": 7919,
                "label": "readmitted",
            },
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


def test_a_spec_locates_with_sae_features_and_shows_cards(tmp_path, subject, sae):
    """sae_patch and sae_atp as locate steps: the same numbers as the functions, cards in the
    report (JSON and HTML), and an ablation of the top located features (error node skipped)."""
    spec = {
        "model": {"source": "zoo:readmission"},
        "causal": "zoo:readmission",
        "contrasts": {
            "direct": {"scm": "causal", "source": "A", "paths": "direct", "n": 60, "seed": 7919},
            "utility": {
                "scm": "causal",
                "source": "A",
                "paths": "all",
                "n": 100,
                "seed": 7920,
                "label": "readmitted",
            },
        },
        "locate": [
            {
                "name": "feat",
                "method": "sae_patch",
                "contrast": "direct",
                "sae": "zoo:readmission-attn0",
                "cards": 2,
            },
            {
                "name": "feat_atp",
                "method": "sae_atp",
                "contrast": "direct",
                "sae": "zoo:readmission-attn0",
                "cards": 0,
            },
        ],
        "checks": [
            {
                "name": "features",
                "kind": "intervention",
                "contrast": "direct",
                "tolerance": 0.1,
                "ablate": {
                    "sae": "zoo:readmission-attn0",
                    "from_locate": "feat",
                    "top_k": 3,
                    "kind": "zero",
                },
                "utility": {"contrast": "utility", "metric": "accuracy", "budget": 0.05},
            },
        ],
    }
    report = ia.audit(spec)
    direct = R.contrast(subject, "direct", n=60)
    exact = S.patch_features(subject, direct, "logit_diff", sae)
    torch.testing.assert_close(report.effects["feat"].values, exact.values, atol=1e-5, rtol=0)
    atp = S.attribute_features(subject, direct, "logit_diff", sae)
    torch.testing.assert_close(report.effects["feat_atp"].values, atp.values, atol=1e-5, rtol=0)
    top3 = [c for c, _ in exact.top(10, by="signed") if not c.endswith("err")][:3]
    ablated = [d for d in report.checks[0].details if d.get("measure") == "ablated components"]
    assert ablated[0]["components"] == top3  # the error node is located but never ablated
    data = report.to_dict()
    cards = data["located"]["feat"]["cards"]
    assert [c["label"] for c in cards] == [c for c, _ in exact.top(3) if not c.endswith("err")][:2]
    assert "cards" not in data["located"]["feat_atp"]
    report.save(tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert f"<b>{cards[0]['label']}</b>" in page and "top-activating examples" in page


def test_spec_errors_for_sae_steps():
    base = {
        "model": {"source": "zoo:readmission"},
        "causal": "zoo:readmission",
        "contrasts": {"d": {"scm": "causal", "source": "A", "paths": "direct", "n": 10}},
    }
    with pytest.raises(ia.SpecError, match="sae: Field required"):
        ia.audit({**base, "locate": [{"method": "sae_patch", "contrast": "d"}]})
    with pytest.raises(ia.SpecError, match="unknown key 'sae' for locate method 'patch'"):
        ia.audit({**base, "locate": [{"method": "patch", "contrast": "d", "sae": "zoo:x"}]})
    with pytest.raises(ia.ModelLoadError, match="no zoo SAE 'nope'"):
        ia.audit({**base, "locate": [{"method": "sae_atp", "contrast": "d", "sae": "zoo:nope"}]})


@pytest.fixture(scope="module")
def gpt2_shaped():
    """GPT-2 small's width (768, 12 heads of 64, MLP 3072) on two layers, random weights, with
    the weight processing gpt2-small-res-jb's SAEs were trained under."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(0)
    cfg = HookedTransformerConfig(
        n_layers=2,
        d_model=768,
        n_ctx=32,
        d_head=64,
        n_heads=12,
        d_mlp=3072,
        d_vocab=64,
        act_fn="gelu_new",
        normalization_type="LN",
    )
    return ia.load_model(HookedTransformer(cfg), center_writing_weights=True)


def test_a_hub_release_loads_offline_through_the_release_path(tmp_path, monkeypatch, gpt2_shaped):
    """gpt2-small-res-jb / blocks.1.hook_resid_pre: a folder in sae_lens's save format served
    where the hub download would put it; loaded by release name through sae_lens's own release
    loader (config overrides included), then used by a spec's sae_patch step."""
    import sae_lens.loading.pretrained_sae_loaders as loaders
    from huggingface_hub.errors import EntryNotFoundError
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    torch.manual_seed(2)
    written = StandardSAE(
        StandardSAEConfig(
            d_in=768, d_sae=256, metadata=SAEMetadata(hook_name="blocks.1.hook_resid_pre")
        )
    )
    written.save_model(tmp_path / "hub" / "blocks.1.hook_resid_pre")
    asked = []

    def fake_download(repo_id, filename, **_):
        asked.append((repo_id, filename))
        path = tmp_path / "hub" / filename
        if not path.exists():
            raise EntryNotFoundError(f"{filename} not in {repo_id}")
        return str(path)

    monkeypatch.setattr(loaders, "hf_hub_download", fake_download)
    sae = S.load_sae("gpt2-small-res-jb", gpt2_shaped, sae_id="blocks.1.hook_resid_pre")
    assert asked[0] == ("jbloom/GPT2-Small-SAEs-Reformatted", "blocks.1.hook_resid_pre/cfg.json")
    torch.testing.assert_close(sae.W_dec, written.W_dec, atol=0, rtol=0)
    assert sae.cfg.metadata.model_from_pretrained_kwargs == {"center_writing_weights": True}
    raw = ia.load_model(gpt2_shaped.model.__class__(gpt2_shaped.model.cfg))
    with pytest.raises(ia.ModelLoadError, match="center_writing_weights=True"):
        S.load_sae("gpt2-small-res-jb", raw, sae_id="blocks.1.hook_resid_pre")
    with pytest.raises(ia.ModelLoadError, match="could not load SAE 'gpt2-small-res-jb'"):
        S.load_sae("gpt2-small-res-jb", gpt2_shaped, sae_id="blocks.99.hook_resid_pre")

    clean = torch.randint(1, 64, (8, 6))
    cf = clean.clone()
    cf[:, 2] = (clean[:, 2] + 7) % 63 + 1
    pairs = ia.ContrastSet.from_tokens(clean, cf, torch.tensor([[3, 4]] * 8))
    from interp_audit.methods.locate.features import locate_features, resolve_sae

    eff = locate_features(
        gpt2_shaped,
        pairs,
        ia.metrics.logit_diff,
        method="sae_patch",
        sae=resolve_sae(gpt2_shaped, "gpt2-small-res-jb", sae_id="blocks.1.hook_resid_pre"),
        cards=1,
    )
    torch.testing.assert_close(
        eff.values, S.patch_features(gpt2_shaped, pairs, "logit_diff", sae).values
    )
    assert eff.meta["cards"][0]["direct_kind"] == "logits"


def test_cli_sweep_locates_sae_features(subject, sae, capsys):
    from interp_audit.cli.main import main

    clean = ["age:old ins:medicare lab:high hosp:1 ->", "age:old ins:private lab:low hosp:2 ->"]
    cf = [c.replace("age:old", "age:young") for c in clean]
    args = ["sweep", "--model", "zoo:readmission", "--clean", *clean, "--counterfactual", *cf]
    assert (
        main(
            [
                *args,
                "--answers",
                "YES",
                "NO",
                "--method",
                "sae_patch",
                "--sae",
                "zoo:readmission-attn0",
            ]
        )
        == 0
    )
    pairs = ia.ContrastSet.from_prompts(subject, clean, cf, answers=("YES", "NO"))
    label, value = S.patch_features(subject, pairs, "logit_diff", sae).top(1)[0]
    assert f"{label:>20s} {value:+.4f}" in capsys.readouterr().out
