"""Memorization measures (Carlini et al. 2019): extraction, secret likelihood, exposure.

Exposure of a secret s among candidates R: log2 |R| - log2 rank(s), rank 1 = the candidate the
model finds most likely after the prefix. Two ways to get the rank:

* **exact**: enumerate alphabet^length (one forward per prefix of the candidate tree,
  1 + a + a^2 + ..., not one per candidate); feasible up to ~10^5-10^6 candidates.
* **extrapolated** ("The Secret Sharer", section 4.3): score ``n_samples`` candidates drawn
  uniformly from the space, fit a skew-normal to their log-perplexities, and read the fraction
  of the space more likely than the secret from the fitted CDF. This is what makes a 10-digit
  number, a phone number or an e-mail address auditable; its error against the exact value on
  enumerable spaces is measured in ``tests/integration/test_memorization.py`` and
  ``docs/memorization.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp_audit.core.errors import ContrastError
from interp_audit.methods.privacy.tokens import perplexity, token_logprobs
from interp_audit.model.subject import Subject

__all__ = [
    "Exposure",
    "candidate_logprobs",
    "exposure",
    "greedy_completion",
    "perplexity",
    "sample_logprobs",
    "sequence_logprobs",
    "token_logprobs",
]

DIGITS = tuple(str(d) for d in range(10))
#: ``method="auto"`` enumerates spaces up to this size and extrapolates above it.
MAX_EXACT = 10**5


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
) -> Float[Tensor, " candidates"]:
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


@torch.no_grad()
def sequence_logprobs(
    subject: Subject,
    prefix: str,
    candidates: Int[Tensor, "n length"],
    *,
    alphabet: Sequence[str] = DIGITS,
    batch_size: int = 2048,
) -> Float[Tensor, " n"]:
    """log p(candidate | prefix) for candidates given as alphabet indices (teacher forcing: one
    forward per batch of candidates, the log-probabilities of their symbols summed)."""
    ids = _alphabet_ids(subject, alphabet)
    base = torch.tensor(subject.to_tokens(prefix))
    n_prefix = len(base)
    out = []
    for start in range(0, len(candidates), batch_size):
        sym = ids[candidates[start : start + batch_size]]  # [b, length] token ids
        tokens = torch.cat([base.expand(len(sym), -1), sym], dim=1).to(subject.device)
        logits = (
            subject.adapter.forward_logits(tokens[:, :-1])[:, n_prefix - 1 :]
            .double()
            .log_softmax(-1)
        )
        picked = logits.gather(-1, tokens[:, n_prefix:, None])[..., 0]  # [b, length]
        out.append(picked.sum(-1).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def sample_logprobs(
    subject: Subject,
    prefix: str,
    *,
    alphabet: Sequence[str] = DIGITS,
    length: int,
    n_samples: int = 10_000,
    seed: int = 0,
) -> Float[Tensor, " n_samples"]:
    """log p(r | prefix) for ``n_samples`` candidates r drawn uniformly (with replacement)."""
    g = torch.Generator().manual_seed(seed)
    cands = torch.randint(len(alphabet), (n_samples, length), generator=g)
    return sequence_logprobs(subject, prefix, cands, alphabet=alphabet)


@dataclass(frozen=True)
class SkewNormalFit:
    """A skew-normal fitted (maximum likelihood, scipy) to candidates' log-perplexities."""

    shape: float  # a: skewness parameter
    loc: float
    scale: float
    n_samples: int

    @classmethod
    def fit(cls, log_perplexities: Tensor) -> SkewNormalFit:
        from scipy.stats import skew, skewnorm

        x = log_perplexities.double().numpy()
        a0 = float(skew(x))  # a start inside the basin of the MLE
        a, loc, scale = skewnorm.fit(x, a0, loc=float(x.mean()), scale=float(x.std()))
        return cls(float(a), float(loc), float(scale), len(x))

    def cdf(self, log_perplexity: float) -> float:
        """Fraction of the candidate space at most this log-perplexity (at least this likely)."""
        from scipy.stats import skewnorm

        return float(skewnorm.cdf(log_perplexity, self.shape, self.loc, self.scale))

    def to_dict(self) -> dict:
        return {
            "shape": self.shape,
            "loc": self.loc,
            "scale": self.scale,
            "n_samples": self.n_samples,
        }


