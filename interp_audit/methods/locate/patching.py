"""Exact activation patching, batched: ``ia.patch``.

``normalize=False`` returns the mean patched metric, the number ``transformer_lens.patching``
returns for the same metric; ``normalize=True`` rescales it so 0 = unpatched and 1 = the
source run's behaviour fully restored.

Pairs of unequal token counts are patched at aligned positions only (common prefix and
suffix; :mod:`interp_audit.engine.alignment`); ``meta["not_patched"]`` says what was left
alone, and per-position results are indexed by slots, NaN for a pair that lacks a slot (the
mean is over the pairs that have it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from interp_audit.core.errors import AuditError, ContrastError
from interp_audit.engine.batched import RunContext, default_max_rows, run_variants
from interp_audit.engine.contrasts import ContrastSet
from interp_audit.engine.effects import Effects
from interp_audit.engine.executors import using
from interp_audit.methods.locate.sites import plan_sites, unpatched_note
from interp_audit.model.metrics import Metric, get_metric
from interp_audit.model.subject import Subject

__all__ = ["flat_effects_as_raw", "metric_of_final", "normalise", "patch", "sweep_effects"]


@torch.no_grad()
def metric_of_final(ctx: RunContext, final: Tensor, n: int) -> Float[Tensor, "variant batch"]:
    """The metric of ``n`` variants (stacked variant-major on the batch axis) whose final
    residual stream is ``final``: what a patch at the final hook (an SAE there, or path
    patching to the logits) changes needs no forward past it."""
    from interp_audit.model.readout import readout

    mctx = ctx.metric_ctx.repeat(n)
    read = readout(
        subject=ctx.subject,
        metric=ctx.metric,
        final=final,
        logits=None,
        scored=ctx.scored.repeat(n),
        answers=mctx.answers,
        mask=ctx.mask.repeat(n, 1),
    )
    return ctx.metric(read, mctx).view(n, -1)


def _check_direction(direction: str) -> None:
    if direction not in ("denoise", "noise"):
        raise AuditError(
            "direction must be 'denoise' (run counterfactual, patch in clean) or 'noise' "
            f"(the reverse); got {direction!r}"
        )


#: Set (by the re-audit of a repaired model) to report the raw change of a contrast the model no
#: longer responds to, instead of refusing to normalise it.
_FLAT_AS_RAW: ContextVar[bool] = ContextVar("flat_as_raw", default=False)


@contextlib.contextmanager
def flat_effects_as_raw() -> Iterator[None]:
    """Inside: normalised sweeps of a contrast with no effect give the raw change (noted in the
    Effects' meta), not an error. A repair that removes a path leaves its locate steps so."""
    token = _FLAT_AS_RAW.set(True)
    try:
        yield
    finally:
        _FLAT_AS_RAW.reset(token)


def normalise(patched, base: float, source: float, what: str = "effects"):
    """(patched - base) / (source - base): 0 = unpatched, 1 = the source behaviour restored."""
    gap = source - base
    if abs(gap) < 1e-8:
        raise AuditError(
            f"cannot normalise {what}: the metric is {base:.6g} on both runs, so nothing is there "
            "to restore; pass normalize=False or choose prompts whose behaviour differs"
        )
    return (patched - base) / gap


def sweep_effects(
    plan,
    per_example: list[torch.Tensor],
    base_vals: list[torch.Tensor],
    src_vals: list[torch.Tensor],
    *,
    metric: Metric,
    method: str,
    normalize: bool,
    direction: str,
    meta: dict,
    components: list[str] | None = None,
    magnitude: bool = False,
) -> Effects:
    """Assemble a sweep's per-batch results into Effects (shared by every locate method).

    ``per_example`` chunks are ``[variant, pairs]``; values are their mean over pairs, normalised
    to (source - base) when asked (as a plain ratio for magnitudes, which carry no sign).
    """
    values_pe = torch.cat(per_example, dim=1)
    base = float(torch.cat(base_vals).mean())
    source = float(torch.cat(src_vals).mean())
    # NaN: a slot that pair lacks (unequal token counts); the mean is over the pairs that have it
    mean = values_pe.nanmean(1) if bool(values_pe.isnan().any()) else values_pe.mean(1)
    flat = abs(source - base) <= 1e-5 * max(1.0, abs(base), abs(source))  # float32 rounding
    if normalize and flat and _FLAT_AS_RAW.get():
        # nothing to restore (a repaired model whose contrast no longer changes the metric):
        # report the patched metric itself; normalising would divide rounding by rounding
        normalize = False
        meta = {
            **meta,
            "not normalised": f"the metric is {base:.6g} on both runs, to float32 rounding (no "
            "effect to locate): values are the mean patched metric, not normalised",
        }
    if not normalize:
        values = mean
    elif magnitude:
        values = mean / abs(source - base)
    else:
        values = normalise(mean, base, source, f"{method} effects")
    shape = [len(plan.axes[d]) for d in plan.dims]
    clean, cf = (source, base) if direction == "denoise" else (base, source)
    return Effects(
        values=values.reshape(shape),
        dims=plan.dims,
        axes=plan.axes,
        components=components or plan.components,
        metric=metric.name,
        method=method,
        normalized=normalize,
        per_example=values_pe.reshape(*shape, -1),
        baseline={"clean": clean, "counterfactual": cf},
        meta={"direction": direction, **meta},
        base_values=torch.cat(base_vals).float(),
        source_values=torch.cat(src_vals).float(),
    )


def patch(
    subject: Subject,
    contrast: ContrastSet,
    metric: Metric | str = "logit_diff",
    sites: str | list[str] = "heads",
    *,
    per_position: bool = False,
    direction: Literal["denoise", "noise"] = "denoise",
    normalize: bool = True,
    batch_size: int | None = None,
    max_memory: int | None = None,
    progress: bool | None = None,
    executor=None,
) -> Effects:
    """Exact activation patching of every site in a sweep.

    Args:
        sites: ``"resid_pre"``, ``"resid_mid"``, ``"attn_out"``, ``"mlp_out"``, ``"heads"``
            (head outputs, ``hook_z``), ``"heads_q"``/``"heads_k"``/``"heads_v"``, ``"pattern"``,
            or a list of component labels (``["L0H1", "L2.mlp@5"]``) or hook names.
        per_position: one patch per (site, position) instead of all positions at once.
        direction: ``"denoise"`` runs the counterfactual and patches in clean activations;
            ``"noise"`` runs clean and patches in counterfactual ones.
        batch_size: sequences per forward pass (bounds memory); ``max_memory`` (bytes)
            derives it instead.
        executor: where the forward passes run: ``None`` (the current one, local by
            default), ``"local"``, ``"ray"`` (a local Ray cluster, or the one already
            initialised) or an Executor such as ``RayExecutor("auto")``. Same numbers on each.

    Returns:
        Effects with dims in ``transformer_lens.patching``'s order, e.g. (layer, head) or
        (layer, pos, head), and ``per_example`` values ``[*dims, pair]`` (unnormalised).
    """
    metric = get_metric(metric)
    _check_direction(direction)
    if not isinstance(contrast, ContrastSet):
        raise ContrastError(f"patch needs a ContrastSet, got {type(contrast).__name__}")
    plan = plan_sites(subject, contrast, sites, per_position)
    absolute = any(p.position() is not None for v in plan.variants for p in v)
    if absolute and contrast.equal_lengths and not contrast.aligned:
        lens = sorted(set(contrast.lengths.tolist()))
        raise ContrastError(
            f"per-position patching needs prompts of one length; this set has lengths {lens}"
        )
    rows = batch_size or default_max_rows(subject, contrast.seq_len, max_memory, plan.hooks)
    per_example, base_vals, src_vals = [], [], []
    need_kv = True
    with using(executor):
        for part in contrast.batches(max(1, rows)):
            ctx = RunContext.build(
                subject, part, metric, direction=direction, source_hooks=plan.hooks, need_kv=need_kv
            )
            values = run_variants(ctx, plan.variants, max_rows=rows, progress=progress)
            per_example.append(values.cpu())
            base_vals.append(ctx.base_values.cpu())
            src_vals.append(ctx.source_values.cpu())
    meta = {
        "per_position": plan.per_position,
        "n_pairs": len(contrast),
        "sites": sites if isinstance(sites, str) else list(sites),
        **({"not_patched": note} if (note := unpatched_note(contrast)) else {}),
    }
    return sweep_effects(
        plan,
        per_example,
        base_vals,
        src_vals,
        metric=metric,
        method="patch",
        normalize=normalize,
        direction=direction,
        meta=meta,
    )
