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
) -> tuple[dict[str, Tensor], list[dict[str, Tensor]], Tensor]:
    """Forward ``tokens`` (``rows`` copies of the batch stacked), backward the summed metric.

    ``replace`` maps hook names to functions producing the activation to use there (IG's
    interpolation). ``drop_layers``: one backward per entry; an integer ``l`` stops the gradient
    from flowing back *through* layer ``l``'s attention and MLP (zeroed at its q, k, v and MLP
    pre-activations; the skip connection and the layer's own outputs keep theirs): GradDrop.
    None drops nothing.
    Returns (activations at ``capture``, one gradient dict per backward, metric values).
    """
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
