"""The audit record and ``interp-audit verify``: tamper and drift evidence on a folder model."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import interp_audit as ia
from interp_audit.audit.record import HASH_FIELD, content_hash, file_sha256, state_sha256
from interp_audit.cli.main import main as cli

SPEC = """# the hand-built copy model, saved to a folder: weights are files here
name: verify-me
seed: 0
model: {source: model}
contrasts:
  swap:
    template: "{subject} {filler} ->"
    slots: {filler: [x, y]}
    swap: {slot: subject, pairs: [[A, B]]}
    answers: [YES, NO]
    group_by: filler
  data: {file: pairs.csv, answers: [YES, NO]}
locate:
  - {method: patch, contrast: swap, sites: heads, name: heads_exact}
checks:
  - {name: subject_matters, kind: invariance, contrast: swap, tolerance: 1, min_clusters: 1}
  - {name: from_file, kind: invariance, contrast: data, tolerance: 10, min_clusters: 1}
  - name: located_heads_removed
    kind: intervention
    contrast: swap
    ablate: {from_locate: heads_exact, top_k: 1, kind: zero}
    tolerance: 0.01
    utility: {contrast: swap, metric: logit_diff, budget: 100}
    min_clusters: 1
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("verify")
    ia.load_model("zoo:handbuilt-copy").save(root / "model")
    (root / "pairs.csv").write_text("clean,counterfactual,cluster\nA x ->,B x ->,c1\n")
    (root / "audit.yaml").write_text(SPEC)
    assert cli(["run", str(root / "audit.yaml"), "--out", str(root / "out")]) == 1  # fails
    return root


def test_the_record_is_complete(run):
    data = json.loads((run / "out" / "report.json").read_text())
    prov = data["provenance"]
    assert prov["spec_text"] == SPEC  # comments kept
    assert prov["spec_sha256"] == file_sha256(run / "audit.yaml")
    assert (
        prov["command"].startswith("interp-audit run ")
        and str(run / "audit.yaml") in (prov["command"])
    )
    subject = ia.load_model(str(run / "model"))
    assert prov["weights"]["state_sha256"] == state_sha256(subject.model)
    assert prov["weights"]["files"]["model.safetensors"] == file_sha256(
        run / "model" / "model.safetensors"
    )
    assert prov["data_files"]["contrasts.data.file"]["sha256"] == file_sha256(run / "pairs.csv")
    # from_locate: the ablated head is recorded by name (the exact sweep's top head is L0H0)
    assert prov["ablations"]["located_heads_removed"]["components"] == ["L0H0"]
    ex = prov["examples"]["swap"][0]
    assert ex["clean_tokens"] == ["<bos>", "A", "x", "->"] and ex["cluster"] == "A/B"
    assert ex["answer_tokens"] == ["YES", "NO"]
    assert {"seed", "versions", "model", "git", "causal_graph"} <= set(prov)
    assert prov["model"]["device"] == "cpu" and prov["model"]["dtype"] == "float32"
    assert data[HASH_FIELD] == content_hash(data)
    page = (run / "out" / "report.html").read_text()
    assert "# the hand-built copy model, saved to a folder" in page and "L0H0" in page
    assert prov["weights"]["state_sha256"] in page and "interp-audit run" in page


def test_verify_passes_then_catches_a_changed_number_and_a_changed_weight(run, tmp_path, capsys):
    import shutil

    assert cli(["verify", str(run / "out")]) == 0
    assert "every number" in capsys.readouterr().out

    edited = tmp_path / "edited"
    shutil.copytree(run / "out", edited)
    data = json.loads((edited / "report.json").read_text())
    data["checks"][0]["statistic"] += 0.5
    (edited / "report.json").write_text(json.dumps(data))
    assert cli(["verify", str(edited)]) == 1
    out = capsys.readouterr().out
    assert "[tamper] content_sha256" in out and "[number] checks[0].statistic" in out

    weights = run / "model" / "model.safetensors"
    state = load_file(str(weights))
    key = next(k for k in state if k.endswith("W_E"))
    state[key] = state[key] * 1.5
    save_file(state, str(weights))
    assert cli(["verify", str(run / "out")]) == 1
    out = capsys.readouterr().out
    assert "[input] weight file model.safetensors" in out
    assert "[input] weights (tensors)" in out and "[number] checks[0].statistic" in out
    assert cli(["verify", str(tmp_path / "nothing")]) == 2


def test_verify_numbers_come_from_a_real_rerun(run):
    """A hand-check of what verify compares: the saved statistic is the analytic +8."""
    data = json.loads((run / "out" / "report.json").read_text())
    assert data["checks"][0]["statistic"] == pytest.approx(8.0)
    assert data["verdict"] == "fail" and data["checks"][0]["verdict"] == "fail"
    assert torch.tensor(data["located"]["heads_exact"]["values"]).flatten()[0] == pytest.approx(1.0)
    assert Path(data["provenance"]["base"]) == run
