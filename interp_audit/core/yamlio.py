"""YAML the way specs mean it: YAML 1.2 booleans (only true/false), so answer tokens such as
YES, NO, on, off stay strings. Shared by audit specs and causal-model files."""

from __future__ import annotations

import re
from typing import Any

import yaml

__all__ = ["Loader", "load_yaml"]


class Loader(yaml.SafeLoader):
    """A SafeLoader whose booleans are only true/false (YAML 1.2)."""


Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=Loader)  # noqa: S506 (a SafeLoader subclass)