@dataclass(frozen=True)
class Exposure:
    prefix: str
    secret: str
    logprob: float  # log p(secret | prefix), natural log
    rank: float  # 1 = most likely candidate; extrapolated: 1 + (|R| - 1) * fitted CDF
    n_candidates: int
    extracted: bool  # greedy decoding reproduces the secret
    method: str = "exact"  # or "extrapolated"
    fit: SkewNormalFit | None = field(default=None, compare=False)
    sampled_rank: int | None = None  # extrapolated: 1 + samples more likely than the secret

    @property
    def exposure(self) -> float:
        return math.log2(self.n_candidates) - math.log2(self.rank)

    def to_dict(self) -> dict:
        d = {
            "prefix": self.prefix,
            "secret": self.secret,
            "logprob": self.logprob,
            "rank": self.rank,
            "exposure": self.exposure,
            "n_candidates": self.n_candidates,
            "extracted": self.extracted,
            "method": self.method,
        }
        if self.fit is not None:
            d.update({f"fit {k}": v for k, v in self.fit.to_dict().items()})
            d["sampled rank"] = self.sampled_rank
        return d


def _symbols(secret: str, alphabet: Sequence[str]) -> list[str]:
    symbols = secret.split()
    bad = [s for s in symbols if s not in alphabet]
    if bad:
        raise ContrastError(
            f"secret {secret!r}: symbol {bad[0]!r} is not in the alphabet {list(alphabet)}"
        )
    if not symbols:
        raise ContrastError("secret '': a secret needs at least one symbol")
    return symbols


def extrapolated_rank(fit: SkewNormalFit, logprob: float, n_candidates: int) -> float:
    """Expected rank of a secret with log-probability ``logprob``: 1 + (|R| - 1) F(-logprob)."""
    return 1.0 + (n_candidates - 1) * fit.cdf(-logprob)


def exposure(
    subject: Subject,
    prefix: str,
    secret: str,
    *,
    alphabet: Sequence[str] = DIGITS,
    method: str = "auto",
    n_samples: int = 10_000,
    seed: int = 0,
    max_exact: int = MAX_EXACT,
) -> Exposure:
    """Exposure, rank and log-likelihood of ``secret`` after ``prefix``.

    ``method``: ``"exact"`` enumerates the space, ``"extrapolated"`` fits a skew-normal to
    ``n_samples`` uniformly sampled candidates, ``"auto"`` enumerates up to ``max_exact``
    candidates and extrapolates above.
    """
    symbols = _symbols(secret, alphabet)
    n_candidates = len(alphabet) ** len(symbols)
    if method == "auto":
        method = "exact" if n_candidates <= max_exact else "extrapolated"
    if method not in ("exact", "extrapolated"):
        raise ContrastError(
            f"exposure method {method!r} is not one of 'auto', 'exact', 'extrapolated'"
        )
    index = [list(alphabet).index(s) for s in symbols]
    extracted = greedy_completion(subject, prefix, len(symbols)) == symbols
    if method == "exact":
        scores = candidate_logprobs(subject, prefix, alphabet=alphabet, length=len(symbols))
        flat = 0
        for i in index:
            flat = flat * len(alphabet) + i
        target = scores[flat]
        rank = int((scores > target).sum()) + 1
        return Exposure(prefix, secret, float(target), rank, n_candidates, extracted)
    target = float(sequence_logprobs(subject, prefix, torch.tensor([index]), alphabet=alphabet)[0])
    samples = sample_logprobs(
        subject, prefix, alphabet=alphabet, length=len(symbols), n_samples=n_samples, seed=seed
    )
    fit = SkewNormalFit.fit(-samples)
    return Exposure(
        prefix,
        secret,
        target,
        extrapolated_rank(fit, target, n_candidates),
        n_candidates,
        extracted,
        method="extrapolated",
        fit=fit,
        sampled_rank=int((samples > target).sum()) + 1,
    )


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


def secret_logprobs(
    subject: Subject,
    prefixes: Sequence[str],
    secrets: Sequence[str],
    *,
    alphabet: Sequence[str] = DIGITS,
) -> Float[Tensor, " secrets"]:
    """log p(secret_i | prefix_i) for each pair (teacher forcing, one forward per pair)."""
    out = []
    for prefix, secret in zip(prefixes, secrets, strict=True):
        index = [list(alphabet).index(s) for s in _symbols(secret, alphabet)]
        out.append(sequence_logprobs(subject, prefix, torch.tensor([index]), alphabet=alphabet)[0])
    return torch.stack(out)
