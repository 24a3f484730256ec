"""Decisions: what a model *does* with a prompt, beside how far its metric moves.

A decision is the argmax over two or more answer tokens at the scored position (``" he"`` /
``" she"`` / ``" they"``; ``" yes"`` / ``" no"``; ties go to the answer listed first), or
whether a metric exceeds a threshold. The decision-level check kinds (``flip_rate``,
``group_parity``) share the ``decision:`` section and these helpers, so both read decisions the
same way. Decisions are computed through the same forwards as every total effect
(``measure.pair_effects``, ``measure.clean_values``), in batches, so the vocabulary-wide
readout never holds more than one batch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from jaxtyping import Float, Int
from pydantic import model_validator
from torch import Tensor

from interp_audit.audit.measure import clean_values, pair_effects, side_values
from interp_audit.audit.sections import _Section
from interp_audit.core.errors import ContrastError, SpecError
from interp_audit.engine.contrasts import ContrastSet, _refuse_unknown_words
from interp_audit.model.metrics import Metric, MetricContext, get_metric
from interp_audit.model.subject import Subject
from interp_audit.stats.bootstrap import (
    Interval,
    Verdict,
    combine,
    holm,
    interval_row,
    lower_verdict,
    upper_verdict,
)

__all__ = [
    "BATCH",
    "Decider",
    "DecisionSpec",
    "LimitTest",
    "bounded",
    "decider",
    "limit_family",
    "pair_decisions",
    "pair_values",
    "population_values",
]

#: prompts per forward when reading decisions (the readout holds ``BATCH x vocab`` logits)
BATCH = 64


class DecisionSpec(_Section):
    """How a prompt becomes a decision: the top answer among ``answers``, or ``metric >
    threshold``."""

    answers: list[str] | None = None
    """Two or more single-token answers (mind the leading space: ``" he"``); the decision is the
    answer with the highest logit at the scored position (ties go to the one listed first)."""
    threshold: float | None = None
    """Instead of answers: the decision is positive when the metric exceeds this value."""
    metric: Literal["logit_diff", "prob_diff", "logprob"] | None = None
    """With ``threshold``: the metric compared with it (default: the spec's metric)."""
    positive: str | None = None
    """With ``answers``: the outcome counted as positive in outcome rates (default: the first
    answer)."""

    @model_validator(mode="after")
    def _one_rule(self):
        if (self.answers is None) == (self.threshold is None):
            raise ValueError(
                "a decision is the top answer among 'answers' or 'metric > threshold': give "
                "exactly one of 'answers' and 'threshold'"
            )
        if self.answers is not None:
            if len(self.answers) < 2:
                raise ValueError(
                    f"answers {self.answers!r}: a decision needs at least two answers to choose "
                    "between"
                )
            dup = sorted({a for a in self.answers if self.answers.count(a) > 1})
            if dup:
                raise ValueError(f"answers lists {dup[0]!r} twice")
            if self.metric is not None:
                raise ValueError(
                    "'metric' goes with 'threshold'; with 'answers' the decision is the top answer"
                )
            if self.positive is not None and self.positive not in self.answers:
                raise ValueError(
                    f"positive {self.positive!r} is not one of the answers {self.answers!r}"
                )
        elif self.positive is not None:
            raise ValueError(
                "'positive' names one of 'answers'; with 'threshold' the positive decision is "
                "metric > threshold"
            )
        return self


@dataclass(frozen=True)
class Decider:
    """A decision rule bound to a model: outcome names, which one is positive, and the metric
    whose per-prompt value :meth:`decide` turns into an outcome index."""

    outcomes: tuple[str, ...]
    positive: int
    metric: Metric
    threshold: float | None = None
    answer_ids: tuple[int, ...] | None = None

    @property
    def by_answers(self) -> bool:
        return self.threshold is None

    def decide(self, values: Float[Tensor, " n"]) -> Int[Tensor, " n"]:
        """Outcome index per prompt (an index into :attr:`outcomes`)."""
        if self.threshold is None:
            return values.round().long()
        return torch.where(values > self.threshold, 0, 1).long()

    def describe(self) -> str:
        if self.threshold is None:
            return "top answer among " + " / ".join(repr(a) for a in self.outcomes)
        return f"{self.metric.name} > {self.threshold:g}"


def _top_answer_metric(ids: Tensor, outcomes: tuple[str, ...]) -> Metric:
    """The index (as a float) of the highest-logit answer at the scored position."""

    def fn(r: Tensor, ctx: MetricContext) -> Tensor:
        picked = r.gather(-1, ids.to(r.device).expand(r.shape[0], -1))
        return picked.argmax(-1).float()  # first maximum on ties: the earlier-listed answer

    return Metric(
        "decision(" + " / ".join(outcomes) + ")",
        "final_logits",
        fn,
        needs_answers=False,
        description="index of the top answer among the decision's answers",
    )


def decider(spec: DecisionSpec, subject: Subject, metric: Metric, where: str) -> Decider:
    """Bind ``spec`` to ``subject``: answers become token ids (each must be one token)."""
    if spec.answers is None:
        m = get_metric(spec.metric) if spec.metric is not None else metric
        name = m.name
        return Decider(
            (f"{name} > {spec.threshold:g}", f"{name} <= {spec.threshold:g}"),
            0,
            m,
            threshold=spec.threshold,
        )
    ids = []
    for text in spec.answers:
        try:
            _refuse_unknown_words(subject, text, f"{where}: decision answer")
            ids.append(subject.single_token(text, f"{where}: decision answer"))
        except ContrastError as err:
            raise SpecError(
                f"{err}; decision answers must be single tokens (mind the leading space)"
            ) from None
    if len(set(ids)) != len(ids):
        raise SpecError(
            f"{where}: decision answers {spec.answers!r} map to repeated token ids {ids}"
        )
    outcomes = tuple(spec.answers)
    positive = outcomes.index(spec.positive) if spec.positive is not None else 0
    return Decider(
        outcomes,
        positive,
        _top_answer_metric(torch.tensor(ids), outcomes),
        answer_ids=tuple(ids),
    )


def pair_decisions(
    subject: Subject, contrast: ContrastSet, metric: Metric
) -> tuple[Float[Tensor, " pair"], Float[Tensor, " pair"]]:
    """Per-pair ``metric`` on clean and counterfactual prompts (batched plain forwards)."""
    clean, cf = [], []
    for part in contrast.batches(BATCH):
        c, f = pair_effects(subject, part, metric)
        clean.append(c)
        cf.append(f)
    return torch.cat(clean), torch.cat(cf)


def population_values(
    subject: Subject, prompts: ContrastSet, metric: Metric
) -> Float[Tensor, " prompt"]:
    """Per-prompt ``metric`` on the clean prompts of ``prompts`` (batched plain forwards)."""
    return torch.cat([clean_values(subject, part, metric) for part in prompts.batches(BATCH)])


def pair_values(
    subject: Subject,
    contrast: ContrastSet,
    metrics: list[Metric],
    answers: list[Tensor | None] | None = None,
    *,
    sides: tuple[str, ...] = ("clean", "counterfactual"),
) -> list[list[Float[Tensor, " pair"]]]:
    """Several metrics read from the same forwards: ``out[side][metric]`` per pair.

    A decision (the top answer) and the metric reported beside it need the same forwards; this
    runs each side of each batch once and reads every metric from it, instead of once per
    metric (:func:`pair_decisions` per metric gives the same numbers, checked in
    ``tests/unit/test_decisions.py``). ``answers[i]`` replaces the contrast's answers for metric
    ``i`` (a decision's own answer pair). Metrics that compare with the clean run
    (``needs_reference``) are refused: they are not a function of one side's forward.
    """
    for m in metrics:
        if m.needs_reference:
            raise SpecError(
                f"metric {m.name!r} compares with the clean run; it cannot share a forward"
            )
    given = answers if answers is not None else [None] * len(metrics)
    if len(given) != len(metrics):
        raise ValueError(f"{len(given)} answer sets for {len(metrics)} metrics")
    if "counterfactual" in sides:  # as a pair sweep does (a population is clean alone)
        contrast.check_fits(subject)
    out: list[list[list[Tensor]]] = [[[] for _ in metrics] for _ in sides]
    for start in range(0, len(contrast), BATCH):
        part = contrast[start : start + BATCH]
        bound = [
            (m, part.answers if a is None else a[start : start + BATCH])
            for m, a in zip(metrics, given, strict=True)
        ]
        for s, side in enumerate(sides):
            for i, v in enumerate(side_values(subject, part, side, bound)):
                out[s][i].append(v)
    return [[torch.cat(vs) for vs in per_side] for per_side in out]


def bounded(iv: Interval, lo: float = 0.0, hi: float = 1.0) -> Interval:
    """The interval clipped to the range the statistic can take (a rate's [0, 1]): the widened
    bootstrap draws can step outside it with few clusters. Verdicts against a limit inside the
    range are unchanged; p-values still read the draws."""
    return replace(iv, lo=min(max(iv.lo, lo), hi), hi=max(min(iv.hi, hi), lo))


@dataclass(frozen=True)
class LimitTest:
    """One tested quantity: its interval must stay ``at_most`` (rates, gaps) or ``at_least``
    (ratios) ``limit``. ``decide_by`` is the interval a *violation* is judged on when it
    differs from ``iv`` (a gap over the groups large enough to trust); ``blocker`` is why a
    *pass* cannot be claimed (a group too small to resample), or None."""

    fields: dict[str, Any]
    iv: Interval
    limit: float
    side: Literal["at_most", "at_least"] = "at_most"
    decide_by: Interval | None = None
    blocker: str | None = None

    def p_violation(self) -> float:
        iv = self.decide_by or self.iv
        return iv.p_above(self.limit) if self.side == "at_most" else iv.p_below(self.limit)


def limit_family(tests: list[LimitTest], spec: Any) -> tuple[list[dict[str, Any]], Verdict, str]:
    """Verdict rows for a family of one-sided limits, 'violated' claims Holm-corrected.

    A ``pass`` needs every interval on the allowed side (an intersection-union test, no
    correction needed); a ``fail`` needs an interval entirely beyond its limit and a
    Holm-adjusted p-value below ``1 - confidence``. Returns the rows, the combined verdict and a
    sentence stating the correction.
    """
    adjusted = holm([t.p_violation() for t in tests])
    rows = []
    for t, p_adj in zip(tests, adjusted, strict=True):
        judge = upper_verdict if t.side == "at_most" else lower_verdict
        verdict, reason = judge(
            t.decide_by or t.iv, t.limit, min_clusters=spec.min_clusters, p_adjusted=p_adj
        )
        if t.blocker is not None and not (verdict == "fail" and t.decide_by is not None):
            reason = t.blocker if verdict == "pass" else f"{t.blocker}; {reason}"
            verdict = "inconclusive"
        elif t.blocker is not None:
            reason = f"{reason}, among the groups with enough clusters alone ({t.blocker})"
        key = "budget" if t.side == "at_most" else "minimum"
        rows.append(
            {
                **t.fields,
                "value": t.iv.point,
                **interval_row(t.iv),
                key: t.limit,
                "p_violation": t.p_violation(),
                "p_holm": p_adj,
                "verdict": verdict,
                "reason": reason,
                "passed": verdict == "pass",
            }
        )
    m = len(tests)
    correction = (
        f"Holm correction over {m} tests at family-wise error {1 - spec.confidence:.3g} for "
        "'violated' claims; 'pass' needs every interval within its limit "
        "(intersection-union test, no correction needed)"
        if m > 1
        else "one test: no multiple-testing correction"
    )
    return rows, combine([r["verdict"] for r in rows]), correction
