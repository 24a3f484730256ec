"""Attribution against exact patching: analytic (linear model), finite differences, convergence."""

import pytest
import torch

import interp_audit as ia
from interp_audit.engine.batched import Patch, RunContext, run_variants
from interp_audit.methods.locate.edges import EdgeGraph
from interp_audit.model.loading import build_model

from helpers import build_cfg, random_pairs


@pytest.fixture(scope="module")
def linear_lm():
    """Attention with W_Q = W_K = 0 (uniform causal averaging) and MLPs that output a constant:
    the whole network is linear in its residual stream, so first order is exact."""
    model = build_model(build_cfg(normalization_type=None, act_fn="relu"), seed=2)
    with torch.no_grad():
        for block in model.blocks:
            block.attn.W_Q.zero_()
            block.attn.W_K.zero_()
            block.mlp.W_in.zero_()
            block.mlp.b_in.fill_(-1.0)  # relu(-1) = 0: the MLP adds only b_out
    return ia.load_model(model)


@pytest.fixture(scope="module")
def lm():
    return ia.load_model(build_model(build_cfg(), seed=3))


@pytest.mark.parametrize(
    "site, per_position",
    [
        ("heads", False),
        ("heads", True),
        ("resid_pre", True),
        ("attn_out", True),
        ("heads_v", False),
        ("mlp_out", True),
    ],
)
@pytest.mark.parametrize("method", ["atp", "ig"])
def test_first_order_is_exact_on_a_linear_model(linear_lm, site, per_position, method):
    pairs = random_pairs(seed=1)
    exact = ia.patch(linear_lm, pairs, sites=site, per_position=per_position, normalize=False)
    est = ia.attribute(
        linear_lm,
        pairs,
        sites=site,
        per_position=per_position,
        method=method,
        normalize=False,
        steps=2,
    )
    torch.testing.assert_close(est.values, exact.values, atol=1e-5, rtol=0)
    assert est.dims == exact.dims and est.components == exact.components


def test_atp_is_the_directional_derivative(lm):
    """AtP = lim (M(base + eps * delta) - M(base)) / eps, checked in float64 by patching."""
    s = ia.load_model(build_model(build_cfg(), seed=3), dtype="float64")
    pairs = random_pairs(seed=4)
    est = ia.attribute(
        s, pairs, sites=["L0H1", "L1H3", "L1.mlp", "L2.resid_pre@4"], method="atp", normalize=False
    )
    ctx = RunContext.build(
        s,
        pairs,
        ia.metrics.logit_diff,
        source_hooks=[
            "blocks.0.attn.hook_z",
            "blocks.1.attn.hook_z",
            "blocks.1.hook_mlp_out",
            "blocks.2.hook_resid_pre",
        ],
    )
    _, base = s.model.run_with_cache(pairs.counterfactual)
    eps = 1e-4
    for label in est.components:
        comp = ia.parse_component(label)
        value = base[comp.hook_name] + eps * (ctx.source[comp.hook_name] - base[comp.hook_name])
        moved = run_variants(ctx, [(Patch(comp.hook_name, comp.index()[1:], value=value),)]).mean()
        fd = (float(moved) - float(ctx.base_values.mean())) / eps
        assert est[label] - float(ctx.base_values.mean()) == pytest.approx(
            fd, rel=1e-3, abs=1e-6
        ), label


def test_integrated_gradients_converge_to_exact(lm):
    pairs = random_pairs(seed=4)
    exact = ia.patch(lm, pairs, sites="resid_pre", normalize=False)
    errors = [
        float(
            (
                ia.attribute(
                    lm, pairs, sites="resid_pre", method="ig", steps=n, normalize=False
                ).values
                - exact.values
            )
            .abs()
            .max()
        )
        for n in (1, 4, 16, 64)
    ]
    assert errors == sorted(errors, reverse=True)
    assert errors[-1] < 1e-3 < errors[0]


