"""Repairs on Hugging Face families: the fold against the hooked run (every family), and the
exported folder against plain ``transformers`` (GPT-2, Llama with GQA, NeoX; Mistral and Qwen2
where their configs can hold the repair).

Folders are random-init checkpoints built from a config (as in test_hf_families.py). The
export's reference is ``AutoModelForCausalLM.from_pretrained(folder)`` with no interp_audit
code in the forward: its logits must equal the repaired Subject's to 1e-4.
"""

from __future__ import annotations

import json

import pytest
import torch

import interp_audit as ia
from interp_audit.engine.repairs import repaired
from interp_audit.model.adapters.hf_export import ExportRefused, folder_weights_sha256
from interp_audit.model.hashing import state_sha256

VOCAB = 100
SIZE = dict(num_hidden_layers=2, num_attention_heads=4, hidden_size=64, max_position_embeddings=64)
GQA = dict(num_key_value_heads=2, intermediate_size=128)
CONFIGS = {
    "gpt2": dict(n_layer=2, n_head=4, n_embd=64, n_positions=64),
    "gpt_neox": dict(**SIZE, intermediate_size=128, rotary_pct=0.5),
    "llama": dict(**SIZE, **GQA),
    "mistral": dict(**SIZE, **GQA, sliding_window=None),
    "qwen2": dict(**SIZE, **GQA),
    "gemma": dict(**SIZE, num_key_value_heads=1, head_dim=16, intermediate_size=128),
    "opt": dict(**SIZE, ffn_dim=128, word_embed_proj_dim=64),
    "phi": dict(**SIZE, intermediate_size=128, partial_rotary_factor=0.5),
}
EXPORTED = ("gpt2", "llama", "gpt_neox")
REPAIRS = [
    ("zero", ["L0H1", "L1N3", "L1H0.v"]),
    ("mean", ["L0H1", "L1N3", "L1H0.k"]),
    ("mean", ["L1.attn", "L0.mlp"]),
    ("erase", ["L1.resid_pre"]),
]


def _build(model_type: str, folder):
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    cfg = AutoConfig.for_model(model_type, vocab_size=VOCAB, **CONFIGS[model_type])
    AutoModelForCausalLM.from_config(cfg).eval().save_pretrained(folder)
    return ia.load_model(folder)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return {t: _build(t, tmp_path_factory.mktemp(t)) for t in CONFIGS}


@pytest.fixture(scope="module")
def pairs():
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(5, VOCAB, (6, 7), generator=g)
    cf = clean.clone()
    cf[:, 2] = (clean[:, 2] + 7) % (VOCAB - 5) + 5
    return ia.ContrastSet.from_tokens(clean, cf)


def _hooked(subject, comps, kind, pairs):
    per = {} if kind == "erase" else {"per_position": False}
    with ia.ablate(subject, comps, kind=kind, reference=pairs, **per):
        return subject.run(pairs.clean)


@pytest.mark.parametrize("model_type", list(CONFIGS))
def test_fold_equals_hooked_on_every_hf_family(folders, pairs, model_type):
    subject = folders[model_type]
    for kind, comps in REPAIRS:
        fixed = repaired(subject, comps, kind=kind, reference=pairs)
        ref = _hooked(subject, comps, kind, pairs)
        assert (ref - subject.run(pairs.clean)).abs().max() > 1e-3, (model_type, kind)
        torch.testing.assert_close(fixed.run(pairs.clean), ref, atol=1e-5, rtol=0)


def _plain_transformers(folder, tokens):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True).eval()
    with torch.no_grad():
        return model(tokens).logits, model.config


@pytest.mark.parametrize("model_type", EXPORTED)
def test_hf_export_loads_in_plain_transformers(folders, pairs, model_type, tmp_path):
    subject = folders[model_type]
    for i, (kind, comps) in enumerate(REPAIRS):
        fixed = repaired(subject, comps, kind=kind, reference=pairs)
        out = fixed.save(tmp_path / f"{i}-{kind}", format="hf")
        logits, config = _plain_transformers(out, pairs.clean)
        torch.testing.assert_close(logits, fixed.run(pairs.clean), atol=1e-4, rtol=0)
        assert (logits - subject.run(pairs.clean)).abs().max() > 1e-3  # the repair shipped
        record = json.loads((out / "repair.json").read_text())
        assert record["source"]["state_sha256"] == state_sha256(subject.model)
        assert record["repair"]["components"] == comps and record["repair"]["kind"] == kind
        assert record["repair"]["reference"]["sha256"]
        assert record["export"]["weights_sha256"] == folder_weights_sha256(out)
        assert config.interp_audit_repair["record"] == "repair.json"
        # read back by ia.load_model: the very tensors the repaired Subject ran
        back = ia.load_model(out)
        assert state_sha256(back.model) == fixed.repair["weights_sha256"]
        assert back.repair["export"]["model_type"] == model_type


