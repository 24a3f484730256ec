"""Word-level tokenizers for zoo models: a Hugging Face fast tokenizer, saved as tokenizer.json."""

from __future__ import annotations

from collections.abc import Sequence


def word_tokenizer(
    vocab: Sequence[str], *, bos: str = "<bos>", pad: str = "<pad>", unk: str = "<unk>"
):
    """Whitespace-split, one token per word; ``vocab`` must hold the special tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    ids = {w: i for i, w in enumerate(vocab)}
    tok = Tokenizer(models.WordLevel(vocab=ids, unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, pad_token=pad, unk_token=unk
    )
    fast.padding_side = "right"
    return fast
