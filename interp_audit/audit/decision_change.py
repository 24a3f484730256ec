"""Decisions before and after a repair: flip rates and group outcome-rate gaps, paired.

A repair is judged on mean effects of a metric, but a deployed model acts on its decisions.
The repair report (``interp-audit repair``) and the trade-off (``ia.tradeoff``) therefore also
measure, on the same units before and after:

* the **counterfactual flip rate**: the share of pairs whose decision changes under the swap
  (a mean effect near zero can hide many flips in opposite directions);
* **group outcome-rate gaps**: the largest difference in positive-decision rate between the
  groups of a population (demographic parity; true- and false-positive rates with labels).

Decisions are read as the decision-level check kinds read them (``flip_rate`` and
``group_parity``: their ``decision`` section, contrast, population and groups, through
:mod:`interp_audit.audit.decisions`), or, where a spec has none, as the top answer among each
prompt's own two answers. The change after - before is bootstrapped **paired** when both
measurements hold the same units (one draw of clusters weighs the before and the after values
alike, so the interval is that of the change itself), else from independent draws of each.
Before and after intervals are those the checks give: the same draws, clipped to the range a
rate can take.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp_audit.audit.context import AuditContext
from interp_audit.audit.decisions import (
    DecisionSpec,
    bounded,
    decider,
    pair_decisions,
    population_values,
)
from interp_audit.audit.kinds.group_parity import _partitions, decided_population
from interp_audit.audit.measure import groups_of
from interp_audit.core.errors import SpecError
from interp_audit.engine.contrasts import ContrastSet
from interp_audit.model.metrics import Metric, MetricContext
from interp_audit.model.subject import Subject
from interp_audit.stats.bootstrap import (
    Interval,
    cluster_bootstrap_columns,
    cluster_codes,
    percentile_ci,
)

__all__ = [
    "FlipProbe",
    "GapProbe",
    "Rule",
    "Shift",
    "answer_rule",
    "check_rule",
    "flip_probe_of_check",
    "gap_probe_of_check",
    "groups_gap_probe",
    "largest",
    "measure_shifts",
    "positive_answer",
    "probe_shifts",
    "zero_shift",
]


# ---- decision rules -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """How a prompt becomes a decision: ``metric`` read per prompt, turned into an outcome code
    (a token id, or an outcome's index) by ``codes``; ``positive`` is the positive outcome's code
    (None: the rule has no positive outcome, so it gives flips but no outcome rates)."""

    metric: Metric
    codes: Callable[[Tensor, Tensor | None], Tensor]
    positive: int | None
    text: str


def check_rule(decision: DecisionSpec, ctx: AuditContext, where: str) -> Rule:
    """A check's ``decision`` section bound to ``ctx.subject`` (as the check kinds bind it)."""
    dec = decider(decision, ctx.subject, ctx.metric, where)
    return Rule(dec.metric, lambda v, _answers: dec.decide(v), dec.positive, dec.describe())


def _top_of_pair(r: Tensor, ctx: MetricContext) -> Tensor:
    """0: the prompt's first answer has the higher logit; 1: the second; 2: they tie."""
    return torch.where(r[:, 0] > r[:, 1], 0.0, torch.where(r[:, 1] > r[:, 0], 1.0, 2.0))


TOP_OF_PAIR = Metric(
    "top answer of the pair",
    "answer_logits",
    _top_of_pair,
    description="which of the prompt's two answers has the higher logit (2: a tie)",
)


def answer_rule(positive: int | None = None, positive_text: str | None = None) -> Rule:
    """The top answer among each prompt's own two answers (its token id is the outcome).

    ``positive``: the token id counted as the positive outcome in outcome rates; a tie goes to
    it (as a check's decision gives a tie to the answer listed first, the positive one by
    default), else to the prompt's first answer. A labelled set lists the *correct* answer
    first, so a tie must not go to the first listed there."""

    def codes(values: Tensor, answers: Tensor | None) -> Tensor:
        if answers is None:
            raise SpecError("a decision between a prompt's answers needs answers")
        idx = values.round().long().cpu()
        ans = answers.cpu()
        chosen = ans.gather(1, idx.clamp(max=1)[:, None])[:, 0]
        tie = ans[:, 0] if positive is None else torch.full_like(ans[:, 0], positive)
        if positive is not None:  # a row without the positive answer: its first answer
            tie = torch.where((ans == positive).any(1), tie, ans[:, 0])
        return torch.where(idx == 2, tie, chosen)

    text = "top answer among each prompt's two answers"
    if positive_text is not None:
        text += f" (positive, and ties: {positive_text!r})"
    return Rule(TOP_OF_PAIR, codes, positive, text)


# ---- what is measured on one model --------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """One bootstrap over some units (``idx``; None = all) resampled by their ``clusters``,
    giving one column per entry of ``fields`` from the per-unit values ``[unit, c]``."""

    fields: tuple[dict[str, Any], ...]
    idx: Tensor | None
    clusters: Sequence[str] | None
    stat: Callable[[Tensor, Tensor], Tensor]  # (weights [draw, unit], values [unit, c]) -> [d, k]
    ranges: tuple[tuple[float, float] | None, ...]  # per column: the range to clip to, or None


def _mean_of(col: int):
    return lambda w, v: ((w @ v[:, col]) / w.sum(1))[:, None]


@dataclass(frozen=True)
class FlipProbe:
    """Pairs whose decisions are compared clean vs counterfactual: per pair, whether the decision
    flips, and the metric's effect (clean - counterfactual) beside it when ``effect_metric``."""

    name: str
    contrast: ContrastSet
    rule: Rule
    per_group: bool = False
    effect_metric: Metric | None = None

    def values(self, subject: Subject) -> Float[Tensor, "pair c"]:
        cs = self.contrast
        vc, vf = pair_decisions(subject, cs, self.rule.metric)
        flips = (self.rule.codes(vc, cs.answers) != self.rule.codes(vf, cs.answers)).double()
        cols = [flips]
        if self.effect_metric is not None:
            c, f = pair_decisions(subject, cs, self.effect_metric)
            cols.append((c - f).double())
        return torch.stack(cols, 1)

    @property
    def units(self) -> tuple[Any, ...]:
        """Which pairs these are: their SCM unit ids (else their texts) and clusters; two probes
        with equal units are compared paired."""
        cs = self.contrast
        ids = tuple(cs.meta.get("units", ()) or ()) or (
            tuple(cs.clean_text or ()),
            tuple(cs.counterfactual_text or ()),
        )
        return (len(cs), tuple(cs.clusters or ()), ids)

    def parts(self) -> list[Part]:
        cs = self.contrast
        out = [self._part("all", None, cs.clusters)]
        if self.per_group:
            for g, idx in groups_of(cs).items():
                clusters = None if cs.clusters is None else [cs.clusters[i] for i in idx.tolist()]
                out.append(self._part(g, idx, clusters))
        return out

    def _part(self, group: str, idx: Tensor | None, clusters) -> Part:
        n = len(self.contrast) if idx is None else len(idx)
        fields = [{"measure": "flip rate", "group": group, "n": n}]
        ranges: list[tuple[float, float] | None] = [(0.0, 1.0)]
        if self.effect_metric is not None:
            fields.append({"measure": f"mean effect ({self.effect_metric.name})", "group": group,
                           "n": n})  # fmt: skip
            ranges.append(None)
        k = len(fields)

        def stat(w: Tensor, v: Tensor) -> Tensor:
            return torch.cat([_mean_of(j)(w, v) for j in range(k)], 1)

        return Part(tuple(fields), idx, clusters, stat, tuple(ranges))


@dataclass(frozen=True)
class Family:
    """One gap: the groups (rows of ``masks``, over individuals) whose rates of the positive
    decision are compared (for true- and false-positive rates the masks keep only the
    individuals labelled 1, or 0)."""

    measure: str  # "demographic parity gap", "true positive rate gap", ...
    attribute: str
    groups: tuple[str, ...]
    masks: Tensor  # [group, individual] float64 0/1


@dataclass(frozen=True)
class GapProbe:
    """Individuals whose positive-decision rates are compared between groups: each family's
    gap (highest rate minus lowest) and, with several attributes, the largest demographic-parity
    gap over them (per draw: its interval accounts for picking the largest)."""

    name: str
    prompts: ContrastSet
    rule: Rule
    families: tuple[Family, ...]
    clusters: tuple[str, ...]
    identity: tuple[Any, ...] = field(default=())

    def values(self, subject: Subject) -> Float[Tensor, "individual 1"]:
        v = population_values(subject, self.prompts, self.rule.metric)
        codes = self.rule.codes(v, self.prompts.answers)
        return (codes == self.rule.positive).double()[:, None]

    @property
    def units(self) -> tuple[Any, ...]:
        return (len(self.clusters), self.clusters, self.identity)

    def parts(self) -> list[Part]:
        fams = self.families
        parity = [i for i, f in enumerate(fams) if f.measure == "demographic parity gap"]
        fields = [
            {"measure": f.measure, "attribute": f.attribute, "groups": len(f.groups),
             "n": int(f.masks.sum())}
            for f in fams
        ]  # fmt: skip
        many = len(parity) > 1
        if many:
            fields.append({"measure": "largest demographic parity gap", "attribute": "any",
                           "n": len(self.clusters)})  # fmt: skip

        def stat(w: Tensor, v: Tensor) -> Tensor:
            pos = v[:, 0]
            gaps = []
            for f in fams:
                den = w @ f.masks.T
                num = w @ (f.masks * pos).T
                point = (f.masks @ pos) / f.masks.sum(1)
                rate = torch.where(den > 0, num / den.clamp(min=1e-300), point.expand_as(den))
                gaps.append(rate.max(1).values - rate.min(1).values)
            if many:
                gaps.append(torch.stack([gaps[i] for i in parity], 1).max(1).values)
            return torch.stack(gaps, 1)

        return [Part(tuple(fields), None, self.clusters, stat, tuple([(0.0, 1.0)] * len(fields)))]

    def widest(self, values: Tensor) -> tuple[str, str | None, str | None]:
        """(attribute, highest group, lowest group) of the widest demographic-parity gap; the
        groups are None when every group's rate is the same."""
        best: tuple[float, str, str | None, str | None] | None = None
        for f, (hi, lo, gap) in zip(self.families, self._ends(values), strict=True):
            if f.measure == "demographic parity gap" and (best is None or gap > best[0]):
                best = (gap, f.attribute, hi, lo)
        if best is None:
            raise ValueError(f"{self.name}: no demographic parity gap")
        return best[1], best[2], best[3]

    def extremes(self, values: Tensor) -> dict[tuple[str, str], tuple[str | None, str | None]]:
        """(measure, attribute) -> the groups with the highest and the lowest rate (None, None
        when every group's rate is the same)."""
        return {
            (f.measure, f.attribute): (hi, lo)
            for f, (hi, lo, _) in zip(self.families, self._ends(values), strict=True)
        }

    def _ends(self, values: Tensor) -> list[tuple[str | None, str | None, float]]:
        pos = values[:, 0]
        out = []
        for f in self.families:
            rates = ((f.masks @ pos) / f.masks.sum(1)).tolist()
            order = sorted(range(len(rates)), key=lambda i: rates[i])
            gap = rates[order[-1]] - rates[order[0]]
            if gap == 0:
                out.append((None, None, 0.0))
            else:
                out.append((f.groups[order[-1]], f.groups[order[0]], gap))
        return out


def flip_probe_of_check(chk: Any, ctx: AuditContext, name: str) -> FlipProbe:
    """The pairs and the decision rule of a ``flip_rate`` check (its contrast, per group when it
    tests groups; the spec's metric beside, when the contrast has answers for it)."""
    cs = ctx.contrasts[chk.contrast]
    rule = check_rule(chk.decision, ctx, f"check {name!r}")
    if rule.metric.needs_answers and cs.answers is None:
        raise SpecError(
            f"check {name!r}: the decision thresholds {rule.metric.name}, which scores answer "
            f"tokens, but contrast {chk.contrast!r} has none: give it answers"
        )
    effect = ctx.metric if (cs.answers is not None or not ctx.metric.needs_answers) else None
    return FlipProbe(name, cs, rule, per_group=chk.per_group, effect_metric=effect)


def gap_probe_of_check(chk: Any, ctx: AuditContext, name: str) -> GapProbe:
    """The population, groups and decision rule of a ``group_parity`` check: every attribute's
    (and, with ``intersections``, every combination's) demographic-parity gap, and with
    ``equalized_odds`` the true- and false-positive-rate gaps."""
    where = f"check {name!r}"
    rule = check_rule(chk.decision, ctx, where)
    _, pop, prompts = decided_population(chk, ctx, where)
    labels = None if pop.labels is None else torch.tensor(pop.labels, dtype=torch.float64)
    fams: list[Family] = []
    for part in _partitions(pop.attributes, chk.attributes, chk.intersections):
        among = [("demographic parity gap", part.masks)]
        if "equalized_odds" in chk.criteria and labels is not None:
            among += [
                ("true positive rate gap", part.masks * labels),
                ("false positive rate gap", part.masks * (1 - labels)),
            ]
        for measure, masks in among:
            keep = masks.sum(1) > 0
            if int(keep.sum()) < 2:
                continue
            groups = tuple(g for g, k in zip(part.groups, keep.tolist(), strict=True) if k)
            fams.append(Family(measure, part.attribute, groups, masks[keep]))
    if not fams:
        raise SpecError(f"{where}: no attribute has two groups to compare")
    attrs = tuple(sorted((k, v) for k, v in pop.attributes.items()))
    return GapProbe(name, prompts, rule, tuple(fams), tuple(pop.clusters), (pop.source, attrs))


def positive_answer(ctx: AuditContext, cs: ContrastSet) -> tuple[int, str] | None:
    """(token id, text) of the outcome counted as positive among a contrast's own answers: the
    causal model's first answer (``YES``, ``hire``), else the first answer when every prompt
    lists the same one first; None otherwise (a labelled set with no causal model)."""
    cm = ctx.causal.model if ctx.causal is not None else None
    if cm is not None and cm.answers is not None:
        text = cm.answers[0]
        return ctx.subject.answer_token(text)[0], text
    if cs.answers is not None and len(cs) and bool((cs.answers[:, 0] == cs.answers[0, 0]).all()):
        tok = int(cs.answers[0, 0])
        return tok, ctx.subject.token_str([tok])[0]
    return None


def groups_gap_probe(
    name: str, cs: ContrastSet, positive: int, positive_text: str, attribute: str = "group"
) -> GapProbe | None:
    """The positive-decision-rate gap between the groups of a contrast's clean prompts (a
    utility set grouped by a protected attribute), the decision the top of each prompt's two
    answers; None without two groups or without answers."""
    groups = groups_of(cs)
    if len(groups) < 2 or cs.answers is None:
        return None
    names = tuple(sorted(groups))
    masks = torch.zeros(len(names), len(cs), dtype=torch.float64)
    for j, g in enumerate(names):
        masks[j, groups[g]] = 1.0
    clusters = tuple(cs.clusters) if cs.clusters is not None else tuple(map(str, range(len(cs))))
    fam = Family("demographic parity gap", attribute, names, masks)
    return GapProbe(
        name, cs, answer_rule(positive, positive_text), (fam,), clusters, (tuple(cs.groups),)
    )


# ---- before vs after ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Shift:
    """One measure before and after, and the change after - before, each an interval;
    ``paired``: the change was bootstrapped over the same units."""

    fields: dict[str, Any]
    before: Interval
    after: Interval
    change: Interval
    paired: bool

    def row(self) -> dict[str, Any]:
        return {
            **self.fields,
            "before": self.before.point,
            "before ci": [self.before.lo, self.before.hi],
            "after": self.after.point,
            "after ci": [self.after.lo, self.after.hi],
            "change": self.change.point,
            "change ci": [self.change.lo, self.change.hi],
            "paired": self.paired,
        }


def _clip(iv: Interval, rng: tuple[float, float] | None, change: bool = False) -> Interval:
    if rng is None:
        return iv
    lo, hi = rng
    return bounded(iv, lo - hi, hi - lo) if change else bounded(iv, lo, hi)


def _boot(part: Part, values: Tensor, kw: dict[str, Any]) -> list[Interval]:
    v = values if part.idx is None else values[part.idx]
    return cluster_bootstrap_columns(
        lambda w: part.stat(w, v), _codes(part.clusters, len(v)), len(v), **kw
    )


def _codes(clusters: Sequence[str] | None, n: int) -> Int[Tensor, " unit"]:
    return cluster_codes(None if clusters is None else list(clusters), n)


def _difference(a: Interval, b: Interval, confidence: float) -> Interval:
    """after - before from independent draws of each."""
    draws = a.samples - b.samples
    lo, hi = percentile_ci(draws, confidence).tolist()
    return Interval(a.point - b.point, lo, hi, min(a.n_clusters, b.n_clusters), confidence, draws)


def measure_shifts(
    before_parts: list[Part],
    before: Tensor | None,
    after: Tensor | None,
    kw: dict[str, Any],
    *,
    paired: bool,
    after_parts: list[Part] | None = None,
) -> list[Shift]:
    """Every column of every part, before and after, and its change (see the module doc).

    ``paired``: ``before`` and ``after`` hold the same units in the same order; else
    ``after_parts`` describe the after units (the columns must correspond) and the change is
    the difference of independent draws (seeds ``seed`` and ``seed + 1``). Unpaired, a side
    given as None has no units (no unit's input changes along a path): each of its columns is
    0 exactly.
    """
    out: list[Shift] = []
    if paired:
        if before is None or after is None:
            raise ValueError("a paired comparison needs the units' values before and after")
        both = torch.cat([before, after], 1)
        c = before.shape[1]
        for part in before_parts:
            k = len(part.fields)

            def stat(w, v, part=part, c=c):
                b, a = part.stat(w, v[:, :c]), part.stat(w, v[:, c:])
                return torch.cat([b, a, a - b], 1)

            joint = Part(part.fields, part.idx, part.clusters, stat, part.ranges)
            ivs = _boot(joint, both, kw)
            for j, (fields, rng) in enumerate(zip(part.fields, part.ranges, strict=True)):
                out.append(
                    Shift(
                        dict(fields),
                        _clip(ivs[j], rng),
                        _clip(ivs[k + j], rng),
                        _clip(ivs[2 * k + j], rng, change=True),
                        True,
                    )
                )
        return out
    theirs = after_parts if after_parts is not None else before_parts
    if [_names(p) for p in theirs] != [_names(p) for p in before_parts]:
        fb = [_names(p) for p in before_parts]
        fa = [_names(p) for p in theirs]
        raise SpecError(f"the measures before ({fb}) and after ({fa}) do not correspond")
    conf = kw["confidence"]
    for pb, pa in zip(before_parts, theirs, strict=True):
        ib = _boot(pb, before, kw) if before is not None else _zeros(pb, kw)
        ia = (
            _boot(pa, after, {**kw, "seed": kw["seed"] + 1})
            if after is not None
            else _zeros(pa, kw)
        )
        for fields, rng, b, a in zip(pb.fields, pb.ranges, ib, ia, strict=True):
            change = _difference(a, b, conf)
            out.append(
                Shift(dict(fields), _clip(b, rng), _clip(a, rng), _clip(change, rng, True), False)
            )
    return out


def _names(part: Part) -> list[tuple[Any, ...]]:
    """What each column measures (its fields less the unit counts, which may differ)."""
    return [tuple((k, v) for k, v in f.items() if k != "n") for f in part.fields]


def _zeros(part: Part, kw: dict[str, Any]) -> list[Interval]:
    z = torch.zeros(kw["n_boot"], dtype=torch.float64)
    return [Interval(0.0, 0.0, 0.0, 0, kw["confidence"], z) for _ in part.fields]


def largest(
    shifts: Sequence[Shift], confidence: float, rng: tuple[float, float] | None = (0.0, 1.0)
) -> tuple[int, Shift]:
    """The largest of several measures (before, after: the maximum per bootstrap draw, so the
    interval accounts for picking it; the change: after - before of the maximum, draw by draw),
    and which measure is largest after. The measures come from the same number of draws."""
    if len(shifts) == 1:
        return 0, shifts[0]

    def top(ivs: list[Interval]) -> Interval:
        draws = torch.stack([iv.samples for iv in ivs]).max(0).values
        lo, hi = percentile_ci(draws, confidence).tolist()
        point = max(iv.point for iv in ivs)
        clusters = min(iv.n_clusters for iv in ivs)
        return Interval(point, lo, hi, clusters, confidence, draws)

    before = top([s.before for s in shifts])
    after = top([s.after for s in shifts])
    change = _difference(after, before, confidence)
    worst = max(range(len(shifts)), key=lambda i: shifts[i].after.point)
    paired = all(s.paired for s in shifts)
    return worst, Shift(
        dict(shifts[worst].fields),
        _clip(before, rng),
        _clip(after, rng),
        _clip(change, rng, change=True),
        paired,
    )


def zero_shift(fields: dict[str, Any], kw: dict[str, Any]) -> Shift:
    """A measure that is 0 exactly before and after (a path along which no unit's input
    changes, on both models, flips nothing)."""
    z = torch.zeros(kw["n_boot"], dtype=torch.float64)
    iv = Interval(0.0, 0.0, 0.0, 0, kw["confidence"], z)
    return Shift(dict(fields), iv, iv, iv, True)


def probe_shifts(
    before: tuple[Any, Tensor] | None, after: tuple[Any, Tensor] | None, kw: dict[str, Any]
) -> list[Shift]:
    """(probe, its values) before and after, either None when it has no units (0 exactly):
    paired when both probes hold the same units, else from independent draws."""
    if before is None and after is None:
        raise ValueError("nothing measured before or after")
    pb, vb = before if before is not None else (None, None)
    pa, va = after if after is not None else (None, None)
    if pb is not None and pa is not None and pb.units == pa.units:
        return measure_shifts(pb.parts(), vb, va, kw, paired=True)
    parts_b = (pb or pa).parts()
    parts_a = (pa or pb).parts()
    return measure_shifts(parts_b, vb, va, kw, paired=False, after_parts=parts_a)
