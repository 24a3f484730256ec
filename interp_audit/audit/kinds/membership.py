"""``membership``: an attacker must not tell the records a model was trained on from records of
the same form that it never saw (privacy as invariance: the output must not depend on whether a
record was in the training data).

Attacks (``interp_audit.methods.privacy.membership``): loss, zlib ratio, min-k% and min-k%++
prob, and with ``reference`` (a model that saw neither set; for a fine-tune, its base model) the
reference-model loss ratio and difference. For each attack: the AUC and the TPR at each FPR in
``fprs`` (default 1% and 0.1%), with stratified bootstrap CIs; every row names its attack.

The verdict combines, for every attack:

* ``tpr_budget``: at each listed FPR, TPR at most ``max_tpr`` (pass: CI below; fail: CI above;
  straddling: inconclusive). An FPR the non-member count cannot resolve (fewer than 1 / FPR
  non-members) is inconclusive whatever the TPR: the number is not a TPR at that FPR;
* ``max_auc``: the AUC's CI inside [1 - max_auc, max_auc] (pass), outside (fail), else
  inconclusive;
* ``loss_tolerance``: the loss gap's CI (nats/token, non-members minus members) inside ±it.

Blind baselines (record length, zlib size: no model) test that the non-members are matched; an
unmatched set is said in the message (every attack's number is then suspect).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from interp_audit.audit.context import AuditContext
from interp_audit.audit.registry import CheckKind, register_check
from interp_audit.audit.result import CheckResult
from interp_audit.audit.sections import CheckSpec, _Section
from interp_audit.core.errors import SpecError

Attack = Literal["loss", "zlib", "min_k", "min_k_pp", "ref_ratio", "ref_diff"]


class TprBudget(_Section):
    """At FPR ``fpr``, every attack's TPR at most ``max_tpr`` (chance is TPR = FPR)."""

    fpr: float = Field(gt=0, lt=1)
    """The false-positive rate the attacker accepts (0.01 = 1%)."""
    max_tpr: float = Field(ge=0, le=1)
    """The largest allowed share of members flagged at that FPR."""


class MembershipCheck(CheckSpec):
    """Membership attacks' AUC and TPR at low FPR within budget (members vs non-members)."""

    kind: Literal["membership"]
    """``membership``."""
    members: str
    """A text file of records that were in training, one per line."""
    non_members: str
    """A text file of records of the same form that were not (drawn by the same generator:
    unmatched non-members make any attack look strong), one per line."""
    reference: str | None = None
    """A reference model that saw neither set (for a fine-tune: its base model): ``zoo:NAME``
    or a folder relative to the spec; enables the ``ref_ratio`` and ``ref_diff`` attacks."""
    scores: list[Attack] | None = Field(None, min_length=1)
    """Attacks to run (default: all; the ``ref_*`` ones only with ``reference``)."""
    min_k: float = Field(0.2, gt=0, le=1)
    """The fraction of lowest-scoring tokens min-k% and min-k%++ average."""
    fprs: list[float] = Field(default_factory=lambda: [0.01, 0.001], min_length=1)
    """FPRs at which each attack's TPR is reported (budgets' FPRs are added)."""
    tpr_budget: list[TprBudget] = Field(default_factory=list)
    """TPR limits at low FPR, the standard of Carlini et al. 2022."""
    max_auc: float | None = Field(None, gt=0.5, le=1)
    """The largest allowed AUC of any attack (0.5 = membership cannot be told)."""
    loss_tolerance: float | None = Field(None, ge=0)
    """Invariance view: members' mean loss minus non-members' within ±this."""

    @model_validator(mode="after")
    def _valid(self):
        if self.members == self.non_members:
            raise ValueError("members and non_members name the same file")
        if not self.tpr_budget and self.max_auc is None and self.loss_tolerance is None:
            raise ValueError(
                "a membership check needs tpr_budget (TPR at low FPR), max_auc or "
                "loss_tolerance: what may an attacker achieve?"
            )
        if self.scores and self.reference is None:
            needs = [s for s in self.scores if s.startswith("ref_")]
            if needs:
                raise ValueError(
                    f"score {needs[0]!r} compares with a reference model: set 'reference' "
                    "(e.g. the base model the fine-tune started from)"
                )
        if any(not 0 < f < 1 for f in self.fprs):
            raise ValueError(f"fprs are fractions in (0, 1); got {self.fprs}")
        return self

    def all_fprs(self) -> list[float]:
        out = list(self.fprs)
        for b in self.tpr_budget:
            if not any(abs(b.fpr - f) < 1e-12 for f in out):
                out.append(b.fpr)
        return out


def _records(ctx: AuditContext, name: str, key: str) -> list[str]:
    path = ctx.file(name)
    if not path.exists():
        raise SpecError(f"membership {key} file {str(path)!r} does not exist")
    lines = [t.strip() for t in path.read_text().splitlines() if t.strip()]
    if len(lines) < 2:
        raise SpecError(f"membership {key} file {str(path)!r} needs at least 2 records")
    return lines


