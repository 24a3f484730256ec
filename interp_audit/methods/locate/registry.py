"""The locate-method registry: ``method:`` values in specs, the CLI's ``--method`` choices.

A locate method maps (step spec, contrast set, metric, audit context) to :class:`Effects`.
Adding one is one module with a ``register_locate(LocateMethod(...))`` call, imported from
:mod:`interp_audit.methods.locate.methods` (as auto-circuit's algorithm list, SAELens's SAE
registry).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from pydantic import BaseModel

    from interp_audit.engine.effects import Effects

__all__ = ["LocateMethod", "all_registered", "register_locate"]


@dataclass(frozen=True)
class LocateMethod:
    """One way to locate components.

    Attributes:
        name: the ``method:`` value in specs (and ``--method`` in ``interp-audit sweep``).
        run: ``run(step, contrast, metric, ctx) -> Effects``; ``step`` is the spec's
            LocateSpec (``step.options`` holds this method's own options), ``ctx`` the
            AuditContext (subject, spec folder, other contrasts).
        description: one line for the spec reference.
        options: a pydantic model (extra keys forbidden) of the method's own spec keys, or None.
        exact: True for exact interventions, False for estimates (attribution). Exact
            methods over components are what a check may reuse instead of re-patching, what
            the batched-vs-serial trust gate re-derives, and what a repair ranks by.
        units: what its Effects are over: model ``"components"`` (labels such as ``L3H5``)
            or SAE ``"features"`` (``L3F12``).
    """

    name: str
    run: Callable[..., Effects]
    description: str
    options: type[BaseModel] | None = None
    exact: bool = True
    units: Literal["components", "features"] = "components"


_METHODS: dict[str, LocateMethod] = {}


def register_locate(method: LocateMethod) -> LocateMethod:
    """Add a locate method; a second one with the same name is an error."""
    if method.name in _METHODS:
        raise ValueError(f"locate method {method.name!r} is already registered")
    _METHODS[method.name] = method
    return method


def all_registered() -> dict[str, LocateMethod]:
    """The methods registered so far; use ``interp_audit.methods.locate.methods.locate_methods()``,
    which registers the built-in ones first."""
    return dict(_METHODS)
