"""``CheckResult``: one check's verdict with its statistic, confidence interval and evidence."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["CheckResult"]


@dataclass
class CheckResult:
    """One check's verdict and its evidence.

    ``details`` rows are the per-group / per-path / per-measure evidence the report tabulates
    and plots (each with ``ci`` where it has one).
    """

    name: str
    kind: str
    passed: bool
    statistic: float
    ci: tuple[float, float]
    threshold: float
    message: str
    details: list[dict[str, Any]] = field(default_factory=list)
    confidence: float = 0.95

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ci"] = list(self.ci)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckResult:
        kw = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        kw["ci"] = tuple(kw["ci"])
        return cls(**kw)
