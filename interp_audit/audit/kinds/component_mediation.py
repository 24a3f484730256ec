"""``component_mediation``: no single component (or located set) may carry most of an effect.

Share of component c = (M(patch c) - M(base)) / (M(source) - M(base)), denoising: how much of
the swap's effect restoring c alone brings back. The bootstrap resamples pairs and takes the
largest share each time, so the CI is for the max share. A locate step that already patched the
same sites on the same contrast with the same metric is reused, not run again.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor

from ...engine import RunContext, run_variants
from ...locate.sites import parse_variant_sets, plan_sites
from ..context import AuditContext
from ..registry import CheckKind, register_check
from ..result import CheckResult
from ..sections import CheckSpec
from ..stats import bootstrap


class ComponentMediationCheck(CheckSpec):
    """The largest share of the effect carried by one component (or ``together``: one set)."""

    kind: Literal["component_mediation"]
    contrast: str
    sites: str | list[str] = "heads"
    max_share: float = Field(gt=0)
    together: bool = False

    @model_validator(mode="after")
    def _together_needs_a_list(self):
        if self.together and isinstance(self.sites, str):
            raise ValueError(
                f"together: true needs sites as a list of components, got {self.sites!r}"
            )
        return self


def _reusable(chk: ComponentMediationCheck, ctx: AuditContext):
    """A located patching sweep of exactly these sites on this contrast, if the spec ran one."""
    if chk.together:
        return None
    for eff in ctx.effects.values():
        meta = eff.meta
        if (
            eff.method == "patch"
            and meta.get("contrast") == chk.contrast
            and meta.get("sites") == chk.sites
            and not meta.get("per_position")
            and meta.get("direction", "denoise") == "denoise"
            and eff.metric == ctx.metric.name
            and eff.per_example is not None
            and eff.base_values is not None
        ):
            return eff
    return None


def _patched(chk: ComponentMediationCheck, ctx: AuditContext):
    """[component, pair] patched metric, per-pair base and source metric, and labels."""
    eff = _reusable(chk, ctx)
    if eff is not None:
        patched = eff.per_example.reshape(len(eff.components), -1).double()
        return patched, eff.base_values.double(), eff.source_values.double(), eff.components
    subject, cs = ctx.subject, ctx.contrasts[chk.contrast]
    if chk.together:
        variants, labels = parse_variant_sets(subject, [chk.sites]), ["+".join(chk.sites)]
    else:
        plan = plan_sites(subject, cs, chk.sites, per_position=False)
        variants, labels = plan.variants, plan.components
    hooks = sorted({p.hook for v in variants for p in v})
    run_ctx = RunContext.build(
        subject,
        cs,
        ctx.metric,
        direction="denoise",
        source_hooks=hooks,
        need_kv=subject.kind == "causal",
    )
    patched = run_variants(run_ctx, variants, progress=False).double().cpu()
    base = run_ctx.base_values.double().cpu()
    return patched, base, run_ctx.source_values.double().cpu(), labels


def run(chk: ComponentMediationCheck, ctx: AuditContext, name: str) -> CheckResult:
    patched, base, source, labels = _patched(chk, ctx)

    def shares(idx: Tensor) -> Tensor:
        gap = source[idx].mean() - base[idx].mean()
        if abs(float(gap)) <= 1e-12:
            return torch.zeros(len(labels), dtype=torch.float64)
        return (patched[:, idx].mean(1) - base[idx].mean()) / gap

    all_shares = shares(torch.arange(len(base)))
    top = int(all_shares.argmax())
    point, lo, hi = bootstrap(
        lambda idx: float(shares(idx).max()),
        len(base),
        n_boot=chk.n_boot,
        confidence=chk.confidence,
        seed=ctx.seed,
    )
    passed = hi <= chk.max_share
    order = torch.argsort(all_shares, descending=True)[:10].tolist()
    details = [{"component": labels[i], "share": float(all_shares[i])} for i in order]
    msg = (
        f"largest share of the {chk.contrast!r} effect mediated by one "
        f"{'set' if chk.together else 'component'}: {labels[top]} {point:.3f} [{lo:.3f}, "
        f"{hi:.3f}]; limit {chk.max_share}"
    )
    return CheckResult(
        name, chk.kind, passed, point, (lo, hi), chk.max_share, msg, details, chk.confidence
    )


register_check(
    CheckKind(
        "component_mediation",
        ComponentMediationCheck,
        run,
        "no single component (or located set) carries more than max_share of an effect",
    )
)
