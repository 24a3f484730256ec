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
