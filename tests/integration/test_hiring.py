"""The hiring case: its tables SCM against a hand-written inverse CDF, and its path effects
against a naive loop over the trained model's logits."""

import re
from pathlib import Path

import pytest
import torch
import yaml

import interp_audit as ia
from interp_audit.causal import CausalModel

pytestmark = pytest.mark.integration
HERE = Path(__file__).resolve().parents[2] / "circuits" / "hiring"


@pytest.fixture(scope="module")
def hiring():
    spec = yaml.safe_load((HERE / "audit.yaml").read_text())
    return CausalModel.from_spec(spec["causal"], HERE)


def test_contested_path_counterfactual_by_hand(hiring):
    """Women had they been men, along G -> C -> Y only: the gap token is redrawn from the men's
    row of the table with the same U_C; every other token stays."""
    d = hiring.draw(source="G", value="man", reference="woman", paths=["G -> C -> Y"], n=300)
    p_no_man = 0.90  # P(C = no | man) in scm.yaml
    gap_as_man = ["yes" if u >= p_no_man else "no" for u in d.units.noise["C"].tolist()]
    for clean, cf, gap in zip(d.clean, d.counterfactual, gap_as_man, strict=True):
        c, f = clean.split(), cf.split()
        assert c[0] == f[0] == "gender:woman" and c[1] == f[1] and c[3] == f[3]
        assert f[2] == f"gap:{gap}" and c[2] != f[2]  # kept units changed: yes -> no
    # women whose gap flips (U_C in [0.55, 0.90)): P(yes | woman) - P(yes | man) = 0.35
    assert d.fraction_changed == pytest.approx(0.35, abs=0.03)


def test_path_effect_matches_a_naive_loop(hiring):
    subject = ia.load_model("zoo:hiring")
    cs = hiring.contrast(subject, source="G", value="man", reference="woman", paths="all", n=60)
    yes, no = (subject.answer_token(a)[0] for a in ("hire", "reject"))
    naive = []
    for clean, cf in zip(cs.clean_text, cs.counterfactual_text, strict=True):
        lc = subject.run(torch.tensor([subject.to_tokens(clean)]))[0, -1]
        lf = subject.run(torch.tensor([subject.to_tokens(cf)]))[0, -1]
        naive.append(float((lc[yes] - lc[no]) - (lf[yes] - lf[no])))
    from interp_audit.audit.measure import pair_effects

    c, f = pair_effects(subject, cs, ia.metrics.logit_diff)
    torch.testing.assert_close(
        (c - f).double(), torch.tensor(naive, dtype=torch.float64), atol=1e-4, rtol=0
    )


# ---- the trade-off sweep: every row against a naive loop over plain forwards -----------------
GAPS = HERE / "audit_gaps_inadmissible.yaml"


@pytest.fixture(scope="module")
def trade():
    from interp_audit.audit.tradeoff import tradeoff

    return tradeoff(
        GAPS,
        ks=(4,),
        kinds=("zero",),
        sae="zoo:hiring-attn0",
        sae_kinds=("zero",),
        baselines={"zoo:hiring-nogap": ["C"]},
        n=100,
        n_boot=200,
    )


def naive_effect(subject, texts: list[tuple[str, str]]) -> float:
    yes, no = (subject.answer_token(a)[0] for a in ("hire", "reject"))
    out = []
    for clean, cf in texts:
        lc = subject.run(torch.tensor([subject.to_tokens(clean)]))[0, -1]
        lf = subject.run(torch.tensor([subject.to_tokens(cf)]))[0, -1]
        out.append(float((lc[yes] - lc[no]) - (lf[yes] - lf[no])))
    return sum(out) / len(out)


def path_texts(hiring, subject, path: str, hide_gap: bool = False) -> list[tuple[str, str]]:
    """The sweep's draw (n = 100, the spec's seed 101), by the causal model's own contrast; with
    ``hide_gap`` the gap word replaced by ``gap:?`` in the text, as the retrained model reads it."""
    cs = hiring.contrast(
        subject, source="G", value="man", reference="woman", paths=[path], n=100, seed=101
    )
    pairs = list(zip(cs.clean_text, cs.counterfactual_text, strict=True))
    if hide_gap:
        pairs = [tuple(re.sub(r"gap:\w+", "gap:?", t) for t in p) for p in pairs]
    return pairs


