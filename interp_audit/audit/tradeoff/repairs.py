"""The repairs a trade-off sweeps, each a context that yields the audit context to measure on.

* component ablation (zero / mean / resample) of the top-k ranked components;
* SAE-feature ablation (zero / mean, the SAE's error term kept) of the top-k ranked features;
* concept erasure (LEACE) at residual sites, learnt from the reference contrast: the map a
  repair folds into weights (``interp-audit repair``), applied with hooks;
* a retrained baseline: another model (same tokenizer) audited on the same units, optionally
  with some variables masked in its input (fairness through unawareness, blanket invariance).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from interp_audit.audit.context import AuditContext
from interp_audit.core.errors import SpecError

__all__ = [
    "Baseline",
    "Repair",
    "baseline_repair",
    "component_repairs",
    "erasure_repairs",
    "feature_repairs",
]

MASK_VALUE = "?"


@dataclass(frozen=True)
class Repair:
    """One configuration of the sweep.

    ``apply(ctx)`` is a context manager yielding the context to measure: the audited model with
    hooks attached (removed on exit, also on error) or another model's context.
    ``skipped_checks``: re-run checks that cannot run on it (a baseline whose hidden variables
    leave no unit whose input changes along the check's contrast).
    """

    name: str
    family: str
    k: int
    components: tuple[str, ...]
    apply: Callable[[AuditContext], contextlib.AbstractContextManager[AuditContext]]
    skipped_checks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Baseline:
    """A retrained model to compare with: ``source`` as ``load_model`` takes it, ``mask`` the
    graph variables its input hides (rendered as the variable's word with ``?``: ``age:?``),
    or a mapping variable -> the word to show instead."""

    source: str
    mask: tuple[str, ...] | dict[str, str | None] = ()
    name: str | None = None

    @property
    def label(self) -> str:
        hidden = list(self.mask)
        return self.name or (
            f"retrained {self.source}" + (f" (input hides {', '.join(hidden)})" if hidden else "")
        )


def _ablated(kind: str, comps: list[str], reference, seed: int):
    from interp_audit.engine.interventions import ablate

    @contextlib.contextmanager
    def apply(ctx: AuditContext) -> Iterator[AuditContext]:
        with ablate(ctx.subject, comps, kind=kind, reference=reference, seed=seed):
            yield ctx

    return apply


def component_repairs(
    ranking: list[str], ks: tuple[int, ...], kinds: tuple[str, ...], reference, seed: int
) -> list[Repair]:
    """Top-k components for every kind and every k no larger than the ranking."""
    out = []
    for kind in kinds:
        for k in ks:
            if k <= len(ranking):
                comps = ranking[:k]
                out.append(
                    Repair(
                        f"{kind}-ablate top {k}",
                        kind,
                        k,
                        tuple(comps),
                        _ablated(kind, comps, reference, seed),
                    )
                )
    return out


def _erased(sites: list[str], reference, concept: str):
    from interp_audit.engine.interventions import ablate

    @contextlib.contextmanager
    def apply(ctx: AuditContext) -> Iterator[AuditContext]:
        with ablate(ctx.subject, sites, kind="erase", reference=reference, concept=concept):
            yield ctx

    return apply


def erasure_repairs(
    site_sets: list[tuple[str, ...]], reference, concept: str = "contrast"
) -> list[Repair]:
    """One LEACE erasure per site set (``("L1.resid_pre",)``, or ``("L0.resid_pre@1",
    "L0.resid_pre@2")``: fitted at those positions, applied at every position), each applied
    at every residual read up to its site, as the folded repair does; ``k`` is the number of
    blocks whose writes the fold maps."""
    if reference is None:
        raise SpecError("erase learns its concept from a contrast: give the tradeoff a reference")
    from interp_audit.model.components import parse_components

    out = []
    for sites in site_sets:
        comps = parse_components(list(sites))
        c = comps[0]
        label = f"LEACE-erase {concept} at L{c.layer}.{c.kind}"
        at = [str(x.pos) for x in comps if x.pos is not None]
        if at:
            label += f" (fitted at positions {', '.join(at)})"
        blocks = c.layer + (c.kind == "resid_post")
        out.append(
            Repair(label, "erase", blocks, tuple(sites), _erased(list(sites), reference, concept))
        )
    return out


def _features_ablated(sae, kind: str, feats: list[str], reference):
    from interp_audit.methods.features.ablation import ablate_features

    @contextlib.contextmanager
    def apply(ctx: AuditContext) -> Iterator[AuditContext]:
        with ablate_features(ctx.subject, sae, feats, kind=kind, reference=reference):
            yield ctx

    return apply


def feature_repairs(
    sae, ranking: list[str], ks: tuple[int, ...], kinds: tuple[str, ...], reference
) -> list[Repair]:
    """Top-k SAE features (the error node is never ablated) for every kind and k."""
    feats = [f for f in ranking if not f.endswith("sae_err")]
    out = []
    for kind in kinds:
        if kind not in ("zero", "mean"):
            raise SpecError(f"SAE feature ablation kind {kind!r}: use 'zero' or 'mean'")
        for k in ks:
            if k <= len(feats):
                out.append(
                    Repair(
                        f"SAE {kind}-ablate top {k} features",
                        f"sae-{kind}",
                        k,
                        tuple(feats[:k]),
                        _features_ablated(sae, kind, feats[:k], reference),
                    )
                )
    return out


def masked_model(cm, mask: tuple[str, ...] | dict[str, str]):
    """The causal model whose renderer shows ``mask``'s variables as a constant word."""
    from interp_audit.causal.model import Renderer

    words = dict(cm.render.words)
    pairs = mask.items() if isinstance(mask, dict) else ((v, None) for v in mask)
    for var, word in pairs:
        if var not in cm.render.slots:
            raise SpecError(
                f"baseline mask names {var!r}, which the input does not show "
                f"(rendered variables: {cm.render.slots})"
            )
        if word is None:
            spec = words.get(var, "{}")
            if not isinstance(spec, str):
                raise SpecError(
                    f"baseline mask {var!r}: its render.words is a table, so give the word the "
                    f"baseline shows instead (mask: {{{var}: WORD}}; on the command line "
                    f"{var}=WORD)"
                )
            word = spec.format(MASK_VALUE)
        words[var] = word.replace("{", "{{").replace("}", "}}")  # a constant format string
    return dataclasses.replace(cm, render=Renderer(cm.render.template, words))


def baseline_repair(
    baseline: Baseline,
    ctx: AuditContext,
    prepare: Callable[..., AuditContext],
    needs: list[tuple[str, str]],
    load: dict[str, Any],
) -> Repair:
    """Load the baseline and build its audit context now, so that every problem (a mask
    without a graph, another tokenizer) stops the sweep before it starts. ``needs``: (check,
    contrast) pairs the re-run checks read; a check whose contrast the mask empties (no unit's
    input changes along it once the variables are hidden) is not run on this baseline, and
    its row says so. ``load``: ``load_model`` keywords (the spec's dtype and weight
    processing)."""
    from interp_audit.model.loading import load_model

    cm = ctx.causal.model if ctx.causal is not None else None
    if baseline.mask and cm is None:
        raise SpecError(
            f"baseline {baseline.source!r} hides {list(baseline.mask)}: hiding input variables "
            "needs the spec's causal section (its render template)"
        )
    source = baseline.source
    if not source.startswith("zoo:") and (ctx.base / source).exists():
        source = str((ctx.base / source).resolve())  # relative to the spec, as the model's
    subject = load_model(source, device=str(ctx.subject.device), **load)
    model = masked_model(cm, baseline.mask) if baseline.mask else cm
    other = prepare(subject, model)
    _same_tokenizer(ctx, other, baseline.source)
    skipped = tuple(check for check, contrast in needs if contrast not in other.contrasts)

    @contextlib.contextmanager
    def apply(_: AuditContext) -> Iterator[AuditContext]:
        yield other

    return Repair(baseline.label, "retrained", 0, (), apply, skipped)


def _same_tokenizer(ctx: AuditContext, other: AuditContext, source: str) -> None:
    """The baseline must read text as the audited model does: its effects and utility are
    compared unit by unit with the audited model's."""
    cm = ctx.causal.model if ctx.causal is not None else None
    for answer in (cm.answers if cm is not None else None) or ():
        mine, theirs = ctx.subject.answer_token(answer), other.subject.answer_token(answer)
        if list(mine) != list(theirs):
            raise SpecError(
                f"baseline {source!r} reads the answer {answer!r} as token {list(theirs)}, the "
                f"audited model as {list(mine)}: a baseline needs the same tokenizer"
            )
    for name, cs in ctx.contrasts.items():
        for text in (cs.clean_text or ())[:20]:
            mine, theirs = ctx.subject.to_tokens(text), other.subject.to_tokens(text)
            if list(mine) != list(theirs):
                raise SpecError(
                    f"baseline {source!r} tokenizes {text!r} (contrast {name!r}) as "
                    f"{list(theirs)}, the audited model as {list(mine)}: a baseline needs the "
                    "same tokenizer"
                )
