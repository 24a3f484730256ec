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
from interp_audit.methods.privacy.secrets import (
    SearchResult,
    SecretSpace,
    enumerate_space,
    search_rank,
    space_logprobs,
)
from interp_audit.methods.privacy.tokens import last_token_logits, perplexity, token_logprobs
from interp_audit.model.subject import Subject

__all__ = [
    "Exposure",
    "candidate_logprobs",
    "exposure",
    "greedy_completion",
    "greedy_batch",
    "greedy_tokens",
    "perplexity",
    "sample_logprobs",
    "sequence_logprobs",
    "token_logprobs",
]

DIGITS = tuple(str(d) for d in range(10))
#: ``method="auto"`` enumerates spaces up to this size and searches / extrapolates above it.
MAX_EXACT = 10**5
#: forwards the best-first search may spend before falling back to extrapolation
MAX_NODES = 2000


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
    """Exposure of one secret, how it was obtained, and what bounds it.

    ``method``: ``exact`` (every candidate enumerated), ``search`` (best-first search of the
    prefix tree ran out of candidates more likely than the secret: the rank is exact) or
    ``extrapolated`` (skew-normal fit to sampled candidates). ``bounds`` = (lowest, highest)
    exposure the evidence allows: the search's count of more likely candidates and the share of
    sampled candidates more likely than the secret (its one-sided Clopper-Pearson lower bound)
    cap exposure from above (lower bounds on the rank); the share's one-sided upper bound floors
    it. Each bound is one-sided at ``confidence``. ``method="auto"`` clips the fitted value into
    them (``raw_rank`` keeps the fit's own rank).
    """

    prefix: str
    secret: str
    logprob: float  # log p(secret | prefix), natural log, every secret token
    rank: float  # 1 = most likely candidate; extrapolated: 1 + (|R| - 1) * fitted CDF
    n_candidates: int
    extracted: bool  # greedy decoding from the prefix reproduces the secret's tokens
    method: str = "exact"  # "exact", "search" or "extrapolated"
    fit: SkewNormalFit | None = field(default=None, compare=False)
    sampled_rank: int | None = None  # extrapolated: 1 + samples more likely than the secret
    bounds: tuple[float, float] | None = None  # (lowest, highest) exposure, bits
    search: SearchResult | None = field(default=None, compare=False)
    raw_rank: float | None = None  # extrapolated: the fit's rank before clipping to bounds
    n_tokens: int | None = None  # tokens the secret spans (free symbols and literals)

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
        if self.n_tokens is not None:
            d["secret tokens"] = self.n_tokens
        if self.fit is not None:
            d.update({f"fit {k}": v for k, v in self.fit.to_dict().items()})
            d["sampled rank"] = self.sampled_rank
        if self.raw_rank is not None:
            d["fitted exposure (unclipped)"] = math.log2(self.n_candidates) - math.log2(
                self.raw_rank
            )
        if self.bounds is not None:
            d["exposure bounds"] = list(self.bounds)
        if self.search is not None:
            d["search"] = {
                "more likely found": self.search.found,
                "complete": self.search.complete,
                "forwards": self.search.nodes,
            }
        return d


def extrapolated_rank(fit: SkewNormalFit, logprob: float, n_candidates: int) -> float:
    """Expected rank of a secret with log-probability ``logprob``: 1 + (|R| - 1) F(-logprob)."""
    return 1.0 + (n_candidates - 1) * fit.cdf(-logprob)


def sampled_rank_upper(k: int, n_samples: int, n_candidates: int, confidence: float) -> float:
    """Highest rank consistent (one-sided Clopper-Pearson) with ``k`` of ``n_samples`` uniform
    samples being more likely than the secret: 1 + (|R| - 1) * upper bound of the fraction."""
    from scipy.stats import beta

    frac = 1.0 if k >= n_samples else float(beta.ppf(confidence, k + 1, n_samples - k))
    return 1.0 + (n_candidates - 1) * frac


def sampled_rank_lower(k: int, n_samples: int, n_candidates: int, confidence: float) -> float:
    """Lowest rank consistent (one-sided Clopper-Pearson) with ``k`` of ``n_samples`` uniform
    samples being more likely than the secret: 1 + (|R| - 1) * lower bound of the fraction. An
    unmemorized secret that many samples beat is *proved* unexposed by it, with no search."""
    from scipy.stats import beta

    frac = 0.0 if k <= 0 else float(beta.ppf(1 - confidence, k, n_samples - k + 1))
    return 1.0 + (n_candidates - 1) * frac


