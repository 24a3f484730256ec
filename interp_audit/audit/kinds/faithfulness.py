"""``faithfulness``: explainability as an objective. Is each path's behaviour carried by a small
located circuit?

For every path from the audited source(s) (graph form; or one named ``contrast``), the circuit
is located on that path's own contrast by exact patching (``sites`` per position, the ``top_k``
components by |effect|), or given (``components``). Its faithfulness is the share of the path's
effect the circuit carries when **everything else** is taken from the counterfactual run
(:mod:`interp_audit.methods.locate.faithfulness`): (M(circuit) - M(counterfactual)) /
(M(clean) - M(counterfactual)), the ratio of the means over the path's pairs, with its CI
(exact over a discrete SCM's population; resampled units or clusters otherwise). Each tested
path's faithfulness must clear ``min_share``; paths whose effect is below ``min_effect`` carry
too little to explain (reported, not tested). The circuit's size is reported beside it.

With ``ablate`` the same is measured on the repaired model too (the circuit located again under
the repair), reported before and after; the verdict is the repaired model's. Without it, the
repair trade-off re-runs the check on every repaired model.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field, model_validator

from interp_audit.audit.causal_measure import (
    causal_model,
    path_rows,
    sources_of,
    use_population,
)
from interp_audit.audit.context import AuditContext
from interp_audit.audit.measure import ablated_components, ablation, clusters_of, pair_effects
from interp_audit.audit.registry import CheckKind, register_check
from interp_audit.audit.result import CheckResult
from interp_audit.audit.sections import AblationSpec, CheckSpec
from interp_audit.methods.locate.faithfulness import circuit_metric
from interp_audit.methods.locate.patching import patch
from interp_audit.stats.bootstrap import Verdict, cluster_bootstrap, combine
from interp_audit.stats.population import population_intervals


class FaithfulnessCheck(CheckSpec):
    """Every tested path's located circuit carries at least ``min_share`` of its effect."""

    kind: Literal["faithfulness"]
    """``faithfulness``."""
    source: str | list[str] | None = None
    """Graph form: the audited variable(s) (default: every ``causal.interventions`` source)."""
    paths: str | list[str] = "all"
    """Graph form: which paths (``all``, ``all-admissible``, a named set, or a list)."""
    contrast: str | None = None
    """Instead of the graph: one named contrast set."""
    components: list[str] = Field(default_factory=list)
    """A fixed circuit (heads, their q/k/v inputs, MLPs, neurons; ``@pos`` allowed) instead of
    locating one per path."""
    sites: str | list[str] = Field(default_factory=lambda: ["heads", "mlp_out"])
    """Located circuits: the sweeps exact patching ranks together, per position (default head
    outputs and MLP outputs: the nodes whose outputs sum to the residual stream)."""
    top_k: int = Field(8, ge=1)
    """Located circuits: how many top components by |effect| make the circuit."""
    min_share: float = Field(ge=0, le=1)
    """The smallest allowed faithfulness (its CI must clear it)."""
    min_effect: float = Field(0.1, ge=0)
    """Paths whose |effect| is below this carry too little to explain: reported, not tested."""
    ablate: AblationSpec | None = None
    """Also measure the repaired model (the verdict is then its circuits')."""
    n: int = Field(200, ge=1)
    """Graph form, sampled: units (pairs) per path."""
    seed: int = 0
    """Graph form: seed of the units."""
    exact: bool | None = None
    """Graph form: over the SCM's population (default when every noise is discrete)."""
    n_units: int = Field(100_000, ge=1, le=10_000_000)
    """Graph form with ``exact``: units drawn when some noise is continuous."""

    @model_validator(mode="after")
    def _one_form(self):
        if self.contrast is not None and self.source is not None:
            raise ValueError("give either 'source' (paths of the causal graph) or 'contrast'")
        return self


