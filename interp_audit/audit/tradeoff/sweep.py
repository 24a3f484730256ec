"""``tradeoff(spec, ...)``: sweep repairs of one objective and re-measure every objective."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from interp_audit.audit.decision_change import (
    FlipProbe,
    GapProbe,
    answer_rule,
    flip_probe_of_check,
    gap_probe_of_check,
    groups_gap_probe,
    positive_answer,
)
from interp_audit.audit.tradeoff.objectives import (
    DecisionProbes,
    PathInfo,
    Utility,
    draw_paths,
    measure,
    row_of,
)
from interp_audit.audit.tradeoff.repairs import (
    Baseline,
    baseline_repair,
    component_repairs,
    erasure_repairs,
    feature_repairs,
)
from interp_audit.audit.tradeoff.table import Tradeoff, mark_pareto
from interp_audit.causal.graph import format_path
from interp_audit.core.errors import SpecError
from interp_audit.stats.bootstrap import Resampling

__all__ = ["tradeoff"]


def _prepare(spec, subject=None, *, causal=None, locate: bool = True, effects=None):
    """The spec's audit context, as ``ia.audit`` builds it, for ``subject`` (default: the
    spec's model) and ``causal`` (default: the spec's causal model). Without ``locate`` (a
    baseline), SCM contrasts that the baseline's hidden input empties are left out."""
    from interp_audit.audit.causal_run import load_causal
    from interp_audit.audit.run import build_context, load_subject
    from interp_audit.audit.spec import load_spec

    parsed, base = load_spec(spec)
    torch.manual_seed(parsed.seed)
    cm = causal if causal is not None else load_causal(parsed.causal, base)
    if subject is None:
        subject = load_subject(parsed, base)[1]
    ctx = build_context(
        parsed, base, subject, cm, locate=locate, effects=effects, skip_empty=not locate
    )
    return parsed, ctx


def _inadmissible_steps(parsed, ctx, methods: Iterable[str]) -> dict[str, str]:
    """Locate steps (name -> source) with a method in ``methods`` on contrasts whose paths are
    all inadmissible: the components a repair of that source should remove."""
    from interp_audit.audit.causal_spec import ScmContrast

    cm = ctx.causal.model
    out = {}
    for loc in parsed.locate:
        c = parsed.contrasts[loc.contrast]
        if loc.method not in methods or not isinstance(c, ScmContrast) or c.factual:
            continue
        paths = cm.resolve_paths(c.source, c.paths)
        if paths and not any(cm.graph.admissible(p) for p in paths):
            out[loc.default_name()] = c.source
    return out


def _rank(effects: Iterable[Any], by: str = "abs") -> list[str]:
    """Components by the summed |effect| (``by="abs"``) or summed signed effect (``"signed"``:
    the components that push the located metric up, as a spec's ``ablate.by``) over the given
    Effects, largest first."""
    if by not in ("abs", "signed"):
        raise SpecError(f"tradeoff ranks by 'abs' or 'signed', not {by!r}")
    score: dict[str, float] = {}
    for e in effects:
        for comp, v in e.top(len(e.components), by="abs"):
            score[comp] = score.get(comp, 0.0) + (abs(v) if by == "abs" else v)
    return sorted(score, key=lambda c: -score[c])


def _auto_locate(ctx, sources, sites, n, seed):
    """Exact patching of ``sites`` per position on every inadmissible path of ``sources``:
    the ranking when the spec locates nothing for the targeted objective."""
    from interp_audit.methods.locate.patching import patch

    cm = ctx.causal.model
    out = {}
    for src in sources:
        drawn = draw_paths(ctx, [src], n=n, seed=seed)
        for path in cm.graph.paths(src):
            cs = drawn[format_path(path)]
            if cs is not None and not cm.graph.admissible(path):
                out[f"{format_path(path)} ({sites})"] = (
                    patch(ctx.subject, cs, ctx.metric, sites=sites, per_position=True),
                    cs,
                )
    return out


def _checks(parsed) -> tuple[list[tuple[str, Any, Any]], list[str]]:
    """The spec's checks that measure the model as it is (re-run under each repair), and the
    names of those that do not (they apply their own repair or read located effects)."""
    from interp_audit.audit.kinds import check_kinds

    kinds = check_kinds()
    keep, skipped = [], []
    for name, chk in zip(parsed.check_names(), parsed.checks, strict=True):
        kind = kinds[chk.kind]
        if kind.tradeoff_form is not None:  # e.g. without its own repair: the sweep's replaces it
            chk = kind.tradeoff_form(chk)
        if kind.remeasurable and getattr(chk, "ablate", None) is None:
            keep.append((name, chk, kind))
        else:
            skipped.append(name)
    return keep, skipped


