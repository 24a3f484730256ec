"""Membership inference: can an attacker tell the records a model was trained on from records of
the same form that it never saw?

Per-record scores (attacks), each oriented so that *higher means "member"*:

* ``loss``: minus the mean per-token negative log-likelihood (Yeom et al. 2018);
* ``zlib``: minus the ratio of log-perplexity to zlib entropy (Carlini et al. 2021,
  "Extracting Training Data from Large Language Models"): a low loss on text that does not
  compress well;
* ``min_k``: the mean of the k% lowest token log-probabilities (Shi et al. 2024);
* ``min_k_pp``: min-k%++ (Zhang et al. 2024): each token's log-probability standardised by the
  mean and standard deviation of log p under the model's own next-token distribution there,
  then the mean of the k% lowest;
* ``ref_ratio``: minus the target's log-perplexity over a *reference model*'s (Carlini et al.
  2021's comparison with another LM); with the pre-trained base of a fine-tune as reference this
  is the attack a reviewer can actually run (no retrained twin needed);
* ``ref_diff``: the reference's mean token loss minus the target's (difficulty calibration,
  Watson et al. 2022; LiRA's offline form with a single reference).

Power is reported the way the field now asks for it (Carlini et al. 2022, "Membership
Inference Attacks From First Principles"): the AUC **and** the TPR at a low FPR (1%, 0.1%),
each with a stratified bootstrap CI (members and non-members resampled separately). TPR at FPR
``a`` is the largest share of members flagged by a threshold that flags at most ``floor(a N)``
of the N non-members (``max(tpr[fpr <= a])`` of sklearn's ROC curve). When ``a N < 1`` no
non-member may be flagged: the threshold sits above the highest non-member and the number
says nothing about FPR ``a`` itself (:attr:`TprAt.resolvable` is False).
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
from interp_audit.methods.privacy.tokens import token_statistics
from interp_audit.model.subject import Subject
from interp_audit.stats.bootstrap import Resampling, percentile_ci

__all__ = [
    "ATTACKS",
    "REFERENCE_SCORES",
    "SCORES",
    "AttackResult",
    "MembershipResult",
    "TprAt",
    "auc",
    "auc_ci",
    "membership",
    "membership_from_counts",
    "record_scores",
    "roc_from_counts",
    "tpr_at_fpr",
]

#: attack name -> what it computes (and whose it is), for reports
ATTACKS = {
    "loss": "loss: minus the mean token loss (Yeom et al. 2018)",
    "zlib": "zlib ratio: minus log-perplexity / zlib bytes (Carlini et al. 2021)",
    "min_k": "min-k% prob: mean of the k% lowest token log-probs (Shi et al. 2024)",
    "min_k_pp": "min-k%++: mean of the k% lowest standardised token log-probs (Zhang et al. 2024)",
    "ref_ratio": "reference-model loss ratio: minus target / reference log-perplexity "
    "(Carlini et al. 2021)",
    "ref_diff": "reference-model loss difference: reference minus target mean token loss "
    "(Watson et al. 2022)",
    "calibrated": "calibrated loss: log p of the label minus the SCM's own log P(label | prompt)"
    " (difficulty calibration with the perfect reference, Watson et al. 2022)",
}
SCORES = tuple(a for a in ATTACKS if a != "calibrated")  # per-record attacks on text
REFERENCE_SCORES = ("ref_ratio", "ref_diff")
#: FPRs at which TPR is reported by default (Carlini et al. 2022)
FPRS = (0.01, 0.001)


def zlib_entropy(text: str) -> int:
    """Bytes of the zlib-compressed text (Carlini et al. 2021's reference entropy)."""
    return len(zlib.compress(text.encode("utf-8")))


def _min_k(values: Tensor, k: float) -> Tensor:
    return values.sort().values[: max(1, math.ceil(k * len(values)))].mean()


def record_scores(
    subject: Subject,
    texts: Sequence[str],
    *,
    min_k: float = 0.2,
    reference: Subject | None = None,
    scores: Sequence[str] | None = None,
) -> dict[str, Float[Tensor, " records"]]:
    """Per-record membership scores (higher = more likely a member), float64.

    ``scores`` defaults to every attack this call can run (the ``ref_*`` ones need
    ``reference``, a model scoring the same texts with its own tokenizer).
    """
    if not texts:
        raise ContrastError("membership scores need at least one record; got none")
    if not 0 < min_k <= 1:
        raise ContrastError(f"min_k is a fraction of tokens in (0, 1]; got {min_k}")
    wanted = list(scores) if scores is not None else _default_scores(reference is not None)
    _check_scores(wanted, reference is not None)
    stats = token_statistics(subject, texts, moments="min_k_pp" in wanted)
    for text, s in zip(texts, stats, strict=True):
        if len(s.logprob) == 0:
            raise ContrastError(f"record {text!r} has no token after the first to score")
    loss = torch.stack([-s.logprob.mean() for s in stats])
    out: dict[str, Tensor] = {}
    for name in wanted:
        if name == "loss":
            out[name] = -loss
        elif name == "zlib":
            z = torch.tensor([zlib_entropy(t) for t in texts], dtype=torch.float64)
            out[name] = -loss / z
        elif name == "min_k":
            out[name] = torch.stack([_min_k(s.logprob, min_k) for s in stats])
        elif name == "min_k_pp":
            out[name] = torch.stack(
                [_min_k((s.logprob - s.mean) / s.std.clamp_min(1e-12), min_k) for s in stats]
            )
    if any(n in REFERENCE_SCORES for n in wanted):
        ref = token_statistics(reference, texts)
        for text, s in zip(texts, ref, strict=True):
            if len(s.logprob) == 0:
                raise ContrastError(
                    f"record {text!r} has no token after the first for the reference model"
                )
        ref_loss = torch.stack([-s.logprob.mean() for s in ref])
        if "ref_ratio" in wanted:
            out["ref_ratio"] = -loss / ref_loss
        if "ref_diff" in wanted:
            out["ref_diff"] = ref_loss - loss
    return {n: out[n] for n in wanted}


def _default_scores(with_reference: bool) -> list[str]:
    return [s for s in SCORES if with_reference or s not in REFERENCE_SCORES]


def _check_scores(scores: Sequence[str], with_reference: bool) -> None:
    bad = [s for s in scores if s not in SCORES]
    if bad:
        raise ContrastError(f"membership score {bad[0]!r} is not one of {list(SCORES)}")
    needs = [s for s in scores if s in REFERENCE_SCORES]
    if needs and not with_reference:
        raise ContrastError(
            f"membership score {needs[0]!r} compares with a reference model; pass reference= "
            "(e.g. the base model a fine-tune started from)"
        )
    if not scores:
        raise ContrastError("membership needs at least one score")


# ---- statistics: AUC and TPR at low FPR, one draw or many at once ----------------------------
def _auc_rows(m: Tensor, n: Tensor) -> Tensor:
    """AUC per row: m [B, n_m], n [B, n_n] -> [B]; ties count half. O(B (n_m + n_n) log n_n)
    memory-light form of P(member > non-member) + P(tie) / 2."""
    ns = n.sort(-1).values
    less = torch.searchsorted(ns, m.contiguous(), side="left").double()
    leq = torch.searchsorted(ns, m.contiguous(), side="right").double()
    return (less + 0.5 * (leq - less)).sum(-1) / (m.shape[-1] * n.shape[-1])


def auc(members: Tensor, non_members: Tensor) -> float:
    """P(member score > non-member score) + P(tie) / 2 (the Mann-Whitney AUC)."""
    return float(_auc_rows(members.double()[None], non_members.double()[None])[0])


def false_positives_allowed(fpr: float, n_non_members: int) -> int:
    """How many non-members a threshold may flag and keep FPR <= ``fpr``: floor(fpr N)."""
    return int(math.floor(fpr * n_non_members + 1e-9))


def _tpr_rows(m: Tensor, n: Tensor, fpr: float) -> Tensor:
    """TPR at FPR <= ``fpr`` per row: m [B, n_m], n [B, n_n] -> [B]."""
    allowed = false_positives_allowed(fpr, n.shape[-1])
    if allowed >= n.shape[-1]:
        return torch.ones(m.shape[0], dtype=torch.float64)
    # the (allowed + 1)-th highest non-member: members strictly above it are flagged
    cut = n.sort(-1, descending=True).values[:, allowed]
    return (m > cut[:, None]).double().mean(-1)


def tpr_at_fpr(members: Tensor, non_members: Tensor, fpr: float) -> float:
    """The largest TPR of a threshold whose FPR on ``non_members`` is at most ``fpr``."""
    return float(_tpr_rows(members.double()[None], non_members.double()[None], fpr)[0])


def _with_ci(statistic, members: Tensor, non_members: Tensor, resampling: dict):
    """(point, lo, hi) of ``statistic(m [B, n_m], n [B, n_n]) -> [B]``: the point on the
    records themselves, the percentile CI over draws that resample members and non-members
    separately (stratified), in chunks of 500 draws. ``resampling``: n_boot, confidence, seed
    (:class:`~interp_audit.stats.bootstrap.Resampling`'s defaults where absent)."""
    r = Resampling.of(**resampling)
    g = torch.Generator().manual_seed(r.seed)
    m, n = members.double(), non_members.double()
    im = torch.randint(len(m), (r.n_boot, len(m)), generator=g)
    inn = torch.randint(len(n), (r.n_boot, len(n)), generator=g)
    draws = torch.cat(
        [statistic(m[im[s : s + 500]], n[inn[s : s + 500]]) for s in range(0, r.n_boot, 500)]
    )
    lo, hi = percentile_ci(draws, r.confidence).tolist()
    return float(statistic(m[None], n[None])[0]), lo, hi


def auc_ci(members: Tensor, non_members: Tensor, **resampling) -> tuple[float, float, float]:
    """AUC and its stratified percentile CI (``resampling``: n_boot, confidence, seed)."""
    return _with_ci(_auc_rows, members, non_members, resampling)


def tpr_ci(
    members: Tensor, non_members: Tensor, fpr: float, **resampling
) -> tuple[float, float, float]:
    """TPR at FPR <= ``fpr`` and its stratified percentile CI."""
    return _with_ci(lambda m, n: _tpr_rows(m, n, fpr), members, non_members, resampling)


def mean_gap_ci(members: Tensor, non_members: Tensor, **resampling) -> tuple[float, float, float]:
    """mean(non_members) - mean(members) and its stratified percentile CI."""
    return _with_ci(lambda m, n: n.mean(1) - m.mean(1), members, non_members, resampling)


# ---- results ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TprAt:
    """TPR at FPR <= ``fpr`` with its CI, and whether the non-member count resolves ``fpr``."""

    fpr: float
    tpr: float
    lo: float
    hi: float
    n_non_members: int

    @property
    def false_positives_allowed(self) -> int:
        return false_positives_allowed(self.fpr, self.n_non_members)

    @property
    def resolvable(self) -> bool:
        """False when fewer than 1 / fpr non-members: no non-member may be flagged, so the
        threshold is the highest non-member's score and FPR ``fpr`` itself is never tested."""
        return self.false_positives_allowed >= 1

    @property
    def note(self) -> str:
        n, k = self.n_non_members, self.false_positives_allowed
        if k == 0:
            return (
                f"not meaningful: {n} non-members cannot resolve FPR {self.fpr:g} (needs "
                f">= {math.ceil(1 / self.fpr)}); the threshold is the highest non-member's "
                f"score (smallest nonzero FPR here: 1/{n} = {1 / n:.2g})"
            )
        if k < 10:
            return f"set by the top {k} non-member score(s) of {n}: a noisy estimate"
        return f"threshold flags {k} of {n} non-members"

    def to_dict(self) -> dict:
        return {
            "fpr": self.fpr,
            "tpr": self.tpr,
            "ci": [self.lo, self.hi],
            "chance": self.fpr,
            "false_positives_allowed": self.false_positives_allowed,
            "resolvable": self.resolvable,
            "note": self.note,
        }


@dataclass(frozen=True)
class AttackResult:
    """One attack's power: AUC with CI and TPR at each low FPR with CI."""

    attack: str
    auc: tuple[float, float, float]  # (value, lo, hi)
    tpr: tuple[TprAt, ...]

    @property
    def description(self) -> str:
        return ATTACKS[self.attack]

    def tpr_at(self, fpr: float) -> TprAt:
        for t in self.tpr:
            if math.isclose(t.fpr, fpr):
                return t
        raise KeyError(f"TPR at FPR {fpr} was not computed (have {[t.fpr for t in self.tpr]})")


@dataclass(frozen=True)
class MembershipResult:
    """Every attack's AUC and TPR at low FPR (with CIs), the loss gap (nats/token, non-members
    minus members), and blind baselines (no model: record length, zlib size) that say whether
    the non-members are matched."""

    attacks: dict[str, AttackResult]
    loss_gap: tuple[float, float, float]
    n_members: int
    n_non_members: int
    min_k: float
    confidence: float
    blind: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    reference: str | None = None

    @property
    def aucs(self) -> dict[str, tuple[float, float, float]]:
        return {name: a.auc for name, a in self.attacks.items()}

    @property
    def matched(self) -> bool:
        """No blind baseline's AUC CI excludes 0.5 (members and non-members look alike)."""
        return all(lo <= 0.5 <= hi for _, lo, hi in self.blind.values())

    def to_frame(self):
        import pandas as pd

        rows = []
        for name, a in self.attacks.items():
            v, lo, hi = a.auc
            rows.append({"attack": name, "measure": "AUC", "value": v, "ci_low": lo, "ci_high": hi})
            for t in a.tpr:
                rows.append(
                    {
                        "attack": name,
                        "measure": f"TPR @ {t.fpr:g} FPR"
                        + ("" if t.resolvable else " (not resolvable)"),
                        "value": t.tpr,
                        "ci_low": t.lo,
                        "ci_high": t.hi,
                    }
                )
        for name, (v, lo, hi) in self.blind.items():
            rows.append(
                {
                    "attack": f"blind: {name}",
                    "measure": "AUC",
                    "value": v,
                    "ci_low": lo,
                    "ci_high": hi,
                }
            )
        v, lo, hi = self.loss_gap
        rows.append(
            {
                "attack": "-",
                "measure": "loss gap (nats/token)",
                "value": v,
                "ci_low": lo,
                "ci_high": hi,
            }
        )
        return pd.DataFrame(rows).set_index(["attack", "measure"])

    def _repr_html_(self) -> str:
        ref = f", reference {self.reference}" if self.reference else ""
        return (
            f"<p>membership inference: {self.n_members} members vs {self.n_non_members} "
            f"non-members{ref}, {self.confidence:.0%} CI</p>" + self.to_frame()._repr_html_()
        )


def blind_scores(subject: Subject, texts: Sequence[str]) -> dict[str, Tensor]:
    """Scores that never look at the model's predictions: a matched non-member set leaves
    their AUC at 0.5 (Das et al. 2024: blind attacks beat published MIAs on unmatched sets)."""
    return {
        "tokens": torch.tensor([len(subject.to_tokens(t)) for t in texts], dtype=torch.float64),
        "zlib bytes": torch.tensor([zlib_entropy(t) for t in texts], dtype=torch.float64),
    }


def membership(
    subject: Subject,
    members: Sequence[str],
    non_members: Sequence[str],
    *,
    scores: Sequence[str] | None = None,
    reference: Subject | None = None,
    min_k: float = 0.2,
    fprs: Sequence[float] = FPRS,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> MembershipResult:
    """How well each attack separates ``members`` (trained on) from ``non_members``.

    ``reference``: a model that never saw either set (for a fine-tune: its base model); it
    enables ``ref_ratio`` and ``ref_diff``, which are also the default then.
    """
    wanted = list(scores) if scores is not None else _default_scores(reference is not None)
    _check_scores(wanted, reference is not None)
    for f in fprs:
        if not 0 < f < 1:
            raise ContrastError(f"an FPR is a fraction in (0, 1); got {f}")
    if "loss" not in wanted:
        wanted_all = [*wanted, "loss"]  # the loss gap needs it
    else:
        wanted_all = wanted
    sm = record_scores(subject, members, min_k=min_k, reference=reference, scores=wanted_all)
    sn = record_scores(subject, non_members, min_k=min_k, reference=reference, scores=wanted_all)
    kw = Resampling.of(n_boot=n_boot, confidence=confidence, seed=seed).kw()
    attacks = {
        s: AttackResult(
            s,
            auc_ci(sm[s], sn[s], **kw),
            tuple(TprAt(f, *tpr_ci(sm[s], sn[s], f, **kw), len(non_members)) for f in fprs),
        )
        for s in wanted
    }
    gap = mean_gap_ci(-sm["loss"], -sn["loss"], **kw)
    bm, bn = blind_scores(subject, members), blind_scores(subject, non_members)
    blind = {name: auc_ci(bm[name], bn[name], **kw) for name in bm}
    return MembershipResult(
        attacks,
        gap,
        len(members),
        len(non_members),
        min_k,
        confidence,
        blind,
        None if reference is None else reference.source,
    )


# ---- records grouped into cells of equal score (training units of an SCM) ---------------------
def roc_from_counts(
    scores: Float[Tensor, " cell"],
    members: Float[Tensor, "draw cell"],
    non_members: Float[Tensor, "draw cell"],
    fpr: float,
) -> tuple[Float[Tensor, " draw"], Float[Tensor, " draw"]]:
    """(AUC, TPR at ``fpr``) per row of member / non-member counts over cells of equal score.

    Records are grouped into cells sharing a score (a model that reads few distinct inputs
    gives few distinct scores, and ties are the rule). The AUC counts ties as one half
    (Mann-Whitney). The TPR at ``fpr`` interpolates the ROC linearly between thresholds: a
    threshold *inside* a tie, flagging a random share of the tied records, reaches FPR ``fpr``
    exactly, which an attacker facing ties can do. (Records of distinct scores use
    :func:`tpr_at_fpr`'s conservative threshold instead.)
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


def membership_from_counts(
    scores: dict[str, Float[Tensor, " cell"]],
    members: Float[Tensor, " cell"],
    non_members: Float[Tensor, " cell"],
    loss: Float[Tensor, " cell"],
    *,
    fprs: Sequence[float] = FPRS,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> MembershipResult:
    """Membership inference over records grouped into cells (records that score alike, e.g.
    the same prompt and label): AUC and TPR at each FPR per score (ROC interpolated inside
    ties: :func:`roc_from_counts`), the loss gap (non-members' mean loss minus members'), each
    with a stratified bootstrap CI (members and non-members resampled separately: multinomial
    draws of each cell's count)."""
    from interp_audit.stats.population import stratified_counts

    for f in fprs:
        if not 0 < f < 1:
            raise ContrastError(f"an FPR is a fraction in (0, 1); got {f}")
    mc, nc = members.double(), non_members.double()
    if mc.sum() < 1 or nc.sum() < 1:
        raise ContrastError("membership needs at least one member and one non-member")
    Resampling.of(n_boot=n_boot, confidence=confidence, seed=seed)  # validated
    dm, dn = stratified_counts([mc, nc], n_boot=n_boot, seed=seed)
    n_non = int(nc.sum())

    def ci(point: float, draws: Tensor) -> tuple[float, float, float]:
        lo, hi = percentile_ci(draws, confidence).tolist()
        return point, lo, hi

    attacks = {}
    for name, sc in scores.items():
        rates = []
        auc_point = auc_draws = None
        for f in fprs:
            a0, t0 = roc_from_counts(sc, mc[None], nc[None], f)
            a, t = roc_from_counts(sc, dm, dn, f)
            auc_point, auc_draws = float(a0[0]), a
            rates.append(TprAt(f, *ci(float(t0[0]), t), n_non))
        attacks[name] = AttackResult(name, ci(auc_point, auc_draws), tuple(rates))
    lo_ = loss.double()
    gap0 = float((nc @ lo_) / nc.sum() - (mc @ lo_) / mc.sum())
    gaps = (dn @ lo_) / dn.sum(1) - (dm @ lo_) / dm.sum(1)
    return MembershipResult(attacks, ci(gap0, gaps), int(mc.sum()), n_non, 0.0, confidence)
