"""Feature cards on a random-init model: examples, direct logit effect and the effect CI, each
against a reference (TransformerLens's folded LayerNorm + apply_ln_to_stack, a naive loop)."""

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

import interp_audit as ia
from interp_audit import sae as S
from interp_audit.methods.features.cards import FeatureCard, feature_cards
from tests.helpers import build_cfg, random_pairs

HOOK = "blocks.1.hook_resid_pre"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = HookedTransformer(HookedTransformerConfig(**build_cfg()))
    with torch.no_grad():  # non-trivial LayerNorm weights, so folding them matters
        m.ln_final.w.uniform_(0.5, 1.5)
        m.ln_final.b.normal_(0, 0.1)
    return m


@pytest.fixture(scope="module")
def subject(model):
    return ia.load_model(model)


@pytest.fixture(scope="module")
def sae():
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    torch.manual_seed(1)
    s = StandardSAE(
        StandardSAEConfig(d_in=32, d_sae=48, metadata=SAEMetadata(hook_name=HOOK))
    ).eval()
    with torch.no_grad():
        s.b_enc.fill_(-0.2)  # sparse: most features off on most tokens
    return s


def test_logit_directions_match_transformer_lens_folded_layernorm(model, subject):
    """Reference: fold_ln puts ln_final.w into W_U; apply_ln_to_stack centres and divides by the
    cached scale; times that scale again gives the direct logit effect with sigma held fixed."""
    folded = HookedTransformer(model.cfg)
    folded.load_state_dict(model.state_dict())
    folded.process_weights_(fold_ln=True, center_writing_weights=False, center_unembed=False)
    tokens = torch.randint(0, 50, (1, 5))
    _, cache = folded.run_with_cache(tokens)
    d = torch.randn(3, 32)
    stack = d[:, None, None, :].expand(3, 1, 5, 32)
    normed = cache.apply_ln_to_stack(stack, layer=None)  # [3, 1, 5, d]
    scale = cache["ln_final.hook_scale"]  # [1, 5, 1]
    reference = (normed * scale)[:, 0, 0] @ folded.W_U
    torch.testing.assert_close(subject.adapter.logit_directions(d), reference, atol=1e-4, rtol=1e-4)


def test_cards_examples_direct_effect_and_ci(subject, sae):
    pairs = random_pairs(batch=12, pos=6)
    eff = S.patch_features(subject, pairs, "logit_diff", sae, normalize=False)
    top = [c for c, _ in eff.top(4) if not c.endswith("err")][:3]
    tokens = torch.cat([pairs.clean, pairs.counterfactual])
    cards = feature_cards(
        subject, sae, top, tokens, torch.ones_like(tokens), effects=eff, k_examples=3
    )
    acts = S.feature_activations(subject, sae, tokens)  # naive: every row, every position
    base = eff.base_values.tolist()
    for card, label in zip(cards, top, strict=True):
        i = int(label.split("F")[1])
        peaks = acts[..., i].max(1).values
        want = sorted(peaks.tolist(), reverse=True)[: len(card.examples)]
        assert [e.max for e in card.examples] == pytest.approx(want, abs=1e-4)
        assert card.density == pytest.approx(float((acts[..., i] > 0).float().mean()), abs=1e-6)
        # the effect: mean over pairs of (patched metric - base metric), i.e. the Effects value
        assert card.effect[0] == pytest.approx(eff[label] - sum(base) / len(base), abs=1e-5)
        assert card.effect[1] <= card.effect[0] <= card.effect[2]
        # direct logit effect: the decoder row through the folded norm, top token first
        logits = subject.adapter.logit_directions(sae.W_dec[i : i + 1].detach())[0]
        assert card.promoted[0][1] == pytest.approx(float(logits.max()), abs=1e-5)
        assert card.suppressed[0][1] == pytest.approx(float(logits.min()), abs=1e-5)
        assert FeatureCard.from_dict(card.to_dict()) == card
        html = card._repr_html_()
        assert label in html and "border-bottom" in html  # the peak token is highlighted
    with pytest.raises(ia.SiteError, match="feature 48 does not exist"):
        feature_cards(subject, sae, ["L1F48"], tokens)
