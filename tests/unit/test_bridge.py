"""TransformerLens 3.9's TransformerBridge: the batched fast path (layer skipping) on a GPT-2
bridge, cell for cell against TransformerLens's own patching run on the same bridge."""

import pytest
import torch
from transformer_lens import patching as tlp

import interp_audit as ia

from helpers import random_pairs


@pytest.fixture(scope="module")
def bridge_subject(tmp_path_factory):
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path_factory.mktemp("gpt2-bridge")
    torch.manual_seed(0)
    GPT2LMHeadModel(
        GPT2Config(n_layer=2, n_head=4, n_embd=32, vocab_size=64, n_positions=32)
    ).save_pretrained(folder)
    bridge = TransformerBridge.boot_transformers(str(folder))
    subject = ia.load_model(bridge)
    subject.folder = folder
    return subject


@pytest.mark.parametrize(
    "sites, per_position, reference",
    [
        ("heads", False, tlp.get_act_patch_attn_head_out_all_pos),
        ("heads", True, tlp.get_act_patch_attn_head_out_by_pos),
        ("resid_pre", True, tlp.get_act_patch_resid_pre),
        ("mlp_out", True, tlp.get_act_patch_mlp_out),
    ],
)
def test_transformer_bridge_patching_matches_transformer_lens(
    bridge_subject, sites, per_position, reference
):
    subject = bridge_subject
    assert subject.model_class == "TransformerBridge" and subject.kind == "causal"
    assert subject.adapter.fast_path  # blocks are called directly, layers below are skipped
    bridge = subject.model
    pairs = random_pairs(d_vocab=64, seed=1)
    eff = ia.patch(subject, pairs, sites=sites, per_position=per_position, normalize=False)
    _, cache = bridge.run_with_cache(pairs.clean)
    ref = reference(
        bridge,
        pairs.counterfactual,
        cache,
        lambda lg: ia.metrics.logit_diff.from_logits(lg, pairs).mean(),
    )
    if sites == "heads" and per_position:  # TL orders (layer, pos, head) as we do
        ref = ref.reshape(eff.values.shape)
    torch.testing.assert_close(eff.values, ref, atol=1e-5, rtol=0)
    assert subject.live_hooks() == []


@pytest.mark.parametrize("sites", ["heads", "resid_pre"])
def test_bridge_attribution_equals_the_hooked_transformer_of_the_same_folder(bridge_subject, sites):
    """AtP through the bridge (HF modules, gradient through its final norm and answer columns)
    equals AtP on the HookedTransformer that load_model converts from the same folder."""
    hooked = ia.load_model(bridge_subject.folder)
    pairs = random_pairs(d_vocab=64, seed=2)
    est = ia.attribute(bridge_subject, pairs, sites=sites, method="atp", normalize=False)
    ref = ia.attribute(hooked, pairs, sites=sites, method="atp", normalize=False)
    torch.testing.assert_close(est.values, ref.values, atol=1e-5, rtol=0)
    assert est.baseline == pytest.approx(ref.baseline, abs=1e-5)
    assert bridge_subject.live_hooks() == []


def test_opt_bridge_keeps_the_exact_full_forward_path(tmp_path):
    """OPT's bridge blocks need the attention mask: no blockwise fast path, same numbers."""
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import OPTConfig, OPTForCausalLM

    torch.manual_seed(0)
    OPTForCausalLM(
        OPTConfig(
            num_hidden_layers=2,
            num_attention_heads=4,
            hidden_size=32,
            ffn_dim=64,
            word_embed_proj_dim=32,
            vocab_size=64,
            max_position_embeddings=32,
        )
    ).save_pretrained(tmp_path)
    bridge = TransformerBridge.boot_transformers(str(tmp_path))
    subject = ia.load_model(bridge)
    assert not subject.adapter.fast_path
    pairs = random_pairs(d_vocab=64, seed=3)
    eff = ia.patch(subject, pairs, sites="heads", normalize=False)
    _, cache = bridge.run_with_cache(pairs.clean)
    ref = tlp.get_act_patch_attn_head_out_all_pos(
        bridge,
        pairs.counterfactual,
        cache,
        lambda lg: ia.metrics.logit_diff.from_logits(lg, pairs).mean(),
    )
    torch.testing.assert_close(eff.values, ref, atol=1e-5, rtol=0)