def test_qk_fix_beats_linearising_the_softmax(lm):
    for seed in (4, 5, 6):
        pairs = random_pairs(seed=seed)
        for site in ("heads_q", "heads_k"):
            exact = ia.patch(lm, pairs, sites=site)
            plain = ia.attribute(lm, pairs, sites=site, method="atp")
            fixed = ia.attribute(lm, pairs, sites=site, method="atp*", graddrop=False)
            assert (fixed.values - exact.values).abs().mean() < (
                plain.values - exact.values
            ).abs().mean()


def test_handbuilt_estimates_find_the_circuit(handbuilt, handbuilt_pairs):
    exact = ia.patch(handbuilt, handbuilt_pairs, sites="heads")
    for method in ("atp", "ig"):
        est = ia.attribute(handbuilt, handbuilt_pairs, sites="heads", method=method)
        torch.testing.assert_close(est.values, exact.values, atol=1e-5, rtol=0)
    star = ia.attribute(handbuilt, handbuilt_pairs, sites="heads", method="atp*")
    assert star.meta["estimates"] == "magnitude"
    # GradDrop over 2 layers: L0H0 = (|1| + |0.25|) / 1, L1H0 = (0.75 + 0.75) / 1
    torch.testing.assert_close(
        star.values, torch.tensor([[1.25, 0.0], [1.5, 0.0]]), atol=1e-5, rtol=0
    )
    cmp = ia.compare(exact, star)
    assert cmp.magnitude and set(c for c, *_ in cmp.worst(2)) == {"L0H0", "L1H0"}


def test_edges_on_handbuilt_are_analytic(handbuilt, handbuilt_pairs):
    edges = ia.attribute_edges(handbuilt, handbuilt_pairs)
    # unnormalised (clean - counterfactual = 8): the subject enters L0H0's values; L0H0 reaches
    # the logits directly (1/4) and through L1H0's values (3/4)
    assert edges.top(4) == [
        ("embed->L0H0.v", pytest.approx(8.0)),
        ("L1H0->logits", pytest.approx(6.0)),
        ("L0H0->L1H0.v", pytest.approx(6.0)),
        ("L0H0->logits", pytest.approx(2.0)),
    ]
    assert torch.isnan(
        edges.values[edges.axes["sender"].index("L1H0"), edges.axes["receiver"].index("L0H0.q")]
    )
    circuit = ia.prune(handbuilt, handbuilt_pairs, edges, top_k=4)
    assert circuit.faithfulness == pytest.approx(1.0, abs=1e-6)
    assert ia.prune(handbuilt, handbuilt_pairs, edges, top_k=3).faithfulness == pytest.approx(
        0.75, abs=1e-6
    )


def test_eap_equals_single_edge_patching_on_a_linear_model(linear_lm):
    pairs = random_pairs(seed=2)
    edges = ia.attribute_edges(linear_lm, pairs, method="eap")
    graph = EdgeGraph.of(linear_lm)
    clean = float(ia.patch_edges(linear_lm, pairs, graph.valid).mean())
    for label, score in edges.top(6) + [
        ("L0H1->L2H0.k", edges["L0H1->L2H0.k"]),
        ("embed->logits", edges["embed->logits"]),
    ]:
        keep = graph.valid.clone()
        s, r = label.split("->")
        keep[graph.senders.index(s), graph.receivers.index(r)] = False
        without = float(ia.patch_edges(linear_lm, pairs, keep).mean())
        assert clean - without == pytest.approx(score, abs=1e-4), label


def test_edge_patching_extremes_are_exact(lm):
    pairs = random_pairs(seed=7)
    graph = EdgeGraph.of(lm)
    exact = ia.patch(lm, pairs, sites="heads")
    assert float(ia.patch_edges(lm, pairs, graph.valid).mean()) == pytest.approx(
        exact.baseline["clean"], abs=1e-5
    )
    assert float(ia.patch_edges(lm, pairs, torch.zeros_like(graph.valid)).mean()) == pytest.approx(
        exact.baseline["counterfactual"], abs=1e-5
    )
    eap_ig = ia.attribute_edges(lm, pairs, method="eap-ig", steps=4)
    faith = [ia.prune(lm, pairs, eap_ig, top_k=k).faithfulness for k in (int(graph.valid.sum()),)]
    assert faith[0] == pytest.approx(1.0, abs=1e-5)


