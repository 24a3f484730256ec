"""The support-privacy unlearning edits, written as Hugging Face folders and reloaded with
ia.load_model, compute what the same intervention computes in memory (a small random Llama):
zeroed down_proj columns = zero-ablated neurons, reverted projections = the base model's, and
a TransformerLens-layout rank-one delta lands in down_proj so that the keys write the targets."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

import interp_audit as ia
from interp_audit.methods.privacy.edits import solve_edit

pytestmark = pytest.mark.integration
HERE = Path(__file__).resolve().parents[2] / "circuits" / "support-privacy"


@pytest.fixture(scope="module")
def unlearn():
    sys.path.insert(0, str(HERE))
    spec = importlib.util.spec_from_file_location("support_unlearn", HERE / "unlearn.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _llama(seed: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(cfg).eval()


def _save(model, folder: Path) -> Path:
    model.save_pretrained(str(folder), safe_serialization=True)
    return folder


TOKENS = torch.randint(0, 64, (3, 9), generator=torch.Generator().manual_seed(0))


def test_zeroed_neurons_on_disk_equal_zero_ablation(unlearn, tmp_path):
    model = _llama(0)
    subject = ia.load_model(str(_save(model, tmp_path / "ft")))
    neurons = ["L0N3", "L1N7", "L1N40"]
    with ia.ablate(subject, neurons, "zero"):
        want = subject.run(TOKENS)
    unlearn.zero_neurons(model, neurons)
    edited = ia.load_model(str(_save(model, tmp_path / "edited")))
    torch.testing.assert_close(edited.run(TOKENS), want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(subject.run(TOKENS), want)


def test_reverted_projections_on_disk_are_the_base_models(unlearn, tmp_path):
    base, ft = _llama(0), _llama(1)
    labels = ["L0.q_proj", "L1.down_proj", "L1.k_proj"]
    unlearn.revert_modules(ft, base, labels)
    edited = ia.load_model(str(_save(ft, tmp_path / "edited")))
    ref = ia.load_model(str(_save(base, tmp_path / "base")))
    blocks, rblocks = edited.model.blocks, ref.model.blocks
    torch.testing.assert_close(blocks[0].attn.W_Q, rblocks[0].attn.W_Q)
    torch.testing.assert_close(blocks[1].attn._W_K, rblocks[1].attn._W_K)
    torch.testing.assert_close(blocks[1].mlp.W_out, rblocks[1].mlp.W_out)
    assert not torch.allclose(blocks[1].attn.W_Q, rblocks[1].attn.W_Q)  # untouched ones differ


def test_a_rank_one_delta_in_transformerlens_layout_lands_in_down_proj(unlearn, tmp_path):
    model = _llama(0)
    subject = ia.load_model(str(_save(model, tmp_path / "ft")))
    got = {}

    def keep(a, hook):
        got[hook.name] = a.detach().double()

    with subject.hooks([("blocks.1.mlp.hook_post", keep)]):
        subject.run(TOKENS)
    K = got["blocks.1.mlp.hook_post"][0, [2, 5]]  # two keys
    V = torch.randn(2, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    W = subject.model.blocks[1].mlp.W_out.detach()
    b = subject.model.blocks[1].mlp.b_out.detach()
    delta = solve_edit(W, b, K, V, torch.eye(48, dtype=torch.float64))
    unlearn.add_down_proj(model, {1: delta})
    edited = ia.load_model(str(_save(model, tmp_path / "edited")))
    with edited.hooks([("blocks.1.hook_mlp_out", keep)]):
        edited.run(TOKENS)
    torch.testing.assert_close(got["blocks.1.hook_mlp_out"][0, [2, 5]], V, atol=1e-4, rtol=1e-4)
