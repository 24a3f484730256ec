"""``repair(spec, check, out)``: ship an intervention check's repair and audit what shipped.

The check's ablation is folded into the weights (:func:`interp_audit.engine.repairs.repaired`),
the repaired model is written to ``out/model`` (a Hugging Face folder that plain
``transformers`` loads, for models read from one; else the project's format), loaded back from
disk, and the whole spec runs again on it. What a reviewer needs side by side:

* every check's verdict before and after;
* what the repair costs each group of the check's utility set (paired: same prompts);
* every causal path's effect before and after, and which admissible paths it damaged;
* decisions before and after (:mod:`interp_audit.audit.decision_change`): the spec's
  ``flip_rate`` and ``group_parity`` checks (or, without them, the flip rate on the check's own
  contrast and the outcome-rate gap between its utility set's groups), each value with its CI,
  the paired change with its CI, and whether the check's verdict changed.

``out/before/`` holds the audit of the model as it was; ``out/report.json`` (+ ``.html``) the
audit of ``out/model`` with the repair record in ``provenance.repair``; ``interp-audit verify
out`` re-checks the weights' hash against the record and re-runs the audit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp_audit.audit.causal_measure import path_rows
from interp_audit.audit.causal_run import load_causal
from interp_audit.audit.context import AuditContext
from interp_audit.audit.decision_change import (
    FlipProbe,
    GapProbe,
    Shift,
    answer_rule,
    flip_probe_of_check,
    gap_probe_of_check,
    groups_gap_probe,
    measure_shifts,
    positive_answer,
)
from interp_audit.audit.measure import (
    ablated_components,
    clusters_of,
    cost_rows,
    groups_of,
    pair_effects,
    utility_drop,
    utility_values,
)
from interp_audit.audit.run import AuditReport, audit, build_context, load_subject
from interp_audit.audit.spec import load_spec
from interp_audit.core.errors import AuditError, SpecError
from interp_audit.engine.repairs import FoldRefused, fold_refusal, repaired
from interp_audit.methods.locate.patching import flat_effects_as_raw
from interp_audit.model.subject import Subject
from interp_audit.stats.bootstrap import band_verdict, interval_row, mean_ci

__all__ = ["COMPARISONS", "RepairOutcome", "register_comparison", "repair"]

MODEL_FOLDER = "model"


@dataclass(frozen=True)
class Comparison:
    """What a before/after comparison of the repair report sees."""

    check: Any
    """The intervention check whose repair shipped (its spec section)."""
    name: str
    """Its name."""
    spec: Any
    """The whole parsed spec."""
    context: AuditContext
    """The audit context of the model as given (its contrasts, metric, causal model)."""
    fixed: Subject
    """The repaired model, loaded back from disk."""
    kw: dict[str, Any]
    """The check's bootstrap settings (``n_boot``, ``confidence``, ``seed``)."""
    before: AuditReport
    """The audit of the model as given."""
    after: AuditReport
    """The audit of the repaired model."""


#: Before/after comparisons of the repair report, each ``fn(Comparison) -> section | None`` (a
#: section: ``{"title", "columns", "rows", "note"}``, plus any machine-readable keys such as
#: ``"data"``), rendered under the verdicts and kept in ``provenance.repair.comparisons``.
#: The decisions (flip rates and group outcome-rate gaps before and after) are one.
COMPARISONS: list[Callable[[Comparison], dict[str, Any] | None]] = []


def register_comparison(fn: Callable[[Comparison], dict[str, Any] | None]):
    """Add a before/after comparison to every repair report (see :data:`COMPARISONS`)."""
    COMPARISONS.append(fn)
    return fn


@dataclass
class RepairOutcome:
    """The audit of the shipped model, of the model before, and the comparison."""

    before: AuditReport
    after: AuditReport
    model: Path
    record: dict[str, Any]
    costs: list[dict[str, Any]] = field(default_factory=list)
    paths: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    comparisons: list[dict[str, Any]] = field(default_factory=list)

    @property
    def decisions(self) -> list[dict[str, Any]]:
        """The decision rows: each flip rate and outcome-rate gap before and after, with CIs,
        the paired change and the check's verdicts (empty when nothing measured them)."""
        return [
            r for sec in self.comparisons if sec.get("kind") == "decisions" for r in sec["data"]
        ]

    @property
    def verdict(self):
        return self.after.verdict

    @property
    def damaged(self) -> list[str]:
        """Admissible paths whose effect the repair moved out of tolerance (or may have)."""
        return [r["path"] for r in self.paths if r.get("damaged")]

    def __repr__(self) -> str:
        lines = [
            f"RepairOutcome({self.record['repair']['kind']} of "
            f"{', '.join(self.record['repair']['components'])} -> {self.model}): "
            f"before {self.before.verdict.upper()}, after {self.after.verdict.upper()}"
        ]
        before = {c.name: c for c in self.before.checks}
        for c in self.after.checks:
            b = before.get(c.name)
            lines.append(f"  {c.name}: {b.verdict if b else '-'} -> {c.verdict}")
        if self.damaged:
            lines.append(f"  admissible paths damaged: {', '.join(self.damaged)}")
        return "\n".join(lines)


