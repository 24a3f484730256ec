"""The trade-off sweep on the hand-wired model, against analytic answers: component ablation, an
exact identity SAE's feature ablation, retrained baselines (one with a hidden input), the
spec's checks re-run under each repair."""

import json
from pathlib import Path

import pytest
import torch

from interp_audit.audit.tradeoff import Baseline, tradeoff
from interp_audit.core.errors import SpecError
from tests.linear_paths import VOCAB, WEIGHT, build_linear, linear_spec

PATHS = {
    ("A", "Y"): "A -> Y",
    ("A", "M", "Y"): "A -> M -> Y",
    ("A", "Z", "Y"): "A -> Z -> Y",
    ("A", "M", "Z", "Y"): "A -> M -> Z -> Y",
}


@pytest.fixture(scope="module")
def linear_subject():
    return build_linear()


def spec_with_checks():
    spec = linear_spec(
        {"name": "paths", "kind": "path_invariance", "source": "A", "n": 100, "seed": 5,
         "tolerance": 0.3, "n_boot": 200},
        {"name": "respond", "kind": "responsiveness", "paths": "mediated", "floor": 0.1,
         "n": 100, "seed": 5, "n_boot": 200},
        {"name": "repair", "kind": "intervention", "contrast": "direct",
         "ablate": {"components": ["L0H0"], "kind": "zero"}, "tolerance": 0.05,
         "utility": {"contrast": "units", "metric": "logit_diff", "budget": 1.0}},
        direct={"scm": "causal", "source": "A", "paths": "A -> Y", "n": 50, "seed": 5},
        units={"scm": "causal", "factual": True, "n": 300, "group_by": "A", "label": "L"},
    )  # fmt: skip
    spec["locate"] = [{"method": "patch", "contrast": "direct", "sites": "heads", "name": "d"}]
    return spec


def identity_sae(d: int):
    """An exact SAE on the one-hot embeddings: feature i is token i."""
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    sae = StandardSAE(
        StandardSAEConfig(
            d_in=d, d_sae=d, metadata=SAEMetadata(hook_name="blocks.0.hook_resid_pre")
        )
    ).eval()
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(d))
        sae.W_dec.copy_(torch.eye(d))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


@pytest.fixture(scope="module")
def baselines(tmp_path_factory):
    """Saved hand-wired 'retrained' models: one that ignores the A token (a:1 weight 0), one
    whose input hides M (``m:?`` appended to the vocabulary, weight 0)."""
    root = tmp_path_factory.mktemp("baselines")
    no_direct = build_linear(weight={**WEIGHT, "a:1": 0.0})
    no_direct.save(root / "no-direct")
    hides_m = build_linear(vocab=[*VOCAB, "m:?"])
    hides_m.save(root / "hides-m")
    return root


@pytest.fixture(scope="module")
def table(linear_subject, baselines):
    return tradeoff(
        spec_with_checks(),
        ks=(1,),
        kinds=("zero",),
        sae=identity_sae(len(VOCAB) + 1),
        sae_kinds=("zero",),
        baselines=[
            Baseline(str(baselines / "no-direct")),
            Baseline(str(baselines / "hides-m"), mask=("M",), name="hides M"),
        ],
        n=100,
        n_boot=200,
        subject=linear_subject,
    )


def test_unrepaired_row_is_the_analytic_path_effects(table):
    none = table.row("none")
    for path, name in PATHS.items():
        if path in (("A", "Y"), ("A", "M", "Y")):  # the same change in every changed pair
            expect = -(WEIGHT["a:1"] if path == ("A", "Y") else WEIGHT["m:1"]) / 5
            assert none[name] == pytest.approx(expect, abs=1e-5), name
    assert none["inadmissible left"] == pytest.approx(abs(none["A -> Z -> Y"]), abs=1e-9)
    assert none["worst inadmissible path"] == "A -> Z -> Y"  # z:1 weighs -3: +0.6 per change
    assert none["A -> Z -> Y"] == pytest.approx(0.6, abs=1e-5)
    assert none["admissible kept"] == 1.0 and none["utility cost"] == 0.0
    assert table.meta["checks re-run"] == ["paths", "respond"]
    assert table.meta["checks not re-run"] == ["repair"]  # it applies its own ablation
    assert none["check: paths"] == "fail" and none["check: respond"] == "pass"


