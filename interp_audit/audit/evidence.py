"""Evidence rows: the declared types of a :class:`~interp_audit.audit.result.CheckResult`'s
``details``.

A check's details stay plain JSON objects (report.json, ``res.details[0]["effect"]``), but every
row is one of the kinds declared here, told apart by the key that names what the row is about
(``measure``, ``path``, ``group``, ``component``, ``score``, ``canary``, ``members``, ``note``).
``CheckResult`` refuses a row that is none of them when it is built, so a kind cannot write a row
that the plan (:mod:`interp_audit.audit.plan`) and the report view
(:mod:`interp_audit.audit.report_view`) would misread; both read rows through these types.
Keys with spaces (``"effect over all units"``) are field aliases; keys a kind adds beyond the
declared ones (``"fit ..."``, ``"SCM effect on Y"``) are kept as extras.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "CanaryRow",
    "EnvironmentRow",
    "EvidenceRow",
    "GroupRow",
    "Limit",
    "MeasureRow",
    "NoteRow",
    "PathRow",
    "SampleRow",
    "ScoreRow",
    "ShareRow",
    "parse_row",
    "parse_rows",
]

Verdict = Literal["pass", "fail", "inconclusive"]


class Limit(BaseModel):
    """What a row's estimate is tested against: ``|estimate| <= value`` (two-sided band),
    ``estimate <= value`` (upper: budgets, shares) or ``|estimate| >= value`` (lower: floors)."""

    model_config = ConfigDict(frozen=True)

    value: float
    side: Literal["band", "upper", "lower"]

    def __str__(self) -> str:
        return {"band": "±{:g}", "upper": "≤ {:g}", "lower": "|effect| ≥ {:g}"}[self.side].format(
            self.value
        )


class EvidenceRow(BaseModel):
    """Fields every row may carry: an interval with its verdict."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)
    key: ClassVar[str] = ""  # the key that marks this row kind

    ci: tuple[float, float] | None = None
    half_width: float | None = None
    clusters: int | None = None
    n: int | None = None
    verdict: Verdict | None = None
    passed: bool | None = None
    reason: str | None = None

    @property
    def label(self) -> str:
        """What the row is about, for tables and figures."""
        return str(getattr(self, self.key))

    @property
    def estimate(self) -> float | None:
        """The row's point estimate, when it has one."""
        return None

    @property
    def limit(self) -> Limit | None:
        """What the estimate is tested against, when it is tested."""
        return None

    @property
    def outcome(self) -> Verdict | None:
        """The row's verdict (rows written before verdicts: from ``passed``)."""
        if self.verdict is not None:
            return self.verdict
        return None if self.passed is None else ("pass" if self.passed else "fail")

    @property
    def role(self) -> str | None:
        return None

    def extras(self) -> dict[str, Any]:
        """The fields a kind added beyond the declared ones (``"fit ..."`` and the like)."""
        return dict(self.model_extra or {})

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


def _band_or_upper(row: Any) -> Limit | None:
    if getattr(row, "tolerance", None) is not None:
        return Limit(value=row.tolerance, side="band")
    if getattr(row, "budget", None) is not None:
        return Limit(value=row.budget, side="upper")
    return None


class GroupRow(EvidenceRow):
    """invariance: the effect in one group of pairs (``all`` = every pair)."""

    key: ClassVar[str] = "group"
    group: str
    effect: float
    tolerance: float | None = None
    p_violation: float | None = None
    p_holm: float | None = None

    @property
    def estimate(self) -> float:
        return self.effect

    @property
    def limit(self) -> Limit | None:
        return _band_or_upper(self)


class PathRow(EvidenceRow):
    """path_invariance / responsiveness: one causal path's effect on its own contrast."""

    key: ClassVar[str] = "path"
    path: str
    source: str | None = None
    role_: Literal["admissible", "inadmissible"] | None = Field(None, alias="role")
    why: str | None = None
    contrast: str | None = None
    effect: float
    effect_over_all_units: float | None = Field(None, alias="effect over all units")
    ci_over_all_units: tuple[float, float] | None = Field(None, alias="ci over all units")
    fraction_changed: float | None = None
    n_in_scope: int | None = None
    tolerance: float | None = None
    p_violation: float | None = None
    p_holm: float | None = None
    floor: float | None = None
    expected_sign: str | None = Field(None, alias="expected sign")
    note: str | None = None

    @property
    def role(self) -> str | None:
        return self.role_

    @property
    def estimate(self) -> float:
        return self.effect

    @property
    def limit(self) -> Limit | None:
        if self.tolerance is not None:
            return Limit(value=self.tolerance, side="band")
        if self.floor is not None:
            return Limit(value=self.floor, side="lower")
        return None


