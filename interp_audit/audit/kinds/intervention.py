"""``intervention``: an ablation must remove an effect *and* cost at most a utility budget.

Both halves are measured with and without the ablation on the same inputs: the effect after
must lie inside ±tolerance, and the utility cost's CI below the budget (each half pass / fail /
inconclusive on its own cluster-bootstrap interval; the check fails if either fails).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor

from ..context import AuditContext
from ..measure import (
    ablated_components,
    ablation,
    clusters_of,
    pair_effects,
    similarity_pairs,
    spearman,
    utility_values,
    weighted_spearman,
)
from ..registry import CheckKind, register_check
from ..result import CheckResult
from ..sections import AblationSpec, CheckSpec, UtilitySpec
from ..stats import (
    band_verdict,
    cluster_bootstrap,
    combine,
    interval_row,
    mean_ci,
    upper_verdict,
)


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
    kw = dict(n_boot=chk.n_boot, confidence=chk.confidence, seed=ctx.seed)
    utility, gold = _utility_fn(chk, ctx)
    c0, f0 = pair_effects(subject, cs, ctx.metric)
    u0 = utility()
    comps = ablated_components(chk.ablate, ctx.effects)
    with ablation(chk.ablate, comps, ctx):
        c1, f1 = pair_effects(subject, cs, ctx.metric)
        u1 = utility()
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
        drop = (u1 - u0) if chk.utility.metric == "loss" else (u0 - u1)
        cost = mean_ci(drop, clusters_of(ctx.contrasts[chk.utility.contrast]), **kw)
    effect_v, effect_why = band_verdict(after, chk.tolerance, min_clusters=chk.min_clusters)
    cost_v, cost_why = upper_verdict(cost, chk.utility.budget, min_clusters=chk.min_clusters)
    verdict = combine([effect_v, cost_v])
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
        reason=f"effect after: {effect_why}; utility cost: {cost_why}",
        clusters=after.n_clusters,
        correction="two tests that must both pass (intersection-union): no correction needed",
    )


register_check(
    CheckKind(
        "intervention",
        InterventionCheck,
        run,
        "an ablation removes an effect (within ±tolerance) at a utility cost within budget",
    )
)
