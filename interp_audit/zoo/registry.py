"""The zoo's registry: entries register a builder that returns a :class:`ZooModel`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: the zoo's folder in the installed package: weights/, specs/ and causal/ (package data)
ZOO_DIR = Path(__file__).resolve().parent
WEIGHTS = ZOO_DIR / "weights"


@dataclass(frozen=True)
class ZooModel:
    """What a zoo entry provides; :func:`interp_audit.load_model` turns it into a Subject.

    Either ``folder`` (a saved model folder), ``file`` (one model file: a ``.gguf``), or
    ``config`` (a TransformerLens config dict)
    with ``init`` filling the freshly built model's weights in place. The zoo holds data and
    builders only: it never imports the loading layer (no import cycle).
    """

    folder: Path | None = None
    file: Path | None = None
    config: dict[str, Any] | None = None
    init: Callable[[Any], None] | None = None
    tokenizer: Any = None
    prepend_bos: bool = True


@dataclass(frozen=True)
class ZooEntry:
    name: str
    description: str
    build: Callable[[], ZooModel]


_REGISTRY: dict[str, ZooEntry] = {}


def register(name: str, description: str):
    """Decorator adding a builder to the zoo; a second entry with the same name is an error."""

    def wrap(fn: Callable[[], ZooModel]):
        if name in _REGISTRY:
            raise ValueError(f"zoo entry {name!r} is already registered")
        _REGISTRY[name] = ZooEntry(name, description, fn)
        return fn

    return wrap
