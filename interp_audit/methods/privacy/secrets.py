"""The candidate space of a secret as the model's tokenizer sees it, and three ways to rank it.

A secret such as an account number is several tokens in a real tokenizer: SmolLM2 writes
``" 7048764759"`` as a space token and ten digit tokens; a word-level zoo tokenizer writes
``"2 1 9 1"`` as four tokens. :class:`SecretSpace` finds, from the tokenizer itself, which of
the secret's tokens are *free* (one alphabet symbol each: the token ids every symbol takes
there) and which are literal (the space, a dash), and checks on random candidates that every
candidate string tokenizes slot by slot, so that p(candidate | prefix) is the product of one
next-token probability per slot. A tokenizer that merges symbols (GPT-2 writes ``"482"`` as one
token) is refused by name rather than ranked wrongly.

Ranking the secret among all |R| candidates:

* :func:`enumerate_space`: every candidate's log-probability, one forward per node of the
  prefix tree (exact; feasible to ~10^5-10^6 candidates);
* :func:`search_rank`: best-first search of the prefix tree (as in "The Secret Sharer"'s
  extraction by shortest-path search), keeping only partial candidates more likely than the
  secret: extending a candidate only lowers its probability, so a partial candidate that is
  already less likely than the secret can be dropped with everything below it. When the queue
  empties, the count of complete candidates found is the exact rank minus one, at a cost that
  grows with the rank rather than with |R|: exact for well-memorized secrets in spaces of any
  size, precisely where extrapolation is least accurate. Stopped by a node budget, the count is
  a lower bound on the rank (an upper bound on exposure);
* :func:`space_logprobs` on uniform samples: the input of the skew-normal extrapolation.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp_audit.core.errors import ContrastError
from interp_audit.methods.privacy.tokens import last_token_logits
from interp_audit.model.subject import Subject

__all__ = [
    "SearchResult",
    "SecretSpace",
    "enumerate_space",
    "search_rank",
    "space_logprobs",
]

DIGITS = tuple(str(d) for d in range(10))


def _joined(prefix: str, secret: str) -> str:
    """The text as trained: a separating space unless either side already has one."""
    if not secret or secret[0].isspace() or not prefix or prefix[-1].isspace():
        return prefix + secret
    return f"{prefix} {secret}"


@dataclass(frozen=True)
class SecretSpace:
    """All strings that differ from ``secret`` only in its free symbols, as token slots.

    ``slots[i]`` is the tuple of token ids slot ``i`` may take: one id for a literal token,
    one id per alphabet symbol (in alphabet order) for a free one. ``target[j]`` is the secret's
    symbol index at free slot ``free[j]``; ``fixed`` maps free slots pinned to the secret's own
    symbol (a subspace, :meth:`pinned`).
    """

    prefix: str
    secret: str
    alphabet: tuple[str, ...]
    prefix_ids: tuple[int, ...]
    slots: tuple[tuple[int, ...], ...]
    free: tuple[int, ...]
    target: tuple[int, ...]
    spans: tuple[tuple[int, int], ...]  # char span of each free symbol in the secret text
    secret_text: str  # the secret as appended to the prefix (with its separator)

    # ---- construction ---------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        subject: Subject,
        prefix: str,
        secret: str,
        *,
        alphabet: Sequence[str] = DIGITS,
        check: int = 64,
        seed: int = 0,
    ) -> SecretSpace:
        """The space of ``secret`` after ``prefix``: every occurrence of an alphabet symbol in
        the secret is free (single characters when every symbol is one character, else
        whitespace-separated words); ``check`` random candidates must tokenize slot by slot."""
        alphabet = tuple(alphabet)
        if len(set(alphabet)) != len(alphabet) or not alphabet:
            raise ContrastError(f"alphabet {list(alphabet)} must be distinct symbols")
        full = _joined(prefix, secret)
        secret_text = full[len(prefix) :]
        spans = _free_spans(secret_text, alphabet)
        if not spans:
            raise ContrastError(
                f"secret {secret!r}: no symbol of the alphabet {list(alphabet)} to vary"
            )
        prefix_ids = subject.to_tokens(prefix)
        ids = subject.to_tokens(full)
        if ids[: len(prefix_ids)] != prefix_ids or len(ids) == len(prefix_ids):
            raise ContrastError(
                f"prefix {prefix!r}: its tokens change when the secret {secret!r} follows "
                f"({_show(subject, prefix_ids)} vs {_show(subject, ids)}); end the prefix "
                "where the tokenizer cuts"
            )
        tail = ids[len(prefix_ids) :]
        options: list[tuple[int, ...] | None] = [None] * len(tail)
        free_slot: list[int] = []
        target: list[int] = []
        for start, end in spans:
            own = secret_text[start:end]
            per_symbol = []
            slot = None
            for sym in alphabet:
                text = secret_text[:start] + sym + secret_text[end:]
                full_ids = subject.to_tokens(prefix + text)
                t = full_ids[len(prefix_ids) :]
                diff = [k for k in range(min(len(t), len(tail))) if t[k] != tail[k]]
                if (
                    full_ids[: len(prefix_ids)] != prefix_ids
                    or len(t) != len(tail)
                    or len(diff) > 1
                    or (diff and slot is not None and diff[0] != slot)
                ):
                    raise ContrastError(_merge_message(subject, prefix, secret_text, text, tail, t))
                if diff:
                    slot = diff[0]
                per_symbol.append(t)
            if slot is None:  # every symbol gives the same tokens: an unknown-token vocabulary
                raise ContrastError(
                    f"secret {secret!r}: the symbols {list(alphabet)} all tokenize alike at "
                    f"{own!r}; are they in the tokenizer's vocabulary?"
                )
            choice = tuple(t[slot] for t in per_symbol)
            if slot in free_slot or len(set(choice)) != len(choice):
                raise ContrastError(
                    f"secret {secret!r}: symbols share a token at {own!r} "
                    f"({_show(subject, list(choice))}); exposure needs one token per symbol"
                )
            options[slot] = choice
            free_slot.append(slot)
            target.append(alphabet.index(own))
        slots = tuple(o if o is not None else (tail[i],) for i, o in enumerate(options))
        space = cls(
            prefix,
            secret,
            alphabet,
            tuple(prefix_ids),
            slots,
            tuple(free_slot),
            tuple(target),
            tuple(spans),
            secret_text,
        )
        space._check_product(subject, check, seed)
        return space

    def _check_product(self, subject: Subject, n: int, seed: int) -> None:
        """Random candidates must tokenize as their slots say (no merges across symbols)."""
        rng = random.Random(seed)
        a = len(self.alphabet)
        for _ in range(n):
            idx = [rng.randrange(a) for _ in self.free]
            want = self.tokens(torch.tensor([idx]))[0].tolist()
            got = subject.to_tokens(self.prefix + self.render(idx))[len(self.prefix_ids) :]
            if got != want:
                raise ContrastError(
                    f"candidate {self.render(idx)!r} after {self.prefix!r} tokenizes as "
                    f"{_show(subject, got)}, not symbol by symbol ({_show(subject, want)}): "
                    "this tokenizer merges the secret's symbols, so exposure over this space "
                    "is not defined slot by slot"
                )

    def pinned(self, keep_free: Sequence[int]) -> SecretSpace:
        """The subspace where only the free symbols numbered ``keep_free`` (0 = first) vary
        and the others are the secret's own: enumerable, for validating extrapolation."""
        keep = sorted(set(keep_free))
        if not keep or keep[0] < 0 or keep[-1] >= len(self.free):
            raise ContrastError(
                f"keep_free {list(keep_free)}: choose among the {len(self.free)} free symbols"
            )
        slots = list(self.slots)
        for j, s in enumerate(self.free):
            if j not in keep:
                slots[s] = (self.slots[s][self.target[j]],)
        return SecretSpace(
            self.prefix,
            self.secret,
            self.alphabet,
            self.prefix_ids,
            tuple(slots),
            tuple(self.free[j] for j in keep),
            tuple(self.target[j] for j in keep),
            tuple(self.spans[j] for j in keep),
            self.secret_text,
        )

    # ---- facts ----------------------------------------------------------------------------
    @property
    def n_candidates(self) -> int:
        return len(self.alphabet) ** len(self.free)

    @property
    def secret_ids(self) -> tuple[int, ...]:
        """The secret's own tokens after the prefix."""
        return tuple(int(x) for x in self.tokens(torch.tensor([self.target]))[0])

    def render(self, index: Sequence[int]) -> str:
        """The candidate string (with its separator) for alphabet indices at the free slots."""
        text, shift = self.secret_text, 0
        for (start, end), i in zip(self.spans, index, strict=True):
            sym = self.alphabet[int(i)]
            text = text[: start + shift] + sym + text[end + shift :]
            shift += len(sym) - (end - start)
        return text

    def tokens(self, index: Int[Tensor, "n free"]) -> Int[Tensor, "n slots"]:
        """Token ids of candidates given as alphabet indices at the free slots."""
        n = len(index)
        out = torch.tensor([s[0] for s in self.slots]).repeat(n, 1)
        for j, s in enumerate(self.free):
            out[:, s] = torch.tensor(self.slots[s])[index[:, j]]
        return out


