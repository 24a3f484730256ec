"""Cluster bootstrap, three-way verdicts and Holm's correction: statistics a gate can defend.

Pairs rendered from one swap pair (or one template, or one SCM unit) are not independent
replications: the unit of replication is the *cluster*. The bootstrap here resamples clusters
with replacement and weights every pair by its cluster's multiplicity, so a statistic sees the
same data a naive "resample clusters, concatenate their pairs, recompute" loop would see; it is
vectorised (one ``[draws, pairs]`` weight matrix per chunk, no Python loop over draws).

The bootstrap draws are widened around the point estimate by ``sqrt(G / (G - 1)) * t_{G-1} / z``:
the bootstrap variance of a mean of ``G`` clusters is ``(G - 1) / G`` times the unbiased one, and
with few clusters Student's critical value applies rather than the normal one; both matter at the
few dozen clusters audits have (tests/unit/test_stats.py measures the coverage).

A verdict is ``pass`` (interval inside the tolerance), ``fail`` (interval entirely outside,
and the violation test rejects after Holm's correction over the family), or ``inconclusive``
(otherwise, or fewer clusters than ``min_clusters``), always with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import torch
from jaxtyping import Float, Int
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import Tensor

from interp_audit.core.errors import SpecError

__all__ = [
    "DEFAULT_MIN_CLUSTERS",
    "MAX_BOOT",
    "MIN_BOOT",
    "Confidence",
    "Draws",
    "Interval",
    "Resampling",
    "Verdict",
    "band_verdict",
    "cluster_bootstrap",
    "cluster_bootstrap_columns",
    "cluster_codes",
    "column_intervals",
    "combine",
    "holm",
    "interval_row",
    "lower_verdict",
    "mean_ci",
    "percentile_ci",
    "upper_verdict",
    "z_value",
]

Verdict = Literal["pass", "fail", "inconclusive"]

#: Largest number of bootstrap draws a spec may ask for (memory is ``chunk x pairs`` doubles).
MAX_BOOT = 100_000
#: Fewest clusters for a decidable verdict when a check does not say otherwise: a cluster
#: bootstrap over fewer clusters undercovers badly (Cameron, Gelbach & Miller 2008).
DEFAULT_MIN_CLUSTERS = 10
#: Fewest draws a spec or a public function may ask for: a 95% percentile interval then rests on
#: the 2.5 most extreme draws at each end, and a bootstrap p-value can reach 0.01.
MIN_BOOT = 100
_CHUNK = 2_000

#: Bootstrap draws (the one declaration: checks, the trade-off and feature cards use it)
Draws = Annotated[int, Field(ge=MIN_BOOT, le=MAX_BOOT)]
#: Confidence level of an interval
Confidence = Annotated[float, Field(gt=0, lt=1)]


class Resampling(BaseModel):
    """How an interval is resampled: the bootstrap settings every check, the trade-off and the
    feature cards share, declared once. ``kw()`` is what the bootstrap functions take."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_boot: Draws = 1000
    """Bootstrap draws per interval."""
    confidence: Confidence = 0.95
    """Confidence level of every interval."""
    seed: int = Field(0, ge=0, le=2**63 - 1)
    """Seed of the draws (the spec's seed)."""
    min_clusters: int = Field(DEFAULT_MIN_CLUSTERS, ge=1)
    """Fewest clusters (independent units) for a decidable verdict."""

    @classmethod
    def of(cls, **settings: Any) -> Resampling:
        """Validated settings; a SpecError naming the setting otherwise."""
        try:
            return cls(**settings)
        except ValidationError as err:
            e = err.errors()[0]
            key = ".".join(str(p) for p in e["loc"])
            raise SpecError(f"{key}={e.get('input')!r}: {e['msg']}") from None

    def kw(self) -> dict[str, Any]:
        """Keyword arguments of :func:`cluster_bootstrap`, :func:`mean_ci`, :func:`bootstrap`."""
        return {"n_boot": self.n_boot, "confidence": self.confidence, "seed": self.seed}


