"""Where a partial forward sits in the full input: for hooks that index positions or rows.

The patching engine runs slices of a forward (:mod:`interp_audit.engine.batched`): a block over
the positions from the first one a variant changes, the last block at the scored position only,
and many variants of one example batch stacked on the batch axis (row ``r`` is example
``r % batch``). A hook that addresses an absolute position (``ia.ablate(subject, ["L1H2.v@4"])``)
or draws per example (resample ablation) must know that layout, or it would index the slice's
own position 4 (or refuse it as past the slice's end). The engine publishes the layout here for
the duration of each partial call; hooks read :func:`current`.

Hooks that read the window declare it with :func:`declared` (the package's own interventions
do). A hook the engine does not know about may index positions or rows its own way, so while any
undeclared hook is live on a model the engine runs every variant as a full forward at every
position (:func:`undeclared`): slower, and exactly what a plain hooked forward computes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass

from torch import Tensor

__all__ = ["Window", "at", "current", "declared", "undeclared"]


@dataclass(frozen=True)
class Window:
    """The layout of the activations a hook sees now.

    ``offset``: absolute position of the activation's first query position. ``length``: the
    full input's positions (None: the activation's own). ``batch``: examples per block of
    rows, row ``r`` being example ``r % batch`` (None: every row its own example).
    """

    offset: int = 0
    length: int | None = None
    batch: int | None = None

    def full_length(self, width: int) -> int:
        """The full input's positions, for an activation with ``width`` query positions."""
        return self.offset + width if self.length is None else self.length

    def positions(self, ref: Tensor, dim: int, width: int) -> Tensor:
        """``ref`` (laid out over the full input along ``dim``) cut to this slice's positions."""
        return ref.narrow(dim, self.offset, width)

    def examples(self, rows: int) -> Tensor | None:
        """Example index of each of ``rows`` rows, or None when rows are examples."""
        if self.batch is None or self.batch == rows:
            return None
        import torch

        return torch.arange(rows) % self.batch


_FULL = Window()
_CURRENT: ContextVar[Window | None] = ContextVar("interp_audit_window", default=None)


def current() -> Window:
    """The layout of the activations the running forward produces (default: a full one)."""
    return _CURRENT.get() or _FULL


@contextlib.contextmanager
def at(offset: int = 0, length: int | None = None, batch: int | None = None) -> Iterator[None]:
    """Inside: hooks see activations laid out as ``Window(offset, length, batch)``."""
    token = _CURRENT.set(Window(offset, length, batch))
    try:
        yield
    finally:
        _CURRENT.reset(token)


#: (id of the model, hook name) -> how many window-aware contexts hold a hook there now
_DECLARED: dict[tuple[int, str], int] = {}


@contextlib.contextmanager
def declared(model: object, names: Sequence[str]) -> Iterator[None]:
    """Inside: hooks at ``names`` on ``model`` read :func:`current` (registered, then released)."""
    keys = [(id(model), n) for n in names]
    for k in keys:
        _DECLARED[k] = _DECLARED.get(k, 0) + 1
    try:
        yield
    finally:
        for k in keys:
            _DECLARED[k] -= 1
            if not _DECLARED[k]:
                del _DECLARED[k]


def undeclared(model: object, live: Sequence[str]) -> list[str]:
    """The live hook points of ``model`` that no window-aware context declared."""
    return [n for n in live if (id(model), n) not in _DECLARED]
