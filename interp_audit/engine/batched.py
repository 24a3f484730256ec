"""The batched patching engine: many patched variants of a prompt batch in few forward passes.

A *variant* is a set of :class:`Patch` es (hook, index, value). Variants ride on the batch axis
(variant-major: row ``v * b + i`` is example ``i`` under variant ``v``). Execution is
*staggered*: a variant joins the batch at the first layer it patches, starting from the cached
base residual stream there, so layers below a patch point are computed once (in the base run)
and never again. For per-position patches in causal models only the positions from the patched
one onward are recomputed; earlier positions come from the base run's key/value cache. Only the
readout the metric needs is computed (two answer logits, not the vocabulary).

Pairs whose two prompts differ in token count are patched at aligned positions
(:mod:`interp_audit.engine.alignment`): the source run's activations are moved onto the base
run's positions once, in :meth:`RunContext.build`, and equal the base ones where a position has
no counterpart, so every patch below is an ordinary same-position patch. A patch may name a
:class:`Slot` instead of a position: it then covers each row's own positions of that slot.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from interp_audit.core.errors import AuditError
from interp_audit.engine import window
from interp_audit.engine.alignment import Alignment, Slot, align_source
from interp_audit.engine.contrasts import ContrastSet
from interp_audit.engine.executor_base import current_executor
from interp_audit.model import memory
from interp_audit.model.adapters import hooks as hook_names
from interp_audit.model.metrics import Metric, MetricContext
from interp_audit.model.readout import readout
from interp_audit.model.subject import Subject, quiet_tl_warnings


@dataclass(frozen=True)
class Patch:
    """Set ``activation[hook][:, *index] = value[:, *index]`` (value defaults to the source run)."""

    hook: str
    index: tuple = ()
    value: Tensor | None = field(default=None, compare=False, hash=False)

    @property
    def layer(self) -> int:
        layer = hook_names.layer_of(self.hook)
        return 0 if layer is None else layer

    @property
    def pos_dim(self) -> int:
        """Non-batch axis that indexes query positions (sliced when positions are skipped)."""
        role = hook_names.role_of(self.hook)
        return 1 if role is not None and role[1] in ("head.pattern", "head.scores") else 0

    def position(self) -> int | None:
        """The single query position this patch touches, or None if it spans all positions."""
        if len(self.index) <= self.pos_dim:
            return None
        p = self.index[self.pos_dim]
        return p if isinstance(p, int) else None

    @property
    def slot(self) -> Slot | None:
        """The alignment slot this patch covers (per row), or None."""
        if len(self.index) <= self.pos_dim:
            return None
        p = self.index[self.pos_dim]
        return p if isinstance(p, Slot) else None


def index_mask(patch: Patch, shape: tuple[int, ...], rows: Tensor | None, device) -> Tensor:
    """``[b, *shape[1:]]`` bool: where ``patch`` writes, per row (a slot covers each row's own
    positions, ``rows`` ``[b, width]``; offsets already applied)."""
    idx = tuple(slice(None) if isinstance(i, Slot) else i for i in patch.index)
    out = torch.zeros(shape, dtype=torch.bool, device=device)
    out[(slice(None), *idx)] = True
    if patch.slot is not None:
        d = 1 + patch.pos_dim
        view = [rows.shape[0]] + [1] * (len(shape) - 1)
        view[d] = rows.shape[1]
        out &= rows.to(device).reshape(view)
    return out


Variant = tuple[Patch, ...]


def _entry(v: Variant) -> int:
    return min(p.layer for p in v)


def _start(ctx: RunContext, v: Variant, skip: bool) -> int | None:
    """First position a variant must recompute; None when it changes nothing at all."""
    firsts = [ctx.first_change(p) for p in v]
    live = [f for f in firsts if f is not None]
    if not live:
        return None
    return min(live) if skip else 0


@dataclass
class RunContext:
    """Base and source runs of one example batch, cached for the variants that follow."""

    subject: Subject
    metric: Metric
    base_tokens: Tensor
    mask: Tensor
    scored: Tensor
    metric_ctx: MetricContext
    base_resid: list[Tensor]
    base_kv: list[tuple[Tensor, Tensor]] | None
    base_mid: list[Tensor] | None
    source: dict[str, Tensor]
    base_sites: dict[str, Tensor]
    base_values: Tensor
    source_values: Tensor
    fast: bool
    recipe: dict | None = field(default=None, repr=False)  # how to rebuild it on a worker
    #: unequal-length pairs: base position -> source position (-1: none); None = one to one
    position_map: Tensor | None = field(default=None, repr=False)
    alignment: Alignment | None = field(default=None, repr=False)
    base_side: str = "counterfactual"
    #: layers whose attention output has a hook on it (an ablation): no mid-block entry there
    attn_hooked: frozenset[int] = frozenset()
    _slot_rows: dict = field(default_factory=dict, repr=False)

    def slot_rows(self, slot: Slot) -> Tensor:
        """``[b, pos]`` bool: the base run's positions of ``slot``, per row (where patchable)."""
        if slot not in self._slot_rows:
            self._slot_rows[slot] = (
                self._alignment()
                .slot_positions(slot, self.base_side, int(self.base_tokens.shape[1]))
                .to(self.base_tokens.device)
            )
        return self._slot_rows[slot]

    def slot_present(self, variant: Variant) -> Tensor | None:
        """``[b]`` bool: rows in which every slot of ``variant`` exists (None: no slots)."""
        slots = [p.slot for p in variant if p.slot is not None]
        if not slots:
            return None
        out = torch.ones(self.batch, dtype=torch.bool)
        for slot in slots:
            out &= self._alignment().slot_present(slot)
        return out

    def _alignment(self) -> Alignment:
        if self.alignment is None:  # equal-length pairs: computed on first use (slot patches)
            if self.recipe is None:
                raise AuditError("a slot patch needs the contrast set this context was built on")
            self.alignment = self.recipe["contrast"].alignment()
        return self.alignment

    def fill_unmatched(self, base: dict[str, Tensor]) -> None:
        """Source activations at base positions without a counterpart := the base ones.

        Runs that skip the base run in :meth:`build` (attribution: its gradient pass is the
        base run) call this with the base activations they captured.
        """
        if self.position_map is None:
            return
        for name, act in self.source.items():
            if name in base:
                self.source[name] = torch.where(act.isnan(), base[name].to(act.dtype), act)

    @property
    def batch(self) -> int:
        return int(self.base_tokens.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.base_tokens.shape[1])

    def window(self, offset: int):
        """Hooks on the model see a partial forward from ``offset`` (engine/window.py)."""
        return window.at(offset, self.seq_len, self.batch)

    def first_change(self, patch: Patch) -> int | None:
        """First query position where this patch changes anything, or None if it is a no-op.

        Patching a source activation equal to the base one changes nothing, and in a causal
        model positions before the first differing token are equal in both runs: those
        positions (or the whole variant) need no recomputation. Checked on the tensors, exactly.
        """
        if patch.value is not None or patch.hook not in self.base_sites:
            return 0
        base, src = self.base_sites[patch.hook], self.source[patch.hook]
        if patch.slot is not None:
            where = index_mask(patch, tuple(base.shape), self.slot_rows(patch.slot), base.device)
            differs = (base != src) & where
            if not bool(differs.any()):
                return None
            along = differs.movedim(1 + patch.pos_dim, 0).reshape(
                differs.shape[1 + patch.pos_dim], -1
            )
            return int(along.any(1).nonzero()[0, 0])
        idx = (slice(None), *patch.index)
        differs = base[idx] != src[idx]
        pos = patch.position()
        if pos is not None or not differs.any():
            return pos if bool(differs.any()) else None
        d = 1 + patch.pos_dim
        if differs.ndim <= d:
            return 0
        along = differs.movedim(d, 0).reshape(differs.shape[d], -1).any(1)
        return int(along.nonzero()[0, 0])

    def run_chunk(self, chunk: Sequence[Variant], start: int) -> Tensor:
        """One planned forward pass (see :func:`run_chunk`)."""
        return run_chunk(self, chunk, start)

    @classmethod
    @torch.no_grad()
    def build(
        cls,
        subject: Subject,
        contrast: ContrastSet,
        metric: Metric,
        *,
        direction: str = "denoise",
        source_hooks: Sequence[str] = (),
        need_kv: bool = False,
        base_run: bool = True,
        base_hooks: Sequence[str] = (),
    ) -> RunContext:
        """Run and cache the source run, and the base run unless ``base_run=False``.

        Attribution skips the base run here: its gradient pass is the base run, and it fills
        ``base_values`` from there (two forwards and one backward in all). ``base_hooks`` are
        cached from the base run too (in ``base_sites``, beside the source hooks).
        """
        contrast.check_fits(subject)  # ids and lengths this model can run, pair named
        dev = subject.device
        live = subject.live_hooks()  # the user's hooks (ablations): before ours are attached
        # a hook that does not read the engine's window may index positions or rows its own
        # way: then every variant runs as a full forward (see engine/window.py)
        foreign = window.undeclared(subject.model, live)
        if direction == "denoise":
            base_tokens, source_tokens = contrast.counterfactual, contrast.clean
            base_side, source_side = "counterfactual", "clean"
        else:
            base_tokens, source_tokens = contrast.clean, contrast.counterfactual
            base_side, source_side = "clean", "counterfactual"
        base_tokens, source_tokens = base_tokens.to(dev), source_tokens.to(dev)
        # each side its own mask and scored positions (their token counts may differ)
        mask = contrast.attention_mask(base_side).to(dev)
        source_mask = contrast.attention_mask(source_side).to(dev)
        scored = subject.scored_positions(contrast, base_side).to(dev)
        source_scored = subject.scored_positions(contrast, source_side).to(dev)
        answers = None if contrast.answers is None else contrast.answers.to(dev)
        adapter = subject.adapter
        fast = adapter.fast_path and not foreign
        need_kv = need_kv and adapter.kv_cache
        n = subject.n_layers
        final = subject.final_hook()
        base_names = {final}
        if fast:
            base_names |= {adapter.resid_pre(layer) for layer in range(n)}
            if need_kv:
                base_names |= {h for layer in range(n) for h in adapter.kv_hooks(layer)}
        # source hooks too: to tell which patches change nothing
        base_names |= set(source_hooks) | set(base_hooks)
        mid = adapter.mid_block_entry
        if mid:
            base_names |= {adapter.mid_hook(layer) for layer in range(n)}
        source_names = set(source_hooks) | {final}
        if not base_run:
            base_names = set()
        base_cache, base_logits = (
            cached_run(subject, base_tokens, mask, base_names) if base_run else ({}, None)
        )
        src_cache, src_logits = cached_run(subject, source_tokens, source_mask, source_names)
        readout_kw = dict(subject=subject, metric=metric, scored=scored, answers=answers, mask=mask)
        base_read = (
            readout(final=base_cache[final], logits=base_logits, **readout_kw) if base_run else None
        )
        src_read = readout(
            final=src_cache[final],
            logits=src_logits,
            **{**readout_kw, "scored": source_scored, "mask": source_mask},
        )
        source = {k: src_cache[k] for k in source_hooks}
        position_map = alignment = None
        if not contrast.equal_lengths:  # the source's activations onto the base positions
            alignment = contrast.alignment()
            position_map = alignment.position_map(base_side, contrast.seq_len)
            dims = subject.adapter.position_dims
            source = {
                k: align_source(v, base_cache.get(k), position_map, dims(k))
                for k, v in source.items()
            }
        reference = None
        if metric.needs_reference:  # the clean run is the reference, whatever the direction
            if direction == "noise" and not base_run:
                base_cache, base_logits = cached_run(subject, base_tokens, mask, {final})
                base_read = readout(final=base_cache[final], logits=base_logits, **readout_kw)
            reference = src_read if direction == "denoise" else base_read
        mctx = MetricContext(
            answers=answers,
            reference=reference,
            extra={k: v.to(dev) for k, v in contrast.extra.items()},
        )
        return cls(
            subject=subject,
            metric=metric,
            base_tokens=base_tokens,
            mask=mask,
            scored=scored,
            metric_ctx=mctx,
            base_resid=[base_cache[adapter.resid_pre(layer)] for layer in range(n)]
            if fast and base_run
            else [],
            base_kv=[(base_cache[k], base_cache[v]) for k, v in map(adapter.kv_hooks, range(n))]
            if fast and need_kv and base_run
            else None,
            base_mid=[base_cache[adapter.mid_hook(layer)] for layer in range(n)]
            if mid and base_run
            else None,
            source=source,
            base_sites={k: base_cache[k] for k in {*source_hooks, *base_hooks}} if base_run else {},
            base_values=metric(base_read, mctx) if base_run else torch.empty(0),
            source_values=metric(src_read, mctx),
            fast=fast,
            recipe={
                "contrast": contrast,
                "metric": metric,
                "kwargs": dict(
                    direction=direction,
                    source_hooks=tuple(source_hooks),
                    need_kv=need_kv,
                    base_run=base_run,
                    base_hooks=tuple(base_hooks),
                ),
            },
            position_map=position_map,
            alignment=alignment,
            base_side=base_side,
            attn_hooked=_attention_output_hooked(subject, live),
        )


