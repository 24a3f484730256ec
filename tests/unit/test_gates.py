"""Trust gates: they pass on correct numbers (to float32 rounding) and break on wrong ones.

A gate is itself a checker, so each is tested both ways: on the real engine and real HF folders
the measured disagreement is tiny; with a planted error (shifted effects, perturbed weights) it
breaks, names the numbers, and the audit's CLI exits 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import interp_audit as ia
from interp_audit.audit.gates import batched_vs_serial, wrapper_vs_hf
from interp_audit.cli.main import main as cli_main
from interp_audit.model.metrics import get_metric

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "circuits" / "handbuilt" / "audit.yaml"


@pytest.fixture(scope="module")
def handbuilt_report():
    return ia.audit(SPEC)


def test_audit_records_passing_gates(handbuilt_report):
    gates = handbuilt_report.provenance["trust_gates"]
    (gate,) = [g for g in gates if g["name"] == "batched_vs_serial"]
    assert gate["target"] == "heads_exact" and gate["passed"] and gate["checked"] >= 3
    assert gate["max_abs_diff"] <= 1e-5 and 1e-5 <= gate["tolerance"] < 1e-3
    assert "trust_gates" in handbuilt_report.to_dict()["provenance"]
    from interp_audit.audit.report_view import render_html

    page = render_html(handbuilt_report.to_dict())
    assert "batched_vs_serial[heads_exact] ok: max |diff|" in page


def _pairs(vocab: int, n: int = 5, pos: int = 8, seed: int = 0) -> ia.ContrastSet:
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, vocab, (n, pos), generator=g)
    cf = clean.clone()
    cf[:, 2] = (clean[:, 2] + 5) % vocab
    answers = torch.randint(0, vocab, (n, 1), generator=g)
    return ia.ContrastSet.from_tokens(clean, cf, torch.cat([answers, (answers + 1) % vocab], 1))


@pytest.mark.parametrize("site, per_position", [("heads", False), ("resid_pre", True)])
def test_serial_gate_agrees_and_catches_a_shifted_effect(causal_subject, site, per_position):
    pairs = _pairs(50)
    metric = get_metric("logit_diff")
    eff = ia.patch(causal_subject, pairs, metric, sites=site, per_position=per_position)
    ok = batched_vs_serial(causal_subject, pairs, eff, metric, target="t", n_variants=4)
    assert ok.passed and ok.max_abs_diff < 1e-5 and ok.checked == 16
    eff.per_example += 0.05  # a wrong number of the size of a real effect
    bad = batched_vs_serial(causal_subject, pairs, eff, metric, target="t", n_variants=4)
    assert not bad.passed and bad.max_abs_diff == pytest.approx(0.05, abs=1e-4)


def test_broken_gate_is_exit_2_with_the_numbers(monkeypatch, tmp_path, capsys):
    import interp_audit.methods.locate.patching as patching

    real = patching.run_variants
    monkeypatch.setattr(patching, "run_variants", lambda *a, **k: real(*a, **k) + 0.25)
    rc = cli_main(["run", str(SPEC), "--out", str(tmp_path)])
    msg = capsys.readouterr().err
    assert rc == 2 and "batched_vs_serial[heads_exact] BROKEN: max |diff| 0.25" in msg
    saved = json.loads((tmp_path / "report.json").read_text())["provenance"]["trust_gates"]
    (gate,) = [g for g in saved if not g["passed"]]
    assert gate["target"] == "heads_exact" and gate["max_abs_diff"] == pytest.approx(0.25, abs=1e-4)


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory):
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path_factory.mktemp("hf") / "gpt2-tiny"
    torch.manual_seed(0)
    GPT2LMHeadModel(
        GPT2Config(n_layer=2, n_head=4, n_embd=32, vocab_size=64, n_positions=32)
    ).save_pretrained(folder)
    return folder


def test_wrapper_gate_on_a_gpt2_folder(gpt2_folder):
    subject = ia.load_model(gpt2_folder)
    pairs = _pairs(64)
    ok = wrapper_vs_hf(subject, pairs, gpt2_folder)
    assert ok.passed and ok.max_abs_diff < 1e-5 and ok.detail["compared"] == "logits"
    with torch.no_grad():
        subject.model.blocks[1].mlp.W_out[0, 0] += 0.5  # a conversion bug in one weight
    bad = wrapper_vs_hf(subject, pairs, gpt2_folder)
    assert not bad.passed and bad.max_abs_diff > 10 * bad.tolerance


def test_wrapper_gate_on_a_bert_folder_without_head(tmp_path):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(
        num_hidden_layers=2,
        num_attention_heads=4,
        hidden_size=32,
        intermediate_size=64,
        vocab_size=80,
        max_position_embeddings=32,
    )
    BertModel(cfg).save_pretrained(tmp_path / "bert")
    subject = ia.load_model(tmp_path / "bert")
    gate = wrapper_vs_hf(subject, _pairs(80), tmp_path / "bert")
    assert gate.detail["compared"] == "last_hidden_state"
    assert gate.passed and gate.max_abs_diff < 1e-5, json.dumps(gate.to_dict())
