"""Bundled models with known circuits: ``load_model("zoo:NAME")``.

Each entry says how it was built (by hand, or by a training script under ``circuits/``) and
what its circuit is, so tests can check numbers against an analytic answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ModelLoadError, did_you_mean
from ..subject import Subject


@dataclass(frozen=True)
class ZooEntry:
    name: str
    description: str
    build: Callable[[], Subject]


_REGISTRY: dict[str, ZooEntry] = {}


def register(name: str, description: str):
    """Decorator adding a builder to the zoo; a second entry with the same name is an error."""

    def wrap(fn: Callable[[], Subject]):
        if name in _REGISTRY:
            raise ValueError(f"zoo entry {name!r} is already registered")
        _REGISTRY[name] = ZooEntry(name, description, fn)
        return fn

    return wrap


def available() -> dict[str, str]:
    _load_builtins()
    return {k: v.description for k, v in _REGISTRY.items()}


def _load_builtins() -> None:
    from . import handbuilt, pretrained, trained  # noqa: F401  (they register on import)


def load_zoo(name: str, flags: dict[str, bool]) -> Subject:
    _load_builtins()
    if name not in _REGISTRY:
        raise ModelLoadError(
            f"no zoo model {name!r}; available: "
            f"{', '.join(sorted(_REGISTRY))}{did_you_mean(name, _REGISTRY)}"
        )
    subject = _REGISTRY[name].build()
    subject.source = f"zoo:{name}"
    if any(flags.values()):
        from ..loading import _apply_processing

        subject.weight_processing = _apply_processing(
            subject.model, flags, subject.weight_processing
        )
    return subject
