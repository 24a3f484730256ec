"""Audit specs, the four check kinds on the hand-built model, reports, JUnit and the CLI."""

import copy
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import interp_audit as ia
from interp_audit.audit.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "circuits" / "handbuilt" / "audit.yaml"

SWAP = {
    "template": "{subject} {filler} ->",
    "slots": {"filler": ["x", "y"]},
    "swap": {"slot": "subject", "pairs": [["A", "B"]]},
    "answers": ["YES", "NO"],
    "group_by": "filler",
}
FILLER = {
    "template": "{subject} {filler} ->",
    "slots": {"subject": ["A", "B"]},
    "swap": {"slot": "filler", "pairs": [["x", "y"]]},
    "answers": ["YES", "NO"],
}
BASE = {
    "name": "t",
    "model": {"source": "zoo:handbuilt-copy"},
    "contrasts": {"swap": SWAP, "filler": FILLER},
    "checks": [],
}


def spec_with(*checks, **extra):
    """The base spec with these checks; exact hand-built effects: one cluster is enough."""
    s = copy.deepcopy(BASE)
    s["checks"] = [{"min_clusters": 1, **c} for c in checks]
    s.update(extra)
    return s


# ---- validation: a dozen bad specs, each message asserted -----------------------------------

BAD_SPECS = [
    (lambda s: s.update(chekcs=[]), r"unknown key 'chekcs' \(did you mean 'checks'\?\)"),
    (
        lambda s: s["model"].update(sorce="x"),
        r"unknown key 'model.sorce' \(did you mean 'source'\?\)",
    ),
    (lambda s: s.pop("model"), r"missing required key 'model'"),
    (
        lambda s: s["checks"].append({"kind": "invariant", "contrast": "swap", "tolerance": 1}),
        r"unknown check kind 'invariant'.*did you mean 'invariance'",
    ),
    (
        lambda s: s["checks"].append({"kind": "invariance", "contrast": "swp", "tolerance": 1}),
        r"checks\[0\].contrast names contrast 'swp', which is not defined.*did you mean 'swap'",
    ),
    (
        lambda s: s["checks"].append({"kind": "invariance", "contrast": "swap", "tolerence": 1}),
        r"unknown key 'checks.0.tolerence' \(did you mean 'tolerance'",
    ),
    (
        lambda s: s["checks"].append({"kind": "invariance", "contrast": "swap", "tolerance": -1}),
        r"checks.0.tolerance: Input should be greater than or equal to 0",
    ),
    (
        lambda s: s["contrasts"]["swap"].update(tempalte="x"),
        r"unknown key 'contrasts.swap.tempalte' \(did you mean 'template'\?\)",
    ),
    (
        lambda s: s["contrasts"]["swap"]["swap"].update(slot="q"),
        r"contrasts.swap: swap slot 'q' is not in the template",
    ),
    (
        lambda s: s["contrasts"].update(bad={"tmpl": "x"}),
        r"contrasts.bad: a contrast needs one of 'template', 'file' or 'scm'",
    ),
    (
        lambda s: s.update(metric={"name": "logit_dif"}),
        r"metric.name: Input should be 'logit_diff'",
    ),
    (
        lambda s: s["checks"].append(
            {
                "kind": "intervention",
                "contrast": "swap",
                "tolerance": 0.1,
                "ablate": {"components": ["L0H0"], "kind": "mean"},
                "utility": {"contrast": "swap", "budget": 0.1},
            }
        ),
        r"checks.0.ablate: mean ablation needs a 'reference' contrast",
    ),
    (
        lambda s: s["checks"].extend(
            [
                {"kind": "invariance", "contrast": "swap", "tolerance": 1, "name": "a"},
                {"kind": "invariance", "contrast": "swap", "tolerance": 1, "name": "a"},
            ]
        ),
        r"check name 'a' is used twice",
    ),
    (
        lambda s: s["contrasts"]["swap"].update(slots={"filler": ["x"], "extra": ["z"]}),
        r"slot 'extra' is not in the template",
    ),
]


@pytest.mark.parametrize("mutate, message", BAD_SPECS)
def test_bad_specs_name_the_key(mutate, message):
    s = copy.deepcopy(BASE)
    mutate(s)
    with pytest.raises(ia.SpecError, match=message):
        load_spec(s)