def _intervention_check(parsed, name: str):
    checks = dict(zip(parsed.check_names(), parsed.checks, strict=True))
    foldable = [n for n, c in checks.items() if getattr(c, "ablate", None) is not None]
    if name not in checks:
        raise SpecError(
            f"no check {name!r} in the spec; checks with an ablation to fold: {foldable}"
        )
    chk = checks[name]
    if getattr(chk, "ablate", None) is None or chk.kind != "intervention":
        raise SpecError(
            f"check {name!r} is a {chk.kind} check: repair folds the ablation of an "
            f"intervention check ({foldable or 'none in this spec'})"
        )
    return chk


def _refuse(subject: Subject, chk, comps: list[str], name: str) -> None:
    a = chk.ablate
    if a.kind in ("embedding", "clamp", "rank_one"):
        raise FoldRefused(
            comps[0] if comps else name,
            f"ablate kind {a.kind!r} has no weight fold here (zero, mean and erase do)",
        )
    refused = fold_refusal(
        subject,
        comps,
        a.kind,
        per_position=a.per_position if a.per_position is not None else "auto",
        sae=a.sae is not None,
        erase_at=a.erase_at,
    )
    if refused is not None:
        if "per-position mean" in refused.reason:
            refused.args = (
                f"{refused.args[0]} (in check {name!r}: set ablate.per_position: false, so the "
                "check measures the token mean the weights will carry)",
            )
        raise refused


def _model_folder(out: Path) -> Path:
    """``out/model``, emptied when an earlier repair wrote it; another folder there is refused
    (nothing of the user's is deleted)."""
    import json
    import shutil

    folder = out / MODEL_FOLDER
    (out / "report.json").unlink(missing_ok=True)  # the run folder is incomplete from here on
    if not folder.exists():
        return folder
    ours = (folder / "repair.json").is_file()
    cfg = folder / "config.json"
    if not ours and cfg.is_file():
        try:
            ours = "repair" in json.loads(cfg.read_text())
        except (ValueError, UnicodeDecodeError):
            ours = False
    if not ours and any(folder.iterdir()):
        raise AuditError(
            f"{str(folder)!r} exists and holds no repaired model written by interp-audit repair; "
            "give another --out or move that folder"
        )
    shutil.rmtree(folder)
    return folder


def _export(fixed: Subject, folder: Path, notes: list[str]) -> str:
    from interp_audit.model.adapters.hf_export import ExportRefused

    if (fixed.origin or {}).get("format") == "hf":
        try:
            fixed.save(folder, format="hf")
            return "hf"
        except ExportRefused as err:
            notes.append(f"written in the project's format, not as a Hugging Face folder: {err}")
    fixed.save(folder)
    return "interp_audit"


def _costs(chk, before: AuditContext, fixed: Subject, kw: dict) -> list[dict[str, Any]]:
    """The check's utility per group on the same prompts, before and after (paired)."""
    if chk.utility.contrast is None:
        return []
    cs = before.contrasts[chk.utility.contrast]
    metric = chk.utility.metric
    u0 = utility_values(before.subject, cs, metric)
    u1 = utility_values(fixed, cs, metric)
    parts = [("all", None)] + sorted(groups_of(cs).items())
    return cost_rows(chk, cs, parts, utility_drop(u0, u1, metric), u0, u1, kw)


