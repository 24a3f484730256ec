"""``group_parity``: do outcome rates differ between groups of individuals?

Each individual of a ``population`` (one prompt, with group attributes and optionally a true
label) gets a decision. Per attribute, and for every intersection of attributes (gender x
ethnicity), the check measures

* **demographic parity**: the positive-decision rate of every group, and the largest pairwise
  gap (highest rate minus lowest), optionally their ratio (lowest / highest; the four-fifths
  rule is ``min_ratio: 0.8``);
* **equalized odds** (with labels): the true-positive rate (positive decisions among label 1)
  and the false-positive rate (among label 0) of every group, and the largest gap of each;

each with a cluster-bootstrap CI (every rate and gap from the same draws). Every gap must lie
below ``budget`` (and every ratio above ``min_ratio``): pass when every interval is on the
allowed side, fail when one lies entirely beyond (Holm-corrected over the family), else
inconclusive. A group with fewer than ``min_clusters`` clusters cannot be resampled reliably:
a gap that includes it cannot pass; it can still fail when the gap among the larger groups
alone (never larger than the full gap) lies entirely above the budget. Beside the rates, each
group's mean metric is reported, so the decision gaps sit next to the mean effects.

In a bootstrap draw that leaves out every member of a group, that group's rate is held at its
point estimate (the gap is otherwise undefined); with ``min_clusters`` clusters per group this
happens in fewer than ``exp(-min_clusters)`` of the draws.
"""

from __future__ import annotations

import html
import itertools
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor

from interp_audit.audit.context import AuditContext
from interp_audit.audit.decisions import (
    Decider,
    DecisionSpec,
    LimitTest,
    bounded,
    decider,
    limit_family,
    pair_values,
    population_values,
)
from interp_audit.audit.measure import first_reasons
from interp_audit.audit.population import Population, PopulationSpec, build_population
from interp_audit.audit.registry import CheckKind, register_check
from interp_audit.audit.result import CheckResult
from interp_audit.audit.sections import CheckSpec
from interp_audit.core.errors import SpecError
from interp_audit.engine.contrasts import ContrastSet
from interp_audit.stats.bootstrap import (
    cluster_bootstrap_columns,
    cluster_codes,
    interval_row,
)

Criterion = Literal["demographic_parity", "equalized_odds"]


class GroupParityCheck(CheckSpec):
    """Outcome-rate gaps between groups (and intersections of groups) must stay below
    ``budget``: demographic parity, and equalized odds when the population has labels."""

    kind: Literal["group_parity"]
    """``group_parity``."""
    population: PopulationSpec
    """The individuals (see the ``population`` section)."""
    decision: DecisionSpec
    """How a prompt becomes a decision; ``positive`` names the outcome whose rate is compared."""
    attributes: list[str] = Field(min_length=1)
    """The population's attributes whose groups are compared (e.g. ``[gender, ethnicity]``)."""
    intersections: bool = True
    """Also compare the groups of every combination of two or more attributes."""
    criteria: list[Criterion] = Field(default_factory=lambda: ["demographic_parity"], min_length=1)
    """``demographic_parity`` (positive rates) and/or ``equalized_odds`` (true- and
    false-positive rates; needs ``population.label``)."""
    budget: float = Field(ge=0, le=1)
    """The largest allowed gap between two groups' rates (its CI must lie below it)."""
    min_ratio: float | None = Field(None, gt=0, le=1)
    """Also demand lowest / highest positive rate at least this (0.8: the four-fifths rule)."""

    @model_validator(mode="after")
    def _labels(self):
        if "equalized_odds" in self.criteria and not self.population.label:
            raise ValueError(
                "equalized_odds compares true- and false-positive rates: give population.label "
                "(each individual's true outcome, 0/1)"
            )
        dup = sorted({a for a in self.attributes if self.attributes.count(a) > 1})
        if dup:
            raise ValueError(f"attributes lists {dup[0]!r} twice")
        if len(set(self.criteria)) != len(self.criteria):
            raise ValueError("criteria lists a criterion twice")
        return self


