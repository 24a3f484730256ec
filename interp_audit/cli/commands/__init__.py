"""CLI subcommands, one module each: ``NAME``, ``HELP``, ``add_arguments(p)``, ``main(args)``.

``interp-audit`` discovers every module in this package, so adding a subcommand is one file.
Modules must not import TransformerLens at import time (``--help`` stays fast).
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

__all__ = ["commands"]


def commands() -> dict[str, ModuleType]:
    """Subcommand modules by their NAME, in a stable order."""
    out = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        out[module.NAME] = module
    return out
