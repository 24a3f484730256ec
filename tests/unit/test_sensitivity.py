"""interp-audit sensitivity: verdicts under every admissibility choice for contested paths and
under alternative SCM files, each path measured once (hand-wired model, exact effects)."""

from __future__ import annotations

import json

import pytest
import yaml

from interp_audit.audit.sensitivity import sensitivity
from interp_audit.core.errors import SpecError
from tests.linear_paths import CAUSAL, build_linear, linear_spec


@pytest.fixture(scope="module")
def linear_subject():
    return build_linear()


def spec(**extra):
    out = linear_spec(
        {"name": "paths", "kind": "path_invariance", "source": "A", "tolerance": 0.5},
        {"name": "repair", "kind": "intervention", "contrast": "direct",
         "ablate": {"components": ["L0H0"], "kind": "zero"}, "tolerance": 0.05,
         "utility": {"contrast": "units", "metric": "logit_diff", "budget": 1.0}},
        direct={"scm": "causal", "source": "A", "paths": "A -> Y", "n": 50, "seed": 5},
        units={"scm": "causal", "factual": True, "n": 300, "group_by": "A", "label": "L"},
    )  # fmt: skip
    out.update(extra)
    return out


def test_the_contested_path_flips_the_path_check_and_is_measured_once(linear_subject, monkeypatch):
    import interp_audit.audit.causal_measure as cmeas

    calls = []
    real = cmeas.pair_effects
    monkeypatch.setattr(cmeas, "pair_effects", lambda *a, **k: calls.append(1) or real(*a, **k))
    res = sensitivity(spec(), contest=["A -> Z -> Y"], subject=linear_subject)
    yes, no = "A -> Z -> Y admissible", "A -> Z -> Y inadmissible"
    assert res.labels == [yes, no]
    # A -> Z -> Y carries +0.6 on every changed pair; the other inadmissible path, A -> Y, -0.4
    assert res.verdicts["paths"] == {yes: "pass", no: "fail"}
    assert res.statistics["paths"][yes] == pytest.approx(-0.4, abs=1e-5)
    assert res.statistics["paths"][no] == pytest.approx(0.6, abs=1e-5)
    assert len(calls) == 4  # four paths from A, each measured once for both choices
    assert res.choice_free == ["repair"]  # it never asks about admissibility: run once
    assert res.holds_under_all() == ["repair"] and res.depends() == ["paths"]
    assert not res.passed
    roles = {p["path"]: p["roles"] for p in res.paths}
    assert roles["A -> Z -> Y"] == {"adm. A -> Z -> Y": "admissible",
                                    "inadm. A -> Z -> Y": "inadmissible"}  # fmt: skip


def test_alternative_scms_and_the_spec_section(linear_subject, tmp_path):
    tables = yaml.safe_load(yaml.safe_dump(CAUSAL["scm"], sort_keys=False))
    tables["Z"]["p"] = {k: [1.0, 0.0] for k in tables["Z"]["p"]}  # Z never moves: A -> Z -> Y is 0
    (tmp_path / "alt.yaml").write_text(yaml.safe_dump({"variables": tables}, sort_keys=False))
    section = {"contest": ["A -> Z -> Y"], "scms": [str(tmp_path / "alt.yaml")]}
    res = sensitivity(spec(sensitivity=section), subject=linear_subject)
    assert len(res.choices) == 4
    alt_no = f"A -> Z -> Y inadmissible; scm {tmp_path / 'alt.yaml'}"
    # under the alternative equations the proxy path changes nothing: only A -> Y is left
    assert res.verdicts["paths"][alt_no] == "pass"
    assert res.statistics["paths"][alt_no] == pytest.approx(-0.4, abs=1e-5)
    out = res.save(tmp_path / "out")
    data = json.loads((out / "sensitivity.json").read_text())
    assert data["depends on the choice"] == ["paths"]
    assert "| paths |" in (out / "sensitivity.md").read_text()


def test_errors_name_the_problem(linear_subject):
    with pytest.raises(SpecError, match="contested path 'A -> Q -> Y'"):
        sensitivity(spec(), contest=["A -> Q -> Y"], subject=linear_subject)
    with pytest.raises(SpecError, match="needs contested paths"):
        sensitivity(spec(), subject=linear_subject)
    with pytest.raises(SpecError, match="alternative SCM file 'nope.yaml' does not exist"):
        sensitivity(spec(), scms=["nope.yaml"], subject=linear_subject)


def test_cli_exit_status_and_table(linear_subject, tmp_path, capsys):
    from interp_audit.cli.main import main

    linear_subject.save(tmp_path / "model")
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec(model={"source": "model"}), sort_keys=False))
    rc = main(["sensitivity", str(path), "--contest", "A -> Z -> Y", "--out", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert rc == 1 and "| paths | pass (-0.400) | FAIL (+0.600) | no |" in out
    assert (tmp_path / "o" / "sensitivity.md").exists()
    assert main(["sensitivity", str(path), "--contest", "A -> Q -> Y"]) == 2


def test_an_admissibility_choice_overrides_the_rules_and_round_trips():
    from interp_audit.causal import CausalGraph

    g = CausalGraph.from_dict(CAUSAL["graph"])
    assert not g.admissible("A -> Z -> Y") and g.admissible("A -> M -> Y")
    h = g.with_admissibility({"A -> Z -> Y": True, "A -> M -> Y": False})
    assert h.admissible("A -> Z -> Y") and not h.admissible("A -> M -> Y")
    assert h.why("A -> M -> Y") == "contested: taken as inadmissible (sensitivity choice)"
    assert not g.admissible("A -> Z -> Y")  # the original is untouched
    assert CausalGraph.from_dict(h.to_dict()) == h and h != g
    with pytest.raises(SpecError, match="'Q' is not a variable of the graph"):
        g.with_admissibility({"A -> Q -> Y": True})
