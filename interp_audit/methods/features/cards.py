"""Feature cards: what one SAE feature means, shown in Jupyter and in the HTML report.

A card answers the three questions a reviewer asks of a located feature (as Neuronpedia's
dashboards do, but from the audit's own data): where does it fire (top-activating examples, the
firing token highlighted), what does it write (its direct effect: for causal LMs the tokens its
decoder direction promotes and suppresses through the final norm treated as linear; for
encoders its direct effect on the audited embedding metric, and the anchors it points to), and
how much of the audited behaviour it carries (its patching effect, with a bootstrap CI over
pairs, from ``patch_features``' per-example values).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from interp_audit.core.errors import AuditError
from interp_audit.engine.effects import Effects
from interp_audit.model.subject import Subject

__all__ = ["ActivatingExample", "FeatureCard", "FeatureCards", "feature_cards"]


@dataclass(frozen=True)
class ActivatingExample:
    """One text: its tokens, the feature's activation on each, and where it peaks."""

    tokens: list[str]
    activations: list[float]
    peak: int

    @property
    def max(self) -> float:
        return self.activations[self.peak]

    def to_html(self, scale: float) -> str:
        spans = []
        for i, (tok, a) in enumerate(zip(self.tokens, self.activations, strict=True)):
            alpha = 0.0 if scale <= 0 else max(0.0, min(1.0, a / scale))
            style = f"background:rgba(255,140,0,{alpha:.2f});padding:0 1px"
            if i == self.peak and a > 0:
                style += ";border-bottom:2px solid #c62828;font-weight:bold"
            spans.append(f"<span title='{a:.3f}' style='{style}'>{html.escape(tok)}</span>")
        return " ".join(spans)


@dataclass(frozen=True)
class FeatureCard:
    """One SAE feature: examples, direct effect, effect on the audited metric (with its CI).

    ``direct_kind`` is ``"logits"`` (promoted/suppressed are vocabulary tokens and their direct
    logit effect per unit of activation) or ``"anchors"`` (encoders: named anchor embeddings and
    the cosine of the decoder direction with each). ``direct_metric`` is the encoder's direct
    effect on the audited metric: the mean change when the feature's contribution is removed from
    the pooled embedding only (exact for an SAE on the final hidden state), with its CI.
    """

    label: str
    feature: int
    hook: str
    examples: list[ActivatingExample]
    density: float  # share of real tokens where the feature fires
    direct_kind: str | None = None
    promoted: list[tuple[str, float]] = field(default_factory=list)
    suppressed: list[tuple[str, float]] = field(default_factory=list)
    direct_metric: tuple[float, float, float] | None = None  # mean, lo, hi
    metric: str | None = None
    effect: tuple[float, float, float] | None = None  # mean change of the metric, lo, hi
    share: float | None = None  # normalised effect (0 none, 1 the whole gap)
    method: str | None = None
    confidence: float = 0.95

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["examples"] = [asdict(e) for e in self.examples]
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureCard:
        d = dict(d)
        d["examples"] = [ActivatingExample(**e) for e in d["examples"]]
        for key in ("promoted", "suppressed"):
            d[key] = [tuple(x) for x in d.get(key, [])]
        for key in ("direct_metric", "effect"):
            d[key] = tuple(d[key]) if d.get(key) is not None else None
        return cls(**d)

    def to_html(self) -> str:
        pct = int(round(100 * self.confidence))
        scale = max((e.max for e in self.examples), default=0.0)
        ex = "".join(
            f"<tr><td>{e.max:.2f}</td>"
            f"<td style='font-family:monospace'>{e.to_html(scale)}</td></tr>"
            for e in self.examples
        )
        parts = [
            f"<div style='border:1px solid #ccc;border-radius:4px;padding:6px 10px;margin:8px 0'>"
            f"<b>{html.escape(self.label)}</b> <small>({html.escape(self.hook)}, fires on "
            f"{100 * self.density:.1f}% of tokens)</small>"
        ]
        if self.effect is not None:
            m, lo, hi = self.effect
            share = "" if self.share is None else f"; share of the gap {self.share:+.3f}"
            parts.append(
                f"<div>effect on {html.escape(str(self.metric))} ({html.escape(str(self.method))}):"
                f" <b>{m:+.4f}</b> [{lo:+.4f}, {hi:+.4f}] ({pct}% CI){share}</div>"
            )
        if self.direct_metric is not None:
            m, lo, hi = self.direct_metric
            parts.append(
                f"<div>direct effect on the {html.escape(str(self.metric))} gap (its "
                f"contribution removed from both sides' pooled embeddings): <b>{m:+.4f}</b> "
                f"[{lo:+.4f}, {hi:+.4f}]</div>"
            )
        if self.direct_kind:
            what = "direct logit effect" if self.direct_kind == "logits" else "cosine with"

            def cells(rows):
                return ", ".join(f"{html.escape(repr(t))} {v:+.3f}" for t, v in rows)

            parts.append(
                f"<div><small>{what}: promoted {cells(self.promoted)}<br>"
                f"suppressed {cells(self.suppressed)}</small></div>"
            )
        parts.append(
            f"<table><tr><th>max</th><th>top-activating examples</th></tr>{ex}</table></div>"
        )
        return "".join(parts)

    def _repr_html_(self) -> str:
        return self.to_html()

    def __repr__(self) -> str:
        eff = "" if self.effect is None else f", effect {self.effect[0]:+.4f}"
        top = self.examples[0] if self.examples else None
        peak = "" if top is None else f", peaks on {top.tokens[top.peak]!r} ({top.max:.2f})"
        return f"FeatureCard({self.label}{eff}{peak})"


