"""Run-time side of the ``causal:`` spec section: load the causal model once per audit and
draw (memoised) path-specific contrasts for contrast sections and graph-derived checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp_audit.audit.causal_spec import CausalSpec, ScmContrast
from interp_audit.causal import CausalModel
from interp_audit.causal.graph import format_path
from interp_audit.core.errors import ContrastError, SpecError


def load_causal(spec: CausalSpec | str | None, base: Path) -> CausalModel | None:
    if spec is None:
        return None
    if isinstance(spec, str):
        return CausalModel.from_spec(spec, base)
    return CausalModel.from_spec(spec.model_dump(mode="python"), base)


@dataclass
class CausalContext:
    """The audit's causal model(s), the subject, and every contrast drawn so far."""

    subject: Any
    model: CausalModel | None
    base: Path
    _cache: dict = field(default_factory=dict)
    _models: dict = field(default_factory=dict)

    def resolve(self, scm: str) -> CausalModel:
        if scm == "causal":
            if self.model is None:
                raise SpecError("scm: causal needs a 'causal' section in the spec")
            return self.model
        if scm not in self._models:
            self._models[scm] = CausalModel.from_spec(scm, self.base)
        return self._models[scm]

    def contrast(self, spec: ScmContrast, name: str | None = None):
        key = spec.model_dump_json()
        if key in self._cache:
            return self._cache[key]
        cm = self.resolve(spec.scm)
        try:
            if spec.factual:
                cs = cm.factual_set(
                    self.subject, n=spec.n, seed=spec.seed, label=spec.label, group_by=spec.group_by
                )
            else:
                value, reference = cm.intervention(spec.source, spec.value, spec.reference)
                cs = cm.contrast(
                    self.subject,
                    source=spec.source,
                    value=value,
                    reference=reference,
                    paths=spec.paths,
                    n=spec.n,
                    seed=spec.seed,
                    label=spec.label,
                    group_by=spec.group_by,
                    name=name,
                )
        except (SpecError, ContrastError) as err:
            where = f"contrasts.{name}" if name else "scm contrast"
            raise type(err)(f"{where}: {err}") from None
        self._cache[key] = cs
        return cs

    def path_contrast(self, source: str, path: tuple[str, ...], **kw):
        """One path's contrast (for graph-derived checks)."""
        spec = ScmContrast(scm="causal", source=source, paths=[format_path(path)], **kw)
        return self.contrast(spec, name=f"{source}: {format_path(path)}")
