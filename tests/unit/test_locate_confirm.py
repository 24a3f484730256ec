"""``confirm``: exact patching of an earlier screen's top components (hand-built model: the
analytic effects are L0H0 = 1, L1H0 = 0.75, the distractors 0)."""

import pytest

import interp_audit as ia
from interp_audit.core.errors import SpecError

SPEC = {
    "name": "confirm",
    "model": {"source": "zoo:handbuilt-copy"},
    "contrasts": {
        "swap": {
            "template": "{subject} {filler} ->",
            "slots": {"filler": ["x", "y"]},
            "swap": {"slot": "subject", "pairs": [["A", "B"]]},
            "answers": ["YES", "NO"],
        }
    },
}


def test_confirm_patches_exactly_the_top_components_of_the_screen(handbuilt):
    locate = [
        {"method": "atp", "contrast": "swap", "sites": "heads", "name": "screen"},
        {"method": "confirm", "contrast": "swap", "of": "screen", "top_k": 2, "name": "sure"},
    ]
    report = ia.audit({**SPEC, "locate": locate}, subject=handbuilt)
    sure = report.effects["sure"]
    assert sure.top(10) == [("L0H0", pytest.approx(1.0)), ("L1H0", pytest.approx(0.75))]
    assert sure.meta["confirms"] == "screen" and sure.meta["top_k"] == 2


def test_confirm_needs_an_earlier_step(handbuilt):
    locate = [{"method": "confirm", "contrast": "swap", "of": "screen", "name": "sure"}]
    with pytest.raises(SpecError, match="'of: screen' names no earlier locate step"):
        ia.audit({**SPEC, "locate": locate}, subject=handbuilt)
    with pytest.raises(SpecError, match="unknown key 'topk'"):
        ia.audit(
            {**SPEC, "locate": [{"method": "confirm", "contrast": "swap", "of": "x", "topk": 2}]},
            subject=handbuilt,
        )
