"""The support-privacy unlearning comparison (circuits/support-privacy/unlearn.py): the utility
texts are never trained on and each names one person of a known group, and the comparison's
numbers (paired exposure and log p changes, per-group utility cost, membership AUC) equal a
naive computation from the same per-record values."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parents[2] / "circuits" / "support-privacy"


@pytest.fixture(scope="module")
def unlearn():
    sys.path.insert(0, str(HERE))
    spec = importlib.util.spec_from_file_location("support_unlearn_tables", HERE / "unlearn.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _lines(name: str) -> list[str]:
    return [t for t in (HERE / "data" / name).read_text().splitlines() if t.strip()]


def test_utility_texts_are_unseen_named_and_used_by_no_edit(unlearn):
    texts = unlearn.utility_texts(10_000)
    assert len(texts) == len(set(texts)) == 352
    assert not set(texts) & set(_lines("train.txt"))
    used = set(_lines("heldout.txt")[-8:]) | set(_lines("faq.txt")) | set(_lines("relearn.txt"))
    assert not set(texts) & used
    groups = unlearn.people_groups()
    got = [groups[t] for t in texts]
    assert set(got) == {"female", "male"}
    assert got.count("female") == 181


def _eval(gen: torch.Generator, n_forget: int, n_text: int) -> dict:
    u = lambda n: torch.rand(n, generator=gen).tolist()  # noqa: E731
    forget = [
        {
            "logprob": -30 * a,
            "exposure": 33 * b,
            "extracted": a < 0.3,
            "paraphrase_extracted": b / 3,
        }
        for a, b in zip(u(n_forget), u(n_forget), strict=True)
    ]
    return {
        "forget": forget,
        "retain": [{"extracted": x < 0.5, "logprob": -20 * x} for x in u(4)],
        "heldout_losses": [1 + 2 * x for x in u(n_text)],
        "forget_losses": u(n_forget),
        "reference_canary_losses": [0.5 + x for x in u(28)],
    }


def test_comparison_equals_a_naive_computation(unlearn):
    g = torch.Generator().manual_seed(0)
    n_text = 352
    evals = {"finetune": _eval(g, 8, n_text), "gradient": _eval(g, 8, n_text)}
    evals["gradient+relearn"] = _eval(g, 8, n_text)
    rows, fair = unlearn.comparison(evals)
    ft, ed, rl = evals["finetune"], evals["gradient"], evals["gradient+relearn"]
    row = next(r for r in rows if r["model"] == "gradient")

    def mean(xs):
        return sum(xs) / len(xs)

    def diff(a, b, key=None):
        return [(x[key] - y[key]) if key else x - y for x, y in zip(a, b, strict=True)]

    exp_d = diff(ed["forget"], ft["forget"], "exposure")
    lp_d = diff(ed["forget"], ft["forget"], "logprob")
    back = diff(rl["forget"], ed["forget"], "logprob")
    for key, want in [
        ("exposure change", exp_d),
        ("log p change", lp_d),
        ("relearn: log p regained", back),
        ("retain log p change", diff(ed["retain"], ft["retain"], "logprob")),
        ("relearn: exposure regained", diff(rl["forget"], ed["forget"], "exposure")),
    ]:
        v, lo, hi = row[key]
        assert v == pytest.approx(mean(want))
        assert lo <= v <= hi
    assert row["extracted"] == f"{sum(r['extracted'] for r in ed['forget'])}/8"

    # membership AUC of the forget records vs the reference canaries: P(member scores higher)
    m, n = [-x for x in ed["forget_losses"]], [-x for x in ed["reference_canary_losses"]]
    pairs = [(a > b) + 0.5 * (a == b) for a in m for b in n]
    assert row["membership AUC (loss)"][0] == pytest.approx(mean(pairs))

    groups = unlearn.people_groups()
    gender = [groups[t] for t in unlearn.utility_texts(n_text)]
    d = diff(ed["heldout_losses"], ft["heldout_losses"])
    by = {
        grp: [x for x, gg in zip(d, gender, strict=True) if gg == grp] for grp in ("female", "male")
    }
    cells = {r["group"]: r for r in fair if r["model"] == "gradient"}
    for grp, xs in by.items():
        assert cells[grp]["n"] == len(xs)
        assert cells[grp]["loss change"][0] == pytest.approx(mean(xs))
    v, lo, hi = cells["female - male"]["loss change"]
    assert v == pytest.approx(mean(by["female"]) - mean(by["male"]))
    assert lo <= v <= hi