def test_sae_feature_ablation_removes_exactly_the_direct_token(table):
    """Feature 7 is the a:1 token: the direct contrast's only feature with an effect; zeroing it
    removes A -> Y and leaves every other path as it was."""
    assert table.meta["feature ranking"][0] == f"L0F{VOCAB.index('a:1')}"
    row = table.row("SAE zero-ablate top 1 features")
    none = table.row("none")
    assert row["components"] == "L0F7"
    assert row["A -> Y"] == pytest.approx(0.0, abs=1e-6)
    for name in ("A -> M -> Y", "A -> Z -> Y", "A -> M -> Z -> Y"):
        assert row[name] == pytest.approx(none[name], abs=1e-6), name
    assert row["admissible kept"] == pytest.approx(1.0, abs=1e-6)
    assert row["admissible kept CI"] == pytest.approx([1.0, 1.0], abs=1e-6)


def test_retrained_baseline_without_the_direct_weight(table):
    row = table.row(f"retrained {table.meta['baselines'][0].split(' ', 1)[1]}")
    assert row["family"] == "retrained"
    assert row["A -> Y"] == pytest.approx(0.0, abs=1e-6)
    assert row["A -> Z -> Y"] == pytest.approx(table.row("none")["A -> Z -> Y"], abs=1e-6)
    assert row["admissible kept"] == pytest.approx(1.0, abs=1e-6)
    # the same units (the draw's unit ids match), so the ratio is paired: no interval at all
    assert row["admissible kept CI"] == pytest.approx([1.0, 1.0], abs=1e-6)


def test_a_baseline_that_hides_m_cannot_respond_along_it(table):
    """Hiding M: along A -> M -> Y no unit's input changes (effect 0 exactly) and the
    responsiveness check breaks; A -> M -> Z -> Y still moves Z, with the analytic effect."""
    row = table.row("hides M")
    assert row["A -> M -> Y"] == 0.0 and row["A -> M -> Y CI"] == [0.0, 0.0]
    assert row["A -> Y"] == pytest.approx(-WEIGHT["a:1"] / 5, abs=1e-5)
    assert row["check: respond"] == "fail" and row["checks broken"] == "respond"
    assert row["admissible kept"] == 0.0 and row["least kept admissible path"] == "A -> M -> Y"
    # groups come from the audited model's rendering (a:0 / a:1), not the hidden one
    assert row["worst group"] in ("a:0", "a:1")


def test_checks_are_re_run_on_the_repaired_model(table):
    """Zeroing the only head leaves a constant output: every path effect is 0, so the path
    invariance check passes and the responsiveness check fails."""
    row = table.row("zero-ablate top 1")
    assert all(row[p] == pytest.approx(0.0, abs=1e-6) for p in PATHS.values())
    assert row["check: paths"] == "pass" and row["check: respond"] == "fail"
    assert row["checks fixed"] == "paths" and row["checks broken"] == "respond"
    assert row["check: paths statistic"] == pytest.approx(0.0, abs=1e-6)


def test_table_renders_and_saves(table, tmp_path):
    out = table.save(tmp_path / "t")
    data = json.loads((out / "tradeoff.json").read_text())
    assert [r["repair"] for r in data["rows"]] == [r["repair"] for r in table.rows]
    assert (out / "tradeoff.csv").read_text().count("\n") == len(table.rows) + 1
    page = (out / "tradeoff.html").read_text()
    assert all(f"<td>{r['repair']}</td>" in page for r in table.rows)
    assert "hides M" in table._repr_html_()
    summary = table.to_frame(summary=True)
    assert list(summary.columns)[:3] == ["repair", "inadmissible left", "admissible kept"]


