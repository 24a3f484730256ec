"""Attribution patching: estimate every component's patching effect from a few passes.

* ``"atp"`` (Nanda 2023): effect ~ (a_source - a_base) . dM/da at the base run; two forwards
  and one backward for every component of every layer.
* ``"atp*"`` (Kramár et al. 2024): AtP with the QK fix (a query/key patch is pushed through the
  attention softmax exactly; only the pattern onward is linearised) and GradDrop (one backward
  per layer l with the gradient stopped from flowing back through layer l's attention and MLP;
  the estimate is sum_l |AtP_l| / (L - 1)). It estimates the *magnitude* of an effect (no
  sign), made robust to cancelling paths; use it to rank, not to read signed effects.
* ``"ig"`` (Marks et al. 2024): integrated gradients along the base->source activation path,
  one hook (layer) at a time, ``steps`` midpoint-rule steps; the components at one hook are
  interpolated together, so their attributions add up to that hook's whole patching effect.

Returns the same :class:`Effects` as :func:`interp_audit.patch` (same dims and labels), with
``values`` estimating the patched metric (``normalize=False``) or its normalised form.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Literal

import torch
from torch import Tensor

from interp_audit.core.errors import AuditError, ContrastError
from interp_audit.engine.batched import Patch, RunContext, default_max_rows, index_mask
from interp_audit.engine.contrasts import ContrastSet
from interp_audit.engine.effects import Effects
from interp_audit.methods.locate.gradients import gradient_run
from interp_audit.methods.locate.patching import _check_direction, sweep_effects
from interp_audit.methods.locate.sites import plan_sites
from interp_audit.model.memory import stepped_gradient_plan
from interp_audit.model.metrics import Metric, get_metric
from interp_audit.model.subject import Subject

__all__ = ["attribute"]

Method = Literal["atp", "atp*", "ig"]
METHODS = ("atp", "atp*", "ig")


def _component_sums(
    product: Tensor, patches: list[tuple[int, Patch]], out: Tensor, ctx: RunContext
) -> None:
    """out[variant] = sum of ``product`` over each patch's index (per example)."""
    for i, p in patches:
        if p.slot is not None:  # each row's own positions of the slot
            where = index_mask(p, tuple(product.shape), ctx.slot_rows(p.slot), product.device)
            out[i] = (product * where).reshape(product.shape[0], -1).sum(1)
            continue
        part = product[(slice(None), *p.index)]
        out[i] = part.reshape(part.shape[0], -1).sum(1) if part.ndim > 1 else part


def attribute(
    subject: Subject,
    contrast: ContrastSet,
    metric: Metric | str = "logit_diff",
    sites: str | list[str] = "heads",
    *,
    method: Method = "atp",
    per_position: bool = False,
    direction: Literal["denoise", "noise"] = "denoise",
    normalize: bool = True,
    steps: int = 16,
    graddrop: bool = True,
    batch_size: int | None = None,
    max_memory: int | None = None,
) -> Effects:
    """Estimate patching effects of every site by attribution (see module docstring).

    ``graddrop=False`` makes ``"atp*"`` the QK fix alone: signed estimates like ``"atp"``.
    ``batch_size``: pairs per gradient run. ``max_memory`` (bytes: the weights and what the
    run holds; :func:`interp_audit.model.memory.gradient_plan`) derives it instead, runs the
    backward one layer at a time when not even one pair's whole graph fits (one more
    forward), and splits integrated gradients' steps into several runs when one pair's steps
    do not fit together; a budget that cannot hold one pair, one step, one layer is refused
    up front with the estimate. Same numbers either way, to float rounding.
    """
    metric = get_metric(metric)
    _check_direction(direction)
    if method not in METHODS:
        raise AuditError(
            f"unknown attribution method {method!r}; choose one of {', '.join(METHODS)}"
        )
    if method == "ig" and steps < 1:
        raise AuditError(f"ig needs steps >= 1, got {steps}")
    if not isinstance(contrast, ContrastSet):
        raise ContrastError(f"attribute needs a ContrastSet, got {type(contrast).__name__}")
    plan = plan_sites(subject, contrast, sites, per_position)
    by_hook: dict[str, list[tuple[int, Patch]]] = defaultdict(list)
    for i, (p,) in enumerate(plan.variants):
        by_hook[p.hook].append((i, p))
    pairs, checkpoint, step_chunk = _plan(
        subject, contrast, by_hook, method, steps, graddrop, batch_size, max_memory
    )
    per_example, base_vals, src_vals = [], [], []
    for part in contrast.batches(pairs):
        ctx = RunContext.build(
            subject,
            part,
            metric,
            direction=direction,
            source_hooks=plan.hooks,
            base_run=method == "ig",
        )
        est = torch.empty(
            (len(plan.variants), ctx.batch),
            device=subject.device,
            dtype=torch.promote_types(subject.dtype, torch.float32),
        )
        if method == "ig":
            _integrated_gradients(ctx, by_hook, steps, est, step_chunk, checkpoint)
        else:
            ctx.base_values = _atp(
                ctx, by_hook, est, qk_fix=method == "atp*",
                graddrop=method == "atp*" and graddrop, checkpoint=checkpoint,
            )  # fmt: skip
        magnitude = method == "atp*" and graddrop
        values = est.float().cpu() if magnitude else (ctx.base_values[None] + est).float().cpu()
        for i, v in enumerate(plan.variants):  # a slot a pair lacks: not estimated (NaN)
            present = ctx.slot_present(v)
            if present is not None:
                values[i, ~present] = float("nan")
        per_example.append(values)
        base_vals.append(ctx.base_values.cpu())
        src_vals.append(ctx.source_values.cpu())
    magnitude = method == "atp*" and graddrop
    meta = {
        "per_position": plan.per_position,
        "estimates": "magnitude" if magnitude else "patched metric",
        "steps": steps if method == "ig" else None,
        "n_pairs": len(contrast),
        **(
            {
                "memory": {
                    "pairs_per_run": pairs,
                    "layer_by_layer": checkpoint,
                    "steps_per_run": step_chunk if method == "ig" else None,
                    "max_memory": int(max_memory),
                }
            }  # fmt: skip
            if max_memory is not None
            else {}
        ),
    }
    return sweep_effects(
        plan,
        per_example,
        base_vals,
        src_vals,
        metric=metric,
        method=method,
        normalize=normalize,
        direction=direction,
        meta=meta,
        magnitude=magnitude,
    )


