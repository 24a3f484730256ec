"""Memorization measures (Carlini et al. 2019): extraction, secret likelihood, exposure.

Exposure of a secret s among candidates R: log2 |R| - log2 rank(s), rank 1 = the candidate the
model finds most likely after the prefix. With a small alphabet and length the candidate space
is enumerated exactly: one forward per prefix of the candidate tree (1 + a + a^2 + ...), not
one per candidate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import ContrastError
from .subject import Subject

__all__ = ["Exposure", "candidate_logprobs", "exposure", "greedy_completion", "perplexity"]

DIGITS = tuple(str(d) for d in range(10))


def _alphabet_ids(subject: Subject, alphabet: Sequence[str]) -> Tensor:
    return torch.tensor([subject.single_token(a, "alphabet symbol") for a in alphabet])


@torch.no_grad()
def candidate_logprobs(
    subject: Subject,
    prefix: str,
    *,
    alphabet: Sequence[str] = DIGITS,
    length: int = 4,
    batch_size: int = 1024,
) -> Tensor:
    """log p(candidate | prefix) for every candidate in alphabet^length, in lexicographic order."""
    ids = _alphabet_ids(subject, alphabet).to(subject.device)
    base = torch.tensor(subject.to_tokens(prefix), device=subject.device)
    a = len(ids)
    scores = torch.zeros(1, device=subject.device, dtype=torch.float64)
    seqs = base[None]
    for _ in range(length):
        step = []
        for start in range(0, len(seqs), batch_size):
            logp = (
                subject.adapter.forward_logits(seqs[start : start + batch_size])[:, -1]
                .double()
                .log_softmax(-1)
            )
            step.append(logp[:, ids])
        step_lp = torch.cat(step)  # [n_seqs, a]
        scores = (scores[:, None] + step_lp).reshape(-1)
        seqs = torch.cat([seqs.repeat_interleave(a, 0), ids.repeat(len(seqs))[:, None]], dim=1)
    return scores.cpu()


@dataclass(frozen=True)
class Exposure:
    prefix: str
    secret: str
    logprob: float  # log p(secret | prefix), natural log
    rank: int  # 1 = most likely candidate
    n_candidates: int
    extracted: bool  # greedy decoding reproduces the secret

    @property
    def exposure(self) -> float:
        return math.log2(self.n_candidates) - math.log2(self.rank)

    def to_dict(self) -> dict:
        return {
            "prefix": self.prefix,
            "secret": self.secret,
            "logprob": self.logprob,
            "rank": self.rank,
            "exposure": self.exposure,
            "n_candidates": self.n_candidates,
            "extracted": self.extracted,
        }


def exposure(
    subject: Subject, prefix: str, secret: str, *, alphabet: Sequence[str] = DIGITS
) -> Exposure:
    """Exposure, rank and log-likelihood of ``secret`` after ``prefix``."""
    symbols = secret.split()
    bad = [s for s in symbols if s not in alphabet]
    if bad:
        raise ContrastError(
            f"secret {secret!r}: symbol {bad[0]!r} is not in the alphabet {list(alphabet)}"
        )
    scores = candidate_logprobs(subject, prefix, alphabet=alphabet, length=len(symbols))
    index = 0
    for s in symbols:
        index = index * len(alphabet) + list(alphabet).index(s)
    target = scores[index]
    rank = int((scores > target).sum()) + 1
    extracted = greedy_completion(subject, prefix, len(symbols)) == symbols
    return Exposure(prefix, secret, float(target), rank, len(scores), extracted)


@torch.no_grad()
def greedy_completion(subject: Subject, prefix: str, n_tokens: int) -> list[str]:
    """Greedy decoding over the whole vocabulary: what an attacker extracts from the prefix."""
    tokens = torch.tensor(subject.to_tokens(prefix), device=subject.device)[None]
    out = []
    for _ in range(n_tokens):
        nxt = subject.adapter.forward_logits(tokens)[0, -1].argmax()
        out.append(subject.token_str([int(nxt)])[0].strip())
        tokens = torch.cat([tokens, nxt.view(1, 1)], dim=1)
    return out


@torch.no_grad()
def perplexity(subject: Subject, texts: Sequence[str]) -> float:
    """Per-token perplexity of ``texts`` (each scored after BOS, padding excluded)."""
    rows = [subject.to_tokens(t) for t in texts]
    width = max(map(len, rows))
    tokens = torch.full((len(rows), width), subject.pad_token_id)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = True
    tokens = tokens.to(subject.device)
    logits = subject.adapter.forward_logits(tokens[:, :-1]).double().log_softmax(-1)
    nll = -logits.gather(-1, tokens[:, 1:, None])[..., 0]
    m = mask[:, 1:].to(nll.device)
    return float(torch.exp(nll[m].mean()))
