"""Membership attacks at the field's standard, checked against naive references on the small zoo
LMs: every score against plain forwards, AUC and TPR at low FPR against sklearn's ROC curve, the
bootstrap CIs against a loop over the same draws, and the check's verdict on a TPR budget with
the reference-model attack (zoo:canary-lm10 with its clean twin as the reference)."""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import pytest
import torch

import interp_audit as ia
from interp_audit.methods.privacy.membership import (
    TprAt,
    auc,
    auc_ci,
    membership,
    record_scores,
    tpr_at_fpr,
    tpr_ci,
)
from interp_audit.zoo import canary10 as C10

pytestmark = pytest.mark.integration
sklearn_metrics = pytest.importorskip("sklearn.metrics")

MEMBERSHIP = Path(__file__).resolve().parents[2] / "circuits" / "memorization"


def _naive(subject, text: str) -> dict[str, torch.Tensor]:
    """One plain forward: per-token log p, and mu, sigma of log p over the vocabulary."""
    ids = subject.to_tokens(text)
    with torch.no_grad():
        logits = subject.model(torch.tensor([ids]))[0].double()
    lp_all = logits.log_softmax(-1)
    rows = range(1, len(ids))
    lp = torch.tensor([float(lp_all[t - 1, ids[t]]) for t in rows], dtype=torch.float64)
    mu, sd = [], []
    for t in rows:
        p = lp_all[t - 1].exp()
        m = float((p * lp_all[t - 1]).sum())
        mu.append(m)
        sd.append(math.sqrt(float((p * (lp_all[t - 1] - m) ** 2).sum())))
    return {"lp": lp, "mu": torch.tensor(mu), "sd": torch.tensor(sd)}


def _lowest_mean(values: list[float], k: float) -> float:
    n = math.ceil(k * len(values))
    return sum(sorted(values)[:n]) / n


def test_every_attack_score_matches_plain_forwards(lm10, clean10):
    texts = [C10.CANARIES[-1].sentence, C10.CANARIES[0].sentence, *C10.non_members(1)[:3]]
    got = record_scores(lm10, texts, min_k=0.3, reference=clean10)
    assert list(got) == ["loss", "zlib", "min_k", "min_k_pp", "ref_ratio", "ref_diff"]
    for i, text in enumerate(texts):
        t, r = _naive(lm10, text), _naive(clean10, text)
        loss, ref_loss = -float(t["lp"].mean()), -float(r["lp"].mean())
        z = len(zlib.compress(text.encode()))
        pp = ((t["lp"] - t["mu"]) / t["sd"]).tolist()
        want = {
            "loss": -loss,
            "zlib": -loss / z,
            "min_k": _lowest_mean(t["lp"].tolist(), 0.3),
            "min_k_pp": _lowest_mean(pp, 0.3),
            "ref_ratio": -loss / ref_loss,
            "ref_diff": ref_loss - loss,
        }
        for name, value in want.items():  # float32 models, batched vs one by one
            assert float(got[name][i]) == pytest.approx(value, abs=2e-5), (name, text)
    # the bounded-memory batching changes nothing: one text per forward gives the same scores
    one = record_scores(lm10, texts, min_k=0.3, reference=clean10)
    from interp_audit.methods.privacy.tokens import token_statistics

    tiny = token_statistics(lm10, texts, moments=True, max_logits=1)
    for i, s in enumerate(token_statistics(lm10, texts, moments=True)):
        torch.testing.assert_close(s.logprob, tiny[i].logprob, atol=1e-5, rtol=0)
        torch.testing.assert_close(s.std, tiny[i].std, atol=1e-5, rtol=0)
    assert torch.equal(one["ref_diff"], got["ref_diff"])


def test_reference_scores_need_a_reference(lm10):
    with pytest.raises(ia.ContrastError, match="'ref_ratio' compares with a reference"):
        record_scores(lm10, ["a cat ."], scores=["ref_ratio"])
    with pytest.raises(ia.ContrastError, match="'lira' is not one of"):
        record_scores(lm10, ["a cat ."], scores=["lira"])


def _sklearn_tpr(members, non_members, fpr: float) -> float:
    y = [1] * len(members) + [0] * len(non_members)
    s = torch.cat([members, non_members]).numpy()
    f, t, _ = sklearn_metrics.roc_curve(y, s, drop_intermediate=False)
    return float(t[f <= fpr + 1e-12].max())