def _free_spans(text: str, alphabet: tuple[str, ...]) -> list[tuple[int, int]]:
    if all(len(a) == 1 for a in alphabet):
        return [(i, i + 1) for i, ch in enumerate(text) if ch in alphabet]
    spans, pos = [], 0
    for word in text.split():
        start = text.index(word, pos)
        pos = start + len(word)
        if word in alphabet:
            spans.append((start, pos))
        else:
            raise ContrastError(
                f"secret {text.strip()!r}: {word!r} is not in the alphabet {list(alphabet)}"
            )
    return spans


def _show(subject: Subject, ids: Sequence[int]) -> str:
    return str(subject.token_str(list(ids)))


def _merge_message(subject, prefix, secret_text, text, tail, t) -> str:
    return (
        f"secret {secret_text.strip()!r} after {prefix!r}: changing one symbol ({text!r}) "
        f"changes more than one token ({_show(subject, tail)} -> {_show(subject, t)}); this "
        "tokenizer merges the secret's symbols, so exposure over this space is not defined "
        "slot by slot"
    )


# ---- scoring ----------------------------------------------------------------------------------
def _last_logprobs(subject: Subject, rows: list[list[int]]) -> Float[Tensor, "rows vocab"]:
    """log-softmax (float64) at the last token of each row (rows padded on the right)."""
    return last_token_logits(subject, rows).double().log_softmax(-1)


