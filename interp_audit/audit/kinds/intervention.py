"""``intervention``: an ablation must remove an effect *and* cost at most a utility budget.

Both halves are measured with and without the ablation on the same inputs: the effect after
must lie inside ±tolerance, and the upper end of the utility cost's CI within budget.
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
    pair_effects,
    similarity_pairs,
    spearman,
    utility_values,
    within,
)
from ..registry import CheckKind, register_check
from ..result import CheckResult
from ..sections import AblationSpec, CheckSpec, UtilitySpec
from ..stats import bootstrap, mean_ci


class InterventionCheck(CheckSpec):
    """Ablate (``ablate:``); the effect on ``contrast`` must vanish within the utility budget."""

    kind: Literal["intervention"]
    contrast: str
    ablate: AblationSpec
    tolerance: float = Field(ge=0)
    utility: UtilitySpec

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
    before = mean_ci(c0 - f0, **kw)
    point, lo, hi = mean_ci(c1 - f1, **kw)
    if gold is not None:
        dp, dlo, dhi = bootstrap(
            lambda idx: spearman(u0[idx], gold[idx]) - spearman(u1[idx], gold[idx]),
            len(gold),
            **kw,
        )
        u0, u1 = torch.tensor([spearman(u0, gold)]), torch.tensor([spearman(u1, gold)])
    else:
        drop = (u1 - u0) if chk.utility.metric == "loss" else (u0 - u1)
        dp, dlo, dhi = mean_ci(drop, **kw)
    effect_ok = within(lo, hi, chk.tolerance)
    utility_ok = dhi <= chk.utility.budget
    um = chk.utility.metric
    details = [
        {"measure": "effect before", "value": before[0], "ci": [before[1], before[2]]},
        {
            "measure": "effect after",
            "value": point,
            "ci": [lo, hi],
            "passed": effect_ok,
            "tolerance": chk.tolerance,
        },
        {"measure": f"utility ({um}) before", "value": float(u0.mean())},
        {"measure": f"utility ({um}) after", "value": float(u1.mean())},
        {
            "measure": f"utility ({um}) cost",
            "value": dp,
            "ci": [dlo, dhi],
            "passed": utility_ok,
            "budget": chk.utility.budget,
        },
        {"measure": "ablated components", "components": comps},
    ]
    msg = (
        f"{chk.ablate.kind}-ablating {len(comps)} components ({', '.join(comps)}): effect "
        f"{before[0]:+.4f} -> {point:+.4f} [{lo:+.4f}, {hi:+.4f}] (tolerance ±{chk.tolerance}"
        f"{'' if effect_ok else ', VIOLATED'}); {um} cost {dp:+.4f} [{dlo:+.4f}, {dhi:+.4f}] "
        f"(budget {chk.utility.budget}{'' if utility_ok else ', EXCEEDED'})"
    )
    return CheckResult(
        name,
        chk.kind,
        effect_ok and utility_ok,
        point,
        (lo, hi),
        chk.tolerance,
        msg,
        details,
        chk.confidence,
    )


register_check(
    CheckKind(
        "intervention",
        InterventionCheck,
        run,
        "an ablation removes an effect (within ±tolerance) at a utility cost within budget",
    )
)