def test_tradeoff_rows_match_naive_loops(trade, hiring):
    subject = ia.load_model("zoo:hiring")
    none = trade.row("none")
    for path in ("G -> C -> Y", "G -> Q -> Y"):
        assert none[path] == pytest.approx(
            naive_effect(subject, path_texts(hiring, subject, path)), abs=1e-4
        )
    zero = trade.row("zero-ablate top 4")
    comps = zero["components"].split(", ")
    assert comps == trade.ranking[:4]
    with ia.ablate(subject, comps, kind="zero"):
        for path in ("G -> C -> Y", "G -> Q -> Y"):
            naive = naive_effect(subject, path_texts(hiring, subject, path))
            assert zero[path] == pytest.approx(naive, abs=1e-4), path
    feats = trade.row("SAE zero-ablate top 4 features")
    sae = ia.sae.load_sae("zoo:hiring-attn0", subject)
    with ia.sae.ablate_features(subject, sae, feats["components"].split(", ")):
        naive = naive_effect(subject, path_texts(hiring, subject, "G -> C -> Y"))
    assert feats["G -> C -> Y"] == pytest.approx(naive, abs=1e-4)


def naive_flip_rate(subject, texts: list[tuple[str, str]]) -> float:
    """Share of pairs whose hire/reject (the higher logit; a tie hires) differs, plain forwards."""
    yes, no = (subject.answer_token(a)[0] for a in ("hire", "reject"))
    flips = []
    for clean, cf in texts:
        lc = subject.run(torch.tensor([subject.to_tokens(clean)]))[0, -1]
        lf = subject.run(torch.tensor([subject.to_tokens(cf)]))[0, -1]
        flips.append((lc[yes] >= lc[no]) != (lf[yes] >= lf[no]))
    return sum(map(float, flips)) / len(flips)


def test_tradeoff_flip_rates_match_naive_loops(trade, hiring):
    """The decision columns: each inadmissible path's flip rate, unrepaired and with the top 4
    components zeroed, against plain forwards with the decision coded by hand."""
    subject = ia.load_model("zoo:hiring")
    none, zero = trade.row("none"), trade.row("zero-ablate top 4")
    paths = ("G -> C -> Y", "G -> H -> Y", "G -> Y")
    for path in paths:
        texts = path_texts(hiring, subject, path)
        assert none[f"{path} flip rate"] == pytest.approx(naive_flip_rate(subject, texts)), path
    with ia.ablate(subject, zero["components"].split(", "), kind="zero"):
        for path in paths:
            naive = naive_flip_rate(subject, path_texts(hiring, subject, path))
            assert zero[f"{path} flip rate"] == pytest.approx(naive), path
    assert none["flip rate on"] == "G -> C -> Y" and none["flip rate"] > 0.3
    assert zero["flip rate"] == max(zero[f"{p} flip rate"] for p in paths)


def test_retrained_baseline_hiding_the_gap_reads_gender_directly(trade, hiring):
    """The retrained model that never sees the gap carries nothing along G -> C -> Y, and its
    direct G -> Y effect (a naive loop over the texts with gap:?) is larger than the audited
    model's: unawareness moves the gap penalty onto the gender word."""
    nogap = ia.load_model("zoo:hiring-nogap")
    audited = ia.load_model("zoo:hiring")
    row = trade.row("retrained zoo:hiring-nogap (input hides C)")
    assert row["G -> C -> Y"] == 0.0 and row["G -> C -> Y CI"] == [0.0, 0.0]
    naive = naive_effect(nogap, path_texts(hiring, audited, "G -> Y", hide_gap=True))
    assert row["G -> Y"] == pytest.approx(naive, abs=1e-4)
    assert abs(row["G -> Y"]) > abs(trade.row("none")["G -> Y"])
    # utility on the same 1000 applicants, the gap hidden, against the historical labels
    fs = hiring.factual_set(audited, n=1000, seed=102, label="hired", group_by="G")
    yes, no = (nogap.answer_token(a)[0] for a in ("hire", "reject"))
    right = []
    for text, ans in zip(fs.clean_text, fs.answers[:, 0].tolist(), strict=True):
        logits = nogap.run(torch.tensor([nogap.to_tokens(re.sub(r"gap:\w+", "gap:?", text))]))
        says_yes = bool(logits[0, -1, yes] > logits[0, -1, no])
        right.append(says_yes == (ans == yes))
    assert row["utility"] == pytest.approx(sum(right) / len(right), abs=1e-12)
