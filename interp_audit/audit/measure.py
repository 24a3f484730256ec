"""Measurements that check kinds share: per-pair effects, utilities, the ablation a spec names.

Kept apart from the kinds so a new kind reuses them instead of copying them.
"""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from interp_audit.audit.context import AuditContext
from interp_audit.core.errors import SpecError
from interp_audit.engine.batched import RunContext, cached_run
from interp_audit.engine.contrasts import ContrastSet
from interp_audit.engine.interventions import ablate
from interp_audit.model.metrics import Metric, MetricContext, get_metric
from interp_audit.model.readout import readout
from interp_audit.model.subject import Subject
from interp_audit.stats.bootstrap import (
    Interval,
    Verdict,
    band_verdict,
    combine,
    holm,
    interval_row,
    mean_ci,
    upper_verdict,
)

__all__ = [
    "ablated_components",
    "answer_logprobs",
    "ablation",
    "band_family",
    "clusters_of",
    "clean_values",
    "cost_rows",
    "first_reasons",
    "groups_of",
    "pair_effects",
    "side_values",
    "similarity_pairs",
    "spearman",
    "utility_drop",
    "utility_values",
    "weighted_spearman",
    "within",
]


def within(lo: float, hi: float, tol: float) -> bool:
    """The whole interval [lo, hi] lies inside [-tol, tol]."""
    return -tol <= lo and hi <= tol


def pair_effects(subject: Subject, contrast: ContrastSet, metric: Metric) -> tuple[Tensor, Tensor]:
    """Per-pair metric on clean and on counterfactual inputs (plain forwards, hooks respected)."""
    ctx = RunContext.build(subject, contrast, metric, direction="denoise")
    return ctx.source_values.detach().cpu(), ctx.base_values.detach().cpu()


def groups_of(contrast: ContrastSet) -> dict[str, Tensor]:
    """Pair indices per group label (empty when the contrast set has no groups)."""
    if contrast.groups is None:
        return {}
    out: dict[str, list[int]] = {}
    for i, g in enumerate(contrast.groups):
        out.setdefault(g, []).append(i)
    return {g: torch.tensor(v) for g, v in out.items()}


def clusters_of(contrast: ContrastSet, idx: Tensor | None = None) -> list[str] | None:
    """The cluster label of each pair (of the pairs ``idx``); None = pairs are independent."""
    if contrast.clusters is None:
        return None
    if idx is None:
        return list(contrast.clusters)
    return [contrast.clusters[i] for i in idx.tolist()]


def band_family(
    tests: list[tuple[dict[str, Any], Tensor, list[str] | None]],
    tol: float,
    spec: Any,
    seed: int,
    *,
    intervals: list[Interval | None] | None = None,
    exact: list[bool] | None = None,
) -> tuple[list[dict[str, Any]], list[Interval], Verdict, str]:
    """Test a family of per-pair effects against ±tol with Holm's correction.

    ``tests``: (row fields, per-pair effects, their clusters). Each row gets its mean, cluster
    CI, half-width, cluster count, violation p-value (raw and Holm-adjusted) and verdict.
    A ``pass`` needs every CI inside the band (an intersection-union test: no correction is
    needed for it); a ``fail`` claim is Holm-corrected over the family. Returns the rows, the
    intervals, the combined verdict and a sentence stating the correction.

    ``intervals``: precomputed intervals (population effects) instead of the pairs' cluster
    bootstrap; ``exact``: which of them are exact (no sampling error: the verdict compares the
    effect itself with the band, and the row has no interval).
    """
    from interp_audit.stats.population import exact_band_verdict

    kw = spec.resampling(seed).kw()
    given = intervals or [None] * len(tests)
    ivs = [
        iv if iv is not None else mean_ci(values, clusters, **kw)
        for (_, values, clusters), iv in zip(tests, given, strict=True)
    ]
    exact = exact or [False] * len(tests)
    raw = [
        (0.0 if abs(iv.point) > tol else 1.0) if ex else iv.p_outside(tol)
        for iv, ex in zip(ivs, exact, strict=True)
    ]
    adjusted = holm(raw)
    rows = []
    for (fields, values, _), iv, p_adj, p, ex in zip(tests, ivs, adjusted, raw, exact, strict=True):
        if ex:
            verdict, reason = exact_band_verdict(iv.point, tol)
            row = {**fields, "n": len(values), "effect": iv.point, "tolerance": tol}
        else:
            verdict, reason = band_verdict(
                iv, tol, min_clusters=spec.min_clusters, p_adjusted=p_adj
            )
            row = {
                **fields,
                "n": len(values),
                "effect": iv.point,
                **interval_row(iv),
                "tolerance": tol,
                "p_violation": p,
                "p_holm": p_adj,
            }
        rows.append({**row, "verdict": verdict, "reason": reason, "passed": verdict == "pass"})
    m = len(tests)
    correction = (
        f"Holm correction over {m} tests at family-wise error {1 - spec.confidence:.3g} for "
        "'violated' claims; 'pass' needs every interval inside the tolerance "
        "(intersection-union test, no correction needed)"
        if m > 1
        else "one test: no multiple-testing correction"
    )
    if all(exact) and m:
        correction = "exact population effects: no sampling error, no correction needed"
    return rows, ivs, combine([r["verdict"] for r in rows]), correction


