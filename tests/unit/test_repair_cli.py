"""``interp-audit repair``: fold, export, re-audit from disk, verify; refusals by name.

References: the path effects of zoo:readmission (the direct path is exactly 0 once the age
tokens' embeddings are made identical), a naive recomputation of the repair's cost with
``ia.repaired`` and per-pair utilities, the hash of the written weights, and plain
``transformers`` for the Hugging Face export.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import interp_audit as ia
from interp_audit.audit.measure import utility_values
from interp_audit.audit.verify import verify
from interp_audit.cli.main import main as cli
from interp_audit.engine.repairs import repaired
from interp_audit.zoo.registry import WEIGHTS

READMISSION = """
name: readmission-repair
seed: 0
model: {source: %(source)s}
causal: zoo:readmission
contrasts:
  a_direct: {scm: causal, source: A, paths: direct, n: 80, seed: 7919}
  a_total: {scm: causal, source: A, paths: all, n: 80, seed: 7919}
  patients: {scm: causal, factual: true, n: 300, seed: 7920, label: readmitted_fair, group_by: A}
locate:
  - {method: patch, contrast: a_direct, sites: heads, name: direct_heads}
checks:
  - name: age_paths
    kind: path_invariance
    source: A
    seed: 7919
    n: 80
    tolerance: 0.25
    n_boot: 200
  - name: fix
    kind: intervention
    contrast: a_direct
    ablate: %(ablate)s
    tolerance: 0.25
    n_boot: 200
    preserve: {tolerance: 0.25, seed: 7919, n: 80}
    utility: {contrast: patients, metric: accuracy, budget: 0.05, per_group: true}
  - name: one_head
    kind: component_mediation
    contrast: a_direct
    sites: heads
    max_share: 0.9
    n_boot: 200
  - name: flips
    kind: flip_rate
    contrast: a_direct
    decision: {answers: ["YES", "NO"]}
    budget: 0.05
    n_boot: 200
  - name: parity
    kind: group_parity
    population: {scm: causal, n: 300, seed: 7920}
    decision: {answers: ["YES", "NO"]}
    attributes: [A]
    budget: 0.1
    n_boot: 200
