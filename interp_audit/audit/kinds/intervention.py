"""``intervention``: an ablation must remove an effect *and* cost at most a utility budget.

Both halves are measured with and without the ablation on the same inputs: the effect after
must lie inside ±tolerance, and the upper end of the utility cost's CI within budget.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor

from ...errors import SpecError
from ..causal_measure import causal_model, path_rows, sources_of
from ..context import AuditContext
from ..measure import (
    ablated_components,
    ablation,
    groups_of,
    pair_effects,
    similarity_pairs,
    spearman,
    utility_values,
    within,
)
from ..registry import CheckKind, register_check
from ..result import CheckResult
from ..sections import AblationSpec, CheckSpec, UtilitySpec, _Section
from ..stats import bootstrap, mean_ci


class PreserveSpec(_Section):
    """Every admissible path of the causal graph (from ``source``, default: every audited
    variable) must keep its effect: after - before within ±tolerance (paired CI)."""

    tolerance: float = Field(ge=0)
    source: str | list[str] | None = None
    n: int = Field(200, ge=1)
    seed: int = 0


class InterventionCheck(CheckSpec):
    """Ablate (``ablate:``); the effect on ``contrast`` must vanish within the utility budget,
    and (``preserve``) every admissible path's effect must survive."""

    kind: Literal["intervention"]
    contrast: str
    ablate: AblationSpec
    tolerance: float = Field(ge=0)
    utility: UtilitySpec
    preserve: PreserveSpec | None = None

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
    kept = _admissible_rows(chk, ctx, name, kw) if chk.preserve is not None else []
    comps = ablated_components(chk.ablate, ctx.effects)
    with ablation(chk.ablate, comps, ctx):
        c1, f1 = pair_effects(subject, cs, ctx.metric)
        u1 = utility()
        for r in kept:
            c, f = pair_effects(subject, r["_contrast"], ctx.metric)
            r["_after"] = c - f
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
    group_rows = []
    if chk.utility.per_group and gold is None:
        groups = groups_of(ctx.contrasts[chk.utility.contrast])
        if not groups:
            raise SpecError(
                f"check {name!r}: utility.per_group needs a utility contrast with groups "
                f"({chk.utility.contrast!r} has none: give it group_by)"
            )
        for g, idx in sorted(groups.items()):
            gp, glo, ghi = mean_ci(drop[idx], **kw)
            group_rows.append(
                {
                    "measure": f"utility ({chk.utility.metric}) cost, group {g}",
                    "group": g,
                    "n": len(idx),
                    "before": float(u0[idx].mean()),
                    "after": float(u1[idx].mean()),
                    "value": gp,
                    "ci": [glo, ghi],
                    "passed": ghi <= chk.utility.budget,
                    "budget": chk.utility.budget,
                }
            )
        utility_ok = utility_ok and all(r["passed"] for r in group_rows)
    preserve_rows = []
    for r in kept:
        diff = r.pop("_after") - r["_pairs"]
        kp, klo, khi = mean_ci(diff, **kw)
        ok = within(klo, khi, chk.preserve.tolerance)
        after = float(r["_pairs"].mean() + diff.mean())
        preserve_rows.append(
            {
                "measure": f"admissible path kept: {r['path']}",
                "path": r["path"],
                "before": r["effect"],
                "after": after,
                "value": kp,
                "ci": [klo, khi],
                "passed": ok,
                "tolerance": chk.preserve.tolerance,
            }
        )
    preserve_ok = all(r["passed"] for r in preserve_rows)
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
        *group_rows,
        *preserve_rows,
        {"measure": "ablated components", "components": comps},
    ]
    msg = (
        f"{chk.ablate.kind}-ablating {len(comps)} components ({', '.join(comps)}): effect "
        f"{before[0]:+.4f} -> {point:+.4f} [{lo:+.4f}, {hi:+.4f}] (tolerance ±{chk.tolerance}"
        f"{'' if effect_ok else ', VIOLATED'}); {um} cost {dp:+.4f} [{dlo:+.4f}, {dhi:+.4f}] "
        f"(budget {chk.utility.budget}{'' if utility_ok else ', EXCEEDED'})"
    )
    if group_rows:
        worst = max(group_rows, key=lambda r: r["ci"][1])
        msg += (
            f"; worst group {worst['group']!r} cost {worst['value']:+.4f} "
            f"[{worst['ci'][0]:+.4f}, {worst['ci'][1]:+.4f}]"
        )
    if preserve_rows:
        moved = max(preserve_rows, key=lambda r: max(abs(r["ci"][0]), abs(r["ci"][1])))
        msg += (
            f"; admissible paths kept within ±{chk.preserve.tolerance}: "
            + ", ".join(
                f"{r['path']} {r['before']:+.3f} -> {r['after']:+.3f}" for r in preserve_rows
            )
            + ("" if preserve_ok else f" (NOT KEPT: {moved['path']})")
        )
    return CheckResult(
        name,
        chk.kind,
        effect_ok and utility_ok and preserve_ok,
        point,
        (lo, hi),
        chk.tolerance,
        msg,
        details,
        chk.confidence,
    )


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


register_check(
    CheckKind(
        "intervention",
        InterventionCheck,
        run,
        "an ablation removes an effect (within ±tolerance) at a utility cost within budget",
    )
)