@dataclass(frozen=True)
class Interval:
    """A point estimate with its cluster-bootstrap interval and draws.

    ``samples`` are the (small-sample-widened) bootstrap draws; one-sided p-values read them.
    """

    point: float
    lo: float
    hi: float
    n_clusters: int
    confidence: float
    samples: Tensor = field(repr=False)

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2

    def __iter__(self):
        """``point, lo, hi = interval`` (the tuple the pair-level bootstrap used to return)."""
        return iter((self.point, self.lo, self.hi))

    def __getitem__(self, i: int) -> float:
        return (self.point, self.lo, self.hi)[i]

    def p_above(self, limit: float) -> float:
        """Bootstrap p-value for "the statistic exceeds ``limit``" (share of draws <= limit)."""
        if self.n_clusters < 2:
            return 0.0 if self.point > limit else 1.0
        s = self.samples
        return float(((s <= limit).sum() + 1) / (len(s) + 1))

    def p_below(self, limit: float) -> float:
        """Bootstrap p-value for "the statistic is below ``limit``"."""
        if self.n_clusters < 2:
            return 0.0 if self.point < limit else 1.0
        s = self.samples
        return float(((s >= limit).sum() + 1) / (len(s) + 1))

    def p_outside(self, tol: float) -> float:
        """Two-sided p-value for "the statistic lies outside ±tol" (union of the two tails)."""
        return min(1.0, 2 * min(self.p_above(tol), self.p_below(-tol)))


def cluster_codes(clusters: Sequence[str] | None, n: int) -> Int[Tensor, " pair"]:
    """Integer cluster ids ``0..G-1`` per pair; no clusters = every pair its own cluster."""
    if clusters is None:
        return torch.arange(n)
    if len(clusters) != n:
        raise SpecError(f"{len(clusters)} cluster labels for {n} pairs: give one per pair")
    ids: dict[str, int] = {}
    return torch.tensor([ids.setdefault(c, len(ids)) for c in clusters], dtype=torch.long)


def _check_n_boot(n_boot: int) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or not 1 <= n_boot <= MAX_BOOT:
        raise SpecError(
            f"n_boot={n_boot}: the number of bootstrap draws must be between 1 and {MAX_BOOT}"
        )


