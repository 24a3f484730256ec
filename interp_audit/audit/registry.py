"""The check-kind registry: one file per kind, registered once; everything else derives from it.

A check kind is a spec section (a pydantic model with ``kind: Literal["name"]``), a runner that
turns it into a :class:`CheckResult`, and optionally a report figure. The spec's ``checks``
union, the did-you-mean lists, the CLI's and the report's choices all read this registry, so
adding a kind is one new module under ``interp_audit/audit/kinds/`` plus its
``register_check(...)`` call (and one import line in ``kinds/__init__.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from interp_audit.audit.context import AuditContext
    from interp_audit.audit.result import CheckResult
    from interp_audit.audit.sections import CheckSpec

__all__ = ["CheckKind", "all_registered", "contrast_notes", "register_check", "run_check"]


@dataclass(frozen=True)
class CheckKind:
    """One kind of check.

    Attributes:
        name: the ``kind:`` value in specs.
        spec: the pydantic section for it (subclass of :class:`~.spec.CheckSpec`).
        run: ``run(spec, ctx, name) -> CheckResult``.
        figure: ``figure(result) -> plotly Figure`` (a :class:`CheckResult` in, its evidence
            read typed through ``result.evidence``) for the report; None = the generic bar
            chart of the evidence rows with their CIs (:func:`~.figures.interval_figure`).
        description: one line for ``interp-audit schema`` and the spec reference.
        threshold: how the check's ``threshold`` reads in the report's summary (a format
            string: ``±{:g}`` a two-sided tolerance, ``≤ {:g}`` a limit, ...), or a function
            of the result for kinds whose limit depends on the spec (membership: a TPR budget
            or an AUC bound).
        remeasurable: whether running it on a repaired model measures that model (the
            trade-off re-runs such checks under each repair); False for kinds that apply
            their own repair or read effects located on the unrepaired model.
        objective: the trade-off objective the kind's statistic measures, ``(column, better)``
            with better ``"up"`` or ``"down"`` (e.g. ``("robustness (environment risk gap)",
            "down")``): the trade-off table shows it per repair and its Pareto front over the
            objectives uses it.
        objective_columns: ``objective_columns(result) -> {column: value}`` where the kind's
            objective is not its statistic, or it adds columns (membership: the strongest
            attack's AUC and the largest TPR at low FPR, each with its ``" CI"`` column); None
            = the statistic and its CI under ``objective``'s column.
        tradeoff_form: the check the trade-off re-runs on each repaired model, when it is not
            the check as written (e.g. without the check's own repair, which the swept repair
            replaces); None = as written.
    """

    name: str
    spec: type[CheckSpec]
    run: Callable[[Any, AuditContext, str], CheckResult]
    description: str
    figure: Callable[[CheckResult], Any] | None = None
    remeasurable: bool = True
    threshold: str | Callable[[CheckResult], str] = "±{:g}"
    objective: tuple[str, str] | None = None
    objective_columns: Callable[[CheckResult], dict[str, Any]] | None = None
    tradeoff_form: Callable[[Any], Any] | None = None


_CHECKS: dict[str, CheckKind] = {}


def register_check(kind: CheckKind) -> CheckKind:
    """Add a check kind; a second kind with the same name is an error (as SAELens's registry)."""
    if kind.name in _CHECKS:
        raise ValueError(f"check kind {kind.name!r} is already registered")
    declared = kind.spec.model_fields.get("kind")
    if declared is None or getattr(declared.annotation, "__args__", (None,))[0] != kind.name:
        raise ValueError(f"check kind {kind.name!r}: its spec needs kind: Literal[{kind.name!r}]")
    _CHECKS[kind.name] = kind
    return kind


def all_registered() -> dict[str, CheckKind]:
    """The kinds registered so far; use ``interp_audit.audit.kinds.check_kinds()``, which
    registers the built-in ones first."""
    return dict(_CHECKS)


def run_check(kind: CheckKind, spec: CheckSpec, ctx: AuditContext, name: str) -> CheckResult:
    """Run one check of ``kind``, then add what every check's evidence must say about the
    contrast sets it read (:func:`contrast_notes`), whichever kind it is."""
    result = kind.run(spec, ctx, name)
    result.details.extend(contrast_notes(spec, ctx))
    return result


def contrast_notes(spec: CheckSpec, ctx: AuditContext) -> list[dict[str, Any]]:
    """Evidence rows for the contrast sets a check read whose identical pairs were merged
    into one cluster (copies are one unit of evidence: they must not narrow a CI)."""
    rows = []
    for key, cname in spec.contrast_refs():
        cs = ctx.contrasts.get(cname)
        merged = 0 if cs is None else int(cs.meta.get("identical_pairs_merged", 0))
        if merged:
            clusters = len(set(cs.clusters or ()))
            rows.append(
                {
                    "note": (
                        f"{key} {cname!r}: {merged} of its {len(cs)} pairs repeat another pair "
                        "exactly; identical pairs are one unit of evidence, so they were merged "
                        f"into one cluster each and the bootstrap resamples {clusters} clusters"
                    ),
                    "contrast": cname,
                    "identical pairs merged": merged,
                    "pairs": len(cs),
                    "clusters": clusters,
                }
            )
    return rows
