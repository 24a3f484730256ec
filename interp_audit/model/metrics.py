"""Behaviour metrics: each maps a model readout to one number per example.

A metric declares the *readout* it needs, so the patching engine computes only that:
``"answer_logits"`` (the two answer logits at the scored position, ``[b, 2]``),
``"final_logits"`` (all logits at the scored position, ``[b, vocab]``) or ``"embedding"``
(the mean-pooled last hidden state, ``[b, d_model]``, for encoders). Unembedding only the answer
tokens is most of the saving over a full forward with a large vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp_audit.core.errors import AuditError, ContrastError, MetricError

Readout = Literal["answer_logits", "final_logits", "embedding"]

__all__ = [
    "Metric",
    "MetricContext",
    "embedding_similarity",
    "kl_to_clean",
    "logit_diff",
    "logprob",
    "prob_diff",
    "query_similarity",
]


@dataclass(frozen=True)
class MetricContext:
    """What a metric may need beside the readout, one row per example."""

    answers: Int[Tensor, "b 2"] | None = None
    reference: Tensor | None = None  # clean readout (kl_to_clean, embedding_similarity)
    extra: dict[str, Tensor] = field(default_factory=dict)  # per-pair data from the ContrastSet

    def repeat(self, n: int) -> MetricContext:
        """Tile for ``n`` patched variants stacked on the batch axis (variant-major)."""

        def rep(t):
            return None if t is None else t.repeat(n, *([1] * (t.ndim - 1)))

        return MetricContext(
            answers=rep(self.answers),
            reference=rep(self.reference),
            extra={k: rep(v) for k, v in self.extra.items()},
        )


@dataclass(frozen=True)
class Metric:
    """A named behaviour metric. Call it as ``metric(readout, ctx) -> [b]``."""

    name: str
    readout: Readout
    fn: Callable[[Tensor, MetricContext], Tensor]
    needs_answers: bool = True
    needs_reference: bool = False
    description: str = ""

    def __call__(self, readout: Tensor, ctx: MetricContext) -> Float[Tensor, " b"]:
        if self.needs_answers and ctx.answers is None:
            raise ContrastError(
                f"metric {self.name!r} needs answer tokens: build the ContrastSet with "
                "answers=[(correct, incorrect), ...]"
            )
        return check_metric_output(self.name, self.fn(readout, ctx), int(readout.shape[0]))

    def readout_from_logits(
        self,
        logits: Float[Tensor, "b pos vocab"],
        positions: Int[Tensor, " b"],
        answers: Tensor | None,
    ) -> Tensor:
        """The readout this metric needs, taken from full logits (reference path)."""
        at = logits[
            torch.arange(logits.shape[0], device=logits.device), positions.to(logits.device)
        ]
        if self.readout == "answer_logits":
            return at.gather(-1, answers.to(at.device))
        if self.readout == "final_logits":
            return at
        raise AuditError(f"metric {self.name!r} reads embeddings, not logits")

    def from_logits(
        self,
        logits: Float[Tensor, "b pos vocab"],
        contrast,
        *,
        clean_logits: Tensor | None = None,
        kind: str = "causal",
    ) -> Float[Tensor, " b"]:
        """Per-example metric from full logits, e.g. to hand TransformerLens's patching a metric.

        ``contrast`` supplies answers and scored positions; ``clean_logits`` is needed by
        metrics that compare against the clean run (``kl_to_clean``).
        """
        positions = contrast.scored_positions(kind)
        answers = contrast.answers
        readout = self.readout_from_logits(logits, positions, answers)
        ref = None
        if self.needs_reference:
            if clean_logits is None:
                raise AuditError(
                    f"metric {self.name!r} compares with the clean run: pass clean_logits="
                )
            ref = self.readout_from_logits(clean_logits, positions, answers)
        return self(
            readout,
            MetricContext(
                answers=None if answers is None else answers.to(logits.device), reference=ref
            ),
        )


def check_metric_output(name: str, values, batch: int) -> Tensor:
    """The metric contract: a ``[batch]`` float tensor of finite numbers (else MetricError).

    Checked on every call, where the metric is called, so a wrong shape never reaches a
    ``view`` deep in the engine and a NaN never turns into all-NaN Effects and an empty top().
    """
    if not isinstance(values, Tensor):
        raise MetricError(
            f"metric {name!r} returned a {type(values).__name__}; it must return a tensor of "
            f"shape [{batch}] (one number per example)"
        )
    if tuple(values.shape) != (batch,):
        raise MetricError(
            f"metric {name!r} returned shape {tuple(values.shape)} for {batch} examples; "
            f"expected shape [{batch}] (one number per example: reduce over answers or "
            "positions inside the metric)"
        )
    if not values.dtype.is_floating_point:
        values = values.float()
    finite = torch.isfinite(values.detach())
    if not bool(finite.all()):
        i = int((~finite).nonzero()[0, 0])
        raise MetricError(
            f"metric {name!r} returned {float(values[i])} for example {i} (of {batch}); a "
            "metric must be finite (check its inputs, e.g. a zero-norm anchor or log of 0)"
        )
    return values


def _logit_diff(r: Tensor, ctx: MetricContext) -> Tensor:
    return r[:, 0] - r[:, 1]


def _prob_diff(r: Tensor, ctx: MetricContext) -> Tensor:
    probs = r.float().softmax(-1).gather(-1, ctx.answers.to(r.device))
    return probs[:, 0] - probs[:, 1]


def _logprob(r: Tensor, ctx: MetricContext) -> Tensor:
    return r.float().log_softmax(-1).gather(-1, ctx.answers[:, :1].to(r.device))[:, 0]


def _kl_to_clean(r: Tensor, ctx: MetricContext) -> Tensor:
    ref = ctx.reference.float().log_softmax(-1)
    cur = r.float().log_softmax(-1)
    return (ref.exp() * (ref - cur)).sum(-1)


logit_diff = Metric(
    "logit_diff",
    "answer_logits",
    _logit_diff,
    description="logit(correct) - logit(incorrect) at the scored position",
)
prob_diff = Metric(
    "prob_diff",
    "final_logits",
    _prob_diff,
    description="p(correct) - p(incorrect) at the scored position",
)
logprob = Metric(
    "logprob", "final_logits", _logprob, description="log p(correct) at the scored position"
)
kl_to_clean = Metric(
    "kl_to_clean",
    "final_logits",
    _kl_to_clean,
    needs_answers=False,
    needs_reference=True,
    description="KL(clean || run) of the next-token distribution at the scored position",
)


def embedding_similarity(
    anchor: Float[Tensor, " d"] | Float[Tensor, "2 d"] | None = None, name: str | None = None
) -> Metric:
    """Cosine similarity of the mean-pooled embedding (encoders).

    ``anchor=None``: similarity to the clean run's embedding of the same example (1 = unchanged).
    ``anchor=[d]``: similarity to one anchor embedding. ``anchor=[2, d]``: similarity to the
    first anchor minus similarity to the second (a WEAT-style association score).
    """
    if anchor is not None:
        anchor = torch.as_tensor(anchor, dtype=torch.float32)
        if anchor.ndim not in (1, 2) or (anchor.ndim == 2 and anchor.shape[0] != 2):
            raise MetricError(f"anchor must be [d] or [2, d]; got shape {tuple(anchor.shape)}")
        if not bool(torch.isfinite(anchor).all()):
            raise MetricError(
                "embedding_similarity: the anchor contains NaN or inf; give a finite [d] or "
                "[2, d] embedding (e.g. subject.embed([...]))"
            )
        if bool((anchor.norm(dim=-1) == 0).any()):
            raise MetricError(
                "embedding_similarity: the anchor is the zero vector; cosine similarity to it "
                "is undefined"
            )

    def fn(r: Tensor, ctx: MetricContext) -> Tensor:
        r = r.float()
        if anchor is None:
            return torch.nn.functional.cosine_similarity(
                r, ctx.reference.float().to(r.device), dim=-1
            )
        a = anchor.to(r.device)
        if a.ndim == 1:
            return torch.nn.functional.cosine_similarity(r, a[None], dim=-1)
        return torch.nn.functional.cosine_similarity(
            r, a[:1], dim=-1
        ) - torch.nn.functional.cosine_similarity(r, a[1:], dim=-1)

    return Metric(
        name or ("embedding_similarity" if anchor is None else "embedding_anchor_similarity"),
        "embedding",
        fn,
        needs_answers=False,
        needs_reference=anchor is None,
        description="cosine similarity of the mean-pooled last hidden state",
    )


def query_similarity(key: str = "query", name: str | None = None) -> Metric:
    """Cosine of the mean-pooled embedding to a per-pair query embedding (retrieval score).

    The queries ride on the contrast set: ``pairs.with_extra(query=subject.embed(queries))``.
    """

    def fn(r: Tensor, ctx: MetricContext) -> Tensor:
        if key not in ctx.extra:
            raise ContrastError(
                f"metric {name or 'query_similarity'!r} needs per-pair {key!r} embeddings: "
                f"pairs.with_extra({key}=subject.embed([...]))"
            )
        return torch.nn.functional.cosine_similarity(
            r.float(), ctx.extra[key].float().to(r.device), dim=-1
        )

    return Metric(
        name or "query_similarity",
        "embedding",
        fn,
        needs_answers=False,
        description=f"cosine of the sentence embedding to the pair's {key} embedding",
    )


def mean_pool(hidden: Float[Tensor, "b pos d"], mask: Int[Tensor, "b pos"]) -> Float[Tensor, "b d"]:
    """Sentence-transformers' mean pooling over real (unmasked) tokens."""
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


BUILTIN: dict[str, Metric] = {m.name: m for m in (logit_diff, prob_diff, logprob, kl_to_clean)}


def get_metric(name_or_metric) -> Metric:
    """A Metric from a Metric or its name (``'logit_diff'``, ``'embedding_similarity'`` ...)."""
    if isinstance(name_or_metric, Metric):
        return name_or_metric
    if name_or_metric == "embedding_similarity":
        return embedding_similarity()
    if name_or_metric in BUILTIN:
        return BUILTIN[name_or_metric]
    from interp_audit.core.errors import did_you_mean

    raise AuditError(
        f"unknown metric {name_or_metric!r}; built in: "
        f"{', '.join([*BUILTIN, 'embedding_similarity'])}"
        f"{did_you_mean(str(name_or_metric), [*BUILTIN, 'embedding_similarity'])}"
    )
