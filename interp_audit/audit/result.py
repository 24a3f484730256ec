"""``CheckResult``: one check's verdict with its statistic, confidence interval and evidence."""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass, field
from typing import Any

from interp_audit.audit.evidence import EvidenceRow, parse_row, parse_rows
from interp_audit.stats.bootstrap import Verdict

__all__ = ["VERDICT_COLORS", "CheckResult"]

VERDICT_COLORS = {"pass": "#2e7d32", "fail": "#c62828", "inconclusive": "#ef6c00"}


@dataclass
class CheckResult:
    """One check's verdict and its evidence.

    ``verdict`` is ``pass`` (the interval lies inside the tolerance), ``fail`` (entirely
    outside) or ``inconclusive`` (it straddles the tolerance, or there are fewer clusters than
    the check's ``min_clusters``); ``reason`` says which. ``half_width`` is the CI's half-width
    (to read next to ``threshold``); ``clusters`` the number of independent units resampled;
    ``correction`` the multiple-testing correction applied to the check's family of tests.
    ``details`` rows are the per-group / per-path / per-measure evidence the report tabulates
    and plots (each with ``ci`` where it has one); each is one of the row kinds declared in
    :mod:`interp_audit.audit.evidence` (checked here), and :attr:`evidence` reads them typed.
    ``exact``: the statistic is an exact population quantity (exact enumeration of the SCM): it
    has no sampling interval, ``ci`` is the point itself, and the verdict compares the value with
    the threshold.
    """

    name: str
    kind: str
    verdict: Verdict
    statistic: float
    ci: tuple[float, float]
    threshold: float
    message: str
    details: list[dict[str, Any]] = field(default_factory=list)
    confidence: float = 0.95
    reason: str = ""
    clusters: int | None = None
    correction: str | None = None
    exact: bool = False

    def __post_init__(self) -> None:
        # kinds written before verdicts pass a bool here: True is a pass, False a fail
        if isinstance(self.verdict, bool):
            self.verdict = "pass" if self.verdict else "fail"
        if self.verdict not in VERDICT_COLORS:
            raise ValueError(
                f"check {self.name!r}: verdict {self.verdict!r} is not one of "
                f"{', '.join(VERDICT_COLORS)}"
            )
        for i, row in enumerate(self.details):  # a row the plan and report cannot read
            parse_row(row, f"check {self.name!r}: details[{i}]")

    @property
    def evidence(self) -> list[EvidenceRow]:
        """The details as typed evidence rows (:mod:`interp_audit.audit.evidence`)."""
        return parse_rows(self.details, f"check {self.name!r}: details")

    @property
    def passed(self) -> bool:
        """True only for a ``pass`` verdict (kept for code written before verdicts)."""
        return self.verdict == "pass"

    @property
    def half_width(self) -> float:
        return (self.ci[1] - self.ci[0]) / 2

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ci"] = list(self.ci)
        d["passed"] = self.passed
        d["half_width"] = self.half_width
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckResult:
        kw = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        kw["ci"] = tuple(kw["ci"])
        if "verdict" not in kw:
            kw["verdict"] = "pass" if data.get("passed") else "fail"
        return cls(**kw)

    def __repr__(self) -> str:
        return (
            f"CheckResult({self.name!r}, {self.kind}: {self.verdict.upper()}, "
            f"{self.statistic:+.4f} [{self.ci[0]:+.4f}, {self.ci[1]:+.4f}] "
            f"(±{self.half_width:.4f}) vs {self.threshold}; {self.reason})"
        )

    def _repr_html_(self) -> str:
        color = VERDICT_COLORS[self.verdict]
        rows = ""
        for d in self.details:
            cells = "".join(
                f"<td><b>{html.escape(str(k))}</b>: {html.escape(_fmt(v))}</td>"
                for k, v in d.items()
            )
            rows += f"<tr>{cells}</tr>"
        corr = f"<br><small>{html.escape(self.correction)}</small>" if self.correction else ""
        return (
            f"<div><h4>{html.escape(self.name)} ({html.escape(self.kind)}): "
            f"<span style='color:{color}'>{self.verdict.upper()}</span></h4>"
            f"<p>{self.statistic:+.4f}, {int(100 * self.confidence)}% CI "
            f"[{self.ci[0]:+.4f}, {self.ci[1]:+.4f}] (half-width {self.half_width:.4f}) against "
            f"{self.threshold}; {self.clusters if self.clusters is not None else '-'} clusters. "
            f"{html.escape(self.reason)}<br>{html.escape(self.message)}{corr}</p>"
            f"<table>{rows}</table></div>"
        )


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:+.4f}"
    if isinstance(v, list) and v and all(isinstance(x, float) for x in v):
        return "[" + ", ".join(f"{x:+.4f}" for x in v) + "]"
    return str(v)
