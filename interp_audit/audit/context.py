"""What a check runner sees: the subject, the built contrasts, the metric, located effects."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..contrast import ContrastSet
    from ..effects import Effects
    from ..metrics import Metric
    from ..subject import Subject

__all__ = ["AuditContext"]


@dataclass
class AuditContext:
    """Shared state of one audit run, handed to every check runner.

    ``base`` is the spec's folder (relative data files resolve against it); ``effects`` holds
    the located Effects by locate-step name, so checks reuse a sweep instead of re-running it.
    """

    subject: Subject
    contrasts: dict[str, ContrastSet]
    metric: Metric
    seed: int = 0
    base: Path = field(default_factory=Path.cwd)
    effects: dict[str, Effects] = field(default_factory=dict)

    def file(self, name: str) -> Path:
        """A data file named in the spec, relative to the spec's folder."""
        path = Path(name)
        return path if path.is_absolute() else self.base / path
