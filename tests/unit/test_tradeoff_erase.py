"""The trade-off's ``erase`` rows: LEACE concept erasure beside the component ablations.

Reference: each row's path effects recomputed naively (the same path contrast, one hooked
``ia.ablate(kind="erase")`` forward per side); the held-out probe in the row's meta at chance
where the erasure covers every position of the embeddings.
"""

from __future__ import annotations

import pytest
import torch

import interp_audit as ia
from interp_audit.audit.measure import pair_effects

SPEC = """
name: readmission-erase-rows
seed: 0
model: {source: zoo:readmission}
causal: zoo:readmission
contrasts:
  a_total: {scm: causal, source: A, paths: all, n: 120, seed: 7919}
  a_direct: {scm: causal, source: A, paths: direct, n: 120, seed: 7919}
  patients: {scm: causal, factual: true, n: 300, seed: 7920, label: readmitted_fair, group_by: A}
locate:
  - {method: patch, contrast: a_direct, sites: heads_v, per_position: true, name: direct_values}
checks:
  - {name: age_paths, kind: path_invariance, source: A, seed: 7919, tolerance: 0.25}
"""


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    spec = tmp_path_factory.mktemp("erase") / "audit.yaml"
    spec.write_text(SPEC)
    return spec, ia.tradeoff(
        spec, kinds=["erase"], ks=[1], n=120, n_boot=200, objective="A", reference="a_total"
    )


def test_erase_rows_are_the_hooked_erasure(table):
    from interp_audit.audit.tradeoff.objectives import draw_paths
    from interp_audit.audit.tradeoff.sweep import _prepare

    spec, t = table
    rows = {r["repair"]: r for r in t.rows if r["family"] == "erase"}
    names = sorted(rows)
    assert names == [
        "LEACE-erase contrast at L0.resid_pre",
        "LEACE-erase contrast at L0.resid_pre (fitted at positions 1, 2)",
        "LEACE-erase contrast at L1.resid_post",
        "LEACE-erase contrast at L1.resid_pre",
    ]
    _, ctx = _prepare(spec)
    paths = draw_paths(ctx, ["A"], n=120, seed=7919)
    ref = ctx.contrasts["a_total"]
    for name, sites in [
        (names[0], ["L0.resid_pre"]),
        (names[1], ["L0.resid_pre@1", "L0.resid_pre@2"]),
    ]:
        with ia.ablate(ctx.subject, sites, kind="erase", reference=ref):
            for path in ("A -> Y", "A -> Xs -> X -> Y"):
                c, f = pair_effects(ctx.subject, paths[path], ctx.metric)
                assert rows[name][path] == pytest.approx(float((c - f).mean()), abs=1e-5)
    # fitted where the inadmissible paths start: the direct path goes, labs stay
    at = rows[names[1]]
    assert abs(at["A -> Y"]) < 0.05 and at["admissible kept"] > 0.8
    # fitted at every position: the admissible labs path goes too (reported, not hidden)
    assert rows[names[0]]["admissible kept"] < 0.2


def test_erase_rows_carry_a_held_out_probe(table):
    _, t = table
    probes = t.meta["erasure probes"]
    whole = probes["L0.resid_pre"]["all"]
    assert whole["before"]["accuracy"] > 0.6 and not whole["before"]["at_chance"]
    assert whole["after"]["at_chance"] and whole["after"]["chance"] == 0.5
    assert probes["L0.resid_pre"]["erased directions"] >= 1


def test_default_concept_is_the_objectives_total_change(table):
    """Without a reference, erase rows learn the objective's source changed along every path
    at once: the spec's own total contrast for A (same SCM draw), E's for objective E."""
    from interp_audit.audit.tradeoff.sweep import _objective_contrast, _prepare

    spec, t = table
    assert t.meta["erasure concept"] == "a_total"  # the reference this table was given
    _, ctx = _prepare(spec)
    cm = ctx.causal.model
    a = _objective_contrast(ctx, cm, ["A"], n=120, seed=7919)
    assert torch.equal(a.clean, ctx.contrasts["a_total"].clean)
    assert torch.equal(a.counterfactual, ctx.contrasts["a_total"].counterfactual)
    e = _objective_contrast(ctx, cm, ["E"], n=50, seed=3)
    changed = (e.clean != e.counterfactual).any(0).nonzero().flatten().tolist()
    assert changed == [3, 4]  # the hospital's tokens: the lab (E -> X) and the hospital itself
