import pytest
import torch

import interp_audit as ia


def test_from_prompts_tokens_answers_and_positions(handbuilt):
    pairs = ia.ContrastSet.from_prompts(
        handbuilt,
        ["A x ->", "A y ->"],
        ["B x ->", "B y ->"],
        answers=[("YES", "NO"), ("YES", "NO")],
        labels=["a", "b"],
        groups=["g1", "g2"],
    )
    assert pairs.clean.tolist() == [[0, 3, 5, 7], [0, 3, 6, 7]]
    assert pairs.counterfactual[:, 1].tolist() == [4, 4]
    assert pairs.answers.tolist() == [[8, 9], [8, 9]]
    assert pairs.scored_positions().tolist() == [3, 3]
    assert pairs.differing_positions() == [[1], [1]]
    assert len(pairs) == 2 and len(pairs[1:]) == 1 and pairs[1].labels == ("b",)
    assert [len(b) for b in pairs.batches(1)] == [1, 1]
    html = pairs._repr_html_()
    assert "background:#ffd54f" in html and html.count("<tr>") == 3
    assert pairs.swapped().answers.tolist() == [[9, 8], [9, 8]]


def test_ragged_pairs_are_right_padded_with_lengths():
    pairs = ia.ContrastSet.from_tokens(
        [[1, 2, 3], [1, 2]], [[1, 4, 3], [1, 5]], answers=[[6, 7], [6, 7]], pad_id=0
    )
    assert pairs.clean.tolist() == [[1, 2, 3], [1, 2, 0]]
    assert pairs.lengths.tolist() == [3, 2]
    assert pairs.scored_positions().tolist() == [2, 1]
    assert not pairs.aligned


def test_pairs_of_unequal_token_counts_keep_each_sides_length():
    pairs = ia.ContrastSet.from_tokens(
        [[1, 2, 9, 3, 4], [1, 7, 8]], [[1, 5, 6, 7, 3, 4], [1, 7, 9]], answers=[[6, 7], [6, 7]]
    )
    assert pairs.clean.tolist() == [[1, 2, 9, 3, 4, 0], [1, 7, 8, 0, 0, 0]]
    assert pairs.counterfactual.tolist() == [[1, 5, 6, 7, 3, 4], [1, 7, 9, 0, 0, 0]]
    assert pairs.lengths.tolist() == [5, 3] and pairs.cf_lengths.tolist() == [6, 3]
    assert not pairs.equal_lengths and not pairs.aligned
    assert pairs.scored_positions().tolist() == [4, 2]
    assert pairs.scored_positions(side="counterfactual").tolist() == [5, 2]
    assert pairs.attention_mask("counterfactual").sum(1).tolist() == [6, 3]
    align = pairs.alignment()
    assert align.prefix.tolist() == [1, 2] and align.suffix.tolist() == [2, 0]
    assert pairs.differing_positions() == [[1, 2], [2]]
    assert pairs.differing_positions("counterfactual") == [[1, 2, 3], [2]]
    # counterfactual position -> clean position: prefix same, suffix from the end, span none;
    # the equal-length pair maps one to one
    assert align.position_map("counterfactual", 6).tolist() == [
        [0, -1, -1, -1, 3, 4],
        [0, 1, 2, -1, -1, -1],
    ]
    back = pairs.swapped()
    assert back.lengths.tolist() == [6, 3] and back.cf_lengths.tolist() == [5, 3]
    assert back.alignment().position_map("clean", 6).tolist() == [
        [0, -1, -1, -1, 3, 4],
        [0, 1, 2, -1, -1, -1],
    ]
    one = pairs[1]
    assert one.equal_lengths and one.seq_len == 3 and pairs[0].seq_len == 6
    assert "unequal token counts" in repr(pairs)
    html = pairs._repr_html_()
    assert html.count("background:#ffd54f") == 2 + 3 + 1 + 1  # each side's own span


def test_left_padded_input_is_repacked_to_the_right():
    right = ia.ContrastSet.from_tokens([[1, 2, 3], [4, 5]], [[1, 9, 9, 3], [4, 6]], [[1, 2]] * 2)
    left = ia.ContrastSet.from_tokens(
        torch.tensor([[0, 1, 2, 3], [0, 0, 4, 5]]),
        torch.tensor([[1, 9, 9, 3], [0, 0, 4, 6]]),
        [[1, 2]] * 2,
        clean_mask=torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1]]),
        counterfactual_mask=torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]]),
    )
    for field in ("clean", "counterfactual", "lengths", "cf_lengths"):
        assert torch.equal(getattr(left, field), getattr(right, field)), field


