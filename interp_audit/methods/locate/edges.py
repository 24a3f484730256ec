"""Edge attribution (EAP, Syed et al. 2023; EAP-IG, Hanna et al. 2024) and circuit pruning.

The residual stream is a sum of sender outputs (embeddings, each head's ``z @ W_O``, each
MLP), and every receiver (a head's query/key/value input, an MLP's input, the logits) reads
that sum. An edge is one sender's term in one receiver's input. EAP scores an edge by
``(out_s(source) - out_s(base)) . dM/d(input_r)``; EAP-IG averages the gradient over inputs
interpolated between the two runs. :func:`prune` keeps the top edges and measures, by
*actually* corrupting every other edge, how much of the behaviour the circuit recovers.

Pairs of unequal token counts follow the alignment of :func:`interp_audit.patch`: a sender's
source output is taken at aligned positions only (the differing span of unequal pairs keeps
the base output, so its edges are not scored there).
"""

from __future__ import annotations

import contextlib
import html
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from interp_audit.core.errors import AuditError, SiteError, did_you_mean
from interp_audit.engine.batched import RunContext, cached_run, default_max_rows
from interp_audit.engine.contrasts import ContrastSet
from interp_audit.engine.effects import Effects
from interp_audit.methods.locate.gradients import gradient_run
from interp_audit.methods.locate.patching import _check_direction
from interp_audit.methods.locate.sites import unpatched_note
from interp_audit.model.memory import stepped_gradient_plan
from interp_audit.model.metrics import Metric, get_metric
from interp_audit.model.readout import readout
from interp_audit.model.subject import Subject, quiet_tl_warnings

__all__ = ["Circuit", "EdgeGraph", "attribute_edges", "patch_edges", "prune"]


@dataclass(frozen=True)
class EdgeGraph:
    """Senders, receivers and which sender->receiver pairs are edges, for one model."""

    senders: list[str]
    receivers: list[str]
    valid: Tensor  # [sender, receiver] bool

    @classmethod
    def of(cls, subject: Subject) -> EdgeGraph:
        adapter = subject.adapter
        if not (adapter.causal and adapter.mid_block_entry and adapter.split_qkv):
            raise AuditError(
                "edge attribution needs a pre-LayerNorm causal HookedTransformer whose "
                "residual stream is a sum of "
                f"sender outputs; {subject.model_class} ({subject.adapter.family}) is not one. Use "
                "ia.attribute for nodes."
            )
        n, h, mlp = subject.n_layers, subject.n_heads, subject.shape.has_mlp
        senders = ["embed"]
        layer_s = [-1]
        kind_s = ["embed"]
        for layer in range(n):
            for head in range(h):
                senders.append(f"L{layer}H{head}")
                layer_s.append(layer)
                kind_s.append("head")
            if mlp:
                senders.append(f"L{layer}.mlp")
                layer_s.append(layer)
                kind_s.append("mlp")
        receivers, layer_r, kind_r = [], [], []
        for layer in range(n):
            for label in _head_receivers(subject, layer):
                receivers.append(label)
                layer_r.append(layer)
                kind_r.append("head")
            if mlp:
                receivers.append(f"L{layer}.mlp")
                layer_r.append(layer)
                kind_r.append("mlp")
        receivers.append("logits")
        layer_r.append(n)
        kind_r.append("logits")
        valid = torch.zeros(len(senders), len(receivers), dtype=torch.bool)
        for i, (ls, ks) in enumerate(zip(layer_s, kind_s, strict=True)):
            for j, (lr, kr) in enumerate(zip(layer_r, kind_r, strict=True)):
                valid[i, j] = ls < lr or (ls == lr and ks == "head" and kr == "mlp")
        return cls(senders, receivers, valid)

    def edge_labels(self) -> list[str]:
        return [f"{s}->{r}" for s in self.senders for r in self.receivers]

    def parse(self, edges: Sequence[str]) -> Tensor:
        """Edge labels -> a [sender, receiver] bool mask; unknown or impossible edges are errors."""
        mask = torch.zeros_like(self.valid)
        for e in edges:
            s, _, r = e.partition("->")
            if s not in self.senders or r not in self.receivers:
                bad = s if s not in self.senders else r
                raise SiteError(
                    f"edge {e!r}: no node {bad!r}{did_you_mean(bad, self.senders + self.receivers)}"
                )
            i, j = self.senders.index(s), self.receivers.index(r)
            if not self.valid[i, j]:
                raise SiteError(f"edge {e!r}: {s} does not feed {r} (it is not upstream of it)")
            mask[i, j] = True
        return mask


