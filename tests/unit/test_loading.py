"""Every offline model source, processing flags recorded, and loading errors."""

import json

import pytest
import torch

import interp_audit as ia
from interp_audit.model.loading import build_model

from helpers import ENCODER_CFG, build_cfg


def test_in_memory_model_defaults_to_no_processing():
    s = ia.load_model(build_model(build_cfg(), seed=0))
    assert s.kind == "causal" and s.model_class == "HookedTransformer"
    assert s.weight_processing == {
        "fold_ln": False,
        "center_writing_weights": False,
        "center_unembed": False,
        "fold_value_biases": False,
    }
    assert s.describe()["n_layers"] == 3


def test_processing_is_explicit_recorded_and_preserves_logits():
    tokens = torch.randint(0, 50, (2, 6))
    raw = ia.load_model(build_model(build_cfg(), seed=0))
    ref = raw.run(tokens)
    folded = ia.load_model(
        build_model(build_cfg(), seed=0),
        fold_ln=True,
        center_writing_weights=True,
        center_unembed=True,
        fold_value_biases=True,
    )
    assert all(folded.weight_processing.values())
    assert folded.cfg.normalization_type == "LNPre"
    out = folded.run(
        tokens
    )  # processing changes weights, not the function (up to centring of logits)
    torch.testing.assert_close(
        out - out.mean(-1, keepdim=True), ref - ref.mean(-1, keepdim=True), atol=1e-4, rtol=0
    )


def test_save_load_round_trip_reproduces_logits_exactly(tmp_path):
    s = ia.load_model(build_model(build_cfg(), seed=0), fold_ln=True)
    tokens = torch.randint(0, 50, (3, 7))
    s.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert meta["interp_audit_format"] == 1 and meta["weight_processing"]["fold_ln"] is True
    back = ia.load_model(tmp_path / "m")
    assert back.weight_processing["fold_ln"] is True
    assert torch.equal(s.run(tokens), back.run(tokens))


def test_zoo_round_trip_keeps_tokenizer(tmp_path, handbuilt):
    handbuilt.save(tmp_path / "hb")
    back = ia.load_model(str(tmp_path / "hb"))
    assert back.to_tokens("A x ->") == handbuilt.to_tokens("A x ->") == [0, 3, 5, 7]
    tokens = torch.tensor([[0, 3, 5, 7]])
    assert torch.equal(back.run(tokens), handbuilt.run(tokens))


def test_encoder_round_trip(tmp_path):
    s = ia.load_model(build_model(ENCODER_CFG, kind="encoder", seed=0))
    s.save(tmp_path / "enc")
    back = ia.load_model(tmp_path / "enc")
    tokens = torch.randint(0, 50, (2, 5))
    assert back.kind == "encoder" and torch.equal(s.run(tokens), back.run(tokens))


def test_local_hf_gpt2_folder_matches_transformers(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(
        GPT2Config(n_layer=2, n_head=4, n_embd=32, vocab_size=64, n_positions=32)
    ).eval()
    hf.save_pretrained(tmp_path / "gpt2-tiny")
    s = ia.load_model(tmp_path / "gpt2-tiny")
    tokens = torch.randint(0, 64, (2, 9))
    with torch.no_grad():
        ref = hf(tokens).logits
    torch.testing.assert_close(s.run(tokens), ref, atol=1e-4, rtol=1e-4)


def test_local_hf_bert_folder_with_mlm_head_matches_transformers(tmp_path):
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    cfg = BertConfig(
        num_hidden_layers=2,
        num_attention_heads=4,
        hidden_size=32,
        intermediate_size=64,
        vocab_size=80,
        max_position_embeddings=32,
    )
    hf = BertForMaskedLM(cfg).eval()
    hf.save_pretrained(tmp_path / "bert-tiny")
    s = ia.load_model(tmp_path / "bert-tiny")
    assert s.kind == "encoder" and s.has_lm_head
    tokens = torch.randint(0, 80, (2, 9))
    with torch.no_grad():
        ref = hf(tokens).logits
    torch.testing.assert_close(s.run(tokens), ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "source, kwargs, message",
    [
        (
            "zoo:nope",
            {},
            "no zoo model 'nope'; available: all-minilm-l6-v2, canary-lm, canary-lm10, "
            "canary-lm10-clean, handbuilt-copy, hiring, hiring-ftu, hiring-nogap, readmission",
        ),
        ("zoo:handbuilt-copyy", {}, "did you mean 'handbuilt-copy'"),
        (
            build_model(build_cfg(), seed=0),
            {"fold_lnn": True},
            "unknown weight-processing option 'fold_lnn'.*did you mean 'fold_ln'",
        ),
        (build_model(build_cfg(), seed=0), {"dtype": "float13"}, "unknown dtype 'float13'"),
        (
            torch.nn.Linear(2, 2),
            {},
            "cannot audit a Linear: load_model needs a TransformerLens model",
        ),
        (3.5, {}, "cannot load a model from float"),
        ("./no/such/folder", {}, "model folder './no/such/folder' does not exist"),
    ],
)
def test_load_errors_are_readable(source, kwargs, message):
    with pytest.raises(ia.ModelLoadError, match=message):
        ia.load_model(source, **kwargs)


def test_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ia.ModelLoadError, match="has no config.json"):
        ia.load_model(tmp_path / "empty")
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").write_text('{"model_type": "mamba"}')
    with pytest.raises(
        ia.ModelLoadError, match="model_type 'mamba' is not supported from a local folder"
    ):
        ia.load_model(tmp_path / "odd")
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "config.json").write_text(
        json.dumps({"interp_audit_format": 1, "kind": "causal", "tl_config": build_cfg()})
    )
    with pytest.raises(ia.ModelLoadError, match="has no model.safetensors"):
        ia.load_model(tmp_path / "noweights")


def test_pickled_checkpoints_are_refused(tmp_path):
    import pickle

    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps({"interp_audit_format": 1, "kind": "causal", "tl_config": build_cfg()})
    )
    with open(folder / "pytorch_model.bin", "wb") as f:
        pickle.dump({"weights": object()}, f)
    with pytest.raises(ia.ModelLoadError, match="refusing to unpickle"):
        ia.load_model(folder)


def test_encoders_refuse_weight_folding():
    with pytest.raises(ia.ModelLoadError, match="not supported for HookedEncoder"):
        ia.load_model(build_model(ENCODER_CFG, kind="encoder", seed=0), fold_ln=True)
