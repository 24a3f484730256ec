"""Run folders, report.json and the CLI: atomic writes, report.json last, incomplete or
inconsistent folders refused by name, everything from report.json escaped in the HTML, and the
CLI's one-line errors (exit 2) for bad paths, found before any model work."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import interp_audit as ia
from interp_audit.audit.report_view import render_html
from interp_audit.cli.main import main
from interp_audit.core.errors import IncompleteRunError
from interp_audit.core.files import write_atomic
from interp_audit.output.run_folder import check_run_folder
from interp_audit.output.validate import ReportFileError, validate_report

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "circuits" / "handbuilt" / "audit.yaml"


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """One complete run of the hand-built audit (saved once, copied per test)."""
    out = tmp_path_factory.mktemp("run") / "out"
    ia.audit(SPEC).save(out)
    return out


@pytest.fixture
def folder(run_folder, tmp_path):
    dst = tmp_path / "out"
    shutil.copytree(run_folder, dst)
    return dst


def cli(args, capsys) -> tuple[int, str]:
    rc = main([str(a) for a in args])
    err = capsys.readouterr().err.strip()
    return rc, err


def test_a_complete_folder_is_valid_and_report_json_is_the_commit_mark(folder):
    data = check_run_folder(folder)
    assert set(data["files"]) == {
        f"effects/{k}/effects.{ext}" for k in data["located"] for ext in ("json", "safetensors")
    }
    assert not list(folder.rglob("*.tmp"))
    # report.json is the newest file: everything it vouches for was written before it
    newest = max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_mtime_ns)
    assert newest.name == "report.json"


FOLDER_FAULTS = [
    ("json removed", lambda f: (f / "report.json").unlink(), ["incomplete", "no report.json"]),
    ("json empty", lambda f: (f / "report.json").write_text(""), ["report.json is empty"]),
    (
        "json half-written",
        lambda f: (f / "report.json").write_text((f / "report.json").read_text()[:200]),
        ["report.json is not valid JSON", "line", "half-written"],
    ),
    (
        "json corrupt bytes",
        lambda f: (f / "report.json").write_bytes(b"\xff\xfe{"),
        ["not valid JSON"],
    ),
    ("json a list", lambda f: (f / "report.json").write_text("[1]"), ["JSON object", "list"]),
    (
        "effects tampered",
        lambda f: (f / "effects" / "heads_exact" / "effects.json").write_text("{}"),
        ["inconsistent", "effects/heads_exact/effects.json", "does not match"],
    ),
    (
        "effects missing",
        lambda f: shutil.rmtree(f / "effects" / "heads_atp"),
        ["inconsistent", "effects/heads_atp", "missing"],
    ),
    (
        "html from another run",
        lambda f: (f / "report.html").write_text("<html>old</html>"),
        ["inconsistent", "report.html was not rendered from this report.json"],
    ),
    (
        "manifest points outside",
        lambda f: _edit(f, lambda d: d["files"].update({"../x": "0" * 64})),
        ["outside the folder"],
    ),
]


def _edit(folder: Path, fn) -> None:
    data = json.loads((folder / "report.json").read_text())
    fn(data)
    (folder / "report.json").write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("name", "fault", "words"), FOLDER_FAULTS, ids=[c[0] for c in FOLDER_FAULTS]
)
def test_damaged_folder_is_refused_by_name(folder, name, fault, words):
    fault(folder)
    with pytest.raises(ia.AuditError) as info:
        check_run_folder(folder)
    for w in words:
        assert w in str(info.value), str(info.value)


def test_cli_report_refuses_incomplete_folder_in_one_line(folder, capsys):
    (folder / "report.json").unlink()
    rc, err = cli(["report", folder], capsys)
    assert rc == 2 and err.count("\n") == 0 and "incomplete" in err and str(folder) in err
    assert not (folder / "report.json").exists()


def test_cli_report_rerenders_a_valid_folder(folder, capsys):
    (folder / "report.html").write_text("stale")  # report re-renders the html, so this is fine
    rc, _ = cli(["report", folder, "--junit", folder / "j.xml"], capsys)
    data = check_run_folder(folder)  # and the folder is consistent again
    assert rc == (0 if data["passed"] else 1)
    assert (folder / "j.xml").read_text().startswith("<?xml")


# ---- crafted report.json: refused by key, or escaped ----

SCRIPT = "<script>alert(1)</script>"
CRAFTED = [
    ("checks.0.threshold", SCRIPT, "checks[0].threshold must be a number"),
    ("checks.0.threshold", None, "checks[0].threshold must be a number"),
    ("checks.0.statistic", "1", "checks[0].statistic must be a number"),
    ("checks.0.ci", [0], "checks[0].ci must be a list of two numbers"),
    ("checks.0.ci", ["a", 1], "checks[0].ci must be a list of two numbers"),
    ("checks.0.passed", "yes", "checks[0].passed must be true or false"),
    ("checks.0.name", 5, "checks[0].name must be a string"),
    ("checks.0.confidence", 2, "checks[0].confidence must be in (0, 1)"),
    ("checks.0.details", {}, "checks[0].details must be a list"),
    ("checks.0", "x", "checks[0] must be an object"),
    ("checks", {}, "checks must be a list"),
    ("passed", "true", "passed must be true or false"),
    ("name", None, "name must be a string"),
    ("provenance", [], "provenance must be an object"),
    ("located", [], "located must be an object"),
    ("files", [], "files must be an object"),
]


@pytest.mark.parametrize(
    ("key", "value", "words"), CRAFTED, ids=[f"{c[0]}={c[1]!r}" for c in CRAFTED]
)
def test_crafted_report_json_is_refused_naming_the_key(run_folder, key, value, words):
    data = json.loads((run_folder / "report.json").read_text())
    node, *path = key.split(".")
    if not path:
        data[node] = value
    else:
        target = data[node][int(path[0])] if len(path) == 2 else data[node]
        if len(path) == 2:
            target[path[1]] = value
        else:
            data[node][int(path[0])] = value
    with pytest.raises(ReportFileError) as info:
        validate_report(data, "report.json")
    assert words in str(info.value)


def test_crafted_threshold_through_the_cli_is_refused_not_injected(folder, capsys):
    """The issue's case: `interp-audit report` inserted a crafted threshold unescaped."""
    _edit(folder, lambda d: d["checks"][0].update(threshold=SCRIPT))
    rc, err = cli(["report", folder], capsys)
    assert rc == 2 and "checks[0].threshold must be a number" in err
    assert SCRIPT not in (folder / "report.html").read_text()