def _head_receivers(subject: Subject, layer: int) -> list[str]:
    """Receiver labels of one layer's heads, in the order :func:`_receiver_grads` stacks them.

    Head-major ``H0.q H0.k H0.v H1.q ...`` with one key/value input per query head; under
    grouped-query attention keys and values have their own (fewer) heads: all queries first,
    then ``H{g}.k H{g}.v`` per key/value head ``g``.
    """
    n_kv = subject.adapter.n_key_value_heads
    if n_kv is None:
        return [f"L{layer}H{h}.{p}" for h in range(subject.n_heads) for p in "qkv"]
    queries = [f"L{layer}H{h}.q" for h in range(subject.n_heads)]
    return queries + [f"L{layer}H{g}.{p}" for g in range(n_kv) for p in "kv"]


@contextlib.contextmanager
def split_inputs(subject: Subject) -> Iterator[None]:
    """Give every head its own q/k/v input hook and MLPs an input hook, restored on exit."""
    with subject.adapter.split_inputs(subject.shape.has_mlp):
        yield


@torch.no_grad()
def _sender_outputs(subject: Subject, cache: dict[str, Tensor], has_mlp: bool) -> Tensor:
    """[b, pos, sender, d_model] in EdgeGraph.senders order."""
    parts = [cache[subject.adapter.resid_pre(0)][:, :, None]]
    for layer in range(subject.n_layers):
        z = cache[subject.adapter.attn(layer, "z")]
        parts.append(subject.adapter.head_outputs(layer, z))
        if has_mlp:
            parts.append(cache[subject.adapter.mlp_out(layer)][:, :, None])
    return torch.cat(parts, dim=2)


def _sender_hooks(subject: Subject, has_mlp: bool) -> set[str]:
    names = {subject.adapter.resid_pre(0)} | {
        subject.adapter.attn(layer, "z") for layer in range(subject.n_layers)
    }
    if has_mlp:
        names |= {subject.adapter.mlp_out(layer) for layer in range(subject.n_layers)}
    return names


def _receiver_hooks(subject: Subject, has_mlp: bool) -> list[str]:
    names = []
    for layer in range(subject.n_layers):
        names += [subject.adapter.qkv_input(layer, p) for p in "qkv"]
        if has_mlp:
            names.append(subject.adapter.mlp_in(layer))
    return names + [subject.final_hook()]


def _receiver_grads(subject: Subject, grads: dict[str, Tensor], has_mlp: bool) -> Tensor:
    """[b, pos, receiver, d_model] in EdgeGraph.receivers order."""
    parts = []
    for layer in range(subject.n_layers):
        q, k, v = (grads[subject.adapter.qkv_input(layer, p)] for p in "qkv")
        if subject.adapter.n_key_value_heads is None:  # head-major: H0.q H0.k H0.v H1.q ...
            parts.append(torch.stack([q, k, v], dim=3).flatten(2, 3))
        else:  # queries, then H0.k H0.v H1.k ... per key/value head
            parts += [q, torch.stack([k, v], dim=3).flatten(2, 3)]
        if has_mlp:
            parts.append(grads[subject.adapter.mlp_in(layer)][:, :, None])
    parts.append(grads[subject.final_hook()][:, :, None])
    return torch.cat(parts, dim=2)


