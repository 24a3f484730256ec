"""Memory preflight: the estimate bounds what the engine really allocates, budgets are kept,
and a budget that cannot hold one row is refused with the numbers.

"Really allocates" is counted op by op (:class:`LiveTensorBytes`: the bytes of every tensor
created inside the sweep that is still alive after each op), which is exact on CPU where no
allocator reports a peak, and independent of the machine's load.
"""

from __future__ import annotations

import pytest
import torch

import interp_audit as ia
from interp_audit.core.errors import AuditError
from interp_audit.methods.locate.sites import plan_sites
from interp_audit.model.loading import build_model
from interp_audit.model.memory import LiveTensorBytes, estimate_sweep, max_rows

from helpers import build_cfg


@pytest.fixture(scope="module")
def medium():
    cfg = build_cfg(n_layers=2, d_model=128, d_head=32, d_mlp=512, n_ctx=32)
    subject = ia.load_model(build_model(cfg, seed=0))
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(0, 50, (8, 24), generator=g)
    cf = clean.clone()
    cf[:, 5] = (clean[:, 5] + 13) % 50
    return subject, ia.ContrastSet.from_tokens(clean, cf, torch.randint(0, 50, (8, 2), generator=g))


@pytest.fixture(scope="module")
def reference(medium):
    subject, pairs = medium
    return ia.patch(subject, pairs, sites="heads", normalize=False).values


@pytest.mark.parametrize("site, per_position, rows", [("heads", False, 16), ("resid_pre", True, 8)])
def test_estimate_bounds_the_measured_peak(medium, site, per_position, rows):
    subject, pairs = medium
    plan = plan_sites(subject, pairs, site, per_position)
    with LiveTensorBytes() as meter:
        ia.patch(subject, pairs, sites=site, per_position=per_position, batch_size=rows)
    est = estimate_sweep(
        subject,
        pairs.seq_len,
        rows,
        plan.hooks,
        n_examples=len(pairs),
        n_variants=len(plan.variants),
    )
    assert meter.peak > 100_000  # the meter saw the sweep's tensors
    assert meter.peak <= est.activations <= 4 * meter.peak, (meter.peak, est.describe())


def test_budget_is_kept_and_numbers_do_not_change(medium, reference):
    subject, pairs = medium
    one = estimate_sweep(subject, pairs.seq_len, 1)
    budget = one.weights + one.work_fixed + 5 * one.per_row  # room for 5 rows: 2 base batches
    rows = max_rows(subject, pairs.seq_len, budget)
    assert rows == 5
    with LiveTensorBytes() as meter:
        got = ia.patch(subject, pairs, sites="heads", normalize=False, max_memory=budget).values
    assert one.weights + meter.peak <= budget
    torch.testing.assert_close(got, reference, atol=1e-5, rtol=0)


def test_budget_too_small_is_refused_with_the_estimate(medium):
    subject, pairs = medium
    weights = estimate_sweep(subject, pairs.seq_len, 1).weights
    with pytest.raises(AuditError, match=r"cannot hold one row.*weights .* MiB.*24 positions"):
        ia.patch(subject, pairs, sites="heads", max_memory=weights + 1000)


def test_meter_counts_an_analytic_allocation():
    with LiveTensorBytes() as meter:
        a = torch.ones(1000, 10)  # 40 kB
        b = a * 2  # +40 kB
        del a
        c = b.sum(0)  # a is gone: 40 kB + 40 B
        del b, c
    assert meter.peak == 80_000 and meter.current == 0
