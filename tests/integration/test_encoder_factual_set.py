"""Utility sets of an SCM rendered for an encoder score the [MASK] token, as contrasts do."""

from __future__ import annotations

import pytest

import interp_audit as ia

pytestmark = pytest.mark.integration

CAUSAL = {
    "graph": {"edges": {"A": ["Y"]}, "outcome": "Y"},
    "scm": {
        "A": {"values": ["0", "1"], "p": [0.5, 0.5]},
        "Y": {"values": ["0", "1"], "parents": ["A"], "p": {"0": [0.6, 0.4], "1": [0.4, 0.6]}},
    },
    "render": {"template": "the {A} patient is [MASK] .", "words": {"A": ["young", "old"]}},
    "answers": ["well", "ill"],
}


def test_factual_set_scores_the_mask_position(minilm_subject):
    cm = ia.CausalModel.from_spec(CAUSAL)
    fs = cm.factual_set(minilm_subject, n=12, seed=3, label="Y")
    mask = minilm_subject.tokenizer.mask_token_id
    rows = [minilm_subject.to_tokens(t) for t in fs.clean_text]
    expected = [r.index(mask) for r in rows]
    assert fs.answer_positions().tolist() == expected
    assert all(p != len(r) - 1 for p, r in zip(expected, rows, strict=True))  # not the last token
