"""The report is a view built by the audit layer and laid out by a generic renderer: each kind
draws its own figure through the registry, the renderer knows only blocks, and every string is
escaped, in the markup and inside the figures' JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

import plotly.graph_objects as go
import pytest
from pydantic import Field

import interp_audit as ia
from interp_audit.audit.context import AuditContext
from interp_audit.audit.registry import CheckKind, register_check
from interp_audit.audit.report_view import render_html, report_view
from interp_audit.audit.result import CheckResult
from interp_audit.audit.sections import CheckSpec
from interp_audit.output import render
from interp_audit.output.view import (
    Badge,
    Columns,
    Details,
    Figure,
    Grid,
    KeyValues,
    Link,
    Pre,
    ReportView,
    Section,
    Svg,
    Table,
    Text,
)

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "circuits" / "handbuilt" / "audit.yaml"


def figures_of(page: str) -> list[dict]:
    found = re.search(r"<script type='application/json' id='ia-figures'>(.*?)</script>", page)
    return json.loads(found.group(1))["figures"] if found else []


@pytest.fixture(scope="module")
def handbuilt_data():
    return ia.audit(SPEC).to_dict()


class _DrawnCheck(CheckSpec):
    kind: Literal["drawn_test_kind"]
    contrast: str
    limit: float = Field(1.0)


def _run_drawn(chk: _DrawnCheck, ctx: AuditContext, name: str) -> CheckResult:
    rows = [{"measure": "the measured thing", "value": 0.5, "ci": [0.25, 0.75], "budget": 1.0}]
    return CheckResult(name, chk.kind, "pass", 0.5, (0.25, 0.75), chk.limit, "ok", rows)


def _draw(check: CheckResult) -> go.Figure:
    (row,) = check.evidence  # the hook reads its rows typed
    return go.Figure(go.Bar(x=[row.label], y=[row.estimate]), {"title": "drawn by the kind"})


def test_a_kind_draws_its_own_figure_through_the_registry(handbuilt, monkeypatch):
    import interp_audit.audit.registry as registry

    monkeypatch.setattr(registry, "_CHECKS", dict(registry._CHECKS))  # gone after the test
    register_check(
        CheckKind(
            "drawn_test_kind", _DrawnCheck, _run_drawn, "test", figure=_draw, threshold="< {:g}!"
        )
    )
    spec = {
        "model": {"source": "zoo:handbuilt-copy"},
        "contrasts": {
            "s": {
                "template": "{s} x ->",
                "swap": {"slot": "s", "pairs": [["A", "B"]]},
                "answers": ["YES", "NO"],
            }
        },
        "checks": [
            {"kind": "drawn_test_kind", "contrast": "s", "limit": 2},
            {"kind": "invariance", "contrast": "s", "tolerance": 9, "min_clusters": 1},
        ],
    }
    page = render_html(ia.audit(spec, subject=handbuilt).to_dict())
    drawn, generic = figures_of(page)
    assert drawn["layout"]["title"]["text"] == "drawn by the kind"
    assert drawn["data"][0]["x"] == ["the measured thing"] and drawn["data"][0]["y"] == [0.5]
    # no hook: the shared interval figure, the hand-built effect 8 with its tolerance band
    assert generic["data"][0]["y"] == [pytest.approx(8.0, abs=1e-4)] * 1
    assert generic["layout"]["shapes"][0]["y1"] == 9
    assert "&lt; 2!" in page  # the kind says how its threshold reads in the summary


def test_the_built_in_intervention_and_membership_figures_read_their_rows():
    from interp_audit.audit.kinds import check_kinds

    kinds = check_kinds()
    rows = [
        {"measure": "effect before", "value": 2.0, "ci": [1.9, 2.1]},
        {"measure": "effect after", "value": 0.1, "ci": [0.0, 0.2], "tolerance": 0.25},
        {"measure": "utility (accuracy) cost", "value": 0.01, "ci": [0.0, 0.03], "budget": 0.02},
        {"measure": "utility (accuracy) cost, group g", "group": "g", "value": 0.02,
         "ci": [0.0, 0.05], "budget": 0.02, "verdict": "inconclusive"},
        {"measure": "ablated components", "components": ["L0H0", "L1H1"]},
    ]  # fmt: skip
    c = CheckResult("rep", "intervention", "inconclusive", 0.1, (0.0, 0.2), 0.25, "m", rows)
    fig = kinds["intervention"].figure(c)
    effects, costs = fig.data
    assert list(effects.x) == ["effect before", "effect after"]
    assert list(costs.x) == ["all", "g"] and list(costs.y) == [0.01, 0.02]
    assert costs.marker.color[1] == "#ef6c00"  # inconclusive
    assert "ablating 2 components" in fig.layout.annotations[0].text
    rows = [
        {"score": "loss", "auc": 0.7, "ci": [0.6, 0.8], "bounds": [0.4, 0.6], "passed": False},
        {"score": "zlib", "auc": 0.5, "ci": [0.4, 0.6], "bounds": [0.4, 0.6], "passed": True},
        {"score": "loss gap (nats/token)", "gap": 0.1, "ci": [0.0, 0.2], "passed": True},
        {"members": 10, "non_members": 10, "min_k": 0.2},
    ]
    c = CheckResult("mem", "membership", "fail", 0.7, (0.6, 0.8), 0.6, "m", rows)
    (bars,) = kinds["membership"].figure(c).data
    assert list(bars.x) == ["loss", "zlib"] and list(bars.y) == [0.7, 0.5]
    assert list(bars.error_y.array) == pytest.approx([0.1, 0.1])


SCRIPT = "<script>alert(1)</script>"


def test_the_renderer_lays_out_any_view_and_escapes_every_string():
    fig = go.Figure(go.Bar(x=[SCRIPT, "b"], y=[1, 2]), {"title": SCRIPT}).update_layout(
        template="plotly_white"
    )
    twin = go.Figure(go.Bar(x=["c"], y=[3])).update_layout(template="plotly_white")
    view = ReportView(
        title=SCRIPT,
        verdict=Badge("inconclusive"),
        data_digest="d" * 64,
        sections=(
            Section(
                "One",
                (
                    Text(SCRIPT),
                    Table(
                        ("name", "value"),
                        (("a_long_name", "1.0"), (Link(SCRIPT, "x"), Badge("fail"))),
                        numeric=frozenset({1}),
                        groups=((1, SCRIPT),),
                    ),
                    KeyValues(((SCRIPT, SCRIPT),)),
                    Columns((Figure(fig.to_plotly_json(), SCRIPT), Svg("<svg></svg>", "g"))),
                    Grid((Figure(twin.to_plotly_json()),)),
                    Details(SCRIPT, (Pre(SCRIPT),)),
                ),
                anchor="one",
                badge=Badge("pass"),
            ),
        ),
        footer=(SCRIPT,),
    )
    page = render(view)
    assert SCRIPT not in page and "alert(1)" in page
    assert "<script>alert" not in page.replace("\\u003c", "<").replace("\\u003e", ">")
    assert page.index("<meta name='interp-audit-data' content='" + "d" * 64) < 4096
    assert "a_<wbr>long_<wbr>name" in page  # long names may break between words
    assert "<td class='num'>1.0</td>" in page and "<span class='badge fail'>FAIL</span>" in page
    assert page.count("id='ia-plotly'") == 1 and page.count("<div class='ia-fig'") == 2
    data = json.loads(
        re.search(r"id='ia-figures'>(.*?)</script>", page).group(1)
    )  # one shared template for both figures
    assert len(data["templates"]) == 1 and [f["t"] for f in data["figures"]] == [0, 0]
    assert data["figures"][0]["data"][0]["x"] == ["&lt;script&gt;alert(1)&lt;/script&gt;", "b"]
    with pytest.raises(ValueError, match="table row 0 has 1 cells for 2 columns"):
        Table(("a", "b"), (("x",),))


def test_the_handbuilt_report_view_is_complete_and_says_no_none(handbuilt_data):
    view = report_view(handbuilt_data)
    titles = [s.title for s in view.sections]
    assert titles[0] == "Verdicts" and "Checks" in titles and titles[-1] == "Audit record"
    (summary,) = view.sections[0].parts
    assert len(summary.rows) == len(handbuilt_data["checks"]) and summary.compact
    page = render(view)
    text = re.sub(r"<[^>]+>", " ", page.split("<script type='application/json'")[0])
    assert not re.search(r"\bNone\b", text)
    assert len(figures_of(page)) == len(handbuilt_data["checks"]) + len(handbuilt_data["located"])


def test_a_crafted_evidence_row_is_refused_naming_the_key(handbuilt_data):
    from interp_audit.output.validate import ReportFileError

    data = json.loads(json.dumps(handbuilt_data))
    data["checks"][0]["details"][0]["effect"] = "big"
    with pytest.raises(ReportFileError, match=r"report.json: checks\[0\]: .*details\[0\].*effect"):
        render_html(data)


def test_exact_quantities_read_exact_not_a_point_interval():
    """An exact population effect has no sampling interval: the summary, the causal-path table,
    the check's text and its evidence say "exact" where an interval would stand, never [p, p];
    a sampled check beside it keeps its interval."""
    from tests.linear_paths import build_linear, linear_spec

    spec = linear_spec(
        {"name": "exact_paths", "kind": "path_invariance", "source": "A", "tolerance": 0.3,
         "exact": True},
        {"name": "sampled_paths", "kind": "path_invariance", "source": "A", "tolerance": 0.3,
         "n": 100, "n_boot": 200, "exact": False},
    )  # fmt: skip
    data = ia.audit(spec, subject=build_linear()).to_dict()
    exact, sampled = data["checks"]
    assert exact["exact"] and exact["ci"] == [exact["statistic"]] * 2  # stored as [p, p]
    view = report_view(data)
    (summary,) = view.sections[0].parts
    assert summary.rows[0][4] == "exact" and summary.rows[1][4].startswith("[")
    paths = next(s for s in view.sections if s.title == "Causal paths")
    table = paths.parts[0].parts[0]
    (start, _), (stop, _) = table.groups
    assert all(row[3] == "exact" for row in table.rows[start:stop])
    assert all(row[3].startswith("[") for row in table.rows[stop:])
    section = next(s for s in view.sections if s.title == "exact_paths")
    assert "(exact: no sampling interval)" in section.parts[0].text
    evidence = section.parts[-1].parts[0]
    assert {row[3] for row in evidence.rows} == {"exact"}
    point = f"[{exact['statistic']:+.4f}, {exact['statistic']:+.4f}]"
    shown = [summary.rows[0], *table.rows[start:stop], *evidence.rows]
    assert not any(point in str(cell) for row in shown for cell in row)
