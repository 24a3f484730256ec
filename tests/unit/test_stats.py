"""Cluster bootstrap, verdicts and Holm: checked against a naive loop, an analytic answer and a
coverage simulation on clustered data of known mean."""

import math

import pytest
import torch

import interp_audit as ia
from interp_audit.audit.measure import spearman, weighted_spearman
from interp_audit.stats.bootstrap import (
    MAX_BOOT,
    Interval,
    _widening,
    band_verdict,
    cluster_bootstrap,
    cluster_bootstrap_columns,
    combine,
    holm,
    mean_ci,
    upper_verdict,
)


def clustered(n_clusters, per, reps, seed):
    """``reps`` data sets, each ``n_clusters`` clusters of ``per`` pairs; true mean 0.

    Between-cluster SD 1, within-cluster SD 0.5: pairs of one cluster are strongly correlated.
    """
    g = torch.Generator().manual_seed(seed)
    values = torch.randn(n_clusters, 1, reps, generator=g) + 0.5 * torch.randn(
        n_clusters, per, reps, generator=g
    )
    return values.reshape(n_clusters * per, reps).double(), torch.arange(
        n_clusters
    ).repeat_interleave(per)


def coverage(values, clusters):
    def means(w):
        return (w @ values) / w.sum(1, keepdim=True)

    ivs = cluster_bootstrap_columns(means, clusters, values.shape[0], n_boot=1000, seed=1)
    return sum(iv.lo <= 0.0 <= iv.hi for iv in ivs) / len(ivs)


def test_cluster_interval_covers_the_truth_and_the_pair_bootstrap_does_not():
    """1000 clustered data sets of known mean 0: the 95% cluster interval covers 0 in 93-97% of
    them; the old bootstrap over pairs (treating the 150 pairs as independent) far less."""
    values, clusters = clustered(n_clusters=30, per=5, reps=1000, seed=0)
    assert 0.93 <= coverage(values, clusters) <= 0.97
    assert coverage(values, None) < 0.8


def test_weights_equal_resampling_clusters_in_a_loop():
    """The vectorised draws are exactly "pick G clusters, concatenate their pairs, recompute"."""
    g = torch.Generator().manual_seed(3)
    values = torch.randn(23, generator=g).double()
    labels = [f"c{i % 7}" for i in range(23)]  # 7 clusters of unequal size
    iv = mean_ci(values, labels, n_boot=300, seed=5)
    codes = torch.tensor([i % 7 for i in range(23)])
    gen = torch.Generator().manual_seed(5)
    picks = torch.randint(0, 7, (300, 7), generator=gen)
    naive = torch.tensor(
        [float(torch.cat([values[codes == c] for c in draw.tolist()]).mean()) for draw in picks],
        dtype=torch.float64,
    )
    widened = iv.point + _widening(7, 0.95) * (naive - iv.point)
    assert iv.point == pytest.approx(float(values.mean()))
    assert torch.allclose(iv.samples, widened, atol=1e-12)
    lo, hi = torch.quantile(widened, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    assert (iv.lo, iv.hi) == (pytest.approx(lo), pytest.approx(hi))
    assert iv.n_clusters == 7 and iv.half_width == pytest.approx((hi - lo) / 2)


def test_duplicated_pairs_do_not_shrink_the_interval():
    """The issue's example: 4 pairs duplicated 50 times are still 4 clusters."""
    values = torch.tensor([0.1, -0.3, 0.4, 0.2], dtype=torch.float64)
    once = mean_ci(values, ["a", "b", "c", "d"], n_boot=2000)
    dup = mean_ci(values.repeat(50), ["a", "b", "c", "d"] * 50, n_boot=2000)
    assert dup.n_clusters == 4
    assert dup.half_width == pytest.approx(once.half_width, rel=1e-9)
    naive = mean_ci(values.repeat(50), None, n_boot=2000)  # the old pair-level bootstrap
    assert naive.half_width < once.half_width / 4


def test_weighted_spearman_equals_spearman_on_the_expanded_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 5, (12,), generator=g).double()  # ties on purpose
    y = torch.randn(12, generator=g).double()
    counts = torch.randint(0, 3, (4, 12), generator=g).double()
    counts[:, 0] += 1
    got = weighted_spearman(x, y, counts)
    for row, value in zip(counts, got, strict=True):
        idx = torch.arange(12).repeat_interleave(row.long())
        assert float(value) == pytest.approx(spearman(x[idx], y[idx]), abs=1e-12)


def test_holm_matches_the_step_down_by_hand():
    # sorted 0.01, 0.02, 0.04, 0.30 -> 4*0.01, 3*0.02, max(0.06, 2*0.04), max(0.08, 0.30)
    assert holm([0.04, 0.01, 0.30, 0.02]) == pytest.approx([0.08, 0.04, 0.30, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def interval(lo, hi, clusters=30):
    """An interval whose draws are uniform on [lo, hi] (for verdict tests)."""
    samples = torch.linspace(lo, hi, 1001, dtype=torch.float64)
    return Interval((lo + hi) / 2, lo, hi, clusters, 0.95, samples)


def test_three_verdicts_with_their_reasons():
    assert band_verdict(interval(-0.005, 0.008), 0.01, min_clusters=10)[0] == "pass"
    assert band_verdict(interval(0.02, 0.05), 0.01, min_clusters=10)[0] == "fail"
    verdict, why = band_verdict(interval(-0.0003, 0.027), 0.01, min_clusters=10)
    assert verdict == "inconclusive" and "straddles ±0.01" in why
    verdict, why = band_verdict(interval(0.02, 0.05, clusters=5), 0.01, min_clusters=10)
    assert verdict == "inconclusive" and "5 clusters < min_clusters 10" in why
    # a family: the same interval fails alone but not when Holm's correction says otherwise
    verdict, why = band_verdict(interval(0.02, 0.05), 0.01, min_clusters=10, p_adjusted=0.2)
    assert verdict == "inconclusive" and "Holm-adjusted p=0.2" in why
    assert upper_verdict(interval(0.5, 0.7), 0.8, min_clusters=10)[0] == "pass"
    assert upper_verdict(interval(0.85, 0.9), 0.8, min_clusters=10)[0] == "fail"
    assert upper_verdict(interval(0.7, 0.9), 0.8, min_clusters=10)[0] == "inconclusive"
    assert combine(["pass", "inconclusive"]) == "inconclusive"
    assert combine(["inconclusive", "fail"]) == "fail"
    assert combine(["pass", "pass"]) == "pass"


def test_widening_is_the_unbiased_variance_and_students_critical_value():
    # G = 7: sqrt(7/6) * t_{6, 0.975} / z_{0.975} = 1.0801 * 2.4469 / 1.9600
    assert _widening(7, 0.95) == pytest.approx(math.sqrt(7 / 6) * 2.446912 / 1.959964, rel=1e-5)


def test_a_single_cluster_gives_a_point_interval_and_n_boot_is_bounded():
    iv = mean_ci(torch.tensor([1.0, 3.0]), ["a", "a"])
    assert (iv.lo, iv.hi, iv.n_clusters) == (2.0, 2.0, 1)
    with pytest.raises(ia.SpecError, match=f"between 1 and {MAX_BOOT}"):
        cluster_bootstrap(lambda w: w.sum(1), None, 3, n_boot=MAX_BOOT + 1)