def test_errors_name_what_is_wrong(linear_subject, baselines):
    spec = spec_with_checks()
    with pytest.raises(SpecError, match="objective 'Q' is not an audited source"):
        tradeoff(spec, objective="Q", subject=linear_subject, ks=(1,), kinds=("zero",))
    with pytest.raises(SpecError, match="no locate step 'nope'"):
        tradeoff(spec, locate=["nope"], subject=linear_subject, ks=(1,), kinds=("zero",))
    with pytest.raises(SpecError, match="mask names 'Y'"):
        tradeoff(
            spec,
            baselines={str(baselines / "no-direct"): ["Y"]},
            subject=linear_subject,
            ks=(1,),
            kinds=("zero",),
            checks=False,
        )
    other = build_linear(vocab=["<bos>", "<pad>", "<unk>", "->", "NO", "YES", *VOCAB[6:]])
    with pytest.raises(SpecError, match="same tokenizer"):
        from interp_audit.audit.tradeoff.repairs import Baseline as B  # noqa: F401

        folder = baselines / "swapped"
        other.save(folder)
        tradeoff(
            spec, baselines=[str(folder)], subject=linear_subject, ks=(1,), kinds=("zero",),
            checks=False,
        )  # fmt: skip


def test_objective_without_locate_steps_ranks_by_patching_its_paths(linear_subject):
    spec = spec_with_checks()
    del spec["locate"]
    t = tradeoff(
        spec, ks=(1,), kinds=("zero",), n=50, n_boot=100, subject=linear_subject, checks=False
    )
    assert t.meta["objective"] == ["A"]
    assert t.meta["locate"] == ["A -> Y (heads_v)", "A -> Z -> Y (heads_v)"]
    # the values at the A token (position 1) and the Z token (position 3) carry the two paths
    assert set(t.ranking[:2]) == {"L0H0.v@1", "L0H0.v@3"}


def test_tradeoff_on_the_hand_wired_model(linear_subject, tmp_path):
    spec = linear_spec(
        direct={"scm": "causal", "source": "A", "paths": "A -> Y", "n": 50, "seed": 5},
        units={"scm": "causal", "factual": True, "n": 300, "group_by": "A", "label": "L"},
    )
    spec["locate"] = [{"method": "patch", "contrast": "direct", "sites": "heads", "name": "d"}]
    t = tradeoff(spec, ks=(1,), kinds=("zero", "mean"), n=100, n_boot=200, subject=linear_subject)
    assert t.ranking == ["L0H0"] and t.meta["locate"] == ["d"]
    none, zero, mean = t.rows
    assert none["A -> Y"] == pytest.approx(-0.4, abs=1e-5)
    assert none["A -> M -> Y"] == pytest.approx(-0.2, abs=1e-5)
    assert none["inadmissible left"] == pytest.approx(0.6, abs=1e-5)  # A -> Z -> Y: +3/5
    # the only head carries every token: zero- or mean-ablating it leaves a constant output
    for row in (zero, mean):
        assert all(row[p] == pytest.approx(0.0, abs=1e-6) for p in ("A -> Y", "A -> M -> Y"))
        assert row["inadmissible left"] == pytest.approx(0.0, abs=1e-6)
        assert row["admissible kept"] == pytest.approx(0.0, abs=1e-6)
    assert zero["utility"] == 0.0  # logit diff 0 everywhere: no answer is right
    assert 0 < none["utility"] < 1 and none["pareto"]  # the only row with admissible paths
    # zero ties mean on the path axes, so it is on the front only if mean is no more accurate
    ties = mean["utility"] <= 0.0 and mean["worst-group utility"] <= zero["worst-group utility"]
    assert zero["pareto"] == ties
    out = t.save(tmp_path)
    assert (out / "tradeoff.csv").read_text().count("\n") == 4


HANDBUILT = Path(__file__).resolve().parents[2] / "circuits" / "handbuilt" / "audit.yaml"


