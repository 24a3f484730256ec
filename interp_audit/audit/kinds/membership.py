"""``membership``: an attacker must not tell the records a model was trained on from records of
the same form that it never saw (privacy as invariance: the output must not depend on whether a
record was in the training data).

Two forms.

* **Records** (``members``/``non_members``: text files, one record a line). Attacks
  (``interp_audit.methods.privacy.membership``): loss, zlib ratio, min-k% and min-k%++ prob, and
  with ``reference`` (a model that saw neither set; for a fine-tune, its base model) the
  reference-model loss ratio and difference. Blind baselines (record length, zlib size: no
  model) test that the non-members are matched; an unmatched set is said in the message (every
  attack's number is then suspect).
* **Training units** (``units``): a model trained on units drawn from the spec's SCM
  (``training``: the draw its training script made, reproduced from its seed) against fresh
  units of the same SCM (``fresh``: another seed); each unit is its rendered prompt and its
  label, scored by ``loss`` (log p of the label's answer, as trained) and ``calibrated`` (that
  minus the SCM's own log P(label | prompt) over a population: difficulty calibration, Watson
  et al. 2022, with the SCM as the perfect reference model). Units that render alike score
  alike, so each distinct (prompt, label) is run once and counted; the ROC is interpolated
  inside ties.

For each attack: the AUC and the TPR at each FPR in ``fprs`` (default 1% and 0.1%), with
stratified bootstrap CIs; every row names its attack. The verdict combines, for every attack:

* ``tpr_budget``: at each listed FPR, TPR at most ``max_tpr`` (pass: CI below; fail: CI above;
  straddling: inconclusive). An FPR the non-member count cannot resolve (fewer than 1 / FPR
  non-members) is inconclusive whatever the TPR: the number is not a TPR at that FPR;
* ``max_auc``: the AUC's CI inside [1 - max_auc, max_auc] (pass), outside (fail), else
  inconclusive;
* ``loss_tolerance``: the loss gap's CI (non-members minus members) inside ±it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from interp_audit.audit.context import AuditContext
from interp_audit.audit.registry import CheckKind, register_check
from interp_audit.audit.result import CheckResult
from interp_audit.audit.sections import CheckSpec, _Section
from interp_audit.core.errors import SpecError

Value = str | int | float
Attack = Literal["loss", "zlib", "min_k", "min_k_pp", "ref_ratio", "ref_diff", "calibrated"]
RECORD_SCORES = ("loss", "zlib", "min_k", "min_k_pp", "ref_ratio", "ref_diff")
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
    members: str | list[str] | None = None
    """A text file (or a list of files, read in order) of records that were in training, one
    per line."""
    non_members: str | list[str] | None = None
    """A text file (or a list of files) of records of the same form that were not (drawn by the
    same generator: unmatched non-members make any attack look strong), one per line. TPR at
    FPR a needs at least 1 / a of them."""
    units: TrainingUnits | None = None
    """Instead of files: training units of the spec's SCM against fresh units."""
    reference: str | None = None
    """A reference model that saw neither set (for a fine-tune: its base model): ``zoo:NAME``
    or a folder relative to the spec; enables the ``ref_ratio`` and ``ref_diff`` attacks."""
    scores: list[Attack] | None = Field(None, min_length=1)
    """Attacks to run. Records: loss, zlib, min_k, min_k_pp, ref_ratio, ref_diff (default: all;
    the ``ref_*`` ones only with ``reference``); units: loss, calibrated (default both)."""
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
        if self.units is not None and self.reference is not None:
            raise ValueError(
                "'reference' is for records; units are calibrated by the SCM itself "
                "(score 'calibrated')"
            )
        allowed = UNIT_SCORES if self.units is not None else RECORD_SCORES
        bad = [s for s in self.scores or () if s not in allowed]
        if bad:
            form = "units" if self.units is not None else "records"
            raise ValueError(f"score {bad[0]!r} is not one for {form}: {list(allowed)}")
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


