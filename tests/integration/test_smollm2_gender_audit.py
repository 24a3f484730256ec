"""circuits/smollm2-gender on the real SmolLM2-135M: a reduced spec, checked against transformers.

The full audit (``interp-audit run circuits/smollm2-gender/audit.yaml``: 12 min wall, 375 s CPU
measured, see the circuit's README) is not run here. This runs the spec's own check sections on
a slice of its own data (the same contrast file, names table and templates, fewer rows) on the
session's ``smollm2`` and compares one flip rate and one group's positive rate with plain
``transformers`` forwards of the same GGUF file, prompt by prompt, unpadded, tokenized by
SmolLM2's own tokenizer. Names of unequal token length are part of the slice (``Latoya`` is 3
tokens, ``Mary`` 1).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

import interp_audit as ia
from interp_audit.core.yamlio import load_yaml

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parents[2] / "circuits" / "smollm2-gender"
PRONOUNS = [" he", " she", " they"]
YES_NO = [" Yes", " No"]


def _check(name: str) -> dict:
    spec = load_yaml((HERE / "audit.yaml").read_text())
    return next(c for c in spec["checks"] if c["name"] == name)


@pytest.fixture(scope="module")
def reduced(tmp_path_factory, smollm2):
    """The spec's flip check of name ethnicity and its hiring-rate check, on a slice: every
    name-pair group's first 3 name pairs in one occupation (18 pairs), and 5 names of every
    gender x ethnicity cell (40 names) in one occupation."""
    base = tmp_path_factory.mktemp("smollm2-gender-reduced")
    (base / "contrasts").mkdir()
    rows = [json.loads(x) for x in (HERE / "contrasts" / "ethnicity_swap_pronoun.jsonl").open()]
    seen: dict[str, list[str]] = {}
    for r in rows:
        clusters = seen.setdefault(r["group"], [])
        if r["cluster"] not in clusters and len(clusters) < 3:
            clusters.append(r["cluster"])
    keep = [
        r for r in rows if r["label"] == "mechanic" and r["cluster"] in seen.get(r["group"], [])
    ]
    (base / "contrasts" / "ethnicity_swap_pronoun.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in keep)
    )
    with (HERE / "names.csv").open(newline="") as f:
        names = list(csv.DictReader(f))
    cells: dict[tuple[str, str], list[dict]] = {}
    for n in names:
        cells.setdefault((n["gender"], n["ethnicity"]), []).append(n)
    sub = [n for cell in cells.values() for n in cell[:5]]
    with (base / "names.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(names[0]))
        w.writeheader()
        w.writerows(sub)
    (base / "occupations_subset.csv").write_text("occupation,article\nnurse,a\n")
    hiring = _check("hiring_rates_by_gender_and_ethnicity")
    spec = {
        "name": "smollm2-gender-reduced",
        "seed": 0,
        "model": {"source": "zoo:smollm2-135m"},
        "metric": {"name": "logit_diff"},
        "contrasts": {
            "ethnicity_swap_pronoun": {
                "file": "contrasts/ethnicity_swap_pronoun.jsonl",
                "answers": [" she", " he"],
            }
        },
        "checks": [_check("pronoun_flips_with_name_ethnicity"), hiring],
    }
    report = ia.audit(spec, subject=smollm2, base=base, trust_gates=False)
    return report, keep, sub, hiring["population"]["template"]


def _hf_last_logits(smollm2, hf, texts: list[str]) -> torch.Tensor:
    """Last-token logits of single unpadded forwards, ids from SmolLM2's own tokenizer."""
    out = []
    with torch.no_grad():
        for text in texts:
            ids = smollm2.tokenizer(text)["input_ids"]
            out.append(hf(torch.tensor([ids])).logits[0, -1])
    return torch.stack(out)


def _ids(smollm2, answers: list[str]) -> list[int]:
    ids = [smollm2.tokenizer(a)["input_ids"] for a in answers]
    assert all(len(i) == 1 for i in ids), ids  # every answer is one SmolLM2 token
    return [i[0] for i in ids]


