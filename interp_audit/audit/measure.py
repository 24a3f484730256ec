"""Measurements that check kinds share: per-pair effects, utilities, the ablation a spec names.

Kept apart from the kinds so a new kind reuses them instead of copying them.
"""

from __future__ import annotations

import contextlib
import csv
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .. import backend
from ..contrast import ContrastSet
from ..engine import RunContext, cached_run
from ..errors import SpecError
from ..interventions import ablate
from ..metrics import Metric, MetricContext, get_metric
from ..readout import readout
from ..subject import Subject
from .context import AuditContext

__all__ = [
    "ablated_components",
    "ablation",
    "clean_values",
    "groups_of",
    "pair_effects",
    "similarity_pairs",
    "spearman",
    "utility_values",
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


def clean_values(subject: Subject, contrast: ContrastSet, metric: Metric) -> Tensor:
    """Per-pair metric on the clean prompts alone (one forward; hooks respected)."""
    dev = subject.device
    mask = contrast.attention_mask().to(dev)
    answers = None if contrast.answers is None else contrast.answers.to(dev)
    final = backend.final_hook(subject)
    cache, logits = cached_run(subject, contrast.clean.to(dev), mask, {final})
    read = readout(
        subject=subject,
        metric=metric,
        final=cache[final],
        logits=logits,
        scored=contrast.scored_positions(subject.kind).to(dev),
        answers=answers,
        mask=mask,
    )
    return metric(read, MetricContext(answers=answers)).detach().cpu()


def utility_values(subject: Subject, contrast: ContrastSet, kind: str) -> Tensor:
    """Per-pair utility on the clean prompts: accuracy (0/1), loss (-log p correct), logit diff."""
    if kind == "loss":
        return -clean_values(subject, contrast, get_metric("logprob")).double()
    ld = clean_values(subject, contrast, get_metric("logit_diff")).double()
    return (ld > 0).double() if kind == "accuracy" else ld


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
    from ..locate.compare import _pearson, _ranks

    return _pearson(_ranks(a.double()), _ranks(b.double()))


def ablated_components(spec: Any, effects: dict) -> list[str]:
    """The spec's explicit components, plus the top_k of a named locate step."""
    comps = list(spec.components)
    if spec.from_locate:
        located = effects[spec.from_locate].top(spec.top_k, by=spec.by)
        comps += [c for c, _ in located if c not in comps]
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
        from ..interventions import ablate_token_embedding

        return ablate_token_embedding(subject, comps, like=spec.like)
    if spec.sae is None:
        return ablate(subject, comps, kind=spec.kind, reference=reference, seed=ctx.seed)
    from ..sae import ablate_features, load_sae

    source = spec.sae if spec.sae.startswith("zoo:") else str(ctx.file(spec.sae))
    sae = load_sae(source, subject)
    return ablate_features(
        subject, sae, comps, kind=spec.kind, value=spec.value, reference=reference
    )
