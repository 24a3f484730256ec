"""The repair trade-off: sweep ablations of the located components and measure, for each, every
path of the causal graph, utility and the worst group's utility, with CIs.

    table = ia.tradeoff("circuits/readmission/audit.yaml", ks=(1, 2, 4, 8, 16, 32))
    table.to_frame(); table.plot(); table.save("out/")

Components are ranked by the summed |effect| of the spec's exact-patching locate steps on
contrasts whose paths are all inadmissible (what a repair should remove), or the steps named in
``locate``. For each ablation kind (zero / mean / resample) and each k, the top-k components are
ablated and the audit's objectives re-measured on the same units:

* every path from each audited source (``causal.interventions``), conditional on the input
  changing, with its bootstrap CI; ``inadmissible left`` is the largest |effect| among
  inadmissible paths; ``admissible kept`` the smallest after/before ratio among admissible ones
  (paired bootstrap over the path's pairs);
* utility (accuracy of the factual utility set's labels) and the worst group's accuracy (the
  group with the lowest accuracy after the repair), each with its CI.

A configuration is on the Pareto front when no other is at least as good on all four
(inadmissible left lower, admissible kept, utility and worst-group utility higher) and better
on one.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .audit.causal_measure import causal_model, path_rows
from .audit.measure import groups_of, pair_effects, utility_values
from .audit.stats import bootstrap, mean_ci
from .errors import SpecError

__all__ = ["Tradeoff", "tradeoff"]

OBJECTIVES = ("inadmissible left", "admissible kept", "utility", "worst-group utility")


@dataclass
class Tradeoff:
    """One row per repair configuration (the unrepaired model first)."""

    rows: list[dict[str, Any]]
    ranking: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_frame(self):
        import pandas as pd

        flat = []
        for r in self.rows:
            flat.append(
                {
                    k: (f"[{v[0]:+.3f}, {v[1]:+.3f}]" if isinstance(v, list) else v)
                    for k, v in r.items()
                }
            )
        return pd.DataFrame(flat)

    def plot(self):
        """Pareto plot: inadmissible effect left (x) against worst-group utility (y)."""
        import plotly.graph_objects as go

        fig = go.Figure()
        for kind in dict.fromkeys(r["ablation"] for r in self.rows):
            rs = [r for r in self.rows if r["ablation"] == kind]
            fig.add_trace(
                go.Scatter(
                    x=[r["inadmissible left"] for r in rs],
                    y=[r["worst-group utility"] for r in rs],
                    error_y=dict(
                        type="data",
                        symmetric=False,
                        array=[
                            r["worst-group utility CI"][1] - r["worst-group utility"] for r in rs
                        ],
                        arrayminus=[
                            r["worst-group utility"] - r["worst-group utility CI"][0] for r in rs
                        ],
                    ),
                    mode="markers+text",
                    text=[str(r["k"]) for r in rs],
                    textposition="top center",
                    marker=dict(
                        size=[14 if r["pareto"] else 8 for r in rs],
                        symbol=["diamond" if r["pareto"] else "circle" for r in rs],
                    ),
                    name=kind,
                    hovertext=[r["repair"] for r in rs],
                )
            )
        fig.update_layout(
            title="repair trade-off (labels: k; diamonds: Pareto front)",
            xaxis_title="largest inadmissible path effect left",
            yaxis_title="worst group's accuracy",
            template="plotly_white",
        )
        return fig

    def save(self, directory: str | Path) -> Path:
        import json

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self.to_frame().to_csv(out / "tradeoff.csv", index=False)
        (out / "tradeoff.json").write_text(
            json.dumps({"rows": self.rows, "ranking": self.ranking, "meta": self.meta}, indent=2)
        )
        (out / "tradeoff.html").write_text(
            "<html><head><meta charset='utf-8'></head><body>"
            + f"<h1>Trade-off: {html.escape(str(self.meta.get('spec', '')))}</h1>"
            + self.plot().to_html(full_html=False, include_plotlyjs=True)
            + self.to_frame().round(4).to_html(index=False)
            + "</body></html>"
        )
        return out

    def _repr_html_(self) -> str:
        return self.to_frame().round(3).to_html(index=False)


def _prepare(spec, subject=None):
    from .audit.causal_run import CausalContext, load_causal
    from .audit.context import AuditContext
    from .audit.contrasts import build_contrasts
    from .audit.run import _metric
    from .audit.spec import load_spec
    from .loading import load_model
    from .locate.methods import run_locate
    from .metrics import get_metric

    parsed, base = load_spec(spec)
    torch.manual_seed(parsed.seed)
    cm = load_causal(parsed.causal, base)
    if subject is None:
        source = parsed.model.source
        if source.startswith((".", "/")) or (
            not source.startswith("zoo:") and (base / source).exists()
        ):
            source = str((base / source).resolve())
        subject = load_model(source, device=parsed.model.device, dtype=parsed.model.dtype)
    causal = CausalContext(subject, cm, base)
    contrasts = build_contrasts(subject, parsed.contrasts, base, causal)
    ctx = AuditContext(
        subject=subject,
        contrasts=contrasts,
        metric=_metric(subject, parsed),
        seed=parsed.seed,
        base=base,
        causal=causal,
    )
    for loc in parsed.locate:
        m = get_metric(loc.metric) if loc.metric else ctx.metric
        ctx.effects[loc.default_name()] = run_locate(loc, ctx.contrasts[loc.contrast], m, ctx)
    return parsed, ctx


def _default_locate(parsed, ctx) -> list[str]:
    from .audit.causal_spec import ScmContrast

    cm = ctx.causal.model
    names = []
    for loc in parsed.locate:
        c = parsed.contrasts[loc.contrast]
        if loc.method != "patch" or not isinstance(c, ScmContrast) or c.factual:
            continue
        paths = cm.resolve_paths(c.source, c.paths)
        if paths and not any(cm.graph.admissible(p) for p in paths):
            names.append(loc.default_name())
    return names


def tradeoff(
    spec,
    *,
    ks: tuple[int, ...] = (1, 2, 4, 8, 16, 32),
    kinds: tuple[str, ...] = ("zero", "mean", "resample"),
    locate: list[str] | None = None,
    reference: str | None = None,
    utility: str | None = None,
    n: int = 200,
    seed: int | None = None,
    n_boot: int = 500,
    subject=None,
) -> Tradeoff:
    """Sweep top-k ablations of the located components (see the module docstring)."""
    from .audit.causal_spec import ScmContrast
    from .interventions import ablate

    parsed, ctx = _prepare(spec, subject)
    cm = causal_model(ctx, "tradeoff")
    steps = locate or _default_locate(parsed, ctx)
    if not steps:
        raise SpecError(
            "tradeoff needs located components: add exact-patching locate steps on contrasts "
            "of inadmissible paths to the spec, or name steps with --locate"
        )
    for s in steps:
        if s not in ctx.effects:
            raise SpecError(f"no locate step {s!r} (steps: {sorted(ctx.effects)})")
    score: dict[str, float] = {}
    for s in steps:
        e = ctx.effects[s]
        for comp, v in e.top(len(e.components), by="abs"):
            score[comp] = score.get(comp, 0.0) + abs(v)
    ranking = sorted(score, key=lambda c: -score[c])
    factual = [k for k, c in parsed.contrasts.items() if isinstance(c, ScmContrast) and c.factual]
    util_name = utility or (factual[0] if factual else None)
    if util_name is None or util_name not in ctx.contrasts:
        raise SpecError(
            "tradeoff needs a utility set: a contrast with factual: true, label and group_by "
            f"(or --utility NAME); contrasts: {sorted(ctx.contrasts)}"
        )
    ref_name = reference or next(
        (k for k, c in parsed.contrasts.items() if isinstance(c, ScmContrast) and not c.factual),
        None,
    )
    seed = parsed.seed if seed is None else seed
    kw = dict(n_boot=n_boot, confidence=0.95, seed=parsed.seed)
    draw_seed = next(
        (c.seed for c in parsed.contrasts.values() if isinstance(c, ScmContrast) and not c.factual),
        0,
    )
    paths = []
    for src in cm.interventions:
        paths += path_rows(ctx, src, cm.graph.paths(src), n=n, seed=draw_seed, kw=kw)
    paths = [p for p in paths if p["_contrast"] is not None]
    util_cs = ctx.contrasts[util_name]
    groups = groups_of(util_cs)

    def measure() -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        eff = {}
        for p in paths:
            c, f = pair_effects(ctx.subject, p["_contrast"], ctx.metric)
            eff[p["path"]] = (c - f).double()
        return eff, utility_values(ctx.subject, util_cs, "accuracy")

    base_eff, base_util = measure()
    configs = [("none", 0)] + [(kind, k) for kind in kinds for k in ks if k <= len(ranking)]
    rows = []
    for kind, k in configs:
        comps = ranking[:k]
        if kind == "none":
            eff, util = base_eff, base_util
        else:
            ref = ctx.contrasts[ref_name] if ref_name else None
            with ablate(ctx.subject, comps, kind=kind, reference=ref, seed=seed):
                eff, util = measure()
        row: dict[str, Any] = {
            "repair": "none" if kind == "none" else f"{kind}-ablate top {k}",
            "ablation": kind,
            "k": k,
        }
        worst_bad, kept = None, None
        for p in paths:
            v = eff[p["path"]]
            point, lo, hi = mean_ci(v, **kw)
            row[p["path"]] = point
            row[f"{p['path']} CI"] = [lo, hi]
            if p["role"] == "inadmissible":
                reach = max(abs(lo), abs(hi))
                if worst_bad is None or reach > worst_bad[0]:
                    worst_bad = (reach, abs(point), [lo, hi], p["path"])
            else:
                b = base_eff[p["path"]]
                r = bootstrap(
                    lambda idx, v=v, b=b: float(v[idx].mean() / b[idx].mean()), len(v), **kw
                )
                if kept is None or r[0] < kept[0]:
                    kept = (r[0], [r[1], r[2]], p["path"])
        if worst_bad is not None:
            row["inadmissible left"] = worst_bad[1]
            row["inadmissible left CI"] = [min(abs(x) for x in worst_bad[2]), worst_bad[0]]
            row["worst inadmissible path"] = worst_bad[3]
        if kept is not None:
            row["admissible kept"] = kept[0]
            row["admissible kept CI"] = kept[1]
            row["least kept admissible path"] = kept[2]
        up, ulo, uhi = mean_ci(util, **kw)
        row["utility"], row["utility CI"] = up, [ulo, uhi]
        cost, clo, chi = mean_ci(base_util - util, **kw)
        row["utility cost"], row["utility cost CI"] = cost, [clo, chi]
        if groups:
            per = {g: mean_ci(util[idx], **kw) for g, idx in groups.items()}
            g = min(per, key=lambda g: per[g][0])
            row["worst group"] = g
            row["worst-group utility"] = per[g][0]
            row["worst-group utility CI"] = [per[g][1], per[g][2]]
        else:
            row["worst group"] = "all"
            row["worst-group utility"], row["worst-group utility CI"] = up, [ulo, uhi]
        row["components"] = ", ".join(comps)
        rows.append(row)
    _mark_pareto(rows)
    meta = {
        "spec": str(spec) if not isinstance(spec, dict) else parsed.name,
        "locate": steps,
        "utility": util_name,
        "reference": ref_name,
        "n": n,
        "objectives": list(OBJECTIVES),
        "effects": "conditional on the rendered input changing; logit-diff units",
    }
    return Tradeoff(rows, ranking, meta)


def _mark_pareto(rows: list[dict[str, Any]]) -> None:
    def vec(r):  # larger is better on every axis
        return (
            -r.get("inadmissible left", 0.0),
            r.get("admissible kept", 1.0),
            r["utility"],
            r["worst-group utility"],
        )

    for r in rows:
        a = vec(r)
        r["pareto"] = not any(
            all(x >= y for x, y in zip(vec(o), a, strict=True)) and vec(o) != a
            for o in rows
            if o is not r
        )