@torch.no_grad()
def space_logprobs(
    subject: Subject,
    space: SecretSpace,
    candidates: Int[Tensor, "n free"],
    *,
    batch_size: int = 256,
) -> Float[Tensor, " n"]:
    """log p(candidate | prefix) by teacher forcing: every slot's token, literal ones too."""
    base = torch.tensor(space.prefix_ids)
    n0 = len(base)
    out = []
    for start in range(0, len(candidates), batch_size):
        tail = space.tokens(candidates[start : start + batch_size])
        tokens = torch.cat([base.expand(len(tail), -1), tail], dim=1).to(subject.device)
        lp = subject.adapter.forward_logits(tokens[:, :-1])[:, n0 - 1 :].double().log_softmax(-1)
        out.append(lp.gather(-1, tokens[:, n0:, None])[..., 0].sum(-1).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


@torch.no_grad()
def enumerate_space(
    subject: Subject, space: SecretSpace, *, batch_size: int = 512
) -> Float[Tensor, " candidates"]:
    """log p(c | prefix) of every candidate, lexicographic in the free symbols' indices (one
    forward per node of the prefix tree: 1 + a + a^2 + ... rather than one per candidate)."""
    seqs: list[list[int]] = [list(space.prefix_ids)]
    scores = torch.zeros(1, dtype=torch.float64)
    for depth, slot in enumerate(space.slots):
        ids = torch.tensor(slot)
        lps = []
        for start in range(0, len(seqs), batch_size):
            lps.append(_last_logprobs(subject, seqs[start : start + batch_size]).cpu()[:, ids])
        step = torch.cat(lps)  # [n_seqs, len(slot)]
        scores = (scores[:, None] + step).reshape(-1)
        if depth < len(space.slots) - 1:
            seqs = [s + [t] for s in seqs for t in slot]
    return scores


@dataclass(frozen=True)
class SearchResult:
    """Best-first search for candidates more likely than the secret."""

    found: int  # complete candidates strictly more likely than the secret
    complete: bool  # the search ran out of candidates: rank = found + 1 exactly
    nodes: int  # forwards spent (partial candidates expanded)

    @property
    def rank_lower_bound(self) -> int:
        return self.found + 1


@torch.no_grad()
def search_rank(
    subject: Subject,
    space: SecretSpace,
    target_logprob: float,
    *,
    max_nodes: int = 2000,
    batch_size: int = 64,
) -> SearchResult:
    """Count the candidates with log p > ``target_logprob`` by best-first search with pruning.

    Only partial candidates with log p > target are kept (each further token lowers log p), so
    when the queue empties every such candidate has been counted (the secret itself never is,
    whatever float noise says). ``max_nodes`` caps the forwards; when it is hit the count is a
    lower bound (``complete`` False).
    """
    slots = space.slots
    last = len(slots) - 1
    n0 = len(space.prefix_ids)
    own = list(space.prefix_ids) + list(space.secret_ids)  # never counted against itself
    # heap of (-logp, tiebreak, depth, tokens)
    heap: list[tuple[float, int, int, list[int]]] = [(0.0, 0, 0, list(space.prefix_ids))]
    counter, nodes, found = 1, 0, 0
    while heap:
        if nodes >= max_nodes:
            return SearchResult(found, False, nodes)
        take = min(batch_size, max_nodes - nodes, len(heap))
        batch = [heapq.heappop(heap) for _ in range(take)]
        lps = _last_logprobs(subject, [b[3] for b in batch]).cpu()
        nodes += len(batch)
        for (neg, _, depth, toks), lp in zip(batch, lps, strict=True):
            slot = slots[depth]
            child = -neg + lp[torch.tensor(slot)]
            for tok, value in zip(slot, child.tolist(), strict=True):
                if value <= target_logprob:
                    continue
                if depth == last:
                    found += toks[n0:] + [tok] != own[n0:]
                else:
                    heapq.heappush(heap, (-value, counter, depth + 1, toks + [tok]))
                    counter += 1
    return SearchResult(found, True, nodes)
