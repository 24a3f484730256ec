"""Per-token log-probabilities of texts (and the moments min-k%++ needs), in bounded memory.

A real LM's vocabulary makes the logits the largest tensor of a forward: SmolLM2's 49,152
entries per position are 7 GB of float64 for 256 records of 70 tokens. Texts are therefore
run in batches whose float32 logits stay under ``max_logits`` elements, and the float64
log-softmax is taken one text at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from interp_audit.engine.contrasts import pad_rows
from interp_audit.model.subject import Subject

__all__ = ["TokenStats", "last_token_logits", "perplexity", "token_logprobs", "token_statistics"]

#: largest float32 logits tensor one forward may produce (2^26 = 256 MB)
MAX_LOGITS = 2**26


@dataclass(frozen=True)
class TokenStats:
    """One text, every token after the first: its log-probability and, with ``moments``, the
    mean and standard deviation of log p over the model's next-token distribution there
    (min-k%++'s normalisers: mu = E_z[log p(z)], sigma^2 = Var_z[log p(z)], z ~ p)."""

    logprob: Float[Tensor, " tokens"]
    mean: Float[Tensor, " tokens"] | None = None
    std: Float[Tensor, " tokens"] | None = None


def _batches(lengths: Sequence[int], vocab: int, max_logits: int) -> list[list[int]]:
    """Consecutive index batches whose padded logits fit ``max_logits`` elements."""
    out: list[list[int]] = []
    cur: list[int] = []
    width = 0
    for i, n in enumerate(lengths):
        w = max(width, n)
        if cur and (len(cur) + 1) * w * vocab > max_logits:
            out.append(cur)
            cur, w = [], n
        cur.append(i)
        width = w
    if cur:
        out.append(cur)
    return out


@torch.no_grad()
def token_statistics(
    subject: Subject,
    texts: Sequence[str],
    *,
    moments: bool = False,
    max_logits: int = MAX_LOGITS,
) -> list[TokenStats]:
    """Per text, log p(token_t | tokens_<t) for t >= 1 (float64; padding never scored; a
    one-token text gets empty tensors)."""
    if not texts:
        return []
    rows = [subject.to_tokens(t) for t in texts]
    vocab = subject.d_vocab
    out: list[TokenStats] = []
    for idx in _batches([max(len(r) - 1, 1) for r in rows], vocab, max_logits):
        width = max(len(rows[i]) for i in idx)
        if width < 2:  # nothing after the first token anywhere in this batch
            empty = torch.zeros(0, dtype=torch.float64)
            out += [
                TokenStats(empty, empty if moments else None, empty if moments else None)
            ] * len(idx)
            continue
        tokens = pad_rows([rows[i] for i in idx], subject.pad_token_id)
        logits = subject.adapter.forward_logits(tokens[:, :-1].to(subject.device))
        for j, i in enumerate(idx):
            n = max(len(rows[i]) - 1, 0)
            lp = logits[j, :n].double().log_softmax(-1).cpu()
            picked = lp.gather(-1, torch.tensor(rows[i][1:])[:, None])[:, 0]
            if not moments:
                out.append(TokenStats(picked))
                continue
            p = lp.exp()
            mu = (p * lp).sum(-1)
            var = (p * (lp - mu[:, None]) ** 2).sum(-1)
            out.append(TokenStats(picked, mu, var.clamp_min(0).sqrt()))
    return out


def last_token_logits(
    subject: Subject, rows: Sequence[Sequence[int]]
) -> Float[Tensor, "row vocab"]:
    """The logits at each token row's own last token, from one forward of the rows
    right-padded (a causal LM never reads the padding after a row's end)."""
    tokens = pad_rows(rows, subject.pad_token_id)
    logits = subject.adapter.forward_logits(tokens.to(subject.device))
    last = torch.tensor([len(r) - 1 for r in rows], device=logits.device)
    return logits[torch.arange(len(rows), device=logits.device), last]


def token_logprobs(
    subject: Subject, texts: Sequence[str], *, max_logits: int = MAX_LOGITS
) -> list[Tensor]:
    """Per text, log p(token_t | tokens_<t) for every token after the first (float64)."""
    return [s.logprob for s in token_statistics(subject, texts, max_logits=max_logits)]


def perplexity(subject: Subject, texts: Sequence[str]) -> float:
    """Per-token perplexity of ``texts`` (each scored after its first token, padding excluded)."""
    return float(torch.exp(-torch.cat(token_logprobs(subject, texts)).mean()))