def _baselines(given) -> list[Baseline]:
    if given is None:
        return []
    if isinstance(given, Mapping):
        return [Baseline(src, m if isinstance(m, dict) else tuple(m)) for src, m in given.items()]
    return [b if isinstance(b, Baseline) else Baseline(str(b)) for b in given]


def tradeoff(
    spec,
    *,
    ks: Sequence[int] | None = None,
    kinds: Sequence[str] | None = None,
    objective: str | Sequence[str] | None = None,
    locate: list[str] | None = None,
    sites: str | None = None,
    by: str | None = None,
    sae: Any = None,
    sae_id: str | None = None,
    sae_kinds: Sequence[str] | None = None,
    baselines: Mapping[str, Sequence[str] | dict[str, str]] | Sequence[Any] | None = None,
    checks: bool | None = None,
    reference: str | None = None,
    utility: str | None = None,
    n: int | None = None,
    seed: int | None = None,
    n_boot: int | None = None,
    confidence: float | None = None,
    subject=None,
    effects: Mapping[str, Any] | None = None,
    erase_sites: Sequence[str | Sequence[str]] | None = None,
    erase_concept: str | None = None,
) -> Tradeoff:
    """Sweep repairs of one objective; re-measure every objective on each repaired model.

    The settings are the spec's ``tradeoff:`` section (:class:`TradeoffSpec`: its keys, types
    and defaults); arguments other than ``None`` replace them, validated by the same model.

    The *objective* is the audited source(s) whose inadmissible paths the repair removes
    (default: the sources of the spec's exact-patching locate steps on inadmissible-path
    contrasts). Components are ranked by the summed |effect| (``by="signed"``: summed signed
    effect) of those steps (or ``locate``), or,
    when the spec locates nothing for the objective, by exact patching of ``sites`` per position
    on each of its inadmissible paths. Repairs: the top k components for each ``ks`` x ``kinds``
    (zero / mean / resample); with ``sae`` (``zoo:NAME``, a folder, a release with ``sae_id``,
    or an SAE object; default: the SAE of the spec's ``sae_patch`` steps on such contrasts) the
    top k features by exact feature patching, zero- or mean-ablated with the error kept; with
    kind ``erase``, LEACE concept erasure (learnt from the reference contrast) at each of
    ``erase_sites`` (default: block inputs of up to 8 layers, the final stream, and the
    embeddings fitted where the objective's inadmissible paths change the input), the map a
    repair folds into weights, with a held-out probe's accuracy in ``meta["erasure probes"]``;
    each retrained ``baselines`` model (``{source: [masked variables]}``), on the same units.

    Each row measures every graph path of every audited source, the target's largest
    inadmissible effect left, the least-kept admissible path (after/before, paired), the other
    sources' largest inadmissible effect, the spec's other checks re-run (``checks``; those with
    their own ablation or located effects are listed in ``meta["checks not re-run"]``; a
    baseline whose hidden variables empty a check's contrast lists it in ``checks not run``),
    accuracy on the factual utility set and the worst group's accuracy, and the decisions beside
    the mean effects: the flip rate on each of the objective's inadmissible paths and the
    largest, and the largest outcome-rate gap between groups (the spec's group_parity checks,
    else the utility set's groups), each with its change from the unrepaired model (paired where
    the units match), each with its CI (cluster bootstrap, ``n_boot`` draws), and marks the
    Pareto front.

    Without a ``causal`` section the repair targets the spec's checks (memorization exposure,
    invariance, ...), ranked by its exact-patching locate steps (or ``locate``), and utility is
    a labelled contrast's accuracy or a held-out text file's perplexity (``utility``; default:
    the file a memorization check names). ``effects``: located Effects by step name (an
    audit's ``report.effects``), reused instead of re-running those sweeps.
    """
    from interp_audit.audit.causal_spec import ScmContrast
    from interp_audit.audit.sections import TradeoffSpec

    given = {k: v for k, v in locals().items() if k in TradeoffSpec.model_fields}
    # objects a YAML value cannot hold (an SAE, Baseline objects) pass by the validation
    objects = {
        k: given.pop(k)
        for k in ("sae", "baselines")
        if not isinstance(given[k], str | Mapping | None)
    }
    parsed, ctx = _prepare(spec, subject, effects=effects)
    cfg = (parsed.tradeoff or TradeoffSpec()).overridden(**given)
    ks, kinds, sae_kinds = tuple(cfg.ks), tuple(cfg.kinds), tuple(cfg.sae_kinds)
    erase_sites = cfg.erase_sites
    objective, locate, sites, by = cfg.objective, cfg.locate, cfg.sites, cfg.by
    sae, sae_id = objects.get("sae", cfg.sae), cfg.sae_id
    baselines = objects.get("baselines", cfg.baselines or None)
    checks, reference, utility, n = cfg.checks, cfg.reference, cfg.utility, cfg.n
    n_boot, confidence = cfg.n_boot, cfg.confidence
    cm = ctx.causal.model if ctx.causal is not None else None
    sources = list(cm.interventions) if cm is not None else []
    if cm is not None and not sources:
        raise SpecError("tradeoff: declare causal.interventions (the audited sources)")
    seed = parsed.seed if seed is None else seed
    kw = Resampling(n_boot=n_boot, confidence=confidence, seed=parsed.seed).kw()
    draw_seed = next(
        (c.seed for c in parsed.contrasts.values() if isinstance(c, ScmContrast) and not c.factual),
        0,
    )
    rerun, skipped = _checks(parsed) if checks else ([], [])
    if cm is None and not rerun:
        raise SpecError(
            "tradeoff measures the causal graph's paths (a 'causal' section) or the spec's "
            "checks re-run under each repair: this spec has neither"
        )
    target, steps, ranked_on, ranking = _objective_ranking(
        parsed, ctx, cm, sources, objective, locate, sites, n, draw_seed, by
    )
    util = _utility(parsed, ctx, utility)
    ref_name = reference or next(
        (k for k, c in parsed.contrasts.items() if not (isinstance(c, ScmContrast) and c.factual)),
        None,
    )
    if ref_name is not None and ref_name not in ctx.contrasts:
        raise SpecError(
            f"tradeoff reference {ref_name!r} is not a contrast ({sorted(ctx.contrasts)})"
        )
    ref = ctx.contrasts[ref_name] if ref_name else None
    if "resample" in kinds and (
        util.kind == "perplexity"
        or not bool((util.contrast.lengths == util.contrast.lengths[0]).all())
    ):
        raise SpecError(
            f"resample ablation patches each input with a whole reference prompt, so inputs must "
            f"be as long as the reference; the utility {util.name!r} holds texts of other lengths: "
            "sweep kinds zero and mean (--kinds zero mean)"
        )

    # ---- repairs
    repairs = component_repairs(ranking, ks, tuple(k for k in kinds if k != "erase"), ref, seed)
    site_sets: list[tuple[str, ...]] = []
    concept_ref, concept_name = ref, ref_name
    if "erase" in kinds:
        site_sets = _erase_site_sets(ctx, cm, target, erase_sites, n, draw_seed)
        if reference is None and cfg.reference is None and cm is not None and target:
            concept_ref = _objective_contrast(ctx, cm, target, n, draw_seed)
            concept_name = f"{', '.join(target)} changed along every path at once (total)"
        repairs += erasure_repairs(site_sets, concept_ref, cfg.erase_concept)
    sae_obj, sae_name, feature_ranking = _sae_ranking(
        parsed, ctx, sae, sae_id, ranked_on, target, by
    )
    if sae_obj is not None:
        repairs += feature_repairs(sae_obj, feature_ranking, ks, sae_kinds, ref)

    def prepare_baseline(sub, model):
        return _prepare(spec, sub, causal=model, locate=False)[1]

    needs = [
        (name, chk.contrast)
        for name, chk, _ in rerun
        if isinstance(getattr(chk, "contrast", None), str)
    ]
    load = {"dtype": parsed.model.dtype, **parsed.model.weight_processing}
    repairs += [
        baseline_repair(b, ctx, prepare_baseline, needs, load) for b in _baselines(baselines)
    ]
    too_big = sorted({k for k in ks if k > len(ranking)})

    # ---- measure
    paths = draw_paths(ctx, sources, n=n, seed=draw_seed)
    info = [
        PathInfo(
            p,
            src,
            "admissible" if cm.graph.admissible(path) else "inadmissible",
            src in target,
        )
        for src in sources
        for path in cm.graph.paths(src)
        for p in [format_path(path)]
    ]
    probes = _decision_probes(parsed, ctx, paths, info, util)
    base = measure(ctx, paths, util, rerun, probes=probes)
    rows = [row_of("none", "none", 0, (), base, base, info, util, kw)]
    for r in repairs:
        with r.apply(ctx) as rctx:
            rpaths = paths if rctx is ctx else draw_paths(rctx, sources, n=n, seed=draw_seed)
            ucs = None
            rprobes = probes
            if rctx is not ctx:
                if util.contrast is not None:
                    ucs = _same_units(rctx, util.name, util.contrast, r.name)
                rprobes = _decision_probes(parsed, rctx, rpaths, info, util, ucs)
            runs = [c for c in rerun if c[0] not in r.skipped_checks]
            m = measure(rctx, rpaths, util, runs, ucs, probes=rprobes)
        rows.append(
            row_of(r.name, r.family, r.k, r.components, m, base, info, util, kw, r.skipped_checks)
        )
    mark_pareto(rows, utility_higher_is_better=util.higher_is_better)
    probes = {
        " + ".join(sites): _erasure_probe(ctx, sites, concept_ref, cfg.erase_concept, kw)
        for sites in site_sets
    }
    meta = {
        "spec": str(spec) if isinstance(spec, str | Path) else parsed.name,
        "objective": target or ["the spec's checks"],
        "sources": sources,
        "locate": steps,
        "sae": sae_name,
        "feature ranking": feature_ranking[:64],
        "baselines": [b.label for b in _baselines(baselines)],
        "utility": util.name,
        "utility kind": util.kind,
        "reference": ref_name,
        "checks re-run": [name for name, _, _ in rerun],
        "checks not re-run": skipped,
        "n": n,
        "n_boot": n_boot,
        "confidence": confidence,
        "ablation seed": seed,
        "bootstrap seed": parsed.seed,
        "draw seed": draw_seed,
        "ks": list(ks),
        "ks beyond the ranking": too_big,
        "ranked by": by,
        "effects": "conditional on the rendered input changing; the spec's metric",
        **({"erasure probes": probes, "erasure concept": concept_name} if probes else {}),
    }
    return Tradeoff(rows, ranking, meta)


