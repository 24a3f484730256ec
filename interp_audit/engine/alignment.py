"""Aligning the positions of a clean/counterfactual pair whose token counts may differ.

"Emily said that" and "Lakisha said that" are 4 and 6 tokens in SmolLM2's vocabulary
(``'L' 'ak' 'isha'``). Positions are aligned by the longest common token **prefix** and
**suffix**; what lies between is the differing **span**. A prefix position matches the same
position on the other side; a suffix position matches the one equally far from the end. When
both spans have the same length (every equal-length pair) their positions match one to one as
well; spans of different lengths have no one-to-one match, so nothing is patched there.

Positions are named by **slots**, the same for every pair: prefix slot ``k`` (position ``k``,
counted from the start), the ``span``, and suffix slot ``-k`` (``k``-th from each side's end).
A pair whose prefix is shorter than ``k`` has no slot ``k``: per-position results are NaN there
(not patched), never a number from some other position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Bool, Int
from torch import Tensor

__all__ = ["SPAN", "Alignment", "Side", "Slot", "align_source", "slot_of"]

Side = Literal["clean", "counterfactual"]


@dataclass(frozen=True, order=True)
class Slot:
    """A named position shared by every pair: ``Slot(3)`` (prefix), ``SPAN``, ``Slot(-1)``."""

    index: int | None  # >= 0: prefix position; < 0: suffix position from the end; None: span

    @property
    def kind(self) -> Literal["prefix", "span", "suffix"]:
        if self.index is None:
            return "span"
        return "prefix" if self.index >= 0 else "suffix"

    @property
    def label(self) -> str:
        """As a component label writes it after ``@``: ``3``, ``span``, ``-1``."""
        return "span" if self.index is None else str(self.index)

    def __repr__(self) -> str:
        return f"Slot({self.label})"


SPAN = Slot(None)


def slot_of(pos: int | str) -> Slot:
    """The slot a component label's position names (``3``, ``-1`` or ``"span"``)."""
    return SPAN if pos == "span" else Slot(int(pos))


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@dataclass(frozen=True)
class Alignment:
    """Per pair: how many leading and trailing tokens clean and counterfactual share.

    Attributes:
        prefix, suffix: ``[pair]`` lengths of the common token prefix and suffix (never
            overlapping: prefix + suffix <= the shorter side's length).
        clean_lengths, cf_lengths: ``[pair]`` real token counts of each side.
    """

    prefix: Int[Tensor, " pair"]
    suffix: Int[Tensor, " pair"]
    clean_lengths: Int[Tensor, " pair"]
    cf_lengths: Int[Tensor, " pair"]

    @classmethod
    def of(
        cls,
        clean: Int[Tensor, "pair pos"],
        counterfactual: Int[Tensor, "pair pos"],
        clean_lengths: Int[Tensor, " pair"],
        cf_lengths: Int[Tensor, " pair"],
    ) -> Alignment:
        prefix, suffix = [], []
        for i in range(clean.shape[0]):
            a = clean[i, : int(clean_lengths[i])].tolist()
            b = counterfactual[i, : int(cf_lengths[i])].tolist()
            p = _common_prefix(a, b)
            s = _common_prefix(a[p:][::-1], b[p:][::-1])
            prefix.append(p)
            suffix.append(s)
        return cls(
            torch.tensor(prefix, dtype=torch.long),
            torch.tensor(suffix, dtype=torch.long),
            clean_lengths.long().cpu(),
            cf_lengths.long().cpu(),
        )

    def __len__(self) -> int:
        return int(self.prefix.shape[0])

    def lengths(self, side: Side) -> Int[Tensor, " pair"]:
        return self.clean_lengths if side == "clean" else self.cf_lengths

    @property
    def one_to_one(self) -> Bool[Tensor, " pair"]:
        """Pairs whose spans have equal length (equal token counts): every position matches."""
        return self.clean_lengths == self.cf_lengths

    def span(self, side: Side) -> tuple[Int[Tensor, " pair"], Int[Tensor, " pair"]]:
        """``(start, end)`` of each pair's differing span on ``side`` (end exclusive)."""
        return self.prefix, self.lengths(side) - self.suffix

    def position_map(self, base: Side, width: int) -> Int[Tensor, "pair width"]:
        """For each position of the ``base`` side, the matching position of the other side,
        or -1 where there is none (a span of different length, padding)."""
        lb, lo = self.lengths(base), self.lengths("counterfactual" if base == "clean" else "clean")
        pos = torch.arange(width)[None, :]
        in_prefix = pos < self.prefix[:, None]
        in_suffix = (pos >= (lb - self.suffix)[:, None]) & (pos < lb[:, None])
        real = pos < lb[:, None]
        same = self.one_to_one[:, None] & real
        out = torch.full((len(self), width), -1, dtype=torch.long)
        out = torch.where(in_prefix | same, pos.expand_as(out), out)
        return torch.where(in_suffix & ~same, pos + (lo - lb)[:, None], out)

    def slot_positions(self, slot: Slot, side: Side, width: int) -> Bool[Tensor, "pair width"]:
        """Which positions of ``side`` a slot covers, in pairs where it can be patched."""
        pos = torch.arange(width)[None, :]
        length = self.lengths(side)[:, None]
        if slot.index is None:
            start, end = self.span(side)
            cover = (pos >= start[:, None]) & (pos < end[:, None])
        elif slot.index >= 0:
            cover = pos == slot.index
        else:
            cover = pos == length + slot.index
        return cover & self.slot_present(slot)[:, None]

    def slot_present(self, slot: Slot) -> Bool[Tensor, " pair"]:
        """Pairs in which ``slot`` exists and can be patched one to one."""
        if slot.index is None:
            start, end = self.span("clean")
            return self.one_to_one & (end > start)
        if slot.index >= 0:
            return self.prefix > slot.index
        return self.suffix >= -slot.index

    def slots(self) -> list[Slot]:
        """Every slot some pair has: prefix ``0..``, the span, suffix ``..-1``."""
        n_prefix = int(self.prefix.max()) if len(self) else 0
        n_suffix = int(self.suffix.max()) if len(self) else 0
        suffix = [Slot(-k) for k in range(n_suffix, 0, -1)]
        return [Slot(k) for k in range(n_prefix)] + [SPAN] + suffix

    def slot_labels(self, str_tokens: tuple[tuple[str, ...], ...] | None) -> list[str]:
        """Axis labels: ``'0 The'``, ``'span'``, ``'-1 that'`` (tokens when all pairs agree)."""
        out = []
        for slot in self.slots():
            if slot.index is None or str_tokens is None:
                out.append(slot.label)
                continue
            rows = self.slot_present(slot).nonzero().flatten().tolist()
            seen = sorted({(str_tokens[i][slot.index].strip() or "␣") for i in rows})
            out.append(f"{slot.label} {'|'.join(seen)}" if len(seen) <= 3 else slot.label)
        return out

    def not_patched(self) -> str | None:
        """Why some positions were left alone (the span of unequal pairs), or None."""
        n = int((~self.one_to_one).sum())
        if n == 0:
            return None
        return (
            f"the differing span of {n} of {len(self)} pairs (spans of different token counts "
            "have no one-to-one positions)"
        )


def align_source(
    source: Tensor, base: Tensor | None, position_map: Int[Tensor, "pair width"], pos_dims: tuple
) -> Tensor:
    """``source`` activations moved onto the base run's positions.

    ``pos_dims`` are the activation's position axes (1 for ``[b, pos, ...]``; 2 and 3 for
    attention patterns ``[b, head, q, k]``). Where a base position has no match the base
    activation is kept (patching there changes nothing); with ``base=None`` such entries are
    NaN until :meth:`RunContext.fill_unmatched` fills them, so a forgotten fill cannot pass as
    a number.
    """
    pmap = position_map.to(source.device)
    valid = None
    out = source
    for d in pos_dims:
        width = out.shape[d]
        idx = pmap[:, :width].clamp(min=0)
        shape = [idx.shape[0]] + [1] * (out.ndim - 1)
        shape[d] = width
        index = idx.reshape(shape).expand(*out.shape[:d], width, *out.shape[d + 1 :])
        out = out.gather(d, index)
        ok = (pmap[:, :width] >= 0).reshape(shape)
        valid = ok if valid is None else valid & ok
    fill = base if base is not None else torch.full_like(out, float("nan"))
    return torch.where(valid, out, fill.to(out.dtype))