def test_no_gradients_left_on_the_model(lm):
    params = list(lm.model.parameters())
    params[0].requires_grad_(False)
    flags = [p.requires_grad for p in params]
    pairs = random_pairs(seed=3)
    ia.attribute(lm, pairs, sites="heads", method="atp*")
    ia.attribute_edges(lm, pairs, method="eap-ig", steps=2)
    assert all(p.grad is None for p in params)
    assert [p.requires_grad for p in params] == flags
    assert lm.live_hooks() == []
    assert not lm.cfg.use_split_qkv_input and not lm.cfg.use_hook_mlp_in
    params[0].requires_grad_(True)


def test_integrated_gradients_are_complete_per_layer_on_an_encoder(encoder_subject):
    """IG interpolates a layer's heads together: their attributions add up to patching them all."""
    p = random_pairs(seed=8)
    pairs = ia.ContrastSet.from_tokens(
        p.clean, p.counterfactual, p.answers, answer_pos=[2] * len(p)
    )
    whole = ia.patch(
        encoder_subject,
        pairs,
        sites=["blocks.0.attn.hook_z", "blocks.1.attn.hook_z"],
        normalize=False,
    )
    est = ia.attribute(
        encoder_subject, pairs, sites="heads", method="ig", steps=64, normalize=False
    )
    base = whole.baseline["counterfactual"]
    per_layer = (est.values - base).sum(1) + base
    torch.testing.assert_close(per_layer, whole.values, atol=2e-3, rtol=0)
    atp = ia.attribute(encoder_subject, pairs, sites="heads", method="atp", normalize=False)
    assert (
        ia.compare(ia.patch(encoder_subject, pairs, sites="heads", normalize=False), atp).pearson
        > 0.8
    )


def test_compare_statistics():
    def eff(vals, method):
        v = torch.tensor(vals)
        return ia.Effects(
            values=v,
            dims=("component",),
            axes={"component": list("abcd")},
            components=list("abcd"),
            method=method,
        )

    cmp = ia.compare(eff([1.0, 2.0, 3.0, 4.0], "patch"), eff([10.0, 20.0, 40.0, 30.0], "atp"))
    assert cmp.spearman == pytest.approx(0.8)  # ranks 1 2 3 4 vs 1 2 4 3: 1 - 6*2/(4*15)
    assert cmp.top_k_overlap[1] == 0.0 and cmp.top_k_overlap[3] == 1.0
    assert cmp.worst(1)[0][0] == "c"
    assert cmp.plot().data[0].mode == "markers"
    with pytest.raises(ia.AuditError, match="same components"):
        ia.compare(
            eff([1.0, 2.0, 3.0, 4.0], "patch"),
            ia.Effects(
                values=torch.zeros(2),
                dims=("component",),
                axes={"component": ["a", "b"]},
                components=["a", "b"],
            ),
        )


def test_attribution_errors(lm, encoder_subject):
    pairs = random_pairs()
    with pytest.raises(ia.AuditError, match="unknown attribution method 'atpp'"):
        ia.attribute(lm, pairs, method="atpp")
    with pytest.raises(
        ia.AuditError, match="edge attribution needs a pre-LayerNorm causal HookedTransformer"
    ):
        ia.attribute_edges(encoder_subject, pairs)
    with pytest.raises(ia.SiteError, match="edge 'L2H0->L1H0.q': L2H0 does not feed L1H0.q"):
        ia.patch_edges(lm, pairs, ["L2H0->L1H0.q"])
    with pytest.raises(ia.SiteError, match="no node 'L9H0'"):
        ia.patch_edges(lm, pairs, ["L9H0->logits"])
