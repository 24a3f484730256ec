"""``path_invariance``: inadmissible paths carry no effect; admissible ones are reported beside.

Two forms. With ``source`` (one variable or several), the paths come from the spec's causal
graph: **every** path from each source to the outcome is measured on its own path-specific
contrast, the inadmissible ones are checked, the admissible ones reported (nothing is listed by
hand, so a path cannot be forgotten). Without it, ``inadmissible`` / ``admissible`` map path
names to contrast sets built elsewhere. Every inadmissible path's CI must lie inside ±tolerance.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ..causal_measure import causal_model, path_rows, public, sources_of
from ..context import AuditContext
from ..measure import pair_effects, within
from ..registry import CheckKind, register_check
from ..result import CheckResult
from ..sections import CheckSpec
from ..stats import mean_ci


class PathInvarianceCheck(CheckSpec):
    """``source`` (graph form), or path name -> contrast set for inadmissible / admissible."""

    kind: Literal["path_invariance"]
    source: str | list[str] | None = None
    n: int = Field(200, ge=1)  # graph form: changed units per path
    seed: int = 0  # graph form: units are drawn with seeds seed * 1000 + k
    inadmissible: dict[str, str] = Field(default_factory=dict)
    admissible: dict[str, str] = Field(default_factory=dict)
    tolerance: float = Field(ge=0)

    @model_validator(mode="after")
    def _one_form(self):
        if self.source is not None and (self.inadmissible or self.admissible):
            raise ValueError(
                "give either 'source' (paths from the causal graph) or 'inadmissible'/"
                "'admissible' contrasts, not both"
            )
        if self.source is None and not self.inadmissible:
            raise ValueError(
                "path_invariance needs 'source' (every path from it, from the causal graph) or "
                "'inadmissible' (path name -> contrast)"
            )
        return self

    def contrast_refs(self) -> list[tuple[str, str]]:
        return [(f"inadmissible.{p}", c) for p, c in self.inadmissible.items()] + [
            (f"admissible.{p}", c) for p, c in self.admissible.items()
        ]


def _graph_rows(chk: PathInvarianceCheck, ctx: AuditContext, name: str, kw) -> list[dict]:
    cm = causal_model(ctx, f"check {name!r}")
    rows = []
    for src in sources_of(chk.source, cm, f"check {name!r}"):
        rows += path_rows(ctx, src, cm.graph.paths(src), n=chk.n, seed=chk.seed, kw=kw)
    for r in rows:
        r["passed"] = within(*r["ci"], chk.tolerance) if r["role"] == "inadmissible" else None
    return [public(r) for r in rows]


def _named_rows(chk: PathInvarianceCheck, ctx: AuditContext, kw) -> list[dict]:
    rows = []
    for role, paths in (("inadmissible", chk.inadmissible), ("admissible", chk.admissible)):
        for path, cname in paths.items():
            clean, cf = pair_effects(ctx.subject, ctx.contrasts[cname], ctx.metric)
            point, lo, hi = mean_ci(clean - cf, **kw)
            ok = within(lo, hi, chk.tolerance) if role == "inadmissible" else None
            rows.append(
                {
                    "path": path,
                    "role": role,
                    "contrast": cname,
                    "effect": point,
                    "ci": [lo, hi],
                    "passed": ok,
                }
            )
    return rows


def run(chk: PathInvarianceCheck, ctx: AuditContext, name: str) -> CheckResult:
    kw = dict(n_boot=chk.n_boot, confidence=chk.confidence, seed=ctx.seed)
    details = (
        _graph_rows(chk, ctx, name, kw) if chk.source is not None else _named_rows(chk, ctx, kw)
    )
    bad_rows = [d for d in details if d["role"] == "inadmissible"]
    passed = all(d["passed"] for d in bad_rows)
    worst = max(bad_rows, key=lambda d: max(abs(d["ci"][0]), abs(d["ci"][1])), default=None)
    bad = [d["path"] for d in details if d["passed"] is False]
    allowed = ", ".join(
        f"{d['path']} {d['effect']:+.4f}" for d in details if d["role"] == "admissible"
    )
    scope = " (conditional on the input changing)" if chk.source is not None else ""
    if worst is None:
        msg = f"no inadmissible paths from {chk.source}: nothing must be invariant"
        stat, ci = 0.0, (0.0, 0.0)
    else:
        msg = (
            f"largest inadmissible path effect{scope}: {worst['path']} {worst['effect']:+.4f} "
            f"[{worst['ci'][0]:+.4f}, {worst['ci'][1]:+.4f}]; tolerance ±{chk.tolerance}"
            + (f"; violated on {', '.join(bad)}" if bad else "")
        )
        stat, ci = worst["effect"], tuple(worst["ci"])
    msg += f"; admissible (allowed): {allowed}" if allowed else ""
    return CheckResult(
        name, chk.kind, passed, stat, ci, chk.tolerance, msg, details, chk.confidence
    )


register_check(
    CheckKind(
        "path_invariance",
        PathInvarianceCheck,
        run,
        "every inadmissible path's effect within ±tolerance (all paths of the causal graph, or "
        "named contrasts); admissible paths reported",
    )
)
