"""Membership inference: can an attacker tell the records a model was trained on from records of
the same form that it never saw?

Three standard per-record scores, each oriented so that *higher means "member"*:

* ``loss``: minus the mean per-token negative log-likelihood (Yeom et al. 2018; Carlini et al.
  2021's baseline);
* ``zlib``: minus the ratio of log-perplexity to zlib entropy (Carlini et al. 2021, "Extracting
  Training Data from Large Language Models"): a low loss on text that does not compress well;
* ``min_k``: the mean of the k% lowest token log-probabilities (Shi et al. 2024, "Detecting
  Pretraining Data from Large Language Models"): members have fewer surprising tokens.

The attack's power is the AUC of a score for members vs non-members (0.5 = chance), with a
stratified bootstrap CI. Privacy as invariance: the model's output must not depend on whether a
record was trained on, so the AUC of every score must stay near 0.5 and the loss gap near 0.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor

from interp_audit.core.errors import ContrastError
from interp_audit.methods.privacy.memorization import token_logprobs
from interp_audit.model.subject import Subject
from interp_audit.stats.bootstrap import Resampling, percentile_ci

__all__ = [
    "SCORES",
    "MembershipResult",
    "auc",
    "auc_ci",
    "membership",
    "membership_from_counts",
    "record_scores",
    "roc_from_counts",
    "tpr_at_fpr",
]

SCORES = ("loss", "zlib", "min_k")


def zlib_entropy(text: str) -> int:
    """Bytes of the zlib-compressed text (Carlini et al. 2021's reference entropy)."""
    return len(zlib.compress(text.encode("utf-8")))


def record_scores(
    subject: Subject, texts: Sequence[str], *, min_k: float = 0.2, batch_size: int = 256
) -> dict[str, Float[Tensor, " records"]]:
    """Per-record membership scores (higher = more likely a member), float64."""
    if not texts:
        raise ContrastError("membership scores need at least one record; got none")
    if not 0 < min_k <= 1:
        raise ContrastError(f"min_k is a fraction of tokens in (0, 1]; got {min_k}")
    lps: list[Tensor] = []
    for start in range(0, len(texts), batch_size):
        lps += token_logprobs(subject, texts[start : start + batch_size])
    for text, lp in zip(texts, lps, strict=True):
        if len(lp) == 0:
            raise ContrastError(f"record {text!r} has no token after BOS to score")
    loss = torch.stack([-lp.mean() for lp in lps])
    z = torch.tensor([zlib_entropy(t) for t in texts], dtype=torch.float64)
    mink = torch.stack(
        [lp.sort().values[: max(1, math.ceil(min_k * len(lp)))].mean() for lp in lps]
    )
    return {"loss": -loss, "zlib": -loss / z, "min_k": mink}


def auc(members: Tensor, non_members: Tensor) -> float:
    """P(member score > non-member score) + P(tie) / 2 (the Mann-Whitney AUC)."""
    m, n = members.double()[:, None], non_members.double()[None, :]
    return float(((m > n).double() + 0.5 * (m == n).double()).mean())


def _auc_batch(m: Tensor, n: Tensor) -> Tensor:
    """AUC per bootstrap draw: m [B, n_m], n [B, n_n] -> [B]."""
    m, n = m[:, :, None], n[:, None, :]
    return ((m > n).double() + 0.5 * (m == n).double()).mean((1, 2))


def _stratified_ci(
    members: Tensor,
    non_members: Tensor,
    statistic,
    *,
    n_boot: int,
    confidence: float,
    seed: int,
) -> tuple[float, float]:
    """Percentile CI of ``statistic(m [B, n_m], n [B, n_n]) -> [B]``, members and non-members
    resampled separately (stratified), all draws at once."""
    Resampling.of(n_boot=n_boot, confidence=confidence, seed=seed)  # validated
    g = torch.Generator().manual_seed(seed)
    im = torch.randint(len(members), (n_boot, len(members)), generator=g)
    inn = torch.randint(len(non_members), (n_boot, len(non_members)), generator=g)
    draws = statistic(members.double()[im], non_members.double()[inn])
    lo, hi = percentile_ci(draws, confidence).tolist()
    return lo, hi


def auc_ci(
    members: Tensor,
    non_members: Tensor,
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """AUC and its stratified percentile CI."""
    lo, hi = _stratified_ci(
        members, non_members, _auc_batch, n_boot=n_boot, confidence=confidence, seed=seed
    )
    return auc(members, non_members), lo, hi


def mean_gap_ci(
    members: Tensor,
    non_members: Tensor,
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """mean(non_members) - mean(members), stratified bootstrap percentile CI."""
    lo, hi = _stratified_ci(
        members,
        non_members,
        lambda m, n: n.mean(1) - m.mean(1),
        n_boot=n_boot,
        confidence=confidence,
        seed=seed,
    )
    return float(non_members.double().mean() - members.double().mean()), lo, hi


@dataclass(frozen=True)
class MembershipResult:
    """AUC (with CI) of each score, and the loss gap (nats/token, non-members minus members)."""

    aucs: dict[str, tuple[float, float, float]]  # score -> (auc, lo, hi)
    loss_gap: tuple[float, float, float]
    n_members: int
    n_non_members: int
    min_k: float
    confidence: float
    #: score -> TPR at ``fpr`` (Carlini et al. 2022: an attack's power where it matters)
    tpr: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    fpr: float = 0.01

    def to_frame(self):
        import pandas as pd

        rows = [
            {"measure": f"AUC ({s})", "value": v, "ci_low": lo, "ci_high": hi}
            for s, (v, lo, hi) in self.aucs.items()
        ]
        rows += [
            {"measure": f"TPR at FPR {self.fpr:g} ({s})", "value": v, "ci_low": lo, "ci_high": hi}
            for s, (v, lo, hi) in self.tpr.items()
        ]
        v, lo, hi = self.loss_gap
        rows.append({"measure": "loss gap (nats/token)", "value": v, "ci_low": lo, "ci_high": hi})
        return pd.DataFrame(rows).set_index("measure")

    def _repr_html_(self) -> str:
        return (
            f"<p>membership inference: {self.n_members} members vs {self.n_non_members} "
            f"non-members, {self.confidence:.0%} CI</p>" + self.to_frame()._repr_html_()
        )


def roc_from_counts(
    scores: Float[Tensor, " cell"],
    members: Float[Tensor, "draw cell"],
    non_members: Float[Tensor, "draw cell"],
    fpr: float,
) -> tuple[Float[Tensor, " draw"], Float[Tensor, " draw"]]:
    """(AUC, TPR at ``fpr``) per row of member / non-member counts over cells of equal score.

    Records are grouped into cells sharing a score (a model that reads few distinct inputs
    gives few distinct scores); the AUC counts ties as one half (Mann-Whitney), and the TPR at
    ``fpr`` interpolates the ROC linearly between thresholds (a randomised threshold inside a
    tie), so both equal what the record-level computations give.
    """
    values, inverse = torch.unique(scores.double(), return_inverse=True)  # ascending
    k = len(values)
    m = torch.zeros(members.shape[0], k, dtype=torch.float64).index_add_(1, inverse, members)
    n = torch.zeros(non_members.shape[0], k, dtype=torch.float64).index_add_(
        1, inverse, non_members
    )
    tot_m, tot_n = m.sum(1, keepdim=True), n.sum(1, keepdim=True)
    below = n.cumsum(1) - n
    auc_ = ((m * (below + 0.5 * n)).sum(1, keepdim=True) / (tot_m * tot_n))[:, 0]
    # ROC from the highest score down: (0, 0), then each threshold's cumulative rates
    zero = torch.zeros(m.shape[0], 1, dtype=torch.float64)
    tpr_ = torch.cat([zero, m.flip(1).cumsum(1) / tot_m], 1)
    fpr_ = torch.cat([zero, n.flip(1).cumsum(1) / tot_n], 1)
    j = torch.searchsorted(fpr_.contiguous(), torch.full_like(zero, fpr), right=True)
    j = j.clamp(1, k)  # segment (j - 1, j) holds fpr
    f0, f1 = fpr_.gather(1, j - 1), fpr_.gather(1, j)
    t0, t1 = tpr_.gather(1, j - 1), tpr_.gather(1, j)
    share = torch.where(f1 > f0, (fpr - f0) / (f1 - f0).clamp(min=1e-300), torch.ones_like(f0))
    return auc_, (t0 + share.clamp(0, 1) * (t1 - t0))[:, 0]


def tpr_at_fpr(members: Tensor, non_members: Tensor, fpr: float) -> float:
    """TPR at ``fpr`` of record scores (higher = member), ROC interpolated linearly."""
    scores = torch.cat([members.double(), non_members.double()])
    m = torch.cat([torch.ones(len(members)), torch.zeros(len(non_members))]).double()[None]
    return float(roc_from_counts(scores, m, 1 - m, fpr)[1][0])


def membership_from_counts(
    scores: dict[str, Float[Tensor, " cell"]],
    members: Float[Tensor, " cell"],
    non_members: Float[Tensor, " cell"],
    loss: Float[Tensor, " cell"],
    *,
    fpr: float = 0.01,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> MembershipResult:
    """Membership inference over records grouped into cells (records that score alike, e.g.
    the same prompt and label): AUC and TPR at ``fpr`` per score, the loss gap (non-members'
    mean loss minus members'), each with a stratified bootstrap CI (members and non-members
    resampled separately: multinomial draws of each cell's count)."""
    from interp_audit.stats.population import stratified_counts

    if not 0 < fpr < 1:
        raise ContrastError(f"fpr={fpr}: a false-positive rate in (0, 1)")
    mc, nc = members.double(), non_members.double()
    if mc.sum() < 1 or nc.sum() < 1:
        raise ContrastError("membership needs at least one member and one non-member")
    dm, dn = stratified_counts([mc, nc], n_boot=n_boot, seed=seed)

    def ci(point: float, draws: Tensor) -> tuple[float, float, float]:
        lo, hi = percentile_ci(draws, confidence).tolist()
        return point, lo, hi

    aucs, tprs = {}, {}
    for name, sc in scores.items():
        a0, t0 = roc_from_counts(sc, mc[None], nc[None], fpr)
        a, t = roc_from_counts(sc, dm, dn, fpr)
        aucs[name], tprs[name] = ci(float(a0[0]), a), ci(float(t0[0]), t)
    lo_ = loss.double()
    gap0 = float((nc @ lo_) / nc.sum() - (mc @ lo_) / mc.sum())
    gaps = (dn @ lo_) / dn.sum(1) - (dm @ lo_) / dm.sum(1)
    return MembershipResult(
        aucs, ci(gap0, gaps), int(mc.sum()), int(nc.sum()), 0.0, confidence, tprs, fpr
    )


def membership(
    subject: Subject,
    members: Sequence[str],
    non_members: Sequence[str],
    *,
    scores: Sequence[str] = SCORES,
    min_k: float = 0.2,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    fpr: float = 0.01,
) -> MembershipResult:
    """How well each score separates ``members`` (trained on) from ``non_members``: AUC and
    TPR at ``fpr``, each with a stratified bootstrap CI."""
    bad = [s for s in scores if s not in SCORES]
    if bad:
        raise ContrastError(f"membership score {bad[0]!r} is not one of {list(SCORES)}")
    sm = record_scores(subject, members, min_k=min_k)
    sn = record_scores(subject, non_members, min_k=min_k)
    kw = Resampling.of(n_boot=n_boot, confidence=confidence, seed=seed).kw()
    aucs = {s: auc_ci(sm[s], sn[s], **kw) for s in scores}
    gap = mean_gap_ci(-sm["loss"], -sn["loss"], **kw)
    # TPR at fpr: every record its own cell
    is_member = torch.cat([torch.ones(len(members)), torch.zeros(len(non_members))]).double()
    cells = membership_from_counts(
        {s: torch.cat([sm[s], sn[s]]) for s in scores},
        is_member,
        1 - is_member,
        torch.zeros(len(is_member), dtype=torch.float64),
        fpr=fpr,
        **kw,
    )
    return MembershipResult(
        aucs, gap, len(members), len(non_members), min_k, confidence, cells.tpr, fpr
    )