def _captured(subject: Subject, by_hook, method: str) -> list[str]:
    """Hooks a gradient run captures: the sites, and for AtP*'s QK fix each layer's q, k and
    pattern."""
    adapter = subject.adapter
    capture = list(by_hook)
    if method == "atp*":
        qk = [h for h in by_hook if _is_query_or_key(adapter, h)]
        parts = ("pattern", "q", "k")
        extra = {adapter.attn(adapter.layer_of(h), part) for h in qk for part in parts}
        capture += sorted(extra - set(by_hook))
    return capture


def _plan(subject, contrast, by_hook, method, steps, graddrop, batch_size, max_memory):
    """(pairs per run, layer by layer?, integrated-gradient steps per run)."""
    capture = _captured(subject, by_hook, method)
    n_grads = subject.n_layers if method == "atp*" and graddrop and subject.n_layers > 1 else 1
    copies = 3 + n_grads  # activations, source run's, product, one gradient per backward
    if max_memory is None:
        rows = batch_size or default_max_rows(subject, contrast.seq_len)
        return max(1, rows if method != "ig" else rows // steps), False, steps
    # integrated gradients: all steps of a pair in one run if they fit, else fewer per run
    return stepped_gradient_plan(
        subject, contrast.seq_len, capture, max_memory, steps=steps if method == "ig" else 1,
        batch_size=batch_size, copies=copies,
    )  # fmt: skip


def _atp(
    ctx: RunContext,
    by_hook: dict[str, list[tuple[int, Patch]]],
    out: Tensor,
    *,
    qk_fix: bool,
    graddrop: bool,
    checkpoint: bool = False,
) -> Tensor:
    """Fill ``out`` with estimated changes; return the base run's metric values."""
    subject = ctx.subject
    adapter = subject.adapter
    qk = {h for h in by_hook if qk_fix and _is_query_or_key(adapter, h)}
    capture = list(by_hook)
    extra = {adapter.attn(adapter.layer_of(h), part) for h in qk for part in ("pattern", "q", "k")}
    capture += sorted(extra - set(by_hook))
    drops: list[int | None] = (
        list(range(subject.n_layers)) if graddrop and subject.n_layers > 1 else [None]
    )
    acts, grads_all, base_values = gradient_run(
        ctx, ctx.base_tokens, capture, drop_layers=drops, checkpoint=checkpoint
    )
    ctx.fill_unmatched(acts)  # unequal-length pairs: no source where the base has no match
    estimates = []
    for grads in grads_all:
        est = torch.zeros_like(out)
        for hook, patches in by_hook.items():
            if hook in qk:
                _qk_fix(ctx, hook, patches, acts, grads, est)
            else:
                _component_sums((ctx.source[hook] - acts[hook]) * grads[hook], patches, est, ctx)
        estimates.append(est)
    if graddrop and len(estimates) > 1:  # GradDrop: sum_l |estimate_l| / (L - 1)
        out.copy_(torch.stack(estimates).abs().sum(0) / (len(estimates) - 1))
    elif graddrop:
        out.copy_(estimates[0].abs())
    else:
        out.copy_(estimates[0])
    return base_values


def _is_query_or_key(adapter, hook: str) -> bool:
    found = adapter.role_of(hook)
    return found is not None and found[1] in ("head.q", "head.k")


def _qk_fix(
    ctx: RunContext,
    hook: str,
    patches: list[tuple[int, Patch]],
    acts: dict[str, Tensor],
    grads: dict[str, Tensor],
    out: Tensor,
) -> None:
    """Queries/keys through the softmax exactly; linear only from the attention pattern on.

    The adapter recomputes patterns from hook_q/hook_k (rotary applied, key heads repeated
    under grouped-query attention, where one key/value head feeds a group of query heads).
    """
    subject = ctx.subject
    adapter = subject.adapter
    layer, role = adapter.role_of(hook)
    q_base, k_base = acts[adapter.attn(layer, "q")], acts[adapter.attn(layer, "k")]
    pat_name = adapter.attn(layer, "pattern")
    pattern_base = acts.get(pat_name)
    grad_pattern = grads[pat_name]
    is_q = role == "head.q"
    src = ctx.source[hook]
    n_kv = adapter.n_key_value_heads
    group = subject.n_heads // n_kv if n_kv else 1

    def pattern(q: Tensor, k: Tensor) -> Tensor:
        return adapter.attention_pattern(layer, q, k, ctx.mask)

    with torch.no_grad():
        full = pattern(src, k_base) if is_q else pattern(q_base, src)
        for i, p in patches:
            head = p.index[1] if len(p.index) > 1 else None
            pos = p.index[0] if isinstance(p.index[0], int) else None
            # the query heads this patch moves (a key/value head feeds its whole group)
            heads = head if is_q or head is None else slice(head * group, (head + 1) * group)
            if p.slot is not None:  # each row's own positions of an alignment slot
                rows = ctx.slot_rows(p.slot)  # [b, pos]
                if is_q:  # those query rows of the head's pattern
                    new = full[:, heads]
                    diff = (new - pattern_base[:, heads]) * grad_pattern[:, heads]
                    delta = diff * rows.reshape(rows.shape[0], *([1] * (diff.ndim - 3)), -1, 1)
                else:  # those key columns: every query row renormalises
                    k_new = k_base.clone()
                    sel = rows[:, :, None] if head is None else rows
                    part = (
                        (slice(None), slice(None)) if head is None else (slice(None),) * 2 + (head,)
                    )
                    k_new[part] = torch.where(sel[..., None], src[part], k_base[part])
                    new = pattern(q_base, k_new)[:, heads]
                    delta = (new - pattern_base[:, heads]) * grad_pattern[:, heads]
                out[i] = delta.reshape(delta.shape[0], -1).sum(1)
                continue
            if is_q or pos is None:  # query rows (or every key) of these heads change together
                new = full[:, heads]
                if pos is not None:
                    delta = (new[:, pos] - pattern_base[:, head, pos]) * grad_pattern[:, head, pos]
                else:
                    delta = (new - pattern_base[:, heads]) * grad_pattern[:, heads]
            else:  # one key position: only that key column's score changes, every row renormalises
                k_new = k_base.clone()
                k_new[:, pos, head] = src[:, pos, head]
                new = pattern(q_base, k_new)[:, heads]
                delta = (new - pattern_base[:, heads]) * grad_pattern[:, heads]
            out[i] = delta.reshape(delta.shape[0], -1).sum(1)


def _integrated_gradients(
    ctx: RunContext,
    by_hook: dict[str, list[tuple[int, Patch]]],
    steps: int,
    out: Tensor,
    per_run: int | None = None,
    checkpoint: bool = False,
) -> None:
    """Per hook: interpolate it base -> source, average the gradient over ``steps`` midpoints
    (``per_run`` of them per gradient run)."""
    b = ctx.batch
    per_run = per_run or steps
    alphas = (torch.arange(steps, device=ctx.base_tokens.device, dtype=torch.float32) + 0.5) / steps
    for hook, patches in by_hook.items():
        base, src = ctx.base_sites[hook], ctx.source[hook]
        delta = src - base
        ones = [1] * (base.ndim - 1)
        total = None
        for first in range(0, steps, per_run):
            k = min(per_run, steps - first)
            a = alphas[first : first + k].repeat_interleave(b).reshape(-1, *ones).to(base.dtype)

            def interpolate(act, base=base, delta=delta, a=a, k=k, ones=ones):
                return base.repeat(k, *ones) + a * delta.repeat(k, *ones)

            tokens = ctx.base_tokens.repeat(k, 1)
            _, grads_all, _ = gradient_run(
                ctx, tokens, [hook], replace={hook: interpolate}, rows=k, checkpoint=checkpoint
            )
            summed = grads_all[0][hook].reshape(k, b, *base.shape[1:]).sum(0)
            total = summed if total is None else total + summed
        _component_sums(delta * (total / steps), patches, out, ctx)
