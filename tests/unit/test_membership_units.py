"""membership with ``units``: training units of an SCM against fresh ones, scored per distinct
(prompt, label) cell; checked against record-level computations (one score per unit, the
pairwise Mann-Whitney AUC, a threshold loop for the TPR) on the hand-wired model."""

from __future__ import annotations

import math

import pytest
import torch

import interp_audit as ia
from interp_audit.causal import CausalModel
from interp_audit.core.errors import SpecError
from interp_audit.methods.privacy.membership import auc, roc_from_counts
from tests.linear_paths import CAUSAL, VOCAB, WEIGHT, build_linear, linear_spec


@pytest.fixture(scope="module")
def linear_subject():
    return build_linear()


def label_logprob(prompt: str, label: int) -> float:
    """log p(label's answer) of the hand-wired model: logit(YES) = mean token weight."""
    ld = sum(WEIGHT.get(t, 0.0) for t in prompt.split()) / 5
    norm = math.log(math.exp(ld) + len(VOCAB) - 1)
    return (ld if label else 0.0) - norm


def naive_tpr(members: list[float], non_members: list[float], fpr: float) -> float:
    """Walk the thresholds from the top; interpolate linearly inside the step crossing fpr."""
    points = [(0.0, 0.0)]
    for t in sorted(set(members + non_members), reverse=True):
        points.append(
            (sum(s >= t for s in non_members) / len(non_members),
             sum(s >= t for s in members) / len(members))
        )  # fmt: skip
    for (f0, t0), (f1, t1) in zip(points, points[1:], strict=False):
        if f0 <= fpr < f1:
            return t0 + (fpr - f0) / (f1 - f0) * (t1 - t0)
    return points[-1][1]


def units_check(**kw):
    return {"name": "mem", "kind": "membership", "max_auc": 0.9, "fprs": [0.1],
            "units": {"label": "L", "training": {"n": 300, "seed": 4},
                      "fresh": {"n": 500, "seed": 5}}, **kw}  # fmt: skip


def test_cell_scores_equal_record_level_ones(linear_subject):
    chk = ia.audit(linear_spec(units_check()), subject=linear_subject).checks[0]
    rows = {d["score"]: d for d in chk.details if "tpr" in d}
    cm = CausalModel.from_spec(CAUSAL)
    scored = []
    for n, seed in ((300, 4), (500, 5)):
        fact = cm.scm.values(cm.scm.sample(n, seed))
        prompts = cm.render.render(cm.scm, fact)
        scored.append(
            [label_logprob(p, int(y)) for p, y in zip(prompts, fact["L"].tolist(), strict=True)]
        )
    m, nm = scored
    assert rows["loss"]["auc"] == pytest.approx(auc(torch.tensor(m), torch.tensor(nm)), abs=1e-9)
    (t,) = rows["loss"]["tpr"]
    assert t["fpr"] == 0.1 and t["tpr"] == pytest.approx(naive_tpr(m, nm, 0.1), abs=1e-9)
    gap = next(d for d in chk.details if str(d.get("score", "")).startswith("loss gap"))
    assert gap["gap"] == pytest.approx(-sum(nm) / len(nm) + sum(m) / len(m), abs=1e-6)
    counts = next(d for d in chk.details if "members" in d)
    assert (counts["members"], counts["non_members"]) == (300, 500)
    # the hand-wired model never trained on anything: membership is chance
    assert chk.verdict == "pass"
    tight = ia.audit(linear_spec(units_check(max_auc=0.51)), subject=linear_subject).checks[0]
    lo, hi = rows["loss"]["ci"]
    assert lo < 0.51 < hi and tight.verdict == "inconclusive"  # an interval straddling a bound


def test_roc_from_counts_handles_ties_as_the_record_level_auc():
    g = torch.Generator().manual_seed(0)
    members = torch.randint(0, 5, (40,), generator=g).double()  # heavy ties
    non_members = torch.randint(0, 5, (60,), generator=g).double()
    scores = torch.cat([members, non_members])
    m = torch.cat([torch.ones(40), torch.zeros(60)]).double()[None]
    a, t = roc_from_counts(scores, m, 1 - m, 0.2)
    assert float(a[0]) == pytest.approx(auc(members, non_members), abs=1e-12)
    assert float(t[0]) == pytest.approx(
        naive_tpr(members.tolist(), non_members.tolist(), 0.2), abs=1e-12
    )


def test_where_keeps_a_subset_and_errors_name_the_key(linear_subject):
    chk = ia.audit(
        linear_spec(units_check(units={"label": "L", "training": {"n": 400, "seed": 4},
                                       "fresh": {"n": 400, "seed": 5},
                                       "where": {"A": ["1"]}})),
        subject=linear_subject,
    ).checks[0]  # fmt: skip
    cm = CausalModel.from_spec(CAUSAL)
    kept = int((cm.scm.values(cm.scm.sample(400, 4))["A"] == 1).sum())
    assert next(d for d in chk.details if "members" in d)["members"] == kept
    from interp_audit.audit.spec import load_spec

    with pytest.raises(SpecError, match="fresh units must be another draw"):
        load_spec(linear_spec(units_check(units={"label": "L", "training": {"n": 9, "seed": 4},
                                                 "fresh": {"n": 9, "seed": 4}})))  # fmt: skip
    with pytest.raises(SpecError, match="score 'zlib' is not one for units"):
        load_spec(linear_spec(units_check(scores=["zlib"])))
    with pytest.raises(SpecError, match="either 'members' and 'non_members'"):
        load_spec(linear_spec(units_check(members="a.txt", non_members="b.txt")))
