"""Contrast sets: clean / counterfactual prompt pairs with answer tokens, validated up front.

A pair differs only in the variable being audited (a protected attribute, a record, an
environment). Pairs are stored as right-padded token tensors with per-pair lengths, one per
side: in a causal model right padding changes nothing before the pad (positions count from 0 at
the first token for every family, learned or rotary), and encoders get the attention mask.
Left-padded input (``clean_mask=``/``counterfactual_mask=``) is repacked to the right.

The two sides of a pair may have different token counts ("Emily" is one token, "Lakisha"
three): total effects need no alignment, and patching aligns positions by the common prefix and
suffix (:mod:`interp_audit.engine.alignment`).
"""

from __future__ import annotations

import html
import numbers
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING

import torch
from jaxtyping import Int
from torch import Tensor

from interp_audit.core.errors import ContrastError
from interp_audit.engine.alignment import Alignment, Side

if TYPE_CHECKING:
    from interp_audit.model.subject import Subject

__all__ = ["ContrastSet", "answer_positions", "pad_rows"]


def _as_id(x, where: str) -> int:
    """One token id: a true integer (Python, NumPy or 0-d integer tensor), never a float."""
    if isinstance(x, Tensor):
        if x.numel() != 1 or x.dtype.is_floating_point or x.dtype == torch.bool:
            raise ContrastError(f"{where}: token id {x!r} is not an integer id")
        return int(x)
    if isinstance(x, bool) or not isinstance(x, numbers.Integral):
        raise ContrastError(
            f"{where}: token id {x!r} is a {type(x).__name__}, not an integer id "
            "(a float is never truncated to an id)"
        )
    return int(x)


def pad_rows(
    rows: Sequence[Sequence[int]], pad_id: int, width: int | None = None
) -> Int[Tensor, "row pos"]:
    """Token rows right-padded with ``pad_id`` to ``width`` (default: the longest row)."""
    width = width or max(len(r) for r in rows)
    out = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(list(r), dtype=torch.long)
    return out


def _answer_ids(answers) -> Tensor:
    if isinstance(answers, Tensor):
        if answers.dtype.is_floating_point or answers.dtype == torch.bool:
            raise ContrastError(f"answers must be integer token ids, got a {answers.dtype} tensor")
        return answers.long().cpu()
    try:
        rows = list(answers)
    except TypeError:
        raise ContrastError(
            f"answers must be [pair, 2] token ids, got {type(answers).__name__}"
        ) from None
    if rows and not hasattr(rows[0], "__iter__"):
        return torch.tensor([_as_id(a, f"answers[{j}]") for j, a in enumerate(rows)])
    out = []
    for i, r in enumerate(rows):
        if isinstance(r, str | bytes) or not hasattr(r, "__iter__"):
            raise ContrastError(f"pair {i}: answers {r!r} must be (correct, incorrect) token ids")
        out.append([_as_id(a, f"pair {i} answer {j}") for j, a in enumerate(r)])
    if any(len(r) != 2 for r in out):
        i = next(i for i, r in enumerate(out) if len(r) != 2)
        raise ContrastError(
            f"answers must be [pair, 2] (correct, incorrect) token ids; pair {i} has {out[i]}"
        )
    return torch.tensor(out, dtype=torch.long).reshape(len(out), 2)


def _row_lengths(given_rows, tokens: Tensor, lengths, mask, name: str) -> Tensor:
    """Each row's real token count: from ``lengths``, a one/zero ``mask``, the rows of a list,
    or a tensor's full width."""
    n = tokens.shape[0]
    if mask is not None:
        m = torch.as_tensor(mask)
        if m.dtype.is_floating_point or tuple(m.shape) != tuple(tokens.shape):
            raise ContrastError(
                f"{name}_mask must be a one/zero integer mask shaped like the {name} tokens "
                f"{tuple(tokens.shape)}; got {m.dtype} {tuple(m.shape)}"
            )
        m = m.long()
        if ((m != 0) & (m != 1)).any():
            raise ContrastError(f"{name}_mask holds values other than 0 and 1")
        for i in range(n):
            real = m[i].nonzero().flatten()
            if len(real) == 0:
                raise ContrastError(f"pair {i}: the {name} mask marks no real token")
            if int(real[-1] - real[0]) + 1 != len(real):
                raise ContrastError(
                    f"pair {i}: the {name} mask {m[i].tolist()} has a hole; real tokens must be "
                    "contiguous (padding on the left or the right)"
                )
        return m.sum(1)
    if lengths is not None:
        out = torch.as_tensor(lengths, dtype=torch.long).reshape(-1)
        return out
    if isinstance(given_rows, Tensor) or hasattr(given_rows, "__array__"):
        return torch.full((n,), tokens.shape[1], dtype=torch.long)
    return torch.tensor([len(r) for r in given_rows], dtype=torch.long)


