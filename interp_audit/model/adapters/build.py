"""Constructing TransformerLens models: from a config dict (random init) or a hub name.

Kept beside the adapters because it is TransformerLens-aware; :mod:`interp_audit.model.loading`
decides *what* to load, this module knows *how* TransformerLens builds it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
from typing import Any

import torch

from interp_audit.core.errors import ModelLoadError, did_you_mean


def _quiet():
    from interp_audit.model.adapters.quiet import quiet_tl_warnings

    return quiet_tl_warnings()


def tl_config(cfg: dict[str, Any]):
    """A HookedTransformerConfig from a dict; unknown keys are a ModelLoadError."""
    with _quiet():
        from transformer_lens import HookedTransformerConfig

    cfg = dict(cfg)
    if isinstance(cfg.get("dtype"), str):
        cfg["dtype"] = getattr(torch, cfg["dtype"])
    fields = {f.name for f in dataclasses.fields(HookedTransformerConfig)}
    unknown = sorted(set(cfg) - fields)
    if unknown:
        raise ModelLoadError(
            f"unknown TransformerLens config key {unknown[0]!r}{did_you_mean(unknown[0], fields)}"
        )
    return HookedTransformerConfig(**cfg)


def block_param(layer: int, name: str) -> str:
    """State-dict key of a parameter inside block ``layer`` (``attn.W_Q`` ...): zoo models whose
    weights are set by hand name them with this."""
    return f"blocks.{layer}.{name}"


def build_tl_model(cfg: dict[str, Any], kind: str = "causal", seed: int | None = None):
    """A random-init HookedTransformer (``kind="causal"``) or HookedEncoder (``"encoder"``)."""
    with _quiet():
        from transformer_lens import HookedEncoder, HookedTransformer

        config = tl_config(cfg)
        with contextlib.redirect_stdout(io.StringIO()):  # TL prints "Moving model to device"
            if kind != "encoder":
                return HookedTransformer(config)
            model = HookedEncoder(config)
    _init_encoder(model, seed if seed is not None else 0)
    return model


def _init_encoder(model, seed: int) -> None:
    """HookedEncoder leaves parameters uninitialised (torch.empty): give them BERT's init."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "w" and ".ln" in f".{name}":
                param.fill_(1.0)
            elif leaf.startswith("b") or leaf == "b":
                param.zero_()
            else:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.02 * 10)


def from_pretrained_name(
    name: str, flags: dict[str, bool], device: str, dtype: torch.dtype | None
) -> torch.nn.Module:
    """A TransformerLens pretrained name through TL's own loader (needs the internet)."""
    with _quiet():
        from transformer_lens import HookedEncoder, HookedTransformer

        logging.getLogger("transformer_lens").setLevel(logging.ERROR)
        try:
            if name.lower().startswith("bert") or "minilm" in name.lower():
                if any(flags.values()):
                    raise ModelLoadError(
                        f"weight processing {sorted(k for k, v in flags.items() if v)} is not "
                        "supported for encoders (BERT's post-LayerNorm cannot be folded)"
                    )
                return HookedEncoder.from_pretrained(
                    name, device=device, dtype=dtype or torch.float32
                )
            return HookedTransformer.from_pretrained(
                name, device=device, dtype=dtype or torch.float32, **flags
            )
        except ModelLoadError:
            raise
        except Exception as err:  # the hub, a bad name, no network: one readable line
            raise ModelLoadError(
                f"could not load pretrained model {name!r} through TransformerLens: "
                f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            ) from err
