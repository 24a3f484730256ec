"""``flip_rate``: how many decisions change when the audited variable is swapped.

A mean effect near zero can hide many flips in opposite directions (half the pairs move from
" he" to " she", half from " she" to " he"). This kind counts them: the share of pairs whose
decision (the top answer, or metric > threshold) differs between clean and counterfactual, with
its cluster-bootstrap CI, overall and per group, against a ``budget``: pass when every interval
lies below it, fail when one lies entirely above (Holm-corrected over the groups), else
inconclusive. Beside it, with CIs from the same bootstrap draws: the flips in each direction
(``" he" -> " she"``: count and share), the net change of each outcome's rate, and the mean
effect of the metric (clean minus counterfactual), so the report shows what the mean hides.
"""

from __future__ import annotations

import html
from dataclasses import replace
from typing import Any, Literal

import torch
from pydantic import Field

from interp_audit.audit.context import AuditContext
from interp_audit.audit.decisions import (
    DecisionSpec,
    LimitTest,
    bounded,
    decider,
    limit_family,
    pair_decisions,
    pair_values,
)
from interp_audit.audit.measure import clusters_of, first_reasons, groups_of
from interp_audit.audit.registry import CheckKind, register_check
from interp_audit.audit.result import CheckResult
from interp_audit.audit.sections import CheckSpec
from interp_audit.core.errors import SpecError
from interp_audit.stats.bootstrap import Interval, cluster_bootstrap_columns, interval_row

#: with more outcomes than this, only the directions that occur are listed
_ALL_DIRECTIONS_UP_TO = 3


class FlipRateCheck(CheckSpec):
    """The share of pairs whose decision changes under the swap must stay below ``budget``
    (overall and per group); flips in each direction and the mean effect are reported beside."""

    kind: Literal["flip_rate"]
    """``flip_rate``."""
    contrast: str
    """The contrast set (swap of the audited variable); clean and counterfactual are decided
    alike."""
    decision: DecisionSpec
    """How a prompt becomes a decision (see the ``decision`` section)."""
    budget: float = Field(ge=0, le=1)
    """The largest allowed share of pairs whose decision flips (its CI must lie below it)."""
    per_group: bool = True
    """Also test every group of the contrast set (Holm-corrected)."""


def _columns(values: torch.Tensor):
    """``statistic(weights)``: weighted means of every column of ``values`` [pair, k]."""
    v = values.double()
    return lambda w: (w @ v) / w.sum(1, keepdim=True)


def run(chk: FlipRateCheck, ctx: AuditContext, name: str) -> CheckResult:
    where = f"check {name!r}"
    cs = ctx.contrasts[chk.contrast]
    dec = decider(chk.decision, ctx.subject, ctx.metric, where)
    if dec.metric.needs_answers and cs.answers is None:
        raise SpecError(
            f"{where}: the decision thresholds {dec.metric.name}, which scores answer tokens, "
            f"but contrast {chk.contrast!r} has none: give it answers"
        )
    if dec.by_answers:  # the spec's metric beside the decisions
        metric = ctx.metric
        answers = None
        if cs.answers is None and metric.needs_answers:
            ids = dec.answer_ids
            pair = [ids[dec.positive], next(i for i in ids if i != ids[dec.positive])]
            answers = torch.tensor([pair] * len(cs))
        if metric.needs_reference:  # not a function of one side's forward: its own forwards
            vc, vf = pair_decisions(ctx.subject, cs, dec.metric)
            scored = cs if answers is None else replace(cs, answers=answers)
            mc, mf = pair_decisions(ctx.subject, scored, metric)
        else:  # both read from the same forwards
            (vc, mc), (vf, mf) = pair_values(ctx.subject, cs, [dec.metric, metric], [None, answers])
    else:  # the decision's own metric is the effect measured
        vc, vf = pair_decisions(ctx.subject, cs, dec.metric)
        metric, mc, mf = dec.metric, vc, vf
    dc, df = dec.decide(vc), dec.decide(vf)
    effect = (mc - mf).double()
    flip = (dc != df).double()
    k = len(dec.outcomes)
    directions = [(a, b) for a in range(k) for b in range(k) if a != b]
    if k > _ALL_DIRECTIONS_UP_TO:
        directions = [(a, b) for a, b in directions if bool(((dc == a) & (df == b)).any())]
    cols = [flip]
    cols += [((dc == a) & (df == b)).double() for a, b in directions]
    cols += [(dc == o).double() - (df == o).double() for o in range(k)]
    cols += [effect]
    kw = chk.resampling(ctx.seed).kw()
    clusters = clusters_of(cs)
    ivs = cluster_bootstrap_columns(_columns(torch.stack(cols, 1)), clusters, len(cs), **kw)
    flip_iv = bounded(ivs[0])
    dir_ivs = [bounded(iv) for iv in ivs[1 : 1 + len(directions)]]
    net_ivs = [bounded(iv, -1.0) for iv in ivs[1 + len(directions) : -1]]
    effect_iv = ivs[-1]

    tests = [
        LimitTest(
            {"measure": "flip rate", "group": "all", "n": len(cs), "flips": int(flip.sum())},
            flip_iv,
            chk.budget,
        )
    ]
    effects = [_effect_row("all", len(cs), metric.name, effect_iv)]
    if chk.per_group:
        for g, idx in groups_of(cs).items():
            g_flip, g_eff = cluster_bootstrap_columns(
                _columns(torch.stack([flip[idx], effect[idx]], 1)),
                clusters_of(cs, idx),
                len(idx),
                **kw,
            )
            fields = {"measure": "flip rate", "group": g, "n": len(idx)}
            tests.append(
                LimitTest({**fields, "flips": int(flip[idx].sum())}, bounded(g_flip), chk.budget)
            )
            effects.append(_effect_row(g, len(idx), metric.name, g_eff))
    rows, verdict, correction = limit_family(tests, chk)

    names = dec.outcomes
    moves = []
    for (a, b), iv in zip(directions, dir_ivs, strict=True):
        count = int(((dc == a) & (df == b)).sum())
        moves.append(
            {
                "measure": "flips",
                "from": names[a],
                "to": names[b],
                "count": count,
                "value": iv.point,
                **interval_row(iv),
                "verdict": None,
                "passed": None,
            }
        )
    nets = [
        {
            "measure": "net change of the outcome's rate",
            "outcome": names[o],
            "clean rate": float((dc == o).double().mean()),
            "counterfactual rate": float((df == o).double().mean()),
            "value": iv.point,
            **interval_row(iv),
            "verdict": None,
            "passed": None,
        }
        for o, iv in enumerate(net_ivs)
    ]
    overall = rows[0]
    msg = _message(chk, dec.describe(), overall, moves, effect_iv, metric.name, len(cs))
    bad = [r for r in rows if r["verdict"] == "fail"]
    unsure = [r for r in rows if r["verdict"] == "inconclusive"]
    if bad:
        reason = first_reasons(bad, _group_label)
    elif unsure:
        reason = first_reasons(unsure, _group_label, "more groups")
    else:
        reason = f"every flip rate's interval below {chk.budget}"
    return CheckResult(
        name,
        chk.kind,
        verdict,
        flip_iv.point,
        (flip_iv.lo, flip_iv.hi),
        chk.budget,
        msg,
        rows + moves + nets + effects,
        chk.confidence,
        reason=reason,
        clusters=flip_iv.n_clusters,
        correction=correction,
    )


