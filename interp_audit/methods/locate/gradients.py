"""Gradient runs for attribution: activations and d(metric)/d(activation) at chosen hooks.

Parameters never receive gradients: their ``requires_grad`` is switched off for the run and
restored afterwards, and gradients are taken with ``torch.autograd.grad`` with respect to the
activations only, so nothing accumulates in ``.grad``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor

from interp_audit.engine import window
from interp_audit.engine.batched import RunContext
from interp_audit.model.readout import readout
from interp_audit.model.subject import Subject, quiet_tl_warnings


@contextlib.contextmanager
def frozen_parameters(subject: Subject) -> Iterator[None]:
    """Parameters do not require grad inside the block; their flags are restored on exit."""
    params = list(subject.model.parameters())
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, f in zip(params, flags, strict=True):
            p.requires_grad_(f)


def gradient_run(
    ctx: RunContext,
    tokens: Tensor,
    capture: Sequence[str],
    *,
    replace: dict[str, Callable[[Tensor], Tensor]] | None = None,
    rows: int = 1,
    drop_layers: Sequence[int | None] = (None,),
    checkpoint: bool = False,
) -> tuple[dict[str, Tensor], list[dict[str, Tensor]], Tensor]:
    """Forward ``tokens`` (``rows`` copies of the batch stacked), backward the summed metric.

    ``replace`` maps hook names to functions producing the activation to use there (IG's
    interpolation). ``drop_layers``: one backward per entry; an integer ``l`` stops the gradient
    from flowing back *through* layer ``l``'s attention and MLP (zeroed at its q, k, v and MLP
    pre-activations; the skip connection and the layer's own outputs keep theirs): GradDrop.
    None drops nothing.
    ``checkpoint``: keep only the residual stream between layers and re-run each layer with
    gradients on the way down (:func:`layerwise_gradient_run`), where the model allows it
    (:func:`can_run_layerwise`): the graph of one layer in memory instead of all of them,
    for one more forward. Same numbers, to float rounding.
    Returns (activations at ``capture``, one gradient dict per backward, metric values).
    """
    if checkpoint and can_run_layerwise(ctx, capture, replace):
        return layerwise_gradient_run(
            ctx, tokens, capture, replace=replace, rows=rows, drop_layers=drop_layers
        )
    subject = ctx.subject
    acts: dict[str, Tensor] = {}
    adapter = subject.adapter
    root = adapter.resid_pre(0)

    def drop_points(layer: int) -> list[str]:  # where GradDrop stops the gradient
        return [*(adapter.attn(layer, part) for part in "qkv"), adapter.mlp_pre(layer)]

    layer_outs = {
        name
        for layer in drop_layers
        if layer is not None
        for name in drop_points(layer)
        if subject.has_hook(name)
    }
    names = set(capture) | layer_outs | {subject.final_hook()}

    # keyed by the name asked for: TransformerBridge hooks answer to aliases of their names
    def make_root(act, *, hook, name=root):
        if name in (replace or {}):
            act = replace[name](act)
        act = act.detach().requires_grad_(True)
        if name in names:
            acts[name] = act
        return act

    def keeper(name: str):
        def keep(act, *, hook):
            if name in (replace or {}):
                act = replace[name](act.detach()).requires_grad_(True)
            acts[name] = act
            return act

        return keep

    rest = sorted((names | set(replace or {})) - {root})
    hooks = [(root, make_root)] + [(n, keeper(n)) for n in rest]
    mask = ctx.mask.repeat(rows, 1)
    with (
        torch.enable_grad(),
        frozen_parameters(subject),
        quiet_tl_warnings(),
        window.at(0, int(tokens.shape[1]), ctx.batch),  # rows: ``rows`` copies of the batch
        subject.hooks(hooks),
    ):
        subject.adapter.forward_hidden(tokens, mask)
        answers = None if ctx.metric_ctx.answers is None else ctx.metric_ctx.answers.repeat(rows, 1)
        read = readout(
            subject=subject,
            metric=ctx.metric,
            final=acts[subject.final_hook()],
            logits=None,
            scored=ctx.scored.repeat(rows),
            answers=answers,
            mask=mask,
        )
        values = ctx.metric(read, ctx.metric_ctx.repeat(rows))
        total = values.sum()
        wrt = [acts[n] for n in capture]
        grads_all = []
        for i, layer in enumerate(drop_layers):
            handles = []
            if layer is not None:
                for name in drop_points(layer):
                    if name in acts:
                        handles.append(acts[name].register_hook(torch.zeros_like))
            try:
                grads = torch.autograd.grad(
                    total, wrt, retain_graph=i < len(drop_layers) - 1, allow_unused=True
                )
            finally:
                for h in handles:
                    h.remove()
            grads_all.append(
                {
                    n: (torch.zeros_like(acts[n]) if g is None else g.detach())
                    for n, g in zip(capture, grads, strict=True)
                }
            )
    return {n: acts[n].detach() for n in capture}, grads_all, values.detach()


def can_run_layerwise(ctx: RunContext, capture: Sequence[str], replace: dict | None = None) -> bool:
    """Can this gradient run go layer by layer: a model the adapter runs block by block on
    right-padded inputs, and every captured or replaced activation inside a block?"""
    subject = ctx.subject
    adapter = subject.adapter
    if not adapter.runs_layer_by_layer or adapter.padding_kwargs(ctx.mask):
        return False
    names = [*capture, *(replace or {}), subject.final_hook()]
    return all(adapter.layer_of(n) is not None for n in names)


def layerwise_gradient_run(
    ctx: RunContext,
    tokens: Tensor,
    capture: Sequence[str],
    *,
    replace: dict[str, Callable[[Tensor], Tensor]] | None = None,
    rows: int = 1,
    drop_layers: Sequence[int | None] = (None,),
) -> tuple[dict[str, Tensor], list[dict[str, Tensor]], Tensor]:
    """:func:`gradient_run`, one layer's graph at a time.

    A forward without gradients keeps the residual stream entering each block (and the
    captured activations); the metric's gradient with respect to the final stream is then
    carried down: each block is re-run from its input with gradients, and one backward through
    it gives the gradient at its input (for the block below) and at its captured activations.
    GradDrop's backward for layer ``l`` shares everything above ``l`` with the plain one; it
    re-runs layers ``l`` down to 0 with the gradient stopped inside layer ``l``.
    """
    subject = ctx.subject
    adapter = subject.adapter
    n = subject.n_layers
    replace = replace or {}
    mask = ctx.mask.repeat(rows, 1)
    layer_of = adapter.layer_of

    def drop_points(layer: int) -> list[str]:
        names = [*(adapter.attn(layer, part) for part in "qkv"), adapter.mlp_pre(layer)]
        return [name for name in names if subject.has_hook(name)]

    acts: dict[str, Tensor] = {}

    def keeper(store: dict[str, Tensor], grad: bool):
        def make(name: str):
            def keep(act, *, hook):
                if name in replace:
                    act = replace[name](act.detach())
                    act = act.requires_grad_(True) if grad else act
                store[name] = act if grad else act.detach()
                return act

            return keep

        return make

    wanted = sorted(set(capture) | set(replace))
    inputs: list[Tensor] = []
    with (
        torch.no_grad(),
        frozen_parameters(subject),
        quiet_tl_warnings(),
        window.at(0, int(tokens.shape[1]), ctx.batch),
        subject.hooks([(name, keeper(acts, False)(name)) for name in wanted]),
    ):
        resid = adapter.block_input(tokens, mask)
        for layer in range(n):
            inputs.append(resid)
            resid = adapter.run_block(layer, resid)
    answers = None if ctx.metric_ctx.answers is None else ctx.metric_ctx.answers.repeat(rows, 1)
    with torch.enable_grad(), frozen_parameters(subject), quiet_tl_warnings():
        final = resid.detach().requires_grad_(True)
        read = readout(
            subject=subject, metric=ctx.metric, final=final, logits=None,
            scored=ctx.scored.repeat(rows), answers=answers, mask=mask,
        )  # fmt: skip
        values = ctx.metric(read, ctx.metric_ctx.repeat(rows))
        (top,) = torch.autograd.grad(values.sum(), [final])
    by_layer: dict[int, list[str]] = {}
    for name in capture:
        by_layer.setdefault(layer_of(name), []).append(name)

    def down(layer: int, grad_out: Tensor, drop: bool) -> tuple[Tensor, dict[str, Tensor]]:
        """Re-run ``layer`` with gradients; (gradient at its input, at its captured acts)."""
        live: dict[str, Tensor] = {}
        names = sorted(set(by_layer.get(layer, [])) | {n for n in replace if layer_of(n) == layer})
        stops = drop_points(layer) if drop else []
        with (
            torch.enable_grad(),
            frozen_parameters(subject),
            quiet_tl_warnings(),
            window.at(0, int(tokens.shape[1]), ctx.batch),
            subject.hooks([(name, keeper(live, True)(name)) for name in sorted({*names, *stops})]),
        ):
            x = inputs[layer].detach().requires_grad_(True)
            out = adapter.run_block(layer, x)
            handles = [live[name].register_hook(torch.zeros_like) for name in stops]
            wrt = [x] + [live[name] for name in by_layer.get(layer, [])]
            try:
                got = torch.autograd.grad(out, wrt, grad_outputs=grad_out, allow_unused=True)
            finally:
                for h in handles:
                    h.remove()
        grads = {
            name: torch.zeros_like(live[name]) if g is None else g.detach()
            for name, g in zip(by_layer.get(layer, []), got[1:], strict=True)
        }
        g_in = torch.zeros_like(x) if got[0] is None else got[0].detach()
        return g_in, grads

    plain: dict[str, Tensor] = {}
    grad_out: list[Tensor] = [top] * n  # gradient at each block's output (plain backward)
    g = top
    for layer in reversed(range(n)):
        grad_out[layer] = g
        g, grads = down(layer, g, drop=False)
        plain.update(grads)
    grads_all = []
    for drop in drop_layers:
        if drop is None:
            grads_all.append(dict(plain))
            continue
        mine = {k: v for k, v in plain.items() if layer_of(k) > drop}
        g = grad_out[drop]
        for layer in reversed(range(drop + 1)):
            g, grads = down(layer, g, drop=layer == drop)
            mine.update(grads)
        grads_all.append(mine)
    out_acts = {name: acts[name] for name in capture}
    return out_acts, [{k: d[k] for k in capture} for d in grads_all], values.detach()
