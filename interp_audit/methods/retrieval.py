"""Retrieval ranks for sentence encoders: where a candidate lands among all candidates."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from interp_audit.model.subject import Subject


@torch.no_grad()
def retrieval_ranks(subject: Subject, queries: Sequence[str], candidates: Sequence[str]) -> Tensor:
    """``[query, candidate]`` rank (1 = best) of each candidate for each query, by cosine."""
    q = torch.nn.functional.normalize(subject.embed(list(queries)), dim=-1)
    c = torch.nn.functional.normalize(subject.embed(list(candidates)), dim=-1)
    scores = q @ c.T
    order = scores.argsort(dim=1, descending=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(1, len(candidates) + 1).expand_as(order))
    return ranks.cpu()