def cluster_bootstrap(
    statistic: Callable[[Float[Tensor, "draw pair"]], Float[Tensor, " draw"]],
    clusters: Int[Tensor, " pair"] | Sequence[str] | None,
    n: int,
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Point estimate and percentile CI of ``statistic`` under resampling of clusters.

    ``statistic(weights)`` gets ``[draws, pairs]`` float64 multiplicity weights (all ones for
    the point estimate) and returns ``[draws]``: a weighted mean is ``(w @ v) / w.sum(1)``.
    A draw picks ``G`` clusters with replacement; each pair weighs its cluster's count.
    """
    (iv,) = cluster_bootstrap_columns(
        lambda w: statistic(w).reshape(-1, 1),
        clusters,
        n,
        n_boot=n_boot,
        confidence=confidence,
        seed=seed,
    )
    return iv


def cluster_bootstrap_columns(
    statistic: Callable[[Float[Tensor, "draw pair"]], Float[Tensor, "draw k"]],
    clusters: Int[Tensor, " pair"] | Sequence[str] | None,
    n: int,
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[Interval]:
    """:func:`cluster_bootstrap` for ``k`` statistics at once (the same draws for all of them):
    one interval per column of ``statistic(weights)``."""
    _check_n_boot(n_boot)
    codes = clusters if isinstance(clusters, Tensor) else cluster_codes(clusters, n)
    codes = codes.long().cpu()
    n_clusters = int(codes.max()) + 1 if len(codes) else 0
    point = statistic(torch.ones(1, n, dtype=torch.float64)).double().reshape(1, -1)
    k = point.shape[1]
    if n_clusters < 2:
        return column_intervals(point, None, n_clusters, confidence, n_boot=n_boot)
    gen = torch.Generator().manual_seed(seed)
    chunks = []
    for start in range(0, n_boot, _CHUNK):
        b = min(_CHUNK, n_boot - start)
        picks = torch.randint(0, n_clusters, (b, n_clusters), generator=gen)
        counts = torch.zeros(b, n_clusters, dtype=torch.float64)
        counts.scatter_add_(1, picks, torch.ones(b, n_clusters, dtype=torch.float64))
        chunks.append(statistic(counts[:, codes]).double().reshape(b, k))
    widen = _widening(n_clusters, confidence)
    samples = point + widen * (torch.cat(chunks) - point)
    return column_intervals(point, samples, n_clusters, confidence)


def column_intervals(
    point: Float[Tensor, "1 k"],
    samples: Float[Tensor, "draw k"] | None,
    n_clusters: int,
    confidence: float,
    *,
    bounds: Float[Tensor, "2 k"] | None = None,
    n_boot: int | None = None,
) -> list[Interval]:
    """One :class:`Interval` per column of ``point``: percentile bounds of ``samples`` (or the
    ``bounds`` given); ``samples`` None = no resampling possible (fewer than two units): every
    one of ``n_boot`` draws and both bounds are the point."""
    if samples is None:
        samples = point.expand(n_boot, point.shape[1])
        bounds = point.expand(2, point.shape[1])
    elif bounds is None:
        bounds = percentile_ci(samples, confidence, dim=0)
    return [
        Interval(
            float(point[0, j]),
            float(bounds[0, j]),
            float(bounds[1, j]),
            n_clusters,
            confidence,
            samples[:, j],
        )
        for j in range(point.shape[1])
    ]


def _widening(n_clusters: int, confidence: float) -> float:
    """Small-sample widening of the bootstrap draws around the point estimate:
    ``sqrt(G / (G - 1))`` makes the bootstrap variance of a mean the unbiased one, and
    ``t_{G-1} / z`` the critical value Student's rather than the normal one."""
    from scipy.stats import t

    q = 1 - (1 - confidence) / 2
    return math.sqrt(n_clusters / (n_clusters - 1)) * float(
        t.ppf(q, n_clusters - 1) / z_value(confidence)
    )


def z_value(confidence: float) -> float:
    """The normal critical value of a two-sided ``confidence`` interval (1.96 at 95%)."""
    from scipy.stats import norm

    return float(norm.ppf(1 - (1 - confidence) / 2))


def percentile_ci(draws: Tensor, confidence: float, dim: int | None = None) -> Tensor:
    """Lower and upper percentile bounds of bootstrap ``draws`` at ``confidence``, float64:
    ``[2]`` over all draws, or ``[2, k]`` for ``[draw, k]`` draws with ``dim=0``."""
    alpha = (1 - confidence) / 2
    q = torch.tensor([alpha, 1 - alpha], dtype=torch.float64)
    return torch.quantile(draws.double(), q, dim=dim)


def mean_ci(
    values: Float[Tensor, " pair"],
    clusters: Int[Tensor, " pair"] | Sequence[str] | None = None,
    **kw,
) -> Interval:
    """Mean of per-pair values with its cluster-bootstrap interval."""
    v = values.detach().double().cpu().reshape(-1)
    return cluster_bootstrap(lambda w: (w @ v) / w.sum(1), clusters, len(v), **kw)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control, any dependence)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def _few(iv: Interval, min_clusters: int) -> str | None:
    if iv.n_clusters < min_clusters:
        return (
            f"{iv.n_clusters} cluster{'s' if iv.n_clusters != 1 else ''} < min_clusters "
            f"{min_clusters}: too few independent replications to decide"
        )
    return None


