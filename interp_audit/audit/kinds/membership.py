"""``membership``: an attacker must not tell the records a model was trained on from records of
the same form that it never saw (privacy as invariance: the output must not depend on whether a
record was in the training data).

Two forms. **Records** (``members``/``non_members``: text files, one record a line); scores
(``interp_audit.methods.privacy.membership``): loss, zlib ratio (Carlini et al. 2021) and min-k%
prob (Shi et al. 2024). **Training units** (``units``): a model trained on units drawn from the
spec's SCM (``training``: the draw its training script made, reproduced from its seed) against
fresh units of the same SCM (``fresh``: another seed); each unit is its rendered prompt and its
label, scored by ``loss`` (log p of the label's answer, as trained) and ``calibrated`` (that minus
the SCM's own log P(label | prompt) over a population: difficulty calibration, Watson et al.
2022, with the SCM as the perfect reference model). Units that render alike score alike, so each
distinct (prompt, label) is run once and counted.

For each score, the AUC of members vs non-members and the TPR at a low FPR (Carlini et al.
2022), each with a stratified bootstrap CI. Every AUC's interval must lie inside
[1 - max_auc, max_auc] (pass), one entirely outside fails, anything else is inconclusive; the
same for the TPR at ``fpr`` against ``max_tpr`` and, with ``loss_tolerance``, for the loss gap
(non-members minus members) against ±loss_tolerance.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from interp_audit.audit.context import AuditContext
from interp_audit.audit.registry import CheckKind, register_check
from interp_audit.audit.result import CheckResult
from interp_audit.audit.sections import CheckSpec, _Section
from interp_audit.core.errors import SpecError
from interp_audit.stats.bootstrap import Verdict, combine

Value = str | int | float
FILE_SCORES = ("loss", "zlib", "min_k")
UNIT_SCORES = ("loss", "calibrated")


class UnitDraw(_Section):
    n: int = Field(ge=2, le=10_000_000)
    """How many units (``scm.sample(n, seed)``, as a training script draws them)."""
    seed: int = Field(ge=0, le=2**63 - 1)
    """The draw's seed."""


class TrainingUnits(_Section):
    """Units of the spec's SCM: the draw a model was trained on, and fresh ones."""

    label: str
    """The SCM variable (0/1) the model was trained to answer (its first answer is label 1)."""
    training: UnitDraw
    """The training draw, reproduced from its seed (e.g. ``{n: 40000, seed: 0}``)."""
    fresh: UnitDraw
    """Units of the same SCM the model never saw (another seed)."""
    where: dict[str, list[Value]] = Field(default_factory=dict)
    """Keep only units whose variable takes one of these values (a model trained on a subset,
    e.g. ``{E: ["0", "1", "3"]}``); applied to both draws."""
    reference_units: int = Field(100_000, ge=2, le=10_000_000)
    """Units of the population giving the SCM's P(label | prompt) for ``calibrated`` (exact
    enumeration when every noise is discrete)."""

    @model_validator(mode="after")
    def _fresh(self):
        if self.training.seed == self.fresh.seed:
            raise ValueError(
                "units.fresh.seed equals units.training.seed: fresh units must be another draw"
            )
        return self


class MembershipCheck(CheckSpec):
    """Every membership score's AUC (members vs non-members) within [1 - max_auc, max_auc]."""

    kind: Literal["membership"]
    """``membership``."""
    members: str | None = None  # text file, one record per line: records the model was trained on
    """A text file of records that were in training, one per line."""
    non_members: str | None = None  # records of the same form that it was not trained on
    """A text file of records of the same form that were not, one per line."""
    units: TrainingUnits | None = None
    """Instead of files: training units of the spec's SCM against fresh units."""
    scores: list[Literal["loss", "zlib", "min_k", "calibrated"]] | None = Field(None, min_length=1)
    """Membership scores: records: loss, zlib ratio, min-k% probability (Carlini 2021; Shi
    2024; default all three); units: loss, calibrated (default both)."""
    fpr: float = Field(0.01, gt=0, lt=1)
    """The low false-positive rate the TPR is read at."""
    max_tpr: float | None = Field(None, gt=0, le=1)
    """The largest allowed TPR at ``fpr`` (chance is ``fpr`` itself)."""
    min_k: float = Field(0.2, gt=0, le=1)  # fraction of lowest-probability tokens (min-k%)
    """The fraction of lowest-probability tokens min-k% averages."""
    max_auc: float = Field(gt=0.5, le=1)
    """The largest allowed AUC of any score (0.5 = membership cannot be told)."""
    loss_tolerance: float | None = Field(None, ge=0)
    """Invariance view: members' mean loss minus non-members' within ±this."""

    @model_validator(mode="after")
    def _distinct(self):
        files = self.members is not None or self.non_members is not None
        if files == (self.units is not None):
            raise ValueError(
                "membership needs either 'members' and 'non_members' (text files) or 'units' "
                "(training units of the spec's SCM), not both"
            )
        if files and (self.members is None or self.non_members is None):
            raise ValueError("give both 'members' and 'non_members'")
        if files and self.members == self.non_members:
            raise ValueError("members and non_members name the same file")
        allowed = UNIT_SCORES if self.units is not None else FILE_SCORES
        bad = [s for s in self.scores or () if s not in allowed]
        if bad:
            form = "units" if self.units is not None else "records"
            raise ValueError(f"score {bad[0]!r} is not one for {form}: {list(allowed)}")
        return self