def test_every_string_from_report_json_is_escaped(run_folder):
    data = json.loads((run_folder / "report.json").read_text())
    data["name"] = SCRIPT
    c = data["checks"][0]
    c.update(name=SCRIPT, kind=SCRIPT, message=SCRIPT)
    for d in c["details"]:
        d["group"] = SCRIPT
    data["provenance"]["model"]["source"] = SCRIPT
    data["provenance"]["seed"] = SCRIPT
    loc = next(iter(data["located"].values()))
    loc["metric"] = SCRIPT
    loc["axes"] = {k: [SCRIPT] * len(v) for k, v in loc["axes"].items()}
    page = render_html(data)
    assert "alert(1)" in page  # shown as text ...
    assert SCRIPT not in page  # ... never as markup, in the tables or inside the plots' JSON
    assert "<script>alert" not in page.replace("\\u003c", "<").replace("\\u003e", ">")


# ---- atomic writes ----


def test_interrupted_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "report.json"
    target.write_text("old")

    def boom(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, "new")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == [
        "report.json"
    ]


def test_interrupted_save_leaves_an_incomplete_folder_never_a_mixed_one(folder, monkeypatch):
    """Save over a complete run, interrupted while writing the HTML: the old report.json is
    gone first, so the folder is refused as incomplete (not an old json beside new effects)."""
    report = ia.audit(SPEC)
    import interp_audit.audit.report_view as V

    def interrupted(data):
        raise KeyboardInterrupt

    monkeypatch.setattr(V, "render_html", interrupted)
    with pytest.raises(KeyboardInterrupt):
        report.save(folder)
    with pytest.raises(IncompleteRunError, match="incomplete"):
        check_run_folder(folder)
    monkeypatch.undo()
    report.save(folder)
    check_run_folder(folder)