def _bits(n_candidates: int, rank: float) -> float:
    return math.log2(n_candidates) - math.log2(rank)


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
    max_nodes: int = MAX_NODES,
    confidence: float = 0.95,
    space: SecretSpace | None = None,
) -> Exposure:
    """Exposure, rank and log-likelihood of ``secret`` after ``prefix``.

    The secret may span several tokens (SmolLM2 writes an account number digit by digit):
    :class:`~interp_audit.methods.privacy.secrets.SecretSpace` finds the free symbols (those
    in ``alphabet``) and the literal tokens between them from the tokenizer itself.

    ``method``: ``"exact"`` enumerates the space; ``"search"`` ranks by best-first search
    (exact when it finishes within ``max_nodes`` forwards, else extrapolated within bounds);
    ``"extrapolated"`` fits a skew-normal to ``n_samples`` uniformly sampled candidates (the
    raw fit, for validation); ``"auto"`` enumerates up to ``max_exact`` candidates, above that
    searches, and when the search does not finish extrapolates and clips the fit into the
    bounds the search and the samples set. The fit alone is biased low for well-memorized
    secrets (their rank lies in the far tail, which the skew-normal misjudges); those are
    exactly the secrets the search ranks exactly and cheaply.
    """
    if method not in ("auto", "exact", "search", "extrapolated"):
        raise ContrastError(
            f"exposure method {method!r} is not one of 'auto', 'exact', 'search', 'extrapolated'"
        )
    space = space or SecretSpace.build(subject, prefix, secret, alphabet=alphabet, seed=seed)
    n_candidates = space.n_candidates
    secret_ids = space.secret_ids
    extracted = greedy_tokens(subject, list(space.prefix_ids), len(secret_ids)) == list(secret_ids)
    kw = dict(extracted=extracted, n_tokens=len(secret_ids))
    if method == "auto":
        method = "exact" if n_candidates <= max_exact else "search"
    if method == "exact":
        scores = enumerate_space(subject, space)
        flat = 0
        for i in space.target:
            flat = flat * len(space.alphabet) + i
        target = scores[flat]
        rank = int((scores > target).sum()) + 1
        return Exposure(prefix, secret, float(target), rank, n_candidates, **kw)
    target = float(space_logprobs(subject, space, torch.tensor([space.target]))[0])
    found = None
    if method == "search" and max_nodes > 0:
        found = search_rank(subject, space, target, max_nodes=max_nodes)
        if found.complete:
            return Exposure(
                prefix,
                secret,
                target,
                found.found + 1,
                n_candidates,
                method="search",
                bounds=(_bits(n_candidates, found.found + 1),) * 2,
                search=found,
                **kw,
            )
    g = torch.Generator().manual_seed(seed)
    cands = torch.randint(len(space.alphabet), (n_samples, len(space.free)), generator=g)
    samples = space_logprobs(subject, space, cands)
    fit = SkewNormalFit.fit(-samples)
    k = int((samples > target).sum())
    raw = extrapolated_rank(fit, target, n_candidates)
    rank_lo = max(
        1.0 + (found.found if found is not None else 0),
        sampled_rank_lower(k, n_samples, n_candidates, confidence),
    )
    rank_hi = max(rank_lo, sampled_rank_upper(k, n_samples, n_candidates, confidence))
    clip = method == "search"  # "auto" lands here; an explicit "extrapolated" is the raw fit
    rank = min(max(raw, rank_lo), rank_hi) if clip else raw
    return Exposure(
        prefix,
        secret,
        target,
        rank,
        n_candidates,
        method="extrapolated",
        fit=fit,
        sampled_rank=k + 1,
        bounds=(_bits(n_candidates, rank_hi), _bits(n_candidates, rank_lo)),
        search=found,
        raw_rank=raw,
        **kw,
    )


def greedy_tokens(subject: Subject, ids: Sequence[int], n_tokens: int) -> list[int]:
    """Greedy decoding over the whole vocabulary from token ids: what an attacker extracts."""
    return greedy_batch(subject, [ids], n_tokens)[0]


@torch.no_grad()
def greedy_batch(
    subject: Subject, prompts: Sequence[Sequence[int]], n_tokens: int
) -> list[list[int]]:
    """Greedy decoding of several prompts at once (right-padded; each row reads the logits at
    its own last token, so the result is the one-prompt-at-a-time result)."""
    rows = [list(p) for p in prompts]
    if not rows:
        return []
    out: list[list[int]] = [[] for _ in rows]
    for _ in range(n_tokens):
        nxt = last_token_logits(subject, rows).argmax(-1).tolist()
        for i, t in enumerate(nxt):
            rows[i].append(int(t))
            out[i].append(int(t))
    return out


def greedy_completion(subject: Subject, prefix: str, n_tokens: int) -> list[str]:
    """Greedy decoding over the whole vocabulary: what an attacker extracts from the prefix."""
    ids = greedy_tokens(subject, subject.to_tokens(prefix), n_tokens)
    return [s.strip() for s in subject.token_str(ids)]


def secret_logprobs(
    subject: Subject,
    prefixes: Sequence[str],
    secrets: Sequence[str],
    *,
    alphabet: Sequence[str] = DIGITS,
) -> Float[Tensor, " secrets"]:
    """log p(secret_i | prefix_i) for each pair: every token of the secret, teacher forced."""
    out = []
    for prefix, secret in zip(prefixes, secrets, strict=True):
        space = SecretSpace.build(subject, prefix, secret, alphabet=alphabet, check=0)
        out.append(space_logprobs(subject, space, torch.tensor([space.target]))[0])
    return torch.stack(out)