def _repack(tokens: Tensor, mask, pad_id: int) -> Tensor:
    """Rows with their real tokens (``mask == 1``) moved to the left, pads to the right."""
    m = torch.as_tensor(mask).bool()
    out = torch.full_like(tokens, pad_id)
    for i in range(tokens.shape[0]):
        real = tokens[i][m[i]]
        out[i, : len(real)] = real
    return out


class DuplicatePairWarning(UserWarning):
    """The same pair appears twice: it counts twice in bootstrap CIs, which narrows them."""


def _warn_duplicates(rows_c, rows_f, answers, clean, counterfactual, merged: bool) -> None:
    seen: dict[tuple, int] = {}
    dups = []
    for i, (c, f) in enumerate(zip(rows_c, rows_f, strict=True)):
        key = (tuple(c), tuple(f), None if answers is None else tuple(answers[i]))
        if key in seen:
            dups.append((seen[key], i))
        else:
            seen[key] = i
    if dups:
        a, b = dups[0]
        what = (
            "identical pairs are one unit of evidence, so each set of copies shares one cluster "
            "(give clusters= to declare the units yourself)"
            if merged
            else "they count as the clusters you gave them"
        )
        warnings.warn(
            f"{len(dups)} duplicated pair(s), e.g. pair {b} repeats pair {a} ({clean[a]!r} vs "
            f"{counterfactual[a]!r}); counted as independent pairs they would narrow the "
            f"confidence intervals: {what}",
            DuplicatePairWarning,
            stacklevel=3,
        )


def _refuse_unknown_words(subject: Subject, text: str, where: str) -> None:
    """Words a word-level vocabulary lacks become <unk> and would be scored: refuse them.

    A text that literally contains the unknown token (``<unk>``) may map to it.
    """
    tok = subject.tokenizer
    unk = getattr(tok, "unk_token_id", None)
    unk_text = getattr(tok, "unk_token", None)
    if tok is None or unk is None or (unk_text and unk_text in text):
        return
    if unk in (bos := getattr(tok, "bos_token_id", None), getattr(tok, "eos_token_id", None)):
        if bos is not None:  # GPT-2 style: <|endoftext|> is unk, bos and eos; bytes never unk
            return
    if unk not in subject.answer_token(text):
        return
    words = [w for w in text.split() if unk in subject.answer_token(w)] or [text]
    raise ContrastError(
        f"{where} {text!r} has {', '.join(repr(w) for w in words)} outside the model's "
        f"vocabulary (it would be read as {unk_text!r} and scored); use words the tokenizer "
        "knows"
    )


def answer_positions(subject: Subject, rows: Sequence[Sequence[int]]) -> Tensor | None:
    """``[row]`` the position each tokenized prompt's metric scores, as the model's adapter
    places it (an encoder's ``[MASK]``); None when every prompt scores its last token."""
    pos = [subject.adapter.answer_position(r, subject.tokenizer) for r in rows]
    return None if all(p is None for p in pos) else torch.tensor(pos)


def check_token_ids(tokens: Tensor, d_vocab: int, n_ctx: int | None, what: str = "tokens") -> None:
    """Token ids a model can embed: integers in 0..d_vocab-1, at most n_ctx positions."""
    if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
        raise ContrastError(f"{what} must be integer token ids, got a {tokens.dtype} tensor")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= d_vocab):
        bad = ((tokens < 0) | (tokens >= d_vocab)).nonzero()[0].tolist()
        at = f"row {bad[0]} position {bad[1]}" if len(bad) == 2 else f"index {bad}"
        raise ContrastError(
            f"{what}: token id {int(tokens[tuple(bad)])} at {at} is outside this model's "
            f"vocabulary 0..{d_vocab - 1} (d_vocab={d_vocab})"
        )
    if n_ctx is not None and tokens.ndim >= 1 and tokens.shape[-1] > n_ctx:
        raise ContrastError(
            f"{what} are {tokens.shape[-1]} positions long, longer than the model's context "
            f"n_ctx={n_ctx}"
        )