def test_without_a_graph_the_checks_are_the_objective():
    """The hand-built copy model (analytic head effects 1 and 0.75): zeroing L0H0, which copies
    the subject, leaves logit diff 0 on every prompt (accuracy 0, strictly positive needed) and
    the filler invariance exactly 0, so its check still passes."""
    t = tradeoff(
        HANDBUILT, utility="subject_swap", ks=(1,), kinds=("zero",), locate=["heads_exact"],
        n_boot=100,
    )  # fmt: skip
    assert t.meta["objective"] == ["the spec's checks"] and t.meta["utility kind"] == "accuracy"
    assert t.meta["checks re-run"] == ["filler_is_irrelevant"]
    assert t.meta["checks not re-run"] == ["relay_carries_at_most_80pct"]
    assert t.ranking[:2] == ["L0H0", "L1H0"]
    none, zero = t.rows
    assert none["utility"] == 1.0 and zero["utility"] == 0.0 and zero["utility cost"] == 1.0
    assert zero["check: filler_is_irrelevant"] == "pass"
    assert zero["check: filler_is_irrelevant statistic"] == pytest.approx(0.0, abs=1e-6)
    assert none["pareto"] and not zero["pareto"]
    assert "inadmissible left" not in none  # no graph, no paths


def test_without_a_graph_errors_say_what_is_missing():
    with pytest.raises(SpecError, match="names a causal source; this spec has no graph"):
        tradeoff(HANDBUILT, objective="A", utility="subject_swap", ks=(1,), kinds=("zero",))
    with pytest.raises(SpecError, match="neither a contrast .* nor a text file"):
        tradeoff(HANDBUILT, utility="nope.txt", ks=(1,), kinds=("zero",))
    with pytest.raises(SpecError, match="tradeoff needs a utility"):
        tradeoff(HANDBUILT, ks=(1,), kinds=("zero",))
    with pytest.raises(SpecError, match="'abs' or 'signed'"):
        tradeoff(HANDBUILT, utility="subject_swap", by="size", ks=(1,), kinds=("zero",))


def test_cli_tradeoff_writes_the_table_and_refuses_bad_input(tmp_path):
    """``interp-audit tradeoff``: exit 0 with the four files; a bad objective or a baseline
    variable the input does not show is exit 2 with one line naming it."""
    from interp_audit.cli.main import main

    out = tmp_path / "t"
    args = [
        "tradeoff", str(HANDBUILT), "--utility", "subject_swap", "--locate", "heads_exact",
        "--k", "1", "--kinds", "zero", "--n-boot", "100", "--out", str(out),
    ]  # fmt: skip
    assert main(args) == 0
    assert {p.name for p in out.iterdir()} >= {
        "tradeoff.csv", "tradeoff.json", "tradeoff.md", "tradeoff.html",
    }  # fmt: skip
    data = json.loads((out / "tradeoff.json").read_text())
    assert [r["repair"] for r in data["rows"]] == ["none", "zero-ablate top 1"]
    assert main([*args[:-1], str(tmp_path / "u"), "--objective", "A"]) == 2


def test_cli_baseline_with_hidden_variables_needs_a_graph(tmp_path, capsys):
    """``--baseline MODEL VAR``: the CLI passes the hidden variables through; hiding one needs
    the spec's render template, so on a spec without a graph it is exit 2 naming it."""
    import interp_audit as ia
    from interp_audit.cli.main import main

    folder = tmp_path / "copy"
    ia.load_model("zoo:handbuilt-copy").save(folder)
    args = [
        "tradeoff", str(HANDBUILT), "--utility", "subject_swap", "--locate", "heads_exact",
        "--k", "1", "--kinds", "zero", "--out", str(tmp_path / "o"), "--baseline", str(folder),
    ]  # fmt: skip
    assert main([*args, "X"]) == 2
    err = capsys.readouterr().err
    assert "hides ['X']" in err and "causal section" in err and err.strip().count("\n") == 0
    assert main(args) == 0  # the same model, nothing hidden: a baseline equal to the audited
    rows = json.loads((tmp_path / "o" / "tradeoff.json").read_text())["rows"]
    assert rows[-1]["repair"] == f"retrained {folder}" and rows[-1]["utility"] == rows[0]["utility"]