def _attention_output_hooked(subject: Subject, live: Sequence[str]) -> frozenset[int]:
    """Layers with a live hook on a head's result or the attention output: a head patch's
    change cannot be added past them (the hook would not see it)."""
    out = set()
    for name in live:
        found = subject.adapter.role_of(name)
        if found is not None and found[1] in ("head.result", "attn"):
            out.add(found[0])
    return frozenset(out)


def cached_run(
    subject: Subject, tokens: Tensor, mask: Tensor, names: set[str]
) -> tuple[dict[str, Tensor], Tensor | None]:
    """One forward with the named activations cached (and full logits without a fast path)."""
    cache: dict[str, Tensor] = {}

    def saver(name: str):  # keyed by the name asked for: TransformerBridge hooks answer to aliases
        def save(act, *, hook):
            cache[name] = act.detach()

        return save

    with (
        torch.no_grad(),
        quiet_tl_warnings(),
        window.at(),  # a full forward: every position, every row its own example
        subject.hooks([(name, saver(name)) for name in sorted(names)]),
    ):
        logits = subject.adapter.forward_hidden(tokens, mask)
    return cache, logits


class _PatchHook:
    """One hook function applying every variant's patch at one hook point, vectorised.

    ``offset`` is the absolute position of the activation's first query position (it moves
    when positions are skipped); patches at positions outside the current slice are skipped.
    """

    def __init__(
        self,
        entries: list[tuple[int, Patch]],
        source: dict[str, Tensor],
        offset: int,
        batch: int,
        slot_rows=None,
    ):
        self.entries = entries  # (variant slot in the running batch, patch)
        self.source = source
        self.offset = offset
        self.batch = batch
        self.slot_rows = slot_rows  # Slot -> [b, pos] bool (RunContext.slot_rows)

    def _rows_mask(self, patch: Patch, act: Tensor) -> Tensor:
        """``[b, *act.shape[1:]]``: a slot patch's positions in each row of this slice."""
        width = act.shape[1 + patch.pos_dim]
        rows = self.slot_rows(patch.slot)[:, self.offset : self.offset + width]
        return index_mask(patch, (self.batch, *act.shape[1:]), rows, act.device)

    def _shift(self, patch: Patch, length: int) -> tuple | None:
        idx = list(patch.index)
        d = patch.pos_dim
        if len(idx) > d and isinstance(idx[d], int):
            idx[d] -= self.offset
            if not 0 <= idx[d] < length:
                return None
        return tuple(idx)

    def _slice(self, t: Tensor, patch: Patch, act: Tensor) -> Tensor:
        d = 1 + patch.pos_dim
        sl = [slice(None)] * t.ndim
        sl[d] = slice(self.offset, self.offset + act.shape[d])
        if patch.pos_dim == 1:  # attention pattern: keys run up to the current query
            sl[-1] = slice(0, act.shape[-1])
        return t[tuple(sl)]

    def __call__(self, act: Tensor, *, hook) -> Tensor:
        b = self.batch
        n_slots = act.shape[0] // b
        view = act.view(n_slots, b, *act.shape[1:])
        length_of = {p.pos_dim: act.shape[1 + p.pos_dim] for _, p in self.entries}
        live = [
            (s, p, i)
            for s, p in self.entries
            if (i := self._shift(p, length_of[p.pos_dim])) is not None
        ]
        shared = [(s, p, i) for s, p, i in live if p.value is None]
        if shared:
            src = self._slice(self.source[shared[0][1].hook], shared[0][1], act).to(act.dtype)
            rows = b if any(p.slot is not None for _, p, _ in shared) else 1
            mask = torch.zeros((n_slots, rows, *act.shape[1:]), dtype=torch.bool, device=act.device)
            for slot, patch, idx in shared:
                if patch.slot is not None:  # each row its own positions
                    mask[slot] |= self._rows_mask(patch, act)
                else:
                    mask[(slot, slice(None), *idx)] = True
            view = torch.where(mask, src.unsqueeze(0), view)
        own = [(s, p, i) for s, p, i in live if p.value is not None]
        if own:
            view = view.clone() if not shared else view
            for slot, patch, idx in own:
                value = self._slice(patch.value, patch, act).to(act.dtype)
                if patch.slot is not None:
                    view[slot] = torch.where(self._rows_mask(patch, act), value, view[slot])
                    continue
                full = (slice(None), *idx)
                view[slot][full] = value[full]
        return view.reshape(act.shape)


