"""Locate with SAE features (spec methods ``sae_patch`` and ``sae_atp``), with feature cards.

The SAE is named as a spec names a model: ``zoo:NAME`` (shipped), a folder in sae_lens's save
format (relative to the spec), or a hub release with ``sae_id`` (e.g. ``gpt2-small-res-jb`` /
``blocks.8.hook_resid_pre``; downloaded once by sae_lens, then cached). Exact patching
(``sae_patch``) patches every feature one at a time with the SAE's error term kept, and the error
itself as one more node; ``sae_atp`` is the gradient estimate of the same numbers. The top
features get cards (examples, direct effect, effect with its CI) stored with the effects, so the
report shows what they mean.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from interp_audit.engine.contrasts import ContrastSet
from interp_audit.engine.effects import Effects
from interp_audit.methods.locate.registry import LocateMethod, register_locate
from interp_audit.model.metrics import Metric
from interp_audit.model.subject import Subject

__all__ = ["locate_features", "resolve_sae"]


def resolve_sae(
    subject: Subject, source: str, *, sae_id: str | None = None, base: Path | None = None
):
    """Load the SAE a spec names: ``zoo:NAME``, a folder (relative to ``base``), or a release
    with ``sae_id``; checked against ``subject`` (its hook exists, widths match)."""
    from interp_audit.methods.features.saes import load_sae

    if sae_id is None and not source.startswith("zoo:"):
        path = Path(source)
        path = path if path.is_absolute() else (base or Path.cwd()) / path
        return load_sae(str(path) if path.is_dir() else source, subject)
    return load_sae(source, subject, sae_id=sae_id)


def locate_features(
    subject: Subject,
    contrast: ContrastSet,
    metric: Metric,
    *,
    method: Literal["sae_patch", "sae_atp"],
    sae,
    sae_name: str = "",
    cards: int = 5,
    seed: int = 0,
) -> Effects:
    """Feature effects (features + the error node) with cards for the top ``cards`` features
    (by absolute effect, the error node excluded) in ``meta["cards"]``."""
    from interp_audit.methods.features.cards import feature_cards
    from interp_audit.methods.features.patching import attribute_features, patch_features

    run = patch_features if method == "sae_patch" else attribute_features
    eff = run(subject, contrast, metric, sae)
    top = [c for c, _ in eff.top(cards + 1) if not c.endswith("sae_err")][:cards]
    if top:
        tokens = _both_sides(contrast)
        made = feature_cards(
            subject,
            sae,
            top,
            tokens[0],
            tokens[1],
            effects=eff,
            contrast=contrast,
            metric=metric,
            seed=seed,
        )
        eff.meta["cards"] = made.to_dict()
    eff.meta["sae"] = sae_name
    return eff


class SaeOptions(BaseModel):
    """The spec keys of ``sae_patch`` / ``sae_atp`` steps."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    sae: str  # zoo:NAME, a folder (sae_lens format, relative to the spec), or a hub release
    sae_id: str | None = None  # the SAE within a hub release (e.g. blocks.8.hook_resid_pre)
    cards: int = Field(5, ge=0)  # feature cards for this many top features


def _run(method: str):
    def run(step, contrast, metric, ctx):
        from interp_audit.core.errors import SpecError

        if step.per_position:
            raise SpecError(f"locate method {method!r} has no per_position mode")
        opts = step.options
        return locate_features(
            ctx.subject,
            contrast,
            metric,
            method=method,
            sae=resolve_sae(ctx.subject, opts.sae, sae_id=opts.sae_id, base=ctx.base),
            sae_name=opts.sae if opts.sae_id is None else f"{opts.sae}/{opts.sae_id}",
            cards=opts.cards,
            seed=ctx.seed,
        )

    return run


register_locate(
    LocateMethod(
        "sae_patch",
        _run("sae_patch"),
        "exact patching of every SAE feature, the SAE's error term as one more node "
        "(Marks et al. 2024), with feature cards",
        options=SaeOptions,
        units="features",
    )
)
register_locate(
    LocateMethod(
        "sae_atp",
        _run("sae_atp"),
        "attribution patching over SAE features and the error node, with feature cards",
        options=SaeOptions,
        exact=False,
        units="features",
    )
)


def _both_sides(contrast: ContrastSet):
    """Clean and counterfactual rows stacked (examples for the cards) and their mask."""
    import torch

    return (
        torch.cat([contrast.clean, contrast.counterfactual]),
        torch.cat([contrast.attention_mask(), contrast.attention_mask("counterfactual")]),
    )