def _reference(chk: MembershipCheck, ctx: AuditContext):
    from interp_audit.model.loading import load_model

    source = chk.reference
    local = ctx.base / source
    if source.startswith((".", "/")) or (not source.startswith("zoo:") and local.exists()):
        source = str(local.resolve())
    ref = load_model(source, device=str(ctx.subject.device))
    return ref


def _band(lo: float, hi: float, lower: float, upper: float) -> str:
    if lower <= lo and hi <= upper:
        return "pass"
    if hi < lower or lo > upper:
        return "fail"
    return "inconclusive"


def run(chk: MembershipCheck, ctx: AuditContext, name: str) -> CheckResult:
    from interp_audit.methods.privacy.membership import membership
    from interp_audit.stats.bootstrap import combine

    members = _records(ctx, chk.members, "members")
    non_members = _records(ctx, chk.non_members, "non_members")
    overlap = set(members) & set(non_members)
    if overlap:
        raise SpecError(f"record {sorted(overlap)[0]!r} is both a member and a non-member")
    reference = _reference(chk, ctx) if chk.reference else None
    res = membership(
        ctx.subject,
        members,
        non_members,
        scores=chk.scores,
        reference=reference,
        min_k=chk.min_k,
        fprs=chk.all_fprs(),
        n_boot=chk.n_boot,
        confidence=chk.confidence,
        seed=ctx.seed,
    )
    verdicts, details = [], []
    few = min(len(members), len(non_members)) < chk.min_clusters
    for attack, a in res.attacks.items():
        v, lo, hi = a.auc
        row = {
            "attack": attack,
            "score": attack,
            "description": a.description,
            "auc": v,
            "ci": [lo, hi],
        }
        if chk.max_auc is not None:
            row["bounds"] = [1 - chk.max_auc, chk.max_auc]
            row["verdict"] = _band(lo, hi, 1 - chk.max_auc, chk.max_auc)
            verdicts.append(row["verdict"])
        row["tpr"] = [t.to_dict() for t in a.tpr]
        for b in chk.tpr_budget:
            t = a.tpr_at(b.fpr)
            if not t.resolvable:
                verdict = "inconclusive"
            elif t.hi <= b.max_tpr:
                verdict = "pass"
            elif t.lo > b.max_tpr:
                verdict = "fail"
            else:
                verdict = "inconclusive"
            row.setdefault("budgets", []).append(
                {
                    "fpr": b.fpr,
                    "max_tpr": b.max_tpr,
                    "tpr": t.tpr,
                    "ci": [t.lo, t.hi],
                    "verdict": verdict,
                }
            )
            verdicts.append(verdict)
        row["passed"] = all(
            x == "pass"
            for x in [row.get("verdict", "pass")] + [b["verdict"] for b in row.get("budgets", [])]
        )
        details.append(row)
    gap, glo, ghi = res.loss_gap
    gap_row = {
        "score": "loss gap (invariance view, nats/token)",
        "gap": gap,
        "ci": [glo, ghi],
        "tolerance": chk.loss_tolerance,
    }
    if chk.loss_tolerance is not None:
        gap_row["verdict"] = _band(glo, ghi, -chk.loss_tolerance, chk.loss_tolerance)
        verdicts.append(gap_row["verdict"])
    gap_row["passed"] = gap_row.get("verdict", "pass") == "pass"
    details.append(gap_row)
    for bname, (bv, blo, bhi) in res.blind.items():
        details.append(
            {
                "blind baseline": bname,
                "auc": bv,
                "ci": [blo, bhi],
                "matched": blo <= 0.5 <= bhi,
                "passed": blo <= 0.5 <= bhi,
            }
        )
    details.append(
        {
            "members": len(members),
            "non_members": len(non_members),
            "min_k": chk.min_k,
            "reference": None if reference is None else reference.describe(),
            "fprs": chk.all_fprs(),
        }
    )
    verdict = "inconclusive" if few else combine(verdicts)
    reason = (
        f"fewer than {chk.min_clusters} members or non-members"
        if few
        else {"pass": "every attack within budget", "fail": "an attack exceeds its budget"}.get(
            verdict, "an interval straddles a bound, or an FPR is not resolvable"
        )
    )
    stat, ci, threshold, headline = _headline(chk, res)
    unmatched = (
        ""
        if res.matched
        else (
            "; WARNING: a blind baseline (no model) separates members from non-members, so the "
            "non-members are not matched and every attack's number is suspect"
        )
    )
    unresolved = [t for a in res.attacks.values() for t in a.tpr if not t.resolvable]
    note = (
        f"; TPR at FPR {unresolved[0].fpr:g} is not meaningful with {len(non_members)} "
        f"non-members (needs >= {round(1 / unresolved[0].fpr)})"
        if unresolved
        else ""
    )
    ref = f" (reference {chk.reference})" if chk.reference else ""
    msg = (
        f"membership inference over {len(members)} members vs {len(non_members)} non-members"
        f"{ref}: {headline}; loss gap {gap:+.3f} [{glo:+.3f}, {ghi:+.3f}] nats/token"
        + ("" if chk.loss_tolerance is None else f" (tolerance ±{chk.loss_tolerance})")
        + note
        + unmatched
        + ("; VIOLATED: the output depends on membership" if verdict == "fail" else "")
    )
    return CheckResult(
        name,
        chk.kind,
        verdict,
        stat,
        ci,
        threshold,
        msg,
        details,
        chk.confidence,
        reason=reason,
        clusters=min(len(members), len(non_members)),
    )


