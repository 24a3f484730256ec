"""Memory preflight: a sweep's peak memory from shapes, and the rows per forward that fit.

A patching sweep holds three things at once: the model's weights; the cached runs of one example
batch (the base residual stream at every layer, its keys/values, the source activations of the
patched hooks and their base twins); and the working set of the forward pass over a chunk of
variants, which grows linearly with the rows (sequences) in that chunk. Only the last two depend
on the chunk size, both linearly, so the largest chunk that fits a budget is one division, and a
budget that cannot hold even one row is refused up front with the numbers, instead of an
out-of-memory error halfway through a long sweep.

The working set is counted per block from the tensors TransformerLens keeps alive at the same
time (the attention stage: normed input, q/k/v, past and concatenated keys/values, scores,
softmax, NaN guard and pattern; the MLP stage: normed input, pre/post activations and the
activation function's temporaries), plus the residual stream in, out and the copy ``torch.cat``
makes when variants join, plus the patch hooks' ``torch.where`` copies. The test in
``tests/unit/test_memory.py`` checks the estimate against the live tensor bytes the engine
really allocates (counted op by op), so an estimate that is too small is caught.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from interp_audit.core.errors import AuditError
from interp_audit.model.subject import Subject

__all__ = [
    "MemoryEstimate",
    "estimate_gradient",
    "estimate_sweep",
    "gradient_plan",
    "hook_elements",
    "max_rows",
]

#: Rows per forward without a budget: the engine's historical defaults, kept so results and
#: speed do not change for users who never set ``max_memory``.
DEFAULT_ROWS = {"cpu": 256, "cuda": 2048, "mps": 512}

#: Fraction of free memory a default (budget-less) sweep plans to use: allocator slack,
#: fragmentation and the user's other tensors get the rest.
FREE_FRACTION = 0.7


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a sweep needs, split by what grows with the chunk size and what does not."""

    weights: int
    cache_per_example: int
    work_per_row: int
    rows: int
    budget: int | None = None
    examples: int | None = None
    #: bytes a forward holds whatever its rows (the attention mask of a lean block call)
    work_fixed: int = 0
    #: what the estimate is of ("sweep", "gradient, full graph", "gradient, layer by layer")
    what: str = "sweep"

    @property
    def cached_examples(self) -> int:
        """Examples whose cached runs are alive at once.

        One base batch of ``rows`` examples (fewer when the set is smaller); two when the set
        needs several batches, since the next batch's runs are built while the last one's are
        still referenced. Unknown set size: two, to be safe.
        """
        if self.examples is None or self.examples > self.rows:
            return 2 * self.rows
        return self.examples

    @property
    def per_row(self) -> int:
        """Bytes one more row costs at most: two cached batches' share plus its working set."""
        return 2 * self.cache_per_example + self.work_per_row

    @property
    def activations(self) -> int:
        """Peak bytes of activations (everything but the weights) at ``rows`` rows."""
        cached = self.cached_examples * self.cache_per_example
        return cached + self.rows * self.work_per_row + self.work_fixed

    @property
    def peak(self) -> int:
        return self.weights + self.activations

    def describe(self) -> str:
        mib = 2**20
        fixed = f" + {self.work_fixed / mib:.2f} MiB per forward" if self.work_fixed else ""
        held = "cached example(s)" if self.what == "sweep" else "example(s) held"
        return (
            f"weights {self.weights / mib:.1f} MiB + {self.cached_examples} {held} x "
            f"{self.cache_per_example / mib:.2f} MiB + {self.rows} row(s) x "
            f"{self.work_per_row / mib:.2f} MiB working set{fixed} = {self.peak / mib:.1f} MiB"
        )


def _dims(subject: Subject) -> dict[str, int]:
    return subject.adapter.sizes


def hook_elements(subject: Subject, hook: str, seq_len: int) -> int:
    """Elements one example's activation at ``hook`` holds (shape from the hook's role)."""
    x = dict(_dims(subject), s=seq_len)
    x["d"] = max(x["d"], 1)
    return math.prod(x[a] for a in subject.adapter.activation_axes(hook))