def test_bad_sweeps_stop_before_any_repair(linear_subject, tmp_path):
    spec = spec_with_checks()
    for ks in [(0,), (-1,), (), (1.5,)]:
        with pytest.raises(SpecError, match="ks must be whole numbers >= 1"):
            tradeoff(spec, ks=ks, kinds=("zero",), subject=linear_subject)
    with pytest.raises(SpecError, match="resample ablation .*--kinds zero mean"):
        held_out = tmp_path / "held_out.txt"
        held_out.write_text("A x ->\nB y x ->\n")  # texts of two lengths: perplexity utility
        tradeoff(HANDBUILT, utility=str(held_out), ks=(1,), kinds=("resample",))
    # a check reads a contrast that hiding A empties: that baseline's row does not run it, and
    # says so (the other rows do)
    hiding = {**spec, "checks": [{"name": "inv", "kind": "invariance", "contrast": "direct",
                                  "tolerance": 0.1, "n_boot": 200}]}  # fmt: skip
    build_linear(vocab=[*VOCAB, "a:?"]).save(tmp_path / "hides-a")
    table = tradeoff(
        hiding, ks=(1,), kinds=("zero",), subject=linear_subject, n=50, n_boot=200,
        baselines={str(tmp_path / "hides-a"): ["A"]},
    )  # fmt: skip
    hidden = table.rows[-1]
    assert hidden["check: inv"] == "not run" and hidden["checks not run"] == "inv"
    assert table.row("none")["check: inv"] == "fail" and "checks not run" not in table.row("none")


