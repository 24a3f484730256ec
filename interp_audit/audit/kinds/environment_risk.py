"""``environment_risk``: robustness as bounded risk across environments.

For each value ``e`` of an environment variable, the model's risk under ``do(E = e)``: units
drawn from the intervened SCM (the same units, noise and all, in every environment: common random
numbers, so differences between environments are paired), each rendered as the model reads it,
scored against the label the SCM gives that unit in that environment. Per environment: the risk
(log-loss of the correct answer, or the error rate) with its CI, the Bayes risk (the best any
predictor of the label from the rendered input can do there: the population's P(label | prompt)),
and the excess risk (model minus Bayes). The largest gap between environments (of the excess risk
by default) must fit the ``budget``; the worst environment is named.

``paths``: several interventions side by side, each a path set from the environment (``all`` =
``do(E = e)``; a named set or ``E -> X -> Y`` moves only what that path reaches): on data from an
unseen environment, the spurious path (a measurement artefact) and the contextual one (a policy)
change the risk differently. The first entry decides the verdict; the others are reported.

The units are a population (:mod:`interp_audit.causal.population`): exact enumeration when every
noise is discrete, else ``n_units`` drawn units deduplicated into distinct prompts (run once
each); intervals resample units.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from interp_audit.audit.causal_measure import causal_model
from interp_audit.audit.context import AuditContext
from interp_audit.audit.measure import answer_logprobs
from interp_audit.audit.registry import CheckKind, register_check
from interp_audit.audit.result import CheckResult
from interp_audit.audit.sections import CheckSpec
from interp_audit.causal.population import distinct_rows, rendered_worlds
from interp_audit.core.errors import SpecError
from interp_audit.stats.bootstrap import upper_verdict
from interp_audit.stats.population import exact_upper_verdict, population_intervals

Value = str | int | float


class EnvironmentRiskCheck(CheckSpec):
    """The largest gap in (excess) risk between environments within a budget."""

    kind: Literal["environment_risk"]
    """``environment_risk``."""
    environment: str
    """The environment variable of the causal graph (e.g. the hospital ``E``)."""
    values: list[Value] | None = None
    """The environments compared (default: every value the SCM names for the variable)."""
    label: str
    """The SCM variable (0/1) that is the correct answer, read in each environment."""
    risk: Literal["loss", "error"] = "loss"
    """``loss``: -log p(correct answer) (full vocabulary); ``error``: 1 - accuracy."""
    excess: bool = True
    """Gap of the excess risk (model minus the Bayes risk of the label given the rendered input
    in that environment); ``false``: of the raw risk."""
    paths: list[str | list[str]] = Field(default_factory=lambda: ["all"], min_length=1)
    """Interventions compared: ``all`` (do(E = e)), a named path set, or a list of paths; the
    first decides the verdict."""
    budget: float = Field(ge=0)
    """The largest allowed gap between the best and the worst environment."""
    exact: bool | None = None
    """Exact enumeration when every noise is discrete (default then); else drawn units."""
    n_units: int = Field(100_000, ge=2, le=10_000_000)
    """Units drawn when some noise is continuous (the same units in every environment)."""
    seed: int = 0
    """Seed of the drawn units."""


def _path_sets(chk: EnvironmentRiskCheck, cm) -> dict[str, list[tuple[str, ...]] | None]:
    out: dict[str, list[tuple[str, ...]] | None] = {}
    for p in chk.paths:
        name = p if isinstance(p, str) else " + ".join(p)
        out[name] = None if p == "all" else cm.resolve_paths(chk.environment, p)
    return out


def _environments(chk: EnvironmentRiskCheck, cm, where: str) -> list[Value]:
    names = cm.scm.variables[chk.environment].values
    if chk.values is not None:
        for v in chk.values:
            code = cm.scm.encode(chk.environment, v)  # unknown names: did-you-mean
            if names is not None and not (float(code).is_integer() and 0 <= code < len(names)):
                raise SpecError(
                    f"{where}: {str(v)!r} is not a value of {chk.environment} (values: "
                    f"{list(names)})"
                )
        return list(chk.values)
    if names is None:
        raise SpecError(
            f"{where}: the SCM names no values for {chk.environment!r}; list the environments "
            "under 'values'"
        )
    return list(names)


def _worlds(chk, ctx, cm, envs, path_sets):
    """Every (path set, environment) world of the population, rendered, with the label."""
    pop = ctx.causal.population(
        exact=chk.exact, n_units=chk.n_units, seed=chk.seed, labels=(chk.label,)
    )
    fact = pop.factual
    worlds: dict[str, dict[str, torch.Tensor]] = {}
    for ps, paths in path_sets.items():
        for e in envs:
            if paths is None:
                vals = cm.scm.values(pop.units, do={chk.environment: e})
            else:
                world = cm.scm.path_specific(
                    pop.units, cm.graph, chk.environment, e, paths, factual=fact,
                    targets=[chk.label],
                )  # fmt: skip
                vals = {**fact, **world}
            worlds[f"{ps}|{e}"] = vals
    return rendered_worlds(cm, pop, worlds, chk.label)


def _risk(kind: str, lp: torch.Tensor, prompt: torch.Tensor, label: torch.Tensor):
    """Per (world, unit) risk from ``[prompt, 2]`` log-probs of the answers (label 1, label 0)."""
    yes = label == 1  # the first answer is label 1's
    if kind == "loss":
        return -torch.where(yes, lp[prompt, 0], lp[prompt, 1])
    margin = lp[prompt, 0] - lp[prompt, 1]  # correct when the label's answer is ahead
    return torch.where(yes, margin <= 0, margin >= 0).double()


def _bayes(kind: str, p1: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Risk of the Bayes-optimal prediction ``p1`` = P(label = 1 | prompt) in each world."""
    yes = label == 1
    if kind == "loss":
        return -torch.where(yes, p1, 1 - p1).clamp(min=1e-12).log()
    return torch.where(yes, p1 < 0.5, p1 >= 0.5).double()