def first_reasons(
    rows: list[dict[str, Any]], label: Callable[[dict[str, Any]], str], more: str | None = None
) -> str:
    """A check's reason from its failing (or inconclusive) rows: the first three rows' reasons,
    each after ``label(row)``; with ``more`` (e.g. ``"more groups"``), how many that leaves out."""
    text = "; ".join(f"{label(r)}: {r['reason']}" for r in rows[:3])
    if more is not None and len(rows) > 3:
        text += f"; and {len(rows) - 3} {more}"
    return text


def clean_values(subject: Subject, contrast: ContrastSet, metric: Metric) -> Tensor:
    """Per-pair metric on the clean prompts alone (one forward; hooks respected)."""
    return side_values(subject, contrast, "clean", [(metric, contrast.answers)])[0]


def side_values(
    subject: Subject,
    contrast: ContrastSet,
    side: str,
    metrics: list[tuple[Metric, Tensor | None]],
) -> list[Tensor]:
    """Every metric (each with its own answers) on one side of ``contrast`` from one plain
    forward (hooks respected); the contrast's per-pair extras reach every metric."""
    dev = subject.device
    tokens = contrast.clean if side == "clean" else contrast.counterfactual
    mask = contrast.attention_mask(side).to(dev)
    scored = subject.scored_positions(contrast, side).to(dev)
    final = subject.final_hook()
    cache, logits = cached_run(subject, tokens.to(dev), mask, {final})
    extra = {k: v.to(dev) for k, v in contrast.extra.items()}
    out = []
    for metric, answers in metrics:
        answers = None if answers is None else answers.to(dev)
        read = readout(
            subject=subject,
            metric=metric,
            final=cache[final],
            logits=logits,
            scored=scored,
            answers=answers,
            mask=mask,
        )
        out.append(metric(read, MetricContext(answers=answers, extra=extra)).detach().cpu())
    return out


def answer_logprobs(subject, prompts: list[str], answers, name: str):
    """``[prompt, 2]`` log-probabilities (full vocabulary, at each prompt's scored position) of
    the two answers, each distinct prompt tokenised and run once."""
    import dataclasses

    from interp_audit.core.errors import ContrastError
    from interp_audit.engine.contrasts import _refuse_unknown_words, answer_positions

    if not answers:
        raise SpecError(f"{name} scores answers: declare causal.answers (e.g. [YES, NO])")
    rows = []
    for text in prompts:
        _refuse_unknown_words(subject, text, f"{name}: the prompt")
        rows.append(subject.to_tokens(text))
    ids = []
    for text in answers:
        got = subject.answer_token(text)
        if len(got) != 1:
            raise ContrastError(f"{name}: answer {text!r} is {len(got)} tokens, not one")
        ids.append(got[0])
    cs = ContrastSet.one_sided(
        rows,
        prompts,
        subject.pad_token_id,
        answers=torch.tensor([ids] * len(rows), dtype=torch.long),
        answer_pos=answer_positions(subject, rows),
        meta={"factual": True},
    )
    logprob = get_metric("logprob")
    first = clean_values(subject, cs, logprob)
    second = clean_values(subject, dataclasses.replace(cs, answers=cs.answers.flip(1)), logprob)
    return torch.stack([first, second], 1).double()


def utility_values(subject: Subject, contrast: ContrastSet, kind: str) -> Tensor:
    """Per-pair utility on the clean prompts: accuracy (0/1), loss (-log p correct), logit diff."""
    if kind == "loss":
        return -clean_values(subject, contrast, get_metric("logprob")).double()
    ld = clean_values(subject, contrast, get_metric("logit_diff")).double()
    return (ld > 0).double() if kind == "accuracy" else ld


def utility_drop(before: Tensor, after: Tensor, kind: str) -> Tensor:
    """Per-pair utility cost of a change (:func:`utility_values` before and after): the rise
    of a loss, else the fall of accuracy or logit difference."""
    return (after - before) if kind == "loss" else (before - after)


