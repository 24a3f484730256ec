"""Model adapters: one per model family, the only TransformerLens-aware code.

:func:`adapter_for` picks the family once, at load; nothing downstream branches on a model
class. Adding a family is one module with a :class:`ModelAdapter` subclass and one
:func:`register_adapter` line.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from interp_audit.core.errors import ModelLoadError
from interp_audit.model.adapters.base import ModelAdapter

__all__ = ["ModelAdapter", "adapter_for", "register_adapter", "supported_classes"]

#: (class name, module path of the class, adapter factory), checked in order with isinstance.
_REGISTRY: list[tuple[str, str, Callable[[torch.nn.Module], ModelAdapter]]] = []


def register_adapter(
    class_name: str, module: str, factory: Callable[[torch.nn.Module], ModelAdapter]
) -> None:
    """Register ``factory`` for models that are instances of ``module.class_name``."""
    if any(name == class_name for name, _, _ in _REGISTRY):
        raise ValueError(f"an adapter for {class_name!r} is already registered")
    _REGISTRY.append((class_name, module, factory))


def supported_classes() -> list[str]:
    return [name for name, _, _ in _REGISTRY]


def _resolve(module: str, name: str):
    import importlib

    from interp_audit.model.adapters.quiet import quiet_tl_warnings

    with quiet_tl_warnings():
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            return None


def adapter_for(model: torch.nn.Module) -> ModelAdapter:
    """The adapter of ``model``'s family; a ModelLoadError naming the supported classes."""
    for name, module, factory in _REGISTRY:
        cls = _resolve(module, name)
        if cls is not None and isinstance(model, cls):
            return factory(model)
    raise ModelLoadError(
        f"cannot audit a {type(model).__name__}: load_model needs a TransformerLens model "
        f"({', '.join(supported_classes())}), a local Hugging Face folder or a hub name"
    )


def _hooked(model):
    from interp_audit.model.adapters.hooked import HookedAdapter

    if getattr(model.cfg, "attention_dir", "causal") == "bidirectional":
        raise ModelLoadError(
            "a bidirectional HookedTransformer is not supported; build a HookedEncoder"
        )
    return HookedAdapter(model)


def _encoder(model):
    from interp_audit.model.adapters.encoder import EncoderAdapter

    return EncoderAdapter(model)


def _bridge(model):
    from interp_audit.model.adapters.bridge import BridgeAdapter

    return BridgeAdapter(model)


# HookedSAETransformer subclasses HookedTransformer: the isinstance check covers it.
register_adapter("HookedTransformer", "transformer_lens", _hooked)
register_adapter("HookedEncoder", "transformer_lens", _encoder)
register_adapter("TransformerBridge", "transformer_lens.model_bridge", _bridge)