def test_yaml_errors_and_yes_no_answers():
    with pytest.raises(ia.SpecError, match="not valid YAML at line 1"):
        load_spec("model: [1, 2")
    with pytest.raises(ia.SpecError, match="must be a mapping"):
        load_spec("- 1\n- 2\n")
    parsed, _ = load_spec(SPEC)
    assert parsed.contrasts["subject_swap"].answers == ("YES", "NO")  # not booleans
    assert parsed.digest() == load_spec(SPEC)[0].digest()


# ---- each check kind passes and fails on the hand-built model (analytic numbers) -------------


def run_checks(*checks):
    return ia.audit(spec_with(*checks)).checks


def test_invariance_pass_and_fail():
    ok, bad = run_checks(
        {"kind": "invariance", "contrast": "filler", "tolerance": 0.01, "name": "ok"},
        {"kind": "invariance", "contrast": "swap", "tolerance": 7.9, "name": "bad"},
    )
    assert ok.passed and ok.statistic == pytest.approx(0.0) and ok.ci == (0.0, 0.0)
    assert not bad.passed and bad.statistic == pytest.approx(8.0)  # +4 - (-4)
    assert [d["group"] for d in bad.details] == ["all", "x", "y"]


def test_path_invariance_pass_and_fail():
    (res,) = run_checks(
        {
            "kind": "path_invariance",
            "inadmissible": {"filler_path": "filler"},
            "admissible": {"subject_path": "swap"},
            "tolerance": 0.01,
        }
    )
    assert res.passed and "admissible (allowed): subject_path +8.0000" in res.message
    (res,) = run_checks(
        {
            "kind": "path_invariance",
            "inadmissible": {"subject_path": "swap", "filler_path": "filler"},
            "tolerance": 0.01,
        }
    )
    assert not res.passed and "violated on subject_path" in res.message


def test_component_mediation_pass_and_fail():
    ok, bad, together = run_checks(
        {
            "kind": "component_mediation",
            "contrast": "swap",
            "sites": ["L1H0", "L1H1"],
            "max_share": 0.8,
            "name": "relay",
        },
        {
            "kind": "component_mediation",
            "contrast": "swap",
            "sites": "heads",
            "max_share": 0.8,
            "name": "mover",
        },
        {
            "kind": "component_mediation",
            "contrast": "swap",
            "sites": ["L1H0", "L1H1"],
            "together": True,
            "max_share": 0.7,
            "name": "set",
        },
    )
    assert ok.passed and ok.statistic == pytest.approx(0.75)
    assert (
        not bad.passed
        and bad.statistic == pytest.approx(1.0)
        and bad.details[0]["component"] == "L0H0"
    )
    assert not together.passed and together.statistic == pytest.approx(0.75)


def test_component_mediation_with_no_effect_left_to_mediate(handbuilt):
    """Shares divide by the effect: once a repair has removed it (float rounding is all that
    is left) the check says so and passes instead of failing on rounding / rounding; an effect
    that is not rounding but whose interval includes 0 (flips both ways) is inconclusive."""
    import torch

    from interp_audit.audit.kinds.component_mediation import shares

    tok = {"A": 3, "B": 4, "x": 5, "y": 6}
    rows = [("A", "x", "B", "x"), ("B", "y", "A", "y")] * 6  # +8 and -8: mean effect 0

    def ids(s, f):
        return [0, tok[s], tok[f], 7]

    both_ways = ia.ContrastSet.from_tokens(
        [ids(a, b) for a, b, _, _ in rows], [ids(c, d) for _, _, c, d in rows], [[8, 9]] * 12,
        clusters=[str(i) for i in range(12)],
    )  # fmt: skip
    res = ia.check("component_mediation", handbuilt, both_ways, sites="heads", max_share=0.8)
    assert res.verdict == "inconclusive" and "includes 0" in res.reason
    (effect,) = [d for d in res.details if "measure" in d]
    assert effect["value"] == pytest.approx(0.0, abs=1e-6)
    # rounding: what a removed effect leaves (readmission after erasure: ~1e-7 of logits ~3)
    gen = torch.Generator().manual_seed(0)
    base = 3.0 + 1e-7 * torch.randn(40, generator=gen, dtype=torch.float64)
    source = 3.0 + 1e-7 * torch.randn(40, generator=gen, dtype=torch.float64)
    patched = torch.stack([source, base, 3.0 + 1e-7 * torch.randn(40, generator=gen)])
    naive = shares(torch.ones(1, 40, dtype=torch.float64), patched, base, source)[0]
    assert naive.abs().max() > 0.9  # the spurious shares the check no longer divides out
    from interp_audit.audit.kinds import component_mediation as cm

    chk = cm.ComponentMediationCheck(kind="component_mediation", contrast="c", max_share=0.9)
    cs = ia.ContrastSet.from_tokens(
        [[0, 3, 5, 7]] * 40, [[0, 4, 5, 7]] * 40, [[8, 9]] * 40, clusters=list(map(str, range(40)))
    )
    got = cm._nothing_to_mediate(chk, "m", base, source, cs, {"n_boot": 200, "seed": 0,
                                                             "confidence": 0.95})  # fmt: skip
    assert got.verdict == "pass" and got.reason.startswith("no effect left to mediate")
    assert got.statistic == 0.0 and got.details[0]["note"] == got.reason


