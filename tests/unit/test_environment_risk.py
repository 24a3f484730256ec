"""environment_risk: the model's risk under do(E = e), checked against an analytic answer.

The hand-wired model (tests/linear_paths.py) reads ``<bos> a:A m:M z:Z ->`` and puts
logit(YES) = (2 A + M - 3 Z) / 5, every other logit 0 (12 tokens). Taking A as the environment
and L (which reads M only) as the label, the risk under do(A = a) is a finite sum over the tables;
the Bayes predictor of L from the prompt is P(L = 1 | M), which the prompt shows.
"""

from __future__ import annotations

import itertools
import math

import pytest

import interp_audit as ia
from interp_audit.core.errors import SpecError
from tests.linear_paths import P_L, P_M, P_Z, VOCAB, WEIGHT, build_linear, linear_spec


@pytest.fixture(scope="module")
def linear_subject():
    return build_linear()


def log_p(a: int, m: int, z: int) -> tuple[float, float]:
    """log p(YES), log p(NO) of the hand-wired model (full vocabulary)."""
    ld = (WEIGHT["a:1"] * a + WEIGHT["m:1"] * m + WEIGHT["z:1"] * z) / 5
    norm = math.log(math.exp(ld) + len(VOCAB) - 1)
    return ld - norm, -norm


def risk_by_hand(a: int, kind: str, direct_only: bool = False) -> tuple[float, float]:
    """(model risk, Bayes risk) under do(A = a) (``direct_only``: only the a token moves, M
    and Z keep their values under A's own distribution), label L."""
    model = bayes = 0.0
    for a0 in (0, 1):  # the factual A: it matters only for the direct-only world
        if not direct_only and a0 == 1:
            continue
        pa = 0.5 if direct_only else 1.0
        src = a0 if direct_only else a
        for m, z, lab in itertools.product((0, 1), repeat=3):
            pm = P_M[str(src)] if m else 1 - P_M[str(src)]
            pz = P_Z[(str(src), str(m))] if z else 1 - P_Z[(str(src), str(m))]
            pl = P_L[str(m)] if lab else 1 - P_L[str(m)]
            p = pa * pm * pz * pl
            yes, no = log_p(a, m, z)
            q = P_L[str(m)]
            if kind == "loss":
                model += p * -(yes if lab else no)
                bayes += p * -math.log(q if lab else 1 - q)
            else:
                model += p * ((yes <= no) if lab else (yes >= no))
                bayes += p * ((q < 0.5) if lab else (q >= 0.5))
    return model, bayes


def risk_check(**kw):
    return {"name": "risk", "kind": "environment_risk", "environment": "A", "label": "L",
            "budget": 0.05, **kw}  # fmt: skip


@pytest.mark.parametrize("kind", ["loss", "error"])
def test_exact_risk_per_environment_matches_the_tables(linear_subject, kind):
    spec = linear_spec(risk_check(risk=kind, paths=["all", "A -> Y"]))
    chk = ia.audit(spec, subject=linear_subject).checks[0]
    rows = {(d["paths"], d["environment"]): d for d in chk.details if "risk" in d}
    for a in (0, 1):
        for ps, direct in (("all", False), ("A -> Y", True)):
            d = rows[(ps, f"a:{a}")]
            model, bayes = risk_by_hand(a, kind, direct)
            assert d["risk"] == pytest.approx(model, abs=1e-6), (ps, a)
            assert d["excess risk"] == pytest.approx(model - bayes, abs=1e-6), (ps, a)
            assert d["exact"] is True and "ci" not in d
    gap = abs(
        (risk_by_hand(1, kind)[0] - risk_by_hand(1, kind)[1])
        - (risk_by_hand(0, kind)[0] - risk_by_hand(0, kind)[1])
    )
    assert chk.statistic == pytest.approx(gap, abs=1e-6)
    assert chk.exact and chk.verdict == ("pass" if gap <= 0.05 else "fail")


def test_the_budget_decides_and_the_worst_environment_is_named(linear_subject):
    m1, b1 = risk_by_hand(1, "loss")
    m0, b0 = risk_by_hand(0, "loss")
    gap = abs((m1 - b1) - (m0 - b0))
    spec = linear_spec(
        risk_check(name="tight", budget=gap / 2), risk_check(name="loose", budget=gap * 2),
        risk_check(name="raw", budget=1.0, excess=False),
    )  # fmt: skip
    tight, loose, raw = ia.audit(spec, subject=linear_subject).checks
    assert tight.verdict == "fail" and loose.verdict == "pass"
    head = tight.details[0]
    worse = "a:1" if m1 - b1 > m0 - b0 else "a:0"
    assert head["worst environment"] == worse and head["measure"] == "largest gap (all)"
    assert raw.statistic == pytest.approx(abs(m1 - m0), abs=1e-6)


def test_errors_name_the_problem(linear_subject):
    with pytest.raises(SpecError, match="'Q' is not a variable of the graph"):
        ia.audit(linear_spec(risk_check(environment="Q")), subject=linear_subject)
    with pytest.raises(SpecError, match="label 'LL' is not an SCM variable.*did you mean 'L'"):
        ia.audit(linear_spec(risk_check(label="LL")), subject=linear_subject)
    with pytest.raises(SpecError, match="'2' is not a value of A"):
        ia.audit(linear_spec(risk_check(values=["0", "2"])), subject=linear_subject)