def _records(ctx: AuditContext, names: str | list[str], key: str) -> list[str]:
    lines = []
    for name in [names] if isinstance(names, str) else names:
        path = ctx.file(name)
        if not path.exists():
            raise SpecError(f"membership {key} file {str(path)!r} does not exist")
        lines += [t.strip() for t in path.read_text().splitlines() if t.strip()]
    if len(lines) < 2:
        raise SpecError(f"membership {key} {names!r} needs at least 2 records")
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
        {s: scores[s] for s in wanted}, m_counts, n_counts, -lp_cell, fprs=chk.all_fprs(),
        **chk.resampling(ctx.seed).kw(),
    )  # fmt: skip
    desc = (
        f"{res.n_members} training units (seed {spec.training.seed}) vs {res.n_non_members} "
        f"fresh units (seed {spec.fresh.seed}), {len(cell_ids)} distinct (prompt, label) cells; "
        f"calibration: the SCM's P(label | prompt) over {ref_desc}"
        + (f" ({missing} cells' prompts absent there: P taken as 0.5)" if missing else "")
    )
    return res, desc, "nats/answer"


def _records_attack(chk: MembershipCheck, ctx: AuditContext):
    """(result, description, loss unit, the reference model's description): the records'
    attacks."""
    from interp_audit.methods.privacy.membership import membership

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
        **chk.resampling(ctx.seed).kw(),
    )
    ref = f" (reference {chk.reference})" if reference is not None else ""
    desc = f"{len(members)} members vs {len(non_members)} non-members{ref}"
    return res, desc, "nats/token", None if reference is None else reference.describe()


def _budget_verdict(t, max_tpr: float) -> str:
    if not t.resolvable:
        return "inconclusive"
    if t.hi <= max_tpr:
        return "pass"
    return "fail" if t.lo > max_tpr else "inconclusive"


def run(chk: MembershipCheck, ctx: AuditContext, name: str) -> CheckResult:
    from interp_audit.stats.bootstrap import combine

    if chk.units is not None:
        res, desc, unit = _units(chk, ctx, name)
        reference = None
    else:
        res, desc, unit, reference = _records_attack(chk, ctx)
    verdicts, details = [], []
    for attack, a in res.attacks.items():
        v, lo, hi = a.auc
        row: dict[str, Any] = {
            "score": attack,
            "attack": attack,
            "description": a.description,
            "auc": v,
            "ci": [lo, hi],
        }
        if chk.max_auc is not None:
            row["bounds"] = [1 - chk.max_auc, chk.max_auc]
            row["auc_verdict"] = _band(lo, hi, 1 - chk.max_auc, chk.max_auc)
            verdicts.append(row["auc_verdict"])
        row["tpr"] = [t.to_dict() for t in a.tpr]
        for b in chk.tpr_budget:
            t = a.tpr_at(b.fpr)
            verdict = _budget_verdict(t, b.max_tpr)
            row.setdefault("budgets", []).append(
                {"fpr": b.fpr, "max_tpr": b.max_tpr, "tpr": t.tpr, "ci": [t.lo, t.hi],
                 "verdict": verdict}
            )  # fmt: skip
            verdicts.append(verdict)
        outcomes = [row.get("auc_verdict", "pass")] + [
            b["verdict"] for b in row.get("budgets", [])
        ]
        row["verdict"] = combine(outcomes)  # the attack's: its AUC band and every TPR budget
        row["passed"] = row["verdict"] == "pass"
        details.append(row)
    gap, glo, ghi = res.loss_gap
    gap_row: dict[str, Any] = {
        "score": f"loss gap (invariance view, {unit})",
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
        matched = blo <= 0.5 <= bhi
        details.append(
            {"score": f"blind baseline: {bname}", "blind baseline": bname, "auc": bv,
             "ci": [blo, bhi], "matched": matched, "passed": matched}
        )  # fmt: skip
    stat, ci, threshold, headline, measure = _headline(chk, res)
    details.append(
        {
            "members": res.n_members,
            "non_members": res.n_non_members,
            "min_k": chk.min_k,
            "records": desc,
            "reference": reference,
            "fprs": chk.all_fprs(),
            "headline": measure,
        }
    )
    few = min(res.n_members, res.n_non_members) < chk.min_clusters
    verdict = "inconclusive" if few else combine(verdicts)
    reason = (
        f"fewer than {chk.min_clusters} members or non-members"
        if few
        else {"pass": "every attack within budget", "fail": "an attack exceeds its budget"}.get(
            verdict, "an interval straddles a bound, or an FPR is not resolvable"
        )
    )
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
        f"; TPR at FPR {unresolved[0].fpr:g} is not meaningful with {res.n_non_members} "
        f"non-members (needs >= {round(1 / unresolved[0].fpr)})"
        if unresolved
        else ""
    )
    msg = (
        f"membership inference over {desc}: {headline}; loss gap {gap:+.4f} "
        f"[{glo:+.4f}, {ghi:+.4f}] {unit}"
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
        clusters=min(res.n_members, res.n_non_members),
    )