def test_intervention_pass_and_fail():
    removes, costly = run_checks(
        {
            "kind": "intervention",
            "contrast": "filler",
            "tolerance": 0.01,
            "ablate": {"components": ["L0H1"], "kind": "zero"},
            "utility": {"contrast": "swap", "metric": "accuracy", "budget": 0.0},
            "name": "harmless",
        },
        {
            "kind": "intervention",
            "contrast": "swap",
            "tolerance": 0.01,
            "ablate": {"components": ["L0H0"], "kind": "mean", "reference": "swap"},
            "utility": {"contrast": "swap", "metric": "accuracy", "budget": 0.1},
            "name": "blind",
        },
    )
    assert removes.passed
    # mean-ablating the mover removes the subject effect entirely (c = (c_A + c_B) / 2 on both
    # runs), and with it all accuracy: YES and NO tie at 2, and a tie is not a correct answer
    assert blind_effect(costly) == pytest.approx(0.0, abs=1e-6)
    assert not costly.passed and "EXCEEDED" in costly.message
    cost = [d for d in costly.details if d["measure"].endswith("cost")][0]
    assert cost["value"] == pytest.approx(1.0)


def blind_effect(res):
    return [d for d in res.details if d["measure"] == "effect after"][0]["value"]


# ---- report, determinism, JUnit, HTML ---------------------------------------------------------


def test_report_json_schema_and_determinism(tmp_path):
    a = ia.audit(SPEC).save(tmp_path / "a")
    b = ia.audit(SPEC).save(tmp_path / "b")
    ja, jb = (json.loads((d / "report.json").read_text()) for d in (a, b))
    assert set(ja) == {
        "name",
        "verdict",
        "passed",
        "checks",
        "located",
        "provenance",
        "content_sha256",
        "results_sha256",
        "files",
    }
    assert ja["results_sha256"] == jb["results_sha256"]  # identical runs measured the same
    assert {"spec_hash", "versions", "model", "seed", "timestamp", "metric", "contrasts"} <= set(
        ja["provenance"]
    )
    assert ja["provenance"]["model"]["weight_processing"]["fold_ln"] is False
    assert {"torch", "transformer_lens", "sae_lens", "interp_audit", "python"} <= set(
        ja["provenance"]["versions"]
    )
    for d in (ja, jb):
        d["provenance"].pop("timestamp")
        d.pop("content_sha256")  # covers the timestamp
    assert ja == jb
    c = ja["checks"][0]
    assert {
        "name",
        "kind",
        "passed",
        "statistic",
        "ci",
        "threshold",
        "message",
        "details",
        "confidence",
        "verdict",
        "reason",
        "half_width",
        "clusters",
        "correction",
    } <= set(c)
    assert ja["located"]["heads_exact"]["values"] == [[1.0, 0.0], [0.75, 0.0]]


def external_resources(page: str) -> list[str]:
    from html.parser import HTMLParser

    found = []

    class Finder(HTMLParser):
        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag in ("script", "img", "iframe") and a.get("src"):
                found.append(a["src"])
            if tag == "link" and a.get("href"):
                found.append(a["href"])

    Finder().feed(page)
    return found


