"""``intervention``: an ablation must remove an effect *and* cost at most a utility budget.

Both halves are measured with and without the ablation on the same inputs: the effect after
must lie inside ±tolerance, and the upper end of the utility cost's CI within budget. With
``preserve``, every admissible path of the causal graph must keep its effect, and with
``utility.per_group`` the worst group's cost must fit the budget. All tests must pass
(intersection-union: no multiplicity correction needed).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor

from interp_audit.audit.causal_measure import causal_model, path_rows, sources_of
from interp_audit.audit.context import AuditContext
from interp_audit.audit.measure import (
    ablated_components,
    ablation,
    clusters_of,
    cost_rows,
    groups_of,
    pair_effects,
    similarity_pairs,
    spearman,
    utility_drop,
    utility_values,
    weighted_spearman,
)
from interp_audit.audit.registry import CheckKind, register_check
from interp_audit.audit.result import CheckResult
from interp_audit.audit.sections import AblationSpec, CheckSpec, UtilitySpec, _Section
from interp_audit.core.errors import SpecError
from interp_audit.stats.bootstrap import (
    band_verdict,
    cluster_bootstrap,
    combine,
    interval_row,
    mean_ci,
    upper_verdict,
)


class PreserveSpec(_Section):
    """Every admissible path of the causal graph (from ``source``, default: every audited
    variable) must keep its effect: after - before within ±tolerance (paired CI)."""

    tolerance: float = Field(ge=0)
    source: str | list[str] | None = None
    n: int = Field(200, ge=1)
    seed: int = 0


class InterventionCheck(CheckSpec):
    """Ablate (``ablate:``); the effect on ``contrast`` must vanish within the utility budget."""

    kind: Literal["intervention"]
    """``intervention``."""
    contrast: str
    """The contrast set whose effect the ablation must remove."""
    ablate: AblationSpec
    """What to ablate, and how."""
    tolerance: float = Field(ge=0)
    """The effect after the ablation must lie within ±tolerance."""
    utility: UtilitySpec
    """What the ablation may cost."""
    preserve: PreserveSpec | None = None
    """Every admissible path of the causal graph must keep its effect within a tolerance."""

    @model_validator(mode="after")
    def _utility_kind(self):
        if self.utility.metric == "perplexity":
            raise ValueError(
                "perplexity is the utility of memorization checks; an intervention check "
                "takes accuracy, loss, logit_diff or similarity_correlation"
            )
        return self


def _utility_fn(chk: InterventionCheck, ctx: AuditContext):
    subject = ctx.subject
    if chk.utility.metric == "similarity_correlation":
        s1, s2, gold = similarity_pairs(ctx.file(chk.utility.file))

        def similarity() -> Tensor:
            a, b = subject.embed(s1), subject.embed(s2)
            return torch.nn.functional.cosine_similarity(a, b, dim=-1).double().cpu()

        return similarity, gold
    util_cs = ctx.contrasts[chk.utility.contrast]
    return (lambda: utility_values(subject, util_cs, chk.utility.metric)), None


def run(chk: InterventionCheck, ctx: AuditContext, name: str) -> CheckResult:
    subject, cs = ctx.subject, ctx.contrasts[chk.contrast]
    kw = chk.resampling(ctx.seed).kw()
    utility, gold = _utility_fn(chk, ctx)
    c0, f0 = pair_effects(subject, cs, ctx.metric)
    u0 = utility()
    kept = _admissible_rows(chk, ctx, name, kw) if chk.preserve is not None else []
    comps = ablated_components(chk.ablate, ctx.effects)
    with ablation(chk.ablate, comps, ctx):
        c1, f1 = pair_effects(subject, cs, ctx.metric)
        u1 = utility()
        for r in kept:
            c, f = pair_effects(subject, r["_contrast"], ctx.metric)
            r["_after"] = c - f
    clusters = clusters_of(cs)
    before = mean_ci(c0 - f0, clusters, **kw)
    after = mean_ci(c1 - f1, clusters, **kw)
    if gold is not None:  # similarity judgements: each sentence pair is its own unit
        cost = cluster_bootstrap(
            lambda w: weighted_spearman(u0, gold, w) - weighted_spearman(u1, gold, w),
            None,
            len(gold),
            **kw,
        )
        u0, u1 = torch.tensor([spearman(u0, gold)]), torch.tensor([spearman(u1, gold)])
    else:
        drop = utility_drop(u0, u1, chk.utility.metric)
        cost = mean_ci(drop, clusters_of(ctx.contrasts[chk.utility.contrast]), **kw)
    effect_v, effect_why = band_verdict(after, chk.tolerance, min_clusters=chk.min_clusters)
    cost_v, cost_why = upper_verdict(cost, chk.utility.budget, min_clusters=chk.min_clusters)
    group_rows = _group_rows(chk, ctx, name, drop if gold is None else None, u0, u1, kw)
    preserve_rows = _preserve_rows(chk, kept, kw)
    extra = [r["verdict"] for r in group_rows + preserve_rows]
    verdict = combine([effect_v, cost_v, *extra])
    um = chk.utility.metric
    details = [
        {"measure": "effect before", "value": before.point, **interval_row(before)},
        {
            "measure": "effect after",
            "value": after.point,
            **interval_row(after),
            "tolerance": chk.tolerance,
            "verdict": effect_v,
            "reason": effect_why,
            "passed": effect_v == "pass",
        },
        {"measure": f"utility ({um}) before", "value": float(u0.mean())},
        {"measure": f"utility ({um}) after", "value": float(u1.mean())},
        {
            "measure": f"utility ({um}) cost",
            "value": cost.point,
            **interval_row(cost),
            "budget": chk.utility.budget,
            "verdict": cost_v,
            "reason": cost_why,
            "passed": cost_v == "pass",
        },
        *group_rows,
        *preserve_rows,
        {"measure": "ablated components", "components": comps},
    ]
    flag = {"pass": "", "fail": ", VIOLATED", "inconclusive": ", INCONCLUSIVE"}
    over = {"pass": "", "fail": ", EXCEEDED", "inconclusive": ", INCONCLUSIVE"}
    msg = (
        f"{chk.ablate.kind}-ablating {len(comps)} components ({', '.join(comps)}): effect "
        f"{before.point:+.4f} -> {after.point:+.4f} [{after.lo:+.4f}, {after.hi:+.4f}] "
        f"(±{after.half_width:.4f}; tolerance ±{chk.tolerance}{flag[effect_v]}); {um} cost "
        f"{cost.point:+.4f} [{cost.lo:+.4f}, {cost.hi:+.4f}] (±{cost.half_width:.4f}; budget "
        f"{chk.utility.budget}{over[cost_v]})"
    )
    if group_rows:
        worst = max(group_rows, key=lambda r: r["ci"][1])
        msg += (
            f"; worst group {worst['group']!r} cost {worst['value']:+.4f} "
            f"[{worst['ci'][0]:+.4f}, {worst['ci'][1]:+.4f}] ({worst['verdict']})"
        )
    if preserve_rows:
        msg += f"; admissible paths kept within ±{chk.preserve.tolerance}: " + ", ".join(
            f"{r['path']} {r['before']:+.3f} -> {r['after']:+.3f} ({r['verdict']})"
            for r in preserve_rows
        )
    bad = [r for r in group_rows + preserve_rows if r["verdict"] != "pass"]
    why = f"effect after: {effect_why}; utility cost: {cost_why}"
    why += "".join(f"; {r['measure']}: {r['reason']}" for r in bad)
    return CheckResult(
        name,
        chk.kind,
        verdict,
        after.point,
        (after.lo, after.hi),
        chk.tolerance,
        msg,
        details,
        chk.confidence,
        reason=why,
        clusters=after.n_clusters,
        correction="every test must pass (intersection-union): no correction needed",
    )


def _group_rows(chk, ctx: AuditContext, name: str, drop, u0, u1, kw) -> list[dict]:
    """The utility cost in every group of the utility contrast (``utility.per_group``)."""
    if not chk.utility.per_group or drop is None:
        return []
    util_cs = ctx.contrasts[chk.utility.contrast]
    groups = groups_of(util_cs)
    if not groups:
        raise SpecError(
            f"check {name!r}: utility.per_group needs a utility contrast with groups "
            f"({chk.utility.contrast!r} has none: give it group_by)"
        )
    rows = cost_rows(chk, util_cs, sorted(groups.items()), drop, u0, u1, kw, estimate="value")
    return [
        {
            "measure": f"utility ({chk.utility.metric}) cost, group {r['group']}",
            **r,
            "passed": r["verdict"] == "pass",
        }
        for r in rows
    ]


def _preserve_rows(chk, kept: list[dict], kw) -> list[dict]:
    """Admissible paths: the change of each path's effect under the ablation (paired)."""
    rows = []
    for r in kept:
        diff = r.pop("_after") - r["_pairs"]
        iv = mean_ci(diff, r.get("_clusters"), **kw)
        v, why = band_verdict(iv, chk.preserve.tolerance, min_clusters=chk.min_clusters)
        rows.append(
            {
                "measure": f"admissible path kept: {r['path']}",
                "path": r["path"],
                "before": r["effect"],
                "after": float(r["_pairs"].mean() + diff.mean()),
                "value": iv.point,
                **interval_row(iv),
                "tolerance": chk.preserve.tolerance,
                "verdict": v,
                "reason": why,
                "passed": v == "pass",
            }
        )
    return rows


