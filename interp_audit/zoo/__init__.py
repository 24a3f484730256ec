"""Bundled models with known circuits: ``load_model("zoo:NAME")``.

Each entry says how it was built (by hand, or by a training script under ``circuits/``) and
what its circuit is, so tests can check numbers against an analytic answer.
"""

from __future__ import annotations

from interp_audit.core.errors import ModelLoadError, did_you_mean
from interp_audit.zoo import finetuned, handbuilt, pretrained, trained  # noqa: F401  (they register)
from interp_audit.zoo.registry import _REGISTRY, ZooEntry, ZooModel, register  # noqa: F401


def available() -> dict[str, str]:
    """Zoo entry names and what each is."""
    return {k: v.description for k, v in _REGISTRY.items()}


def entry(name: str) -> ZooEntry:
    """The zoo entry ``name``; a ModelLoadError listing the entries otherwise."""
    if name not in _REGISTRY:
        raise ModelLoadError(
            f"no zoo model {name!r}; available: {', '.join(sorted(_REGISTRY))}"
            f"{did_you_mean(name, _REGISTRY)}"
        )
    return _REGISTRY[name]