def test_junit_round_trip_and_html_is_self_contained(tmp_path):
    report = ia.audit(
        spec_with(
            {"kind": "invariance", "contrast": "filler", "tolerance": 0.01, "name": "ok"},
            {"kind": "invariance", "contrast": "swap", "tolerance": 1, "name": "bad"},
        )
    )
    report.save(tmp_path, junit=tmp_path / "junit.xml")
    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert cases["ok"].find("failure") is None
    assert "total effect of 'swap'" in cases["bad"].find("failure").get("message")
    page = (tmp_path / "report.html").read_text()
    assert page.count("<div class='ia-fig'") == 2  # one figure per check
    assert page.count("id='ia-plotly'") == 1  # plotly.js inlined once
    assert external_resources(page) == []  # nothing is fetched: plotly.js is inlined
    assert "Audit t: <span class='badge fail'>FAIL</span>" in page
    assert report._repr_html_().count("<tr>") == 3


#: Appended to a copy of the page: once the figures are drawn, measure the layout at 1280 px.
MEASURE = """<script>
(function wait(tries) {
  var root = document.documentElement;
  if (root.getAttribute('data-ia-figures') !== 'drawn' && tries > 0) {
    return setTimeout(function () { wait(tries - 1); }, 100);
  }
  var rows = document.querySelectorAll('#verdicts tbody tr');
  var out = {
    drawn: root.getAttribute('data-ia-figures'),
    figures: document.querySelectorAll('.ia-fig .plot-container').length,
    scroll_width: root.scrollWidth,
    client_width: root.clientWidth,
    summary_row_heights: Array.prototype.map.call(rows, function (r) {
      return r.getBoundingClientRect().height; }),
    line_height: rows.length ? parseFloat(getComputedStyle(rows[0].cells[1]).lineHeight) : 0,
    evidence: document.querySelectorAll('section[id^=check-] details').length,
    path_rows: document.querySelectorAll('#paths tbody tr:not(.group)').length,
    graph_beside: (function () {
      var t = document.querySelector('#paths table'), g = document.querySelector('#paths svg');
      return !!(t && g) && g.getBoundingClientRect().left > t.getBoundingClientRect().right;
    })(),
    text_says_none: /\\bNone\\b/.test(document.body.innerText),
  };
  var pre = document.createElement('pre');
  pre.id = 'measured';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})(100);
</script>"""


