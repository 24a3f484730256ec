"""Interventions as contexts: ablate components or patch activations in, then leave no trace.

with ia.ablate(subject, ["L0H2", "L1.mlp"], kind="mean", reference=pairs):
    logits = subject.run(tokens)          # hooks removed afterwards, also on error
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Literal

import torch
from torch import Tensor

from interp_audit.core.errors import AuditError, ContrastError, SiteError
from interp_audit.engine import window
from interp_audit.engine.batched import cached_run
from interp_audit.engine.contrasts import ContrastSet, check_token_ids
from interp_audit.engine.erasure import erase, fit_eraser
from interp_audit.model.components import Component, parse_components
from interp_audit.model.subject import Subject

__all__ = ["ablate", "ablate_token_embedding", "patch_in", "reference_activations"]

AblationKind = Literal["zero", "mean", "resample", "erase"]


def _tokens_and_mask(
    reference, subject: Subject, which: Literal["both", "clean", "counterfactual"] = "both"
) -> tuple[Tensor, Tensor]:
    """The reference's tokens and mask, checked against the model first: an id past the
    vocabulary is a :class:`ContrastError` naming the pair, position and id (never an
    IndexError from inside the embedding), whichever intervention reads the reference."""
    if isinstance(reference, ContrastSet):
        try:
            reference.check_fits(subject)
        except ContrastError as err:
            raise ContrastError(f"reference: {err}") from None
        if which != "both":
            return (
                reference.clean if which == "clean" else reference.counterfactual
            ), reference.attention_mask(which)
        mask = torch.cat(
            [reference.attention_mask("clean"), reference.attention_mask("counterfactual")]
        )
        return torch.cat([reference.clean, reference.counterfactual]), mask
    if (
        isinstance(reference, Tensor)
        and reference.ndim == 2
        and not reference.dtype.is_floating_point
    ):
        check_token_ids(reference, subject.d_vocab, subject.n_ctx, "reference")
        return reference.long(), torch.ones_like(reference, dtype=torch.long)
    raise ContrastError(
        "reference must be a ContrastSet or a [batch, pos] token tensor, got "
        f"{type(reference).__name__}"
    )


def reference_activations(
    subject: Subject, reference, hooks: Sequence[str]
) -> tuple[dict[str, Tensor], Tensor]:
    """Activations of the reference inputs at ``hooks`` (and the reference's one/zero mask)."""
    tokens, mask = _tokens_and_mask(reference, subject)
    cache, _ = cached_run(subject, tokens.to(subject.device), mask.to(subject.device), set(hooks))
    return cache, mask.to(subject.device)


def _group(subject: Subject, comps: list[Component]) -> dict[str, list[Component]]:
    by_hook: dict[str, list[Component]] = defaultdict(list)
    for c in comps:
        if c.pos is not None and (not isinstance(c.pos, int) or c.pos < 0):
            raise SiteError(
                f"component {c.label!r}: @{c.pos} names a slot of a contrast set's alignment "
                "(patching only); an intervention runs on any input: give an absolute position "
                "or the whole component"
            )
        by_hook[subject.hook_name(c)].append(c)
    return by_hook


def _masked_mean(act: Tensor, mask: Tensor) -> Tensor:
    """Mean over the reference's real tokens (batch and positions); patterns: over the batch."""
    if act.ndim >= 2 and act.shape[1] == mask.shape[1]:
        m = mask.to(act.dtype).reshape(*mask.shape, *([1] * (act.ndim - 2)))
        return (act * m).sum((0, 1)) / m.sum((0, 1)).clamp(min=1)
    return act.mean(0)


def _cut(ref: Tensor, act: Tensor, dims: tuple[int, ...], at: window.Window) -> Tensor | None:
    """``ref`` (``[n, ...]``, laid out over the full input) cut to the positions ``act`` covers
    in the running forward (the engine may run a slice: :mod:`.window`); None when ``ref`` is
    not laid out over an input of this length (or its other axes differ)."""
    q = dims[0]
    width = act.shape[q]
    full = at.full_length(width)
    if ref.ndim != act.ndim or ref.shape[q] != full:
        return None
    out = ref.narrow(q, at.offset, width)
    if len(dims) > 1:  # attention patterns: keys run up to the slice's last query
        if ref.shape[dims[1]] != full:
            return None
        out = out.narrow(dims[1], 0, act.shape[dims[1]])
    return out if out.shape[1:] == act.shape[1:] else None


def _full_shape(act: Tensor, dims: tuple[int, ...], at: window.Window) -> tuple[int, ...]:
    """``act``'s shape without the batch axis as a forward of the whole running input gives
    it (the engine may run a slice of positions), for errors that name the input's shape."""
    full = list(act.shape[1:])
    full[dims[0] - 1] = at.full_length(act.shape[dims[0]])
    return tuple(full)


def _rows(ref: Tensor, rows: int, at: window.Window) -> Tensor:
    """``ref``'s per-example rows repeated for a forward of ``rows`` rows (row r: example
    ``r % at.batch``, the engine's variant-major layout)."""
    examples = at.examples(rows)
    return ref if examples is None else ref[examples.to(ref.device)]


class _Replace:
    """Hook: overwrite the selected components of an activation with ``value_fn(act)``.

    Positions are absolute: inside the patching engine's partial forwards (a slice of
    positions, :mod:`.window`) a component at position ``p`` is written where ``p`` falls in
    the slice, and left alone when the slice does not hold it.
    """

    def __init__(self, comps: list[Component], value_fn, dims: tuple[int, ...] = (1,)):
        self.comps = comps
        self.value_fn = value_fn
        self.dims = dims  # the activation's position axes (batch first)

    def _index(self, c: Component, act: Tensor, at: window.Window) -> tuple | None:
        idx = c.index()
        if c.pos is None:
            return idx
        q = 2 if c.kind == "head.pattern" else 1  # [b, head, query, key] or [b, pos, ...]
        width = act.shape[q]
        full = at.full_length(width)
        if c.pos >= full:
            raise ContrastError(
                f"component {c.label!r}: position {c.pos} is past this input's {full} positions"
            )
        local = c.pos - at.offset
        if not 0 <= local < width:
            return None  # this partial forward does not compute that position
        return (*idx[:q], local, *idx[q + 1 :])

    def __call__(self, act: Tensor, *, hook) -> Tensor:
        at = window.current()
        new = self.value_fn(act, hook.name)
        out = act.clone()
        for c in self.comps:
            idx = self._index(c, act, at)
            if idx is None:
                continue
            out[idx] = new[idx] if new.shape == act.shape else new.expand_as(act)[idx]
        return out


@contextlib.contextmanager
def _attached(subject: Subject, fns: list[tuple[str, _Replace]]) -> Iterator[None]:
    """Attach replacement hooks, declared as reading the engine's window (:mod:`.window`)."""
    with subject.hooks(fns), window.declared(subject.model, [h for h, _ in fns]):
        yield


@contextlib.contextmanager
def ablate(
    subject: Subject,
    components: str | Sequence[str],
    kind: AblationKind = "zero",
    reference: ContrastSet | Tensor | None = None,
    *,
    seed: int = 0,
    per_position: bool | Literal["auto"] = "auto",
    concept: Literal["contrast", "groups"] = "contrast",
    erase_at: Literal["all", "positions"] = "all",
) -> Iterator[Subject]:
    """Ablate components for the body of a ``with`` block.

    ``zero`` sets them to 0; ``mean`` to their mean over ``reference`` (clean and
    counterfactual prompts of a ContrastSet, or a token tensor); ``resample`` to the activation
    of a reference prompt drawn at random (seeded) for each input row, which needs inputs as
    long as the reference. Row ``i`` of every forward draws the same reference prompt, so the
    two sides of a pair, run as separate forwards, are resampled alike and their difference
    carries no resampling noise of its own.

    ``per_position`` (mean ablation): ``False`` uses the mean over every real reference token,
    the same vector at every position (the mean :func:`interp_audit.engine.repairs.repaired`
    folds into weights); ``True`` the mean at each position, which needs inputs as long as the
    reference and reference prompts of one length; ``"auto"`` (default) the per-position mean
    when that is possible for an input, else the token mean.

    ``erase`` (components: one residual site, ``L1.resid_pre``, optionally ``@pos`` to fit the
    concept at those positions): fit LEACE concept erasure on ``reference``
    (``concept="contrast"``: clean vs counterfactual prompts; ``"groups"``: the contrast's
    groups) and apply it at every residual read up to that site, at every position
    (``erase_at="positions"``: only at the ``@pos`` positions) (:mod:`.erasure`).
    """
    if kind not in ("zero", "mean", "resample", "erase"):
        raise AuditError(
            f"ablation kind must be 'zero', 'mean', 'resample' or 'erase'; got {kind!r}"
        )
    if per_position not in (True, False, "auto"):
        raise AuditError(f"per_position must be True, False or 'auto'; got {per_position!r}")
    if kind == "erase":
        if not isinstance(reference, ContrastSet):
            raise AuditError(
                "erase needs reference= (a ContrastSet whose sides define the concept)"
            )
        _tokens_and_mask(reference, subject)  # an id past the vocabulary is refused by name
        eraser = fit_eraser(subject, components, reference, concept=concept, apply_at=erase_at)
        with erase(subject, eraser):
            yield subject
        return
    comps = parse_components(components, subject.shape)
    by_hook = _group(subject, comps)
    dims = subject.adapter.position_dims
    fns = []
    if kind == "zero":
        fns = [
            (h, _Replace(cs, lambda act, name: torch.zeros_like(act), dims(h)))
            for h, cs in by_hook.items()
        ]
    else:
        if reference is None:
            raise AuditError(f"{kind} ablation needs reference= (a ContrastSet or token tensor)")
        acts, mask = reference_activations(subject, reference, list(by_hook))
        ragged = not bool(mask.all())
        if kind == "mean":
            if per_position is True and ragged:
                raise ContrastError(
                    "per-position mean ablation needs reference prompts of one length; these "
                    "have padding (use per_position=False: the mean over real tokens)"
                )
            use_pos = per_position is not False and not ragged
            per_pos = {h: acts[h].mean(0) if use_pos else None for h in by_hook}
            token_mean = {h: _masked_mean(acts[h], mask) for h in by_hook}

            def mean_value(act, name, per_pos=per_pos, token_mean=token_mean):
                pp = per_pos[name]
                at = window.current()
                cut = None if pp is None else _cut(pp.unsqueeze(0), act, dims(name), at)
                if cut is not None:
                    return cut.expand_as(act)
                if per_position is True:
                    raise ContrastError(
                        f"per-position mean ablation at {name}: inputs have shape "
                        f"{_full_shape(act, dims(name), at)} but the reference means "
                        f"{tuple(acts[name].shape[1:])}; run inputs as long as the reference "
                        "(or per_position=False)"
                    )
                return token_mean[name].to(act.dtype)

            fns = [(h, _Replace(cs, mean_value, dims(h))) for h, cs in by_hook.items()]
        else:

            def resample_value(act, name, acts=acts):
                ref, at = acts[name], window.current()
                cut = _cut(ref, act, dims(name), at)
                if cut is None:
                    raise ContrastError(
                        f"resample ablation at {name}: inputs have shape "
                        f"{_full_shape(act, dims(name), at)} but the reference "
                        f"activations {tuple(ref.shape[1:])}; resampling needs inputs as long "
                        "as the reference prompts"
                    )
                # the same draw for every forward of this batch size: a pair's clean and
                # counterfactual forwards (and every ablated hook) read the same reference rows;
                # inside the patching engine, every variant of example i reads example i's row
                gen = torch.Generator().manual_seed(seed)
                n = at.batch or act.shape[0]
                rows = torch.randint(0, ref.shape[0], (n,), generator=gen)
                return _rows(cut[rows.to(ref.device)], act.shape[0], at)

            fns = [(h, _Replace(cs, resample_value, dims(h))) for h, cs in by_hook.items()]
    with _attached(subject, fns):
        yield subject


@contextlib.contextmanager
def patch_in(
    subject: Subject,
    components: str | Sequence[str],
    source: ContrastSet | Tensor,
    *,
    which: Literal["clean", "counterfactual"] = "clean",
) -> Iterator[Subject]:
    """Replace components with their activations on ``source`` for the body of a ``with`` block.

    ``source`` is a ContrastSet (its ``which`` prompts) or a token tensor; inputs run inside
    the block must have the source's batch size and length.
    """
    comps = parse_components(components, subject.shape)
    by_hook = _group(subject, comps)
    tokens, mask = _tokens_and_mask(source, subject, which)
    acts, _ = cached_run(subject, tokens.to(subject.device), mask.to(subject.device), set(by_hook))

    dims = subject.adapter.position_dims

    def value(act, name):
        src, at = acts[name], window.current()
        cut = _cut(src, act, dims(name), at)
        n = at.batch or act.shape[0]
        if cut is None or src.shape[0] != n:
            full = (n, *_full_shape(act, dims(name), at))
            raise ContrastError(
                f"patch_in at {name}: the running input gives activations {full} "
                "but the source "
                f"gave {tuple(src.shape)}; run inputs with the source's batch size and length"
            )
        return _rows(cut, act.shape[0], at).to(act.dtype)

    with _attached(subject, [(h, _Replace(cs, value, dims(h))) for h, cs in by_hook.items()]):
        yield subject


@contextlib.contextmanager
def ablate_token_embedding(
    subject: Subject, tokens: Sequence[str], like: Sequence[str]
) -> Iterator[Subject]:
    """Wherever one of ``tokens`` is embedded, use the mean embedding of the ``like`` tokens.

    A token-conditional edit of the first residual stream (``hook_embed``): the model can no
    longer tell these tokens from an average ``like`` token, while every other input is exactly
    unchanged. Unlearning a record keyed by a rare token (a name) costs nothing elsewhere.
    """
    W, embed = subject.adapter.embedding_matrix(), subject.adapter.embed_hook
    if not subject.has_hook(embed) or W is None:
        raise AuditError(
            f"ablate_token_embedding needs a model with {embed} and W_E; "
            f"{subject.model_class} has none"
        )

    targets = [subject.single_token(t, "token") for t in tokens]
    pool = [subject.single_token(t, "reference token") for t in like]
    W = W.detach()
    rows, mean = W[targets], W[pool].mean(0)

    def fn(act, *, hook):
        hit = (act[..., None, :] == rows.to(act.dtype)).all(-1).any(-1)  # [b, pos]
        return torch.where(hit[..., None], mean.to(act.dtype), act)

    with subject.hooks([(embed, fn)]):
        yield subject
