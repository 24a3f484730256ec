"""Weight edits: a rank-one update of an MLP's output weights (ROME, Meng et al. 2022).

An MLP is read as a key-value memory: the hidden activation at a position is a key ``k``, the
output ``k @ W_out + b_out`` its value. To make a located key stop writing what it wrote (a
canary's secret keyed by the canary's name), the edit sets its value to the value that
*ordinary* keys write (the same prompt with the keyed token replaced by each ``like`` token,
averaged) and changes ``W_out`` as little as possible in the metric of the keys' second moment
``C = E[k k^T]`` over generic text:

    delta = C^-1 K^T (K C^-1 K^T)^-1 (V - K W_out - b_out)          (K: one key per row)

With one key this is ROME's rank-one update; with n keys it is rank n (one rank-one edit per
forgotten record, solved jointly as in MEMIT). The edit is a **weight-level** intervention: the
weights no longer hold the association, unlike an input redaction, which only stops the model
from seeing the key. The context restores the original weights on exit, also on error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from interp_audit.core.errors import AuditError, ContrastError, SiteError
from interp_audit.model.components import parse_component
from interp_audit.model.subject import Subject

__all__ = ["RankOneEdit", "mlp_keys", "rank_one_edit", "solve_edit"]


def _padded(subject: Subject, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
    rows = [subject.to_tokens(t) for t in texts]
    width = max(map(len, rows))
    tokens = torch.full((len(rows), width), subject.pad_token_id)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = True
    return tokens, mask


@torch.no_grad()
def _capture(subject: Subject, tokens: Tensor, hooks: Sequence[str]) -> dict[str, Tensor]:
    got: dict[str, Tensor] = {}

    def keep(act, *, hook):
        got[hook.name] = act.detach().double().cpu()

    with subject.hooks([(h, keep) for h in hooks]):
        subject.run(tokens)
    return got


def mlp_keys(subject: Subject, layer: int, texts: Sequence[str]) -> Float[Tensor, "tokens d_mlp"]:
    """Every real token's MLP hidden activation (the keys) at ``layer`` over ``texts``."""
    tokens, mask = _padded(subject, texts)
    post = subject.adapter.mlp_post(layer)
    return _capture(subject, tokens, [post])[post][mask]


def solve_edit(
    W: Float[Tensor, "d_mlp d_model"],
    b: Float[Tensor, " d_model"],
    K: Float[Tensor, "n d_mlp"],
    V: Float[Tensor, "n d_model"],
    C: Float[Tensor, "d_mlp d_mlp"],
) -> Float[Tensor, "d_mlp d_model"]:
    """The least change of W (in the C^-1 metric) with ``K @ (W + delta) + b == V``."""
    W, b, K, V, C = (x.double() for x in (W, b, K, V, C))
    ck = torch.linalg.solve(C, K.T)  # C^-1 K^T  [d_mlp, n]
    residual = V - K @ W - b  # [n, d_model]
    return ck @ torch.linalg.solve(K @ ck, residual)


@dataclass(frozen=True)
class RankOneEdit:
    """What an edit changed: where, for which prompts, and the update's size and rank."""

    component: str
    prompts: tuple[str, ...]
    delta: Tensor  # [d_mlp, d_model], float64
    rank: int
    relative_norm: float  # ||delta|| / ||W_out||


@contextlib.contextmanager
def rank_one_edit(
    subject: Subject,
    component: str,
    prompts: Sequence[str],
    like: Sequence[str],
    generic_text: Sequence[str],
    *,
    key_position: int = 1,
    damping: float = 1e-2,
) -> Iterator[RankOneEdit]:
    """Edit ``W_out`` of the MLP at ``component`` so that the keys of ``prompts`` write what
    they would write if the token at ``key_position`` (the record's subject: a name) were an
    average ``like`` token.

    ``L{layer}.mlp@{pos}`` edits the keys at position ``pos`` only (ROME: the subject's last
    token); ``L{layer}.mlp`` edits every position from ``key_position`` on (each later position
    of a record reads the subject, so each is a key of its own; one rank-one term per key).

    ``generic_text`` estimates C = E[k k^T] (plus ``damping`` x its mean diagonal, so that C is
    invertible when there are fewer tokens than neurons). Weights are restored on exit.
    """
    comp = parse_component(component, subject.shape)
    if comp.kind != "mlp":
        raise SiteError(
            f"a rank-one edit edits an MLP's W_out, e.g. 'L1.mlp' or 'L0.mlp@1'; got {component!r}"
        )
    if not prompts or not like or not generic_text:
        raise ContrastError("a rank-one edit needs prompts, 'like' tokens and generic text")
    layer = comp.layer
    weights = subject.adapter.mlp_output_weights(layer)
    if weights is None:
        raise AuditError(
            f"rank-one edits need an MLP with W_out and b_out at layer {layer}; "
            f"{subject.model_class} has none"
        )
    W, b = weights
    tokens, mask = _padded(subject, prompts)
    last = max(key_position, comp.pos or 0)
    short = [p for p, m in zip(prompts, mask, strict=True) if int(m.sum()) <= last]
    if short:
        raise ContrastError(f"prompt {short[0]!r} has no token at position {last}")
    edited = mask.clone()
    edited[:, :key_position] = False
    if comp.pos is not None:
        edited[:] = False
        edited[:, comp.pos] = True
    post, out = subject.adapter.mlp_post(layer), subject.adapter.mlp_out(layer)
    K = _capture(subject, tokens, [post])[post][edited]  # [n_keys, d_mlp]
    like_ids = [subject.single_token(t, "'like' token") for t in like]
    values = []
    for t in like_ids:  # the same prompts with the keyed token replaced by an ordinary one
        swapped = tokens.clone()
        swapped[:, key_position] = t
        values.append(_capture(subject, swapped, [out])[out][edited])
    V = torch.stack(values).mean(0)  # [n_keys, d_model]
    keys = mlp_keys(subject, layer, generic_text)
    C = keys.T @ keys / len(keys)
    C = C + damping * C.diagonal().mean() * torch.eye(len(C), dtype=C.dtype)
    delta = solve_edit(W.detach().cpu(), b.detach().cpu(), K, V, C)
    original = W.detach().clone()
    edit = RankOneEdit(
        component,
        tuple(prompts),
        delta,
        int(torch.linalg.matrix_rank(delta)),
        float(delta.norm() / original.double().norm()),
    )
    try:
        with torch.no_grad():
            W.add_(delta.to(W.dtype).to(W.device))
        yield edit
    finally:
        with torch.no_grad():
            W.copy_(original)
