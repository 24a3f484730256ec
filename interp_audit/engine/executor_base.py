"""The executor in force (a context variable) and the local executor: no imports of the engine.

Kept outside the ``interp_audit.engine.executors`` package so that the engine can ask for the
current executor without running that package's ``__init__`` (which can reach the Ray executor,
which imports the engine): no import cycle, counting package ``__init__`` edges.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["Executor", "LocalExecutor", "current_executor"]


class Executor:
    """Runs the chunks of a planned sweep and returns their results in plan order."""

    name = "executor"

    def run_chunks(
        self,
        ctx: Any,  # engine.RunContext (not imported: the engine imports this)
        variants: Sequence[tuple],
        chunks: Sequence[tuple[int, list[int]]],
        *,
        progress: bool = False,
        desc: str = "patching",
    ) -> Iterator[Tensor] | list[Tensor]:
        raise NotImplementedError

    def close(self) -> None:
        """Release workers (a no-op for the local executor)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LocalExecutor(Executor):
    """Today's behaviour: every forward pass in this process, one after the other."""

    name = "local"

    def run_chunks(self, ctx, variants, chunks, *, progress=False, desc="patching"):
        for start, idxs in tqdm(chunks, desc=desc, disable=not progress, leave=False):
            yield ctx.run_chunk([variants[i] for i in idxs], start)


_LOCAL = LocalExecutor()
_CURRENT: contextvars.ContextVar[Executor] = contextvars.ContextVar(
    "interp_audit_executor", default=_LOCAL
)


def current_executor() -> Executor:
    """The executor sweeps run on now (local unless inside ``using(...)``)."""
    return _CURRENT.get()
