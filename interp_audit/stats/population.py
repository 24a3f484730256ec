"""Intervals for population quantities: distinct categories with weights, not a list of pairs.

A population effect is a weighted sum over distinct categories (prompt pairs, unit types) whose
weights are probabilities (exact enumeration: no sampling error at all, hence no interval) or
counts of ``N`` drawn units. Resampling ``N`` units with replacement is a multinomial draw of the
category counts, so the bootstrap draws ``[draws, categories]`` count matrices directly
(``numpy``'s vectorised multinomial): the interval reflects the sampling of units and nothing
else, at the cost of the categories, not of the units.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from interp_audit.stats.bootstrap import MAX_BOOT, Interval, Verdict, column_intervals

__all__ = [
    "exact_band_verdict",
    "exact_upper_verdict",
    "population_intervals",
    "stratified_counts",
]

Statistic = Callable[[Float[Tensor, "draw category"]], Float[Tensor, "draw k"]]


def population_intervals(
    statistic: Statistic,
    weights: Float[Tensor, " category"],
    *,
    exact: bool,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[Interval]:
    """One interval per column of ``statistic(weights [draws, categories]) -> [draws, k]``.

    ``exact``: ``weights`` are probabilities and the point is the quantity itself (lo = hi =
    point; ``n_clusters`` 0 marks it). Otherwise ``weights`` are counts of drawn units and each
    bootstrap draw resamples their total with replacement (``n_clusters`` = the units).
    """
    w = weights.detach().double().cpu().reshape(1, -1)
    point = statistic(w).double().reshape(1, -1)
    k = point.shape[1]
    if exact:
        return [
            Interval(float(p), float(p), float(p), 0, confidence, p.expand(n_boot).clone())
            for p in point[0]
        ]
    if not 1 <= n_boot <= MAX_BOOT:
        raise ValueError(f"n_boot={n_boot}: between 1 and {MAX_BOOT}")
    counts = w[0].numpy()
    total = int(round(float(counts.sum())))
    if total < 2:
        return column_intervals(point, None, total, confidence, n_boot=n_boot)
    rng = np.random.default_rng(seed)
    probs = counts / counts.sum()
    draws = torch.from_numpy(rng.multinomial(total, probs, size=n_boot).astype(np.float64))
    samples = statistic(draws).double().reshape(n_boot, k)
    alpha = (1 - confidence) / 2
    q = torch.tensor([alpha, 1 - alpha], dtype=torch.float64)
    bounds = torch.nanquantile(samples, q, dim=0)  # a draw with no changed unit: nan, skipped
    return column_intervals(point, samples, total, confidence, bounds=bounds)


def exact_band_verdict(point: float, tol: float) -> tuple[Verdict, str]:
    """Verdict for an exact quantity (no sampling error) against ±tol."""
    if abs(point) <= tol:
        return "pass", f"exact effect {point:+.4g} inside ±{tol} (no sampling interval)"
    return "fail", f"exact effect {point:+.4g} outside ±{tol} (no sampling interval)"


def exact_upper_verdict(point: float, limit: float) -> tuple[Verdict, str]:
    """Verdict for "an exact quantity is at most ``limit``"."""
    if point <= limit:
        return "pass", f"exact value {point:.4g} at most {limit} (no sampling interval)"
    return "fail", f"exact value {point:.4g} above {limit} (no sampling interval)"


def stratified_counts(
    counts: list[Float[Tensor, " category"]], *, n_boot: int = 1000, seed: int = 0
) -> list[Float[Tensor, "draw category"]]:
    """Bootstrap draws of several independent samples (strata), each resampled with
    replacement on its own: a multinomial draw of each stratum's category counts."""
    if not 1 <= n_boot <= MAX_BOOT:
        raise ValueError(f"n_boot={n_boot}: between 1 and {MAX_BOOT}")
    rng = np.random.default_rng(seed)
    out = []
    for c in counts:
        c = c.detach().double().cpu().numpy()
        total = int(round(float(c.sum())))
        draws = rng.multinomial(total, c / c.sum(), size=n_boot).astype(np.float64)
        out.append(torch.from_numpy(draws))
    return out