def _paths(chk, before: AuditContext, fixed: Subject, seed: int, kw: dict) -> list[dict]:
    """Every causal path of the audited sources: effect before and after (the same units),
    with the change's CI; an admissible path is damaged unless its change is inside the
    tolerance (``preserve.tolerance``, else the check's)."""
    cm = before.causal.model if before.causal is not None else None
    if cm is None:
        return []
    pres = chk.preserve
    tol = pres.tolerance if pres is not None else chk.tolerance
    n = pres.n if pres is not None else 200
    seed = pres.seed if pres is not None else seed
    sources = pres.source if pres is not None and pres.source is not None else None
    sources = [sources] if isinstance(sources, str) else sources or list(cm.interventions)
    rows = []
    for src in sources:
        for r in path_rows(before, src, cm.graph.paths(src), n=n, seed=seed, kw=kw):
            row = {"source": src, "path": r["path"], "role": r["role"], "before": r["effect"]}
            cs = r.get("_contrast")
            if cs is None:
                rows.append({**row, "after": 0.0, "note": r.get("note")})
                continue
            c, f = pair_effects(fixed, cs, before.metric)
            change = mean_ci((c - f) - r["_pairs"], clusters_of(cs), **kw)
            v, why = band_verdict(change, tol, min_clusters=chk.min_clusters)
            rows.append(
                {
                    **row,
                    "after": float((c - f).mean()),
                    "change": change.point,
                    **interval_row(change),
                    "tolerance": tol,
                    "n": len(cs),
                    "verdict": v if r["role"] == "admissible" else "",
                    "reason": why if r["role"] == "admissible" else "",
                    "damaged": r["role"] == "admissible" and v != "pass",
                }
            )
    return rows