def cost_rows(
    chk: Any,
    contrast: ContrastSet,
    parts: list[tuple[str, Tensor | None]],
    drop: Tensor,
    before: Tensor,
    after: Tensor,
    kw: dict[str, Any],
    estimate: str = "cost",
) -> list[dict[str, Any]]:
    """The utility cost in each part (a group's pair indices, None = every pair) of
    ``contrast``: utility before and after, the mean ``drop`` (under ``estimate``) with its
    paired cluster-bootstrap CI and its verdict against ``chk.utility.budget``."""
    rows = []
    for group, idx in parts:
        sel = slice(None) if idx is None else idx
        iv = mean_ci(drop[sel], clusters_of(contrast, idx), **kw)
        v, why = upper_verdict(iv, chk.utility.budget, min_clusters=chk.min_clusters)
        rows.append(
            {
                "group": group,
                "n": int(drop[sel].numel()),
                "before": float(before[sel].mean()),
                "after": float(after[sel].mean()),
                estimate: iv.point,
                **interval_row(iv),
                "budget": chk.utility.budget,
                "verdict": v,
                "reason": why,
            }
        )
    return rows


def similarity_pairs(path: Path) -> tuple[list[str], list[str], Tensor]:
    """A CSV of sentence1, sentence2, score (human similarity judgements)."""
    if not path.exists():
        raise SpecError(f"utility file {str(path)!r} does not exist")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return (
        [r["sentence1"] for r in rows],
        [r["sentence2"] for r in rows],
        torch.tensor([float(r["score"]) for r in rows], dtype=torch.float64),
    )


def spearman(a: Tensor, b: Tensor) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    from interp_audit.methods.locate.compare import _pearson, _ranks

    return _pearson(_ranks(a.double()), _ranks(b.double()))


def weighted_spearman(
    x: Float[Tensor, " n"], y: Float[Tensor, " n"], weights: Float[Tensor, "draw n"]
) -> Float[Tensor, " draw"]:
    """Spearman's rank correlation of the data set each weight row describes (row i repeated
    ``weights[:, i]`` times), with average ranks for ties: the same number as
    :func:`spearman` on the expanded data, for all bootstrap draws at once."""
    x, y, w = x.double(), y.double(), weights.double()

    def ranks(v: Tensor) -> Tensor:
        less = (v[None, :] < v[:, None]).double()  # [i, j]: v_j < v_i
        ties = (v[None, :] == v[:, None]).double()
        return w @ less.T + (w @ ties.T + 1) / 2

    rx, ry = ranks(x), ranks(y)
    total = w.sum(1, keepdim=True)
    dx = rx - (w * rx).sum(1, keepdim=True) / total
    dy = ry - (w * ry).sum(1, keepdim=True) / total
    cov = (w * dx * dy).sum(1)
    return cov / ((w * dx * dx).sum(1) * (w * dy * dy).sum(1)).sqrt()


def ablated_components(spec: Any, effects: dict) -> list[str]:
    """The spec's explicit components, plus the top_k of a named locate step."""
    comps = list(spec.components)
    if spec.from_locate:
        located = effects[spec.from_locate].top(10**9, by=spec.by)
        if spec.sae is not None:  # the SAE's error node is located, but it is not a feature
            located = [(c, v) for c, v in located if not c.endswith(".sae_err")]
        comps += [c for c, _ in located[: spec.top_k] if c not in comps]
    return comps


def ablation(spec: Any, comps: list[str], ctx: AuditContext):
    """The context a spec's ``ablate:`` section describes: components (zero/mean/resample), SAE
    features (error kept), or token embeddings (``kind: embedding``)."""
    subject = ctx.subject
    if not comps:
        return contextlib.nullcontext(subject)
    reference = ctx.contrasts[spec.reference] if spec.reference else None
    if spec.kind == "rank_one":
        raise SpecError(
            "ablate kind 'rank_one' edits weights for the records a memorization check names; "
            "use it in a memorization check"
        )
    if spec.kind == "embedding":
        from interp_audit.engine.interventions import ablate_token_embedding

        return ablate_token_embedding(subject, comps, like=spec.like)
    if spec.sae is None:
        return ablate(
            subject,
            comps,
            kind=spec.kind,
            reference=reference,
            seed=ctx.seed,
            per_position="auto" if spec.per_position is None else spec.per_position,
            concept=spec.concept,
            erase_at=spec.erase_at,
        )
    from interp_audit.methods.features.ablation import ablate_features
    from interp_audit.methods.locate.features import resolve_sae

    sae = resolve_sae(subject, spec.sae, sae_id=spec.sae_id, base=ctx.base)
    return ablate_features(
        subject, sae, comps, kind=spec.kind, value=spec.value, reference=reference
    )