def _decision_probes(parsed, ctx, paths, info, util: Utility, ucs=None) -> DecisionProbes:
    """What the decision columns read in ``ctx``: flips on the objective's inadmissible paths
    (decision: the top of each prompt's two answers) or, without a graph, on the spec's
    flip_rate checks; outcome rates by the spec's group_parity checks, else between the groups
    of the utility set (positive: the causal model's first answer). ``ucs``: a baseline's
    utility set, read with the audited set's groups (the same units)."""
    flips: dict[str, FlipProbe | None] = {}
    if info:
        for p in info:
            if p.target and p.role == "inadmissible":
                cs = paths[p.path]
                if cs is None:
                    flips[p.path] = None  # no unit's input changes: nothing can flip
                elif cs.answers is not None:
                    pos = positive_answer(ctx, cs)
                    flips[p.path] = FlipProbe(p.path, cs, answer_rule(*(pos or (None, None))))
    checks = list(zip(parsed.check_names(), parsed.checks, strict=True))
    if not info:
        for name, chk in checks:
            if chk.kind == "flip_rate":
                flips[name] = replace(flip_probe_of_check(chk, ctx, name), effect_metric=None)
    gaps: dict[str, GapProbe] = {}
    for name, chk in checks:
        if chk.kind == "group_parity":
            gaps[name] = gap_probe_of_check(chk, ctx, name)
    if not gaps and util.contrast is not None:
        pos = positive_answer(ctx, util.contrast)
        probe = None
        if pos is not None:
            probe = groups_gap_probe(
                util.name, util.contrast, pos[0], pos[1], attribute=f"groups of {util.name}"
            )
        if probe is not None:
            gaps[util.name] = probe if ucs is None else replace(probe, prompts=ucs)
    return DecisionProbes(flips, gaps)


