"""What a check runner sees: the subject, the built contrasts, the metric, located effects."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from interp_audit.audit.causal_run import CausalContext
    from interp_audit.engine.contrasts import ContrastSet
    from interp_audit.engine.effects import Effects
    from interp_audit.model.metrics import Metric
    from interp_audit.model.subject import Subject

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
    causal: CausalContext | None = None  # the spec's causal model and its drawn contrasts

    def file(self, name: str) -> Path:
        """A data file named in the spec, relative to the spec's folder."""
        path = Path(name)
        return path if path.is_absolute() else self.base / path
