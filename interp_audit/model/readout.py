"""``readout``: what a metric reads from a run's final residual stream (or its logits).

Every locate method ends the same way: take the final residual stream at the scored
positions and compute only what the metric needs (two answer logits, the whole vocabulary, or
the mean-pooled embedding). This is that one step, public so that new locate methods and
checks need no private import.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp_audit.model.metrics import Metric
from interp_audit.model.subject import Subject

__all__ = ["readout"]


def readout(
    *,
    subject: Subject,
    metric: Metric,
    final: Float[Tensor, "rows pos d_model"] | None,
    logits: Float[Tensor, "rows pos vocab"] | None,
    scored: Int[Tensor, " rows"],
    answers: Int[Tensor, "rows 2"] | None,
    mask: Int[Tensor, "rows pos"],
    start: int = 0,
) -> Tensor:
    """The metric's readout: from full ``logits`` when given, else from the ``final`` residual.

    ``start`` is the absolute position of ``final``'s first column (the engine skips positions
    that need no recomputation); ``scored`` positions are absolute.
    """
    if logits is not None:
        return metric.readout_from_logits(logits, scored, answers)
    rows = torch.arange(final.shape[0], device=final.device)
    at = final[rows, scored - start] if metric.readout != "embedding" else None
    return subject.adapter.final_readout(
        metric.readout,
        at,
        answers=answers,
        hidden=final,
        mask=mask,
        has_lm_head=subject.has_lm_head,
        source=subject.source,
    )
