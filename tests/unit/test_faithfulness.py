"""Circuit faithfulness by real corruption of everything outside the circuit: against edge
patching of the circuit's induced subgraph (tests/unit/test_attribution.py checks edge patching
against exact patching), and against analytic answers on the hand-wired model."""

from __future__ import annotations

import pytest
import torch

import interp_audit as ia
from interp_audit.core.errors import AuditError, SiteError
from interp_audit.methods.locate.edges import EdgeGraph
from interp_audit.methods.locate.faithfulness import circuit_metric
from tests.helpers import random_pairs


def induced_edges(graph: EdgeGraph, nodes: list[str]) -> torch.Tensor:
    """Edges s -> r with s in the circuit (or the embeddings) and r one of the circuit's
    receivers (its heads' q, k, v; its MLPs) or, for s in the circuit, the logits."""
    keep = torch.zeros_like(graph.valid)
    for i, s in enumerate(graph.senders):
        for j, r in enumerate(graph.receivers):
            node = r.split(".")[0] if ".mlp" not in r else r
            if r == "logits":
                keep[i, j] = s in nodes
            else:
                keep[i, j] = (s in nodes or s == "embed") and node in nodes
    return keep & graph.valid


@pytest.mark.parametrize(
    "nodes", [["L0H1", "L1H0", "L1.mlp"], ["L0H0", "L0.mlp", "L2H3"], ["L2.mlp"], []]
)
def test_whole_node_circuits_equal_edge_patching_of_the_induced_subgraph(causal_subject, nodes):
    pairs = random_pairs(seed=4)
    graph = EdgeGraph.of(causal_subject)
    got = circuit_metric(causal_subject, pairs, nodes)
    want = ia.patch_edges(causal_subject, pairs, induced_edges(graph, nodes))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert causal_subject.live_hooks() == []


def test_the_empty_circuit_is_the_counterfactual_run(causal_subject):
    pairs = random_pairs(seed=5)
    exact = ia.patch(causal_subject, pairs, sites="heads")
    got = float(circuit_metric(causal_subject, pairs, []).mean())
    assert got == pytest.approx(exact.baseline["counterfactual"], abs=1e-5)


def test_position_and_input_level_circuits_on_the_hand_wired_model():
    """One head, uniform attention: the A token (position 1) reaches the output only through
    the head's value at position 1, so {L0H0.v@1} carries all of A -> Y and none of a change at
    position 3; the embeddings have no direct path to the YES logit."""
    from tests.linear_paths import build_linear

    lm = build_linear()
    a_swap = ia.ContrastSet.from_prompts(lm, ["a:0 m:0 z:0 ->"], ["a:1 m:0 z:0 ->"],
                                         answers=("YES", "NO"))  # fmt: skip
    z_swap = ia.ContrastSet.from_prompts(lm, ["a:0 m:0 z:0 ->"], ["a:0 m:0 z:1 ->"],
                                         answers=("YES", "NO"))  # fmt: skip
    metric = ia.metrics.logit_diff
    clean_a = 0.0
    for circuit, cs, want in [
        (["L0H0.v@1"], a_swap, clean_a),  # the whole effect: the clean metric
        (["L0H0.v@1"], z_swap, 3.0 / 5),  # nothing: the counterfactual metric (z:1 weighs -3)
        (["L0H0"], a_swap, clean_a),
        (["L0H0.q", "L0H0.k"], a_swap, 2.0 / 5),  # queries, keys carry nothing: counterfactual
    ]:
        got = float(circuit_metric(lm, cs, circuit, metric)[0])
        assert got == pytest.approx(-want if cs is z_swap else want, abs=1e-6), circuit


def test_bad_circuits_are_named(causal_subject):
    pairs = random_pairs(seed=5)
    with pytest.raises(SiteError, match="'L0.resid_pre' is a resid_pre site, not a node"):
        circuit_metric(causal_subject, pairs, ["L0.resid_pre"])
    with pytest.raises(SiteError, match="head 9 does not exist"):
        circuit_metric(causal_subject, pairs, ["L0H9"])
    with pytest.raises(AuditError, match="position 30 is past"):
        circuit_metric(causal_subject, pairs, ["L0H1.v@30"])


def test_engine_site_effects_honour_a_repairs_position_hooks(causal_subject):
    """The faithfulness check locates sites with ia.patch, also under a repair that ablates one
    position's value (it used a loop of plain forwards while the engine could not): against one
    plain forward per site."""
    pairs = random_pairs(seed=6)
    with ia.ablate(causal_subject, ["L1H2.v@4"], kind="zero"):
        eff = ia.patch(causal_subject, pairs, sites=["L0H1.v@2", "L2H0.v@6"], normalize=False)
        got = eff.per_example.reshape(2, -1) - eff.base_values
        source, _ = cached(causal_subject, pairs.clean)
        base = logit_diff(causal_subject, pairs, pairs.counterfactual)
        for i, label in enumerate(eff.components):
            layer, head, pos = int(label[1]), int(label[3]), int(label[-1])
            name = f"blocks.{layer}.attn.hook_v"

            def put(act, *, hook, name=name, head=head, pos=pos):
                act = act.clone()
                act[:, pos, head] = source[name][:, pos, head]
                return act

            with causal_subject.hooks([(name, put)]):
                one = logit_diff(causal_subject, pairs, pairs.counterfactual)
            torch.testing.assert_close(got[i], one - base, atol=1e-5, rtol=0)


def cached(subject, tokens):
    from interp_audit.engine.batched import cached_run

    hooks = {f"blocks.{layer}.attn.hook_v" for layer in range(subject.n_layers)}
    return cached_run(subject, tokens, torch.ones_like(tokens), hooks)


def logit_diff(subject, pairs, tokens):
    logits = subject.run(tokens)[:, -1]
    ans = pairs.answers
    return logits.gather(1, ans[:, :1])[:, 0] - logits.gather(1, ans[:, 1:])[:, 0]
