"""``responsiveness``: the output must *respond* to relevant changes, not only stay invariant to
irrelevant ones (explainability as invariance). Each selected path (default: every admissible
path from the source, from the causal graph) must carry an effect whose CI clears a ``floor``
in absolute value, and/or has the expected ``sign``: ``positive``, ``negative``, or ``scm`` (the
sign of the SCM's own path-specific effect on ``label`` for the same units).

Over the population (``exact``, the default when every noise is discrete): each path's effect is
the population's (exact: compared as it is, no interval; drawn: interval over units), and the
SCM's own effect on ``label`` is taken over the same population.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from interp_audit.audit.causal_measure import (
    causal_model,
    path_rows,
    public,
    sources_of,
    use_population,
)
from interp_audit.audit.context import AuditContext
from interp_audit.audit.registry import CheckKind, register_check
from interp_audit.audit.result import CheckResult
from interp_audit.audit.sections import CheckSpec
from interp_audit.core.errors import SpecError


class ResponsivenessCheck(CheckSpec):
    """Admissible paths must carry an effect (a floor and/or a sign)."""

    kind: Literal["responsiveness"]
    """``responsiveness``."""
    source: str | list[str] | None = None  # default: every causal.interventions source
    """The audited variable(s); their admissible paths must carry an effect."""
    paths: str | list[str] = "all-admissible"
    """Which paths must respond (default every admissible path of the causal graph)."""
    floor: float | None = Field(None, ge=0)
    """The smallest allowed |effect| (its CI must clear it)."""
    sign: Literal["positive", "negative", "scm"] | None = None
    """The required sign: positive, negative, or ``scm`` (the sign the SCM's label implies)."""
    label: str | None = None  # sign: scm reads the SCM's effect on this variable
    """The SCM variable whose own path effect gives the sign (``sign: scm``)."""
    n: int = Field(200, ge=1)
    """Units (pairs) per path whose rendered input changes."""
    seed: int = 0
    """Seed for drawing the units."""
    exact: bool | None = None
    """Measure each path over the SCM's population: exact enumeration when every noise is
    discrete (default then), else ``n_units`` drawn units deduplicated; ``false``: sampled."""
    n_units: int = Field(100_000, ge=1, le=10_000_000)
    """With ``exact``: units drawn when some noise is continuous."""

    @model_validator(mode="after")
    def _something(self):
        if self.floor is None and self.sign is None:
            raise ValueError("responsiveness needs 'floor' (smallest |effect|) and/or 'sign'")
        if self.sign == "scm" and not self.label:
            raise ValueError(
                "sign: scm needs 'label': the SCM variable whose path effect gives the sign"
            )
        return self


def run(chk: ResponsivenessCheck, ctx: AuditContext, name: str) -> CheckResult:
    where = f"check {name!r}"
    cm = causal_model(ctx, where)
    kw = chk.resampling(ctx.seed).kw()
    labels = (chk.label,) if chk.sign == "scm" and chk.label else ()
    if labels:
        cm._need_var(chk.label, "label")
    pop = use_population(ctx, chk.exact, labels)
    rows = []
    for src in sources_of(chk.source, cm, where):
        paths = cm.resolve_paths(src, chk.paths)
        if not paths:
            continue
        rows += path_rows(
            ctx, src, paths, n=chk.n, seed=chk.seed, kw=kw, population=pop, exact=chk.exact,
            n_units=chk.n_units, labels=labels,
        )  # fmt: skip
    if not rows:
        raise SpecError(f"{where}: no paths selected by {chk.paths!r}")
    for r in rows:
        lo, hi = r["ci"] if "ci" in r else (r["effect"], r["effect"])
        ok = True
        if chk.floor is not None:
            r["floor"] = chk.floor
            ok = ok and (lo >= chk.floor or hi <= -chk.floor)
        if r.get("_contrast") is None:  # the input never shows this path: it cannot respond
            r["passed"] = False
            continue
        if chk.sign is not None:
            want = chk.sign
            if want == "scm" and pop:
                implied = r[f"_label effect {chk.label}"]
                r[f"SCM effect on {chk.label}"] = implied
                want = "positive" if implied > 0 else "negative" if implied < 0 else "none"
            elif want == "scm":
                value, reference = cm.intervention(r["source"])
                implied = cm.label_effect(
                    chk.label,
                    source=r["source"],
                    value=value,
                    reference=reference,
                    paths=[r["path"]],
                    n=chk.n,
                    seed=chk.seed,
                )
                r[f"SCM effect on {chk.label}"] = implied
                want = "positive" if implied > 0 else "negative" if implied < 0 else "none"
            r["expected sign"] = want
            ok = ok and (lo > 0 if want == "positive" else hi < 0 if want == "negative" else False)
        r["passed"] = ok
    details = [public(r) for r in rows]

    def bounds(d):
        return d["ci"] if "ci" in d else [d["effect"], d["effect"]]

    weakest = min(details, key=lambda d: min(abs(bounds(d)[0]), abs(bounds(d)[1])))
    all_exact = all(d.get("exact") for d in details if "exact" in d) and pop
    lo, hi = bounds(weakest)
    failing = [d["path"] for d in details if not d["passed"]]
    demands = " and ".join(
        x
        for x in (
            f"|effect| >= {chk.floor}" if chk.floor is not None else "",
            f"sign {chk.sign}" if chk.sign else "",
        )
        if x
    )
    stated = (
        f"{weakest['effect']:+.4f} (exact: no sampling interval)"
        if weakest.get("exact")
        else f"{weakest['effect']:+.4f} [{lo:+.4f}, {hi:+.4f}]"
    )
    scope = "over the population; " if pop else ""
    msg = (
        f"weakest selected path ({scope}conditional on the input changing): {weakest['path']} "
        f"{stated}; demanded {demands}"
        + (f"; unresponsive: {', '.join(failing)}" if failing else "")
    )
    return CheckResult(
        name,
        chk.kind,
        not failing,
        weakest["effect"],
        (lo, hi),
        chk.floor if chk.floor is not None else 0.0,
        msg,
        details,
        chk.confidence,
        exact=bool(all_exact),
    )


register_check(
    CheckKind(
        "responsiveness",
        ResponsivenessCheck,
        run,
        "admissible paths (from the causal graph) carry an effect: CI beyond a floor and/or of "
        "the sign the SCM implies",
        threshold="|effect| ≥ {:g}",
    )
)