def test_llama_mean_repair_switches_attention_bias_on(folders, pairs, tmp_path):
    """Llama has no biases: a mean ablation's bias needs attention_bias (and mlp_bias), which
    also add q/k/v (gate/up) biases: those are zero, and the config says why they are on."""
    subject = folders["llama"]
    assert subject.origin["model_type"] == "llama"
    fixed = repaired(subject, ["L0H1", "L1N3"], kind="mean", reference=pairs)
    out = fixed.save(tmp_path / "llama-mean", format="hf")
    _, config = _plain_transformers(out, pairs.clean)
    assert config.attention_bias is True and config.mlp_bias is True
    notes = config.interp_audit_repair["config_changes"]
    assert "attention_bias" in notes and "zero" in notes["attention_bias"]
    from safetensors.torch import load_file

    state = load_file(str(out / "model.safetensors"))
    for part in ("q", "k", "v"):
        assert state[f"model.layers.0.self_attn.{part}_proj.bias"].abs().max() == 0
    assert state["model.layers.0.self_attn.o_proj.bias"].abs().max() > 0
    assert state["model.layers.1.self_attn.o_proj.bias"].abs().max() == 0
    # a zero repair needs no bias: the config stays as the source's
    zero = repaired(subject, ["L0H1", "L1N3"], kind="zero").save(tmp_path / "z", format="hf")
    assert not _plain_transformers(zero, pairs.clean)[1].attention_bias


@pytest.mark.parametrize("model_type", ["mistral", "qwen2"])
def test_mean_repair_export_refused_where_the_config_cannot_carry_a_bias(
    folders, pairs, model_type, tmp_path
):
    subject = folders[model_type]
    fixed = repaired(subject, ["L0H1"], kind="mean", reference=pairs)
    with pytest.raises(ExportRefused, match=r"o_proj.bias.*no switch.*project's format"):
        fixed.save(tmp_path / "hf", format="hf")
    back = ia.load_model(fixed.save(tmp_path / "own"))  # the project's format holds it
    torch.testing.assert_close(back.run(pairs.clean), fixed.run(pairs.clean), atol=0, rtol=0)
    # zero repairs and erasure need no bias: exported
    for kind, comps in [("zero", ["L0H1", "L1N3"]), ("erase", ["L1.resid_pre"])]:
        out = repaired(subject, comps, kind=kind, reference=pairs).save(
            tmp_path / kind, format="hf"
        )
        logits, _ = _plain_transformers(out, pairs.clean)
        ref = _hooked(subject, comps, kind, pairs)
        torch.testing.assert_close(logits, ref, atol=1e-4, rtol=0)


def test_hf_export_refusals(folders, causal_subject, pairs, tmp_path):
    with pytest.raises(ExportRefused, match="not: save it in the project's format"):
        causal_subject.save(tmp_path / "x", format="hf")
    with pytest.raises(ExportRefused, match="no Hugging Face export for model_type 'opt'"):
        folders["opt"].save(tmp_path / "y", format="hf")
    with pytest.raises(ia.ModelLoadError, match="save format must be"):
        folders["gpt2"].save(tmp_path / "z", format="onnx")


def test_llama_with_biases_loads_as_transformers_runs_it(tmp_path):
    """attention_bias / mlp_bias checkpoints (what a mean repair exports): every bias counts;
    a nonzero gate or up bias (inside the gated product: TransformerLens cannot hold it) is
    refused."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(1)
    cfg = AutoConfig.for_model(
        "llama", vocab_size=VOCAB, attention_bias=True, mlp_bias=True, **SIZE, **GQA
    )
    hf = AutoModelForCausalLM.from_config(cfg).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if name.endswith(".bias"):
                p.normal_(0, 0.0 if "gate_proj" in name or "up_proj" in name else 0.5)
    hf.save_pretrained(tmp_path / "ok")
    tokens = torch.randint(0, VOCAB, (2, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = hf(tokens).logits
    torch.testing.assert_close(ia.load_model(tmp_path / "ok").run(tokens), ref, atol=1e-4, rtol=0)
    with torch.no_grad():
        hf.model.layers[1].mlp.up_proj.bias.fill_(0.1)
    hf.save_pretrained(tmp_path / "gate")
    with pytest.raises(ia.ModelLoadError, match="nonzero up_proj bias"):
        ia.load_model(tmp_path / "gate")