@dataclass(frozen=True)
class ContrastSet:
    """Clean/counterfactual token pairs, the answer tokens that score them, labels and groups.

    Attributes:
        clean, counterfactual: ``[pair, pos]`` token ids, right-padded with ``pad_id``.
        lengths: ``[pair]`` real length of each clean prompt.
        cf_lengths: ``[pair]`` real length of each counterfactual prompt, or None when every
            pair's two sides have the same length (then ``lengths`` holds for both).
        answers: ``[pair, 2]`` (correct, incorrect) answer token ids, or None.
        answer_pos: ``[pair]`` clean position whose output is scored (default: the last real
            token for causal LMs, the first ``[MASK]`` (else 0) for encoders).
        cf_answer_pos: the counterfactual side's scored positions, when they differ.
        labels, groups: optional strings per pair (shown in reports; groups split statistics).
        clusters: optional string per pair naming its unit of replication (the swap pair, the
            template, the SCM unit): the bootstrap resamples clusters, not pairs. None = every
            pair is its own cluster.
    """

    clean: Int[Tensor, "pair pos"]
    counterfactual: Int[Tensor, "pair pos"]
    lengths: Int[Tensor, " pair"]
    answers: Int[Tensor, "pair 2"] | None = None
    answer_pos: Int[Tensor, " pair"] | None = None
    cf_lengths: Int[Tensor, " pair"] | None = None
    cf_answer_pos: Int[Tensor, " pair"] | None = None
    pad_id: int = 0
    labels: tuple[str, ...] | None = None
    groups: tuple[str, ...] | None = None
    clusters: tuple[str, ...] | None = None
    clean_text: tuple[str, ...] | None = None
    counterfactual_text: tuple[str, ...] | None = None
    str_tokens: tuple[tuple[str, ...], ...] | None = field(default=None, repr=False)
    cf_str_tokens: tuple[tuple[str, ...], ...] | None = field(default=None, repr=False)
    extra: dict[str, Tensor] = field(
        default_factory=dict, repr=False
    )  # per-pair data for metrics (e.g. query embeddings)
    meta: dict = field(default_factory=dict, repr=False, compare=False)  # provenance (e.g. SCM)

    def with_extra(self, **tensors: Tensor) -> ContrastSet:
        """A copy carrying per-pair tensors (first axis = pair) that metrics can read by name."""
        for name, t in tensors.items():
            if t.shape[0] != len(self):
                raise ContrastError(f"extra {name!r} has {t.shape[0]} rows for {len(self)} pairs")
        return replace(self, extra={**self.extra, **tensors})

    def with_meta(self, **info) -> ContrastSet:
        """A copy recording where the pairs came from (e.g. the SCM paths and the fraction of
        units whose input changed), read by checks and reports."""
        return replace(self, meta={**self.meta, **info})

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def from_tokens(
        cls,
        clean: Int[Tensor, "pair pos"] | Sequence[Sequence[int]],
        counterfactual: Int[Tensor, "pair pos"] | Sequence[Sequence[int]],
        answers: Int[Tensor, "pair 2"] | Sequence[Sequence[int]] | None = None,
        *,
        lengths: Sequence[int] | Tensor | None = None,
        counterfactual_lengths: Sequence[int] | Tensor | None = None,
        clean_mask: Int[Tensor, "pair pos"] | None = None,
        counterfactual_mask: Int[Tensor, "pair pos"] | None = None,
        answer_pos: Sequence[int] | Tensor | None = None,
        counterfactual_answer_pos: Sequence[int] | Tensor | None = None,
        labels: Sequence[str] | None = None,
        groups: Sequence[str] | None = None,
        clusters: Sequence[str] | None = None,
        pad_id: int = 0,
        d_vocab: int | None = None,
    ) -> ContrastSet:
        """Pairs from token ids: ``[pair, pos]`` tensors (or lists of lists, padded here).

        The two sides may differ in length: lists give each row's length, ``lengths=`` /
        ``counterfactual_lengths=`` give right-padded lengths, and ``clean_mask=`` /
        ``counterfactual_mask=`` (one/zero attention masks, e.g. from a tokenizer that pads on
        the left) mark the real tokens, which are repacked to the right. Without lengths, a
        tensor's real length is its width. ``lengths=`` alone applies to both sides.
        """
        clean_t = cls._as_tokens(clean, "clean", pad_id)
        cf_t = cls._as_tokens(counterfactual, "counterfactual", pad_id)
        if clean_t.shape[0] != cf_t.shape[0]:
            raise ContrastError(
                f"{clean_t.shape[0]} clean prompts but {cf_t.shape[0]} counterfactual prompts: "
                "every clean prompt needs exactly one counterfactual"
            )
        if clean_t.shape[0] == 0:
            raise ContrastError(
                "the contrast set is empty: give at least one clean/counterfactual pair"
            )
        for side, given, mask in (
            ("clean", lengths, clean_mask),
            ("counterfactual", counterfactual_lengths, counterfactual_mask),
        ):
            if given is not None and mask is not None:
                raise ContrastError(f"give the {side} lengths or the {side} mask, not both")
        lens_c = _row_lengths(clean, clean_t, lengths, clean_mask, "clean")
        cf_given = counterfactual_lengths
        if cf_given is None and counterfactual_mask is None:
            cf_given = lengths  # lengths= alone: both sides
        lens_f = _row_lengths(counterfactual, cf_t, cf_given, counterfactual_mask, "counterfactual")
        if clean_mask is not None:
            clean_t = _repack(clean_t, clean_mask, pad_id)
        if counterfactual_mask is not None:
            cf_t = _repack(cf_t, counterfactual_mask, pad_id)
        width = max(clean_t.shape[1], cf_t.shape[1])
        clean_t = torch.nn.functional.pad(clean_t, (0, width - clean_t.shape[1]), value=pad_id)
        cf_t = torch.nn.functional.pad(cf_t, (0, width - cf_t.shape[1]), value=pad_id)
        ans = None
        if answers is not None:
            ans = _answer_ids(answers)
            if ans.ndim == 1 and ans.shape[0] == 2:
                ans = ans.expand(clean_t.shape[0], 2).clone()
            if ans.ndim != 2 or ans.shape != (clean_t.shape[0], 2):
                raise ContrastError(
                    "answers must be [pair, 2] (correct, incorrect) token ids for "
                    f"{clean_t.shape[0]} "
                    f"pairs; got shape {tuple(ans.shape)}"
                )
        pos = None if answer_pos is None else torch.as_tensor(answer_pos, dtype=torch.long)
        cf_pos = (
            None
            if counterfactual_answer_pos is None
            else torch.as_tensor(counterfactual_answer_pos, dtype=torch.long)
        )
        out = cls(
            clean=clean_t,
            counterfactual=cf_t,
            lengths=lens_c,
            cf_lengths=None if torch.equal(lens_c, lens_f) else lens_f,
            answers=ans,
            answer_pos=pos,
            cf_answer_pos=cf_pos,
            pad_id=pad_id,
            labels=None if labels is None else tuple(labels),
            groups=None if groups is None else tuple(groups),
            clusters=None if clusters is None else tuple(str(c) for c in clusters),
        )
        if pos is not None and cf_pos is None and out.cf_lengths is not None:
            out = replace(out, cf_answer_pos=out._map_clean_positions(pos))
        out.validate(d_vocab=d_vocab)
        merged = out.merged_identical()
        if merged is not out:
            cf_lengths = out.lengths_of("counterfactual")
            rows_c = [out.clean[i, : int(n)].tolist() for i, n in enumerate(out.lengths)]
            rows_f = [out.counterfactual[i, : int(n)].tolist() for i, n in enumerate(cf_lengths)]
            ans_rows = None if out.answers is None else out.answers.tolist()
            _warn_duplicates(rows_c, rows_f, ans_rows, rows_c, rows_f, merged=True)
        return merged

    def merged_identical(self) -> ContrastSet:
        """Identical pairs (same tokens, answers, scored position, label and group) are one unit
        of evidence: without declared clusters, each set of copies shares one cluster, so a
        file that repeats its pairs cannot narrow a CI. ``meta["identical_pairs_merged"]``
        counts the copies merged (checks say so in their evidence). Self when all differ, or
        when clusters are declared (the declared units are the evidence)."""
        if self.clusters is not None:
            return self
        first: dict[tuple, int] = {}
        owner = []
        cf_lengths = self.lengths_of("counterfactual")
        for i in range(len(self)):
            n, m = int(self.lengths[i]), int(cf_lengths[i])
            key = (
                tuple(self.clean[i, :n].tolist()),
                tuple(self.counterfactual[i, :m].tolist()),
                None if self.answers is None else tuple(self.answers[i].tolist()),
                None if self.answer_pos is None else int(self.answer_pos[i]),
                None if self.labels is None else self.labels[i],
                None if self.groups is None else self.groups[i],
            )
            owner.append(first.setdefault(key, i))
        merged = len(self) - len(first)
        if not merged:
            return self
        return replace(
            self,
            clusters=tuple(f"pair {j}" for j in owner),
            meta={**self.meta, "identical_pairs_merged": merged},
        )

    @staticmethod
    def _as_tokens(x, name: str, pad_id: int) -> Tensor:
        if isinstance(x, Tensor):
            if x.dtype.is_floating_point:
                raise ContrastError(f"{name} tokens must be integer ids, got a {x.dtype} tensor")
            if x.ndim == 1:
                x = x.unsqueeze(0)
            if x.ndim != 2:
                raise ContrastError(
                    f"{name} tokens must be [pair, pos]; got shape {tuple(x.shape)}"
                )
            return x.long().cpu()
        if isinstance(x, str | bytes) or not isinstance(x, Sequence | Iterator):
            if hasattr(x, "__array__"):  # NumPy arrays and the like
                import numpy as np

                arr = np.asarray(x)
                if arr.dtype.kind not in "iu":
                    raise ContrastError(
                        f"{name} tokens must be integer ids, got an array of dtype {arr.dtype}"
                    )
                return ContrastSet._as_tokens(torch.as_tensor(arr), name, pad_id)
            raise ContrastError(
                f"{name} tokens must be a [pair, pos] tensor or a list of token-id lists; got "
                f"{type(x).__name__}"
            )
        rows = []
        for i, r in enumerate(x):
            if isinstance(r, str | bytes) or not hasattr(r, "__iter__"):
                raise ContrastError(
                    f"pair {i}: the {name} prompt must be a list of token ids, got {r!r}"
                )
            rows.append([_as_id(t, f"pair {i} {name} position {j}") for j, t in enumerate(r)])
        for i, r in enumerate(rows):
            if len(r) == 0:
                raise ContrastError(f"pair {i}: the {name} prompt has no tokens")
        if not rows:
            return torch.zeros((0, 1), dtype=torch.long)
        return pad_rows(rows, pad_id)

    @classmethod
    def from_prompts(
        cls,
        subject: Subject,
        clean: Sequence[str],
        counterfactual: Sequence[str],
        answers: Sequence[tuple[str, str]] | tuple[str, str] | None = None,
        *,
        labels: Sequence[str] | None = None,
        groups: Sequence[str] | None = None,
        clusters: Sequence[str] | None = None,
    ) -> ContrastSet:
        """Pairs from text, tokenized as the subject tokenizes (its own tokenizer for Hugging
        Face sources). The two prompts of a pair may differ in token count ("Emily" vs
        "Lakisha"). Every error names the pair index, its text and its tokens."""
        if isinstance(clean, str) or isinstance(counterfactual, str):
            raise ContrastError(
                "clean and counterfactual must be lists of prompts, not a single string"
            )
        clean, counterfactual = list(clean), list(counterfactual)
        if len(clean) != len(counterfactual):
            raise ContrastError(
                f"{len(clean)} clean prompts but {len(counterfactual)} counterfactual prompts: "
                "every clean prompt needs exactly one counterfactual"
            )
        if not clean:
            raise ContrastError(
                "the contrast set is empty: give at least one clean/counterfactual pair"
            )
        for name, seq in (("labels", labels), ("groups", groups), ("clusters", clusters)):
            if seq is not None and len(seq) != len(clean):
                raise ContrastError(f"{len(seq)} {name} for {len(clean)} pairs: give one per pair")
        rows_c, rows_f = [], []
        for i, (c, f) in enumerate(zip(clean, counterfactual, strict=True)):
            for name, text in (("clean", c), ("counterfactual", f)):
                if not isinstance(text, str) or not text.strip():
                    raise ContrastError(f"pair {i}: the {name} prompt {text!r} is empty")
            _refuse_unknown_words(subject, c, f"pair {i}: the clean prompt")
            _refuse_unknown_words(subject, f, f"pair {i}: the counterfactual prompt")
            tc, tf = subject.to_tokens(c), subject.to_tokens(f)
            if tc == tf:
                raise ContrastError(
                    f"pair {i}: clean and counterfactual are the same tokens "
                    f"{subject.token_str(tc)} "
                    f"({c!r}); a pair must differ in what is being audited"
                )
            n_ctx = subject.n_ctx
            for text, ids in ((c, tc), (f, tf)):
                if n_ctx is not None and len(ids) > n_ctx:
                    raise ContrastError(
                        f"pair {i}: {text!r} is {len(ids)} tokens, longer than the model's "
                        f"context ({n_ctx})"
                    )
            rows_c.append(tc)
            rows_f.append(tf)
        ans = None
        if answers is not None:
            if (
                isinstance(answers, tuple)
                and len(answers) == 2
                and all(isinstance(a, str) for a in answers)
            ):
                answers = [answers] * len(clean)
            answers = list(answers)
            if len(answers) != len(clean):
                raise ContrastError(
                    f"{len(answers)} answer pairs for {len(clean)} prompt pairs: give one "
                    "(correct, incorrect) per pair"
                )
            ids = []
            for i, pair in enumerate(answers):
                if len(pair) != 2:
                    raise ContrastError(f"pair {i}: answers {pair!r} must be (correct, incorrect)")
                row = []
                for text in pair:
                    if not isinstance(text, str) or not text.strip():
                        raise ContrastError(f"pair {i}: answer {text!r} is not a non-empty string")
                    _refuse_unknown_words(subject, text, f"pair {i}: answer")
                    toks = subject.answer_token(text)
                    if len(toks) != 1:
                        raise ContrastError(
                            f"pair {i}: answer {text!r} is {len(toks)} tokens "
                            f"{subject.token_str(toks)}, "
                            "not one; answers must be single tokens (mind the leading space)"
                        )
                    row.append(toks[0])
                ids.append(row)
            ans = torch.tensor(ids, dtype=torch.long)
        _warn_duplicates(
            rows_c,
            rows_f,
            None if ans is None else ans.tolist(),
            clean,
            counterfactual,
            merged=clusters is None,
        )
        lengths = torch.tensor([len(r) for r in rows_c])
        cf_lengths = torch.tensor([len(r) for r in rows_f])
        width = max(int(lengths.max()), int(cf_lengths.max()))

        answer_pos = answer_positions(subject, rows_c)
        cf_answer_pos = answer_positions(subject, rows_f)
        unequal = not torch.equal(lengths, cf_lengths)
        out = cls(
            clean=pad_rows(rows_c, subject.pad_token_id, width),
            counterfactual=pad_rows(rows_f, subject.pad_token_id, width),
            lengths=lengths,
            cf_lengths=cf_lengths if unequal else None,
            cf_answer_pos=cf_answer_pos
            if cf_answer_pos is not None and not torch.equal(cf_answer_pos, answer_pos)
            else None,
            answers=ans,
            answer_pos=answer_pos,
            pad_id=subject.pad_token_id,
            labels=None if labels is None else tuple(labels),
            groups=None if groups is None else tuple(groups),
            clusters=None if clusters is None else tuple(str(c) for c in clusters),
            clean_text=tuple(clean),
            counterfactual_text=tuple(counterfactual),
            str_tokens=tuple(tuple(subject.token_str(r)) for r in rows_c),
            cf_str_tokens=tuple(tuple(subject.token_str(r)) for r in rows_f),
        )
        out.validate(d_vocab=subject.d_vocab)
        return out.merged_identical()

    @classmethod
    def one_sided(
        cls, rows: Sequence[Sequence[int]], prompts: Sequence[str], pad_id: int, **fields
    ) -> ContrastSet:
        """Tokenized prompts as pairs whose two sides are the same (clean = counterfactual), for
        plain forwards over the clean side: utility sets, populations, answer scoring.
        ``fields``: the other attributes (answers, answer_pos, groups, clusters, meta)."""
        clean = pad_rows(rows, pad_id)
        return cls(
            clean=clean,
            counterfactual=clean.clone(),
            lengths=torch.tensor([len(r) for r in rows]),
            pad_id=pad_id,
            clean_text=tuple(prompts),
            counterfactual_text=tuple(prompts),
            **fields,
        )

    # ---- validation ------------------------------------------------------------------------
    def _describe(self, i: int) -> str:
        if self.clean_text is not None:
            return f"pair {i} ({self.clean_text[i]!r} vs {self.counterfactual_text[i]!r})"
        n, m = int(self.lengths[i]), int(self.lengths_of("counterfactual")[i])
        return (
            f"pair {i} (tokens {self.clean[i, :n].tolist()} vs "
            f"{self.counterfactual[i, :m].tolist()})"
        )

    def validate(self, d_vocab: int | None = None) -> None:
        """Check shapes and ids; raises :class:`ContrastError` naming the first bad pair."""
        n, width = self.clean.shape
        if self.counterfactual.shape != self.clean.shape:
            raise ContrastError(
                f"clean {tuple(self.clean.shape)} and counterfactual "
                f"{tuple(self.counterfactual.shape)} shapes differ"
            )
        if self.lengths.shape != (n,):
            raise ContrastError(
                f"lengths must have one entry per pair ({n}); got {tuple(self.lengths.shape)}"
            )
        if self.cf_lengths is not None and self.cf_lengths.shape != (n,):
            raise ContrastError(
                f"counterfactual lengths must have one entry per pair ({n}); got "
                f"{tuple(self.cf_lengths.shape)}"
            )
        cf_lengths = self.lengths_of("counterfactual")
        for i in range(n):
            length, cf_length = int(self.lengths[i]), int(cf_lengths[i])
            if not 0 < length <= width:
                raise ContrastError(f"pair {i}: length {length} is outside 1..{width}")
            if not 0 < cf_length <= width:
                raise ContrastError(
                    f"pair {i}: counterfactual length {cf_length} is outside 1..{width}"
                )
            if length == cf_length and torch.equal(
                self.clean[i, :length], self.counterfactual[i, :length]
            ):
                raise ContrastError(
                    f"{self._describe(i)}: clean and counterfactual are identical; a pair "
                    "must differ"
                )
        for name, t in (("clean", self.clean), ("counterfactual", self.counterfactual)):
            if (t < 0).any() or (d_vocab is not None and (t >= d_vocab).any()):
                outside = (t < 0) | (t >= (d_vocab or 1 << 62))
                bad, pos = (int(x) for x in outside.nonzero()[0])
                vocab = (
                    f"0..{d_vocab - 1} (d_vocab={d_vocab})"
                    if d_vocab is not None
                    else "(ids start at 0)"
                )
                raise ContrastError(
                    f"{self._describe(bad)}: {name} token ids {t[bad].tolist()} fall outside "
                    f"the vocabulary {vocab}: id {int(t[bad, pos])} at position {pos}"
                )
        if self.answers is not None:
            if (self.answers < 0).any():
                bad = int((self.answers < 0).any(1).nonzero()[0, 0])
                raise ContrastError(
                    f"{self._describe(bad)}: answer ids {self.answers[bad].tolist()} are "
                    "negative; token ids start at 0"
                )
            if d_vocab is not None and ((self.answers < 0) | (self.answers >= d_vocab)).any():
                bad = int(((self.answers < 0) | (self.answers >= d_vocab)).any(1).nonzero()[0, 0])
                raise ContrastError(
                    f"{self._describe(bad)}: answer ids {self.answers[bad].tolist()} fall "
                    f"outside the vocabulary 0..{d_vocab - 1}"
                )
            same = (self.answers[:, 0] == self.answers[:, 1]).nonzero()
            if len(same):
                i = int(same[0, 0])
                raise ContrastError(
                    f"{self._describe(i)}: correct and incorrect answers are the same token "
                    f"{int(self.answers[i, 0])}"
                )
        for side, pos in (("clean", self.answer_pos), ("counterfactual", self.cf_answer_pos)):
            if pos is None:
                continue
            lens = self.lengths_of(side)
            bad = ((pos < 0) | (pos >= lens)).nonzero()
            if len(bad):
                i = int(bad[0, 0])
                what = "answer position" if side == "clean" else "counterfactual answer position"
                raise ContrastError(
                    f"{self._describe(i)}: {what} {int(pos[i])} is outside its "
                    f"{int(lens[i])} tokens"
                )
        for name, seq in (
            ("labels", self.labels),
            ("groups", self.groups),
            ("clusters", self.clusters),
        ):
            if seq is not None and len(seq) != n:
                raise ContrastError(f"{len(seq)} {name} for {n} pairs: give one per pair")

    def check_fits(self, subject: Subject) -> None:
        """Refuse pairs this model cannot run (ids past its vocabulary, longer than n_ctx).

        Called where a sweep starts, so pairs built with ``from_tokens`` (no model at hand)
        fail with the pair named, not with an IndexError deep inside the embedding.
        """
        d_vocab = subject.d_vocab
        self.validate(d_vocab=d_vocab)
        n_ctx = subject.n_ctx
        if n_ctx is not None and self.seq_len > int(n_ctx):
            i = int(self.lengths.argmax())
            raise ContrastError(
                f"{self._describe(i)} is {int(self.lengths[i])} tokens, longer than the model's "
                f"context n_ctx={int(n_ctx)}"
            )

    # ---- views -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.clean.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.clean.shape[1])

    @property
    def aligned(self) -> bool:
        """True when every prompt, clean or counterfactual, has the same length: absolute
        positions then mean the same in every pair (per-position results use them)."""
        return self.equal_lengths and bool((self.lengths == self.lengths[0]).all())

    @property
    def equal_lengths(self) -> bool:
        """True when each pair's two sides have the same token count (positions match)."""
        return self.cf_lengths is None or bool((self.cf_lengths == self.lengths).all())

    def lengths_of(self, side: Side = "clean") -> Int[Tensor, " pair"]:
        """``[pair]`` real token counts of the clean or counterfactual prompts."""
        if side == "clean" or self.cf_lengths is None:
            return self.lengths
        return self.cf_lengths

    def answer_positions(self, side: Side = "clean") -> Int[Tensor, " pair"] | None:
        """``[pair]`` positions set to be scored on ``side`` (None: the default position)."""
        if side == "counterfactual" and self.cf_answer_pos is not None:
            return self.cf_answer_pos
        return self.answer_pos

    def scored_positions(self, kind: str = "causal", side: Side = "clean") -> Tensor:
        """``[pair]`` position scored by the metric on ``side``."""
        pos = self.answer_positions(side)
        if pos is not None:
            return pos
        lengths = self.lengths_of(side)
        return lengths - 1 if kind == "causal" else torch.zeros_like(lengths)

    def attention_mask(self, side: Side = "clean") -> Int[Tensor, "pair pos"]:
        """One/zero mask of the real tokens of ``side`` (right padding)."""
        return (torch.arange(self.seq_len)[None, :] < self.lengths_of(side)[:, None]).long()

    @cached_property
    def _alignment(self) -> Alignment:
        return Alignment.of(
            self.clean, self.counterfactual, self.lengths, self.lengths_of("counterfactual")
        )

    def alignment(self) -> Alignment:
        """Common prefix and suffix of each pair, the span between (positions for patching)."""
        return self._alignment

    def _map_clean_positions(self, pos: Tensor) -> Tensor:
        """Clean positions -> the matching counterfactual ones; a ContrastError for a position
        inside a span of different length (it has no counterpart)."""
        pmap = self.alignment().position_map("clean", self.seq_len)
        out = pmap[torch.arange(len(self)), pos]
        bad = (out < 0).nonzero()
        if len(bad):
            i = int(bad[0, 0])
            raise ContrastError(
                f"{self._describe(i)}: answer position {int(pos[i])} lies in the differing span, "
                "which has no counterfactual counterpart; give counterfactual_answer_pos="
            )
        return out

    def differing_positions(self, side: Side = "clean") -> list[list[int]]:
        """For each pair, the positions of ``side`` where the two prompts differ (the span)."""
        if self.equal_lengths:
            diff = self.clean != self.counterfactual
            return [row.nonzero().flatten().tolist() for row in diff]
        start, end = self.alignment().span(side)
        return [list(range(int(a), int(b))) for a, b in zip(start, end, strict=True)]

    def __getitem__(self, idx) -> ContrastSet:
        if isinstance(idx, int):
            idx = slice(idx, idx + 1) if idx != -1 else slice(-1, None)
        index = torch.arange(len(self))[idx]
        if index.numel() == 0:
            raise ContrastError(f"selection {idx!r} of a {len(self)}-pair contrast set is empty")
        rows = index.tolist()
        width = int(max(self.lengths[index].max(), self.lengths_of("counterfactual")[index].max()))

        def pick(seq):
            return None if seq is None else tuple(seq[i] for i in rows)

        return replace(
            self,
            clean=self.clean[index, :width],
            counterfactual=self.counterfactual[index, :width],
            lengths=self.lengths[index],
            answers=None if self.answers is None else self.answers[index],
            answer_pos=None if self.answer_pos is None else self.answer_pos[index],
            cf_lengths=None if self.cf_lengths is None else self.cf_lengths[index],
            cf_answer_pos=None if self.cf_answer_pos is None else self.cf_answer_pos[index],
            labels=pick(self.labels),
            groups=pick(self.groups),
            clusters=pick(self.clusters),
            clean_text=pick(self.clean_text),
            counterfactual_text=pick(self.counterfactual_text),
            str_tokens=pick(self.str_tokens),
            cf_str_tokens=pick(self.cf_str_tokens),
            extra={k: v[index] for k, v in self.extra.items()},
        )

    def batches(self, size: int) -> Iterator[ContrastSet]:
        if size < 1:
            raise ContrastError(f"batch size must be at least 1, got {size}")
        for start in range(0, len(self), size):
            yield self[start : start + size]

    def swapped(self) -> ContrastSet:
        """Counterfactual becomes clean and the answers swap: the reverse direction."""
        return replace(
            self,
            clean=self.counterfactual,
            counterfactual=self.clean,
            answers=None if self.answers is None else self.answers.flip(-1),
            lengths=self.lengths_of("counterfactual"),
            cf_lengths=None if self.cf_lengths is None else self.lengths,
            answer_pos=self.answer_positions("counterfactual"),
            cf_answer_pos=None if self.cf_answer_pos is None else self.answer_pos,
            clean_text=self.counterfactual_text,
            counterfactual_text=self.clean_text,
            str_tokens=self.cf_str_tokens,
            cf_str_tokens=self.str_tokens,
        )

    def slot_labels(self) -> list[str]:
        """Axis labels of the alignment's slots (sets whose positions do not line up)."""
        return self.alignment().slot_labels(self.str_tokens)

    def position_labels(self) -> list[str]:
        """Axis labels for positions, true for every pair: ``'3 nurse'`` where all pairs that
        reach position 3 hold the same clean token there, ``'3 old|young'`` for up to three
        different tokens, ``'3 (7 tokens)'`` for more (ragged or varied sets), just the index
        without text tokens."""
        if self.str_tokens is None:
            return [str(p) for p in range(self.seq_len)]
        out = []
        for p in range(self.seq_len):
            seen = sorted(
                {toks[p].strip() or repr(toks[p]) for toks in self.str_tokens if p < len(toks)}
            )
            if len(seen) <= 3:
                out.append(f"{p} {'|'.join(seen)}")
            else:
                out.append(f"{p} ({len(seen)} tokens)")
        return out

    def __repr__(self) -> str:
        unequal = "" if self.equal_lengths else ", unequal token counts"
        return (
            f"ContrastSet({len(self)} pairs, {self.seq_len} positions{unequal}, "
            f"answers={'yes' if self.answers is not None else 'no'})"
        )

    def _repr_html_(self, max_rows: int = 20) -> str:
        rows = []
        diffs = {side: self.differing_positions(side) for side in ("clean", "counterfactual")}
        for i in range(min(len(self), max_rows)):
            cells = []
            for side, toks, strs in (
                ("clean", self.clean, self.str_tokens),
                ("counterfactual", self.counterfactual, self.cf_str_tokens),
            ):
                n = int(self.lengths_of(side)[i])
                diff = set(diffs[side][i])
                parts = []
                for p in range(n):
                    text = html.escape(strs[i][p] if strs else str(int(toks[i, p])))
                    style = "background:#ffd54f;font-weight:bold" if p in diff else ""
                    parts.append(
                        f'<span style="{style};border:1px solid #ddd;padding:0 '
                        f'2px;margin:1px">{text}</span>'
                    )
                cells.append("".join(parts))
            ans = "" if self.answers is None else html.escape(str(self.answers[i].tolist()))
            label = html.escape(self.labels[i]) if self.labels else ""
            group = html.escape(self.groups[i]) if self.groups else ""
            rows.append(
                f"<tr><td>{i}</td><td>{cells[0]}</td><td>{cells[1]}</td><td>{ans}</td><td>{label}</td><td>{group}</td></tr>"
            )
        more = f"<p>… {len(self) - max_rows} more pairs</p>" if len(self) > max_rows else ""
        return (
            f"<div><b>ContrastSet</b>: {len(self)} pairs, {self.seq_len} positions (differing "
            "tokens highlighted)"
            "<table><tr><th>#</th><th>clean</th><th>counterfactual</th><th>answers</th><th>label</th><th>group</th></tr>"
            + "".join(rows)
            + f"</table>{more}</div>"
        )