def default_max_rows(
    subject: Subject,
    seq_len: int,
    max_memory: int | None = None,
    hooks: Sequence[str] | None = None,
) -> int:
    """Rows (sequences) per forward that fit ``max_memory`` bytes (see :mod:`.memory`)."""
    return memory.max_rows(subject, seq_len, max_memory, hooks)


def plan_chunks(
    ctx: RunContext, variants: Sequence[Variant], *, max_rows: int = 256
) -> tuple[list[int], list[tuple[int, list[int]]]]:
    """Split a sweep into forward passes: (no-op variant indices, [(start, variant indices)]).

    The chunking is a pure function of the context and the variants, so any executor that runs
    these chunks as given computes exactly the local numbers (same batch composition per pass).
    """
    skip = ctx.base_kv is not None and ctx.fast
    per_chunk = max(1, max_rows // ctx.batch)
    noop: list[int] = []
    groups: dict[int, list[int]] = defaultdict(list)
    for i, v in enumerate(variants):
        start = _start(ctx, v, skip)
        if start is None:
            noop.append(i)
        else:
            groups[start].append(i)
    chunks = []
    for start, idxs in _merge_starts(ctx, variants, groups, per_chunk) if skip else groups.items():
        idxs.sort(key=lambda i: _entry(variants[i]))
        chunks += [(start, idxs[k : k + per_chunk]) for k in range(0, len(idxs), per_chunk)]
    return noop, chunks


#: What one block call costs beyond its matmuls, in FLOPs at the device's dense rate: Python,
#: op dispatch, hooks and copies on CPU (~0.7 ms at ~70 GFLOP/s, measured on the small
#: benchmark configs), kernel launches on a GPU (~30 launches of ~10 us at ~30 TFLOP/s: not
#: measured yet). Fixed per device kind, so a plan never depends on timing.
CALL_OVERHEAD_FLOPS = {"cpu": 5e7, "cuda": 1e10, "mps": 1e9}
_LOOKBACK = 64  # start groups one forward may merge, at most


def _token_flops(subject: Subject) -> int:
    """Matmul FLOPs of one position through one block (projections and MLP)."""
    x = subject.adapter.sizes
    d, h, dh, kv, dm = x["d"], x["h"], x["dh"], x["kv"], x["dm"]
    return 2 * d * (h + 2 * kv) * dh + 2 * h * dh * d + (3 if x["gated"] else 2) * 2 * d * dm


def _merge_starts(
    ctx: RunContext, variants: Sequence[Variant], groups: dict[int, list[int]], per_chunk: int
) -> list[tuple[int, list[int]]]:
    """Start groups merged into forwards from the earliest start among them, where the block
    calls saved cost more than the positions added (a dynamic programme over the sorted
    starts; :data:`CALL_OVERHEAD_FLOPS`). Positions before a variant's own start change
    nothing (its patch comes later), so they recompute base values: same numbers, to float
    rounding. On small models, where a block call costs more than a few positions, position
    sweeps then run as a few wide forwards instead of one thin forward per position."""
    starts = sorted(groups)
    if len(starts) < 2:
        return [(s, groups[s]) for s in starts]
    n_layers, seq = ctx.subject.n_layers, ctx.seq_len
    overhead = CALL_OVERHEAD_FLOPS.get(ctx.subject.device.type, 1e9) / _token_flops(ctx.subject)
    entries = {s: [_entry(variants[i]) for i in groups[s]] for s in starts}
    layers = {s: sum(n_layers - e for e in entries[s]) for s in starts}  # block calls x rows
    best = [0.0] * (len(starts) + 1)  # best[j]: cost of the first j groups
    cut = [0] * (len(starts) + 1)
    for j in range(1, len(starts) + 1):
        best[j], rows_layers, count, first = float("inf"), 0, 0, n_layers
        for i in range(j - 1, max(-1, j - 1 - _LOOKBACK), -1):  # groups i..j-1, from starts[i]
            s = starts[i]
            rows_layers += layers[s]
            count += len(groups[s])
            first = min(first, *entries[s])
            calls = -(-count // per_chunk) * (n_layers - first)
            cost = best[i] + calls * overhead + ctx.batch * rows_layers * (seq - s)
            if cost < best[j]:
                best[j], cut[j] = cost, i
    merged, j = [], len(starts)
    while j:
        i = cut[j]
        merged.append((starts[i], [v for s in starts[i:j] for v in groups[s]]))
        j = i
    return merged[::-1]


def run_chunk(ctx: RunContext, chunk: Sequence[Variant], start: int) -> Tensor:
    """Per-example metric of one forward pass over ``chunk``: ``[len(chunk), batch]``."""
    with torch.no_grad(), quiet_tl_warnings():
        if ctx.fast:
            return _run_chunk_fast(ctx, list(chunk), start)
        with window.at(0, ctx.seq_len, ctx.batch):
            return _run_chunk_full(ctx, list(chunk))


def run_variants(
    ctx: RunContext,
    variants: Sequence[Variant],
    *,
    max_rows: int = 256,
    progress: bool | None = None,
    desc: str = "patching",
) -> Tensor:
    """Per-example metric under each variant: ``[n_variants, batch]``.

    The chunks run on the current executor (``interp_audit.engine.executors.using``): in this
    process
    by default, or on Ray actors; either way the numbers are the same, bit for bit.
    """
    subject = ctx.subject
    out = torch.empty(
        (len(variants), ctx.batch),
        dtype=torch.promote_types(subject.dtype, torch.float32),
        device=subject.device,
    )
    if not variants:
        return out
    noop, chunks = plan_chunks(ctx, variants, max_rows=max_rows)
    if noop:
        out[noop] = ctx.base_values.to(out.dtype)
    if progress is None:
        progress = len(chunks) > 8 and not os.environ.get("TQDM_DISABLE")
    results = current_executor().run_chunks(ctx, variants, chunks, progress=progress, desc=desc)
    for (_, idxs), values in zip(chunks, results, strict=True):
        out[idxs] = values.to(device=out.device, dtype=out.dtype)
    for i, v in enumerate(variants):  # a slot a pair lacks was not patched there: NaN, no number
        present = ctx.slot_present(v)
        if present is not None:
            out[i, ~present.to(out.device)] = float("nan")
    return out


def _hooks_for(
    ctx: RunContext, slots: list[tuple[int, Variant]], start: int, layer: int | None
) -> list[tuple[str, _PatchHook]]:
    by_hook: dict[str, list[tuple[int, Patch]]] = defaultdict(list)
    for slot, v in slots:
        for p in v:
            if layer is None or p.layer == layer:
                by_hook[p.hook].append((slot, p))
    return [
        (name, _PatchHook(entries, ctx.source, start, ctx.batch, ctx.slot_rows))
        for name, entries in by_hook.items()
    ]


_ATTENTION_OUTPUTS = ("head", "attn")  # roles: head outputs (z), attention output


def _role(ctx: RunContext, hook: str) -> str | None:
    found = ctx.subject.adapter.role_of(hook)
    return None if found is None else found[1]


def _enters_mid_block(ctx: RunContext, v: Variant) -> bool:
    """True when a variant changes only head/attention outputs at its entry layer."""
    if ctx.base_mid is None:
        return False
    entry = _entry(v)
    if entry in ctx.attn_hooked:
        return False
    return all(
        _role(ctx, p.hook) in _ATTENTION_OUTPUTS and p.hook in ctx.base_sites
        for p in v
        if p.layer == entry
    )


def _mid_block_resid(
    ctx: RunContext, layer: int, slots: list[tuple[int, Variant]], start: int
) -> Tensor:
    """resid_mid of variants entering at ``layer``: the base one plus their attention-output change.

    Attention itself is unchanged by patching its own outputs, so it is not recomputed.
    """
    subject, k = ctx.subject, len(slots)
    delta = None
    for hook_name, hook in _hooks_for(ctx, slots, start, layer):
        base = ctx.base_sites[hook_name][:, start:].repeat(
            k, *([1] * (ctx.base_sites[hook_name].ndim - 1))
        )
        change = hook(base, hook=None) - base
        if _role(ctx, hook_name) == "head":
            change = subject.adapter.head_output(layer, change)
        delta = change if delta is None else delta + change
    return ctx.base_mid[layer][:, start:].repeat(k, 1, 1) + delta


def _run_chunk_fast(ctx: RunContext, chunk: list[Variant], start: int) -> Tensor:
    subject = ctx.subject
    b = ctx.batch
    entering: dict[int, list[int]] = defaultdict(list)
    for j, v in enumerate(chunk):
        entering[_entry(v)].append(j)
    order: list[int] = []
    resid = None
    adapter = subject.adapter
    enc_mask = adapter.encoder_mask(ctx.mask, subject.dtype)
    scored = ctx.scored
    one_position = (
        adapter.kv_cache and bool((scored == scored[0]).all()) and int(scored[0]) >= start
    )
    last = subject.n_layers - 1
    read_from = start
    for layer in range(min(entering), subject.n_layers):
        new = entering.get(layer, [])
        mid = [j for j in new if _enters_mid_block(ctx, chunk[j])]
        full = [j for j in new if j not in mid]
        if full:
            block_in = ctx.base_resid[layer][:, start:].repeat(len(full), 1, 1)
            resid = block_in if resid is None else torch.cat([resid, block_in])
            order += full
        outs = []
        if order:
            n_act = len(order)
            hooks = _hooks_for(
                ctx, [(slot, chunk[j]) for slot, j in enumerate(order)], start, layer
            )
            kv = None
            if start:
                kv = tuple(
                    t[:, :start].repeat(n_act, *([1] * (t.ndim - 1))) for t in ctx.base_kv[layer]
                )
            mask = None if enc_mask is None else enc_mask.repeat(n_act, 1, 1, 1)
            with subject.hooks(hooks):
                if layer == last and one_position:
                    out, read_from = _last_block_at(
                        ctx, layer, resid, kv, hooks, start, int(scored[0])
                    )
                else:
                    with ctx.window(start):
                        out = adapter.run_block(layer, resid, past_kv=kv, encoder_mask=mask)
            outs.append(out)
        if mid:
            slots = [(slot, chunk[j]) for slot, j in enumerate(mid)]
            resid_mid = _mid_block_resid(ctx, layer, slots, start)
            if layer == last and one_position:
                pos = int(scored[0])
                resid_mid, read_from = resid_mid[:, pos - start : pos - start + 1], pos
            offset = read_from if layer == last and one_position else start
            hooks = _hooks_for(ctx, slots, offset, layer)
            with subject.hooks(hooks), ctx.window(offset):
                outs.append(adapter.run_block_after_attention(layer, resid_mid))
            order += mid
        resid = outs[0] if len(outs) == 1 else torch.cat(outs)
    n_act = len(order)
    read = readout(
        subject=subject,
        metric=ctx.metric,
        final=resid,
        logits=None,
        scored=scored.repeat(n_act),
        answers=None if ctx.metric_ctx.answers is None else ctx.metric_ctx.answers.repeat(n_act, 1),
        mask=ctx.mask.repeat(n_act, 1),
        start=read_from,
    )
    values = ctx.metric(read, ctx.metric_ctx.repeat(n_act)).view(n_act, b)
    out = torch.empty_like(values)
    out[torch.tensor(order, device=values.device)] = values
    return out


def _last_block_at(
    ctx: RunContext, layer: int, resid: Tensor, kv, hooks, start: int, pos: int
) -> tuple[Tensor, int]:
    """The last block computed only at the scored position ``pos``.

    Its other positions feed nothing downstream; they only contribute keys and values, which
    are computed (through the same hooks, so k/v patches apply) without queries or MLPs.
    """
    subject = ctx.subject
    if pos > start:
        with ctx.window(start):
            k, v = subject.adapter.block_kv(layer, resid[:, : pos - start])
        k_all = k if kv is None else torch.cat([kv[0], k], dim=1)
        v_all = v if kv is None else torch.cat([kv[1], v], dim=1)
        kv = (k_all, v_all)
    for _, hook in hooks:
        hook.offset = pos
    with ctx.window(pos):
        out = subject.adapter.run_block(layer, resid[:, pos - start : pos - start + 1], past_kv=kv)
    return out, pos


def _run_chunk_full(ctx: RunContext, chunk: list[Variant]) -> Tensor:
    """Models without a fast path: one full hooked forward over all variants of the chunk."""
    subject = ctx.subject
    n = len(chunk)
    hooks = _hooks_for(ctx, list(enumerate(chunk)), 0, None)
    with subject.hooks(hooks):
        logits = subject.adapter.forward_logits(ctx.base_tokens.repeat(n, 1), ctx.mask.repeat(n, 1))
    answers = None if ctx.metric_ctx.answers is None else ctx.metric_ctx.answers.repeat(n, 1)
    read = ctx.metric.readout_from_logits(logits, ctx.scored.repeat(n), answers)
    return ctx.metric(read, ctx.metric_ctx.repeat(n)).view(n, ctx.batch)