def _admissible_rows(chk: InterventionCheck, ctx: AuditContext, name: str, kw) -> list[dict]:
    where = f"check {name!r}.preserve"
    cm = causal_model(ctx, where)
    rows = []
    for src in sources_of(chk.preserve.source, cm, where):
        paths = cm.graph.admissible_paths_from(src)
        rows += [
            r
            for r in path_rows(ctx, src, paths, n=chk.preserve.n, seed=chk.preserve.seed, kw=kw)
            if r["_contrast"] is not None
        ]
    return rows


def figure(c: CheckResult):
    """Two panels (different units): the effect before and after the ablation against the
    tolerance band, and the utility cost (overall and per group) against its budget."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from interp_audit.audit.evidence import MeasureRow
    from interp_audit.audit.figures import COLORS, error_bars, row_color, short_layout

    rows = [r for r in c.evidence if isinstance(r, MeasureRow)]
    effects = [r for r in rows if r.measure in ("effect before", "effect after")]
    costs = [r for r in rows if r.budget is not None and r.value is not None]
    comps = next((r.components for r in rows if r.components), [])
    pct = int(round(100 * c.confidence))
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=(
            f"effect before / after ablating {len(comps)} components ({pct}% CI, tolerance band)",
            "utility cost, overall and per group (budget line)",
        ),
    )

    def bars(part: list[MeasureRow], col: int, label) -> None:
        fig.add_trace(
            go.Bar(
                x=[label(r) for r in part],
                y=[r.value for r in part],
                error_y=error_bars(part),
                marker_color=[row_color(r) for r in part],
            ),
            row=1,
            col=col,
        )

    bars(effects, 1, lambda r: r.measure)
    t = c.threshold
    fig.add_hrect(y0=-t, y1=t, fillcolor=COLORS["pass"], opacity=0.12, line_width=0, row=1, col=1)
    if costs:
        bars(costs, 2, lambda r: r.group or "all")
        fig.add_hline(y=costs[0].budget, line_dash="dash", line_color=COLORS["fail"], row=1, col=2)
    fig = short_layout(fig, "", height=320)
    fig.update_annotations(font_size=13)
    return fig


register_check(
    CheckKind(
        "intervention",
        InterventionCheck,
        run,
        "an ablation removes an effect (within ±tolerance) at a utility cost within budget",
        figure=figure,
        remeasurable=False,
    )
)