@pytest.mark.parametrize(
    "n_m,n_n,ties",
    [(40, 1000, False), (25, 300, True), (30, 99, False), (200, 2000, True)],
)
def test_auc_and_tpr_at_fpr_match_sklearn(n_m, n_n, ties):
    g = torch.Generator().manual_seed(n_m + n_n)
    m = torch.randn(n_m, generator=g, dtype=torch.float64) + 1.0
    n = torch.randn(n_n, generator=g, dtype=torch.float64)
    if ties:  # coarse scores: many ties across and within the sets
        m, n = (m * 4).round() / 4, (n * 4).round() / 4
    y = [1] * n_m + [0] * n_n
    assert auc(m, n) == pytest.approx(sklearn_metrics.roc_auc_score(y, torch.cat([m, n])))
    for fpr in (0.1, 0.05, 0.01, 0.001):
        assert tpr_at_fpr(m, n, fpr) == pytest.approx(_sklearn_tpr(m, n, fpr)), fpr


def test_bootstrap_cis_equal_a_loop_over_the_same_draws():
    g = torch.Generator().manual_seed(3)
    m = torch.randn(30, generator=g, dtype=torch.float64) + 0.7
    n = torch.randn(400, generator=g, dtype=torch.float64)
    n_boot, seed = 300, 11
    gen = torch.Generator().manual_seed(seed)  # the draws the implementation makes
    im = torch.randint(len(m), (n_boot, len(m)), generator=gen)
    inn = torch.randint(len(n), (n_boot, len(n)), generator=gen)
    aucs = torch.tensor(
        [
            sklearn_metrics.roc_auc_score([1] * len(m) + [0] * len(n), torch.cat([m[a], n[b]]))
            for a, b in zip(im, inn, strict=True)
        ],
        dtype=torch.float64,
    )
    tprs = torch.tensor(
        [_sklearn_tpr(m[a], n[b], 0.01) for a, b in zip(im, inn, strict=True)],
        dtype=torch.float64,
    )
    q = torch.tensor([0.025, 0.975], dtype=torch.float64)
    v, lo, hi = auc_ci(m, n, n_boot=n_boot, seed=seed)
    assert [lo, hi] == pytest.approx(torch.quantile(aucs, q).tolist())
    v, lo, hi = tpr_ci(m, n, 0.01, n_boot=n_boot, seed=seed)
    assert v == pytest.approx(_sklearn_tpr(m, n, 0.01))
    assert [lo, hi] == pytest.approx(torch.quantile(tprs, q).tolist())


def test_low_fpr_says_when_the_non_members_cannot_resolve_it():
    few = TprAt(0.001, 0.3, 0.1, 0.5, n_non_members=256)
    assert not few.resolvable and few.false_positives_allowed == 0
    assert "not meaningful: 256 non-members cannot resolve FPR 0.001" in few.note
    one = TprAt(0.001, 0.3, 0.1, 0.5, n_non_members=1000)
    assert one.resolvable and one.false_positives_allowed == 1 and "noisy" in one.note
    # with no false positive allowed the threshold is the highest non-member's score
    m = torch.tensor([5.0, 3.0, 2.0, 0.5])
    n = torch.linspace(0, 2.5, 256, dtype=torch.float64)
    assert tpr_at_fpr(m, n, 0.001) == pytest.approx(0.5)  # 5 and 3 beat max 2.5


def _spec(source: str, **check) -> dict:
    return {
        "model": {"source": source},
        "contrasts": {},
        "checks": [
            {
                "kind": "membership",
                "members": "members10.txt",
                "non_members": "nonmembers10.txt",
                "n_boot": 300,
                **check,
            }
        ],
    }