def _prepare(chk, ctx, cm, envs, path_sets):
    """(worlds, one unit per unit type, each type's mass, the Bayes risk per type and world):
    unit types are the distinct (prompt, label) rows over every world."""
    w = _worlds(chk, ctx, cm, envs, path_sets)
    types, mass, inverse = distinct_rows(torch.cat([w.prompt, w.label]).T, w.weights)
    first = torch.full((len(types),), len(inverse), dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(len(inverse)), reduce="amin")
    p1 = torch.gather(w.conditional(), 1, w.prompt[:, first])
    return w, first, mass, _bayes(chk.risk, p1, w.label[:, first]).T


def run(chk: EnvironmentRiskCheck, ctx: AuditContext, name: str) -> CheckResult:
    where = f"check {name!r}"
    cm = causal_model(ctx, where)
    cm.graph._node(chk.environment, f"{where}: environment")
    cm._need_var(chk.label, "label")
    envs = _environments(chk, cm, where)
    if len(envs) < 2:
        raise SpecError(f"{where}: compare at least two environments (got {envs})")
    path_sets = _path_sets(chk, cm)
    key = ("environment risk", chk.model_dump_json(include={"environment", "label", "paths",
                                                           "values", "exact", "n_units", "seed",
                                                           "risk"}))  # fmt: skip
    # the population side does not depend on the model: once per audit (and trade-off)
    w, first, mass, b_t = ctx.causal.memo(key, lambda: _prepare(chk, ctx, cm, envs, path_sets))
    lp = answer_logprobs(ctx.subject, w.prompts, cm.answers, where)  # [prompt, 2]: 1, 0
    m_t = _risk(chk.risk, lp, w.prompt[:, first], w.label[:, first]).T  # [type, world]
    n_w, n_e = len(w.names), len(envs)
    n_ps = len(path_sets)
    chosen = (m_t - b_t) if chk.excess else m_t

    def stat(wt: torch.Tensor) -> torch.Tensor:
        tot = wt.sum(1, keepdim=True)
        mm, bb, cc = (wt @ m_t) / tot, (wt @ b_t) / tot, (wt @ chosen) / tot
        per_set = cc.reshape(-1, n_ps, n_e)
        gaps = per_set.max(2).values - per_set.min(2).values
        return torch.cat([mm, bb, mm - bb, gaps], 1)

    kw = chk.resampling(ctx.seed).kw()
    ivs = population_intervals(stat, mass, exact=w.exact, **kw)
    m_iv, b_iv, x_iv, g_iv = ivs[:n_w], ivs[n_w : 2 * n_w], ivs[2 * n_w : 3 * n_w], ivs[3 * n_w :]
    word = {e: cm.render.word(cm.scm, chk.environment, cm.scm.encode(chk.environment, e))
            for e in envs}  # fmt: skip
    details: list[dict[str, Any]] = []
    exact = w.exact
    for j, ps in enumerate(path_sets):
        for k, e in enumerate(envs):
            i = j * n_e + k
            row = {
                "environment": word[e],
                "paths": ps,
                "risk": m_iv[i].point,
                "bayes risk": b_iv[i].point,
                "excess risk": x_iv[i].point,
                "exact": exact,
            }
            if not exact:
                row["ci"] = [m_iv[i].lo, m_iv[i].hi]
                row["excess ci"] = [x_iv[i].lo, x_iv[i].hi]
                row["half_width"] = m_iv[i].half_width
                row["clusters"] = m_iv[i].n_clusters
            details.append(row)
    summary = []
    for j, ps in enumerate(path_sets):
        vals = [(x_iv if chk.excess else m_iv)[j * n_e + k].point for k in range(n_e)]
        worst = max(range(n_e), key=lambda k: vals[k])
        best = min(range(n_e), key=lambda k: vals[k])
        g = g_iv[j]
        if exact:
            verdict, reason = exact_upper_verdict(g.point, chk.budget)
        else:
            verdict, reason = upper_verdict(g, chk.budget, min_clusters=chk.min_clusters)
        row = {
            "measure": f"largest gap ({ps})",
            "paths": ps,
            "gap": g.point,
            "worst environment": word[envs[worst]],
            "best environment": word[envs[best]],
            "budget": chk.budget,
            "exact": exact,
            "verdict": verdict if j == 0 else None,
            "reason": reason,
            "passed": (verdict == "pass") if j == 0 else None,
        }
        if not exact:
            row.update({"ci": [g.lo, g.hi], "half_width": g.half_width,
                        "clusters": g.n_clusters})  # fmt: skip
        summary.append(row)
    head, g = summary[0], g_iv[0]
    what = f"{'excess ' if chk.excess else ''}{chk.risk}"
    stated = (
        f"{g.point:.4f} (exact: no sampling interval)"
        if exact
        else f"{g.point:.4f} [{g.lo:.4f}, {g.hi:.4f}]"
    )
    per_env = ", ".join(
        f"{d['environment']} {d['excess risk' if chk.excess else 'risk']:.3f}"
        for d in details[:n_e]
    )
    msg = (
        f"{what} under do({chk.environment} = each value) over {w.description}: largest gap "
        f"between "
        f"environments {stated} (worst {head['worst environment']}, best "
        f"{head['best environment']}); budget {chk.budget}; per environment: {per_env}"
    )
    if n_ps > 1:
        msg += "; other interventions: " + ", ".join(
            f"{r['paths']} gap {r['gap']:.3f} (worst {r['worst environment']})" for r in summary[1:]
        )
    return CheckResult(
        name,
        chk.kind,
        head["verdict"],
        g.point,
        (g.lo, g.hi),
        chk.budget,
        msg,
        summary + details,
        chk.confidence,
        reason=head["reason"],
        clusters=None if exact else g.n_clusters,
        exact=exact,
    )


