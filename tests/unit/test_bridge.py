"""TransformerLens 3.9's TransformerBridge runs through the generic (full-forward) path."""

import torch
from transformer_lens import patching as tlp

import interp_audit as ia

from helpers import random_pairs


def test_transformer_bridge_patching_matches_transformer_lens(tmp_path):
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    GPT2LMHeadModel(
        GPT2Config(n_layer=2, n_head=4, n_embd=32, vocab_size=64, n_positions=32)
    ).save_pretrained(tmp_path)
    bridge = TransformerBridge.boot_transformers(str(tmp_path))
    subject = ia.load_model(bridge)
    assert subject.model_class == "TransformerBridge" and subject.kind == "causal"
    pairs = random_pairs(d_vocab=64, seed=1)
    eff = ia.patch(subject, pairs, sites="heads", normalize=False)
    _, cache = bridge.run_with_cache(pairs.clean)
    ref = tlp.get_act_patch_attn_head_out_all_pos(
        bridge,
        pairs.counterfactual,
        cache,
        lambda lg: ia.metrics.logit_diff.from_logits(lg, pairs).mean(),
    )
    torch.testing.assert_close(eff.values, ref, atol=1e-5, rtol=0)
    assert subject.live_hooks() == []
