"""Linear probes for a concept at one residual-stream site: is it still readable?

The measure behind concept erasure's claim. A multinomial logistic regression (L2, on
standardised features) is fit on the activations of one half of the reference pairs and scored
on the other half; the held-out accuracy comes with a cluster-bootstrap CI over pairs (the
tokens of one prompt are not independent). ``chance`` is the held-out majority-class rate:
after a successful erasure the accuracy's CI covers it.

    before = concept_probe(subject, "L1.resid_pre", pairs)
    eraser = fit_eraser(subject, "L1.resid_pre", pairs, rows=before.train_rows)
    with erase(subject, eraser):
        after = concept_probe(subject, "L1.resid_pre", pairs)   # same split
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp_audit.core.errors import ContrastError
from interp_audit.engine.contrasts import ContrastSet
from interp_audit.engine.erasure import Concept, concept_data
from interp_audit.model.components import parse_component
from interp_audit.model.subject import Subject
from interp_audit.stats.bootstrap import Interval, mean_ci

__all__ = ["ProbeResult", "concept_probe", "fit_probe", "split_rows"]

Where = Literal["all", "scored"]


@dataclass(frozen=True)
class ProbeResult:
    """Held-out accuracy of a linear probe for a concept at one site."""

    site: str
    positions: Where
    accuracy: Interval
    chance: float
    n_train: int
    n_test: int
    train_rows: Tensor
    test_rows: Tensor

    @property
    def at_chance(self) -> bool:
        """The accuracy's CI covers the majority-class rate."""
        return self.accuracy.lo <= self.chance <= self.accuracy.hi

    def to_dict(self) -> dict[str, Any]:
        a = self.accuracy
        return {
            "site": self.site,
            "positions": self.positions,
            "accuracy": a.point,
            "ci": [a.lo, a.hi],
            "chance": self.chance,
            "at_chance": self.at_chance,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "clusters": a.n_clusters,
        }

    def __repr__(self) -> str:
        a = self.accuracy
        return (
            f"ProbeResult({self.site} [{self.positions} tokens]: held-out accuracy {a.point:.3f} "
            f"[{a.lo:.3f}, {a.hi:.3f}], chance {self.chance:.3f}, {self.n_test} test activations)"
        )


def split_rows(n: int, seed: int = 0, train: float = 0.5) -> tuple[Tensor, Tensor]:
    """A seeded split of ``n`` pairs into train and held-out halves."""
    if n < 4:
        raise ContrastError(f"a held-out probe needs at least 4 pairs; got {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    k = max(2, min(n - 2, round(train * n)))
    return perm[:k].sort().values, perm[k:].sort().values


def fit_probe(
    x: Float[Tensor, "n d"],
    y: Int[Tensor, " n"],
    n_classes: int,
    *,
    l2: float = 1e-3,
    steps: int = 200,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Multinomial logistic regression on standardised features (LBFGS, float64).

    Returns (mean, scale, weight [d, k], bias [k]); predict ``argmax(((x - mean) / scale) @ w
    + b)``.
    """
    x = x.double()
    mean, scale = x.mean(0), x.std(0).clamp(min=1e-8)
    xs = (x - mean) / scale
    w = torch.zeros(x.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")
    target = y.long()

    def loss_fn():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xs @ w + b, target) + l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(loss_fn)
    return mean, scale, w.detach(), b.detach()


def concept_probe(
    subject: Subject,
    site: str,
    reference: ContrastSet,
    *,
    concept: Concept = "contrast",
    positions: Where = "all",
    seed: int = 0,
    split: tuple[Tensor, Tensor] | None = None,
    n_boot: int = 1000,
    confidence: float = 0.95,
) -> ProbeResult:
    """Held-out accuracy of a linear probe for ``concept`` at ``site`` (hooks respected, so
    inside ``erase(...)`` it measures the erased stream).

    ``positions``: every real token (``"all"``, the distribution an eraser is fitted on) or
    only each prompt's scored position (``"scored"``: where the answer is read). ``split``:
    (train pairs, held-out pairs), default a seeded half/half split.
    """
    comp = parse_component(site, subject.shape)
    if comp.kind not in ("resid_pre", "resid_mid", "resid_post") or comp.pos is not None:
        raise ContrastError(
            f"a concept probe reads a residual-stream site at every position; got {site!r}"
        )
    train, test = split if split is not None else split_rows(len(reference), seed)
    scored = subject.scored_positions(reference)  # [pair] the position each metric reads
    data = []
    for rows in (train, test):
        x, y, pair, pos, names = concept_data(
            subject, subject.hook_name(comp), reference, concept, rows=rows
        )
        keep = pos == scored[pair] if positions == "scored" else torch.ones_like(y, dtype=bool)
        data.append((x[keep.to(x.device)], y[keep], pair[keep]))
    (x_tr, y_tr, _), (x_te, y_te, p_te) = data
    k = len(names)
    mean, scale, w, b = fit_probe(x_tr.cpu(), y_tr, k)
    pred = (((x_te.cpu().double() - mean) / scale) @ w + b).argmax(1)
    correct = (pred == y_te).double()
    clusters = [str(int(p)) for p in p_te]
    acc = mean_ci(correct, clusters, n_boot=n_boot, confidence=confidence, seed=seed)
    chance = float(torch.bincount(y_te, minlength=k).max()) / len(y_te)
    return ProbeResult(comp.label, positions, acc, chance, len(y_tr), len(y_te), train, test)