def attribute_edges(
    subject: Subject,
    contrast: ContrastSet,
    metric: Metric | str = "logit_diff",
    *,
    method: Literal["eap", "eap-ig"] = "eap",
    steps: int = 8,
    direction: Literal["denoise", "noise"] = "denoise",
    batch_size: int | None = None,
    max_memory: int | None = None,
) -> Effects:
    """Score every sender->receiver edge. Effects dims (sender, receiver); non-edges are NaN.

    Values estimate the change of the mean metric when that one edge carries the source run's
    sender output instead of the base run's (not normalised). ``batch_size``: pairs per
    gradient run; ``max_memory`` (bytes, weights included) derives it instead, as
    :func:`interp_audit.attribute` does (one layer's graph at a time when a pair's whole graph
    does not fit; EAP-IG's steps split over runs), and the edge scores are summed over chunks
    of positions, so no ``[pos, sender, d]`` x ``[pos, receiver, d]`` product is held whole.
    """
    metric = get_metric(metric)
    _check_direction(direction)
    if method not in ("eap", "eap-ig"):
        raise AuditError(f"unknown edge method {method!r}; choose 'eap' or 'eap-ig'")
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 10_000:
        raise AuditError(f"steps={steps!r}: give a whole number of IG steps in 1..10000")
    graph = EdgeGraph.of(subject)
    has_mlp = subject.shape.has_mlp
    n_steps = steps if method == "eap-ig" else 1
    senders = sorted(_sender_hooks(subject, has_mlp))
    receivers = _receiver_hooks(subject, has_mlp)
    pairs, checkpoint, per_run = _edge_plan(
        subject, contrast, senders, receivers, method, n_steps, batch_size, max_memory
    )
    total = torch.zeros(graph.valid.shape, dtype=torch.float64)
    base_vals, src_vals = [], []
    for part in contrast.batches(pairs):
        # EAP's gradient pass is the base run; EAP-IG's passes are interpolated, so it needs one
        ctx = RunContext.build(
            subject,
            part,
            metric,
            direction=direction,
            source_hooks=senders,
            base_run=method == "eap-ig",
        )
        with split_inputs(subject):
            if method == "eap":
                base_cache, grads_all, ctx.base_values = gradient_run(
                    ctx, ctx.base_tokens, receivers + senders, checkpoint=checkpoint
                )
                grads = grads_all[0]
            else:
                base_cache = ctx.base_sites
                grads = _ig_receiver_grads(ctx, receivers, n_steps, per_run, checkpoint)
        ctx.fill_unmatched(base_cache)  # unequal-length pairs: unmatched positions stay base
        total += _edge_scores(
            subject, ctx.source, base_cache, grads, has_mlp, tuple(graph.valid.shape), max_memory
        )
        del grads, base_cache
        base_vals.append(ctx.base_values.cpu())
        src_vals.append(ctx.source_values.cpu())
    scores = (total / len(contrast)).float()
    scores[~graph.valid] = float("nan")
    base = float(torch.cat(base_vals).mean())
    source = float(torch.cat(src_vals).mean())
    clean, cf = (source, base) if direction == "denoise" else (base, source)
    return Effects(
        values=scores,
        dims=("sender", "receiver"),
        axes={"sender": graph.senders, "receiver": graph.receivers},
        components=graph.edge_labels(),
        metric=metric.name,
        method=method,
        normalized=False,
        baseline={"clean": clean, "counterfactual": cf},
        meta={
            "direction": direction,
            "steps": n_steps,
            "n_pairs": len(contrast),
            "estimates": "change of mean metric per edge",
            **({"not_patched": note} if (note := unpatched_note(contrast)) else {}),
        },
    )