def _records(ctx: AuditContext, name: str, key: str) -> list[str]:
    path = ctx.file(name)
    if not path.exists():
        raise SpecError(f"membership {key} file {str(path)!r} does not exist")
    lines = [t.strip() for t in path.read_text().splitlines() if t.strip()]
    if len(lines) < 2:
        raise SpecError(f"membership {key} file {str(path)!r} needs at least 2 records")
    return lines


def _band(lo: float, hi: float, low: float, high: float) -> Verdict:
    if low <= lo and hi <= high:
        return "pass"
    if hi < low or lo > high:
        return "fail"
    return "inconclusive"


def _units(chk: MembershipCheck, ctx: AuditContext, name: str):
    """(result, description): the training draw against fresh units, scored per distinct
    (prompt, label) cell."""
    import torch

    from interp_audit.audit.causal_measure import causal_model
    from interp_audit.audit.measure import answer_logprobs
    from interp_audit.causal.population import Population, rendered_worlds
    from interp_audit.methods.privacy.membership import membership_from_counts

    where = f"check {name!r}"
    cm = causal_model(ctx, where)
    spec = chk.units
    cm._need_var(spec.label, "units.label")
    key = ("membership units", spec.model_dump_json())

    def cells():
        draws = []
        for draw in (spec.training, spec.fresh):
            units = cm.scm.sample(draw.n, draw.seed)
            fact = cm.scm.values(units)
            keep = torch.ones(draw.n, dtype=torch.bool)
            for var, allowed in spec.where.items():
                cm._need_var(var, "units.where")
                codes = torch.tensor([float(cm.scm.encode(var, v)) for v in allowed])
                keep &= torch.isin(fact[var].double(), codes)
            units = units.select(keep.nonzero().flatten())
            pop = Population(units, torch.ones(units.n, dtype=torch.float64), False, units.n,
                             draw.seed, factual=cm.scm.values(units))  # fmt: skip
            draws.append(rendered_worlds(cm, pop, {"factual": pop.factual}, spec.label))
        prompts = list(dict.fromkeys(draws[0].prompts + draws[1].prompts))
        index = {p: i for i, p in enumerate(prompts)}
        cell_rows = []
        for w in draws:
            remap = torch.tensor([index[p] for p in w.prompts], dtype=torch.long)
            cell_rows.append(remap[w.prompt[0]] * 2 + w.label[0].clamp(0, 1))
        cell_ids, inverse = torch.unique(torch.cat(cell_rows), return_inverse=True)
        n_tr = len(cell_rows[0])
        counts = [
            torch.zeros(len(cell_ids), dtype=torch.float64).index_add_(
                0, part, torch.ones(len(part), dtype=torch.float64)
            )
            for part in (inverse[:n_tr], inverse[n_tr:])
        ]
        # the SCM's own P(label = 1 | prompt) over a population (reference for calibrated)
        ref = ctx.causal.population(
            exact=None, n_units=spec.reference_units, seed=spec.training.seed + 1,
            labels=(spec.label,),
        )  # fmt: skip
        rw = rendered_worlds(cm, ref, {"factual": ref.factual}, spec.label)
        p1 = dict(zip(rw.prompts, rw.conditional()[0].tolist(), strict=True))
        cell_prompt = (cell_ids // 2).tolist()
        p_ref = torch.tensor([p1.get(prompts[i], float("nan")) for i in cell_prompt])
        missing = int(p_ref.isnan().sum())
        return prompts, cell_ids, counts, p_ref.nan_to_num(0.5), missing, rw.description

    prompts, cell_ids, (m_counts, n_counts), p_ref, missing, ref_desc = ctx.causal.memo(key, cells)
    lp = answer_logprobs(ctx.subject, prompts, cm.answers, where)  # label 1's answer, label 0's
    label = cell_ids % 2
    lp_cell = torch.where(label == 1, lp[cell_ids // 2, 0], lp[cell_ids // 2, 1])
    p_cell = torch.where(label == 1, p_ref, 1 - p_ref).clamp(min=1e-12)
    scores = {"loss": lp_cell, "calibrated": lp_cell - p_cell.log()}
    wanted = chk.scores or list(UNIT_SCORES)
    res = membership_from_counts(
        {s: scores[s] for s in wanted}, m_counts, n_counts, -lp_cell, fpr=chk.fpr,
        **chk.resampling(ctx.seed).kw(),
    )  # fmt: skip
    desc = (
        f"{res.n_members} training units (seed {spec.training.seed}) vs {res.n_non_members} "
        f"fresh units (seed {spec.fresh.seed}), {len(cell_ids)} distinct (prompt, label) cells; "
        f"calibration: the SCM's P(label | prompt) over {ref_desc}"
        + (f" ({missing} cells' prompts absent there: P taken as 0.5)" if missing else "")
    )
    return res, desc, "nats/answer"


def run(chk: MembershipCheck, ctx: AuditContext, name: str) -> CheckResult:
    from interp_audit.methods.privacy.membership import membership

    if chk.units is not None:
        res, desc, unit = _units(chk, ctx, name)
    else:
        members = _records(ctx, chk.members, "members")
        non_members = _records(ctx, chk.non_members, "non_members")
        overlap = set(members) & set(non_members)
        if overlap:
            raise SpecError(f"record {sorted(overlap)[0]!r} is both a member and a non-member")
        res = membership(
            ctx.subject,
            members,
            non_members,
            scores=chk.scores or list(FILE_SCORES),
            min_k=chk.min_k,
            fpr=chk.fpr,
            **chk.resampling(ctx.seed).kw(),
        )
        desc = f"{len(members)} members vs {len(non_members)} non-members"
        unit = "nats/token"
    details, verdicts = [], []
    for score, (value, lo, hi) in res.aucs.items():
        v = _band(lo, hi, 1 - chk.max_auc, chk.max_auc)
        verdicts.append(v)
        details.append(
            {
                "score": score,
                "auc": value,
                "ci": [lo, hi],
                "bounds": [1 - chk.max_auc, chk.max_auc],
                "verdict": v,
                "passed": v == "pass",
            }
        )
    for score, (value, lo, hi) in res.tpr.items():
        row = {"score": score, "measure": f"TPR at FPR {chk.fpr:g}", "tpr": value, "ci": [lo, hi],
               "fpr": chk.fpr}  # fmt: skip
        if chk.max_tpr is not None:
            v = _band(lo, hi, -1.0, chk.max_tpr)
            verdicts.append(v)
            row.update({"max_tpr": chk.max_tpr, "verdict": v, "passed": v == "pass"})
        details.append(row)
    gap, glo, ghi = res.loss_gap
    gv = "pass" if chk.loss_tolerance is None else _band(glo, ghi, -chk.loss_tolerance,
                                                         chk.loss_tolerance)  # fmt: skip
    verdicts.append(gv)
    details.append(
        {
            "score": f"loss gap (invariance view, {unit})",
            "gap": gap,
            "ci": [glo, ghi],
            "tolerance": chk.loss_tolerance,
            "passed": gv == "pass",
        }
    )
    details.append({"members": res.n_members, "non_members": res.n_non_members,
                    "min_k": chk.min_k, "records": desc})  # fmt: skip
    verdict = combine(verdicts)
    worst = max(res.aucs.items(), key=lambda kv: max(abs(kv[1][1] - 0.5), abs(kv[1][2] - 0.5)))
    wname, (wv, wlo, whi) = worst
    tv, tlo, thi = res.tpr[wname] if wname in res.tpr else (float("nan"),) * 3
    msg = (
        f"membership inference over {desc}: strongest score {wname!r} AUC {wv:.3f} "
        f"[{wlo:.3f}, {whi:.3f}] (allowed [{1 - chk.max_auc:.2f}, {chk.max_auc:.2f}]), TPR at "
        f"FPR {chk.fpr:g} {tv:.4f} [{tlo:.4f}, {thi:.4f}]"
        + ("" if chk.max_tpr is None else f" (allowed <= {chk.max_tpr})")
        + f"; loss gap {gap:+.4f} [{glo:+.4f}, {ghi:+.4f}] {unit}"
        + ("" if chk.loss_tolerance is None else f" (tolerance ±{chk.loss_tolerance})")
        + ("; VIOLATED: the output depends on membership" if verdict == "fail" else "")
    )
    reason = {
        "pass": "every AUC inside the allowed band" + (", TPR below its limit" if chk.max_tpr
                                                        else ""),
        "fail": "an interval lies entirely outside its bound: membership can be told",
        "inconclusive": "an interval straddles its bound",
    }[verdict]  # fmt: skip
    return CheckResult(
        name, chk.kind, verdict, wv, (wlo, whi), chk.max_auc, msg, details, chk.confidence,
        reason=reason,
    )  # fmt: skip


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
        objective=("privacy (membership AUC)", "down"),
    )
)
