"""Exact patching and attribution inside interventions, against a naive loop of full forwards.

The engine runs slices of positions (from the first one a variant changes; the last block at the
scored position only), many variants stacked on the batch axis, and enters head patches after
attention. Hooks already on the model (an ablation at one position, a per-position mean, a
resample draw per example, a whole attention output zeroed, a user's own hook) must give the
numbers a plain hooked forward gives: one variant at a time, every position, batch = the pairs.
"""

from __future__ import annotations

import contextlib

import pytest
import torch

import interp_audit as ia
from interp_audit.model.components import parse_components
from tests.helpers import random_pairs


def naive(subject, pairs, eff, context) -> torch.Tensor:
    """``[component, pair]`` metric of the counterfactual run with one component patched in
    from the clean run, both runs under ``context()``: full forwards, one site at a time."""
    comps = parse_components(list(eff.components), subject.shape)
    names = {subject.hook_name(c) for c in comps}
    a = pairs.answers
    out = torch.empty(len(comps), len(pairs))
    with context():
        source = {}

        def keep(act, *, hook):
            source[hook.name] = act.detach().clone()

        with subject.hooks([(n, keep) for n in names]):
            subject.run(pairs.clean)
        for i, c in enumerate(comps):
            name, idx = subject.hook_name(c), c.index()

            def put(act, *, hook, name=name, idx=idx):
                act = act.clone()
                act[idx] = source[name][idx]
                return act

            with subject.hooks([(name, put)]):
                logits = subject.run(pairs.counterfactual)[:, -1]
            out[i] = logits.gather(1, a[:, :1])[:, 0] - logits.gather(1, a[:, 1:])[:, 0]
    return out


def zero_at(subject, pairs):
    return ia.ablate(subject, ["L1H2.v@4"], kind="zero")


def zero_attention_output(subject, pairs):
    return ia.ablate(subject, ["L1.attn"], kind="zero")


def mean_per_position(subject, pairs):
    return ia.ablate(subject, ["L1H0", "L2.mlp@5", "L0.resid_post@3"], kind="mean",
                     reference=pairs)  # fmt: skip


def resample(subject, pairs):
    return ia.ablate(subject, ["L1H3", "L0.mlp@6"], kind="resample", reference=pairs, seed=3)


def patch_in_other(subject, pairs):
    other = random_pairs(seed=11)
    return ia.patch_in(subject, ["L1H1@5", "L0.attn"], other, which="counterfactual")


def erase_at_positions(subject, pairs):
    return ia.ablate(subject, ["L1.resid_pre@2", "L1.resid_pre@4"], kind="erase",
                     reference=pairs, erase_at="positions")  # fmt: skip


def users_own_hook(subject, pairs):
    """A hook the engine knows nothing about: scales position 5 of layer 1's resid_pre."""

    def scale(act, *, hook):
        act = act.clone()
        act[:, 5] = 0.5 * act[:, 5]
        return act

    return subject.hooks([("blocks.1.hook_resid_pre", scale)])


CONTEXTS = [zero_at, zero_attention_output, mean_per_position, resample, patch_in_other,
            erase_at_positions, users_own_hook]  # fmt: skip


@pytest.mark.parametrize("context", CONTEXTS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    ("sites", "per_position"), [("heads", False), ("heads_v", True), ("resid_pre", True)]
)
def test_patch_inside_hooks_equals_a_naive_loop(causal_subject, context, sites, per_position):
    pairs = random_pairs(seed=6)  # 5 pairs x 7 tokens, differing at position 2
    with context(causal_subject, pairs):
        eff = ia.patch(causal_subject, pairs, sites=sites, per_position=per_position,
                       normalize=False)  # fmt: skip
    want = naive(causal_subject, pairs, eff, lambda: context(causal_subject, pairs))
    got = eff.per_example.reshape(len(eff.components), -1)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert causal_subject.live_hooks() == []


def test_the_reported_bug_position_hook_past_a_slice(causal_subject):
    """ia.patch inside ia.ablate(subject, ["L1H2.v@4"]) raised "position 4 is past this
    input's 4 positions" (the last block runs at the scored position only, a slice)."""
    pairs = random_pairs(seed=6)
    with ia.ablate(causal_subject, ["L1H2.v@4"]):
        eff = ia.patch(causal_subject, pairs, sites="heads_v", per_position=True,
                       normalize=False)  # fmt: skip
    assert not bool(eff.values.isnan().any())


def test_a_position_past_the_input_is_still_refused(causal_subject):
    pairs = random_pairs(seed=6)
    with (
        ia.ablate(causal_subject, ["L1H2.v@9"]),
        pytest.raises(ia.ContrastError, match="position 9 is past this input's 7 positions"),
    ):
        ia.patch(causal_subject, pairs, sites="heads", normalize=False)


@pytest.mark.parametrize(
    "context", [zero_at, mean_per_position, resample], ids=lambda f: f.__name__
)
def test_attribution_inside_hooks_sees_the_ablated_model(causal_subject, context):
    """AtP under an ablation linearises the ablated model: against AtP computed by hand
    (source - base activations times the gradient, both runs under the same hooks)."""
    pairs = random_pairs(seed=7)
    with context(causal_subject, pairs):
        est = ia.attribute(causal_subject, pairs, sites="heads", normalize=False)
        hooks = [f"blocks.{layer}.attn.hook_z" for layer in range(causal_subject.n_layers)]
        src = {}

        def keep(act, *, hook):
            src[hook.name] = act.detach()

        with causal_subject.hooks([(h, keep) for h in hooks]):
            causal_subject.run(pairs.clean)
        base = {}

        def grad_keep(act, *, hook):
            act.retain_grad()
            base[hook.name] = act
            return act

        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.enable_grad())
            stack.enter_context(causal_subject.hooks([(h, grad_keep) for h in hooks]))
            logits = causal_subject.model(pairs.counterfactual.to(causal_subject.device))[:, -1]
            a = pairs.answers
            ld = logits.gather(1, a[:, :1])[:, 0] - logits.gather(1, a[:, 1:])[:, 0]
            ld.sum().backward()
    causal_subject.model.zero_grad(set_to_none=True)
    want = torch.stack(
        [((src[h] - base[h].detach()) * base[h].grad).sum((1, 3)).T for h in hooks]
    )  # [layer, head, pair]
    got = est.per_example - ld.detach()[None, None]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
