"""``compare(exact, estimate)``: how far an attribution estimate can be trusted, and where not."""

from __future__ import annotations

import html
from dataclasses import dataclass

import torch

from interp_audit.core.errors import AuditError
from interp_audit.engine.effects import Effects


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """Average ranks (ties share the mean rank), as Spearman's correlation needs."""
    order = torch.argsort(x)
    ranks = torch.empty_like(x)
    ranks[order] = torch.arange(len(x), dtype=x.dtype)
    for v in torch.unique(x):
        tie = x == v
        if tie.sum() > 1:
            ranks[tie] = ranks[tie].mean()
    return ranks


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = float(a.norm() * b.norm())
    return float((a * b).sum()) / denom if denom > 0 else float("nan")


@dataclass
class Comparison:
    """Agreement between exact effects and an estimate of them, over the same components."""

    components: list[str]
    exact: torch.Tensor
    estimate: torch.Tensor
    spearman: float
    pearson: float
    top_k_overlap: dict[int, float]
    max_abs_error: float
    exact_method: str
    estimate_method: str
    magnitude: bool

    def worst(self, k: int = 5) -> list[tuple[str, float, float]]:
        """The components where the estimate is furthest off: (label, exact, estimate)."""
        order = torch.argsort((self.exact - self.estimate).abs(), descending=True)[:k]
        return [
            (self.components[i], float(self.exact[i]), float(self.estimate[i]))
            for i in order.tolist()
        ]

    def plot(self):
        import plotly.graph_objects as go

        lo = float(min(self.exact.min(), self.estimate.min()))
        hi = float(max(self.exact.max(), self.estimate.max()))
        fig = go.Figure(
            go.Scatter(
                x=self.exact.tolist(),
                y=self.estimate.tolist(),
                mode="markers",
                text=self.components,
                hovertemplate="%{text}<br>exact %{x:.4f}<br>estimate %{y:.4f}",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=[lo, hi],
                y=[lo, hi],
                mode="lines",
                line={"dash": "dash", "color": "grey"},
                name="y = x",
            )
        )
        kind = " (|exact|: the estimate is a magnitude)" if self.magnitude else ""
        fig.update_layout(
            title=f"{self.estimate_method} vs {self.exact_method}: Spearman "
            f"{self.spearman:.3f}{kind}",
            xaxis_title=f"{self.exact_method}",
            yaxis_title=self.estimate_method,
            template="plotly_white",
            showlegend=False,
        )
        return fig

    def __repr__(self) -> str:
        tops = ", ".join(f"top-{k} {v:.0%}" for k, v in self.top_k_overlap.items())
        return (
            f"Comparison({self.estimate_method} vs {self.exact_method}: Spearman "
            f"{self.spearman:.3f}, Pearson {self.pearson:.3f}, {tops}, max |error| "
            f"{self.max_abs_error:.3g})"
        )

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(c)}</td><td>{a:+.4f}</td><td>{b:+.4f}</td></tr>"
            for c, a, b in self.worst()
        )
        return (
            f"<div><b>{html.escape(repr(self))}</b><table><tr><th>worst</th><th>exact</th><th>"
            f"estimate</th></tr>{rows}</table></div>"
        )


def compare(exact: Effects, estimate: Effects, *, k: tuple[int, ...] = (1, 3, 5, 10)) -> Comparison:
    """Rank correlation, top-k overlap (by |effect|) and errors of ``estimate`` vs ``exact``."""
    if exact.components != estimate.components:
        raise AuditError(
            "compare needs the same components in the same order; got "
            f"{len(exact.components)} exact vs {len(estimate.components)} estimated "
            f"({exact.dims} vs {estimate.dims})"
        )
    magnitude = estimate.meta.get("estimates") == "magnitude"
    a = exact.flat.double()
    b = estimate.flat.double()
    if magnitude:
        a = a.abs()
    ok = ~(a.isnan() | b.isnan())
    a, b = a[ok], b[ok]
    comps = [c for c, keep in zip(exact.components, ok.tolist(), strict=True) if keep]
    overlap = {}
    for kk in k:
        if kk <= len(a):
            top_a = set(torch.argsort(a.abs(), descending=True)[:kk].tolist())
            top_b = set(torch.argsort(b.abs(), descending=True)[:kk].tolist())
            overlap[kk] = len(top_a & top_b) / kk
    return Comparison(
        components=comps,
        exact=a.float(),
        estimate=b.float(),
        spearman=_pearson(_ranks(a), _ranks(b)),
        pearson=_pearson(a, b),
        top_k_overlap=overlap,
        max_abs_error=float((a - b).abs().max()),
        exact_method=exact.method,
        estimate_method=estimate.method,
        magnitude=magnitude,
    )