def _cached_hooks(subject: Subject, hooks: Sequence[str] | None) -> list[str]:
    """Hooks the engine caches per example: base resid/KV/mid per layer, patched sites twice."""
    n, adapter = subject.n_layers, subject.adapter
    names = [subject.final_hook()] * 2
    if adapter.fast_path:
        names += [adapter.resid_pre(layer) for layer in range(n)]
        if adapter.causal:
            names += [h for layer in range(n) for h in adapter.kv_hooks(layer)]
    if adapter.mid_block_entry:
        names += [adapter.mid_hook(layer) for layer in range(n)]
    if hooks is None:  # unknown sweep: assume the largest common one, every head output
        hooks = [adapter.attn(layer, "z") for layer in range(n)]
    return names + list(hooks) * 2  # source run + the base run's twin (for no-op detection)


def scores_held(subject: Subject, hooks: Sequence[str] | None = ()) -> bool:
    """Do block calls hold score-sized tensors? TransformerLens's blocks do; the lean ones
    (adapters/lean.py) do not, unless the sweep patches or something hooks scores/patterns."""
    if subject.adapter.materialises_attention_scores:
        return True
    roles = [subject.adapter.role_of(n) for n in [*(hooks or ()), *subject.live_hooks()]]
    return any(r is not None and r[1] in ("head.pattern", "head.scores") for r in roles)


def _work_elements(subject: Subject, seq_len: int, scores_kept: bool = True) -> tuple[int, int]:
    """(elements in the model dtype, elements in float32) one row keeps alive in a forward."""
    x = _dims(subject)
    s, d, h, dh, kv, dm = seq_len, x["d"], x["h"], x["dh"], x["kv"], x["dm"]
    stream = 4 * s * d  # resid in, block out, torch.cat copy, entering rows' repeat
    past = 2 * s * kv * dh * 2  # the repeated past keys/values and their concatenation
    gqa = 2 * s * h * dh if kv != h else 0  # keys/values repeated to every query head
    attention = 2 * s * d + 5 * s * h * dh + past + gqa  # normed, q/k/v, z (+ patch copy)
    # scores, softmax, zeros_like, where, pattern (float32 at worst); a lean block's
    # scaled_dot_product_attention keeps none (its mask is per forward: work_fixed)
    scores = 5 * h * s * s if scores_kept else 0
    gated = x["gated"]
    mlp = 4 * s * d + (6 if gated else 4) * s * dm  # normed, pre, act temporaries, post, out
    if not subject.adapter.fast_path:  # a full forward: embeddings and every logit per row
        stream += s * x["v"] + 2 * s * d
    return stream + max(attention, mlp), scores