class FeatureCards(list):
    """A list of cards that displays itself."""

    def _repr_html_(self) -> str:
        return "".join(c.to_html() for c in self)

    def to_dict(self) -> list[dict[str, Any]]:
        return [c.to_dict() for c in self]


def _index(label: str | int, d_sae: int) -> int:
    from interp_audit.core.errors import SiteError

    try:
        i = int(label) if isinstance(label, int) else int(str(label).rsplit("F", 1)[-1])
    except ValueError:
        raise SiteError(f"{label!r} is not a feature label (L{{layer}}F{{index}})") from None
    if not 0 <= i < d_sae:
        raise SiteError(f"feature {i} does not exist; this SAE has features 0..{d_sae - 1}")
    return i


def feature_cards(
    subject: Subject,
    sae,
    features: Sequence[str | int],
    tokens: Int[Tensor, "n pos"],
    mask: Int[Tensor, "n pos"] | None = None,
    *,
    effects: Effects | None = None,
    contrast=None,
    metric=None,
    anchors: Mapping[str, Tensor] | None = None,
    k_examples: int = 5,
    k_direct: int = 8,
    confidence: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> FeatureCards:
    """Cards for ``features`` of ``sae``, examples drawn from the rows of ``tokens``.

    ``effects``: a ``patch_features`` (or ``attribute_features``) result; its per-example values
    give each card's effect on the audited metric and CI. ``contrast`` + ``metric``: for
    encoders with an SAE on the final hidden state, the direct effect on the metric over the
    contrast's clean side. ``anchors``: named embeddings (encoders) the decoder direction is
    compared with, e.g. the job queries of the audit.
    """
    from interp_audit.engine.batched import cached_run
    from interp_audit.methods.features.saes import check_sae, feature_labels, split_activation
    from interp_audit.stats.bootstrap import Resampling, mean_ci

    hook = check_sae(subject, sae)
    d_sae = int(sae.cfg.d_sae)
    idx = [_index(f, d_sae) for f in features]
    _, labels = feature_labels(sae)
    mask = (tokens != subject.pad_token_id).long() if mask is None else mask
    cache, _ = cached_run(subject, tokens.to(subject.device), mask.to(subject.device), {hook})
    acts = split_activation(sae, cache[hook])[0][..., idx].float().cpu() * mask[..., None].cpu()
    real = mask.bool().cpu()
    kw = Resampling.of(n_boot=n_boot, confidence=confidence, seed=seed).kw()

    logit_dirs = None
    with torch.no_grad():
        w_dec = sae.W_dec[idx].float()
        if subject.adapter.logit_lens and w_dec.shape[-1] == subject.d_model:
            logit_dirs = subject.adapter.logit_directions(w_dec).float().cpu()
        anchor_cos = None
        if anchors:
            names = list(anchors)
            a = torch.stack([torch.as_tensor(anchors[n]).float() for n in names]).to(w_dec.device)
            anchor_cos = torch.nn.functional.cosine_similarity(
                w_dec[:, None, :], a[None], dim=-1
            ).cpu()

    direct_metric = [None] * len(idx)
    if subject.adapter.sentence_embedding and contrast is not None and metric is not None:
        direct_metric = _encoder_direct(subject, sae, hook, idx, contrast, metric, kw)

    cards = FeatureCards()
    for j, i in enumerate(idx):
        a = acts[..., j]
        peaks = a.max(1)
        order = torch.argsort(peaks.values, descending=True)[:k_examples]
        examples = []
        for r in order.tolist():
            if float(peaks.values[r]) <= 0:
                break
            n = int(real[r].sum())
            pos = torch.nonzero(real[r]).flatten().tolist()
            examples.append(
                ActivatingExample(
                    tokens=subject.token_str(tokens[r, pos].tolist()),
                    activations=[round(float(v), 4) for v in a[r, pos]],
                    peak=int(peaks.indices[r]) if n else 0,
                )
            )
        density = float((a[real] > 0).float().mean()) if real.any() else 0.0
        promoted, suppressed, kind = [], [], None
        if logit_dirs is not None:
            kind = "logits"
            vals = logit_dirs[j]
            top = torch.topk(vals, min(k_direct, vals.numel()))
            bot = torch.topk(-vals, min(k_direct, vals.numel()))
            promoted = list(
                zip(subject.token_str(top.indices.tolist()), top.values.tolist(), strict=True)
            )
            suppressed = list(
                zip(subject.token_str(bot.indices.tolist()), (-bot.values).tolist(), strict=True)
            )
        elif anchor_cos is not None:
            kind = "anchors"
            row = anchor_cos[j]
            order_a = torch.argsort(row, descending=True)
            promoted = [(names[t], float(row[t])) for t in order_a[:k_direct].tolist()]
            suppressed = [(names[t], float(row[t])) for t in order_a.flip(0)[:k_direct].tolist()]
        effect = share = method = None
        if effects is not None:
            label = labels[i]
            if label not in effects.components:
                raise AuditError(f"{label} is not in these effects ({effects.method})")
            base = effects.base_values
            if effects.per_example is None or base is None:
                raise AuditError(
                    "feature cards need per-example effects with their base values: pass the "
                    "result of patch_features or attribute_features"
                )
            row = effects.per_example[effects.components.index(label)].double()
            effect = tuple(mean_ci(row - base.double().cpu(), **kw))
            share, method = effects[label], effects.method
        cards.append(
            FeatureCard(
                label=labels[i],
                feature=i,
                hook=hook,
                examples=examples,
                density=density,
                direct_kind=kind,
                promoted=promoted,
                suppressed=suppressed,
                direct_metric=direct_metric[j],
                metric=getattr(metric, "name", None) or (effects.metric if effects else None),
                effect=effect,
                share=share if effects is not None and effects.normalized else None,
                method=method,
                confidence=confidence,
            )
        )
    return cards


@torch.no_grad()
def _encoder_direct(subject, sae, hook, idx, contrast, metric, kw) -> list:
    """Encoders: the feature's direct contribution to the audited gap, metric(clean) -
    metric(counterfactual): the gap minus the gap left when the feature's contribution is
    removed from both sides' pooled embeddings only. With the SAE on the final hidden state this
    is exactly the effect of zero-ablating the feature there; elsewhere it is not defined."""
    from interp_audit.engine.batched import cached_run
    from interp_audit.methods.features.saes import split_activation
    from interp_audit.model.metrics import MetricContext, mean_pool
    from interp_audit.stats.bootstrap import mean_ci

    if hook != subject.final_hook() or metric.readout != "embedding":
        return [None] * len(idx)
    ctx = MetricContext(extra={k: v.to(subject.device) for k, v in contrast.extra.items()})
    sides = []
    for side, toks in (("clean", contrast.clean), ("counterfactual", contrast.counterfactual)):
        mask = contrast.attention_mask(side).to(subject.device)  # token counts may differ
        x = cached_run(subject, toks.to(subject.device), mask, {hook})[0][hook]
        sides.append((x, split_activation(sae, x)[0], mean_pool(x, mask), mask))
    gap = metric(sides[0][2], ctx).double() - metric(sides[1][2], ctx).double()
    out = []
    for i in idx:
        left = [
            metric(pooled - mean_pool(f[..., i : i + 1] * sae.W_dec[i], mask), ctx).double()
            for _, f, pooled, mask in sides
        ]
        out.append(tuple(mean_ci((gap - (left[0] - left[1])).cpu(), **kw)))
    return out