@dataclass(frozen=True)
class _Partition:
    """The groups of one attribute (or intersection): names and a [group, individual] mask."""

    attribute: str
    groups: tuple[str, ...]
    masks: Tensor  # [group, individual] float64 0/1


def _partitions(attrs: dict[str, tuple[str, ...]], order: list[str], crossed: bool):
    combos = [(a,) for a in order]
    if crossed:
        combos += [c for r in range(2, len(order) + 1) for c in itertools.combinations(order, r)]
    out = []
    for combo in combos:
        keys = list(zip(*(attrs[a] for a in combo), strict=True))
        groups = sorted(set(keys))
        index = {g: i for i, g in enumerate(groups)}
        masks = torch.zeros(len(groups), len(keys), dtype=torch.float64)
        masks[torch.tensor([index[k] for k in keys]), torch.arange(len(keys))] = 1.0
        names = tuple(
            g[0]
            if len(combo) == 1
            else ", ".join(f"{a}={v}" for a, v in zip(combo, g, strict=True))
            for g in groups
        )
        out.append(_Partition(" x ".join(combo), names, masks))
    return out


@dataclass(frozen=True)
class _Rate:
    """One family of group rates: what is counted, over whom (a mask per group)."""

    measure: str  # "positive rate", "true positive rate", ...
    gap: str  # the gap's name in reports
    masks: Tensor  # [group, individual] who is in the denominator
    values: Tensor  # [individual] what is averaged