def _fmt(v: Any, ci: list[float] | None = None) -> str:
    if not isinstance(v, int | float):
        return "" if v is None else str(v)
    return f"{v:+.4f}" + (f" [{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else "")


def _stat(c) -> str:
    """A check's statistic with its CI, or "(exact)" where it has no sampling interval."""
    return _fmt(c.statistic) + " (exact)" if c.exact else _fmt(c.statistic, list(c.ci))


def _sections(out: RepairOutcome, name: str) -> list[dict[str, Any]]:
    rec = out.record
    rep = rec["repair"]
    export = rec.get("export", {})
    summary = [
        ["check", name],
        ["repair", f"{rep['kind']} of {', '.join(rep['components'])}"],
        ["folded into", ", ".join(rec.get("changed_parameters", {})) or "nothing changed"],
        ["model folder", f"{MODEL_FOLDER}/ ({out.after.provenance['repair']['format']})"],
        ["source weights sha256", rec["source"]["state_sha256"]],
        ["repaired weights sha256", rec["weights_sha256"]],
        ["exported files sha256", export.get("weights_sha256", "the project's format")],
        [
            "config changes",
            "; ".join(f"{k}: {v}" for k, v in export.get("config_changes", {}).items()) or "none",
        ],
        ["notes", " | ".join(out.notes) or "none"],
    ]
    before = {c.name: c for c in out.before.checks}
    verdicts = []
    for c in out.after.checks:
        b = before.get(c.name)
        verdicts.append(
            [
                c.name,
                c.kind,
                b.verdict if b else "",
                _stat(b) if b else "",
                c.verdict,
                _stat(c),
            ]
        )
    sections = [
        {
            "title": "Repair shipped",
            "columns": ["", ""],
            "rows": summary,
            "note": "The repaired model was written to disk, loaded back and audited from there; "
            "`interp-audit verify` checks its weights against this record.",
        },
        {
            "title": "Verdicts before and after the repair",
            "columns": ["check", "kind", "before", "statistic [CI]", "after", "statistic [CI]"],
            "rows": verdicts,
            "note": "Before: the model as given; after: the repaired model loaded from disk "
            "(the intervention checks re-apply their ablation on top of it).",
        },
    ]
    if out.costs:
        sections.append(
            {
                "title": "What the repair costs, per group",
                "columns": ["group", "n", "before", "after", "cost [CI]", "budget", "verdict"],
                "rows": [
                    [
                        r["group"],
                        r["n"],
                        _fmt(r["before"]),
                        _fmt(r["after"]),
                        _fmt(r["cost"], r["ci"]),
                        r["budget"],
                        r["verdict"],
                    ]
                    for r in out.costs
                ],  # fmt: skip
                "note": "The check's utility on the same prompts, original vs repaired "
                "(paired bootstrap CI; a cost is a drop in utility).",
            }
        )
    if out.paths:
        sections.append(
            {
                "title": "Causal paths before and after (damaged admissible paths flagged)",
                "columns": ["path", "role", "before", "after", "change [CI]", "verdict", "damaged"],
                "rows": [
                    [
                        r["path"],
                        r["role"],
                        _fmt(r["before"]),
                        _fmt(r.get("after")),
                        _fmt(r.get("change"), r.get("ci")),
                        r.get("verdict", ""),
                        "DAMAGED" if r.get("damaged") else "",
                    ]
                    for r in out.paths
                ],  # fmt: skip
                "note": "Effects on the same units before and after; an admissible path is "
                "damaged unless its change lies inside the tolerance.",
            }
        )
    return sections


def repair(
    spec,
    check: str,
    out: str | Path,
    *,
    device: str | None = None,
    command: str | None = None,
) -> RepairOutcome:
    """Fold ``check``'s ablation into the weights, write ``out/model``, re-audit it from disk.

    Refused (:class:`~interp_audit.engine.repairs.FoldRefused`, an AuditError naming the first
    component that cannot be folded and why) before anything is written when the ablation
    cannot be carried by weights. Writes ``out/before/``, ``out/model/``, ``out/report.json``
    and ``out/report.html``.
    """
    from interp_audit.core.files import check_output_folder
    from interp_audit.model.loading import load_model

    out = check_output_folder(out, "output folder")
    parsed, base = load_spec(spec)
    chk = _intervention_check(parsed, check)
    source, subject = load_subject(parsed, base, device)
    if chk.ablate.components and not chk.ablate.from_locate:
        _refuse(subject, chk, list(chk.ablate.components), check)  # before any audit runs
    model_dir = _model_folder(out)
    before = audit(spec, subject=subject, base=base)
    comps = ablated_components(chk.ablate, before.effects)
    _refuse(subject, chk, comps, check)
    ctx = build_context(parsed, base, subject, load_causal(parsed.causal, base), locate=False)
    a = chk.ablate
    reference = ctx.contrasts[a.reference] if a.reference else None
    fixed = repaired(
        subject,
        comps,
        kind=a.kind,
        reference=reference,
        per_position=False,
        concept=a.concept,
        erase_at=a.erase_at,
    )
    fixed.repair["repair"]["reference"] = {
        **(fixed.repair["repair"]["reference"] or {}),
        "contrast": a.reference,
    }
    fixed.repair["repair"]["check"] = check
    notes: list[str] = []
    if before.checks and {c.name: c for c in before.checks}[check].verdict != "pass":
        notes.append(
            f"check {check!r} did not pass on the model as given "
            f"({ {c.name: c for c in before.checks}[check].verdict }): the repair ships anyway"
        )
    fmt = _export(fixed, model_dir, notes)
    loaded = load_model(
        model_dir,
        device=device or parsed.model.device,
        dtype=parsed.model.dtype,
        **parsed.model.weight_processing,
    )
    if loaded.repair is None:
        raise AuditError(f"{model_dir} lost its repair record on the way to disk")
    with flat_effects_as_raw():  # a path the repair removed has nothing to normalise
        after = audit(spec, subject=loaded, base=base)
    kw = chk.resampling(parsed.seed).kw()
    costs = _costs(chk, ctx, loaded, kw)
    paths = _paths(chk, ctx, loaded, parsed.seed, kw)
    outcome = RepairOutcome(before, after, model_dir, loaded.repair, costs, paths, notes)
    seen = Comparison(chk, check, parsed, ctx, loaded, kw, before, after)
    extra = [sec for fn in COMPARISONS if (sec := fn(seen)) is not None]
    outcome.comparisons = extra
    after.provenance["repair"] = {
        "check": check,
        "model": MODEL_FOLDER,
        "format": fmt,
        "record": loaded.repair,
        "source_model": source,
        "before": {
            "verdict": before.verdict,
            "checks": [
                {"name": c.name, "verdict": c.verdict, "statistic": c.statistic, "ci": list(c.ci)}
                for c in before.checks
            ],
        },
        "costs": costs,
        "paths": paths,
        "damaged_admissible_paths": outcome.damaged,
        "comparisons": extra,
        "notes": notes,
    }
    if command:
        after.provenance["command"] = command
    after.sections = _sections(outcome, check) + extra
    before.save(out / "before")
    after.save(out)
    return outcome


# ---- decisions before and after --------------------------------------------------------------


def _verdict_change(cmp: Comparison, name: str) -> dict[str, Any]:
    b = {c.name: c for c in cmp.before.checks}.get(name)
    a = {c.name: c for c in cmp.after.checks}.get(name)
    if b is None or a is None:
        return {}
    return {
        "verdict before": b.verdict,
        "verdict after": a.verdict,
        "verdict changed": b.verdict != a.verdict,
    }


def _probes(cmp: Comparison) -> tuple[list[tuple[str, str, Any, dict]], list[str]]:
    """(check name or '', kind, probe, bootstrap kw) for every decision measurement, and notes."""
    ctx, parsed, chk = cmp.context, cmp.spec, cmp.check
    out: list[tuple[str, str, Any, dict]] = []
    notes: list[str] = []
    for name, c in zip(parsed.check_names(), parsed.checks, strict=True):
        if c.kind == "flip_rate":
            out.append(
                (name, c.kind, flip_probe_of_check(c, ctx, name), c.resampling(parsed.seed).kw())
            )
        elif c.kind == "group_parity":
            out.append(
                (name, c.kind, gap_probe_of_check(c, ctx, name), c.resampling(parsed.seed).kw())
            )
    if not any(kind == "flip_rate" for _, kind, _, _ in out):
        cs = ctx.contrasts[chk.contrast]
        if cs.answers is None:
            notes.append(
                f"no flip rate: contrast {chk.contrast!r} has no answers to decide between"
            )
        else:
            pos = positive_answer(ctx, cs) or (None, None)
            probe = FlipProbe(
                f"contrast {chk.contrast}", cs, answer_rule(*pos), per_group=bool(cs.groups),
                effect_metric=ctx.metric,
            )  # fmt: skip
            out.append(("", "flip_rate", probe, cmp.kw))
    if not any(kind == "group_parity" for _, kind, _, _ in out) and chk.utility.contrast:
        cs = ctx.contrasts[chk.utility.contrast]
        pos = positive_answer(ctx, cs)
        probe = None
        if pos is not None:
            probe = groups_gap_probe(
                f"contrast {chk.utility.contrast}", cs, pos[0], pos[1],
                attribute=f"groups of {chk.utility.contrast}",
            )  # fmt: skip
        if probe is None:
            notes.append(
                f"no outcome-rate gap: the utility set {chk.utility.contrast!r} has no two groups "
                "or no positive answer to count"
            )
        else:
            out.append(("", "group_parity", probe, cmp.kw))
    return out, notes


def _cell(point: float, ci: list[float], signed: bool = False) -> str:
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"{f.format(point)} [{f.format(ci[0])}, {f.format(ci[1])}]"


def decision_comparison(cmp: Comparison) -> dict[str, Any] | None:
    """Flip rates and group outcome-rate gaps before and after the repair, paired."""
    probes, notes = _probes(cmp)
    if not probes:
        return None
    data: list[dict[str, Any]] = []
    rules = []
    for name, kind, probe, kw in probes:
        v0, v1 = probe.values(cmp.context.subject), probe.values(cmp.fixed)
        shifts = decision_shifts(probe, v0, v1, kw)
        verdicts = _verdict_change(cmp, name) if name else {}
        rules.append(f"{name or probe.name}: {probe.rule.text}")
        ends = (probe.extremes(v0), probe.extremes(v1)) if isinstance(probe, GapProbe) else None
        for i, sh in enumerate(shifts):
            row = {"check": name or None, "kind": kind, "source": probe.name, **sh.row()}
            key = (row["measure"], row.get("attribute"))
            if ends is not None and key in ends[0]:
                row["highest, lowest before"] = list(ends[0][key])
                row["highest, lowest after"] = list(ends[1][key])
            if i == 0:
                row.update(verdicts)
            data.append(row)
    rows = []
    for r in data:
        signed = r["measure"].startswith("mean effect")
        over = r.get("group") or r.get("attribute") or ""
        if "highest, lowest after" in r:
            hi, lo = r["highest, lowest after"]
            over += (
                " (after: every group alike)"
                if hi is None
                else f" (after: {hi} highest, {lo} lowest)"
            )
        verdict = f"{r['verdict before']} -> {r['verdict after']}" if "verdict before" in r else ""
        rows.append(
            [
                r["check"] or f"({r['source']}, no {r['kind']} check)",
                r["measure"],
                over,
                r.get("n", ""),
                _cell(r["before"], r["before ci"], signed),
                _cell(r["after"], r["after ci"], signed),
                _cell(r["change"], r["change ci"], True),
                verdict + (" (changed)" if r.get("verdict changed") else ""),
            ]
        )
    note = (
        "Decisions of the model as given and of the repaired model on the same units: flip rate "
        "= share of pairs whose decision changes under the swap; a gap = the highest group's "
        "positive-decision rate minus the lowest's. Change = after - before, its CI from one "
        "cluster bootstrap of the same units (paired). Decisions: " + "; ".join(rules) + "."
    )
    if notes:
        note += " " + " ".join(notes)
    return {
        "title": "Decisions before and after the repair",
        "kind": "decisions",
        "columns": ["check", "measure", "over", "n", "before [CI]", "after [CI]", "change [CI]",
                    "verdict"],
        "rows": rows,
        "note": note,
        "data": data,
    }  # fmt: skip


def decision_shifts(probe, before, after, kw: dict[str, Any]) -> list[Shift]:
    """A probe's measures before and after on the same units (paired)."""
    return measure_shifts(probe.parts(), before, after, kw, paired=True)


register_comparison(decision_comparison)