def _headline(chk: MembershipCheck, res) -> tuple[float, tuple[float, float], float, str, str]:
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
        return t.tpr, (t.lo, t.hi), b.max_tpr, text, f"TPR at FPR {b.fpr:g}"
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
    return v, (lo, hi), chk.max_auc if chk.max_auc is not None else 0.5, text, "AUC"


def figure(c: CheckResult):
    """Per attack: AUC with its CI (green band = allowed) and TPR at each FPR with its CI
    (chance, TPR = FPR, dotted)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from interp_audit.audit.evidence import ScoreRow
    from interp_audit.audit.figures import COLORS, ci_error_bars, error_bars, short_layout

    rows = [r for r in c.evidence if isinstance(r, ScoreRow) and r.auc is not None]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("AUC", "TPR at low FPR"))
    fig.add_trace(
        go.Bar(
            x=[r.label for r in rows],
            y=[r.auc for r in rows],
            error_y=error_bars(rows),
            marker_color=[COLORS["measured"] if r.passed else COLORS["fail"] for r in rows],
            name="AUC",
        ),
        row=1,
        col=1,
    )
    bounds = next((r.bounds for r in rows if r.bounds is not None), None)
    if bounds:
        fig.add_hrect(y0=bounds[0], y1=bounds[1], fillcolor=COLORS["pass"], opacity=0.12,
                      line_width=0, row=1, col=1)  # fmt: skip
    attacks = [r for r in rows if "tpr" in r.extras()]
    fprs = sorted({t["fpr"] for r in attacks for t in r.extras()["tpr"]}, reverse=True)
    for f in fprs:
        ts = [next(t for t in r.extras()["tpr"] if t["fpr"] == f) for r in attacks]
        fig.add_trace(
            go.Bar(
                x=[r.label for r in attacks],
                y=[t["tpr"] for t in ts],
                error_y=ci_error_bars([t["tpr"] for t in ts], [t["ci"] for t in ts]),
                name=f"TPR @ FPR {f:g}" + ("" if all(t["resolvable"] for t in ts) else " (n/r)"),
            ),
            row=1,
            col=2,
        )
    fig.update_layout(barmode="group")
    fig.update_yaxes(range=[0, 1.05])
    pct = int(round(100 * c.confidence))
    return short_layout(fig, f"{c.name}: members vs non-members, {pct}% CI", height=340)


def _headline_measure(c: CheckResult) -> str:
    return next((d["headline"] for d in c.details if "headline" in d), "AUC")


def threshold(c: CheckResult) -> str:
    """How the summary reads the check's limit: the TPR budget it leads with, or the AUC's."""
    measure = _headline_measure(c)
    if measure == "AUC":
        return f"AUC ≤ {c.threshold:g}"
    return f"{measure} ≤ {c.threshold:g}"


def objective(c: CheckResult) -> dict[str, Any]:
    """Trade-off columns: the strongest attack's AUC (distance from 0.5) with its CI, and the
    largest TPR at the first reported FPR with its CI."""
    rows = [d for d in c.details if "auc" in d and "tpr" in d]
    if not rows:
        return {}
    strongest = max(rows, key=lambda d: max(abs(d["ci"][0] - 0.5), abs(d["ci"][1] - 0.5)))
    out: dict[str, Any] = {
        "privacy (membership AUC)": strongest["auc"],
        "privacy (membership AUC) CI": list(strongest["ci"]),
    }
    fpr = rows[0]["tpr"][0]["fpr"]
    worst = max((t for d in rows for t in d["tpr"] if t["fpr"] == fpr), key=lambda t: t["tpr"])
    out[f"privacy (TPR at FPR {fpr:g})"] = worst["tpr"]
    out[f"privacy (TPR at FPR {fpr:g}) CI"] = list(worst["ci"])
    return out


register_check(
    CheckKind(
        "membership",
        MembershipCheck,
        run,
        "membership inference (records: loss, zlib, min-k%, min-k%++, reference-model "
        "ratio/difference; SCM training units: loss, calibrated): AUC and TPR at low FPR of "
        "members vs non-members within budget",
        figure=figure,
        threshold=threshold,
        objective=("privacy (membership AUC)", "down"),
        objective_columns=objective,
    )
)