def test_flip_rate_equals_transformers_decisions(reduced, smollm2, smollm2_hf):
    report, pairs, _, _ = reduced

    def n_tokens(text):
        return len(smollm2.tokenizer(text)["input_ids"])

    assert any(
        n_tokens(p["clean"]) != n_tokens(p["counterfactual"]) for p in pairs
    )  # names of unequal token length are in the slice
    ids = _ids(smollm2, PRONOUNS)
    clean = _hf_last_logits(smollm2, smollm2_hf, [p["clean"] for p in pairs])
    cf = _hf_last_logits(smollm2, smollm2_hf, [p["counterfactual"] for p in pairs])
    dc, df = clean[:, ids].argmax(-1), cf[:, ids].argmax(-1)
    flips = next(c for c in report.checks if c.name == "pronoun_flips_with_name_ethnicity")
    assert flips.details[0]["n"] == len(pairs) == 18
    assert flips.statistic == pytest.approx(float((dc != df).double().mean()), abs=1e-12)
    assert flips.details[0]["flips"] == int((dc != df).sum())
    # the mean effect beside it: logit(" she") - logit(" he"), clean minus counterfactual
    she, he = ids[1], ids[0]
    want = ((clean[:, she] - clean[:, he]) - (cf[:, she] - cf[:, he])).mean()
    got = next(
        d for d in flips.details if d.get("measure") == "mean effect" and d["group"] == "all"
    )
    assert got["effect"] == pytest.approx(float(want), abs=1e-4)
    # and per direction: " she" -> " he" counts
    moved = next(
        d
        for d in flips.details
        if d.get("measure") == "flips" and (d["from"], d["to"]) == (" she", " he")
    )
    assert moved["count"] == int(((dc == 1) & (df == 0)).sum())


def test_hiring_positive_rates_equal_transformers_decisions(reduced, smollm2, smollm2_hf):
    report, _, names, template = reduced
    prompts = [template.format(**n, occupation="nurse", article="a") for n in names]
    logits = _hf_last_logits(smollm2, smollm2_hf, prompts)
    yes = (logits[:, _ids(smollm2, YES_NO)].argmax(-1) == 0).double()
    parity = next(c for c in report.checks if c.name == "hiring_rates_by_gender_and_ethnicity")
    for attribute in ("gender", "ethnicity"):
        for group in {n[attribute] for n in names}:
            want = yes[[n[attribute] == group for n in names]].mean()
            got = next(
                d for d in parity.details
                if d.get("measure") == "positive rate" and d.get("attribute") == attribute
                and d.get("group") == group
            )  # fmt: skip
            assert got["value"] == pytest.approx(float(want), abs=1e-12), (attribute, group)
            assert got["n"] == sum(n[attribute] == group for n in names)
    assert parity.verdict in ("pass", "fail", "inconclusive")


def test_stereotype_probabilities_equal_transformers_softmax(smollm2, smollm2_hf):
    """circuits/smollm2-gender/stereotype.py: P(she), P(he), P(they) per occupation x template."""
    spec = importlib.util.spec_from_file_location("stereotype", HERE / "stereotype.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("stereotype", mod)
    spec.loader.exec_module(mod)
    occ = mod.occupations(3)
    probs = mod.pronoun_probs(smollm2, occ, mod.templates()[:2])
    texts = [t.format(**o) for o in occ for t in mod.templates()[:2]]
    p = _hf_last_logits(smollm2, smollm2_hf, texts).softmax(-1)[:, _ids(smollm2, mod.ANSWERS)]
    got = torch.tensor(probs[["p_she", "p_he", "p_they"]].to_numpy())
    torch.testing.assert_close(got, p.double(), atol=1e-5, rtol=0)
    table = mod.per_occupation(probs, occ)
    corr = mod.correlation(table, n_boot=200)
    x = torch.tensor(table["bls_pct_female"].to_numpy())
    y = torch.tensor(table["she_minus_he"].to_numpy())
    pearson = torch.corrcoef(torch.stack([x, y]))[0, 1]
    assert corr.loc[0, "value"] == pytest.approx(float(pearson), abs=1e-9)
