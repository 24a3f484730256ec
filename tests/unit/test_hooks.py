import pytest
import torch

import interp_audit as ia


def test_hooks_are_removed_after_an_exception_mid_sweep(causal_subject, pairs):
    calls = []

    def boom(act, *, hook):
        calls.append(hook.name)
        raise RuntimeError("mid-sweep failure")

    with pytest.raises(RuntimeError, match="mid-sweep failure"):
        with causal_subject.hooks([("blocks.1.attn.hook_z", boom)]):
            causal_subject.run(pairs.clean)
    assert calls == ["blocks.1.attn.hook_z"]
    assert causal_subject.live_hooks() == []
    # the model is clean: the same logits as before
    ref = causal_subject.run(pairs.clean)
    assert torch.equal(ref, causal_subject.run(pairs.clean))


def test_ablate_context_is_clean_after_error_and_keeps_user_hooks(causal_subject, pairs):
    before = causal_subject.run(pairs.clean)
    user = causal_subject.hook_dict["blocks.0.hook_resid_pre"]
    user.add_hook(lambda act, hook: None)  # a hook the user attached themselves
    try:
        with pytest.raises(ValueError):
            with ia.ablate(causal_subject, ["L0H1", "L1.mlp"], kind="zero"):
                assert set(causal_subject.live_hooks()) >= {
                    "blocks.0.attn.hook_z",
                    "blocks.1.hook_mlp_out",
                }
                raise ValueError("inside")
        assert causal_subject.live_hooks() == ["blocks.0.hook_resid_pre"]
    finally:
        user.remove_hooks("fwd")
    assert causal_subject.live_hooks() == []
    assert torch.equal(before, causal_subject.run(pairs.clean))


def test_unknown_hook_fails_before_attaching(causal_subject):
    with pytest.raises(
        ia.SiteError,
        match=r"hook 'blocks.1.attn.hook_zz' does not exist .*did you mean 'blocks.1.attn.hook_z'",
    ):
        with causal_subject.hooks(
            [
                ("blocks.0.attn.hook_z", lambda a, hook: a),
                ("blocks.1.attn.hook_zz", lambda a, hook: a),
            ]
        ):
            pass
    assert causal_subject.live_hooks() == []


def test_patching_sweep_leaves_no_hooks_even_when_metric_fails(causal_subject):
    pairs = ia.ContrastSet.from_tokens(
        torch.tensor([[1, 2, 3]]), torch.tensor([[1, 4, 3]])
    )  # no answers
    with pytest.raises(ia.ContrastError, match="needs answer tokens"):
        ia.patch(causal_subject, pairs, sites="heads")
    assert causal_subject.live_hooks() == []
