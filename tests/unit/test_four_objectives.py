"""The trade-off's four objectives on the hand-wired model, against analytic answers: fairness
(the largest inadmissible path left), robustness (environment risk gap), privacy (membership
AUC, TPR at low FPR) and explainability (faithfulness), re-measured on the repaired model."""

from __future__ import annotations

import pytest

from interp_audit.audit.tradeoff import tradeoff
from tests.linear_paths import build_linear, linear_spec
from tests.unit.test_environment_risk import risk_by_hand


@pytest.fixture(scope="module")
def table():
    spec = linear_spec(
        {"name": "risk", "kind": "environment_risk", "environment": "A", "label": "L",
         "budget": 0.05},
        {"name": "members", "kind": "membership", "max_auc": 0.9, "fprs": [0.1], "scores": ["loss"],
         "units": {"label": "L", "training": {"n": 300, "seed": 4},
                   "fresh": {"n": 500, "seed": 5}}},
        {"name": "faithful", "kind": "faithfulness", "source": "A", "components": ["L0H0"],
         "min_share": 0.9,
         "ablate": {"components": ["L0H0.v@1"], "kind": "zero"}},  # replaced by each repair
        direct={"scm": "causal", "source": "A", "paths": "A -> Y", "n": 50, "seed": 5},
        units={"scm": "causal", "factual": True, "n": 300, "group_by": "A", "label": "L"},
    )  # fmt: skip
    spec["locate"] = [{"method": "patch", "contrast": "direct", "sites": "heads", "name": "d"}]
    return tradeoff(spec, ks=(1,), kinds=("zero",), n=100, n_boot=200, subject=build_linear())


def test_the_unrepaired_row_carries_the_four_objectives(table):
    none = table.row("none")
    m1, b1 = risk_by_hand(1, "loss")
    m0, b0 = risk_by_hand(0, "loss")
    assert none["robustness (environment risk gap)"] == pytest.approx(
        abs((m1 - b1) - (m0 - b0)), abs=1e-6
    )
    assert none["robustness (environment risk gap) exact"] is True
    # the only head carries every path, and the embeddings have no direct path: faithful 1
    assert none["explainability (faithfulness)"] == pytest.approx(1.0, abs=1e-6)
    assert 0.4 < none["privacy (membership AUC)"] < 0.6
    lo, hi = none["privacy (membership AUC) CI"]
    assert lo <= none["privacy (membership AUC)"] <= hi
    assert none["privacy (TPR at FPR 0.1) CI"][0] <= none["privacy (TPR at FPR 0.1)"]
    assert none["worst inadmissible path"] == "A -> Z -> Y"  # fairness: the paths as before


def test_zero_ablating_the_only_head_moves_every_objective(table):
    row = table.row("zero-ablate top 1")
    assert row["components"] == "L0H0"
    assert row["inadmissible left"] == pytest.approx(0.0, abs=1e-6)  # nothing reaches the output
    # a constant output: the same loss everywhere, and L's Bayes loss is the same in both
    # environments (P(L | M) is symmetric), so the gap is 0
    assert row["robustness (environment risk gap)"] == pytest.approx(0.0, abs=1e-6)
    # every score ties: the ROC is the diagonal
    assert row["privacy (membership AUC)"] == pytest.approx(0.5, abs=1e-9)
    assert row["privacy (TPR at FPR 0.1)"] == pytest.approx(0.1, abs=1e-9)
    # no path carries an effect: nothing to explain (the check reports 1, no tested path)
    assert row["explainability (faithfulness)"] == pytest.approx(1.0)
    for r in table.rows:
        assert "pareto (four objectives)" in r
    md = table.to_markdown(objectives=True)
    for col in ("fairness: inadmissible left", "robustness: environment risk gap",
                "privacy: membership AUC", "privacy: TPR at FPR 0.1",
                "explainability: faithfulness", "pareto (four objectives)"):  # fmt: skip
        assert col in md.splitlines()[0], col
    assert "(exact)" in md  # exact objectives are labelled, not given an interval