def figure(c: CheckResult):
    """Risk per environment (bars, one colour per intervention; the Bayes risk as ticks), and
    the largest gap against the budget in the title."""
    import plotly.graph_objects as go

    from interp_audit.audit.figures import ci_error_bars

    rows = [d for d in c.details if "environment" in d and "risk" in d]
    fig = go.Figure()
    for ps in dict.fromkeys(d["paths"] for d in rows):
        rs = [d for d in rows if d["paths"] == ps]
        err = None
        if all("ci" in d for d in rs):
            err = ci_error_bars([d["risk"] for d in rs], [d["ci"] for d in rs])
        fig.add_trace(
            go.Bar(x=[d["environment"] for d in rs], y=[d["risk"] for d in rs], name=str(ps),
                   error_y=err)
        )  # fmt: skip
        fig.add_trace(
            go.Scatter(x=[d["environment"] for d in rs], y=[d["bayes risk"] for d in rs],
                       mode="markers", marker={"symbol": "line-ew-open", "size": 24},
                       name=f"{ps}: Bayes risk")
        )  # fmt: skip
    fig.update_layout(
        title=f"{c.name} (environment risk): largest gap {c.statistic:.3f} vs budget {c.threshold}",
        barmode="group",
        template="plotly_white",
        height=340,
    )
    return fig


register_check(
    CheckKind(
        "environment_risk",
        EnvironmentRiskCheck,
        run,
        "robustness: the model's (excess) risk under do(E = e) for each environment, the worst "
        "environment and the largest gap within a budget",
        figure=figure,
        objective=("robustness (environment risk gap)", "down"),
    )
)
