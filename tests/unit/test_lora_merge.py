"""The zoo's LoRA merge (W + alpha/r B A, no peft at load time) against peft's own merge."""

from __future__ import annotations

import copy

import pytest
import torch

from interp_audit.core.errors import ModelLoadError
from interp_audit.zoo.finetuned import apply_lora

peft = pytest.importorskip("peft")


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj = torch.nn.Linear(12, 12, bias=False)
        self.down_proj = torch.nn.Linear(20, 12, bias=False)
        self.up_proj = torch.nn.Linear(12, 20, bias=False)

    def forward(self, x):
        return self.down_proj(torch.relu(self.up_proj(self.q_proj(x))))


class Toy(torch.nn.Module):
    """Module names as in a Llama checkpoint (model.layers.N.*)."""

    def __init__(self):
        super().__init__()
        self.model = torch.nn.Module()
        self.model.layers = torch.nn.ModuleList([Block(), Block()])

    def forward(self, x):
        for b in self.model.layers:
            x = b(x)
        return x


def _adapter(tmp_path, rank=4, alpha=8.0):
    torch.manual_seed(0)
    base = Toy()
    cfg = peft.LoraConfig(
        r=rank,
        lora_alpha=alpha,
        target_modules=["q_proj", "down_proj", "up_proj"],
        init_lora_weights=False,  # random A and B: a merge that changes every weight
    )
    wrapped = peft.get_peft_model(copy.deepcopy(base), cfg)
    wrapped.save_pretrained(str(tmp_path / "adapter"), safe_serialization=True)
    return base, wrapped


def test_apply_lora_equals_peft_merge_and_unload(tmp_path):
    base, wrapped = _adapter(tmp_path)
    x = torch.randn(3, 12)
    with torch.no_grad():
        want_out = wrapped(x)
    merged = wrapped.merge_and_unload()
    mine = copy.deepcopy(base)
    changed = apply_lora(mine, tmp_path / "adapter")
    assert len(changed) == 6
    for (name, p), (name2, q) in zip(
        mine.named_parameters(), merged.named_parameters(), strict=True
    ):
        assert name == name2
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-6)
        assert not torch.equal(p, dict(base.named_parameters())[name])
    with torch.no_grad():
        torch.testing.assert_close(mine(x), want_out, atol=1e-5, rtol=1e-5)


def test_apply_lora_names_what_does_not_fit(tmp_path):
    _adapter(tmp_path)

    class Other(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = torch.nn.Module()
            self.model.layers = torch.nn.ModuleList([torch.nn.Module()])

    with pytest.raises(ModelLoadError, match="not a linear layer of this base model"):
        apply_lora(Other(), tmp_path / "adapter")
    with pytest.raises(ModelLoadError, match="needs adapter_config.json"):
        apply_lora(Toy(), tmp_path)
