"""token_logprobs (held-out next-token loss: the trade-off's perplexity utility, membership)
against one unpadded forward per text, for any batching of the texts."""

import pytest
import torch

from interp_audit.methods.privacy.memorization import perplexity, token_logprobs

TEXTS = [
    "the tall window hears the farmer .",
    "a child goes to the market .",
    "erin 's pin is 7 4 2 3 .",
    "a teacher goes .",
    "victor 's pin is 5 7 4 6 . a child goes to the park .",
]


def naive(subject, text: str) -> torch.Tensor:
    ids = torch.tensor([subject.to_tokens(text)])
    with torch.no_grad():
        logits = subject.adapter.forward_logits(ids[:, :-1]).double().log_softmax(-1)
    return logits.gather(-1, ids[:, 1:, None])[0, :, 0]


@pytest.mark.parametrize("max_logits", [1, 2_000, 2**26])  # one text, a few, all per forward
def test_token_logprobs_equal_one_unpadded_forward_per_text(canary_subject, max_logits):
    got = token_logprobs(canary_subject, TEXTS, max_logits=max_logits)
    assert [len(g) for g in got] == [len(canary_subject.to_tokens(t)) - 1 for t in TEXTS]
    for text, lp in zip(TEXTS, got, strict=True):
        torch.testing.assert_close(lp, naive(canary_subject, text), atol=1e-5, rtol=0)
    everything = torch.cat([naive(canary_subject, t) for t in TEXTS])
    assert perplexity(canary_subject, TEXTS) == pytest.approx(float(torch.exp(-everything.mean())))
