"""LEACE concept erasure and the linear probe that measures it.

References: EleutherAI's ``concept_erasure`` (the paper's implementation) on the same data, the
closed form on a two-dimensional example, LEACE's defining property (zero cross-covariance
with the concept), scikit-learn's logistic regression for the probe, and readmission's paths.
"""

from __future__ import annotations

import pytest
import torch

import interp_audit as ia
from interp_audit.engine.erasure import concept_matrix, erase, fit_eraser, leace, ledoit_wolf
from interp_audit.methods.probing import concept_probe, fit_probe, split_rows


def _data(n=2000, d=6, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, k, (n,), generator=g)
    mix = torch.randn(d, d, generator=g, dtype=torch.float64)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) @ mix
    x = x + torch.randn(k, d, generator=g, dtype=torch.float64)[y] * 2
    return x, y


def _erased(x, A, mean):
    return x - (x - mean) @ A.T


def test_leace_equals_the_reference_implementation():
    ce = pytest.importorskip("concept_erasure")
    x, y = _data()
    z = torch.nn.functional.one_hot(y).double()
    A, mean, rank = leace(x, z, shrinkage=False)
    fitter = ce.LeaceFitter(
        x.shape[1],
        z.shape[1],
        dtype=torch.float64,
        shrinkage=False,
        constrain_cov_trace=False,
        svd_tol=1e-9,
    )
    fitter.update(x, z)
    torch.testing.assert_close(_erased(x, A, mean), fitter.eraser(x), atol=1e-9, rtol=0)
    assert rank == 2  # k - 1 directions for k one-hot classes


def test_ledoit_wolf_equals_sklearn():
    sk = pytest.importorskip("sklearn.covariance")
    x, _ = _data(n=300, d=40, seed=6)
    ours, a = ledoit_wolf(x - x.mean(0))
    ref = sk.LedoitWolf().fit(x.numpy())
    assert a == pytest.approx(ref.shrinkage_, abs=1e-10)
    torch.testing.assert_close(ours, torch.from_numpy(ref.covariance_), atol=1e-10, rtol=0)


@pytest.mark.parametrize("shrinkage", [True, False])
def test_leace_properties(shrinkage):
    x, y = _data(seed=1)
    z = torch.nn.functional.one_hot(y).double()
    A, mean, _ = leace(x, z, shrinkage=shrinkage)
    e = _erased(x, A, mean)
    cross = (e - e.mean(0)).T @ (z - z.mean(0)) / len(x)
    assert cross.abs().max() < 1e-10  # no linear information about the concept left
    M = torch.eye(A.shape[0], dtype=A.dtype) - A
    torch.testing.assert_close(M @ M, M, atol=1e-10, rtol=0)  # idempotent: folds exactly
    assert (M @ (A @ mean)).abs().max() < 1e-10  # M c = 0
    torch.testing.assert_close(e.mean(0), x.mean(0), atol=1e-10, rtol=0)  # mean kept
    assert leace(e, z, shrinkage=shrinkage)[2] == 0  # nothing left (rounding is not a concept)


def test_shrinkage_keeps_the_eraser_well_conditioned():
    """Few activations per dimension: the sample covariance is near-singular and the unshrunk
    eraser's matrix huge (float32 folds lose digits); Ledoit-Wolf keeps it near 1."""
    x, y = _data(n=80, d=64, k=2, seed=7)
    z = torch.nn.functional.one_hot(y).double()
    big = torch.linalg.matrix_norm(leace(x, z, shrinkage=False)[0], 2)
    small = torch.linalg.matrix_norm(leace(x, z)[0], 2)
    assert small < 5 < big


def test_leace_closed_form_in_two_dimensions():
    """x = (concept + noise, independent noise): the eraser replaces the first coordinate by
    its mean and leaves the second alone (whitened least change)."""
    g = torch.Generator().manual_seed(2)
    y = torch.randint(0, 2, (4000,), generator=g).double()
    other = torch.randn(4000, generator=g, dtype=torch.float64)
    first = 3 * y + torch.randn(4000, generator=g, dtype=torch.float64)
    basis = torch.stack([torch.ones_like(y), y, first], 1)  # second: orthogonal to all three
    other = other - basis @ torch.linalg.lstsq(basis, other[:, None]).solution[:, 0]
    x = torch.stack([first, other], 1)
    A, mean, rank = leace(x, y[:, None], shrinkage=False)
    e = _erased(x, A, mean)
    assert rank == 1
    torch.testing.assert_close(e[:, 0], torch.full_like(e[:, 0], float(x[:, 0].mean())))
    torch.testing.assert_close(e[:, 1], x[:, 1], atol=1e-10, rtol=0)


