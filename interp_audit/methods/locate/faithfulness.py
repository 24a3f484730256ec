"""Faithfulness of a located circuit: how much of an effect its components carry on their own.

Run the clean input with **everything outside the circuit** taken from the counterfactual run:

* every head outside the circuit outputs its counterfactual ``z`` (at every position);
* a head with some of its query/key/value inputs in the circuit (``L0H1.v@2``) computes its
  output, but every other (part, position) of its q/k/v is the counterfactual one; a head (or
  ``L0H1@2``: its output at one position) in the circuit keeps its own output there;
* every MLP outside the circuit outputs its counterfactual value (a neuron in the circuit keeps
  only that neuron; an ``L1.mlp@3`` only that position);
* the direct path from the embeddings to the output is corrupted too: the final residual stream
  gets ``embed(counterfactual) - embed(clean)`` added (circuit components still read the clean
  embeddings through the residual stream).

The circuit's metric ``M(circuit)`` then differs from the counterfactual one only through the
circuit, and faithfulness = (M(circuit) - M(counterfactual)) / (M(clean) - M(counterfactual)).
For whole-head circuits this is exactly edge patching of every edge outside the circuit's
induced subgraph (``edges.patch_edges``, which the tests compare it with).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch
from torch import Tensor

from interp_audit.core.errors import AuditError, SiteError
from interp_audit.engine.batched import cached_run
from interp_audit.engine.contrasts import ContrastSet
from interp_audit.model.components import Component, parse_components
from interp_audit.model.metrics import Metric, MetricContext, get_metric
from interp_audit.model.readout import readout
from interp_audit.model.subject import Subject

__all__ = ["circuit_metric", "node_components"]

_NODE_KINDS = ("head", "head.q", "head.k", "head.v", "attn", "mlp", "neuron")


def node_components(subject: Subject, circuit: Sequence[str]) -> list[Component]:
    """Parse a circuit: heads (whole, at a position, or their q/k/v inputs), attention layers,
    MLPs and neurons. Residual-stream sites are cuts, not nodes: refused by name."""
    comps = parse_components(list(circuit), subject.shape)
    for c in comps:
        if c.kind not in _NODE_KINDS:
            raise SiteError(
                f"circuit component {c.label!r} is a {c.kind} site, not a node: a circuit is made "
                "of heads (L0H1, L0H1@2, L0H1.v@2), attention layers (L0.attn), MLPs (L1.mlp) "
                "and neurons (L1N7)"
            )
    return comps


def _patch_masks(subject: Subject, comps: list[Component], seq: int) -> dict[str, Tensor]:
    """hook name -> bool mask ``[pos, unit]`` of what to take from the counterfactual run."""
    n_layers, n_heads = subject.n_layers, subject.n_heads
    n_kv = subject.adapter.n_key_value_heads or n_heads
    heads: dict[tuple[int, int], list[Component]] = defaultdict(list)
    mlps: dict[int, list[Component]] = defaultdict(list)
    for c in comps:
        if c.kind == "attn":
            for h in range(n_heads):
                heads[(c.layer, h)].append(Component(c.layer, "head", h, c.pos))
        elif c.kind.startswith("head"):
            heads[(c.layer, c.head)].append(c)
        else:
            mlps[c.layer].append(c)
    masks: dict[str, Tensor] = {}

    def mask(name: str, width: int) -> Tensor:
        if name not in masks:
            masks[name] = torch.zeros(seq, width, dtype=torch.bool)
        return masks[name]

    def positions(c: Component) -> slice | int:
        return slice(None) if c.pos is None else c.pos

    for layer in range(n_layers):
        for h in range(n_heads):
            mine = heads.get((layer, h), [])
            outputs = [c for c in mine if c.kind == "head"]
            inputs = [c for c in mine if c.kind != "head"]
            if outputs or not inputs:  # the head's output: corrupt what is not in the circuit
                m = mask(subject.adapter.attn(layer, "z"), n_heads)
                m[:, h] = True
                for c in outputs:
                    m[positions(c), h] = False
            else:  # its q/k/v inputs: corrupt every (part, position) not in the circuit
                for part in "qkv":
                    width = n_heads if part == "q" else n_kv
                    m = mask(subject.adapter.attn(layer, part), width)
                    m[:, h if part == "q" else h % width] = True
                for c in inputs:
                    part = c.kind.split(".")[1]
                    width = n_heads if part == "q" else n_kv
                    m = mask(subject.adapter.attn(layer, part), width)
                    m[positions(c), c.head if part == "q" else c.head % width] = False
        if not subject.shape.has_mlp:
            continue
        mine = mlps.get(layer, [])
        neurons = [c for c in mine if c.kind == "neuron"]
        whole = [c for c in mine if c.kind == "mlp"]
        if neurons and not whole:
            m = mask(subject.adapter.mlp_post(layer), int(subject.shape.d_mlp))
            m[:] = True
            for c in neurons:
                m[positions(c), c.head] = False
        else:
            m = mask(subject.adapter.mlp_out(layer), 1)
            m[:] = True
            for c in whole:
                m[positions(c), 0] = False
    return masks


def _expand(mask: Tensor, act: Tensor) -> Tensor:
    """A ``[pos, unit]`` mask broadcast over an activation ``[batch, pos, (unit), ...]``."""
    if act.ndim == 3 and mask.shape[1] == 1:  # [b, pos, d]
        return mask[None, :, :1].expand(act.shape[0], -1, act.shape[2])
    if act.ndim == 3:  # [b, pos, neuron]
        return mask[None].expand(act.shape[0], -1, -1)
    return mask[None, :, :, None].expand(act.shape[0], -1, -1, act.shape[3])  # [b, pos, h, d]


@torch.no_grad()
def circuit_metric(
    subject: Subject,
    contrast: ContrastSet,
    circuit: Sequence[str],
    metric: Metric | str = "logit_diff",
) -> Tensor:
    """Per-pair metric of the clean run with everything outside ``circuit`` taken from the
    counterfactual run (see the module docstring). An empty circuit gives the counterfactual
    metric exactly; pairs must be aligned (one length per pair)."""
    metric = get_metric(metric)
    if not subject.adapter.causal:
        raise AuditError(
            f"circuit faithfulness needs a causal LM whose residual stream sums its components; "
            f"{subject.model_class} is not one"
        )
    if not bool((contrast.lengths == contrast.lengths[0]).all()) or not contrast.aligned:
        raise AuditError(
            "circuit faithfulness patches position by position: give pairs of one length"
        )
    comps = node_components(subject, circuit)
    seq = contrast.clean.shape[1]
    for c in comps:
        if c.pos is not None and c.pos >= seq:
            raise AuditError(
                f"circuit component {c.label!r}: position {c.pos} is past these inputs' {seq} "
                "positions"
            )
    dev = subject.device
    clean, cf = contrast.clean.to(dev), contrast.counterfactual.to(dev)
    attn_mask = contrast.attention_mask().to(dev)
    masks = {k: v.to(dev) for k, v in _patch_masks(subject, comps, clean.shape[1]).items()}
    embed, final = subject.adapter.resid_pre(0), subject.final_hook()
    cache, _ = cached_run(subject, cf, attn_mask, {*masks, embed})
    clean_embed: dict[str, Tensor] = {}

    def take(name: str):
        def fn(act, *, hook):
            return torch.where(_expand(masks[name], act), cache[name].to(act.dtype), act)

        return fn

    def record(act, *, hook):
        clean_embed["x"] = act
        return act

    def direct(act, *, hook):
        return act + (cache[embed] - clean_embed["x"]).to(act.dtype)

    hooks = [(embed, record), *[(name, take(name)) for name in masks], (final, direct)]
    with subject.hooks(hooks):
        out, _ = cached_run(subject, clean, attn_mask, {final})
    answers = None if contrast.answers is None else contrast.answers.to(dev)
    scored = subject.scored_positions(contrast).to(dev)

    def read(cache: dict[str, Tensor]) -> Tensor:
        return readout(
            subject=subject,
            metric=metric,
            final=cache[final],
            logits=None,
            scored=scored,
            answers=answers,
            mask=attn_mask,
        )

    reference = None
    if metric.needs_reference:  # the unpatched clean run's readout
        reference = read(cached_run(subject, clean, attn_mask, {final})[0])
    return metric(read(out), MetricContext(answers=answers, reference=reference)).detach().cpu()
