"""``component_mediation``: no single component (or located set) may carry most of an effect.

Share of component c = (M(patch c) - M(base)) / (M(source) - M(base)), denoising: how much of
the swap's effect restoring c alone brings back. The bootstrap resamples clusters and takes the
largest share each time, so the CI is for the max share (pass: CI below max_share; fail: CI
entirely above; else inconclusive). A locate step that already patched the
same sites on the same contrast with the same metric is reused, not run again.
"""

from __future__ import annotations

from typing import Literal

import torch
from jaxtyping import Float
from pydantic import Field, model_validator
from torch import Tensor

from interp_audit.audit.context import AuditContext
from interp_audit.audit.measure import clusters_of
from interp_audit.audit.registry import CheckKind, register_check
from interp_audit.audit.result import CheckResult
from interp_audit.audit.sections import CheckSpec
from interp_audit.engine.batched import RunContext, run_variants
from interp_audit.methods.locate.methods import exact_component_methods
from interp_audit.methods.locate.sites import parse_variant_sets, plan_sites
from interp_audit.stats.bootstrap import cluster_bootstrap, interval_row, upper_verdict


class ComponentMediationCheck(CheckSpec):
    """The largest share of the effect carried by one component (or ``together``: one set)."""

    kind: Literal["component_mediation"]
    """``component_mediation``."""
    contrast: str
    """The contrast set whose effect is decomposed."""
    sites: str | list[str] = "heads"
    """Components to restore one at a time (``heads``, ... or a list of labels)."""
    max_share: float = Field(gt=0)
    """The largest share of the effect one component (or the set) may carry."""
    together: bool = False
    """Restore the listed components together, as one set."""

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
            eff.method in exact_component_methods()
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
        need_kv=True,
    )
    patched = run_variants(run_ctx, variants, progress=False).double().cpu()
    base = run_ctx.base_values.double().cpu()
    return patched, base, run_ctx.source_values.double().cpu(), labels


def shares(
    weights: Float[Tensor, "draw pair"],
    patched: Float[Tensor, "component pair"],
    base: Float[Tensor, " pair"],
    source: Float[Tensor, " pair"],
) -> Float[Tensor, "draw component"]:
    """Each component's share of the effect under pair weights (one row per bootstrap draw)."""
    total = weights.sum(1)
    base_m = weights @ base / total
    gap = weights @ source / total - base_m
    patched_m = weights @ patched.T / total[:, None]
    safe = torch.where(gap.abs() <= 1e-12, torch.ones_like(gap), gap)
    out = (patched_m - base_m[:, None]) / safe[:, None]
    return torch.where(gap.abs()[:, None] <= 1e-12, torch.zeros_like(out), out)


def run(chk: ComponentMediationCheck, ctx: AuditContext, name: str) -> CheckResult:
    patched, base, source, labels = _patched(chk, ctx)
    cs = ctx.contrasts[chk.contrast]
    all_shares = shares(torch.ones(1, len(base), dtype=torch.float64), patched, base, source)[0]
    top = int(all_shares.argmax())
    iv = cluster_bootstrap(
        lambda w: shares(w, patched, base, source).max(1).values,
        clusters_of(cs),
        len(base),
        **chk.resampling(ctx.seed).kw(),
    )
    verdict, reason = upper_verdict(iv, chk.max_share, min_clusters=chk.min_clusters)
    order = torch.argsort(all_shares, descending=True)[:10].tolist()
    details = [{"component": labels[i], "share": float(all_shares[i])} for i in order]
    details[0].update({**interval_row(iv), "max_share": chk.max_share, "verdict": verdict})
    msg = (
        f"largest share of the {chk.contrast!r} effect mediated by one "
        f"{'set' if chk.together else 'component'}: {labels[top]} {iv.point:.3f} [{iv.lo:.3f}, "
        f"{iv.hi:.3f}] (±{iv.half_width:.3f} over {iv.n_clusters} clusters); limit "
        f"{chk.max_share}"
    )
    return CheckResult(
        name,
        chk.kind,
        verdict,
        iv.point,
        (iv.lo, iv.hi),
        chk.max_share,
        msg,
        details,
        chk.confidence,
        reason=reason,
        clusters=iv.n_clusters,
        correction="one test (the maximum share): no multiple-testing correction",
    )


register_check(
    CheckKind(
        "component_mediation",
        ComponentMediationCheck,
        run,
        "no single component (or located set) carries more than max_share of an effect",
        remeasurable=False,
        threshold="share ≤ {:g}",
    )
)
