"""Where the forward passes of a sweep run: this process (``local``) or Ray actors (``ray``).

A sweep is planned once (``engine.plan_chunks``: which variants share a forward pass) and the
executor only decides *where* each pass runs. Results come back in the plan's order, so every
executor gives the local numbers bit for bit. The executor in force is a context variable:
``ia.patch(..., executor="ray")`` and ``ia.audit(spec, executor="ray")`` set it for their
duration, so every sweep inside (locate methods, mediation checks) is distributed without
threading an argument through each function.

Ray is imported only when a Ray executor is made: ``import interp_audit`` and the local path
never import it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from interp_audit.engine.executor_base import (
    _CURRENT,
    _LOCAL,
    Executor,
    LocalExecutor,
    current_executor,
)

__all__ = ["Executor", "LocalExecutor", "current_executor", "get_executor", "using"]


def get_executor(executor: Any = None, **options: Any) -> tuple[Executor, bool]:
    """Resolve ``None`` / ``"local"`` / ``"ray"`` / an Executor; also say whether we own it.

    An executor made here from a name is owned by the caller (close it when done); an Executor
    instance passed in stays the caller's.
    """
    if executor is None:
        return current_executor(), False
    if isinstance(executor, Executor):
        return executor, False
    if executor == "local":
        return _LOCAL, False
    if executor == "ray":
        return ray_executor_class()(**options), True
    from interp_audit.core.errors import AuditError, did_you_mean

    raise AuditError(
        f"unknown executor {executor!r}; valid: 'local', 'ray' or an Executor instance"
        + did_you_mean(str(executor), ["local", "ray"])
    )


def ray_executor_class() -> type[Executor]:
    """``RayExecutor``, or a plain error saying how to install Ray."""
    try:
        from interp_audit.engine.executors.ray_executor import RayExecutor
    except ImportError as err:
        from interp_audit.core.errors import AuditError

        raise AuditError(
            f"the Ray executor needs Ray ({err}); install it with: pip install 'interp_audit[ray]'"
        ) from None
    return RayExecutor


@contextlib.contextmanager
def using(executor: Any = None, **options: Any) -> Iterator[Executor]:
    """Run every sweep inside on ``executor``; an executor made from a name is closed after."""
    ex, owned = get_executor(executor, **options)
    token = _CURRENT.set(ex)
    try:
        yield ex
    finally:
        _CURRENT.reset(token)
        if owned:
            ex.close()
