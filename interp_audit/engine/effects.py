"""``Effects``: the one labelled result type every locate method returns.

A tensor with named dims and axis labels, one component label per cell, the metric and method
that produced it, and the reference values (clean / counterfactual) that give it meaning.
Displays itself in Jupyter; saves as JSON + safetensors.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from interp_audit.core.errors import AuditError, SiteError, did_you_mean

__all__ = ["Effects"]


@dataclass
class Effects:
    """Effect of each component on a behaviour metric.

    Attributes:
        values: tensor shaped by ``dims`` (e.g. ``("layer", "head")``).
        dims: names of the axes.
        axes: tick labels per axis (``{"layer": ["0", "1"], "head": [...]}``).
        components: one component label per cell, in ``values.flatten()`` order.
        metric, method: what was measured and how (``"patch"``, ``"atp"``, ...).
        normalized: True when 0 = unpatched and 1 = fully restored.
        per_example: ``[*dims, example]`` unnormalised per-example metric, when kept.
        baseline: mean metric on the clean and counterfactual runs.
        base_values, source_values: ``[example]`` metric of the unpatched base run and of the
            source run, when kept (checks reuse a sweep through them).
    """

    values: Tensor
    dims: tuple[str, ...]
    axes: dict[str, list[str]]
    components: list[str]
    metric: str = ""
    method: str = "patch"
    normalized: bool = True
    per_example: Tensor | None = None
    baseline: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    base_values: Tensor | None = None
    source_values: Tensor | None = None

    def __post_init__(self) -> None:
        if tuple(self.values.shape) != tuple(len(self.axes[d]) for d in self.dims):
            raise AuditError(
                f"Effects: values {tuple(self.values.shape)} do not match axes "
                f"{[len(self.axes[d]) for d in self.dims]}"
            )
        if len(self.components) != self.values.numel():
            raise AuditError("Effects: one component label per cell is required")

    # ---- lookup ----------------------------------------------------------------------------
    @property
    def flat(self) -> Tensor:
        return self.values.detach().flatten().float().cpu()

    def __getitem__(self, label: str) -> float:
        try:
            return float(self.flat[self.components.index(label)])
        except ValueError:
            raise SiteError(
                f"no component {label!r} in these effects{did_you_mean(label, self.components)}"
            ) from None

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self.components, self.flat.tolist(), strict=True))

    def top(self, k: int = 10, *, by: str = "abs") -> list[tuple[str, float]]:
        """The ``k`` largest effects as (component, value), by absolute value or signed."""
        flat = self.flat
        key = (flat.abs() if by == "abs" else flat).nan_to_num(nan=-float("inf"))
        order = torch.argsort(key, descending=True)[: min(k, int((~flat.isnan()).sum()))]
        return [(self.components[i], float(flat[i])) for i in order.tolist()]

    def to_frame(self):
        """Long-format pandas DataFrame: one row per component, a column per dim + value."""
        import itertools

        import pandas as pd

        rows = []
        for cell, (comp, val) in zip(
            itertools.product(*(self.axes[d] for d in self.dims)),
            zip(self.components, self.flat.tolist(), strict=True),
            strict=True,
        ):
            rows.append(
                {**dict(zip(self.dims, cell, strict=True)), "component": comp, "value": val}
            )
        return pd.DataFrame(rows)

    # ---- display ---------------------------------------------------------------------------
    def title(self) -> str:
        kind = "normalised" if self.normalized else "mean"
        return f"{self.method} · {self.metric} ({kind}) · {' × '.join(self.dims)}"

    def plot(self, title: str | None = None):
        """A plotly figure: heatmap for 2-D effects, bars for 1-D (3-D: rows = first two axes)."""
        import plotly.graph_objects as go

        vals = self.values.detach().float().cpu()
        title = title or self.title()
        if vals.ndim == 1:
            fig = go.Figure(
                go.Bar(
                    x=self.axes[self.dims[0]],
                    y=vals.tolist(),
                    marker_color=["#c62828" if v > 0 else "#1565c0" for v in vals.tolist()],
                )
            )
            fig.update_layout(xaxis_title=self.dims[0], yaxis_title="effect")
        else:
            if vals.ndim > 2:
                vals = (
                    vals.reshape(vals.shape[0] * vals.shape[1], -1)
                    if vals.ndim == 3
                    else vals.flatten(0, -2)
                )
                y = [f"{a}/{b}" for a in self.axes[self.dims[0]] for b in self.axes[self.dims[1]]]
                ytitle, xdim = f"{self.dims[0]}/{self.dims[1]}", self.dims[-1]
            else:
                y, ytitle, xdim = self.axes[self.dims[0]], self.dims[0], self.dims[1]
            bound = float(vals.abs().max()) or 1.0
            fig = go.Figure(
                go.Heatmap(
                    z=vals.tolist(),
                    x=self.axes[xdim],
                    y=y,
                    colorscale="RdBu_r",
                    zmid=0,
                    zmin=-bound,
                    zmax=bound,
                    colorbar={"title": "effect"},
                )
            )
            fig.update_layout(xaxis_title=xdim, yaxis_title=ytitle, yaxis_autorange="reversed")
        fig.update_layout(
            title=title,
            template="plotly_white",
            height=max(300, 40 * min(len(self.axes[self.dims[0]]), 20) + 150),
        )
        return fig

    def __repr__(self) -> str:
        top = ", ".join(f"{c}={v:+.3f}" for c, v in self.top(3))
        return f"Effects({self.title()}, shape={tuple(self.values.shape)}, top: {top})"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(c)}</td><td>{v:+.4f}</td></tr>" for c, v in self.top(8)
        )
        base = ", ".join(f"{k}={v:.4f}" for k, v in self.baseline.items())
        try:
            fig = self.plot().to_html(full_html=False, include_plotlyjs="cdn")
        except Exception:  # a display must never raise
            fig = ""
        return (
            f"<div><b>{html.escape(self.title())}</b><br><small>{html.escape(base)}</small>"
            f"<table><tr><th>component</th><th>effect</th></tr>{rows}</table>{fig}</div>"
        )

    # ---- persistence -----------------------------------------------------------------------
    _TENSORS = ("values", "per_example", "base_values", "source_values")
    _FIELDS = ("dims", "axes", "components", "metric", "method", "normalized", "baseline", "meta")

    def to_dict(self, *, tensors: bool = True) -> dict[str, Any]:
        """Plain JSON-able dict (tensors as nested lists); ``from_dict`` inverts it exactly."""
        out: dict[str, Any] = {k: getattr(self, k) for k in self._FIELDS}
        out["dims"] = list(self.dims)
        out["meta"] = json.loads(json.dumps(self.meta, default=str))
        for k in self._TENSORS if tensors else ("values",):
            t = getattr(self, k)
            out[k] = None if t is None else t.detach().float().cpu().tolist()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Effects:
        kw = {k: data[k] for k in cls._FIELDS if k in data}
        kw["dims"] = tuple(kw["dims"])
        for k in cls._TENSORS:
            if data.get(k) is not None:
                kw[k] = torch.tensor(data[k], dtype=torch.float32)
        return cls(**kw)

    def save(self, directory: str | Path) -> Path:
        """``effects.safetensors`` (tensors) + ``effects.json`` (labels) in ``directory``."""
        from safetensors.torch import save

        from interp_audit.core.files import write_atomic

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {
            k: getattr(self, k).detach().contiguous().cpu()
            for k in self._TENSORS
            if getattr(self, k) is not None
        }
        meta = self.to_dict(tensors=False)
        meta.pop("values")
        write_atomic(out / "effects.safetensors", save(tensors))  # each file whole or absent
        write_atomic(out / "effects.json", json.dumps(meta, indent=1, default=str))
        return out

    @classmethod
    def load(cls, directory: str | Path) -> Effects:
        from safetensors.torch import load_file

        d = Path(directory)
        tensors = load_file(str(d / "effects.safetensors"))
        meta = json.loads((d / "effects.json").read_text())
        meta["dims"] = tuple(meta["dims"])
        return cls(**meta, **tensors)
