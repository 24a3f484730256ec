"""Bootstrap confidence intervals over pairs (percentile method, seeded)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

#: resampled indices held at once ([n_boot, n] int64): 2e8 is 1.6 GB
MAX_BOOT_CELLS = 200_000_000


def check_bootstrap_size(n: int, n_boot: int) -> None:
    """Refuse a bootstrap that cannot fit in memory, before allocating it."""
    from ..errors import AuditError

    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise AuditError(f"n_boot={n_boot!r}: give a whole number of resamples >= 1")
    if n * n_boot > MAX_BOOT_CELLS:
        raise AuditError(
            f"bootstrap of {n} pairs x n_boot={n_boot} needs {n * n_boot:,} resampled indices "
            f"(limit {MAX_BOOT_CELLS:,}); lower n_boot to at most {max(1, MAX_BOOT_CELLS // n)}"
        )


def bootstrap(
    statistic: Callable[[Tensor], float],
    n: int,
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Point estimate and percentile CI of ``statistic(indices)`` under resampling of ``n`` pairs.

    ``statistic`` receives a LongTensor of pair indices (all pairs for the point estimate).
    """
    check_bootstrap_size(n, n_boot)
    point = statistic(torch.arange(n))
    if n < 2:
        return point, point, point
    gen = torch.Generator().manual_seed(seed)
    draws = torch.randint(0, n, (n_boot, n), generator=gen)
    samples = torch.tensor([statistic(idx) for idx in draws], dtype=torch.float64)
    alpha = (1 - confidence) / 2
    lo, hi = torch.quantile(samples, torch.tensor([alpha, 1 - alpha], dtype=torch.float64)).tolist()
    return point, lo, hi


def mean_ci(values: Tensor, **kw) -> tuple[float, float, float]:
    """Mean of per-pair values with its bootstrap CI."""
    v = values.detach().double().cpu()
    return bootstrap(lambda idx: float(v[idx].mean()), len(v), **kw)