def _rate_columns(rates: list[_Rate], big: list[Tensor], want_ratio: list[bool]):
    """``statistic(w)`` -> per rate family: each group's rate, gap, gap over large groups, and
    (where asked) the ratio and the ratio over large groups."""
    ones = torch.ones(1, rates[0].masks.shape[1], dtype=torch.float64) if rates else None
    points = []
    for r in rates:
        den = ones @ r.masks.T
        points.append((ones @ (r.masks * r.values).T) / den.clamp(min=1e-300))

    def gaps(rate: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
        sel = rate[:, keep]
        hi, lo = sel.max(1).values, sel.min(1).values
        ratio = torch.where(hi > 0, lo / hi.clamp(min=1e-300), torch.ones_like(hi))
        return hi - lo, ratio

    def statistic(w: Tensor) -> Tensor:
        out = []
        for r, point, keep, ratio in zip(rates, points, big, want_ratio, strict=True):
            den = w @ r.masks.T
            num = w @ (r.masks * r.values).T
            rate = torch.where(den > 0, num / den.clamp(min=1e-300), point.expand_as(den))
            everyone = torch.ones(rate.shape[1], dtype=torch.bool)
            gap, rat = gaps(rate, everyone)
            out += [rate, gap[:, None]]
            big_gap, big_rat = gaps(rate, keep) if int(keep.sum()) >= 2 else (gap, rat)
            out.append(big_gap[:, None])
            if ratio:
                out += [rat[:, None], big_rat[:, None]]
        return torch.cat(out, 1)

    return statistic


def _families(chk: GroupParityCheck, masks: Tensor, positive, labels, scores, metric):
    """The rate families of one partition: (family, tested?)."""
    out = [
        (_Rate("positive rate", "demographic parity gap", masks, positive), "demographic_parity")
    ]
    if "equalized_odds" in chk.criteria:
        out += [
            (_Rate("true positive rate", "true positive rate gap", masks * labels, positive), "eo"),
            (
                _Rate(
                    "false positive rate", "false positive rate gap", masks * (1 - labels), positive
                ),
                "eo",
            ),
        ]
    if scores is not None:
        out.append((_Rate(f"mean {metric.name}", f"{metric.name} gap", masks, scores), None))
    tested = {"demographic_parity": "demographic_parity" in chk.criteria, "eo": True, None: False}
    return [(f, tested[t]) for f, t in out]


def _same(iv):
    return iv


def _blocker(small: list[str], missing: list[str], min_clusters: int) -> str | None:
    parts = []
    if small:
        parts.append(f"groups below min_clusters {min_clusters}: {', '.join(small)}")
    if missing:
        parts.append(f"no individuals for this rate in {', '.join(missing)}")
    return "; ".join(parts) or None


def _measure(chk, part: _Partition, families, codes: Tensor, kw: dict, where: str):
    """Every family's group rates (shown) and its gap (and ratio) tests, one bootstrap."""

    def clusters_in(mask: Tensor) -> int:
        return int(codes[mask.bool()].unique().numel())

    present = [f.masks.sum(1) > 0 for f, _ in families]
    fams = [
        _Rate(f.measure, f.gap, f.masks[p], f.values)
        for (f, _), p in zip(families, present, strict=True)
    ]  # groups with no member for a rate (no label-1 member, say) have no rate
    sizes = [[clusters_in(m) for m in f.masks] for f in fams]
    keep = [torch.tensor([s >= chk.min_clusters for s in sz], dtype=torch.bool) for sz in sizes]
    ratio = [f.measure == "positive rate" and chk.min_ratio is not None for f in fams]
    columns = cluster_bootstrap_columns(_rate_columns(fams, keep, ratio), codes, len(codes), **kw)
    ivs = iter(columns)
    tests: list[LimitTest] = []
    shown: list[dict[str, Any]] = []
    for (_, tested), f, p, sz, k, want_ratio in zip(
        families, fams, present, sizes, keep, ratio, strict=True
    ):
        names = [g for g, here in zip(part.groups, p.tolist(), strict=True) if here]
        missing = [g for g, here in zip(part.groups, p.tolist(), strict=True) if not here]
        clip = _same if f.measure.startswith("mean ") else bounded  # rates live in [0, 1]
        rate_ivs = [clip(next(ivs)) for _ in names]
        gap_iv, big_gap_iv = clip(next(ivs)), clip(next(ivs))
        ratio_ivs = (bounded(next(ivs)), bounded(next(ivs))) if want_ratio else None
        for g, m, c, iv in zip(names, f.masks, sz, rate_ivs, strict=True):
            shown.append(
                {
                    "measure": f.measure,
                    "attribute": part.attribute,
                    "group": g,
                    "n": int(m.sum()),
                    "value": iv.point,
                    **interval_row(iv),
                    "clusters": c,
                    "verdict": None,
                    "passed": None,
                }
            )
        if part.attribute == "all":
            continue
        if len(names) < 2:
            if tested:
                raise SpecError(
                    f"{where}: attribute {part.attribute!r} has {len(names)} group(s) with "
                    f"individuals for the {f.measure}"
                    + (f" (none in {', '.join(missing)})" if missing else "")
                    + ": there is no gap to measure"
                )
            continue
        points = [iv.point for iv in rate_ivs]
        small = [
            f"{g} ({c} cluster{'s' if c != 1 else ''})"
            for g, c in zip(names, sz, strict=True)
            if c < chk.min_clusters
        ]
        blocker = _blocker(small, missing, chk.min_clusters)
        decide_by = big_gap_iv if blocker and int(k.sum()) >= 2 else None
        fields: dict[str, Any] = {
            "measure": f.gap,
            "attribute": part.attribute,
            "highest": names[points.index(max(points))],
            "lowest": names[points.index(min(points))],
            "groups": len(names),
        }
        if decide_by is not None:
            fields["gap over groups with enough clusters"] = decide_by.point
            fields["its ci"] = [decide_by.lo, decide_by.hi]
        if not tested:
            shown.append(
                {**fields, "value": gap_iv.point, **interval_row(gap_iv), "verdict": None,
                 "passed": None}
            )  # fmt: skip
            continue
        tests.append(LimitTest(fields, gap_iv, chk.budget, "at_most", decide_by, blocker))
        if ratio_ivs is not None:
            r_iv, r_big = ratio_ivs
            r_fields = {k: v for k, v in fields.items() if k not in ("its ci",)}
            r_fields["measure"] = "positive rate ratio (lowest / highest)"
            r_fields.pop("gap over groups with enough clusters", None)
            if decide_by is not None:
                r_fields["ratio over groups with enough clusters"] = r_big.point
            r_decide = r_big if decide_by is not None else None
            tests.append(LimitTest(r_fields, r_iv, chk.min_ratio, "at_least", r_decide, blocker))
    return tests, shown


def _gap_label(row: dict[str, Any]) -> str:
    return f"{row['measure']} over {row['attribute']}"


def decided_population(
    chk: GroupParityCheck, ctx: AuditContext, where: str
) -> tuple[Decider, Population, ContrastSet]:
    """A group_parity check's decision rule bound to the model, its population (answers by
    default the decision's two outcomes, the positive one first) and the population's prompts
    tokenized; what the check and the repair's decision change both read."""
    dec = decider(chk.decision, ctx.subject, ctx.metric, where)
    default_answers = None
    if dec.by_answers:
        pos = dec.outcomes[dec.positive]
        default_answers = (pos, next(a for a in dec.outcomes if a != pos))
    pop = build_population(
        chk.population, ctx, where, attributes=chk.attributes, default_answers=default_answers
    )
    return dec, pop, pop.contrast(ctx.subject, where)


def run(chk: GroupParityCheck, ctx: AuditContext, name: str) -> CheckResult:
    where = f"check {name!r}"
    dec, pop, prompts = decided_population(chk, ctx, where)
    if dec.metric.needs_answers and prompts.answers is None:
        raise SpecError(
            f"{where}: the decision thresholds {dec.metric.name}, which scores answer tokens: "
            "give population.answers: [correct, incorrect]"
        )
    metric, scores = ctx.metric, None
    if not dec.by_answers:  # the thresholded metric is the one reported beside
        values = population_values(ctx.subject, prompts, dec.metric)
        metric, scores = dec.metric, values.double()
    elif (ctx.metric.needs_answers and prompts.answers is None) or ctx.metric.needs_reference:
        values = population_values(ctx.subject, prompts, dec.metric)
    else:  # the decision and the metric beside it read from the same forwards
        ((values, scores),) = pair_values(
            ctx.subject, prompts, [dec.metric, ctx.metric], sides=("clean",)
        )
        scores = scores.double()
    positive = (dec.decide(values) == dec.positive).double()
    labels = None if pop.labels is None else torch.tensor(pop.labels, dtype=torch.float64)
    codes = cluster_codes(pop.clusters, len(pop))
    kw = chk.resampling(ctx.seed).kw()
    everyone = _Partition("all", ("all",), torch.ones(1, len(pop), dtype=torch.float64))
    tests: list[LimitTest] = []
    shown: list[dict[str, Any]] = []
    for part in [everyone, *_partitions(pop.attributes, chk.attributes, chk.intersections)]:
        families = _families(chk, part.masks, positive, labels, scores, metric)
        t, s = _measure(chk, part, families, codes, kw, where)
        tests += t
        shown += s
    if not tests:
        raise SpecError(f"{where}: nothing to test (no attribute has two groups)")
    rows, verdict, correction = limit_family(tests, chk)
    return _result(chk, name, verdict, rows, shown, correction, dec.describe(), pop, metric)


def _result(chk, name, verdict, rows, shown, correction, rule, pop, metric) -> CheckResult:
    gaps = [r for r in rows if "budget" in r]
    bad = [r for r in rows if r["verdict"] == "fail"]
    unsure = [r for r in rows if r["verdict"] == "inconclusive"]
    if bad:
        worst = max(
            bad, key=lambda r: r["ci"][0] - r.get("budget", 0.0) if "budget" in r else -r["ci"][1]
        )
    else:
        worst = max(gaps, key=lambda r: r["ci"][1]) if gaps else rows[0]
    overall = next(
        (d for d in shown if d["measure"] == "positive rate" and d["attribute"] == "all"), None
    )
    msg = (
        f"largest gap: {worst['measure']} over {worst['attribute']} {worst['value']:+.4f} "
        f"[{worst['ci'][0]:+.4f}, {worst['ci'][1]:+.4f}] ({worst['highest']!r} highest, "
        f"{worst['lowest']!r} lowest); budget {chk.budget}"
    )
    if overall is not None:
        msg += (
            f"; positive decision ({rule}) rate {overall['value']:.1%} over {len(pop)} individuals"
        )
    means = [d for d in shown if d["measure"] == f"{metric.name} gap"]
    if means:
        m = max(means, key=lambda d: abs(d["value"]))
        msg += f"; largest gap of the mean {metric.name}: {m['value']:.4f} over {m['attribute']}"
    if bad:
        msg += "; violated: " + ", ".join(f"{r['measure']} over {r['attribute']}" for r in bad)
    if bad:
        reason = first_reasons(bad, _gap_label)
    elif unsure:
        reason = first_reasons(unsure, _gap_label, "more")
    else:
        reason = "every gap's interval below the budget" + (
            f" and every ratio's above {chk.min_ratio}" if chk.min_ratio is not None else ""
        )
    return CheckResult(
        name,
        chk.kind,
        verdict,
        worst["value"],
        tuple(worst["ci"]),
        chk.budget if "budget" in worst else chk.min_ratio,
        msg,
        rows + shown,
        chk.confidence,
        reason=reason,
        clusters=worst["clusters"],
        correction=correction,
    )


def figure(c: CheckResult):
    """Every group's positive rate (left) and the tested gaps with the budget (right)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from interp_audit.audit.figures import ci_error_bars

    colors = {"pass": "#2e7d32", "fail": "#c62828", "inconclusive": "#ef6c00"}

    def bars(rows, label, color):
        vals = [d["value"] for d in rows]
        return go.Bar(
            x=[html.escape(label(d)) for d in rows],
            y=vals,
            error_y=ci_error_bars(vals, [d["ci"] for d in rows]),
            marker_color=[color(d) for d in rows],
            showlegend=False,
        )

    rates = [d for d in c.details if d.get("measure") == "positive rate"]
    gaps = [d for d in c.details if "budget" in d]
    fig = make_subplots(
        rows=1, cols=2, column_widths=[0.6, 0.4],
        subplot_titles=("positive-decision rate per group", "tested gaps (dashed = budget)"),
    )  # fmt: skip
    fig.add_trace(bars(rates, lambda d: f"{d['group']}", lambda d: "#1565c0"), row=1, col=1)
    fig.add_trace(
        bars(gaps, lambda d: f"{d['measure']}: {d['attribute']}",
             lambda d: colors.get(d["verdict"], "#607d8b")),
        row=1, col=2,
    )  # fmt: skip
    budget = next((d["budget"] for d in gaps), None)
    if budget is not None:
        fig.add_hline(y=budget, line_dash="dash", line_color="#c62828", row=1, col=2)
    fig.update_layout(
        title=f"{html.escape(c.name)} (group_parity): "
        f"{int(100 * c.confidence)}% cluster-bootstrap CIs",
        template="plotly_white",
        height=380,
    )
    return fig


register_check(
    CheckKind(
        "group_parity",
        GroupParityCheck,
        run,
        "gaps between groups' outcome rates (demographic parity; equalized odds with labels), per "
        "attribute and per intersection, must stay below a budget",
        figure=figure,
        threshold="gap ≤ {:g}",
    )
)