def test_slots_name_prefix_span_and_suffix_positions():
    from interp_audit.engine.alignment import SPAN, Slot

    pairs = ia.ContrastSet.from_tokens(
        [[1, 2, 9, 3, 4], [1, 7, 8, 3]], [[1, 5, 6, 7, 3, 4], [1, 7, 6, 3]]
    )
    align = pairs.alignment()
    assert align.slots() == [Slot(0), Slot(1), SPAN, Slot(-2), Slot(-1)]
    assert align.slot_present(Slot(1)).tolist() == [False, True]
    assert align.slot_present(SPAN).tolist() == [False, True]  # unequal spans: not patched
    assert align.slot_present(Slot(-2)).tolist() == [True, False]
    assert align.slot_positions(Slot(-1), "counterfactual", 6).nonzero().tolist() == [
        [0, 5],
        [1, 3],
    ]
    assert align.slot_positions(SPAN, "clean", 6).nonzero().tolist() == [[1, 2]]
    assert align.not_patched().startswith("the differing span of 1 of 2 pairs")


# At least ten distinct bad inputs, each with its message asserted.
@pytest.mark.parametrize(
    "clean, cf, answers, message",
    [
        (["A x ->"], ["B x ->", "B y ->"], None, "1 clean prompts but 2 counterfactual prompts"),
        ([], [], None, "the contrast set is empty"),
        (["A x ->"], ["A x ->"], None, "pair 0: clean and counterfactual are the same tokens"),
        (["A x ->", "  "], ["B x ->", "B y ->"], None, r"pair 1: the clean prompt '  ' is empty"),
        (
            ["A x ->"],
            ["B x ->"],
            [("YES NO", "NO")],
            r"pair 0: answer 'YES NO' is 2 tokens \['YES', 'NO'\], not one",
        ),
        (
            ["A x ->"],
            ["B x ->"],
            [("YES", "YES")],
            "correct and incorrect answers are the same token 8",
        ),
        (
            ["A x ->"],
            ["B x ->"],
            [("YES", "NO"), ("YES", "NO")],
            "2 answer pairs for 1 prompt pairs",
        ),
        (
            ["A x ->"],
            ["B x ->"],
            [("YES",)],
            r"pair 0: answers \('YES',\) must be \(correct, incorrect\)",
        ),
        ("A x ->", ["B x ->"], None, "must be lists of prompts, not a single string"),
        (["A x -> x x x x x"], ["B x -> x x x x x"], None, "longer than the model's context"),
    ],
)
def test_bad_prompts_get_clear_errors(handbuilt, clean, cf, answers, message):
    with pytest.raises(ia.ContrastError, match=message):
        ia.ContrastSet.from_prompts(handbuilt, clean, cf, answers=answers)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(clean=torch.ones(2, 3).float(), counterfactual=torch.zeros(2, 3).long()),
            "must be integer ids",
        ),
        (
            dict(clean=[[1, 2]], counterfactual=[[1, 2, 3]], clean_mask=torch.tensor([[1, 0, 1]])),
            r"clean_mask must be a one/zero integer mask shaped like the clean tokens \(1, 2\)",
        ),
        (
            dict(
                clean=torch.tensor([[1, 2, 3]]),
                counterfactual=torch.tensor([[1, 4, 3]]),
                clean_mask=torch.tensor([[1, 0, 1]]),
            ),
            r"pair 0: the clean mask \[1, 0, 1\] has a hole",
        ),
        (
            dict(clean=[[1, 2, 3]], counterfactual=[[1, 5, 6, 3]], answer_pos=[1]),
            "answer position 1 lies in the differing span",
        ),
        (
            dict(clean=[[1, 2]], counterfactual=[[1, 3]], answers=[[1, 2, 3]]),
            r"answers must be \[pair, 2\]",
        ),
        (
            dict(clean=[[1, 2]], counterfactual=[[1, 99]], d_vocab=50),
            r"counterfactual token ids \[1, 99\] fall outside the vocabulary 0..49",
        ),
        (
            dict(clean=[[1, 2]], counterfactual=[[1, 3]], answers=[[1, 70]], d_vocab=50),
            r"answer ids \[1, 70\] fall outside",
        ),
        (
            dict(clean=[[1, 2]], counterfactual=[[1, 3]], answer_pos=[5]),
            "answer position 5 is outside its 2 tokens",
        ),
        (
            dict(clean=[[1, 2], [3, 4]], counterfactual=[[1, 3], [3, 4]]),
            r"pair 1 \(tokens \[3, 4\] vs \[3, 4\]\): clean and counterfactual are identical",
        ),
        (dict(clean=[[1, 2]], counterfactual=[[1, 3]], labels=["a", "b"]), "2 labels for 1 pairs"),
    ],
)
def test_bad_tokens_get_clear_errors(kwargs, message):
    with pytest.raises(ia.ContrastError, match=message):
        ia.ContrastSet.from_tokens(**kwargs)


def test_model_without_tokenizer_says_use_from_tokens(causal_subject):
    with pytest.raises(
        ia.ContrastError,
        match="has no tokenizer; build the contrast set with ContrastSet.from_tokens",
    ):
        ia.ContrastSet.from_prompts(causal_subject, ["a"], ["b"])