def _rows(chk: FaithfulnessCheck, ctx: AuditContext, name: str) -> list[dict[str, Any]]:
    kw = chk.resampling(ctx.seed).kw()
    if chk.contrast is not None:
        cs = ctx.contrasts[chk.contrast]
        clean, cf = pair_effects(ctx.subject, cs, ctx.metric)
        d = (clean - cf).double()
        return [{"path": chk.contrast, "effect": float(d.mean()), "_pairs": d, "_contrast": cs}]
    cm = causal_model(ctx, f"check {name!r}")
    pop = use_population(ctx, chk.exact)
    rows = []
    for src in sources_of(chk.source, cm, f"check {name!r}"):
        paths = cm.resolve_paths(src, chk.paths)
        rows += path_rows(
            ctx, src, paths, n=chk.n, seed=chk.seed, kw=kw, population=pop, exact=chk.exact,
            n_units=chk.n_units,
        )  # fmt: skip
    return rows


def _weights(row: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(per-pair weights, the population's other categories' masses or None when sampled)."""
    pp = row.get("_population")
    if pp is None:
        return torch.ones(len(row["_pairs"]), dtype=torch.float64), None
    return pp.weights, pp.rest()


def _circuit(chk: FaithfulnessCheck, ctx: AuditContext, cs, w: torch.Tensor):
    """(circuit, sites ranked): the given components, or the top_k by |weighted effect|."""
    if chk.components:
        return list(chk.components), None
    labels, parts = [], []
    for sweep in [chk.sites] if isinstance(chk.sites, str) else chk.sites:
        # under a repair's hooks too: the engine honours hooks at one position (engine/window)
        eff = patch(ctx.subject, cs, ctx.metric, sites=sweep, per_position=True, normalize=False)
        pe = eff.per_example.reshape(len(eff.components), -1).double()
        names, effects = list(eff.components), pe - eff.base_values.double()  # vs the cf run
        labels += names
        parts.append(effects)
    effects = torch.cat(parts)
    score = (effects @ w / w.sum()).abs()
    order = torch.argsort(score, descending=True, stable=True)[: chk.top_k]
    return [labels[i] for i in order.tolist() if score[i] > 0], len(labels)


def _share(chk, ctx, row, kw) -> dict[str, Any]:
    """The located circuit of one path and the share of its effect it carries, with a CI."""
    cs = row["_contrast"]
    w, rest = _weights(row)
    circuit, total = _circuit(chk, ctx, cs, w)
    clean, cf = pair_effects(ctx.subject, cs, ctx.metric)
    mixed = circuit_metric(ctx.subject, cs, circuit, ctx.metric)
    num, den = (mixed - cf).double(), (clean - cf).double()
    out: dict[str, Any] = {
        "circuit": ", ".join(circuit),
        "size": len(circuit),
        "effect": float((w @ den) / w.sum()),
    }
    if total is not None:
        out["sites"] = total
    if rest is None:
        iv = cluster_bootstrap(lambda W: (W @ num) / (W @ den), clusters_of(cs), len(num), **kw)
        exact = False
    else:
        zeros = torch.zeros(len(rest), dtype=torch.float64)
        a, b = torch.cat([num, zeros]), torch.cat([den, zeros])
        (iv,) = population_intervals(
            lambda W: ((W @ a) / (W @ b))[:, None], torch.cat([w, rest]), exact=row["_exact"],
            **kw,
        )  # fmt: skip
        exact = bool(row["_exact"])
    out["faithfulness"] = iv.point
    out["exact"] = exact
    if not exact:
        out.update(ci=[iv.lo, iv.hi], half_width=iv.half_width, clusters=iv.n_clusters)
    out["_iv"] = iv
    return out


def _verdict(iv, exact: bool, floor: float) -> tuple[Verdict, str]:
    if exact:
        ok = iv.point >= floor
        return ("pass" if ok else "fail"), (
            f"exact faithfulness {iv.point:.3f} {'at least' if ok else 'below'} {floor}"
        )
    if iv.lo >= floor:
        return "pass", f"CI above {floor}"
    if iv.hi < floor:
        return "fail", f"CI entirely below {floor}"
    return "inconclusive", f"CI [{iv.lo:.3f}, {iv.hi:.3f}] straddles {floor}"


def _measure(chk, ctx, name) -> list[dict[str, Any]]:
    kw = chk.resampling(ctx.seed).kw()
    out = []
    for row in _rows(chk, ctx, name):
        base = {k: row[k] for k in ("source", "path", "role") if k in row}
        if row.get("_contrast") is None:
            out.append({**base, "effect": 0.0, "note": "no unit's input changes along it"})
            continue
        if abs(row["effect"]) < chk.min_effect:
            out.append(
                {
                    **base,
                    "effect": row["effect"],
                    "note": f"|effect| below min_effect {chk.min_effect}: not tested",
                }
            )
            continue  # fmt: skip
        out.append({**base, **_share(chk, ctx, row, kw), "_tested": True})
    return out


def run(chk: FaithfulnessCheck, ctx: AuditContext, name: str) -> CheckResult:
    rows = _measure(chk, ctx, name)
    if chk.ablate is not None:
        comps = ablated_components(chk.ablate, ctx.effects)
        with ablation(chk.ablate, comps, ctx):
            after = _measure(chk, ctx, name)
        for r in rows:
            r["model"] = "before the repair"
        for r in after:
            r["model"] = f"after the repair ({chk.ablate.kind}-ablating {len(comps)} components)"
        judged, shown = after, rows
    else:
        judged, shown = rows, []
    tested = [r for r in judged if r.get("_tested")]
    for r in tested:
        v, why = _verdict(r["_iv"], r["exact"], chk.min_share)
        r.update(verdict=v, reason=why, passed=v == "pass", min_share=chk.min_share)
    details = [{k: v for k, v in r.items() if not k.startswith("_")} for r in judged + shown]
    if not tested:
        return CheckResult(
            name, chk.kind, "pass", 1.0, (1.0, 1.0), chk.min_share,
            f"no path carries |effect| >= {chk.min_effect}: nothing to explain", details,
            chk.confidence, reason="no tested path",
        )  # fmt: skip
    worst = min(tested, key=lambda r: r["_iv"].lo)
    iv = worst["_iv"]
    exact = all(r["exact"] for r in tested)
    verdict = combine([r["verdict"] for r in tested])
    per_path = "; ".join(
        f"{r['path']} {r['faithfulness']:.3f} ({r['size']} components)" for r in tested
    )
    stated = (
        f"{iv.point:.3f} (exact)"
        if worst["exact"]
        else f"{iv.point:.3f} [{iv.lo:.3f}, {iv.hi:.3f}]"
    )
    where = " on the repaired model" if chk.ablate is not None else ""
    msg = (
        f"least faithful located circuit{where}: {worst['path']} {stated} with "
        f"{worst['size']} components ({worst['circuit']}); demanded >= {chk.min_share}; "
        f"per path: {per_path}"
    )
    reason = "; ".join(f"path {r['path']}: {r['reason']}" for r in tested if r["verdict"] != "pass")
    return CheckResult(
        name, chk.kind, verdict, iv.point, (iv.lo, iv.hi), chk.min_share, msg, details,
        chk.confidence, reason=reason or f"every tested path's faithfulness >= {chk.min_share}",
        clusters=None if exact else min(r["_iv"].n_clusters for r in tested), exact=exact,
    )  # fmt: skip


def figure(c: CheckResult):
    """Faithfulness per path (bars with CIs; before/after a repair side by side), the floor
    dashed, the circuit's size on each bar."""
    import plotly.graph_objects as go

    from interp_audit.audit.figures import ci_error_bars

    rows = [d for d in c.details if "faithfulness" in d]
    fig = go.Figure()
    for model in dict.fromkeys(d.get("model", "") for d in rows):
        rs = [d for d in rows if d.get("model", "") == model]
        err = None
        if all("ci" in d for d in rs):
            err = ci_error_bars([d["faithfulness"] for d in rs], [d["ci"] for d in rs])
        fig.add_trace(
            go.Bar(x=[d["path"] for d in rs], y=[d["faithfulness"] for d in rs],
                   text=[f"{d['size']} comp." for d in rs], name=model or "faithfulness",
                   error_y=err)
        )  # fmt: skip
    fig.add_hline(y=c.threshold, line_dash="dash", line_color="#c62828")
    fig.update_layout(
        title=f"{c.name} (faithfulness of the located circuits, share of each path's effect)",
        barmode="group",
        template="plotly_white",
        height=340,
    )
    return fig


register_check(
    CheckKind(
        "faithfulness",
        FaithfulnessCheck,
        run,
        "explainability: each path's located circuit carries at least min_share of its effect "
        "with everything else corrupted (and its size)",
        figure=figure,
        objective=("explainability (faithfulness)", "up"),
        tradeoff_form=lambda chk: chk.model_copy(update={"ablate": None}),
    )
)
