"""Checks from Python (ia.check), CheckResult display, the plan, the spec reference and schema,
and position labels of ragged contrast sets."""

import json
from pathlib import Path

import pytest

import interp_audit as ia
from interp_audit.audit.plan import plan_rows
from interp_audit.audit.reference import json_schema, reference
from interp_audit.cli.main import main as cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def subject():
    return ia.load_model("zoo:handbuilt-copy")


@pytest.fixture(scope="module")
def pairs(subject):
    return ia.ContrastSet.from_prompts(
        subject,
        ["A x ->", "A y ->"],
        ["B x ->", "B y ->"],
        answers=("YES", "NO"),
        groups=["x", "y"],
        clusters=["A/B", "A/B"],
    )


def test_check_from_python_matches_the_analytic_effect_and_states_its_verdict(subject, pairs):
    res = ia.check("invariance", subject, pairs, tolerance=7.9, min_clusters=1)
    assert res.statistic == pytest.approx(8.0) and res.verdict == "fail"  # +4 - (-4)
    assert [d["group"] for d in res.details] == ["all", "x", "y"]
    unsure = ia.check("invariance", subject, pairs, tolerance=7.9)  # default min_clusters 10
    assert unsure.verdict == "inconclusive" and not unsure.passed
    assert "1 cluster < min_clusters 10" in unsure.reason
    page = unsure._repr_html_()
    assert "INCONCLUSIVE" in page and "half-width" in page
    fixed = ia.check(
        "intervention",
        subject,
        pairs,
        tolerance=0.01,
        min_clusters=1,
        ablate={"components": ["L0H0"], "kind": "mean", "reference": pairs},
        utility={"contrast": pairs, "metric": "accuracy", "budget": 1.0},
    )
    after = [d for d in fixed.details if d["measure"] == "effect after"][0]
    assert after["value"] == pytest.approx(0.0, abs=1e-6) and fixed.verdict == "pass"
    with pytest.raises(ia.SpecError, match="unknown key 'tolerence'.*did you mean 'tolerance'"):
        ia.check("invariance", subject, pairs, tolerence=1)
    with pytest.raises(ia.SpecError, match="did you mean 'invariance'"):
        ia.check("invariant", subject, pairs, tolerance=1)


def test_plan_needs_clusters_in_proportion_to_the_squared_half_width():
    res = ia.CheckResult(
        "c",
        "invariance",
        "inconclusive",
        0.0,
        (-0.02, 0.02),
        0.01,
        "",
        details=[
            {
                "group": "all",
                "effect": 0.0,
                "half_width": 0.02,
                "clusters": 5,
                "tolerance": 0.01,
                "ci": [-0.02, 0.02],
            },
            {
                "group": "g",
                "effect": 0.006,
                "half_width": 0.002,
                "clusters": 40,
                "tolerance": 0.01,
                "ci": [0.004, 0.008],
            },
            {
                "group": "h",
                "effect": 0.03,
                "half_width": 0.01,
                "clusters": 12,
                "tolerance": 0.01,
                "ci": [0.02, 0.04],
            },
        ],
    )
    rows = plan_rows([res])
    # zero effect: half-width 0.02 must fall below the tolerance 0.01: 5 * (0.02/0.01)^2 = 20
    assert rows[0].needed == 20 and rows[0].distance == pytest.approx(0.01)
    assert rows[0].sd_between == pytest.approx(0.02 * 5**0.5 / 1.959963984540054)
    # already decidable with fewer clusters than the minimum: the minimum (10)
    assert rows[1].needed == 10
    # 0.03 vs 0.01: distance 0.02 > half-width 0.01: 12 * (0.01/0.02)^2 = 3 -> at least 10
    assert rows[2].needed == 10


def test_spec_reference_is_in_sync_and_every_key_is_documented(capsys):
    page = (ROOT / "docs" / "spec-reference.md").read_text()
    assert page == reference(), (
        "run: python -m interp_audit.audit.reference > docs/spec-reference.md"
    )
    undocumented = [ln for ln in page.splitlines() if ln.startswith("| `") and ln.endswith("|  |")]
    assert undocumented == []
    assert cli(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema == json.loads(json.dumps(json_schema()))
    assert "min_clusters" in json.dumps(schema) and "cluster_by" in json.dumps(schema)
    assert schema["properties"]["seed"]["description"].startswith("Seed for everything random")


def test_ragged_position_labels_name_only_shared_tokens(subject):
    ragged = ia.ContrastSet.from_prompts(
        subject, ["A x ->", "A x y ->"], ["B x ->", "B x y ->"], answers=("YES", "NO")
    )
    # position 3 holds '->' in one pair and 'y' in the other; position 4 exists only in one
    assert ragged.position_labels() == ["0 <bos>", "1 A", "2 x", "3 ->|y", "4 ->"]
    many = ia.ContrastSet.from_prompts(
        subject, ["A x ->", "A y ->", "B x ->", "B y ->"], ["B x ->", "B y ->", "A x ->", "A y ->"]
    )
    assert many.position_labels()[1:3] == ["1 A|B", "2 x|y"]


def test_run_gate_fails_inconclusive_unless_allowed(tmp_path, capsys):
    spec = (ROOT / "circuits" / "handbuilt" / "audit.yaml").read_text()
    (tmp_path / "a.yaml").write_text(spec.replace("    min_clusters: 1\n", ""))
    run = ["run", str(tmp_path / "a.yaml")]
    assert cli([*run, "--out", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err
    assert "inconclusive: filler_is_irrelevant: group 'all': 1 cluster < min_clusters 10" in err
    assert cli([*run, "--out", str(tmp_path / "w"), "--allow-inconclusive"]) == 0
    assert "warning: no check failed" in capsys.readouterr().err