@pytest.mark.skipif(not shutil.which("chromium"), reason="no headless chromium installed")
def test_the_readmission_report_reads_at_laptop_width_in_headless_chromium(
    tmp_path, readmission_subject
):
    """The issue's page: offline, every figure drawn by the inlined plotly.js, nothing wider
    than 1280 px, one short line per verdict, path effects beside the graph, no None."""
    import re

    report = ia.audit(ROOT / "circuits" / "readmission" / "audit.yaml", subject=readmission_subject)
    report.save(tmp_path / "out")
    page = (tmp_path / "out" / "report.html").read_text()
    assert external_resources(page) == []
    (tmp_path / "measure.html").write_text(page.replace("</body>", MEASURE + "</body>"))
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1280,900",
        "--virtual-time-budget=15000",
    ]
    dom = subprocess.run(
        ["chromium", *flags, "--dump-dom", (tmp_path / "measure.html").as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
    ).stdout
    found = re.search(r"<pre id=\"measured\">(.*?)</pre>", dom, re.S)
    assert found, dom[-2000:]
    m = json.loads(found.group(1))
    n_checks, n_located = len(report.checks), len(report.effects)
    assert m["drawn"] == "drawn" and m["figures"] == n_checks + n_located
    assert m["scroll_width"] <= m["client_width"] <= 1280  # nothing overflows sideways
    heights = m["summary_row_heights"]
    assert len(heights) == n_checks
    assert max(heights) < 2 * m["line_height"] + 8, heights  # one line per check (was 300-400 px)
    assert m["evidence"] == n_checks  # evidence below each check
    from interp_audit.audit.evidence import PathRow

    n_paths = sum(isinstance(r, PathRow) for c in report.checks for r in c.evidence)
    assert n_paths >= 7  # 3 age + 2 hospital + 2 responding paths, and the faithfulness rows
    assert m["path_rows"] == n_paths and m["graph_beside"]
    assert not m["text_says_none"]


# ---- the real CLI in a subprocess: exit codes 0 / 1 / 2 --------------------------------------


def cli(*args, cwd=None):
    env = {**os.environ, "TQDM_DISABLE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "interp_audit.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


def test_cli_exit_codes(tmp_path):
    ok = cli("run", str(SPEC), "--out", str(tmp_path / "ok"), "--junit", str(tmp_path / "ok.xml"))
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "ok" / "report.html").exists() and (tmp_path / "ok.xml").exists()
    failing = tmp_path / "fail.yaml"
    failing.write_text(SPEC.read_text().replace("max_share: 0.8", "max_share: 0.5"))
    bad = cli("run", str(failing), "--out", str(tmp_path / "bad"))
    assert bad.returncode == 1 and "FAIL" in bad.stdout
    broken = tmp_path / "broken.yaml"
    broken.write_text(SPEC.read_text().replace("tolerance:", "tolerence:"))
    res = cli("run", str(broken), "--out", str(tmp_path / "x"))
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "did you mean 'tolerance'" in res.stderr
    noload = tmp_path / "noload.yaml"
    noload.write_text(SPEC.read_text().replace("zoo:handbuilt-copy", "zoo:nothing"))
    res = cli("run", str(noload), "--out", str(tmp_path / "y"))
    assert res.returncode == 2 and "no zoo model 'nothing'" in res.stderr
    again = cli("report", str(tmp_path / "bad"))
    assert again.returncode == 1
    assert cli("report", str(tmp_path / "nothing")).returncode == 2


def test_cli_sweep_prints_the_analytic_effects(tmp_path):
    res = cli(
        "sweep",
        "--model",
        "zoo:handbuilt-copy",
        "--clean",
        "A x ->",
        "A y ->",
        "--counterfactual",
        "B x ->",
        "B y ->",
        "--answers",
        "YES",
        "NO",
        "--method",
        "atp",
        "--out",
        str(tmp_path / "e"),
    )
    assert res.returncode == 0, res.stderr
    lines = {
        ln.split()[0]: float(ln.split()[1])
        for ln in res.stdout.splitlines()
        if ln.strip().startswith("L")
    }
    assert lines["L0H0"] == pytest.approx(1.0) and lines["L1H0"] == pytest.approx(0.75)
    assert ia.Effects.load(tmp_path / "e")["L1H0"] == pytest.approx(0.75)
    args = ["sweep", "--model", "zoo:handbuilt-copy", "--clean", "A x ->", "--counterfactual"]
    unequal = cli(*args, "B x -> x", "--answers", "YES", "NO")  # 4 vs 5 tokens: aligned
    assert unequal.returncode == 0, unequal.stderr
    bad = cli(*args, "B x ->", "--answers", "YES NO", "NO")
    assert bad.returncode == 2 and "pair 0: answer 'YES NO' is 2 tokens" in bad.stderr


def test_cli_help_does_not_import_transformer_lens():
    code = (
        "import sys; from interp_audit.cli import main as cli\n"
        "sys.argv=['interp-audit','--help']\ntry: cli.main()\nexcept SystemExit: pass\n"
        "print('transformer_lens' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert out.strip().endswith("False")


def test_file_contrasts_jsonl_and_csv(tmp_path):
    (tmp_path / "pairs.jsonl").write_text(
        '{"clean": "A x ->", "counterfactual": "B x ->", "correct": "YES", "incorrect": "NO", '
        '"group": "g"}\n'
    )
    (tmp_path / "pairs.csv").write_text("clean,counterfactual\nA y ->,B y ->\n")
    spec = {
        "model": {"source": "zoo:handbuilt-copy"},
        "contrasts": {
            "j": {"file": str(tmp_path / "pairs.jsonl")},
            "c": {"file": str(tmp_path / "pairs.csv"), "answers": ["YES", "NO"]},
        },
        "checks": [
            {"kind": "invariance", "contrast": "j", "tolerance": 10, "name": "j"},
            {"kind": "invariance", "contrast": "c", "tolerance": 10, "name": "c"},
        ],
    }
    report = ia.audit(spec)
    assert [c.statistic for c in report.checks] == [pytest.approx(8.0), pytest.approx(8.0)]
    (tmp_path / "bad.jsonl").write_text(
        '{"clean": "A x ->", "counterfactual": "B x ->"}\n{"clean": \n'
    )
    with pytest.raises(ia.SpecError, match="bad.jsonl line 2 is not valid JSON"):
        ia.audit({**spec, "contrasts": {"j": {"file": str(tmp_path / "bad.jsonl")}}, "checks": []})
    (tmp_path / "nocf.csv").write_text("clean\nA x ->\n")
    with pytest.raises(ia.SpecError, match="nocf.csv row 1 has no 'counterfactual' field"):
        ia.audit({**spec, "contrasts": {"j": {"file": str(tmp_path / "nocf.csv")}}, "checks": []})