def test_hooks_are_removed_when_a_repair_fails(linear_subject, monkeypatch):
    """A failure while measuring a repaired model leaves no hook on the audited model."""
    from interp_audit.audit.tradeoff import sweep

    calls = {"n": 0}
    real = sweep.measure

    def failing(ctx, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:  # the first repair, inside its ablation
            assert ctx.subject.live_hooks()
            raise RuntimeError("boom")
        return real(ctx, *a, **kw)

    monkeypatch.setattr(sweep, "measure", failing)
    with pytest.raises(RuntimeError, match="boom"):
        tradeoff(spec_with_checks(), ks=(1,), kinds=("zero",), subject=linear_subject)
    assert linear_subject.live_hooks() == []


def test_over_all_units_ci_covers_the_fraction_too():
    """Effect over all units = conditional mean x fraction changed. Simulated draws (300 data
    sets: 400 units in scope, 35% change, effects N(1, 0.5²) on the changed ones): the CI that
    multiplies in binomial draws of the fraction covers the true 0.35 near 95%; scaling the
    conditional CI by the observed fraction covers far less."""
    from interp_audit.audit.causal_measure import over_all_units_ci
    from interp_audit.stats.bootstrap import mean_ci

    gen = torch.Generator().manual_seed(0)
    kw = {"n_boot": 500, "confidence": 0.95, "seed": 0}
    hit_new = hit_old = 0
    reps, scope = 300, 400
    for _ in range(reps):
        changed = int((torch.rand(scope, generator=gen) < 0.35).sum())
        values = 1.0 + 0.5 * torch.randn(changed, generator=gen, dtype=torch.float64)
        iv = mean_ci(values, **kw)
        frac = changed / scope
        lo, hi = over_all_units_ci(iv, frac, scope, kw)
        hit_new += lo <= 0.35 <= hi
        hit_old += iv.lo * frac <= 0.35 <= iv.hi * frac
    assert 0.92 <= hit_new / reps <= 0.98
    assert hit_old / reps < 0.8, hit_old / reps
    iv = mean_ci(torch.ones(10, dtype=torch.float64) + torch.arange(10.0) / 10, **kw)
    assert over_all_units_ci(iv, 1.0, 50, kw) == pytest.approx([iv.lo, iv.hi])  # all change
    assert over_all_units_ci(iv, 0.5, 0, kw) == [iv.lo * 0.5, iv.hi * 0.5]  # scope unknown


def test_cli_mask_words():
    from interp_audit.cli.commands.tradeoff import _mask

    assert _mask(["A", "Z"]) == ("A", "Z")
    assert _mask(["A=age:unknown", "Z"]) == {"A": "age:unknown", "Z": None}


def test_masked_rendering_shows_a_constant_word():
    from interp_audit.audit.tradeoff.repairs import masked_model
    from interp_audit.causal import CausalModel
    from tests.linear_paths import CAUSAL

    cm = CausalModel.from_spec(CAUSAL)
    units = cm.scm.sample(50, 3)
    values = cm.scm.values(units)
    plain = cm.render.render(cm.scm, values)
    for mask, word in [(("M",), "m:?"), ({"M": "m:{hidden}"}, "m:{hidden}")]:
        shown = masked_model(cm, mask).render.render(cm.scm, values)
        assert shown == [" ".join([p.split()[0], word, *p.split()[2:]]) for p in plain]
    with pytest.raises(SpecError, match="mask names 'Q'"):
        masked_model(cm, ("Q",))


def test_worst_path_and_worst_group_cis_account_for_the_selection():
    """The largest of two equal effects, and the smaller of two equal accuracies, are biased
    away from either one's own value: their intervals (per-draw max / min) shift accordingly,
    and agree with a naive loop over the same bootstrap draws."""
    from interp_audit.audit.tradeoff.objectives import Utility, _worst_abs
    from interp_audit.stats.bootstrap import mean_ci

    gen = torch.Generator().manual_seed(1)
    kw = {"n_boot": 400, "confidence": 0.9, "seed": 0}
    a = 0.5 + torch.randn(80, generator=gen, dtype=torch.float64)
    b = -(0.5 + torch.randn(80, generator=gen, dtype=torch.float64))
    ia_, ib = mean_ci(a, **kw), mean_ci(b, **kw)
    rows = [
        ("a", ia_.point, [ia_.lo, ia_.hi], ia_.samples),
        ("b", ib.point, [ib.lo, ib.hi], ib.samples),
    ]
    path, point, (lo, hi) = _worst_abs(rows, kw)
    assert point == max(abs(ia_.point), abs(ib.point))
    naive = torch.maximum(ia_.samples.abs(), ib.samples.abs())
    assert [lo, hi] == pytest.approx(
        torch.quantile(naive, torch.tensor([0.05, 0.95], dtype=torch.float64)).tolist()
    )
    own = ia_ if path == "a" else ib
    assert lo > min(abs(own.lo), abs(own.hi))  # the max of two is larger than one alone

    v = (torch.rand(400, generator=gen) < 0.7).double()
    groups = {"x": torch.arange(0, 200), "y": torch.arange(200, 400)}
    util = Utility("u", "accuracy")
    g, point, (glo, ghi) = util.worst_group(v, groups, None, kw)
    own = mean_ci(v[groups[g]], **kw)
    assert point == pytest.approx(min(float(v[:200].mean()), float(v[200:].mean())))
    assert glo <= own.lo + 1e-12 and ghi < own.hi  # the minimum of two sits lower


def test_the_spec_tradeoff_section_sets_the_sweep_and_arguments_override_it(linear_subject):
    spec = spec_with_checks()
    spec["tradeoff"] = {"ks": [1], "kinds": ["zero"], "n": 50, "n_boot": 100, "checks": False}
    t = tradeoff(spec, subject=linear_subject)
    assert [r["repair"] for r in t.rows] == ["none", "zero-ablate top 1"]
    assert t.meta["n"] == 50 and t.meta["n_boot"] == 100 and t.meta["checks re-run"] == []
    t = tradeoff(spec, kinds=("mean",), subject=linear_subject)
    assert [r["repair"] for r in t.rows] == ["none", "mean-ablate top 1"]


@pytest.mark.parametrize(
    "section, message",
    [
        ({"ks": [0]}, "tradeoff.ks.0"),
        ({"locate": ["nope"]}, "tradeoff.locate names 'nope'"),
        ({"kinds": ["rezample"]}, "tradeoff.kinds.0"),
        ({"reference": "nowhere"}, "tradeoff.reference names contrast 'nowhere'"),
        ({"sea": "zoo:x"}, "did you mean 'sae'"),
    ],
)
def test_the_tradeoff_section_is_validated(section, message, linear_subject):
    spec = spec_with_checks()
    spec["tradeoff"] = section
    with pytest.raises(SpecError, match=message):
        tradeoff(spec, subject=linear_subject)
