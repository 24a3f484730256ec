"""Path patching (Wang et al. 2022, IOI): a sender's effect *only through* chosen receivers.

Three runs per sender: (1) base and source runs cached; (2) the base input with the sender set
to its source activation and every other head (and, with ``freeze="heads+mlps"``, every MLP)
frozen at its base activation, recording what the receivers read; (3) the base input with only
the receivers' inputs set to those recordings. With ``receivers="logits"`` step 2's final
residual stream is read out directly: the sender's direct effect on the output.

Pairs of unequal token counts follow the alignment of :func:`interp_audit.patch`: senders take
their source activations at aligned positions only, and a receiver position is a slot.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from interp_audit.core.errors import AuditError, SiteError
from interp_audit.engine.alignment import slot_of
from interp_audit.engine.batched import Patch, RunContext, default_max_rows, run_variants
from interp_audit.engine.contrasts import ContrastSet
from interp_audit.engine.effects import Effects
from interp_audit.methods.locate.patching import _check_direction, metric_of_final, sweep_effects
from interp_audit.methods.locate.sites import plan_sites, unpatched_note
from interp_audit.model.components import parse_components
from interp_audit.model.metrics import Metric, get_metric
from interp_audit.model.subject import Subject, quiet_tl_warnings

__all__ = ["patch_path"]


def _receiver_patches(
    subject: Subject, receivers: Sequence[str], slots: bool = False
) -> list[tuple[str, tuple]]:
    """Receiver labels ``L3H2.q`` / ``L3H2`` (= q, k and v) -> (hook, index) pairs; a position
    is an alignment slot when ``slots`` (pairs of unequal token counts), ``@-k`` or ``@span``."""
    out = []
    for text in receivers:
        comps = parse_components([text], subject.shape)
        c = comps[0]
        if c.kind == "head":
            parts = ["q", "k", "v"]
        elif c.kind in ("head.q", "head.k", "head.v"):
            parts = [c.kind.split(".")[1]]
        else:
            raise SiteError(
                f"receiver {text!r}: receivers are head inputs ('L3H2.q', '.k', '.v', or "
                "'L3H2' for all three) or 'logits'"
            )
        pos = slice(None) if c.pos is None else c.pos
        if c.pos is not None and (slots or not isinstance(c.pos, int) or c.pos < 0):
            pos = slot_of(c.pos)
        n_kv = subject.adapter.n_key_value_heads
        for part in parts:
            head = c.head
            if c.kind == "head" and part in "kv" and n_kv:  # the key/value head it reads
                head = c.head // (subject.n_heads // n_kv)
            out.append((subject.adapter.attn(c.layer, part), (pos, head)))
    return out


@torch.no_grad()
def patch_path(
    subject: Subject,
    contrast: ContrastSet,
    metric: Metric | str = "logit_diff",
    senders: str | Sequence[str] = "heads",
    receivers: str | Sequence[str] = "logits",
    *,
    freeze: Literal["heads", "heads+mlps"] = "heads",
    direction: Literal["denoise", "noise"] = "denoise",
    normalize: bool = True,
    batch_size: int | None = None,
) -> Effects:
    """Effect of each sender on the metric through ``receivers`` only.

    Args:
        senders: ``"heads"``, ``"mlp_out"``, ``"attn_out"`` or a list of labels (``"L0H1"``,
            ``"L0.mlp"``).
        receivers: ``"logits"`` (the direct path to the output) or head inputs such as
            ``["L2H3.q", "L2H3.v"]``; ``"L2H3"`` means its q, k and v.
        freeze: what is held at base values besides the receivers: every other head
            (Wang et al.), or heads and MLPs.
    """
    metric = get_metric(metric)
    _check_direction(direction)
    if freeze not in ("heads", "heads+mlps"):
        raise AuditError(f"freeze must be 'heads' or 'heads+mlps'; got {freeze!r}")
    plan = plan_sites(subject, contrast, senders, per_position=False)
    for (p,) in plan.variants:
        found = subject.adapter.role_of(p.hook)
        if found is None or found[1] not in ("head", "mlp", "attn"):
            raise SiteError(f"sender {p.hook!r}: senders are heads, attention layers or MLPs")
    to_logits = receivers == "logits" or receivers == ["logits"]
    recv = (
        []
        if to_logits
        else _receiver_patches(
            subject,
            [receivers] if isinstance(receivers, str) else receivers,
            slots=not contrast.equal_lengths,
        )
    )
    n = subject.n_layers
    frozen_hooks = [subject.adapter.attn(layer, "z") for layer in range(n)]
    if freeze == "heads+mlps" and subject.shape.has_mlp:
        frozen_hooks += [subject.adapter.mlp_out(layer) for layer in range(n)]
    sender_hooks = sorted({p.hook for (p,) in plan.variants})
    rows = batch_size or default_max_rows(subject, contrast.seq_len)
    per_example, base_vals, src_vals = [], [], []
    for part in contrast.batches(max(1, rows)):
        ctx = RunContext.build(
            subject,
            part,
            metric,
            direction=direction,
            source_hooks=sender_hooks,
            base_hooks=frozen_hooks,
        )
        base_cache = ctx.base_sites
        b = ctx.batch
        per_chunk = max(1, rows // b)
        values = torch.empty((len(plan.variants), b))
        for start in range(0, len(plan.variants), per_chunk):
            chunk = [v[0] for v in plan.variants[start : start + per_chunk]]
            recorded, final = _frozen_run(
                subject, ctx, chunk, base_cache, frozen_hooks, [h for h, _ in recv]
            )
            k = len(chunk)
            if to_logits:
                vals = metric_of_final(ctx, final, k)
            else:
                variants = [
                    tuple(Patch(hook, idx, value=recorded[hook][j]) for hook, idx in recv)
                    for j in range(k)
                ]
                vals = run_variants(ctx, variants, max_rows=rows, progress=False)
            values[start : start + k] = vals.float().cpu()
        per_example.append(values)
        base_vals.append(ctx.base_values.cpu())
        src_vals.append(ctx.source_values.cpu())
    targets = (
        "logits"
        if to_logits
        else list(receivers if not isinstance(receivers, str) else [receivers])
    )
    labels = [f"{c}->{targets if to_logits else ','.join(targets)}" for c in plan.components]
    meta = {"freeze": freeze, "receivers": targets}
    if note := unpatched_note(contrast):
        meta["not_patched"] = note
    return sweep_effects(
        plan,
        per_example,
        base_vals,
        src_vals,
        metric=metric,
        method="path_patch",
        normalize=normalize,
        direction=direction,
        meta=meta,
        components=labels,
    )


def _frozen_run(
    subject: Subject,
    ctx: RunContext,
    senders: list[Patch],
    base_cache: dict[str, Tensor],
    frozen_hooks: list[str],
    record: list[str],
) -> tuple[dict[str, Tensor], Tensor]:
    """Step 2 for a chunk of senders (one per row block): returns recordings and final resid."""
    k, b = len(senders), ctx.batch
    by_hook: dict[str, list[tuple[int, Patch]]] = defaultdict(list)
    for slot, p in enumerate(senders):
        by_hook[p.hook].append((slot, p))

    def make_hook(name: str, frozen: bool):
        def fn(act, *, hook):
            view = act.view(k, b, *act.shape[1:])
            if frozen:
                view = base_cache[name].to(act.dtype).unsqueeze(0).expand_as(view)
            entries = by_hook.get(name, [])
            if entries:
                mask = torch.zeros((k, 1, *act.shape[1:]), dtype=torch.bool, device=act.device)
                for slot, p in entries:
                    mask[(slot, slice(None), *p.index)] = True
                view = torch.where(mask, ctx.source[name].to(act.dtype).unsqueeze(0), view)
            return view.reshape(act.shape)

        return fn

    recorded: dict[str, Tensor] = {}

    def save(act, *, hook):
        recorded[hook.name] = act.detach().view(k, b, *act.shape[1:])

    hooks = [(h, make_hook(h, True)) for h in frozen_hooks]
    hooks += [(h, make_hook(h, False)) for h in by_hook if h not in frozen_hooks]
    final_name = subject.final_hook()
    hooks += [(h, save) for h in [*record, final_name]]
    tokens = ctx.base_tokens.repeat(k, 1)
    with torch.no_grad(), quiet_tl_warnings(), subject.hooks(hooks):
        subject.adapter.forward_hidden(tokens, ctx.mask.repeat(k, 1))
    final = recorded.pop(final_name).reshape(k * b, tokens.shape[1], -1)
    return recorded, final
