"""Evidence rows are typed: every row a built-in kind writes parses into its declared kind and
back to the same JSON; a row of no declared kind, or a mistyped field, is refused by name."""

import pytest

import interp_audit as ia
from interp_audit.audit.evidence import (
    CanaryRow,
    GroupRow,
    MeasureRow,
    NoteRow,
    PathRow,
    SampleRow,
    ScoreRow,
    ShareRow,
    parse_row,
)

# one row of each shape the built-in kinds write (keys as in report.json)
ROWS = [
    (
        GroupRow,
        {"group": "all", "n": 4, "effect": 1.6, "ci": [0.7, 2.3], "half_width": 0.8,
         "clusters": 4, "tolerance": 0.25, "p_violation": 0.002, "p_holm": 0.002,
         "verdict": "fail", "reason": "CI entirely outside ±0.25", "passed": False},
        ("all", 1.6, "±0.25", "fail"),
    ),
    (
        PathRow,
        {"source": "A", "path": "A -> Xs -> X -> Y", "role": "admissible", "why": "resolving",
         "effect": 1.69, "ci": [1.6, 1.78], "n": 200, "effect over all units": 1.3,
         "ci over all units": [1.2, 1.4], "fraction_changed": 0.78, "n_in_scope": 489,
         "half_width": 0.09, "clusters": 200, "verdict": None, "passed": None},
        ("A -> Xs -> X -> Y", 1.69, None, None),
    ),
    (
        PathRow,
        {"source": "E", "path": "E -> Y", "role": "admissible", "effect": 1.55, "ci": [1.49, 1.6],
         "floor": 0.25, "SCM effect on readmitted": 0.1, "expected sign": "positive",
         "passed": True},
        ("E -> Y", 1.55, "|effect| ≥ 0.25", "pass"),
    ),
    (
        ShareRow,
        {"component": "L0H1", "share": 0.476, "ci": [0.46, 0.49], "half_width": 0.012,
         "clusters": 200, "max_share": 0.9, "verdict": "pass"},
        ("L0H1", 0.476, "≤ 0.9", "pass"),
    ),
    (ShareRow, {"component": "L0H0", "share": 0.28}, ("L0H0", 0.28, None, None)),
    (
        MeasureRow,
        {"measure": "utility (accuracy) cost, group age:mid", "group": "age:mid", "n": 541,
         "before": 0.68, "after": 0.678, "value": 0.0018, "ci": [-0.037, 0.043],
         "half_width": 0.04, "clusters": 541, "budget": 0.02, "verdict": "inconclusive",
         "reason": "straddles", "passed": False},
        ("utility (accuracy) cost, group age:mid", 0.0018, "≤ 0.02", "inconclusive"),
    ),
    (
        MeasureRow,
        {"measure": "ablated components", "components": ["L0H0.k@1", "L1H3.v@4"]},
        ("ablated components", None, None, None),
    ),
    (
        MeasureRow,
        {"measure": "held-out perplexity", "before": 3.1, "after": 3.2, "relative rise": 0.03,
         "budget": 0.05, "passed": True},
        ("held-out perplexity", None, "≤ 0.05", "pass"),
    ),
    (
        ScoreRow,
        {"score": "loss", "auc": 0.71, "ci": [0.6, 0.8], "bounds": [0.4, 0.6], "passed": False},
        ("loss", 0.71, "≤ 0.6", "fail"),
    ),
    (
        ScoreRow,
        {"score": "loss gap (invariance view, nats/token)", "gap": 0.2, "ci": [0.1, 0.3],
         "tolerance": None, "passed": True},
        ("loss gap (invariance view, nats/token)", 0.2, None, "pass"),
    ),
    (
        CanaryRow,
        {"canary": "Carol's PIN is", "exposure before": 12.1, "rank before": 3.0,
         "extracted before": True, "logprob before": -2.0, "exposure method": "exact",
         "fit n_samples": 100, "exposure": 4.0, "rank": 900.0},
        ("Carol's PIN is", 4.0, None, None),
    ),
    (SampleRow, {"members": 20, "non_members": 20, "min_k": 0.2}, ("sample", None, None, None)),
    (
        NoteRow,
        {"note": "contrast 'c': 196 of its 200 pairs repeat another pair exactly", "contrast": "c",
         "identical pairs merged": 196, "pairs": 200, "clusters": 4},
        ("contrast c", None, None, None),
    ),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "row", "read"), ROWS, ids=[str(i) for i in range(len(ROWS))])
def test_each_row_kind_parses_reads_and_round_trips(kind, row, read):
    parsed = parse_row(row)
    assert type(parsed) is kind
    label, estimate, limit, outcome = read
    assert parsed.label == label and parsed.estimate == estimate
    assert (None if parsed.limit is None else str(parsed.limit)) == limit
    assert parsed.outcome == outcome
    assert parsed.to_dict() == row  # extras ("relative rise", "fit ...") kept as written


def test_aliases_and_extras_are_typed_fields():
    p = parse_row(ROWS[1][1])
    assert p.effect_over_all_units == 1.3 and p.ci_over_all_units == (1.2, 1.4)
    assert p.role == "admissible"
    assert parse_row(ROWS[2][1]).extras() == {"SCM effect on readmitted": 0.1}
    assert parse_row(ROWS[10][1]).exposure_before == 12.1


BAD = [
    ({"effect": 1.0, "ci": [0, 1]}, ["details[0] is none of the declared evidence rows",
                                     "measure, path, group", "'effect', 'ci'"]),
    ({"group": "all", "effect": "big"}, ["details[0] (GroupRow): effect", "'big'"]),
    ({"path": "A -> Y", "effect": 1.0, "role": "maybe"}, ["(PathRow): role", "'maybe'"]),
    ({"component": "L0H0", "share": 0.1, "verdict": "ok"}, ["(ShareRow): verdict", "'ok'"]),
    ({"measure": "cost", "value": 1.0, "ci": [1.0]}, ["(MeasureRow): ci"]),
]  # fmt: skip


@pytest.mark.parametrize(("row", "words"), BAD, ids=[str(i) for i in range(len(BAD))])
def test_a_row_of_no_declared_kind_or_a_mistyped_field_is_refused_by_name(row, words):
    with pytest.raises(ValueError) as info:
        ia.CheckResult("c", "invariance", "pass", 0.0, (0.0, 0.0), 1.0, "", details=[row])
    for w in ["check 'c': ", *words]:
        assert w in str(info.value), str(info.value)


def test_check_results_read_their_rows_typed(handbuilt):
    pairs = ia.ContrastSet.from_prompts(
        handbuilt, ["A x ->", "A y ->"], ["B x ->", "B y ->"], answers=("YES", "NO"),
        groups=["x", "y"], clusters=["A/B", "A/B"],
    )  # fmt: skip
    res = ia.check("invariance", handbuilt, pairs, tolerance=7.9, min_clusters=1)
    rows = res.evidence
    assert [type(r) for r in rows] == [GroupRow] * 3
    assert [r.label for r in rows] == ["all", "x", "y"]
    # hand-built: logit_diff is +4 on A and -4 on B, so every group's effect is exactly 8
    assert [r.estimate for r in rows] == pytest.approx([8.0] * 3, abs=1e-4)
    assert all(str(r.limit) == "±7.9" and r.outcome == "fail" for r in rows)
