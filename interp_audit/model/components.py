"""Component addresses: labels such as ``L3H5`` or ``L3.resid_pre@7`` <-> hook names and indices.

Labels are what a human reads in a heatmap or writes in a spec: this is the only module that
parses or prints them. Hook names underneath belong to the adapters
(:mod:`interp_audit.model.adapters.hooks`): code with a model at hand asks
``subject.hook_name(component)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from interp_audit.core.errors import SiteError, did_you_mean
from interp_audit.model.adapters import hooks

_LABEL = re.compile(
    r"^L(?P<layer>\d+)"
    r"(?:H(?P<head>\d+)(?:\.(?P<head_part>q|k|v|z|pattern))?"
    r"|N(?P<neuron>\d+)"
    r"|\.(?P<kind>resid_pre|resid_mid|resid_post|attn|mlp))"
    r"(?:@(?P<pos>-?\d+|span))?$"
)


@dataclass(frozen=True, order=True)
class Component:
    """One addressable piece of a model: a layer-level activation, a head, or a neuron.

    ``head`` indexes heads (or MLP neurons when ``kind == 'neuron'``); ``pos`` restricts the
    component to one sequence position (``None`` = all positions): ``7``, or for pairs of
    unequal token counts an alignment slot: ``-1`` (last token of each prompt), ``"span"``
    (the tokens that differ).
    """

    layer: int
    kind: str
    head: int | None = None
    pos: int | str | None = None

    @property
    def hook_name(self) -> str:
        """The hook in the shared vocabulary; with a model at hand, ``subject.hook_name(c)``."""
        return hooks.hook_of(self.kind, self.layer)

    @property
    def label(self) -> str:
        at = "" if self.pos is None else f"@{self.pos}"
        if self.kind == "neuron":
            return f"L{self.layer}N{self.head}{at}"
        if self.kind.startswith("head"):
            part = "" if self.kind == "head" else "." + self.kind.split(".")[1]
            return f"L{self.layer}H{self.head}{part}{at}"
        return f"L{self.layer}.{self.kind}{at}"

    def index(self) -> tuple:
        """Index into the hook's activation (batch axis first) that selects this component."""
        if self.kind == "head.pattern":  # [batch, head, dest, src]
            return (slice(None), self.head, slice(None) if self.pos is None else self.pos)
        pos = slice(None) if self.pos is None else self.pos
        if self.head is None:  # [batch, pos, d]
            return (slice(None), pos)
        return (slice(None), pos, self.head)  # [batch, pos, head, d] or [batch, pos, neuron]

    def __str__(self) -> str:
        return self.label


def parse_component(text: str, shape: ModelShape | None = None) -> Component:
    """Parse a label (``L3H5``, ``L3.mlp``, ``L3.resid_pre@7``, ``L2N17``) or a block hook name.

    With ``shape`` the address is checked against the model and an out-of-range layer, head
    or position raises :class:`SiteError` naming the valid range.
    """
    if not isinstance(text, str):
        raise SiteError(f"component {text!r} must be a string such as 'L0H1' or 'L2.mlp'")
    m = _LABEL.match(text.strip())
    if m:
        layer = int(m["layer"])
        pos = m["pos"] if m["pos"] in (None, "span") else int(m["pos"])
        if m["head"] is not None:
            part = m["head_part"]
            kind = "head" if part in (None, "z") else f"head.{part}"
            comp = Component(layer, kind, int(m["head"]), pos)
        elif m["neuron"] is not None:
            comp = Component(layer, "neuron", int(m["neuron"]), pos)
        else:
            comp = Component(layer, m["kind"], None, pos)
    else:
        h = hooks.component_of(text)
        if h is None:
            valid = ["L0H0", "L0.attn", "L0.mlp", "L0.resid_pre", "L0.resid_pre@0", "L0N0"]
            raise SiteError(
                f"cannot read component {text!r}: expected a label like 'L3H5', 'L3.mlp', "
                f"'L3.attn', 'L3.resid_pre@7', 'L3N12' or a hook name like "
                f"{hooks.hook_of('head', 3)!r}"
                f"{did_you_mean(text, valid + hooks.component_hooks())}"
            )
        comp = Component(*h)
    if shape is not None:
        shape.check(comp, text)
    return comp


@dataclass(frozen=True)
class ModelShape:
    """The few numbers that bound component addresses; the Subject provides one."""

    n_layers: int
    n_heads: int
    d_mlp: int | None
    has_mlp: bool = True
    has_resid_mid: bool = True
    n_kv_heads: int | None = None

    def check(self, comp: Component, text: str = "") -> None:
        text = text or comp.label
        if not 0 <= comp.layer < self.n_layers:
            raise SiteError(
                f"component {text!r}: layer {comp.layer} does not exist; "
                f"this model has layers 0..{self.n_layers - 1}"
            )
        if comp.kind == "mlp" or comp.kind == "neuron":
            if not self.has_mlp:
                raise SiteError(f"component {text!r}: this model is attention-only (no MLPs)")
        if comp.kind == "resid_mid" and not self.has_resid_mid:
            raise SiteError(
                f"component {text!r}: this model has no resid_mid (attention-only or parallel)"
            )
        if comp.kind.startswith("head"):
            n = self.n_heads
            if comp.kind in ("head.k", "head.v") and self.n_kv_heads:
                n = self.n_kv_heads
            if not 0 <= (comp.head or 0) < n:
                raise SiteError(
                    f"component {text!r}: head {comp.head} does not exist; "
                    f"layer {comp.layer} has heads 0..{n - 1}"
                )
        if (
            comp.kind == "neuron"
            and self.d_mlp is not None
            and not 0 <= (comp.head or 0) < self.d_mlp
        ):
            raise SiteError(
                f"component {text!r}: neuron {comp.head} does not exist; MLPs have neurons "
                f"0..{self.d_mlp - 1}"
            )


def parse_components(items, shape: ModelShape | None = None) -> list[Component]:
    """Parse a list of labels/hook names (a single string is one component)."""
    if isinstance(items, str | Component):
        items = [items]
    return [c if isinstance(c, Component) else parse_component(c, shape) for c in items]