def _group_label(row: dict[str, Any]) -> str:
    return f"group {row['group']!r}"


def _effect_row(group: str, n: int, metric: str, iv: Interval) -> dict[str, Any]:
    return {
        "measure": "mean effect",
        "group": group,
        "metric": metric,
        "n": n,
        "effect": iv.point,
        **interval_row(iv),
        "verdict": None,
        "passed": None,
    }


def _message(chk, rule: str, overall, moves, effect_iv, metric: str, n: int) -> str:
    lo, hi = overall["ci"]
    msg = (
        f"{overall['value']:.1%} of {n} pairs flip their decision ({rule}) "
        f"[{lo:.1%}, {hi:.1%}]; budget {chk.budget:.1%}"
    )
    seen = [m for m in moves if m["count"]]
    if seen:
        msg += "; " + ", ".join(f"{m['count']} {m['from']!r} -> {m['to']!r}" for m in seen)
    msg += (
        f"; mean effect on {metric}: {effect_iv.point:+.4f} "
        f"[{effect_iv.lo:+.4f}, {effect_iv.hi:+.4f}]"
    )
    if len(seen) > 1:
        msg += " (flips in opposite directions cancel in the mean)"
    return msg


def figure(c: CheckResult):
    """Flip rates (tested, with the budget line) and the flips in each direction, with CIs."""
    import plotly.graph_objects as go

    from interp_audit.audit.figures import ci_error_bars

    colors = {"pass": "#2e7d32", "fail": "#c62828", "inconclusive": "#ef6c00", None: "#607d8b"}
    rows = [d for d in c.details if d.get("measure") in ("flip rate", "flips")]
    labels = [
        html.escape(
            f"flip rate ({d['group']})"
            if d["measure"] == "flip rate"
            else f"{d['from']} -> {d['to']}"
        )
        for d in rows
    ]
    vals = [d["value"] for d in rows]
    fig = go.Figure(
        go.Bar(
            x=labels,
            y=vals,
            error_y=ci_error_bars(vals, [d["ci"] for d in rows]),
            marker_color=[colors.get(d.get("verdict"), "#607d8b") for d in rows],
        )
    )
    fig.add_hline(y=c.threshold, line_dash="dash", line_color="#c62828")
    eff = next((d for d in c.details if d.get("measure") == "mean effect"), None)
    beside = (
        f"; mean effect on {html.escape(str(eff['metric']))} {eff['effect']:+.3f} "
        f"[{eff['ci'][0]:+.3f}, {eff['ci'][1]:+.3f}]"
        if eff
        else ""
    )
    fig.update_layout(
        title=f"{html.escape(c.name)} (flip_rate): share of pairs, "
        f"{int(100 * c.confidence)}% CI; dashed = budget; grey = each direction" + beside,
        yaxis={"tickformat": ".0%", "rangemode": "tozero"},
        template="plotly_white",
        height=340,
    )
    return fig


register_check(
    CheckKind(
        "flip_rate",
        FlipRateCheck,
        run,
        "the share of pairs whose decision (top answer, or metric > threshold) flips under the "
        "swap must stay below a budget; flips per direction and the mean effect beside",
        figure=figure,
        threshold="flips ≤ {:g}",
    )
)