def _objective_ranking(parsed, ctx, cm, sources, objective, locate, sites, n, draw_seed, by):
    """(target sources, ranking steps, the contrasts they ranked on, ranked components)."""
    from interp_audit.methods.locate.methods import exact_component_methods

    exact = exact_component_methods()
    if locate:
        for s in locate:
            if s not in ctx.effects:
                raise SpecError(f"no locate step {s!r} (steps: {sorted(ctx.effects)})")
    if cm is None:  # no graph: the repair targets the spec's checks, ranked by its locate steps
        if objective:
            raise SpecError("tradeoff --objective names a causal source; this spec has no graph")
        steps = list(locate or [loc.default_name() for loc in parsed.locate if loc.method in exact])
        if not steps:
            raise SpecError("tradeoff needs exact-patching locate steps to rank components")
        ranked_on = {s: ctx.contrasts[_step(parsed, s).contrast] for s in steps}
        return [], steps, ranked_on, _rank((ctx.effects[s] for s in steps), by)
    patch_steps = _inadmissible_steps(parsed, ctx, exact)
    if objective is None:
        target = (sorted(set(patch_steps.values())) if not locate else sources) or sources
    else:
        target = [objective] if isinstance(objective, str) else list(objective)
    for s in target:
        if s not in sources:
            raise SpecError(
                f"tradeoff objective {s!r} is not an audited source (causal.interventions: "
                f"{sources})"
            )
    steps = list(locate) if locate else [s for s, src in patch_steps.items() if src in target]
    if steps:
        ranked_on = {s: ctx.contrasts[_step(parsed, s).contrast] for s in steps}
        return target, steps, ranked_on, _rank((ctx.effects[s] for s in steps), by)
    auto = _auto_locate(ctx, target, sites, n, draw_seed)
    if not auto:
        raise SpecError(
            f"tradeoff: no inadmissible path of {target} changes any unit's input: nothing to "
            "repair"
        )
    ranked_on = {s: cs for s, (_, cs) in auto.items()}
    return target, list(auto), ranked_on, _rank((e for e, _ in auto.values()), by)


