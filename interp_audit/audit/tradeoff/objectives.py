"""What the trade-off measures on each repaired model, and the row it makes of it.

Every path from each audited source gets a path-specific contrast (conditional on the rendered
input changing; a path no unit's input changes along has effect 0 exactly). The repair's
*target* sources are the objective it repairs; the others' inadmissible paths are the other
objectives (E's spurious path while repairing A) with the spec's re-measurable checks
(invariance, memorization exposure, ...): does repairing one objective break another?
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from interp_audit.audit.context import AuditContext
from interp_audit.audit.decision_change import (
    FlipProbe,
    GapProbe,
    Shift,
    largest,
    probe_shifts,
    zero_shift,
)
from interp_audit.audit.measure import clusters_of, groups_of, pair_effects, utility_values
from interp_audit.audit.result import CheckResult
from interp_audit.causal.graph import format_path
from interp_audit.core.errors import EmptyPathError
from interp_audit.engine.contrasts import ContrastSet
from interp_audit.stats.bootstrap import (
    cluster_bootstrap,
    cluster_bootstrap_columns,
    mean_ci,
    percentile_ci,
)

__all__ = [
    "DecisionProbes",
    "Measurement",
    "PathInfo",
    "Utility",
    "decision_columns",
    "draw_paths",
    "measure",
    "objective_columns",
    "row_of",
]

VERDICT_RANK = {"fail": 0, "inconclusive": 1, "pass": 2}


@dataclass(frozen=True)
class PathInfo:
    path: str
    source: str
    role: str  # "admissible" | "inadmissible"
    target: bool  # a path of a source the repair targets


@dataclass(frozen=True)
class Utility:
    """What "utility" means in the table: accuracy on a labelled contrast's clean prompts (one
    0/1 value per pair; higher is better), or per-token perplexity of held-out text (one row
    per line: its summed negative log-likelihood and token count; lower is better)."""

    name: str
    kind: str  # "accuracy" | "perplexity"
    contrast: ContrastSet | None = None
    texts: tuple[str, ...] = ()

    @property
    def higher_is_better(self) -> bool:
        return self.kind == "accuracy"

    def values(self, ctx: AuditContext, contrast: ContrastSet | None = None) -> Tensor:
        if self.kind == "accuracy":
            return utility_values(ctx.subject, contrast or self.contrast, "accuracy")
        from interp_audit.methods.privacy.memorization import token_logprobs

        lps = token_logprobs(ctx.subject, list(self.texts))
        return torch.tensor([[float(-lp.sum()), float(len(lp))] for lp in lps], dtype=torch.float64)

    def interval(self, v: Tensor, clusters, kw) -> tuple[float, list[float]]:
        """The level with its CI: a mean, or exp(summed NLL / tokens) under line resampling."""
        if self.kind == "accuracy":
            iv = mean_ci(v, clusters, **kw)
        else:
            iv = cluster_bootstrap(
                lambda w: torch.exp((w @ v[:, 0]) / (w @ v[:, 1])), None, len(v), **kw
            )
        return iv.point, [iv.lo, iv.hi]

    def worst_group(
        self, v: Tensor, groups: dict[str, Tensor], clusters, kw
    ) -> tuple[str, float, list[float]]:
        """The group with the worst accuracy and the CI of the *worst* group's accuracy: one
        cluster bootstrap of the whole set, the minimum over groups per draw."""
        names = list(groups)
        member = torch.zeros(len(v), len(names), dtype=torch.float64)
        for j, g in enumerate(names):
            member[groups[g], j] = 1.0
        vals = v.double()

        def per_group(w):  # [draw, pair] -> [draw, group]
            den = w @ member
            return torch.where(den > 0, (w * vals) @ member / den.clamp(min=1e-12), torch.nan)

        ivs = cluster_bootstrap_columns(per_group, clusters, len(v), **kw)
        j = min(range(len(names)), key=lambda i: ivs[i].point)
        draws = torch.stack([iv.samples for iv in ivs], 1).nan_to_num(nan=float("inf"))
        return names[j], ivs[j].point, _quantiles(draws.min(1).values, kw)

    def cost(self, before: Tensor, after: Tensor, clusters, kw) -> tuple[float, list[float]]:
        """Paired cost: accuracy lost, or the relative rise in perplexity."""
        if self.kind == "accuracy":
            return _mean_diff(before, after, clusters, kw)

        def rise(w):
            ppl0 = torch.exp((w @ before[:, 0]) / (w @ before[:, 1]))
            ppl1 = torch.exp((w @ after[:, 0]) / (w @ after[:, 1]))
            return ppl1 / ppl0 - 1

        iv = cluster_bootstrap(rise, None, len(before), **kw)
        return iv.point, [iv.lo, iv.hi]


@dataclass(frozen=True)
class DecisionProbes:
    """What the decision columns measure on each model: flips per pair on the objective's
    inadmissible paths (by path; None: no unit's input changes along it, so nothing flips) or,
    without a graph, on the spec's flip_rate checks' contrasts (by check), and group outcome
    rates (by the spec's group_parity check, else on the utility set's groups)."""

    flips: dict[str, FlipProbe | None] = field(default_factory=dict)
    gaps: dict[str, GapProbe] = field(default_factory=dict)


@dataclass
class Measurement:
    """One model's (or repaired model's) numbers: per-pair path effects (None: no unit's input
    changes along the path, effect 0 exactly), per-pair utility, re-run checks, and per-unit
    decisions (flips, positive outcomes) with the probes that read them."""

    effects: dict[str, Tensor | None]
    clusters: dict[str, list[str] | None]
    units: dict[str, tuple[str, ...] | None]  # which SCM units each path's pairs are
    utility: Tensor
    checks: dict[str, CheckResult]
    flips: dict[str, tuple[FlipProbe, Tensor] | None] = field(default_factory=dict)
    gaps: dict[str, tuple[GapProbe, Tensor]] = field(default_factory=dict)

    def same_units(self, other: Measurement, path: str) -> bool:
        """Whether this path's pairs are the other's units, in order (then paired CIs)."""
        a, b = self.units[path], other.units[path]
        return (
            a is not None
            and a == b
            and self.clusters[path] == other.clusters[path]
            and len(self.effects[path]) == len(other.effects[path])
        )


def draw_paths(
    ctx: AuditContext, sources: list[str], *, n: int, seed: int
) -> dict[str, ContrastSet | None]:
    """Each path's contrast in ``ctx`` (drawn once; None when no unit's input changes)."""
    cm = ctx.causal.model
    out: dict[str, ContrastSet | None] = {}
    for src in sources:
        for path in cm.graph.paths(src):
            try:
                out[format_path(path)] = ctx.causal.path_contrast(src, path, n=n, seed=seed)
            except EmptyPathError:
                out[format_path(path)] = None
    return out


def measure(
    ctx: AuditContext,
    paths: dict[str, ContrastSet | None],
    utility: Utility,
    checks: list[tuple[str, Any, Any]],
    utility_contrast: ContrastSet | None = None,
    probes: DecisionProbes | None = None,
) -> Measurement:
    """Forward passes on ``ctx.subject`` as it is now (hooks of a repair attached)."""
    effects: dict[str, Tensor | None] = {}
    clusters: dict[str, list[str] | None] = {}
    units: dict[str, tuple[str, ...] | None] = {}
    for p, cs in paths.items():
        if cs is None:
            effects[p], clusters[p], units[p] = None, None, None
            continue
        clean, cf = pair_effects(ctx.subject, cs, ctx.metric)
        effects[p], clusters[p] = (clean - cf).double(), clusters_of(cs)
        units[p] = tuple(cs.meta.get("units", ())) or None
    util = utility.values(ctx, utility_contrast)
    results = {name: kind.run(chk, ctx, name) for name, chk, kind in checks}
    probes = probes or DecisionProbes()
    flips = {k: None if p is None else (p, p.values(ctx.subject)) for k, p in probes.flips.items()}
    gaps = {k: (p, p.values(ctx.subject)) for k, p in probes.gaps.items()}
    return Measurement(effects, clusters, units, util, results, flips, gaps)


def decision_columns(m: Measurement, base: Measurement, kw: dict[str, Any]) -> dict[str, Any]:
    """The decision columns of a row: each probed flip rate, the largest (its CI: of the maximum
    per draw), its change from the unrepaired model, and the largest outcome-rate gap between
    groups with its change; changes paired where the units match (``... paired``)."""
    out: dict[str, Any] = {}
    conf = kw["confidence"]
    flips: list[tuple[str, Shift]] = []
    for key in dict.fromkeys([*base.flips, *m.flips]):
        b, a = base.flips.get(key), m.flips.get(key)
        sh = (
            zero_shift({"measure": "flip rate", "group": "all"}, kw)
            if a is None and b is None
            else probe_shifts(b, a, kw)[0]  # the first column: the flip rate over all pairs
        )
        out[f"{key} flip rate"] = sh.after.point
        out[f"{key} flip rate CI"] = [sh.after.lo, sh.after.hi]
        flips.append((key, sh))
    if flips:
        i, top = largest([sh for _, sh in flips], conf)
        out["flip rate"], out["flip rate CI"] = top.after.point, [top.after.lo, top.after.hi]
        out["flip rate on"] = flips[i][0]
        out["flip rate change"] = top.change.point
        out["flip rate change CI"] = [top.change.lo, top.change.hi]
        out["flip rate paired"] = top.paired
    gaps: list[tuple[str, Shift]] = []
    for key in dict.fromkeys([*base.gaps, *m.gaps]):
        b, a = base.gaps.get(key), m.gaps.get(key)
        if a is None or b is None:
            continue
        shifts = [
            s
            for s in probe_shifts(b, a, kw)
            if s.fields["measure"].endswith("demographic parity gap")
        ]
        gaps.append((key, shifts[-1]))  # the largest over attributes, or the only one
    if gaps:
        i, top = largest([sh for _, sh in gaps], conf)
        probe, values = m.gaps[gaps[i][0]]
        attr, hi, lo = probe.widest(values)
        out["outcome-rate gap"] = top.after.point
        out["outcome-rate gap CI"] = [top.after.lo, top.after.hi]
        over = "every group alike" if hi is None else f"{hi} vs {lo}"
        out["outcome-rate gap over"] = over if attr.startswith("groups of") else f"{attr}: {over}"
        out["outcome-rate gap change"] = top.change.point
        out["outcome-rate gap change CI"] = [top.change.lo, top.change.hi]
        out["outcome-rate gap paired"] = top.paired
    return out


def _abs_ci(lo: float, hi: float) -> list[float]:
    """The CI of |effect| from the CI of the effect."""
    if lo <= 0.0 <= hi:
        return [0.0, abs(max(-lo, hi))]  # abs: no -0.0
    return sorted([abs(lo), abs(hi)])


def _two_means(after, before, ca, cb, paired, kw, combine) -> tuple[float, list[float]]:
    """``combine(mean after, mean before)`` with its CI: paired (one cluster bootstrap of the
    same units) when ``paired``, else from independent draws of each mean."""
    if paired:
        iv = cluster_bootstrap(
            lambda w: combine((w @ after) / w.sum(1), (w @ before) / w.sum(1)), ca, len(after), **kw
        )
        return iv.point, [iv.lo, iv.hi]
    a = mean_ci(after, ca, **kw)
    b = mean_ci(before, cb, **{**kw, "seed": kw["seed"] + 1})
    lo, hi = _quantiles(combine(a.samples, b.samples), kw)
    point = combine(torch.tensor([a.point]), torch.tensor([b.point]))
    return float(point[0]), [lo, hi]


def _ratio(m: Measurement, base: Measurement, path: str, kw) -> tuple[float, list[float]] | None:
    """after / before of a path's mean effect. None when the unrepaired model carries
    (almost) nothing on it, so nothing can be kept; 0 exactly when the repaired model's input
    no longer changes along it."""
    after, before = m.effects[path], base.effects[path]
    if before is None or abs(float(before.mean())) < 1e-6:
        return None
    if after is None:
        return 0.0, [0.0, 0.0]
    paired = m.same_units(base, path)
    point, ci = _two_means(
        after, before, m.clusters[path], base.clusters[path], paired, kw, lambda a, b: a / b
    )
    if not all(math.isfinite(x) for x in (point, *ci)):
        return None
    return point, ci


def _abs_change(m: Measurement, base: Measurement, path: str, kw) -> tuple[float, list[float]]:
    """|mean after| - |mean before| of one path (a path with no changed unit has mean 0)."""
    zero = torch.zeros(1, dtype=torch.float64)
    after, before = m.effects[path], base.effects[path]
    paired = after is not None and before is not None and m.same_units(base, path)
    return _two_means(
        after if after is not None else zero,
        before if before is not None else zero,
        m.clusters[path] if after is not None else None,
        base.clusters[path] if before is not None else None,
        paired or (after is None and before is None),
        kw,
        lambda x, y: x.abs() - y.abs(),
    )


def _mean_diff(a: Tensor, b: Tensor, clusters, kw) -> tuple[float, list[float]]:
    """mean(a - b): paired when both hold the same units (the utility set always does)."""
    iv = mean_ci(a - b, clusters, **kw)
    return iv.point, [iv.lo, iv.hi]


def _quantiles(draws: Tensor, kw: dict[str, Any]) -> list[float]:
    return percentile_ci(draws, kw["confidence"]).tolist()


def _worst_abs(
    rows: list[tuple[str, float, list[float], Tensor | None]], kw: dict[str, Any]
) -> tuple[str, float, list[float]]:
    """The path with the largest |effect|, and the CI of the *largest* |effect| (not of that
    path's alone): per bootstrap draw, the max over paths of |draw| (each path's draws come from
    the same seeded resampling; a path no unit's input changes along is 0 in every draw)."""
    path, point, (lo, hi), _ = max(rows, key=lambda r: abs(r[1]))
    drawn = [r[3] for r in rows if r[3] is not None]
    if not drawn:
        return path, abs(point), _abs_ci(lo, hi)
    largest = torch.stack([d.abs() for d in drawn]).max(0).values
    return path, abs(point), _quantiles(largest, kw)


def objective_columns(checks: dict[str, CheckResult]) -> dict[str, Any]:
    """The trade-off objectives the re-run checks measure (each kind's registered ``objective``:
    robustness, privacy, explainability), the worst check's statistic and CI per column, or the
    columns its kind computes (membership: AUC and the largest TPR at low FPR)."""
    from interp_audit.audit.kinds import check_kinds

    kinds = check_kinds()
    out: dict[str, Any] = {}
    by_column: dict[str, list[tuple[str, CheckResult, str]]] = {}
    for name, res in checks.items():
        kind = kinds.get(res.kind)
        if kind is not None and kind.objective is not None:
            col, better = kind.objective
            by_column.setdefault(col, []).append((name, res, better))
    for col, found in by_column.items():
        better = found[0][2]
        pick = max if better == "down" else min
        name, res, _ = pick(found, key=lambda t: t[1].statistic)
        columns = kinds[res.kind].objective_columns
        if columns is not None:
            out.update(columns(res))
        else:
            out[col], out[f"{col} CI"] = res.statistic, [float(res.ci[0]), float(res.ci[1])]
        out[f"{col} check"] = name
        if res.exact:  # no sampling interval: shown as exact
            out[f"{col} exact"] = True
    return out


def row_of(
    name: str,
    family: str,
    k: int,
    components: tuple[str, ...],
    m: Measurement,
    base: Measurement,
    info: list[PathInfo],
    utility: Utility,
    kw: dict[str, Any],
    skipped: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One table row: every path, the target's largest inadmissible left, the least-kept
    admissible path, other objectives, re-run checks (``skipped``: those that could not run on
    this model, ``not run``), utility and the worst group's, and the decisions, with CIs."""
    row: dict[str, Any] = {"repair": name, "family": family, "k": k}
    bad, other, kept = [], [], []
    for p in info:
        v = m.effects[p.path]
        if v is None:
            point, ci, draws = 0.0, [0.0, 0.0], None
        else:
            iv = mean_ci(v, m.clusters[p.path], **kw)
            point, ci, draws = iv.point, [iv.lo, iv.hi], iv.samples
        row[p.path], row[f"{p.path} CI"] = point, ci
        if p.role == "inadmissible":
            (bad if p.target else other).append((p.path, point, ci, draws))
        else:
            r = _ratio(m, base, p.path, kw)
            if r is not None:
                kept.append((p.path, *r))
    if bad:
        path, point, ci = _worst_abs(bad, kw)
        row.update({"inadmissible left": point, "inadmissible left CI": ci})
        row["worst inadmissible path"] = path
    if kept:
        path, point, ci = min(kept, key=lambda r: r[1])
        row.update({"admissible kept": point, "admissible kept CI": ci})
        row["least kept admissible path"] = path
    if other:
        path, point, ci = _worst_abs(other, kw)
        row.update({"other inadmissible left": point, "other inadmissible left CI": ci})
        row["other worst path"] = path
        change = _abs_change(m, base, path, kw)
        row["other worst path change"], row["other worst path change CI"] = change
    cs = utility.contrast
    clusters = cs.clusters if cs is not None else None
    row["utility"], row["utility CI"] = utility.interval(m.utility, clusters, kw)
    if len(m.utility) == len(base.utility):
        row["utility cost"], row["utility cost CI"] = utility.cost(
            base.utility, m.utility, clusters, kw
        )
    groups = groups_of(cs) if cs is not None else {}
    if groups:
        g, point, ci = utility.worst_group(m.utility, groups, clusters, kw)
    else:
        g, point, ci = "all", row["utility"], row["utility CI"]
    row["worst group"] = g
    row["worst-group utility"], row["worst-group utility CI"] = point, ci
    broken, fixed = [], []
    for cname, res in m.checks.items():
        row[f"check: {cname}"] = res.verdict
        row[f"check: {cname} statistic"] = res.statistic
        row[f"check: {cname} CI"] = [float(res.ci[0]), float(res.ci[1])]
        row[f"_check details: {cname}"] = res.details  # in tradeoff.json, not the table
        was = VERDICT_RANK[base.checks[cname].verdict]
        if VERDICT_RANK[res.verdict] < was:
            broken.append(cname)
        elif VERDICT_RANK[res.verdict] > was:
            fixed.append(cname)
    for cname in skipped:
        row[f"check: {cname}"] = "not run"
    row.update(objective_columns(m.checks))
    row.update(decision_columns(m, base, kw))
    if m.checks or skipped:
        row["checks passed"] = sum(r.verdict == "pass" for r in m.checks.values())
        row["checks broken"] = ", ".join(broken)
        row["checks fixed"] = ", ".join(fixed)
    if skipped:
        row["checks not run"] = ", ".join(skipped)
    row["components"] = ", ".join(components)
    return row