def test_by_position_concept_erases_within_each_position_only():
    """Class-mean differences at every position go; the positions stay apart."""
    g = torch.Generator().manual_seed(3)
    n, d = 3000, 8
    pos = torch.randint(0, 3, (n,), generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    offsets = torch.randn(3, d, generator=g, dtype=torch.float64) * 5  # position signal
    concept = torch.randn(3, d, generator=g, dtype=torch.float64)  # differs per position
    x = offsets[pos] + concept[pos] * y[:, None] + torch.randn(n, d, generator=g).double()
    A, mean, rank = leace(x, concept_matrix(y, pos, 2), shrinkage=False)
    e = _erased(x, A, mean)
    assert rank == 3
    for p in range(3):
        at = pos == p
        diff = e[at & (y == 1)].mean(0) - e[at & (y == 0)].mean(0)
        assert diff.abs().max() < 1e-8
    spread = e[pos == 0].mean(0) - e[pos == 1].mean(0)
    assert spread.norm() > 5  # position information is not erased


def test_probe_matches_sklearn():
    sk = pytest.importorskip("sklearn.linear_model")
    x, y = _data(n=1200, seed=4)
    mean, scale, w, b = fit_probe(x[:600], y[:600], 3, l2=1e-3)
    ours = (((x[600:] - mean) / scale) @ w + b).argmax(1)
    xs = ((x - mean) / scale).numpy()
    ref = sk.LogisticRegression(C=1 / (2 * 1e-3 * 600), max_iter=2000).fit(xs[:600], y[:600])
    agree = (ours.numpy() == ref.predict(xs[600:])).mean()
    assert agree > 0.98
    acc = float((ours == y[600:]).double().mean())
    assert acc == pytest.approx(float((ref.predict(xs[600:]) == y[600:].numpy()).mean()), abs=0.02)


def test_split_rows_is_seeded_and_disjoint():
    a, b = split_rows(10, seed=1)
    assert set(a.tolist()).isdisjoint(b.tolist()) and len(a) + len(b) == 10
    assert torch.equal(split_rows(10, seed=1)[0], a)
    with pytest.raises(ia.ContrastError, match="at least 4 pairs"):
        split_rows(3)


@pytest.fixture(scope="module")
def readmission_pairs(readmission_subject):
    from circuits.readmission.scm import contrast

    return {
        p: contrast(readmission_subject, p, n=200, seed=5) for p in ("total", "direct", "via_labs")
    }


def _effect(subject, cs):
    from interp_audit.audit.measure import pair_effects

    c, f = pair_effects(subject, cs, ia.metrics.logit_diff)
    return float((c - f).mean())


def test_probe_at_chance_after_erasure_on_held_out_pairs(readmission_subject, readmission_pairs):
    """Age at the embeddings of zoo:readmission: readable before (held-out accuracy well above
    chance), at chance after an eraser fitted on the other half of the pairs."""
    s, pairs = readmission_subject, readmission_pairs["total"]
    train, test = split_rows(len(pairs), seed=0)
    before = concept_probe(s, "L0.resid_pre", pairs, split=(train, test), n_boot=300)
    eraser = fit_eraser(s, "L0.resid_pre", pairs, rows=train)
    with erase(s, eraser):
        after = concept_probe(s, "L0.resid_pre", pairs, split=(train, test), n_boot=300)
    assert before.accuracy.lo > 0.6 and not before.at_chance
    assert after.at_chance and after.chance == 0.5
    assert s.live_hooks() == []


def test_erasure_where_inadmissible_paths_start_keeps_the_labs_path(
    readmission_subject, readmission_pairs
):
    """Fit age at the age and insurance tokens (where A -> Y and A -> Z -> Y start), apply it
    everywhere (foldable): the direct path goes, the admissible A -> X -> Y (labs) stays.
    Fitted at every position instead, it takes the labs path with it."""
    s, P = readmission_subject, readmission_pairs
    before = {k: _effect(s, P[k]) for k in ("direct", "via_labs")}
    with ia.ablate(s, ["L0.resid_pre@1", "L0.resid_pre@2"], kind="erase", reference=P["total"]):
        after = {k: _effect(s, P[k]) for k in ("direct", "via_labs")}
    with ia.ablate(s, ["L0.resid_pre"], kind="erase", reference=P["total"]):
        everywhere = _effect(s, P["via_labs"])
    assert before["direct"] > 1 and abs(after["direct"]) < 0.05
    assert abs(after["via_labs"] - before["via_labs"]) < 0.5 * before["via_labs"]
    assert abs(everywhere) < 0.25 * before["via_labs"]  # the admissible path erased too


def test_erasing_an_erased_model_again_changes_nothing(readmission_subject, readmission_pairs):
    """Folded into float32 weights, an erased concept leaves only rounding, perfectly tied to
    the tokens; refitting on the repaired model finds nothing to erase (an intervention check
    re-run on a shipped model must not erase rounding)."""
    s, total = readmission_subject, readmission_pairs["total"]
    for sites in (["L0.resid_pre"], ["L0.resid_pre@1", "L0.resid_pre@2"]):
        fixed = ia.repaired(s, sites, kind="erase", reference=total)
        assert fit_eraser(s, sites, total).rank > 0
        assert fit_eraser(fixed, sites, total).rank == 0
