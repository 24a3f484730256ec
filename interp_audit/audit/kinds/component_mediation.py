"""``component_mediation``: no single component (or located set) may carry most of an effect.

Share of component c = (M(patch c) - M(base)) / (M(source) - M(base)), denoising: how much of
the swap's effect restoring c alone brings back. The bootstrap resamples clusters and takes the
largest share each time, so the CI is for the max share (pass: CI below max_share; fail: CI
entirely above; else inconclusive). A locate step that already patched the
same sites on the same contrast with the same metric is reused, not run again.

With no effect to share out (a repair removed it) shares are not defined: the check says "no
effect left to mediate" and passes when the effect is float rounding, and is inconclusive when
it is not rounding but its interval includes 0.
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
from interp_audit.stats.bootstrap import cluster_bootstrap, interval_row, mean_ci, upper_verdict


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


#: An effect no larger than this times the metric's scale is float rounding, not an effect
ROUNDING = 1e-5


def _nothing_to_mediate(chk, name, base, source, cs, kw) -> CheckResult | None:
    """The check's result when the contrast has no effect to share out (a repair removed it):
    shares divide by the effect, so they are not defined. Pass when the effect is float
    rounding (no component can carry what is not there); inconclusive when it is not rounding
    but its CI includes 0 (a real effect that small could still sit in one component)."""
    effect = source - base
    scale = max(1.0, float(source.abs().max()), float(base.abs().max()))
    iv = mean_ci(effect, clusters_of(cs), **kw)
    if float(effect.abs().max()) <= ROUNDING * scale:
        verdict, reason = (
            "pass",
            (
                f"no effect left to mediate: every pair's effect is float rounding "
                f"(largest |effect| {float(effect.abs().max()):.1e})"
            ),
        )
    elif iv.lo <= 0.0 <= iv.hi and iv.n_clusters >= 2:
        verdict, reason = (
            "inconclusive",
            (
                f"no effect left to mediate detectably: the effect {iv.point:+.4g} "
                f"[{iv.lo:+.4g}, {iv.hi:+.4g}] includes 0, so its shares are not identified"
                + (
                    f"; {iv.n_clusters} clusters < min_clusters {chk.min_clusters}: too few "
                    "independent replications to decide"
                    if iv.n_clusters < chk.min_clusters
                    else ""
                )
            ),
        )
    else:
        return None
    details = [
        {"note": reason, "contrast": chk.contrast, "pairs": len(effect)},
        {"measure": f"effect on {chk.contrast!r} (clean - counterfactual)", "value": iv.point,
         **interval_row(iv)},
    ]  # fmt: skip
    return CheckResult(
        name,
        chk.kind,
        verdict,
        0.0,
        (0.0, 0.0),
        chk.max_share,
        f"{reason}; limit {chk.max_share} on the largest share",
        details,
        chk.confidence,
        reason=reason,
        clusters=iv.n_clusters,
        correction="one test (the maximum share): no multiple-testing correction",
    )


def run(chk: ComponentMediationCheck, ctx: AuditContext, name: str) -> CheckResult:
    patched, base, source, labels = _patched(chk, ctx)
    cs = ctx.contrasts[chk.contrast]
    empty = _nothing_to_mediate(chk, name, base, source, cs, chk.resampling(ctx.seed).kw())
    if empty is not None:
        return empty
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
