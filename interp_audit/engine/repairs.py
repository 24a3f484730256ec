"""Repairs folded into weights: a Subject that does without hooks what ``ia.ablate`` does with.

    fixed = ia.repaired(subject, ["L3H1", "L5N7"], kind="mean", reference=pairs)
    fixed.save("out/model", format="hf")       # a model someone can deploy and re-audit

Each foldable ablation is one edit of the projection that writes the component:

* a head (``L3H1``): its slice of the attention output weight ``W_O[h]`` set to 0 and, for a
  mean ablation, its mean output ``mean(z_h) @ W_O[h]`` added to the output bias;
* a neuron (``L5N7``): its row of the MLP output weight, likewise through the MLP's bias;
* one head's query, key or value (``L3H1.v``): its input weight slice set to 0, its bias slice
  to the mean (0 for zero ablation);
* a whole attention or MLP output (``L3.attn``): the output weight set to 0 and the bias to
  the mean output;
* concept erasure at a residual site (``L3.resid_pre``, kind ``erase``): every write into the
  stream before it mapped by LEACE's ``I - A`` and ``A mean`` added to every token embedding
  (:mod:`interp_audit.engine.erasure`).

Means are the position-independent mean over every real reference token
(``ia.ablate(..., per_position=False)``). Which parameter holds which projection is the
adapter's knowledge. What cannot be carried by weights is refused by name: components
restricted to a position, per-position means, resample ablation, attention patterns,
residual-stream ablations, SAE features (their encoder is nonlinear).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from interp_audit.core.errors import AuditError, ContrastError
from interp_audit.engine.contrasts import ContrastSet
from interp_audit.engine.erasure import Eraser, fit_eraser
from interp_audit.engine.interventions import _masked_mean, reference_activations
from interp_audit.model.components import Component, parse_components
from interp_audit.model.hashing import state_sha256
from interp_audit.model.subject import Subject

__all__ = ["FoldRefused", "fold_refusal", "repaired"]

RepairKind = Literal["zero", "mean", "erase"]
RECORD_VERSION = 1

#: component kinds whose ablation folds into one projection, and which projection
_UNIT_KINDS = {"head": "attn", "neuron": "mlp"}
_INPUT_KINDS = {"head.q": "q", "head.k": "k", "head.v": "v"}
_SUBLAYER_KINDS = {"attn": "attn", "mlp": "mlp"}


class FoldRefused(AuditError):
    """A repair cannot be carried by weights: names the first component that cannot, and why."""

    def __init__(self, component: str, reason: str):
        self.component, self.reason = component, reason
        super().__init__(f"cannot fold {component!r} into the weights: {reason}")


def _sae_feature(label: str) -> bool:
    import re

    return bool(re.match(r"^L\d+F\d+(@\d+)?$", label.strip())) or label.endswith(".sae_err")


def fold_refusal(
    subject: Subject,
    components: Sequence[str],
    kind: str,
    *,
    per_position: bool | str = False,
    sae: bool = False,
    erase_at: str = "all",
) -> FoldRefused | None:
    """Why this ablation cannot be folded into ``subject``'s weights (the first component that
    cannot, as a :class:`FoldRefused`), or None when it can."""
    labels = [c.label if isinstance(c, Component) else str(c) for c in components]
    first = labels[0] if labels else "<no components>"
    if sae or any(_sae_feature(c) for c in labels):
        feat = next((c for c in labels if _sae_feature(c)), first)
        return FoldRefused(
            feat,
            "an SAE feature is read through the SAE's nonlinear encoder (ReLU/JumpReLU/TopK), "
            "so removing it is not a fixed edit of any weight",
        )
    if kind == "resample":
        return FoldRefused(
            first,
            "resample ablation replaces activations with those of a randomly drawn reference "
            "prompt, a different value for every input: no weight can hold it",
        )
    if kind not in ("zero", "mean", "erase"):
        return FoldRefused(first, f"ablation kind {kind!r} has no weight fold")
    comps = parse_components(labels, subject.shape)
    for label, c in zip(labels, comps, strict=True):
        if kind == "erase":
            if c.kind not in ("resid_pre", "resid_post"):
                return FoldRefused(label, "erasure acts on a residual-stream site")
            if c.pos is not None and erase_at != "all":
                return FoldRefused(
                    label,
                    f"the erasure is applied at position {c.pos} only; weights act at every "
                    "position (fit there and apply everywhere: erase_at='all')",
                )
            reason = subject.adapter.fold_refusal("residual")
            if reason:
                return FoldRefused(label, reason)
            continue
        if c.pos is not None:
            return FoldRefused(
                label,
                f"it is restricted to position {c.pos}; weights act at every position, so only "
                "an ablation at all positions can be folded",
            )
        if c.kind == "head.pattern":
            return FoldRefused(label, "an attention pattern is computed, not a projection")
        if c.kind.startswith("resid"):
            return FoldRefused(
                label,
                "a residual-stream ablation replaces the sum of every earlier write, not the "
                "output of one projection (erase a concept there instead: kind 'erase')",
            )
        target = "sublayer" if c.kind in _SUBLAYER_KINDS else "units"
        reason = subject.adapter.fold_refusal(target)
        if reason:
            return FoldRefused(label, reason)
    if kind == "mean" and per_position is not False:
        return FoldRefused(
            first,
            "a per-position mean differs at every position and exists only for inputs of the "
            "reference's length; weights act the same at every position: use the token mean "
            "(per_position=False)",
        )
    return None


def _reference_sha256(reference) -> str:
    h = hashlib.sha256()
    if isinstance(reference, ContrastSet):
        parts = (reference.clean, reference.counterfactual, reference.attention_mask())
    else:
        parts = (reference,)
    for t in parts:
        h.update(t.detach().cpu().long().contiguous().numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def _fold_units(
    subject: Subject, fixed: Subject, comps: list[Component], kind: str, reference
) -> dict[str, str]:
    """Zero/mean folds of heads, neurons, q/k/v and whole sublayers; returns what changed."""
    means: dict[str, Tensor] = {}
    if kind == "mean":
        if reference is None:
            raise AuditError("mean repair needs reference= (a ContrastSet or token tensor)")
        hooks = sorted({subject.hook_name(c) for c in comps})
        acts, mask = reference_activations(subject, reference, hooks)
        means = {h: _masked_mean(acts[h].double(), mask) for h in hooks}  # [..unit.., d]
    params = dict(fixed.model.named_parameters())
    adapter = fixed.adapter
    changed: dict[str, str] = {}
    # mean contributions are computed from the source weights, before any slice is zeroed
    source = dict(subject.model.named_parameters())

    def edit(name: str, what: str) -> Tensor:
        if name not in params:
            raise AuditError(f"the adapter names parameter {name!r}, which this model lacks")
        changed.setdefault(name, what)
        return params[name]

    # a whole sublayer's output overrides any of its units: fold it last, as the hooks apply it
    for c in sorted(comps, key=lambda c: c.kind in _SUBLAYER_KINDS):
        mean = means.get(subject.hook_name(c))
        if c.kind in _UNIT_KINDS:
            w_name, b_name = adapter.output_projection(c.layer, _UNIT_KINDS[c.kind])
            W = edit(w_name, "units zeroed")
            unit = c.head
            if mean is not None:
                m = mean[unit]  # head: [d_head]; neuron: scalar
                w_src = source[w_name][unit].double()
                delta = m @ w_src if w_src.ndim == 2 else m * w_src
                b = edit(b_name, "mean outputs added")
                b.copy_((b.double() + delta).to(b.dtype))
            W[unit] = 0
        elif c.kind in _INPUT_KINDS:
            w_name, b_name = adapter.input_projection(c.layer, _INPUT_KINDS[c.kind])
            W, b = edit(w_name, "units zeroed"), edit(b_name, "set to the mean")
            W[c.head] = 0
            b[c.head] = 0 if mean is None else mean[c.head].to(b.dtype)
        elif c.kind in _SUBLAYER_KINDS:
            w_name, b_name = adapter.output_projection(c.layer, _SUBLAYER_KINDS[c.kind])
            W, b = edit(w_name, "zeroed"), edit(b_name, "set to the mean")
            W.zero_()
            b.copy_(torch.zeros_like(b) if mean is None else mean.to(b.dtype))
        else:  # fold_refusal lets nothing else through
            raise AuditError(f"no fold for component {c.label!r}")
    return changed


@torch.no_grad()
def _fold_eraser(fixed: Subject, eraser: Eraser) -> dict[str, str]:
    """Every write before the eraser's site mapped by M = I - A; A mean added to every token
    embedding row (each position holds exactly one token embedding)."""
    params = dict(fixed.model.named_parameters())
    M, c = eraser.M, eraser.c
    changed = {}
    for name, role in fixed.adapter.residual_writers(eraser.before):
        if name not in params:
            raise AuditError(f"the adapter names parameter {name!r}, which this model lacks")
        p = params[name]
        new = p.double() @ M.T.to(p.device)
        if role == "token_embedding":
            new = new + c.to(p.device)
        p.copy_(new.to(p.dtype))
        changed[name] = f"mapped by the eraser ({role})"
    return changed


def repaired(
    subject: Subject,
    components: str | Sequence[str],
    *,
    kind: RepairKind = "zero",
    reference: ContrastSet | Tensor | None = None,
    per_position: bool | str = False,
    concept: Literal["contrast", "groups"] = "contrast",
    erase_at: Literal["all", "positions"] = "all",
    seed: int = 0,
) -> Subject:
    """A new Subject whose weights implement the ablation; ``subject`` is left untouched.

    The same arguments as :func:`interp_audit.ablate`: ``zero`` or ``mean`` ablation of heads,
    neurons, one head's q/k/v or whole sublayers (the mean over every real reference token:
    the repaired model equals ``ia.ablate(..., per_position=False)``), or ``erase`` (a concept
    at one residual site, LEACE fitted on ``reference``; equals ``ia.ablate(kind="erase")``).
    Refused with :class:`FoldRefused` (an AuditError naming the component and the reason) when
    weights cannot carry it. The result carries a repair record (``.repair``): the source
    weights' sha256, the repair, the reference's hash and the repaired weights' sha256.
    ``seed`` is accepted for symmetry with ``ablate`` (no fold draws anything).
    """
    labels = [components] if isinstance(components, str | Component) else list(components)
    labels = [c.label if isinstance(c, Component) else str(c) for c in labels]
    if not labels:
        raise AuditError("repaired() needs at least one component")
    refused = fold_refusal(subject, labels, kind, per_position=per_position, erase_at=erase_at)
    if refused is not None:
        raise refused
    if kind in ("mean", "erase") and reference is None:
        raise AuditError(f"{kind} repair needs reference= (a ContrastSet)")
    comps = parse_components(labels, subject.shape)
    fixed = subject.clone(source=f"repaired({subject.source})")
    eraser = None
    if kind == "erase":
        if not isinstance(reference, ContrastSet):
            raise ContrastError("erase learns its concept from a ContrastSet reference")
        eraser = fit_eraser(subject, labels, reference, concept=concept, apply_at=erase_at)
        changed = _fold_eraser(fixed, eraser)
    else:
        changed = _fold_units(subject, fixed, comps, kind, reference)
    # what an export must carry: only tensors whose values moved (a zero bias set to zero, or
    # mapped by the eraser, stays where the source checkpoint has none)
    before, after = dict(subject.model.named_parameters()), dict(fixed.model.named_parameters())
    changed = {k: v for k, v in changed.items() if not torch.equal(before[k], after[k])}
    repair: dict[str, Any] = {
        "kind": kind,
        "components": labels,
        "mean": "over every real reference token (per_position=False)" if kind == "mean" else None,
        "reference": None
        if reference is None
        else {
            "pairs": int(reference.shape[0]) if isinstance(reference, Tensor) else len(reference),
            "sha256": _reference_sha256(reference),
        },
    }
    if eraser is not None:
        repair["eraser"] = eraser.to_dict()
    prior = subject.repair
    fixed.repair = {
        "interp_audit_repair": RECORD_VERSION,
        "source": {
            "model": subject.source,
            "state_sha256": state_sha256(subject.model),
            "origin": subject.origin,
            **({"prior_repair": prior} if prior else {}),
        },
        "repair": repair,
        "changed_parameters": changed,
        "weights_sha256": state_sha256(fixed.model),
    }
    return fixed