def _utility(parsed, ctx, utility: str | None) -> Utility:
    """``utility``: a labelled contrast (accuracy) or a text file (perplexity, one text a
    line); default: the spec's first factual contrast, else the held-out text a check names."""
    from interp_audit.audit.causal_spec import ScmContrast

    if utility is None:
        factual = [
            k for k, c in parsed.contrasts.items() if isinstance(c, ScmContrast) and c.factual
        ]
        files = [
            chk.utility.file
            for chk in parsed.checks
            if getattr(getattr(chk, "utility", None), "file", None)
            and getattr(chk.utility, "metric", None) == "perplexity"
        ]
        utility = factual[0] if factual else files[0] if files else None
    if utility is None:
        raise SpecError(
            "tradeoff needs a utility: a contrast with labels (factual: true, label, group_by) "
            "or a held-out text file (--utility NAME|FILE)"
        )
    if utility in ctx.contrasts:
        cs = ctx.contrasts[utility]
        if cs.answers is None:
            raise SpecError(f"tradeoff utility contrast {utility!r} has no labels to score")
        return Utility(utility, "accuracy", contrast=cs)
    path = ctx.file(utility)
    if not path.is_file():
        raise SpecError(
            f"tradeoff utility {utility!r} is neither a contrast ({sorted(ctx.contrasts)}) nor a "
            f"text file ({str(path)!r} does not exist)"
        )
    texts = tuple(t for t in path.read_text().splitlines() if t.strip())
    if not texts:
        raise SpecError(f"tradeoff utility file {str(path)!r} holds no text")
    return Utility(utility, "perplexity", texts=texts)


def _same_units(rctx, name: str, audited, repair: str):
    """A baseline's utility set: the audited set's units (groups, clusters and labels are read
    from the audited set, whose rendering shows every variable)."""
    theirs = rctx.contrasts.get(name)
    if theirs is None or len(theirs) != len(audited) or theirs.clusters != audited.clusters:
        raise SpecError(
            f"{repair}: its utility set {name!r} does not hold the audited model's units"
        )
    if not bool((theirs.answers == audited.answers).all()):
        raise SpecError(f"{repair}: its utility set {name!r} has other labels than the audited")
    return theirs


def _step(parsed, name: str):
    for loc in parsed.locate:
        if loc.default_name() == name:
            return loc
    raise SpecError(f"no locate step {name!r}")