"""
ERASE = "{kind: erase, components: [L0.resid_pre@1, L0.resid_pre@2], reference: a_total}"


def _spec(tmp_path, ablate=ERASE, source="zoo:readmission", name="audit.yaml"):
    path = tmp_path / name
    path.write_text(READMISSION % {"ablate": ablate, "source": source})
    return path


@pytest.fixture(scope="module")
def erased(tmp_path_factory):
    """One repair run shared by the tests below (two audits: before and after)."""
    from interp_audit.audit import repair as repair_module

    def contrasts_seen(seen):  # a comparison plugged in through the hook
        rows = [[name, len(cs)] for name, cs in sorted(seen.context.contrasts.items())]
        return {"title": "hooked comparison", "columns": ["contrast", "pairs"], "rows": rows}

    tmp = tmp_path_factory.mktemp("repair")
    spec = _spec(tmp)
    out = tmp / "out"
    repair_module.COMPARISONS.append(contrasts_seen)
    try:
        rc = cli(["repair", str(spec), "--check", "fix", "--out", str(out)])
    finally:
        repair_module.COMPARISONS.remove(contrasts_seen)
    return spec, out, rc


def test_repair_writes_the_model_and_a_re_audit_from_disk(erased):
    spec, out, rc = erased
    data = json.loads((out / "report.json").read_text())
    assert rc == (0 if data["verdict"] == "pass" else 1)  # exit codes follow run
    rep = data["provenance"]["repair"]
    assert rep["format"] == "interp_audit" and rep["model"] == "model"
    assert data["provenance"]["model"]["source"] == str(out / "model")  # audited from disk
    assert data["provenance"]["weights"]["state_sha256"] == rep["record"]["weights_sha256"]
    assert rep["record"]["repair"]["components"] == ["L0.resid_pre@1", "L0.resid_pre@2"]
    assert rep["record"]["repair"]["reference"]["contrast"] == "a_total"
    before = json.loads((out / "before" / "report.json").read_text())
    assert (
        rep["record"]["source"]["state_sha256"] == before["provenance"]["weights"]["state_sha256"]
    )
    names = ["age_paths", "fix", "one_head", "flips", "parity"]
    assert [c["name"] for c in rep["before"]["checks"]] == names
    # the repair removed the direct path: no share of it to mediate (not rounding / rounding)
    (head,) = [c for c in data["checks"] if c["name"] == "one_head"]
    assert head["verdict"] == "pass" and head["reason"].startswith("no effect left to mediate")
    assert [c["verdict"] for c in rep["before"]["checks"] if c["name"] == "one_head"] == ["pass"]
    titles = [s["title"] for s in data["sections"]]
    assert "Verdicts before and after the repair" in titles
    page = (out / "report.html").read_text()
    assert "Verdicts before and after the repair" in page and "What the repair costs" in page
    # the repair removed the direct path: its locate step has nothing to normalise, and reports
    # the mean patched metric, which is the unpatched one (no head changes anything)
    assert before["located"]["direct_heads"]["normalized"] is True
    located = data["located"]["direct_heads"]
    base = located["baseline"]["counterfactual"]
    assert located["normalized"] is False
    assert max(abs(v - base) for row in located["values"] for v in row) < 1e-5
    decisions, hooked = data["sections"][-2:]
    assert hooked["title"] == "hooked comparison" and rep["comparisons"] == [decisions, hooked]
    assert ["patients", 300] in hooked["rows"]
    assert decisions["title"] == "Decisions before and after the repair"
    assert "Decisions before and after the repair" in page


def test_repair_numbers_against_references(erased, readmission_subject):
    """The direct path is exactly gone (the age tokens' embeddings coincide after the fold),
    the before effects are the audit's own, and the cost rows equal a naive recomputation."""
    spec, out, _ = erased
    data = json.loads((out / "report.json").read_text())
    rep = data["provenance"]["repair"]
    paths = {r["path"]: r for r in rep["paths"]}
    assert abs(paths["A -> Y"]["after"]) < 1e-5 and paths["A -> Y"]["before"] > 1
    before = json.loads((out / "before" / "report.json").read_text())
    rows = {d["path"]: d for d in before["checks"][0]["details"] if "path" in d}
    for p in ("A -> Y", "A -> Xs -> X -> Y"):
        assert paths[p]["before"] == pytest.approx(rows[p]["effect"], abs=1e-6)
    after = {d["path"]: d for d in data["checks"][0]["details"] if "path" in d}
    assert paths["A -> Xs -> X -> Y"]["after"] == pytest.approx(
        after["A -> Xs -> X -> Y"]["effect"], abs=1e-5
    )
    # naive cost: the same repair made by hand, utilities on the same patients
    from interp_audit.audit.run import build_context
    from interp_audit.audit.spec import load_spec

    parsed, base = load_spec(spec)
    ctx = build_context(parsed, base, readmission_subject, ia.CausalModel.from_spec(
        "zoo:readmission", base), locate=False)  # fmt: skip
    fixed = repaired(
        readmission_subject,
        ["L0.resid_pre@1", "L0.resid_pre@2"],
        kind="erase",
        reference=ctx.contrasts["a_total"],
    )
    cs = ctx.contrasts["patients"]
    u0, u1 = (utility_values(s, cs, "accuracy") for s in (readmission_subject, fixed))
    costs = {r["group"]: r for r in rep["costs"]}
    assert costs["all"]["cost"] == pytest.approx(float((u0 - u1).mean()), abs=1e-9)
    young = torch.tensor([g == "age:young" for g in cs.groups])
    assert costs["age:young"]["cost"] == pytest.approx(float((u0 - u1)[young].mean()), abs=1e-9)


def plain_decisions(subject, prompts):
    """1 when logit(YES) >= logit(NO) at the last position (the top answer; ties go to YES),
    one prompt per plain forward of the model's own module."""
    yes, no = subject.single_token("YES"), subject.single_token("NO")
    out = []
    with torch.no_grad():
        for p in prompts:
            logits = subject.model(torch.tensor([subject.to_tokens(p)]))[0, -1]
            out.append(int(logits[yes] >= logits[no]))
    return out


def naive_paired_ci(before, after, stat, *, n_boot=200, seed=0, confidence=0.95):
    """The change stat(after) - stat(before) under resampling units (each its own cluster),
    the same draw for both: resample, recompute, widen by sqrt(G/(G-1)) t/z, quantiles."""
    from scipy.stats import norm, t

    g = len(before)
    picks = torch.randint(0, g, (n_boot, g), generator=torch.Generator().manual_seed(seed))
    point = stat(after) - stat(before)
    draws = torch.tensor(
        [stat([after[i] for i in p]) - stat([before[i] for i in p]) for p in picks.tolist()],
        dtype=torch.float64,
    )
    q = 1 - (1 - confidence) / 2
    widen = (g / (g - 1)) ** 0.5 * t.ppf(q, g - 1) / norm.ppf(q)
    s = point + widen * (draws - point)
    return point, torch.quantile(s, torch.tensor([1 - q, q], dtype=torch.float64)).tolist()


def test_decisions_before_and_after_equal_a_naive_loop(erased, readmission_subject):
    """The flip rate of the direct-path pairs and the age gap in YES rates of the patients,
    before (zoo:readmission) and after (the model read back from out/model): plain forwards,
    decisions by hand, and a naive paired bootstrap of the change."""
    from circuits.readmission import scm as R
    from interp_audit.audit.run import build_context
    from interp_audit.audit.spec import load_spec

    spec, out, _ = erased
    data = json.loads((out / "report.json").read_text())
    rows = data["provenance"]["repair"]["comparisons"][0]["data"]
    shipped = ia.load_model(out / "model")
    parsed, base = load_spec(spec)
    ctx = build_context(parsed, base, readmission_subject, ia.CausalModel.from_spec(
        "zoo:readmission", base), locate=False)  # fmt: skip
    cs = ctx.contrasts["a_direct"]
    flips = []
    for model in (readmission_subject, shipped):
        c = plain_decisions(model, cs.clean_text)
        f = plain_decisions(model, cs.counterfactual_text)
        flips.append([float(a != b) for a, b in zip(c, f, strict=True)])

    def mean(xs):
        return sum(xs) / len(xs)

    flip, effect = [r for r in rows if r["check"] == "flips" and r["group"] == "all"]
    assert flip["measure"] == "flip rate" and flip["paired"] is True
    assert effect["measure"] == "mean effect (logit_diff)"  # beside it, the mean effect
    assert effect["after"] == pytest.approx(0.0, abs=1e-5) and effect["before"] > 1
    assert flip["before"] == pytest.approx(mean(flips[0]), abs=1e-12)
    assert flip["after"] == pytest.approx(mean(flips[1]), abs=1e-12)
    point, ci = naive_paired_ci(flips[0], flips[1], mean)
    assert [flip["change"], *flip["change ci"]] == pytest.approx([point, *ci], abs=1e-12)
    assert flip["before"] > 0.5 and flip["after"] == 0.0  # the repair removed the direct flips
    # the before and after intervals are the audits' own (the flip_rate check, same draws)
    audits = {
        "before": json.loads((out / "before" / "report.json").read_text()),
        "after": data,
    }
    for when, rep in audits.items():
        (res,) = [c for c in rep["checks"] if c["name"] == "flips"]
        assert [flip[when], *flip[f"{when} ci"]] == pytest.approx([res["statistic"], *res["ci"]])
        assert flip[f"verdict {when}"] == res["verdict"]
    assert flip["verdict changed"] == (flip["verdict before"] != flip["verdict after"])

    u = R.sample_units(300, 7920)
    prompts = R.factual_words(u)
    ages = [R.AGES[a] for a in u.a.tolist()]
    yes = [plain_decisions(m, prompts) for m in (readmission_subject, shipped)]

    def gap(pairs):  # [(age, decision)] -> highest YES rate minus lowest, over the ages
        rates = [mean([d for a, d in pairs if a == age]) for age in R.AGES]
        return max(rates) - min(rates)

    before = list(zip(ages, yes[0], strict=True))
    after = list(zip(ages, yes[1], strict=True))
    (par,) = [r for r in rows if r["check"] == "parity"]
    assert par["measure"] == "demographic parity gap" and par["attribute"] == "A"
    assert [par["before"], par["after"]] == pytest.approx([gap(before), gap(after)], abs=1e-12)
    point, ci = naive_paired_ci(before, after, gap)
    assert [par["change"], *par["change ci"]] == pytest.approx([point, *ci], abs=1e-12)
    assert par["highest, lowest before"] == ["old", "young"]
    (res,) = [c for c in audits["before"]["checks"] if c["name"] == "parity"]
    (dp,) = [d for d in res["details"] if d.get("measure") == "demographic parity gap"]
    assert [par["before"], *par["before ci"]] == pytest.approx([dp["value"], *dp["ci"]])


def test_verify_accepts_the_repair_and_rejects_a_changed_weight(erased, tmp_path):
    _, out, _ = erased
    assert verify(out).ok
    tampered = tmp_path / "tampered"
    shutil.copytree(out, tampered)
    from safetensors.torch import load_file, save_file

    path = tampered / "model" / "model.safetensors"
    state = load_file(str(path))
    state["blocks.1.mlp.W_out"][0, 0] += 1e-3
    save_file(state, str(path))
    result = verify(tampered)
    assert not result.ok
    assert any(d.where == "repaired model: weights (tensors)" for d in result.differences)
    assert cli(["verify", str(tampered)]) == 1


def test_position_restricted_repair_is_refused_naming_the_component(tmp_path, capsys):
    ablate = "{kind: mean, reference: a_total, components: [L0H1, L0H0.k@1, L0H1.v@2]}"
    out = tmp_path / "out"
    rc = cli(["repair", str(_spec(tmp_path, ablate)), "--check", "fix", "--out", str(out)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "cannot fold 'L0H0.k@1'" in err and "restricted to position 1" in err
    assert not (out / "model").exists() and not (out / "report.json").exists()


def test_per_position_mean_is_refused_with_the_spec_key(tmp_path, capsys):
    ablate = "{kind: mean, reference: a_total, components: [L0H1, L1H3]}"
    rc = cli(["repair", str(_spec(tmp_path, ablate)), "--check", "fix", "--out", str(tmp_path)])
    assert rc == 2
    assert "ablate.per_position: false" in capsys.readouterr().err


def test_repair_needs_an_intervention_check(tmp_path, capsys):
    spec = _spec(tmp_path)
    assert cli(["repair", str(spec), "--check", "age_paths", "--out", str(tmp_path / "o")]) == 2
    assert "path_invariance check" in capsys.readouterr().err
    assert cli(["repair", str(spec), "--check", "nope", "--out", str(tmp_path / "o")]) == 2
    assert "no check 'nope'" in capsys.readouterr().err


def test_repair_of_a_hugging_face_model_ships_a_transformers_folder(tmp_path):
    """A random GPT-2 checkpoint reading readmission's prompts (its tokenizer copied in): a
    mean repair of whole heads and a neuron ships as a folder plain transformers loads, the
    re-audit reads it from disk, and verify accepts it."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    folder = tmp_path / "gpt2"
    cfg = AutoConfig.for_model(
        "gpt2", vocab_size=23, n_layer=2, n_head=4, n_embd=64, n_positions=16
    )
    AutoModelForCausalLM.from_config(cfg).eval().save_pretrained(folder)
    for f in (WEIGHTS / "readmission" / "tokenizer").iterdir():
        shutil.copy(f, folder / f.name)
    ablate = "{kind: mean, per_position: false, reference: a_total, components: [L0H1, L1H2, L1N5]}"
    spec = _spec(tmp_path, ablate, source=str(folder))
    out = tmp_path / "out"
    rc = cli(["repair", str(spec), "--check", "fix", "--out", str(out)])
    data = json.loads((out / "report.json").read_text())
    assert rc == (0 if data["verdict"] == "pass" else 1)
    assert data["provenance"]["repair"]["format"] == "hf"
    subject = ia.load_model(folder)
    plain = AutoModelForCausalLM.from_pretrained(str(out / "model")).eval()
    tokens = torch.randint(0, 23, (3, 6), generator=torch.Generator().manual_seed(1))
    fixed = repaired(subject, ["L0H1", "L1H2", "L1N5"], kind="mean", reference=tokens)
    with torch.no_grad():
        got = plain(tokens).logits
    assert (got - subject.run(tokens)).abs().max() > 1e-4  # the repair shipped
    shipped = ia.load_model(out / "model")  # what the re-audit read
    torch.testing.assert_close(shipped.run(tokens), got, atol=1e-4, rtol=0)
    record = json.loads((out / "model" / "repair.json").read_text())
    assert record["export"]["check"]["max_abs_logit_diff"] < 1e-4
    assert record["changed_parameters"].keys() == fixed.repair["changed_parameters"].keys()
    assert verify(out).ok
