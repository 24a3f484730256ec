"""Parallel attention + MLP blocks (GPT-J, Pythia: rotary, MLP reading resid_pre) patch exactly.

Head and attention-output patches join such a block after attention (the base resid_post plus
the heads' change, nothing recomputed); these tests hold that path to TransformerLens's own
``patching`` functions on the same random-init model.
"""

from __future__ import annotations

import pytest
import torch
from transformer_lens import patching as tlp

import interp_audit as ia
from interp_audit.model.loading import build_model
from interp_audit.model.metrics import logit_diff

from helpers import build_cfg


@pytest.fixture(scope="module")
def pythia_like():
    cfg = build_cfg(positional_embedding_type="rotary", rotary_dim=4, parallel_attn_mlp=True)
    subject = ia.load_model(build_model(cfg, seed=5))
    g = torch.Generator().manual_seed(1)
    clean = torch.randint(0, 50, (4, 8), generator=g)
    cf = clean.clone()
    cf[:, 2] = (clean[:, 2] + 9) % 50
    answers = torch.randint(0, 49, (4, 1), generator=g)
    return subject, ia.ContrastSet.from_tokens(clean, cf, torch.cat([answers, answers + 1], 1))


@pytest.mark.parametrize(
    "site, per_position, tl_fn",
    [
        ("heads", False, tlp.get_act_patch_attn_head_out_all_pos),
        ("heads", True, tlp.get_act_patch_attn_head_out_by_pos),
        ("attn_out", True, tlp.get_act_patch_attn_out),
    ],
)
def test_parallel_block_patching_equals_transformer_lens(pythia_like, site, per_position, tl_fn):
    subject, pairs = pythia_like
    assert subject.adapter.mid_block_entry  # the path under test
    ours = ia.patch(subject, pairs, sites=site, per_position=per_position, normalize=False)
    with torch.no_grad():
        _, cache = subject.model.run_with_cache(pairs.clean)
        ref = tl_fn(
            subject.model,
            pairs.counterfactual,
            cache,
            lambda logits: logit_diff.from_logits(logits, pairs).mean(),
        )
    torch.testing.assert_close(ours.values, ref.float(), atol=1e-5, rtol=0)
    assert float(ref.abs().max()) > 1e-3