def test_effects_folder_names_stay_inside_effects(tmp_path):
    from interp_audit.audit.run import effects_folder_name

    for step in ("..", ".", "../../x", "a/b", "atp*_heads", "x:y", "/abs"):
        name = effects_folder_name(step)
        assert "/" not in name and name not in (".", "..") and name.strip(".")
        assert (tmp_path / "effects" / name).resolve().parent == (tmp_path / "effects").resolve()


# ---- CLI paths: refused before any model work ----

CLI_CASES = [
    (lambda t: ["run", SPEC, "--out", _file(t)], ["--out", "is an existing file", "folder"]),
    (lambda t: ["run", SPEC, "--out", _file(t) / "sub"], ["is a file, not a folder"]),
    (lambda t: ["run", SPEC, "--out", t / "o", "--junit", t], ["--junit", "is a folder"]),
    (lambda t: ["run", t, "--out", t / "o"], ["is a folder; give the YAML file"]),
    (lambda t: ["run", t / "nope.yaml", "--out", t / "o"], ["nope.yaml", "does not exist"]),
    (lambda t: ["run", _spec(t, "tolerance: .inf"), "--out", t / "o"], ["tolerance", "finite"]),
    (lambda t: ["run", _spec(t, "n_boot: 10000000"), "--out", t / "o"], ["n_boot", "100000"]),
    (lambda t: ["report", t / "missing"], ["does not exist"]),
    (lambda t: ["report", t], ["has no report.json"]),
    (lambda t: ["report", _file(t)], ["is a file, not a run folder"]),
    (lambda t: ["report", SPEC.parent, "--junit", t], ["--junit", "is a folder"]),
    (
        lambda t: [
            "sweep",
            "--model",
            "zoo:nope",
            "--clean",
            "A x ->",
            "--counterfactual",
            "B x ->",
        ],
        ["no zoo model 'nope'"],
    ),
    (
        lambda t: [
            "sweep",
            "--model",
            "zoo:handbuilt-copy",
            "--clean",
            "A x ->",
            "--counterfactual",
            "B x ->",
            "--answers",
            "YES",
            "MAYBE",
        ],
        ["'MAYBE' outside the model's vocabulary"],
    ),
    (
        lambda t: [
            "sweep",
            "--model",
            "zoo:handbuilt-copy",
            "--clean",
            "A x ->",
            "--counterfactual",
            "B x ->",
            "--answers",
            "YES",
            "NO",
            "--sites",
            "headz",
        ],
        ["unknown sites 'headz'"],
    ),
    (
        lambda t: [
            "sweep",
            "--model",
            "zoo:handbuilt-copy",
            "--device",
            "banana",
            "--clean",
            "A x ->",
            "--counterfactual",
            "B x ->",
        ],
        ["unknown device 'banana'"],
    ),
    (lambda t: ["demo", "--out", _file(t)], ["is an existing file"]),
    (lambda t: ["demo", "--minilm", "--out", _file(t)], ["is an existing file"]),
    (
        lambda t: [
            *("sweep", "--model", "zoo:handbuilt-copy", "--clean", "A x ->"),
            *("--counterfactual", "B x ->", "--out", _file(t)),
        ],
        ["--out", "is an existing file"],
    ),
]


def _file(t: Path) -> Path:
    (t / "afile").write_text("x")
    return t / "afile"


def _spec(t: Path, line: str) -> Path:
    text = SPEC.read_text().replace("    tolerance: 0.01", f"    tolerance: 0.01\n    {line}", 1)
    if line.startswith("tolerance"):
        text = SPEC.read_text().replace("tolerance: 0.01", line, 1)
    (t / "spec.yaml").write_text(text)
    return t / "spec.yaml"


@pytest.mark.parametrize(("args", "words"), CLI_CASES, ids=[str(i) for i in range(len(CLI_CASES))])
def test_cli_errors_are_one_line_exit_2(tmp_path, capsys, monkeypatch, args, words):
    import interp_audit.audit.run as R

    if args(tmp_path)[0] == "run" and "--out" in args(tmp_path):
        # path errors must be found before the model is loaded
        monkeypatch.setattr(R, "load_model", lambda *a, **k: pytest.fail("loaded a model"))
    rc, err = cli(args(tmp_path), capsys)
    assert rc == 2, err
    assert err.startswith("interp-audit: error: ") and "\n" not in err and "Traceback" not in err
    for w in words:
        assert w in err, err
