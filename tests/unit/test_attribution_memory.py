"""Attribution within a memory budget: chunked over pairs, integrated-gradient steps and layers
(one layer's graph at a time), equal to the unchunked run; the estimate bounds what the run
really allocates (counted op by op, load-independent); a budget that cannot fit is refused
with the estimate."""

from __future__ import annotations

import pytest
import torch

import interp_audit as ia
from interp_audit.core.errors import AuditError
from interp_audit.methods.locate import attribution as A
from interp_audit.methods.locate import edges as E
from interp_audit.methods.locate.sites import plan_sites
from interp_audit.model.loading import build_model
from interp_audit.model.memory import LiveTensorBytes, estimate_gradient
from tests.helpers import build_cfg

LLAMA = dict(n_layers=3, d_model=64, d_head=16, n_heads=4, d_mlp=96, n_ctx=64,
             positional_embedding_type="rotary", rotary_dim=16, n_key_value_heads=2,
             normalization_type="RMS", act_fn="silu", gated_mlp=True)  # fmt: skip


@pytest.fixture(scope="module", params=["gpt", "llama"])
def model(request):
    cfg = build_cfg(n_ctx=64) if request.param == "gpt" else build_cfg(**LLAMA)
    subject = ia.load_model(build_model(cfg, seed=0))
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(5, 50, (4, 40), generator=g)
    cf = clean.clone()
    cf[:, 7] = (clean[:, 7] + 13) % 45 + 5
    answers = torch.randint(0, 50, (4, 2), generator=g)
    return subject, ia.ContrastSet.from_tokens(clean, cf, answers)


def _copies(subject, method, graddrop=True):
    return 3 + (subject.n_layers if method == "atp*" and graddrop else 1)


def budget_for(subject, pairs, method, *, pairs_per_run=1, checkpoint=False, steps=1):
    """A budget the planner answers with exactly this plan (between two plans' needs)."""
    plan = plan_sites(subject, pairs, "heads", False)
    capture = A._captured(subject, {h: [] for h in plan.hooks}, method)

    def need(n, ck, k=steps):
        one = estimate_gradient(subject, pairs.seq_len, k, capture, checkpoint=ck,
                                copies=_copies(subject, method), n_examples=1)  # fmt: skip
        return one.weights + one.work_fixed + n * (2 * one.cache_per_example + k * one.work_per_row)

    if checkpoint:
        assert need(1, True) < need(1, False)
        return (need(1, True) + need(1, False)) // 2
    return need(pairs_per_run, False)


@pytest.mark.parametrize(
    ("method", "kw"),
    [("atp", {}), ("atp*", {}), ("atp*", {"graddrop": False}), ("ig", {"steps": 4})],
)
def test_one_layer_at_a_time_equals_the_whole_graph(model, method, kw):
    subject, pairs = model
    want = ia.attribute(subject, pairs, sites="heads", method=method, normalize=False, **kw)
    k = kw.get("steps", 1)
    budget = budget_for(subject, pairs, method, checkpoint=True, steps=k)
    got = ia.attribute(subject, pairs, sites="heads", method=method, normalize=False,
                       max_memory=budget, **kw)  # fmt: skip
    assert got.meta["memory"]["layer_by_layer"] and got.meta["memory"]["pairs_per_run"] == 1
    torch.testing.assert_close(got.per_example, want.per_example, atol=1e-5, rtol=0)


def test_pairs_per_run_follow_the_budget(model):
    subject, pairs = model
    want = ia.attribute(subject, pairs, sites="heads", normalize=False)
    got = ia.attribute(subject, pairs, sites="heads", normalize=False,
                       max_memory=budget_for(subject, pairs, "atp", pairs_per_run=2))  # fmt: skip
    memory = got.meta["memory"]
    assert memory["pairs_per_run"] == 2 and not memory["layer_by_layer"]
    torch.testing.assert_close(got.per_example, want.per_example, atol=1e-5, rtol=0)


def test_integrated_gradient_steps_split_over_runs(model):
    subject, pairs = model
    want = ia.attribute(subject, pairs, sites="heads", method="ig", steps=8, normalize=False)
    budget = budget_for(subject, pairs, "ig", steps=3, checkpoint=True)
    got = ia.attribute(subject, pairs, sites="heads", method="ig", steps=8, normalize=False,
                       max_memory=budget)  # fmt: skip
    assert got.meta["memory"]["steps_per_run"] < 8
    torch.testing.assert_close(got.per_example, want.per_example, atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", ["eap", "eap-ig"])
def test_edge_attribution_within_a_budget_equals_the_unchunked_run(model, method):
    subject, pairs = model
    want = E.attribute_edges(subject, pairs, method=method, steps=4)
    senders = sorted(E._sender_hooks(subject, True))
    capture = E._receiver_hooks(subject, True) + senders
    one = estimate_gradient(subject, pairs.seq_len, 1, capture, checkpoint=True, copies=2,
                            split_inputs=True, n_examples=1)  # fmt: skip
    budget = int((one.weights + 2 * one.cache_per_example + one.work_per_row) * 1.2)
    got = E.attribute_edges(subject, pairs, method=method, steps=4, max_memory=budget)
    valid = ~want.values.isnan()
    torch.testing.assert_close(got.values[valid], want.values[valid], atol=1e-5, rtol=0)
    assert bool(got.values[~valid].isnan().all())


def test_a_budget_that_cannot_fit_is_refused_with_the_estimate(model):
    subject, pairs = model
    weights = estimate_gradient(subject, pairs.seq_len, 1, [], checkpoint=True).weights
    refused = r"cannot hold one example of this attribution \(gradient, layer by layer\): weights"
    with pytest.raises(AuditError, match=refused + r" .* MiB .* at 40 positions"):
        ia.attribute(subject, pairs, sites="heads", max_memory=weights + 1000)
    with pytest.raises(AuditError, match=r"cannot hold one example"):
        E.attribute_edges(subject, pairs, max_memory=weights + 1000)


@pytest.mark.parametrize("checkpoint", [False, True])
@pytest.mark.parametrize("method", ["atp", "atp*", "ig"])
def test_the_estimate_bounds_what_attribution_allocates(model, method, checkpoint):
    subject, pairs = model
    plan = plan_sites(subject, pairs, "heads", False)
    capture = A._captured(subject, {h: [] for h in plan.hooks}, method)
    k = 4 if method == "ig" else 1
    est = estimate_gradient(subject, pairs.seq_len, k, capture, checkpoint=checkpoint,
                            copies=_copies(subject, method), n_examples=len(pairs))  # fmt: skip
    orig = A.gradient_run

    def run(*args, **kw):
        return orig(*args, **{**kw, "checkpoint": checkpoint})

    A.gradient_run = run
    try:
        ia.attribute(subject, pairs, method=method, steps=4, batch_size=1)  # lays weights out
        with LiveTensorBytes(exclude=[*subject.model.parameters(), *subject.model.buffers()]) as m:
            ia.attribute(subject, pairs, method=method, steps=4, batch_size=1)
    finally:
        A.gradient_run = orig
    one_row = est.activations - (est.cached_examples - 1) * est.cache_per_example
    assert m.peak <= one_row <= 4 * m.peak, (m.peak, est.describe())