def test_check_on_a_tpr_budget_with_the_reference_attack(lm10, clean10, monkeypatch, tmp_path):
    """zoo:canary-lm10 vs its clean twin as reference: 56 members, 168 non-members. The report
    carries every attack by name with the function's numbers; the verdict follows the CIs."""
    monkeypatch.chdir(MEMBERSHIP)
    spec = _spec(
        "zoo:canary-lm10",
        reference="zoo:canary-lm10-clean",
        scores=["loss", "min_k_pp", "ref_ratio"],
        tpr_budget=[{"fpr": 0.01, "max_tpr": 0.05}],
    )
    report = ia.audit(spec, subject=lm10)
    chk = report.checks[0]
    report.save(tmp_path / "run")  # the report renders the kind's figure
    html = (tmp_path / "run" / "report.html").read_text()
    assert "TPR at low FPR" in html
    saved = json.loads((tmp_path / "run" / "report.json").read_text())["checks"][0]
    assert [d["attack"] for d in saved["details"] if "attack" in d] == [
        "loss",
        "min_k_pp",
        "ref_ratio",
    ]
    members = (MEMBERSHIP / "members10.txt").read_text().split("\n")
    nonmembers = (MEMBERSHIP / "nonmembers10.txt").read_text().split("\n")
    res = membership(
        lm10,
        [t for t in members if t.strip()],
        [t for t in nonmembers if t.strip()],
        scores=["loss", "min_k_pp", "ref_ratio"],
        reference=clean10,
        n_boot=300,
    )
    rows = {d["attack"]: d for d in chk.details if "attack" in d}
    assert set(rows) == {"loss", "min_k_pp", "ref_ratio"}
    for name, a in res.attacks.items():
        assert rows[name]["auc"] == pytest.approx(a.auc[0])
        assert rows[name]["ci"] == pytest.approx(list(a.auc[1:]))
        t1 = next(t for t in rows[name]["tpr"] if t["fpr"] == 0.01)
        assert t1["tpr"] == pytest.approx(a.tpr_at(0.01).tpr)
        assert t1["resolvable"] and t1["false_positives_allowed"] == 1  # floor(1.68)
        t01 = next(t for t in rows[name]["tpr"] if t["fpr"] == 0.001)
        assert not t01["resolvable"] and "not meaningful" in t01["note"]
        b = rows[name]["budgets"][0]
        want = "pass" if b["ci"][1] <= 0.05 else "fail" if b["ci"][0] > 0.05 else "inconclusive"
        assert b["verdict"] == want
        # the row's verdict is the attack's: no AUC band here, so its budget decides it
        assert rows[name]["verdict"] == want and rows[name]["passed"] == (want == "pass")
        assert "auc_verdict" not in rows[name]
    # trained on the records: the reference attack flags nearly all members at 1% FPR
    assert rows["ref_ratio"]["tpr"][0]["tpr"] > 0.9 and chk.verdict == "fail"
    assert "'ref_ratio'" in chk.message or "'loss'" in chk.message
    assert "TPR at FPR 0.001 is not meaningful with 168 non-members" in chk.message
    blind = [d for d in chk.details if "blind baseline" in d]
    assert {d["blind baseline"] for d in blind} == {"tokens", "zlib bytes"}
    ref = [d for d in chk.details if "reference" in d][0]["reference"]
    assert ref["source"] == "zoo:canary-lm10-clean"


def test_check_spec_errors_name_the_key():
    base = {"kind": "membership", "members": "a.txt", "non_members": "b.txt"}
    with pytest.raises(ia.SpecError, match="needs tpr_budget"):
        ia.audit({"model": {"source": "zoo:canary-lm10"}, "contrasts": {}, "checks": [base]})
    with pytest.raises(ia.SpecError, match="'ref_diff' compares with a reference model"):
        ia.audit(
            {
                "model": {"source": "zoo:canary-lm10"},
                "contrasts": {},
                "checks": [{**base, "max_auc": 0.6, "scores": ["ref_diff"]}],
            }
        )


def test_non_members_from_several_files_are_their_concatenation(lm10, monkeypatch, tmp_path):
    """A list of files reads as one file holding their lines in order (non-members added to
    resolve a lower FPR): the same scores, AUC and TPR as the concatenated file."""
    lines = [t for t in (MEMBERSHIP / "nonmembers10.txt").read_text().splitlines() if t.strip()]
    (tmp_path / "a.txt").write_text("\n".join(lines[:100]) + "\n")
    (tmp_path / "b.txt").write_text("\n".join(lines[100:]) + "\n")
    (tmp_path / "all.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "members.txt").write_text((MEMBERSHIP / "members10.txt").read_text())
    monkeypatch.chdir(tmp_path)
    budget = dict(scores=["loss"], tpr_budget=[{"fpr": 0.01, "max_tpr": 0.05}])
    one = ia.audit(
        _spec("zoo:canary-lm10", **budget, members="members.txt", non_members="all.txt"),
        subject=lm10,
    ).checks[0]
    two = ia.audit(
        _spec("zoo:canary-lm10", **budget, members="members.txt", non_members=["a.txt", "b.txt"]),
        subject=lm10,
    ).checks[0]
    assert one.details == two.details and one.verdict == two.verdict
    assert "168 non-members" in two.message
