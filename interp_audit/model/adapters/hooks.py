"""Hook names: the package's one table of them, in TransformerLens's vocabulary.

``blocks.{L}.attn.hook_z`` and its kin are the lingua franca of the field, and the three
supported families (HookedTransformer, HookedEncoder, TransformerBridge) all answer to them.
Everything outside :mod:`interp_audit.model.adapters` names an activation by its **role**
(``"head"``, ``"resid_pre"``, ``"neuron.pre"`` ...: component kinds plus a few roles the engine
reads) and asks the subject's adapter (:meth:`ModelAdapter.hook`, :meth:`ModelAdapter.role_of`)
for the name; objects built without a model at hand (a :class:`Component`, a ``Patch``) use the
module functions below, which are the same table. A family with other names overrides the
adapter's methods.
"""

from __future__ import annotations

import re
from functools import lru_cache

#: role -> hook name inside ``blocks.{L}.``. The first eleven are the component kinds a label
#: addresses (``L3.resid_pre``, ``L3.attn``, ``L3H5``, ``L3H5.q``, ``L3N7`` ...).
BLOCK_HOOKS: dict[str, str] = {
    "resid_pre": "hook_resid_pre",
    "resid_mid": "hook_resid_mid",
    "resid_post": "hook_resid_post",
    "attn": "hook_attn_out",
    "mlp": "hook_mlp_out",
    "head": "attn.hook_z",
    "head.q": "attn.hook_q",
    "head.k": "attn.hook_k",
    "head.v": "attn.hook_v",
    "head.pattern": "attn.hook_pattern",
    "neuron": "mlp.hook_post",
    # roles that are not components
    "head.scores": "attn.hook_attn_scores",
    "head.result": "attn.hook_result",
    "neuron.pre": "mlp.hook_pre",
    "mlp_in": "hook_mlp_in",
    "q_input": "hook_q_input",
    "k_input": "hook_k_input",
    "v_input": "hook_v_input",
    "resid_post.normalized": "hook_normalized_resid_post",
}
COMPONENT_KINDS: tuple[str, ...] = tuple(BLOCK_HOOKS)[:11]
#: hook names that address a component under another name (a friendly synonym users type)
_COMPONENT_SYNONYMS = {"attn.hook_result": "head"}
_ROLE_OF = {v: k for k, v in BLOCK_HOOKS.items()}
_BLOCK = re.compile(r"^blocks\.(?P<layer>\d+)\.(?P<suffix>[\w.]+)$")

#: the token embedding (before positions are added)
EMBED = "hook_embed"

#: the activation's axes after the batch axis, by the hook's last name part (memory planning):
#: s positions, h heads, dh head width, kv key/value heads, d model width, dm MLP width
_AXES = {
    "hook_pattern": ("h", "s", "s"),
    "hook_attn_scores": ("h", "s", "s"),
    "hook_z": ("s", "h", "dh"),
    "hook_q": ("s", "h", "dh"),
    "hook_rot_q": ("s", "h", "dh"),
    "hook_result": ("s", "h", "dh", "d"),
    "hook_k": ("s", "kv", "dh"),
    "hook_v": ("s", "kv", "dh"),
    "hook_rot_k": ("s", "kv", "dh"),
    "hook_pre": ("s", "dm"),
    "hook_post": ("s", "dm"),
    "hook_pre_linear": ("s", "dm"),
    "hook_q_input": ("s", "h", "d"),  # split inputs (edge attribution): one copy per head
    "hook_k_input": ("s", "kv", "d"),
    "hook_v_input": ("s", "kv", "d"),
    "hook_scale": ("s",),
}

#: TransformerLens weight processing -> fragments of the hook names whose activations it changes
_PROCESSING = {
    "center_writing_weights": ("resid", "hook_out", "attn_out", "mlp_out", "hook_result"),
    "fold_value_biases": ("hook_z", "hook_v", "hook_result"),
    "fold_ln": ("normalized", "ln"),
}


def hook_of(role: str, layer: int) -> str:
    """The hook holding ``role`` at block ``layer``."""
    return f"blocks.{layer}.{BLOCK_HOOKS[role]}"


@lru_cache(maxsize=4096)
def role_of(name: str) -> tuple[int, str] | None:
    """``(layer, role)`` of a block hook name; None for other hooks (embeddings, final norm)."""
    m = _BLOCK.match(name)
    if not m or m["suffix"] not in _ROLE_OF:
        return None
    return int(m["layer"]), _ROLE_OF[m["suffix"]]


def component_of(name: str) -> tuple[int, str] | None:
    """``(layer, component kind)`` of a hook name that addresses a component, else None."""
    m = _BLOCK.match(name.strip())
    if not m:
        return None
    kind = _COMPONENT_SYNONYMS.get(m["suffix"]) or _ROLE_OF.get(m["suffix"])
    return (int(m["layer"]), kind) if kind in COMPONENT_KINDS else None


def in_block(name: str) -> bool:
    """Does ``name`` look like a block hook name (``blocks.3....``)?"""
    return name.startswith("blocks.")


@lru_cache(maxsize=4096)
def layer_of(name: str) -> int | None:
    """Block index of a hook name, or None for embed/unembed-level hooks."""
    m = _BLOCK.match(name)
    return int(m["layer"]) if m else None


def component_hooks(layer: int = 0) -> list[str]:
    """Every hook name a component label can stand for at ``layer`` (for did-you-mean lists)."""
    return [hook_of(kind, layer) for kind in COMPONENT_KINDS]


def activation_axes(name: str) -> tuple[str, ...]:
    """Symbolic per-example axes of the activation at ``name`` (see ``_AXES``)."""
    return _AXES.get(name.rsplit(".", 1)[-1], ("s", "d"))


def processing_affecting(name: str) -> list[str]:
    """Weight-processing flags (``fold_ln`` ...) that change the activation at ``name``."""
    return [flag for flag, parts in _PROCESSING.items() if any(h in name for h in parts)]
