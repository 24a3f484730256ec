"""The last findings of the hostile-input probe (issue 26 item 5), each pinned by a test that
asserts the error class and its words, or the number that was wrong."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import pytest

import interp_audit as ia
from interp_audit.core.files import current_umask, write_atomic

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "circuits" / "handbuilt" / "audit.yaml"


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


# ---- files are written with the umask's mode, as a plain write would ----


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_write_atomic_honours_the_umask(tmp_path, mask, expected):
    with umask(mask):
        assert current_umask() == mask
        write_atomic(tmp_path / "new.txt", "x")
        with open(tmp_path / "plain.txt", "w") as f:  # what a plain write gives
            f.write("x")
    assert _mode(tmp_path / "new.txt") == expected == _mode(tmp_path / "plain.txt")


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_write_atomic_keeps_an_existing_files_mode(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    target.chmod(0o640)
    with umask(0o077):
        write_atomic(target, "new")
    assert target.read_text() == "new" and _mode(target) == 0o640


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600)])
def test_every_file_of_a_run_folder_is_readable_as_the_umask_allows(tmp_path, mask, expected):
    """report.html, report.json, junit.xml and the effects files: none stays 0600 under 022."""
    report = ia.audit(SPEC)
    with umask(mask):
        report.save(tmp_path / "out", junit=tmp_path / "junit.xml")
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()] + [tmp_path / "junit.xml"]
    names = {p.name for p in written}
    assert {"report.html", "report.json", "junit.xml", "effects.json"} <= names
    assert "effects.safetensors" in names
    assert {p.relative_to(tmp_path).as_posix(): oct(_mode(p)) for p in written} == {
        p.relative_to(tmp_path).as_posix(): oct(expected) for p in written
    }


# ---- `interp-audit sweep --method bogus` names the method and the registered ones ----

SWEEP = ["sweep", "--model", "zoo:handbuilt-copy", "--clean", "A x ->", "--counterfactual"]


@pytest.mark.parametrize(
    ("method", "words"),
    [
        ("bogus", ["unknown locate method 'bogus'", "registered: patch, atp, atp*, ig"]),
        ("atpp", ["unknown locate method 'atpp'", "did you mean 'atp'"]),
    ],
)
def test_sweep_with_an_unknown_method_names_it_and_the_valid_ones(capsys, method, words):
    from interp_audit.cli.commands import commands
    from interp_audit.cli.main import _parser, main
    from interp_audit.core.errors import SpecError

    argv = [*SWEEP, "B x ->", "--answers", "YES", "NO", "--method", method]
    with pytest.raises(SpecError) as info:
        commands()["sweep"].main(_parser().parse_args(argv))
    assert "validation error" not in str(info.value)
    for w in words:
        assert w in str(info.value)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("interp-audit: error: unknown locate method") and "\n" not in err
    assert "ValidationError" not in err and all(w in err for w in words)


# ---- a reference with a token id past the vocabulary: ContrastError, not IndexError ----

OOV_REF = ([[0, 3, 999, 7]], [[0, 4, 5, 7]], [[8, 9]])  # id 999 for a 50-token vocabulary


def _run(subject, comps, **kw):
    import torch

    with ia.ablate(subject, comps, **kw):
        subject.adapter.forward_hidden(torch.tensor([[0, 3, 5, 7]]), torch.ones(1, 4))


@pytest.mark.parametrize("kind", ["mean", "resample"])
def test_ablation_reference_with_an_out_of_vocabulary_id_names_pair_position_and_id(
    causal_subject, kind
):
    ref = ia.ContrastSet.from_tokens(*OOV_REF)
    with pytest.raises(ia.ContrastError) as info:
        _run(causal_subject, ["L0H0"], kind=kind, reference=ref)
    msg = str(info.value)
    for w in ["reference: pair 0", "id 999 at position 2", "vocabulary 0..49", "d_vocab=50"]:
        assert w in msg, msg
    assert not isinstance(info.value, IndexError)


def test_every_entry_point_checks_the_reference(causal_subject):
    import torch

    from interp_audit.engine.interventions import reference_activations

    tensor_ref = torch.tensor([[0, 3, 5, 7], [0, 3, 999, 7]])
    with pytest.raises(ia.ContrastError, match=r"reference: token id 999 at row 1 position 2 .*"
                       r"vocabulary 0..49 \(d_vocab=50\)"):  # fmt: skip
        _run(causal_subject, ["L0H0"], kind="mean", reference=tensor_ref)
    with pytest.raises(ia.ContrastError, match="reference: pair 0 .* id 999 at position 2"):
        reference_activations(causal_subject, ia.ContrastSet.from_tokens(*OOV_REF), ["hook_embed"])
    with pytest.raises(ia.ContrastError, match="id 999 at position 2"):
        with ia.patch_in(causal_subject, ["L0H0"], ia.ContrastSet.from_tokens(*OOV_REF)):
            pass
    # and the model is clean afterwards: the same in-vocabulary reference works
    ok = ia.ContrastSet.from_tokens([[0, 3, 9, 7]], [[0, 4, 5, 7]], [[8, 9]])
    _run(causal_subject, ["L0H0"], kind="mean", reference=ok)


# ---- identical pairs are one unit of evidence: copies do not narrow the CI ----

FOUR = [
    ("age:old ins:medicare lab:normal hosp:1 ->", "age:young ins:medicare lab:normal hosp:1 ->"),
    ("age:old ins:private lab:high hosp:0 ->", "age:young ins:private lab:high hosp:0 ->"),
    ("age:old ins:medicaid lab:low hosp:1 ->", "age:young ins:medicaid lab:low hosp:1 ->"),
    ("age:mid ins:medicare lab:high hosp:0 ->", "age:young ins:medicare lab:high hosp:0 ->"),
]


def _file_audit(subject, folder: Path, copies: int):
    import json

    path = folder / f"pairs{copies}.jsonl"
    path.write_text(
        "".join(
            json.dumps({"clean": c, "counterfactual": f}) + "\n"
            for _ in range(copies)
            for c, f in FOUR
        )
    )
    spec = {
        "model": {"source": "zoo:readmission"},
        "contrasts": {"c": {"file": path.name, "answers": ["YES", "NO"]}},
        "checks": [{"kind": "invariance", "contrast": "c", "tolerance": 0.25, "min_clusters": 2}],
    }
    return ia.audit(spec, subject=subject, base=folder).checks[0]


def test_a_file_repeating_its_pairs_50_times_has_the_ci_of_the_4_pairs(
    readmission_subject, tmp_path
):
    from interp_audit.engine.contrasts import DuplicatePairWarning

    once = _file_audit(readmission_subject, tmp_path, 1)
    with pytest.warns(DuplicatePairWarning, match="identical pairs are one unit of evidence"):
        fifty = _file_audit(readmission_subject, tmp_path, 50)
    assert once.clusters == fifty.clusters == 4
    assert fifty.statistic == pytest.approx(once.statistic, abs=1e-6)
    assert fifty.ci == pytest.approx(once.ci, abs=1e-9)  # was 0.13 wide against 1.5 here
    assert fifty.ci[1] - fifty.ci[0] > 1.0
    (note,) = [d for d in fifty.details if "identical pairs merged" in d]
    assert note["identical pairs merged"] == 196 and note["pairs"] == 200 and note["clusters"] == 4
    assert "196 of its 200 pairs repeat another pair exactly" in note["note"]
    assert "merged into one cluster each" in note["note"]
    assert not [d for d in once.details if "identical pairs merged" in d]


def test_identical_token_pairs_share_a_cluster_unless_clusters_are_declared(causal_subject):
    from interp_audit.engine.contrasts import DuplicatePairWarning

    rows = [[0, 3, 5, 7], [0, 6, 5, 7]]
    cf = [[0, 4, 5, 7], [0, 8, 5, 7]]
    with pytest.warns(DuplicatePairWarning, match="repeats pair 0"):
        cs = ia.ContrastSet.from_tokens(rows * 3, cf * 3, [[8, 9]] * 6)
    assert cs.clusters == ("pair 0", "pair 1") * 3 and cs.meta["identical_pairs_merged"] == 4
    distinct = ia.ContrastSet.from_tokens(rows, cf, [[8, 9]] * 2)
    assert distinct.clusters is None and "identical_pairs_merged" not in distinct.meta
    declared = ia.ContrastSet.from_tokens(rows * 3, cf * 3, [[8, 9]] * 6, clusters="abcdef")
    assert declared.clusters == tuple("abcdef")  # the declared units are the evidence


# ---- a results hash equal for identical runs; verify compares two folders with it ----


def test_identical_runs_share_a_results_hash_and_verify_against_compares_them(tmp_path, capsys):
    import json

    from interp_audit.audit.record import content_hash, results_hash
    from interp_audit.cli.main import main

    a = ia.audit(SPEC).save(tmp_path / "a")
    b = ia.audit(SPEC).save(tmp_path / "elsewhere" / "b")
    ja, jb = (json.loads((d / "report.json").read_text()) for d in (a, b))
    assert ja["results_sha256"] == jb["results_sha256"] == results_hash(jb)
    # the finding: content_sha256 covers the record (timestamp, folder); the results hash not
    later = {**jb, "provenance": {**jb["provenance"], "timestamp": "2031-01-01T00:00:00+00:00"}}
    assert content_hash(later) != content_hash(jb)
    assert results_hash(later) == results_hash(jb)
    assert main(["verify", str(a), "--against", str(b)]) == 0
    out = capsys.readouterr().out
    assert "the same results_sha256" in out and "every number" in out

    # a different number, with both hashes recomputed (no tampering): found and named
    jb["checks"][0]["statistic"] += 0.5
    jb["results_sha256"] = results_hash(jb)
    jb["content_sha256"] = content_hash(jb)
    (b / "report.json").write_text(json.dumps(jb))
    assert main(["verify", str(a), "--against", str(b)]) == 1
    out = capsys.readouterr().out
    assert "different results_sha256" in out and "[number] checks[0].statistic" in out
    assert "[tamper]" not in out

    # an edited number without its hashes: tampering, named by folder and field
    jb["checks"][0]["statistic"] += 0.5
    (b / "report.json").write_text(json.dumps(jb))
    assert main(["verify", str(a), "--against", str(b)]) == 1
    out = capsys.readouterr().out
    assert f"[tamper] {b}/results_sha256" in out and f"[tamper] {b}/content_sha256" in out

    with pytest.raises(ia.AuditError, match="has no report.json"):
        from interp_audit.audit.verify import compare_runs

        compare_runs(a, tmp_path / "nothing")
    assert main(["verify", str(a), "--against", str(tmp_path / "nothing")]) == 2
    assert "has no report.json" in capsys.readouterr().err