class ShareRow(EvidenceRow):
    """component_mediation: the share of an effect one component mediates."""

    key: ClassVar[str] = "component"
    component: str
    share: float
    max_share: float | None = None

    @property
    def estimate(self) -> float:
        return self.share

    @property
    def limit(self) -> Limit | None:
        return None if self.max_share is None else Limit(value=self.max_share, side="upper")


class MeasureRow(EvidenceRow):
    """intervention / memorization: one named measurement (an effect before or after, a
    utility, its cost, a group's cost, an admissible path kept, the ablated components)."""

    key: ClassVar[str] = "measure"
    measure: str
    value: float | None = None
    tolerance: float | None = None
    budget: float | None = None
    group: str | None = None
    path: str | None = None
    before: float | None = None
    after: float | None = None
    components: list[str] | None = None

    @property
    def estimate(self) -> float | None:
        return self.value

    @property
    def limit(self) -> Limit | None:
        return _band_or_upper(self)


class ScoreRow(EvidenceRow):
    """membership: one score's AUC (members vs non-members), or the loss gap."""

    key: ClassVar[str] = "score"
    score: str
    auc: float | None = None
    gap: float | None = None
    bounds: tuple[float, float] | None = None
    tolerance: float | None = None

    @property
    def estimate(self) -> float | None:
        return self.auc if self.auc is not None else self.gap

    @property
    def limit(self) -> Limit | None:
        if self.bounds is not None:
            return Limit(value=self.bounds[1], side="upper")
        return None if self.tolerance is None else Limit(value=self.tolerance, side="band")


class CanaryRow(EvidenceRow):
    """memorization: one inserted canary's exposure (before and, under an ablation, after)."""

    key: ClassVar[str] = "canary"
    canary: str
    exposure: float | None = None
    exposure_before: float | None = Field(None, alias="exposure before")

    @property
    def estimate(self) -> float | None:
        return self.exposure if self.exposure is not None else self.exposure_before


class SampleRow(EvidenceRow):
    """membership: how many members and non-members were scored."""

    key: ClassVar[str] = "members"
    members: int
    non_members: int
    min_k: float | None = None

    @property
    def label(self) -> str:
        return "sample"


class EnvironmentRow(EvidenceRow):
    """environment_risk: the model's risk in one environment under do(E = e), beside the Bayes
    risk (the best possible from the prompt) and the excess, for one set of intervened paths."""

    key: ClassVar[str] = "environment"
    environment: str
    paths: str | list[str] | None = None
    risk: float | None = None
    bayes_risk: float | None = Field(None, alias="bayes risk")
    excess_risk: float | None = Field(None, alias="excess risk")
    exact: bool | None = None

    @property
    def label(self) -> str:
        return f"{self.environment} ({self.paths})" if self.paths else self.environment

    @property
    def estimate(self) -> float | None:
        return self.risk


class NoteRow(EvidenceRow):
    """A statement about the evidence itself (e.g. identical pairs merged into one cluster)."""

    key: ClassVar[str] = "note"
    note: str
    contrast: str | None = None
    identical_pairs_merged: int | None = Field(None, alias="identical pairs merged")
    pairs: int | None = None

    @property
    def label(self) -> str:
        return f"contrast {self.contrast}" if self.contrast else "note"


#: Row kinds in the order their marking key is looked for (a measure row may name a path or a
#: group; a path row may carry a note).
ROW_KINDS: tuple[type[EvidenceRow], ...] = (
    MeasureRow,
    PathRow,
    GroupRow,
    ShareRow,
    ScoreRow,
    CanaryRow,
    SampleRow,
    EnvironmentRow,
    NoteRow,
)


def parse_row(row: dict[str, Any], where: str = "evidence row") -> EvidenceRow:
    """The typed row for one details dict; ``ValueError`` naming ``where`` and the bad key when
    it is none of the declared kinds or a field has the wrong type."""
    if not isinstance(row, dict):
        raise ValueError(f"{where} must be an object, got {type(row).__name__}")
    for kind in ROW_KINDS:
        if kind.key in row:
            try:
                return kind.model_validate(row)
            except ValidationError as err:
                e = err.errors()[0]
                key = ".".join(str(x) for x in e["loc"])
                raise ValueError(
                    f"{where} ({kind.__name__}): {key}: {e['msg']} (got {e.get('input')!r})"
                ) from None
    keys = ", ".join(repr(k) for k in list(row)[:8])
    raise ValueError(
        f"{where} is none of the declared evidence rows (interp_audit/audit/evidence.py): "
        f"it has none of the keys {', '.join(k.key for k in ROW_KINDS)} (its keys: {keys})"
    )


def parse_rows(rows: list[dict[str, Any]], where: str = "details") -> list[EvidenceRow]:
    return [parse_row(r, f"{where}[{i}]") for i, r in enumerate(rows)]