def estimate_sweep(
    subject: Subject,
    seq_len: int,
    rows: int,
    hooks: Sequence[str] | None = None,
    budget: int | None = None,
    *,
    n_examples: int | None = None,
    n_variants: int | None = None,
) -> MemoryEstimate:
    """Peak bytes of a patching sweep at ``rows`` rows per forward.

    Args:
        seq_len: positions per prompt (padded length of the contrast set).
        rows: sequences per forward; also the examples per cached base batch (as ``ia.patch``
            uses it), so the cached runs scale with it too.
        hooks: the patched hook names (source activations are cached per example); None
            assumes a head-output sweep over every layer.
        n_examples, n_variants: the sweep's pairs and variants, when known: a forward then
            holds at most ``n_variants`` whole example batches, and a cached batch at most
            ``n_examples`` examples.
    """
    if n_examples is not None:
        b = max(1, min(rows, n_examples))
        per_forward = (
            max(1, rows // b) if n_variants is None else min(max(1, rows // b), n_variants)
        )
        rows = per_forward * b
    item = torch.finfo(subject.dtype).bits // 8
    cached = sum(hook_elements(subject, name, seq_len) for name in _cached_hooks(subject, hooks))
    kept = scores_held(subject, hooks)
    work, scores = _work_elements(subject, seq_len, kept)
    return MemoryEstimate(
        weights=weight_bytes(subject),
        cache_per_example=cached * item,
        work_per_row=work * item + scores * 4,
        rows=rows,
        budget=budget,
        examples=n_examples,
        work_fixed=0 if kept else 5 * seq_len * seq_len,  # bool mask and its float form
    )


def weight_bytes(subject: Subject) -> int:
    """The parameters, and what the adapter lays out beside them (lean blocks' attention)."""
    params = sum(p.numel() * p.element_size() for p in subject.model.parameters())
    return params + subject.adapter.extra_weight_bytes


def _saved_per_layer(
    subject: Subject, seq_len: int, scores_kept: bool, split: bool
) -> tuple[int, int]:
    """(model-dtype, float32) elements autograd keeps for one layer of one row: the inputs of
    every op with a backward (norm inputs and outputs, q/k/v and their rotated copies, the
    attention output and its log-sum-exp, the head outputs, the MLP's pre-activations and
    products, the residual stream); TransformerLens's blocks also keep score-sized tensors."""
    x = _dims(subject)
    s, d, h, dh, kv, dm = seq_len, x["d"], x["h"], x["dh"], x["kv"], x["dm"]
    split = s * (h + 2 * kv) * d if split else 0  # q/k/v inputs, one copy per head
    attention = 6 * s * d + (4 * h + 6 * kv) * s * dh + s * h + 3 * split
    mlp = (6 if x["gated"] else 4) * s * dm + 3 * s * d
    scores = 4 * h * s * s if scores_kept else 0
    return attention + mlp, scores


def estimate_gradient(
    subject: Subject,
    seq_len: int,
    rows: int,
    capture: Sequence[str],
    *,
    checkpoint: bool,
    copies: int = 4,
    split_inputs: bool = False,
    fixed: int = 0,
    budget: int | None = None,
    n_examples: int | None = None,
) -> MemoryEstimate:
    """Peak bytes of a gradient run (attribution) at ``rows`` rows per forward.

    Held per row for the whole run: ``copies`` of every captured activation (the activation,
    its gradient per backward, the source run's, their product) and the source run's cache.
    Per row while the backward runs: the autograd graph of every layer (``checkpoint=False``),
    or the residual stream at every layer plus one layer's graph (``checkpoint=True``: the
    forward keeps only the stream; each layer is re-run with gradients on the way down).
    ``split_inputs``: every head reads its own copy of its q/k/v input (edge attribution).
    ``fixed``: bytes the method holds once whatever its rows (edge scores' contraction chunk).
    """
    item = torch.finfo(subject.dtype).bits // 8
    n = subject.n_layers
    held = sum(hook_elements(subject, name, seq_len) for name in capture) * copies
    held += 2 * hook_elements(subject, subject.final_hook(), seq_len)
    kept = split_inputs or scores_held(subject, capture)  # split inputs: no lean blocks
    graph, graph_scores = _saved_per_layer(subject, seq_len, kept, split_inputs)
    work, scores = _work_elements(subject, seq_len, kept)
    stream = seq_len * _dims(subject)["d"]
    if checkpoint:  # the stream at every layer, one layer's graph, the gradient in and out
        per_row = n * stream + graph + work + 2 * stream
        per_row_f32 = graph_scores + scores
    else:
        per_row = n * graph + work
        per_row_f32 = n * graph_scores + scores
    return MemoryEstimate(
        weights=weight_bytes(subject),
        cache_per_example=held * item,
        work_per_row=per_row * item + per_row_f32 * 4,
        rows=rows,
        budget=budget,
        examples=n_examples,
        work_fixed=fixed + (0 if kept else 5 * seq_len * seq_len),
        what="gradient, layer by layer" if checkpoint else "gradient, full graph",
    )


def gradient_plan(
    subject: Subject,
    seq_len: int,
    capture: Sequence[str],
    max_memory: int | None,
    *,
    copies: int = 4,
    rows_per_example: int = 1,
    can_checkpoint: bool = True,
    split_inputs: bool = False,
    fixed: int = 0,
) -> tuple[int, bool]:
    """(examples per gradient run, layer by layer?) that fit ``max_memory`` bytes.

    ``rows_per_example``: rows one example takes in a forward (integrated gradients: its
    steps). Prefers the whole graph (one backward, fastest) with as many examples as fit, and
    goes layer by layer (one more forward) only when not even one example's graph fits.

    Raises:
        AuditError: not even one example fits layer by layer; the message gives the estimate.
    """
    if max_memory is None:
        return max(1, max_rows(subject, seq_len) // rows_per_example), False
    modes = (False, True) if can_checkpoint else (False,)
    for checkpoint in modes:
        one = estimate_gradient(
            subject, seq_len, rows_per_example, capture, checkpoint=checkpoint, copies=copies,
            split_inputs=split_inputs, fixed=fixed, budget=max_memory, n_examples=1,
        )  # fmt: skip
        per_example = 2 * one.cache_per_example + rows_per_example * one.work_per_row
        room = int(max_memory) - one.weights - one.work_fixed
        if room >= per_example:
            return int(room // per_example), checkpoint
    raise AuditError(
        f"max_memory={int(max_memory):,} bytes ({int(max_memory) / 2**20:.1f} MiB) cannot hold "
        f"one example of this attribution ({one.what}): {one.describe()} at {seq_len} "
        f"positions on {subject.device}, {str(subject.dtype).replace('torch.', '')}; raise "
        "max_memory, shorten the prompts or use a smaller dtype"
    )


def _free_bytes(device: torch.device) -> int | None:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "cpu":
        try:
            return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return None
    return None


def max_rows(
    subject: Subject,
    seq_len: int,
    max_memory: int | None = None,
    hooks: Sequence[str] | None = None,
) -> int:
    """Rows per forward that fit ``max_memory`` bytes (weights included).

    Without a budget: the device's default chunk, shrunk if it would not fit in
    ``FREE_FRACTION`` of the memory free now (weights are already resident then).

    Raises:
        AuditError: the budget cannot hold the weights and one row; the message gives the
            estimate, so the user can see what to cut (prompt length, dtype, model).
    """
    one = estimate_sweep(subject, seq_len, 1, hooks, max_memory)
    if max_memory is None:
        rows = DEFAULT_ROWS.get(subject.device.type, 256)
        free = _free_bytes(subject.device)
        if free is not None:
            rows = min(rows, max(1, int(free * FREE_FRACTION) // max(1, one.per_row)))
        return rows
    room = int(max_memory) - one.weights - one.work_fixed
    rows = room // max(1, one.per_row)
    if rows < 1:
        raise AuditError(
            f"max_memory={int(max_memory):,} bytes ({int(max_memory) / 2**20:.1f} MiB) cannot "
            f"hold one row of this sweep: {one.describe()} at {seq_len} positions on "
            f"{subject.device}, {str(subject.dtype).replace('torch.', '')}; raise max_memory, "
            "shorten the prompts or use a smaller dtype"
        )
    return int(rows)


class LiveTensorBytes:
    """Context that counts the bytes of tensors allocated inside it, op by op, and their peak.

    A device-independent meter for checking :func:`estimate_sweep` (CPU allocators report no
    peak): every op's outputs are recorded by storage, and storages are dropped once freed.
    Tensors that existed before the context (weights, inputs) are not counted. Slow (it looks
    at every op); for tests and benchmarks, not for production runs.
    """

    def __init__(self, exclude=()) -> None:
        """``exclude``: tensors that existed before (a model's parameters) whose storage ops
        inside may return views of (``W.t()``): not counted as allocations."""
        self.peak = 0
        self.current = 0
        self._live: dict[int, tuple[object, int]] = {}
        self._old = {t.untyped_storage().data_ptr() for t in exclude}

    def _prune(self) -> None:
        for key, (ref, nbytes) in list(self._live.items()):
            if ref.expired():
                del self._live[key]
                self.current -= nbytes

    def _record(self, out) -> None:
        from torch.multiprocessing.reductions import StorageWeakRef

        self._prune()  # freed before this op ran (an op's own inputs are alive: not pruned)
        for t in out if isinstance(out, list | tuple) else (out,):
            if isinstance(t, list | tuple):
                self._record(t)
                continue
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key and key not in self._live and key not in self._old:
                self._live[key] = (StorageWeakRef(storage), storage.nbytes())
                self.current += storage.nbytes()
        self.peak = max(self.peak, self.current)

    def __enter__(self) -> LiveTensorBytes:
        from torch.utils._python_dispatch import TorchDispatchMode

        meter = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                meter._record(out)
                return out

        self._mode = _Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._mode.__exit__(*exc)
        self._prune()


def stepped_gradient_plan(
    subject: Subject,
    seq_len: int,
    capture: Sequence[str],
    max_memory: int,
    *,
    steps: int,
    batch_size: int | None,
    **plan,
) -> tuple[int, bool, int]:
    """(examples per run, layer by layer?, steps per run) for a gradient run of ``steps``
    interpolation steps per example (integrated gradients, EAP-IG): all steps of an example in
    one run if they fit ``max_memory``, else as many as fit. ``plan``: :func:`gradient_plan`'s
    options. ``batch_size`` caps the examples per run."""
    for k in range(steps, 0, -1):
        try:
            pairs, checkpoint = gradient_plan(
                subject, seq_len, capture, max_memory, rows_per_example=k, **plan
            )
        except AuditError:
            if k > 1:
                continue
            raise
        return (min(batch_size, pairs) if batch_size else pairs), checkpoint, k
    raise AssertionError("unreachable: steps >= 1")