def _headline(chk: MembershipCheck, res) -> tuple[float, tuple[float, float], float, str]:
    """The statistic a report leads with: the strongest attack's TPR at the first budget's
    FPR (or its AUC without budgets), named."""
    if chk.tpr_budget:
        b = chk.tpr_budget[0]
        name, a = max(res.attacks.items(), key=lambda kv: kv[1].tpr_at(b.fpr).hi)
        t = a.tpr_at(b.fpr)
        text = (
            f"strongest attack {name!r} TPR {t.tpr:.3f} [{t.lo:.3f}, {t.hi:.3f}] at FPR "
            f"{b.fpr:g} (budget {b.max_tpr:g}; AUC {a.auc[0]:.3f} [{a.auc[1]:.3f}, "
            f"{a.auc[2]:.3f}])"
        )
        return t.tpr, (t.lo, t.hi), b.max_tpr, text
    name, a = max(
        res.attacks.items(), key=lambda kv: max(abs(kv[1].auc[1] - 0.5), abs(kv[1].auc[2] - 0.5))
    )
    v, lo, hi = a.auc
    first = a.tpr[0]
    text = (
        f"strongest attack {name!r} AUC {v:.3f} [{lo:.3f}, {hi:.3f}]"
        + (
            f" (allowed [{1 - chk.max_auc:.2f}, {chk.max_auc:.2f}])"
            if chk.max_auc is not None
            else ""
        )
        + f", TPR {first.tpr:.3f} [{first.lo:.3f}, {first.hi:.3f}] at FPR {first.fpr:g}"
    )
    return v, (lo, hi), chk.max_auc if chk.max_auc is not None else 0.5, text


def figure(c: dict):
    """Per attack: AUC with its CI (green band = allowed) and TPR at each FPR with its CI."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows = [d for d in c["details"] if "attack" in d]
    names = [d["attack"] for d in rows]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("AUC", "TPR at low FPR"))

    def bar(x, y, ci, **kw):
        return go.Bar(
            x=x,
            y=y,
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [h - v for v, (_, h) in zip(y, ci, strict=True)],
                "arrayminus": [v - lo for v, (lo, _) in zip(y, ci, strict=True)],
            },
            **kw,
        )

    fig.add_trace(
        bar(
            names,
            [d["auc"] for d in rows],
            [d["ci"] for d in rows],
            name="AUC",
            marker_color=["#1565c0" if d["passed"] else "#c62828" for d in rows],
        ),
        row=1,
        col=1,
    )
    bounds = next((d["bounds"] for d in rows if "bounds" in d), None)
    if bounds:
        fig.add_hrect(
            y0=bounds[0],
            y1=bounds[1],
            fillcolor="#2e7d32",
            opacity=0.12,
            line_width=0,
            row=1,
            col=1,
        )
    fprs = sorted({t["fpr"] for d in rows for t in d.get("tpr", [])}, reverse=True)
    for f in fprs:
        ts = [next(t for t in d["tpr"] if t["fpr"] == f) for d in rows]
        fig.add_trace(
            bar(
                names,
                [t["tpr"] for t in ts],
                [t["ci"] for t in ts],
                name=f"TPR @ FPR {f:g}" + ("" if all(t["resolvable"] for t in ts) else " (n/r)"),
            ),
            row=1,
            col=2,
        )
    fig.update_layout(
        title=f"{c['name']} (membership): members vs non-members, "
        f"{int(100 * c.get('confidence', 0.95))}% CI",
        template="plotly_white",
        height=340,
        barmode="group",
    )
    fig.update_yaxes(range=[0, 1.05], row=1, col=1)
    fig.update_yaxes(range=[0, 1.05], row=1, col=2)
    return fig


register_check(
    CheckKind(
        "membership",
        MembershipCheck,
        run,
        "membership inference (loss, zlib, min-k%, min-k%++, reference-model ratio/difference):"
        " AUC and TPR at low FPR of members vs non-members within budget",
        figure=figure,
    )
)
