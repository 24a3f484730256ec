"""``membership``: an attacker must not tell the records a model was trained on from records of
the same form that it never saw (privacy as invariance: the output must not depend on whether a
record was in the training data).

Scores (``interp_audit.methods.privacy.membership``): loss, zlib ratio (Carlini et al. 2021) and
min-k% prob
(Shi et al. 2024). For each, the AUC of members vs non-members with a stratified bootstrap CI;
the check passes when every AUC's interval lies inside [1 - max_auc, max_auc] and, with
``loss_tolerance``, the loss gap's interval (nats/token, non-members minus members) inside
±loss_tolerance. An interval that straddles a bound is not a pass.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from interp_audit.audit.context import AuditContext
from interp_audit.audit.measure import within
from interp_audit.audit.registry import CheckKind, register_check
from interp_audit.audit.result import CheckResult
from interp_audit.audit.sections import CheckSpec
from interp_audit.core.errors import SpecError


class MembershipCheck(CheckSpec):
    """Every membership score's AUC (members vs non-members) within [1 - max_auc, max_auc]."""

    kind: Literal["membership"]
    """``membership``."""
    members: str  # text file, one record per line: records the model was trained on
    """A text file of records that were in training, one per line."""
    non_members: str  # records of the same form that it was not trained on
    """A text file of records of the same form that were not, one per line."""
    scores: list[Literal["loss", "zlib", "min_k"]] = Field(
        default_factory=lambda: ["loss", "zlib", "min_k"], min_length=1
    )
    """Membership scores: loss, zlib ratio, min-k% probability (Carlini 2021; Shi 2024)."""
    min_k: float = Field(0.2, gt=0, le=1)  # fraction of lowest-probability tokens (min-k%)
    """The fraction of lowest-probability tokens min-k% averages."""
    max_auc: float = Field(gt=0.5, le=1)
    """The largest allowed AUC of any score (0.5 = membership cannot be told)."""
    loss_tolerance: float | None = Field(None, ge=0)
    """Invariance view: members' mean loss minus non-members' within ±this."""

    @model_validator(mode="after")
    def _distinct(self):
        if self.members == self.non_members:
            raise ValueError("members and non_members name the same file")
        return self


def _records(ctx: AuditContext, name: str, key: str) -> list[str]:
    path = ctx.file(name)
    if not path.exists():
        raise SpecError(f"membership {key} file {str(path)!r} does not exist")
    lines = [t.strip() for t in path.read_text().splitlines() if t.strip()]
    if len(lines) < 2:
        raise SpecError(f"membership {key} file {str(path)!r} needs at least 2 records")
    return lines


def run(chk: MembershipCheck, ctx: AuditContext, name: str) -> CheckResult:
    from interp_audit.methods.privacy.membership import membership

    members = _records(ctx, chk.members, "members")
    non_members = _records(ctx, chk.non_members, "non_members")
    overlap = set(members) & set(non_members)
    if overlap:
        raise SpecError(f"record {sorted(overlap)[0]!r} is both a member and a non-member")
    res = membership(
        ctx.subject,
        members,
        non_members,
        scores=chk.scores,
        min_k=chk.min_k,
        **chk.resampling(ctx.seed).kw(),
    )
    tol = chk.max_auc - 0.5
    details, passed = [], True
    for score, (value, lo, hi) in res.aucs.items():
        ok = within(lo - 0.5, hi - 0.5, tol)
        passed = passed and ok
        details.append(
            {
                "score": score,
                "auc": value,
                "ci": [lo, hi],
                "bounds": [1 - chk.max_auc, chk.max_auc],
                "passed": ok,
            }
        )
    gap, glo, ghi = res.loss_gap
    gap_ok = chk.loss_tolerance is None or within(glo, ghi, chk.loss_tolerance)
    passed = passed and gap_ok
    details.append(
        {
            "score": "loss gap (invariance view, nats/token)",
            "gap": gap,
            "ci": [glo, ghi],
            "tolerance": chk.loss_tolerance,
            "passed": gap_ok,
        }
    )
    details.append({"members": len(members), "non_members": len(non_members), "min_k": chk.min_k})
    worst = max(res.aucs.items(), key=lambda kv: max(abs(kv[1][1] - 0.5), abs(kv[1][2] - 0.5)))
    wname, (wv, wlo, whi) = worst
    msg = (
        f"membership inference over {len(members)} members vs {len(non_members)} non-members: "
        f"strongest score {wname!r} AUC {wv:.3f} [{wlo:.3f}, {whi:.3f}] (allowed "
        f"[{1 - chk.max_auc:.2f}, {chk.max_auc:.2f}]); loss gap {gap:+.3f} [{glo:+.3f}, "
        f"{ghi:+.3f}] nats/token"
        + ("" if chk.loss_tolerance is None else f" (tolerance ±{chk.loss_tolerance})")
        + ("" if passed else "; VIOLATED: the output depends on membership")
    )
    return CheckResult(
        name, chk.kind, passed, wv, (wlo, whi), chk.max_auc, msg, details, chk.confidence
    )


def figure(c: CheckResult):
    """AUC of each score with its CI; the green band is the allowed [1 - max_auc, max_auc]."""
    import plotly.graph_objects as go

    from interp_audit.audit.evidence import ScoreRow
    from interp_audit.audit.figures import COLORS, error_bars, short_layout

    rows = [r for r in c.evidence if isinstance(r, ScoreRow) and r.auc is not None]
    fig = go.Figure(
        go.Bar(
            x=[r.label for r in rows],
            y=[r.auc for r in rows],
            error_y=error_bars(rows),
            marker_color=[COLORS["measured"] if r.passed else COLORS["fail"] for r in rows],
        )
    )
    t = c.threshold
    fig.add_hrect(y0=1 - t, y1=t, fillcolor=COLORS["pass"], opacity=0.12, line_width=0)
    fig.update_layout(yaxis={"range": [0, 1.05]})
    pct = int(round(100 * c.confidence))
    return short_layout(fig, f"{c.name}: AUC members vs non-members, {pct}% CI")


register_check(
    CheckKind(
        "membership",
        MembershipCheck,
        run,
        "membership inference (loss, zlib, min-k% prob): AUC of members vs non-members "
        "within [1 - max_auc, max_auc]",
        figure=figure,
        threshold="AUC ≤ {:g}",
    )
)