def _sae_ranking(parsed, ctx, sae, sae_id, ranked_on, target, by):
    """(SAE, its name, features ranked by exact feature patching on the ranking contrasts)."""
    from interp_audit.methods.features.patching import patch_features
    from interp_audit.methods.locate.features import resolve_sae
    from interp_audit.methods.locate.methods import feature_methods

    name = None
    if sae is None:
        steps = _inadmissible_steps(parsed, ctx, feature_methods())
        mine = [s for s, src in steps.items() if src in target]
        if not mine:
            return None, None, []
        opts = _step(parsed, mine[0]).options
        sae, sae_id = opts.sae, opts.sae_id
    if isinstance(sae, str):
        name = sae if sae_id is None else f"{sae}/{sae_id}"
        sae = resolve_sae(ctx.subject, sae, sae_id=sae_id, base=ctx.base)
    else:
        from interp_audit.methods.features.saes import load_sae

        name = type(sae).__name__
        sae = load_sae(sae, ctx.subject)  # checked against the subject: hook, width
    effects = [patch_features(ctx.subject, cs, ctx.metric, sae) for cs in ranked_on.values()]
    return sae, name, _rank(effects, by)


def _erase_site_sets(ctx, cm, target, given, n: int, seed: int) -> list[tuple[str, ...]]:
    """Where erasure rows erase: the given sites (a site, or a list fitted together), else
    the block inputs of up to 8 evenly spaced layers, the final stream, and (with a graph) the
    embeddings fitted at the positions where the objective's inadmissible paths change the
    input (the tokens those paths start from), applied everywhere."""
    if given:
        return [(g,) if isinstance(g, str) else tuple(g) for g in given]
    n_layers = ctx.subject.n_layers
    step = max(1, -(-n_layers // 8))
    sets = [(f"L{layer}.resid_pre",) for layer in range(0, n_layers, step)]
    sets.append((f"L{n_layers - 1}.resid_post",))
    if cm is not None and target:
        changed: set[int] = set()
        drawn = draw_paths(ctx, list(target), n=n, seed=seed)
        for src in target:
            for path in cm.graph.paths(src):
                cs = drawn.get(format_path(path))
                if cs is None or cm.graph.admissible(path):
                    continue
                if cs.clean.shape == cs.counterfactual.shape:
                    diff = (cs.clean != cs.counterfactual).any(0)
                    changed.update(int(i) for i in diff.nonzero().flatten())
        if changed:
            sets.insert(1, tuple(f"L0.resid_pre@{p}" for p in sorted(changed)))
    return sets


def _objective_contrast(ctx, cm, target, n: int, seed: int):
    """The concept erase rows remove by default: the objective's source changed as the world
    changes it, along every path at once (its total contrast; several sources: together)."""
    from interp_audit.audit.causal_spec import ScmContrast
    from interp_audit.engine.contrasts import ContrastSet

    sets = [
        ctx.causal.contrast(ScmContrast(scm="causal", source=src, paths="all", n=n, seed=seed))
        for src in target
    ]
    if len(sets) == 1:
        return sets[0]
    width = max(cs.clean.shape[1] for cs in sets)
    pad = ctx.subject.pad_token_id

    def padded(t):
        return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=pad)

    return ContrastSet.from_tokens(
        torch.cat([padded(cs.clean) for cs in sets]),
        torch.cat([padded(cs.counterfactual) for cs in sets]),
        lengths=torch.cat([cs.lengths for cs in sets]),
        pad_id=pad,
    )


def _erasure_probe(ctx, sites, reference, concept: str, kw) -> dict[str, Any]:
    """A linear probe for the concept at the erasure site, on held-out pairs: before, and
    after an eraser fitted on the other half (every token, and the scored position)."""
    from interp_audit.engine.erasure import erase, fit_eraser
    from interp_audit.methods.probing import concept_probe, split_rows

    site = sites[0].split("@")[0]
    split = split_rows(len(reference), seed=int(kw.get("seed", 0)))
    eraser = fit_eraser(ctx.subject, list(sites), reference, concept=concept, rows=split[0])
    out: dict[str, Any] = {"site": site, "erased directions": eraser.rank}
    for where in ("all", "scored"):
        opts = dict(concept=concept, positions=where, split=split, n_boot=kw["n_boot"])
        before = concept_probe(ctx.subject, site, reference, **opts)
        with erase(ctx.subject, eraser):
            after = concept_probe(ctx.subject, site, reference, **opts)
        out[where] = {"before": before.to_dict(), "after": after.to_dict()}
    return out
