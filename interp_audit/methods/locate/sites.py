"""Site sweeps: a site name (``"heads"``, ``"resid_pre"`` ...) -> the variants to patch + axes.

One table says, for each sweep, which hook it patches, which axes it spans and in what order:
the orders follow ``transformer_lens.patching`` so results line up with it cell for cell.

When some pair's prompts differ in token count, positions are the alignment's named slots
(prefix ``0..``, ``span``, suffix ``..-1``: :mod:`interp_audit.engine.alignment`) instead of
absolute positions; ``@-1`` and ``@span`` in a label always name slots.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from interp_audit.core.errors import SiteError, did_you_mean
from interp_audit.engine.alignment import slot_of
from interp_audit.engine.batched import Patch, Variant
from interp_audit.engine.contrasts import ContrastSet
from interp_audit.model.components import Component, parse_components
from interp_audit.model.subject import Subject


@dataclass(frozen=True)
class Sweep:
    kind: str  # component kind (the subject's adapter names its hook)
    all_pos_dims: tuple[str, ...]
    per_pos_dims: tuple[str, ...]


SWEEPS: dict[str, Sweep] = {
    "resid_pre": Sweep("resid_pre", ("layer",), ("layer", "pos")),
    "resid_mid": Sweep("resid_mid", ("layer",), ("layer", "pos")),
    "resid_post": Sweep("resid_post", ("layer",), ("layer", "pos")),
    "attn_out": Sweep("attn", ("layer",), ("layer", "pos")),
    "mlp_out": Sweep("mlp", ("layer",), ("layer", "pos")),
    "heads": Sweep("head", ("layer", "head"), ("layer", "pos", "head")),
    "heads_q": Sweep("head.q", ("layer", "head"), ("layer", "pos", "head")),
    "heads_k": Sweep("head.k", ("layer", "head"), ("layer", "pos", "head")),
    "heads_v": Sweep("head.v", ("layer", "head"), ("layer", "pos", "head")),
    "pattern": Sweep("head.pattern", ("layer", "head"), ("layer", "head", "pos")),
    "neurons": Sweep("neuron", ("layer", "neuron"), ("layer", "pos", "neuron")),
}


@dataclass
class Plan:
    variants: list[Variant]
    dims: tuple[str, ...]
    axes: dict[str, list[str]]
    components: list[str]
    hooks: list[str]
    per_position: bool


def _patch_for(subject: Subject, comp: Component, slots: bool = False) -> Patch:
    """The patch of a component; its position is an alignment slot in ``slots`` mode (pairs of
    unequal token counts) and for ``@-k`` / ``@span``."""
    idx = list(comp.index())
    if comp.pos is not None and (slots or not isinstance(comp.pos, int) or comp.pos < 0):
        idx[2 if comp.kind == "head.pattern" else 1] = slot_of(comp.pos)
    return Patch(subject.hook_name(comp), tuple(idx[1:]))


def check_sites(sites) -> None:
    """``sites`` is a sweep name or a non-empty list of labels: refuse None, [] and the rest."""
    valid = f"a sweep ({', '.join(SWEEPS)}) or a non-empty list of component labels"
    if sites is None:
        raise SiteError(f"sites=None: give {valid}")
    if isinstance(sites, str):
        if not sites.strip():
            raise SiteError(f"sites='' is empty: give {valid}")
        return
    if not isinstance(sites, list | tuple):
        raise SiteError(f"sites={sites!r} is a {type(sites).__name__}: give {valid}")
    if len(sites) == 0:
        raise SiteError(f"sites=[] names no component: give {valid}")
    for i, s in enumerate(sites):
        if not isinstance(s, str) or not s.strip():
            raise SiteError(f"sites[{i}]={s!r} is not a component label (e.g. 'L0H1', 'L1.mlp')")


def plan_sites(subject: Subject, contrast: ContrastSet, sites, per_position: bool) -> Plan:
    """Variants for a named sweep or an explicit list of component labels / hook names."""
    check_sites(sites)
    shape = subject.shape
    slots = not contrast.equal_lengths  # positions are alignment slots
    if isinstance(sites, str) and sites in SWEEPS:
        sweep = SWEEPS[sites]
        if sweep.kind in ("mlp", "neuron") and not shape.has_mlp:
            raise SiteError(f"sites={sites!r}: this model is attention-only (no MLPs)")
        if sweep.kind == "resid_mid" and not shape.has_resid_mid:
            raise SiteError(f"sites={sites!r}: this model has no resid_mid")
        n_heads = (
            shape.n_kv_heads
            if sweep.kind in ("head.k", "head.v") and shape.n_kv_heads
            else shape.n_heads
        )
        slot_list = contrast.alignment().slots() if slots else []
        ranges = {
            "layer": range(shape.n_layers),
            "head": range(n_heads),
            "pos": [s.label if s.index is None else s.index for s in slot_list]
            if slots
            else range(contrast.seq_len),
            "neuron": range(shape.d_mlp or 0),
        }
        dims = sweep.per_pos_dims if per_position else sweep.all_pos_dims
        axes = {
            "layer": [str(i) for i in ranges["layer"]],
            "head": [str(i) for i in ranges["head"]],
            "pos": contrast.slot_labels() if slots else contrast.position_labels(),
            "neuron": [str(i) for i in ranges["neuron"]],
        }
        variants, comps = [], []
        for cell in itertools.product(*(ranges[d] for d in dims)):
            where = dict(zip(dims, cell, strict=True))
            comp = Component(
                where["layer"], sweep.kind, where.get("head", where.get("neuron")), where.get("pos")
            )
            variants.append((_patch_for(subject, comp, slots),))
            comps.append(comp.label)
        hooks = sorted({subject.adapter.hook(sweep.kind, layer) for layer in ranges["layer"]})
        return Plan(variants, dims, {d: axes[d] for d in dims}, comps, hooks, per_position)
    if isinstance(sites, str) and not (sites.startswith("L") or subject.adapter.in_block(sites)):
        raise SiteError(
            f"unknown sites {sites!r}; choose one of {', '.join(SWEEPS)} or a list of "
            f"component labels{did_you_mean(sites, SWEEPS)}"
        )
    comps = parse_components(sites if not isinstance(sites, str) else [sites], shape)
    for c in comps:
        if isinstance(c.pos, int) and not -contrast.seq_len <= c.pos < contrast.seq_len:
            raise SiteError(
                f"component {c.label!r}: position {c.pos} is past the prompts' "
                f"{contrast.seq_len} positions"
            )
    variants = [(_patch_for(subject, c, slots),) for c in comps]
    labels = [c.label for c in comps]
    return Plan(
        variants,
        ("component",),
        {"component": labels},
        labels,
        sorted({subject.hook_name(c) for c in comps}),
        any(c.pos is not None for c in comps),
    )


def parse_variant_sets(subject: Subject, groups: Sequence[Sequence[str]]) -> list[Variant]:
    """Several components patched together form one variant (e.g. a candidate circuit)."""
    return [
        tuple(_patch_for(subject, c) for c in parse_components(g, subject.shape)) for g in groups
    ]


def unpatched_note(contrast: ContrastSet) -> str | None:
    """For results' meta: the positions left alone (the span of pairs of unequal length)."""
    return None if contrast.equal_lengths else contrast.alignment().not_patched()
