"""Concept erasure (LEACE): remove what a linear probe could read about a concept from the
residual stream, with the least change to it.

LEACE (Belrose et al. 2023, "LEACE: Perfect linear concept erasure in closed form") is the
affine map ``r(x) = x - A (x - mean)`` with ``A = W⁺ P W``: ``W`` whitens the representation,
``P`` projects onto the span of the whitened cross-covariance with the concept. After it, no
linear classifier predicts the concept better than a constant on the data it was fitted on,
and among all maps with that guarantee it moves the representation least (in the whitened
norm).

Why it ships: ``M = I - A`` is idempotent and ``M (A mean) = 0``, so applying ``r`` at every
read of the stream up to layer L (embeddings, each block's input and its attention->MLP
midpoint) is the same as mapping every write into the stream before L by ``M`` and adding
``A mean`` once, to every token-embedding row. :func:`erase` is that hooked map;
:func:`interp_audit.engine.repairs.repaired` folds it into the weights. Erasure at only one
layer, leaving earlier layers reading the unerased stream, cannot be carried by weights.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp_audit.core.errors import AuditError, ContrastError, SiteError
from interp_audit.engine import window
from interp_audit.engine.batched import cached_run
from interp_audit.engine.contrasts import ContrastSet
from interp_audit.model.components import Component, parse_components
from interp_audit.model.subject import Subject

__all__ = [
    "Eraser",
    "concept_data",
    "concept_matrix",
    "erase",
    "fit_eraser",
    "leace",
    "ledoit_wolf",
]

Concept = Literal["contrast", "groups"]


def ledoit_wolf(xc: Float[Tensor, "n d"]) -> tuple[Float[Tensor, "d d"], float]:
    """Ledoit-Wolf (2004) shrinkage of the covariance of centred data towards a scaled identity:
    ``(1 - a) S + a tr(S)/d I`` with the closed-form ``a`` (as ``sklearn.covariance.LedoitWolf``).
    Returns (covariance, a)."""
    n, d = xc.shape
    S = xc.T @ xc / n
    mu = torch.trace(S) / d
    target = S - mu * torch.eye(d, dtype=S.dtype, device=S.device)
    d2 = (target * target).sum() / d
    sq = (xc * xc).sum(1)  # ||x_k||^2
    b2 = ((sq * sq).sum() - n * (S * S).sum()) / (n * n) / d  # sum_k ||x_k x_k^T - S||^2 / n^2
    a = float((torch.clamp(b2, min=0) / d2).clamp(max=1)) if d2 > 0 else 1.0
    return (1 - a) * S + a * mu * torch.eye(d, dtype=S.dtype, device=S.device), a


def leace(
    x: Float[Tensor, "n d"],
    z: Float[Tensor, "n k"],
    *,
    shrinkage: bool = True,
    rtol: float = 1e-10,
    atol: float = 1e-6,
    rel_tol: float = 1e-5,
) -> tuple[Float[Tensor, "d d"], Float[Tensor, " d"], int]:
    """The LEACE eraser of concept ``z`` (one-hot or any real labels) for data ``x``.

    Returns ``(A, mean, rank)`` with ``r(x) = x - (x - mean) @ A.T``, computed in float64;
    ``rank`` is the number of erased directions. ``shrinkage`` (default) whitens with the
    Ledoit-Wolf covariance: the erased data's cross-covariance with the concept is still exactly
    zero (any invertible whitening gives that), the change is least in the shrunk metric, and
    ``A`` stays well conditioned, which a fold into float32 weights needs (few activations per
    dimension make the sample covariance near-singular and ``A`` huge). Without it, eigenvalues
    below ``rtol`` times the largest are treated as zero (pseudo-inverses, as the paper). A
    direction is not erased when its whitened cross-covariance is below ``atol`` or its raw one
    below ``rel_tol`` times the data's and the concept's spread: a concept already erased leaves
    only rounding there, and erasing rounding is erasing signal the concept does not carry.
    """
    if x.ndim != 2 or z.ndim != 2 or x.shape[0] != z.shape[0]:
        raise ContrastError(
            f"LEACE needs x [n, d] and z [n, k] with the same n; got {tuple(x.shape)}, "
            f"{tuple(z.shape)}"
        )
    if x.shape[0] < 2:
        raise ContrastError("LEACE needs at least two activations to estimate covariances")
    x, z = x.double(), z.double()
    mean = x.mean(0)
    xc, zc = x - mean, z - z.mean(0)
    n = x.shape[0]
    sigma_xx = ledoit_wolf(xc)[0] if shrinkage else xc.T @ xc / n
    sigma_xz = xc.T @ zc / n
    sigma_xx = (sigma_xx + sigma_xx.T) / 2
    evals, evecs = torch.linalg.eigh(sigma_xx)
    keep = evals > evals.max().clamp(min=0) * max(rtol, sigma_xx.shape[0] * 2.2e-16)
    root = torch.where(keep, evals.clamp(min=0).sqrt(), 0.0)
    inv_root = torch.where(keep, 1 / root.clamp(min=1e-300), 0.0)
    W = (evecs * inv_root) @ evecs.T  # whitening (pseudo-inverse square root)
    W_inv = (evecs * root) @ evecs.T
    u, s, _ = torch.linalg.svd(W @ sigma_xz, full_matrices=False)
    limit = max(atol, float(s.max()) * rtol) if s.numel() else atol
    # each direction's cross-covariance in the data's own units, against the data's and the
    # concept's spread: rounding (a concept already erased, then stored in float32) is
    # perfectly correlated with the tokens, so whitened it can look strong; raw it is ~1e-8
    raw = s * torch.linalg.vector_norm(W_inv @ u, dim=0)
    scale = float((torch.trace(xc.T @ xc / n) * torch.trace(zc.T @ zc / n)).sqrt())
    keep = (s > limit) & (raw > rel_tol * scale)
    u = u[:, keep]
    rank = int(keep.sum())
    A = W_inv @ u @ u.T @ W
    return A, mean, rank


@dataclass(frozen=True)
class Eraser:
    """A fitted LEACE eraser at one residual-stream site of one model.

    ``site``: the label it was fitted at (``L1.resid_pre``); ``hooks``: every residual read the
    map is applied at (the site and each read before it, so the stream before the site is
    erased too: the map that weights can carry); ``before``: the writers of blocks before this
    index are the ones a fold maps; ``fit_positions``: the positions the concept was fitted
    at (None: every real token); ``positions``: apply only there (None: every position;
    position-restricted erasure runs with hooks only).
    """

    site: str
    hooks: tuple[str, ...]
    before: int
    A: Float[Tensor, "d d"]
    mean: Float[Tensor, " d"]
    rank: int
    positions: tuple[int, ...] | None = None
    fit_positions: tuple[int, ...] | None = None
    concept: dict[str, Any] = field(default_factory=dict)

    @property
    def M(self) -> Float[Tensor, "d d"]:
        """The linear part ``I - A`` (float64)."""
        return torch.eye(self.A.shape[0], dtype=self.A.dtype, device=self.A.device) - self.A

    @property
    def c(self) -> Float[Tensor, " d"]:
        """The constant part ``A mean`` (float64)."""
        return self.A @ self.mean

    def __call__(self, x: Float[Tensor, "... d"]) -> Float[Tensor, "... d"]:
        A, mean = self.A.to(x.device), self.mean.to(x.device)
        return (x.double() - (x.double() - mean) @ A.T).to(x.dtype)

    def to_dict(self) -> dict[str, Any]:
        """What the repair record keeps (the matrices are in the folded weights)."""
        return {
            "method": "LEACE (Belrose et al. 2023)",
            "site": self.site,
            "applied at": list(self.hooks),
            "writers folded": f"embeddings and blocks 0..{self.before - 1}",
            "erased directions": self.rank,
            "fitted at positions": None if self.fit_positions is None else list(self.fit_positions),
            "applied at positions": None if self.positions is None else list(self.positions),
            "concept": self.concept,
        }


def _site(subject: Subject, components) -> tuple[Component, tuple[int, ...] | None]:
    comps = parse_components(components, subject.shape)
    kinds = {(c.layer, c.kind) for c in comps}
    bad = [c for c in comps if c.kind not in ("resid_pre", "resid_post")]
    if bad:
        raise SiteError(
            f"concept erasure acts on the residual stream: {bad[0].label!r} is not a "
            "residual-stream site (use 'L{layer}.resid_pre' or 'L{layer}.resid_post', "
            "optionally '@{pos}')"
        )
    if len(kinds) != 1:
        raise SiteError(
            "concept erasure fits one map at one site; got "
            f"{sorted({c.label.split('@')[0] for c in comps})}"
        )
    positions = [c.pos for c in comps]
    if any(p is None for p in positions):
        if len(comps) > 1:
            raise SiteError(
                f"erasure at {comps[0].label.split('@')[0]} is given at every position and at "
                "some positions: give one or the other"
            )
        return comps[0], None
    return comps[0], tuple(sorted(set(positions)))


def _hooks(subject: Subject, comp: Component) -> tuple[tuple[str, ...], int]:
    """Every residual read up to the site (block inputs and midpoints), and the block index
    before which writers are folded."""
    a = subject.adapter
    before = comp.layer + (1 if comp.kind == "resid_post" else 0)
    hooks = []
    for layer in range(before):
        hooks.append(a.resid_pre(layer))
        if subject.shape.has_resid_mid:
            hooks.append(a.resid_mid(layer))
    hooks.append(subject.hook_name(comp))
    for h in hooks:
        subject.check_hook(h)
    return tuple(dict.fromkeys(hooks)), before


def concept_data(
    subject: Subject,
    hook: str,
    reference: ContrastSet,
    concept: Concept = "contrast",
    positions: Sequence[int] | None = None,
    rows: Tensor | None = None,
) -> tuple[Float[Tensor, "n d"], Tensor, Tensor, Tensor, list[str]]:
    """Activations at ``hook`` and their concept labels: (x [n, d], class index [n], the
    pair each activation comes from [n], its position [n], class names).

    ``concept="contrast"``: clean prompts are class 0, counterfactual prompts class 1;
    ``"groups"``: the clean prompts, labelled by the contrast's group. Every real token
    (or only ``positions``) of the pairs ``rows`` (default: all) is one activation.
    """
    if not isinstance(reference, ContrastSet):
        raise ContrastError(
            f"concept erasure learns its concept from a ContrastSet; got {type(reference).__name__}"
        )
    idx = torch.arange(len(reference)) if rows is None else rows
    mask = reference.attention_mask()[idx]
    if concept == "contrast":
        if torch.equal(reference.clean, reference.counterfactual):
            raise ContrastError(
                "concept='contrast' labels clean prompts 0 and counterfactual prompts 1, but "
                "this contrast's two sides are the same prompts (a factual set): use "
                "concept='groups'"
            )
        tokens = torch.cat([reference.clean[idx], reference.counterfactual[idx]])
        labels = torch.cat([torch.zeros(len(idx)), torch.ones(len(idx))]).long()
        mask = torch.cat([mask, mask])
        pair = torch.cat([idx, idx])
        names = ["clean", "counterfactual"]
    elif concept == "groups":
        if reference.groups is None:
            raise ContrastError("concept='groups' needs a contrast with groups (group_by)")
        groups = [reference.groups[i] for i in idx.tolist()]
        names = sorted(set(groups))
        tokens, pair = reference.clean[idx], idx
        labels = torch.tensor([names.index(g) for g in groups])
    else:
        raise AuditError(f"concept must be 'contrast' or 'groups'; got {concept!r}")
    if len(set(labels.tolist())) < 2:
        raise ContrastError(f"the concept has one class only ({names}): nothing to erase")
    dev = subject.device
    cache, _ = cached_run(subject, tokens.to(dev), mask.to(dev), {hook})
    act = cache[hook].detach()
    keep = mask.bool().to(dev)
    if positions is not None:
        if max(positions) >= act.shape[1]:
            raise ContrastError(
                f"erasure position {max(positions)} is past the reference's {act.shape[1]} "
                "positions"
            )
        at = torch.zeros_like(keep)
        at[:, list(positions)] = True
        keep &= at
    n_pos = act.shape[1]
    x = act[keep]
    y = labels.to(dev)[:, None].expand(-1, n_pos)[keep]
    p = pair.to(dev)[:, None].expand(-1, n_pos)[keep]
    at = torch.arange(n_pos, device=dev)[None, :].expand(len(tokens), -1)[keep]
    return x, y.cpu(), p.cpu(), at.cpu(), names


def _reference_hash(reference: ContrastSet, concept: Concept) -> str:
    h = hashlib.sha256()
    for t in (reference.clean, reference.counterfactual, reference.attention_mask()):
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    if concept == "groups":
        h.update("\x00".join(reference.groups or ()).encode())
    return h.hexdigest()


def concept_matrix(
    y: Int[Tensor, " n"], pos: Int[Tensor, " n"], n_classes: int, by_position: bool = True
) -> Float[Tensor, "n k"]:
    """The concept LEACE erases: one-hot classes, or (``by_position``) one-hot classes centred
    within each position and kept apart per position, so that the class-mean difference at
    every position is erased while the positions themselves stay distinguishable."""
    onehot = torch.nn.functional.one_hot(y, n_classes).double()
    if not by_position:
        return onehot
    columns = []
    for p in pos.unique().tolist():
        at = (pos == p).double()[:, None]
        centred = onehot - (onehot * at).sum(0) / at.sum()
        columns.append(at * centred)
    return torch.cat(columns, 1)


def fit_eraser(
    subject: Subject,
    site: str | Sequence[str],
    reference: ContrastSet,
    *,
    concept: Concept = "contrast",
    by_position: bool = True,
    apply_at: Literal["all", "positions"] = "all",
    rows: Tensor | None = None,
) -> Eraser:
    """Fit LEACE at ``site`` (``L1.resid_pre``, or ``L1.resid_pre@3`` for one position) on the
    activations of ``reference`` (the pairs ``rows``, default all) of the model as it is now.

    ``by_position`` (default): erase the concept's class-mean difference at every position
    (an age word at position 1 and what attention moved to position 5 differ in direction);
    False: one pooled concept over all tokens (rank = classes - 1).

    A site with positions (``L0.resid_pre@1``, ``L0.resid_pre@2``: where an inadmissible path
    starts) fits the concept there; ``apply_at="all"`` (default) applies the map at every
    position (a weight fold carries it), ``"positions"`` only there (hooks only).
    """
    if apply_at not in ("all", "positions"):
        raise AuditError(f"apply_at must be 'all' or 'positions'; got {apply_at!r}")
    comp, positions = _site(subject, site)
    hooks, before = _hooks(subject, comp)
    x, y, _, pos, names = concept_data(
        subject, subject.hook_name(comp), reference, concept, positions, rows
    )
    z = concept_matrix(y, pos, len(names), by_position)
    A, mean, rank = leace(x, z)
    label = comp.label.split("@")[0]
    return Eraser(
        site=label,
        hooks=hooks,
        before=before,
        A=A,
        mean=mean,
        rank=rank,
        positions=positions if apply_at == "positions" else None,
        fit_positions=positions,
        concept={
            "labels": concept,
            "by_position": by_position,
            "classes": names,
            "activations": int(x.shape[0]),
            "pairs": len(reference) if rows is None else len(rows),
            "reference_sha256": _reference_hash(reference, concept),
        },
    )


@contextlib.contextmanager
def erase(subject: Subject, eraser: Eraser, *, only_site: bool = False) -> Iterator[Subject]:
    """Apply a fitted eraser for the body of a ``with`` block: at every residual read up to its
    site (at its positions only, if it has any): the map weights can carry. ``only_site``:
    at the site alone, earlier layers reading the unerased stream (textbook LEACE at one
    layer; no weight fold exists for it). Hooks are removed on exit, also on error."""
    pos = None if eraser.positions is None else list(eraser.positions)
    hooks = eraser.hooks[-1:] if only_site else eraser.hooks

    def fn(act: Tensor, *, hook) -> Tensor:
        if pos is None:
            return eraser(act)
        at = window.current()  # the patching engine may run a slice of positions
        full = at.full_length(act.shape[1])
        if max(pos) >= full:
            raise ContrastError(f"erasure at positions {pos}: this input has {full} positions")
        local = [p - at.offset for p in pos if 0 <= p - at.offset < act.shape[1]]
        if not local:
            return act
        out = act.clone()
        out[:, local] = eraser(act[:, local])
        return out

    with subject.hooks([(h, fn) for h in hooks]), window.declared(subject.model, hooks):
        yield subject