@torch.no_grad()
def _edge_plan(subject, contrast, senders, receivers, method, n_steps, batch_size, max_memory):
    """(pairs per run, layer by layer?, EAP-IG steps per run)."""
    if max_memory is None:
        rows = batch_size or default_max_rows(subject, contrast.seq_len)
        return max(1, rows // n_steps), False, n_steps
    # held: receivers' activations and gradients, senders' base and source outputs
    capture = receivers + senders
    return stepped_gradient_plan(
        subject, contrast.seq_len, capture, max_memory, steps=n_steps, batch_size=batch_size,
        copies=2, split_inputs=True, fixed=contraction_bytes(max_memory),
    )  # fmt: skip


def _ig_receiver_grads(
    ctx: RunContext, receivers: list[str], n_steps: int, per_run: int, checkpoint: bool
) -> dict[str, Tensor]:
    """EAP-IG: receivers' gradients averaged over embeddings interpolated base -> source,
    ``per_run`` midpoint steps per gradient run."""
    subject = ctx.subject
    b = ctx.batch
    embed = subject.adapter.resid_pre(0)
    alphas = (torch.arange(n_steps, dtype=subject.dtype, device=subject.device) + 0.5) / n_steps
    emb_base = ctx.base_sites[embed]
    emb_delta = ctx.source[embed] - emb_base
    total: dict[str, Tensor] = {}
    for first in range(0, n_steps, per_run):
        k = min(per_run, n_steps - first)
        a = alphas[first : first + k].repeat_interleave(b)[:, None, None]
        path = emb_base.repeat(k, 1, 1) + a * emb_delta.repeat(k, 1, 1)

        def interpolate(act, path=path):
            return path

        _, grads_all, _ = gradient_run(
            ctx, ctx.base_tokens.repeat(k, 1), receivers, replace={embed: interpolate}, rows=k,
            checkpoint=checkpoint,
        )  # fmt: skip
        for name, g in grads_all[0].items():
            summed = g.reshape(k, b, *g.shape[1:]).sum(0)
            total[name] = summed if name not in total else total[name] + summed
    return {name: g / n_steps for name, g in total.items()}


#: bytes of one chunk of the edge-score contraction (sender deltas and receiver gradients in
#: float64, for a chunk of positions) when no budget says otherwise
_CONTRACTION_BYTES = 256 * 2**20


def contraction_bytes(max_memory: int | None) -> int:
    """At most this many bytes for one chunk of the edge-score contraction: 1/16 of a budget."""
    return _CONTRACTION_BYTES if max_memory is None else int(max_memory) // 16


def _edge_scores(
    subject: Subject,
    source: dict[str, Tensor],
    base: dict[str, Tensor],
    grads: dict[str, Tensor],
    has_mlp: bool,
    shape: tuple[int, int],
    max_memory: int | None,
) -> Tensor:
    """sum over examples and positions of (sender delta) . (receiver gradient), ``shape``
    ``[S, R]``, a chunk of positions at a time (float64)."""
    any_act = next(iter(grads.values()))
    b, n_pos = any_act.shape[:2]
    per_pos = b * sum(shape) * subject.d_model * (8 + any_act.element_size())
    room = max(per_pos, contraction_bytes(max_memory))
    step = max(1, min(n_pos, room // per_pos))
    total = torch.zeros(shape, dtype=torch.float64)
    for p0 in range(0, n_pos, step):
        src_w = {k: v[:, p0 : p0 + step] for k, v in source.items()}
        base_w = {k: v[:, p0 : p0 + step] for k, v in base.items()}
        grads_w = {k: v[:, p0 : p0 + step] for k, v in grads.items()}
        delta = _sender_outputs(subject, src_w, has_mlp) - _sender_outputs(subject, base_w, has_mlp)
        g = _receiver_grads(subject, grads_w, has_mlp)
        total += torch.einsum("bpsd,bprd->sr", delta.double(), g.double()).cpu()
    return total


def patch_edges(
    subject: Subject,
    contrast: ContrastSet,
    keep: Sequence[str] | Tensor,
    metric: Metric | str = "logit_diff",
) -> Tensor:
    """Per-pair metric of the clean run with every edge *not* in ``keep`` corrupted.

    Each receiver reads the clean run's residual input minus, for every sender outside its
    kept edges, that sender's (current - counterfactual) output: exact edge patching in one
    forward. Keeping every edge gives the clean metric; keeping none, the counterfactual one.
    """
    metric = get_metric(metric)
    graph = EdgeGraph.of(subject)
    kept = keep if isinstance(keep, Tensor) else graph.parse(keep)
    missing = (graph.valid & ~kept).to(subject.dtype).to(subject.device)  # [S, R]
    has_mlp = subject.shape.has_mlp
    # swapped: base = clean tokens, source = counterfactual (its sender outputs moved onto the
    # clean positions for unequal-length pairs); answers flipped back below for the readout
    ctx = RunContext.build(
        subject,
        contrast.swapped(),
        metric,
        direction="denoise",
        source_hooks=sorted(_sender_hooks(subject, has_mlp)),
    )
    clean_tokens = contrast.clean.to(subject.device)
    corrupt = _sender_outputs(subject, ctx.source, has_mlp)
    b, p = clean_tokens.shape
    diff = torch.zeros(
        (b, p, len(graph.senders), subject.d_model), dtype=subject.dtype, device=subject.device
    )
    index = {name: i for i, name in enumerate(graph.senders)}
    rindex = {name: j for j, name in enumerate(graph.receivers)}
    n_heads = subject.n_heads

    def record_embed(act, *, hook):
        diff[:, :, 0] = act - corrupt[:, :, 0]

    def record_heads(act, *, hook):
        layer = subject.adapter.layer_of(hook.name)
        out = subject.adapter.head_outputs(layer, act)
        first = index[f"L{layer}H0"]
        diff[:, :, first : first + n_heads] = out - corrupt[:, :, first : first + n_heads]

    def record_mlp(act, *, hook):
        i = index[f"L{subject.adapter.layer_of(hook.name)}.mlp"]
        diff[:, :, i] = act - corrupt[:, :, i]

    def correct_heads(act, *, hook):
        layer, role = subject.adapter.role_of(hook.name)
        part = role[0]  # q_input, k_input, v_input
        cols = [rindex[f"L{layer}H{h}.{part}"] for h in range(act.shape[2])]
        return act - torch.einsum("bpsd,sh->bphd", diff, missing[:, cols])

    def correct_single(name: str):
        def fn(act, *, hook):
            return act - torch.einsum("bpsd,s->bpd", diff, missing[:, rindex[name]])

        return fn

    hooks = [(subject.adapter.resid_pre(0), record_embed)]
    for layer in range(subject.n_layers):
        hooks += [(subject.adapter.qkv_input(layer, q), correct_heads) for q in "qkv"]
        hooks.append((subject.adapter.attn(layer, "z"), record_heads))
        if has_mlp:
            hooks.append((subject.adapter.mlp_in(layer), correct_single(f"L{layer}.mlp")))
            hooks.append((subject.adapter.mlp_out(layer), record_mlp))
    final = {}

    def read_final(act, *, hook):
        out = correct_single("logits")(act, hook=hook)
        final["resid"] = out
        return out

    hooks.append((subject.final_hook(), read_final))
    with split_inputs(subject), quiet_tl_warnings(), subject.hooks(hooks):
        subject.adapter.forward_hidden(clean_tokens, ctx.mask)
    answers = None if contrast.answers is None else contrast.answers.to(subject.device)
    read = readout(
        subject=subject,
        metric=metric,
        final=final["resid"],
        logits=None,
        scored=ctx.scored,
        answers=answers,
        mask=ctx.mask,
    )
    from interp_audit.model.metrics import MetricContext

    reference = None
    if metric.needs_reference:
        clean_read = readout(
            subject=subject,
            metric=metric,
            final=cached_run(subject, clean_tokens, ctx.mask, {subject.final_hook()})[0][
                subject.final_hook()
            ],
            logits=None,
            scored=ctx.scored,
            answers=answers,
            mask=ctx.mask,
        )
        reference = clean_read
    return metric(read, MetricContext(answers=answers, reference=reference))


@dataclass
class Circuit:
    """The edges kept by :func:`prune` and how much of the behaviour they recover."""

    edges: list[str]
    scores: list[float]
    faithfulness: float
    metric: dict[str, float]
    n_edges_total: int

    def __repr__(self) -> str:
        return (
            f"Circuit({len(self.edges)}/{self.n_edges_total} edges, faithfulness "
            f"{self.faithfulness:.3f})"
        )

    def nodes(self) -> list[str]:
        out: list[str] = []
        for e in self.edges:
            for n in e.split("->"):
                if n not in out:
                    out.append(n)
        return out

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(e)}</td><td>{s:+.4f}</td></tr>"
            for e, s in zip(self.edges[:20], self.scores[:20], strict=False)
        )
        m = ", ".join(f"{k}={v:.4f}" for k, v in self.metric.items())
        return (
            f"<div><b>{html.escape(repr(self))}</b><br><small>{html.escape(m)}</small><table>"
            f"<tr><th>edge</th><th>score</th></tr>{rows}</table></div>"
        )


def prune(
    subject: Subject,
    contrast: ContrastSet,
    edge_scores: Effects,
    *,
    top_k: int,
    metric: Metric | str | None = None,
) -> Circuit:
    """Keep the ``top_k`` edges by |score| and measure faithfulness by real edge patching.

    faithfulness = (M(circuit) - M(counterfactual)) / (M(clean) - M(counterfactual)), with the
    circuit run on clean inputs and every other edge corrupted to its counterfactual value.
    """
    metric = get_metric(metric or edge_scores.metric)
    graph = EdgeGraph.of(subject)
    n_valid = int(graph.valid.sum())
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 0 <= top_k <= n_valid:
        raise AuditError(
            f"prune(top_k={top_k!r}): top_k must be a whole number of edges in 0..{n_valid} "
            "(this model's edge count)"
        )
    flat = edge_scores.values.flatten().clone()
    flat[flat.isnan()] = -float("inf")
    valid = graph.valid.flatten()
    order = torch.argsort(
        torch.where(
            valid, edge_scores.values.flatten().abs().nan_to_num(nan=-1.0), torch.tensor(-1.0)
        ),
        descending=True,
    )
    chosen = [i for i in order.tolist() if valid[i]][:top_k]
    keep = torch.zeros_like(valid)
    keep[chosen] = True
    circuit = float(patch_edges(subject, contrast, keep.view_as(graph.valid), metric).mean())
    clean = float(patch_edges(subject, contrast, graph.valid, metric).mean())
    cf = float(patch_edges(subject, contrast, torch.zeros_like(graph.valid), metric).mean())
    if abs(clean - cf) < 1e-8:
        raise AuditError(
            "cannot measure faithfulness: the metric is the same on clean and counterfactual runs"
        )
    return Circuit(
        edges=[edge_scores.components[i] for i in chosen],
        scores=[float(edge_scores.values.flatten()[i]) for i in chosen],
        faithfulness=(circuit - cf) / (clean - cf),
        metric={"clean": clean, "counterfactual": cf, "circuit": circuit},
        n_edges_total=int(valid.sum()),
    )
