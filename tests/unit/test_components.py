import pytest

import interp_audit as ia
from interp_audit.model.components import Component, ModelShape, parse_component

SHAPE = ModelShape(n_layers=3, n_heads=4, d_mlp=64)


@pytest.mark.parametrize(
    "label, hook, index",
    [
        ("L2H3", "blocks.2.attn.hook_z", (slice(None), slice(None), 3)),
        ("L1.mlp", "blocks.1.hook_mlp_out", (slice(None), slice(None))),
        ("L0.attn", "blocks.0.hook_attn_out", (slice(None), slice(None))),
        ("L1.resid_pre@5", "blocks.1.hook_resid_pre", (slice(None), 5)),
        ("L2H1.q@3", "blocks.2.attn.hook_q", (slice(None), 3, 1)),
        ("L0H2.pattern", "blocks.0.attn.hook_pattern", (slice(None), 2, slice(None))),
        ("L1N17", "blocks.1.mlp.hook_post", (slice(None), slice(None), 17)),
        ("blocks.2.hook_resid_mid", "blocks.2.hook_resid_mid", (slice(None), slice(None))),
    ],
)
def test_label_to_hook_and_back(label, hook, index):
    comp = parse_component(label, SHAPE)
    assert comp.hook_name == hook
    assert comp.index() == index
    if not label.startswith("blocks"):
        assert comp.label == label
        assert parse_component(comp.label) == comp


def test_hook_name_round_trip():
    assert parse_component("blocks.1.attn.hook_z") == Component(1, "head")


@pytest.mark.parametrize(
    "label, message",
    [
        ("L3H0", "layer 3 does not exist; this model has layers 0..2"),
        ("L0H4", "head 4 does not exist; layer 0 has heads 0..3"),
        ("L0N64", "neuron 64 does not exist; MLPs have neurons 0..63"),
        ("blocks.0.hook_mlp_outt", "cannot read component 'blocks.0.hook_mlp_outt'"),
        ("layer0head1", "expected a label like 'L3H5'"),
    ],
)
def test_bad_labels_name_the_valid_range(label, message):
    with pytest.raises(
        ia.SiteError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")
    ):
        parse_component(label, SHAPE)


def test_attention_only_model_has_no_mlp():
    with pytest.raises(ia.SiteError, match="attention-only"):
        parse_component("L0.mlp", ModelShape(2, 2, None, has_mlp=False))