def band_verdict(
    iv: Interval, tol: float, *, min_clusters: int, p_adjusted: float | None = None
) -> tuple[Verdict, str]:
    """Verdict for "the statistic lies within ±tol", with its reason.

    ``p_adjusted``: the Holm-adjusted violation p-value when the test is one of a family; a
    ``fail`` needs the interval entirely outside *and* that p-value below ``1 - confidence``.
    """
    few = _few(iv, min_clusters)
    if few:
        return "inconclusive", few
    if -tol <= iv.lo and iv.hi <= tol:
        return "pass", f"CI inside ±{tol}"
    alpha = 1 - iv.confidence
    p = iv.p_outside(tol) if p_adjusted is None else p_adjusted
    if (iv.lo > tol or iv.hi < -tol) and p <= alpha:
        return "fail", f"CI entirely outside ±{tol}"
    if iv.lo > tol or iv.hi < -tol:
        return "inconclusive", f"CI outside ±{tol} but Holm-adjusted p={p:.3g} > {alpha:.3g}"
    return "inconclusive", f"CI [{iv.lo:+.4g}, {iv.hi:+.4g}] straddles ±{tol}"


def upper_verdict(
    iv: Interval, limit: float, *, min_clusters: int, p_adjusted: float | None = None
) -> tuple[Verdict, str]:
    """Verdict for "the statistic is at most ``limit``" (shares, costs, budgets).

    ``p_adjusted``: the Holm-adjusted p-value of "it exceeds ``limit``" when the test is one of
    a family; a ``fail`` then also needs it below ``1 - confidence``.
    """
    few = _few(iv, min_clusters)
    if few:
        return "inconclusive", few
    if iv.hi <= limit:
        return "pass", f"CI below {limit}"
    if iv.lo > limit:
        alpha = 1 - iv.confidence
        if p_adjusted is not None and p_adjusted > alpha:
            return (
                "inconclusive",
                f"CI above {limit} but Holm-adjusted p={p_adjusted:.3g} > {alpha:.3g}",
            )
        return "fail", f"CI entirely above {limit}"
    return "inconclusive", f"CI [{iv.lo:.4g}, {iv.hi:.4g}] straddles {limit}"


def lower_verdict(
    iv: Interval, limit: float, *, min_clusters: int, p_adjusted: float | None = None
) -> tuple[Verdict, str]:
    """Verdict for "the statistic is at least ``limit``" (ratios, floors); ``p_adjusted`` as in
    :func:`upper_verdict`, for "it is below ``limit``"."""
    few = _few(iv, min_clusters)
    if few:
        return "inconclusive", few
    if iv.lo >= limit:
        return "pass", f"CI above {limit}"
    if iv.hi < limit:
        alpha = 1 - iv.confidence
        if p_adjusted is not None and p_adjusted > alpha:
            return (
                "inconclusive",
                f"CI below {limit} but Holm-adjusted p={p_adjusted:.3g} > {alpha:.3g}",
            )
        return "fail", f"CI entirely below {limit}"
    return "inconclusive", f"CI [{iv.lo:.4g}, {iv.hi:.4g}] straddles {limit}"


def combine(verdicts: Sequence[Verdict]) -> Verdict:
    """A check fails if any part fails, passes if every part passes, else is inconclusive."""
    if any(v == "fail" for v in verdicts):
        return "fail"
    if all(v == "pass" for v in verdicts):
        return "pass"
    return "inconclusive"


def interval_row(iv: Interval) -> dict:
    """The fields every detail row carries for an interval."""
    return {
        "ci": [iv.lo, iv.hi],
        "half_width": iv.half_width,
        "clusters": iv.n_clusters,
    }


def bootstrap(
    statistic: Callable[[Tensor], float],
    n: int,
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Pair-level percentile bootstrap of ``statistic(indices)`` (every pair independent).

    For statistics that are not weighted means (the trade-off table's rank correlations);
    checks use :func:`cluster_bootstrap`, which respects the unit of replication.
    """
    _check_n_boot(n_boot)
    point = statistic(torch.arange(n))
    if n < 2:
        return point, point, point
    gen = torch.Generator().manual_seed(seed)
    draws = torch.randint(0, n, (n_boot, n), generator=gen)
    samples = torch.tensor([statistic(idx) for idx in draws], dtype=torch.float64)
    lo, hi = percentile_ci(samples, confidence).tolist()
    return point, lo, hi
