"""Built-in locate methods: exact patching and the attribution estimates, registered by name."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from interp_audit.methods.locate.registry import LocateMethod, all_registered, register_locate


class _IGOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    steps: int = Field(16, ge=1, le=1024)


def _patch(step, contrast, metric, ctx):
    from interp_audit.methods.locate.patching import patch

    return patch(
        ctx.subject,
        contrast,
        metric,
        sites=step.sites,
        per_position=step.per_position,
        progress=False,
    )


def _attribution(name: str):
    def run(step, contrast, metric, ctx):
        from interp_audit.methods.locate.attribution import attribute

        kw = {"steps": step.options.steps} if step.options is not None else {}
        return attribute(
            ctx.subject,
            contrast,
            metric,
            sites=step.sites,
            per_position=step.per_position,
            method=name,
            **kw,
        )

    return run


register_locate(LocateMethod("patch", _patch, "exact activation patching (batched)"))
register_locate(
    LocateMethod("atp", _attribution("atp"), "attribution patching (Nanda 2023)", exact=False)
)
register_locate(
    LocateMethod(
        "atp*",
        _attribution("atp*"),
        "AtP* with the QK fix and GradDrop (Kramár et al. 2024): magnitudes",
        exact=False,
    )
)
register_locate(
    LocateMethod(
        "ig",
        _attribution("ig"),
        "integrated gradients per hook (Marks et al. 2024)",
        options=_IGOptions,
        exact=False,
    )
)


from interp_audit.methods.locate import confirm as _confirm  # noqa: E402, F401 (registers confirm)
from interp_audit.methods.locate import features as _features  # noqa: E402, F401 (registers sae_patch and sae_atp)


def locate_methods() -> dict[str, LocateMethod]:
    """Every registered locate method (the built-in ones, registered above, first)."""
    return all_registered()


def exact_component_methods() -> tuple[str, ...]:
    """Methods whose Effects are exact interventions on model components (registry flags)."""
    return tuple(n for n, m in locate_methods().items() if m.exact and m.units == "components")


def feature_methods() -> tuple[str, ...]:
    """Methods whose Effects are over SAE features (registry flag ``units``)."""
    return tuple(n for n, m in locate_methods().items() if m.units == "features")


def run_locate(step: Any, contrast: Any, metric: Any, ctx: Any):
    """Run one spec locate step and label its Effects with where they came from."""
    eff = locate_methods()[step.method].run(step, contrast, metric, ctx)
    eff.meta.setdefault("contrast", step.contrast)
    eff.meta.setdefault("sites", step.sites)
    return eff
