"""Trust gates: every audit re-derives a sample of its own numbers the slow, obvious way.

Two failure modes bite users of batched interpretability tools and are invisible in the
results themselves: a batched sweep that disagrees with running one variant at a time (a
mis-indexed patch, a cache reused across rows, positions skipped that mattered), and a wrapper
model (TransformerLens weights converted from Hugging Face) that disagrees with the model the
user actually ships. The gates check both inside the audit, so a report cannot pass on numbers
nobody cross-checked:

* ``batched_vs_serial``: for a seeded sample of the variants of each exact patching result, a
  plain hooked forward of the whole model, one variant at a time (source activations from a
  plain cached source run), must give the same per-pair metric as the batched engine.
* ``wrapper_vs_transformers``: for a model loaded from a local Hugging Face folder (or a GGUF
  file: its float32 conversion by ``transformers``), the wrapper's logits (or last hidden state,
  for encoders without an LM head) on the audit's own prompts must equal those of plain
  ``transformers`` loaded from the same folder, same dtype.
* ``tokens_vs_tokenizer``: the token ids the audit ran on are the ids the model's own
  tokenizer gives for the same text (under the subject's tokenization rule): a contrast set
  built with another tokenization, or a subject that prepends a BOS its tokenizer never adds,
  is caught here rather than audited as inputs the deployed model never sees.

Tolerances are per dtype, relative to the logit scale
(:func:`interp_audit.model.devices.tolerance`).
Logits are compared after subtracting their mean over the vocabulary, so ``center_unembed``
(which shifts every logit of a position by the same amount and changes no probability) passes.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from interp_audit.core.errors import AuditError
from interp_audit.engine.contrasts import ContrastSet
from interp_audit.engine.effects import Effects
from interp_audit.model.devices import tolerance
from interp_audit.model.metrics import Metric, MetricContext, mean_pool
from interp_audit.model.subject import Subject, quiet_tl_warnings

__all__ = [
    "GateResult",
    "TrustGateError",
    "batched_vs_serial",
    "raise_if_broken",
    "run_gates",
    "summary",
    "tokens_vs_tokenizer",
    "wrapper_vs_hf",
]

#: Variants re-run serially per exact patching result, and pairs per variant.
SAMPLE_VARIANTS = 3
SAMPLE_PAIRS = 4


class TrustGateError(AuditError):
    """A trust gate failed: the audit's numbers disagree with their slow reference."""

    def __init__(self, message: str, gates: list[GateResult]):
        super().__init__(message)
        self.gates = gates
        self.report: Any = None  # the AuditReport, gates in its provenance, for saving


@dataclass
class GateResult:
    """One gate's verdict: the largest disagreement found and the tolerance it was held to."""

    name: str
    target: str
    passed: bool
    max_abs_diff: float
    tolerance: float
    checked: int
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        verdict = "ok" if self.passed else "BROKEN"
        return (
            f"{self.name}[{self.target}] {verdict}: max |diff| {self.max_abs_diff:.3g} "
            f"(tolerance {self.tolerance:.3g}, {self.checked} values)"
        )


def _plain_readout(
    subject: Subject, metric: Metric, tokens: Tensor, mask: Tensor, contrast, side: str = "clean"
):
    """The metric's readout from a plain full forward (whatever hooks are attached)."""
    if metric.readout == "embedding":
        hidden = subject.run(tokens, mask, return_type="resid")
        return mean_pool(hidden, mask.to(hidden.device))
    logits = subject.run(tokens, mask)
    scored = subject.scored_positions(contrast, side).to(logits.device)
    return metric.readout_from_logits(logits, scored, contrast.answers)


def _aligned(src: Tensor, base: Tensor, pmap: Tensor | None, dims: tuple[int, ...]) -> Tensor:
    """The source activation at the base run's positions, moved by a plain loop over pairs and
    positions (unequal-length pairs; base values where a position has no counterpart)."""
    if pmap is None:
        return src
    out = base.clone()
    for i in range(pmap.shape[0]):
        for p in range(min(pmap.shape[1], base.shape[dims[0]])):
            q = int(pmap[i, p])
            if q < 0:
                continue
            if len(dims) == 1:
                out[i, p] = src[i, q]
                continue
            for p2 in range(base.shape[dims[1]]):  # [b, head, q, k]: both position axes
                q2 = int(pmap[i, p2])
                if q2 >= 0:
                    out[i, :, p, p2] = src[i, :, q, q2]
    return out


def _patcher(src: Tensor, patches: list, slot_rows):
    """A hook writing the source activation into the base one at each patch (a plain copy);
    a slot patch writes each row's own positions of the slot, one position at a time."""

    def fn(act, *, hook):
        act = act.clone()
        for patch in patches:
            if patch.slot is None:
                idx = (slice(None), *patch.index)
                act[idx] = src[idx].to(act.dtype)
                continue
            rows = slot_rows(patch.slot)
            d = patch.pos_dim
            for i, p in rows.nonzero().tolist():
                index = list(patch.index)
                index[d] = p
                idx = (i, *index)
                act[idx] = src[idx].to(act.dtype)
        return act

    return fn


def _scale(subject: Subject, metric: Metric, tokens: Tensor, mask: Tensor) -> float:
    if metric.readout == "embedding":
        return 1.0
    return float(subject.run(tokens, mask).float().abs().max())


def batched_vs_serial(
    subject: Subject,
    contrast: ContrastSet,
    effects: Effects,
    metric: Metric,
    *,
    target: str,
    seed: int = 0,
    n_variants: int = SAMPLE_VARIANTS,
    n_pairs: int = SAMPLE_PAIRS,
) -> GateResult:
    """Re-run sampled variants of an exact patching result one at a time, plainly hooked."""
    from interp_audit.engine.alignment import Slot
    from interp_audit.methods.locate.sites import plan_sites

    meta = effects.meta
    plan = plan_sites(subject, contrast, meta["sites"], meta.get("per_position", False))
    rng = random.Random(seed)
    variants = sorted(rng.sample(range(len(plan.variants)), min(n_variants, len(plan.variants))))
    pairs = sorted(rng.sample(range(len(contrast)), min(n_pairs, len(contrast))))
    part = contrast[pairs]
    dev = subject.device
    denoise = meta.get("direction", "denoise") == "denoise"
    base_side, source_side = ("counterfactual", "clean") if denoise else ("clean", "counterfactual")
    base_tokens = (part.counterfactual if denoise else part.clean).to(dev)
    source_tokens = (part.clean if denoise else part.counterfactual).to(dev)
    mask = part.attention_mask(base_side).to(dev)
    source_mask = part.attention_mask(source_side).to(dev)
    hooks = sorted({p.hook for i in variants for p in plan.variants[i]})
    source: dict[str, Tensor] = {}
    base: dict[str, Tensor] = {}

    def keep(store, name):
        def fn(act, *, hook):
            store[name] = act.detach().clone()

        return fn

    with subject.hooks([(h, keep(source, h)) for h in hooks]):
        _plain_readout(subject, metric, source_tokens, source_mask, part, source_side)
    align = part.alignment()
    pmap = None if part.equal_lengths else align.position_map(base_side, part.seq_len)
    if pmap is not None:
        with subject.hooks([(h, keep(base, h)) for h in hooks]):
            _plain_readout(subject, metric, base_tokens, mask, part, base_side)
        dims = subject.adapter.position_dims
        source = {h: _aligned(source[h], base[h], pmap, dims(h)) for h in hooks}

    def slot_rows(slot: Slot) -> Tensor:
        return align.slot_positions(slot, base_side, part.seq_len)

    ctx = MetricContext(
        answers=None if part.answers is None else part.answers.to(dev),
        reference=_plain_readout(
            subject, metric, part.clean.to(dev), part.attention_mask().to(dev), part
        )
        if metric.needs_reference
        else None,
        extra={k: v.to(dev) for k, v in part.extra.items()},
    )
    flat = effects.per_example.reshape(len(plan.variants), -1)
    worst, where = 0.0, None
    for i in variants:
        by_hook: dict[str, list] = {}
        for p in plan.variants[i]:
            if p.value is not None:
                raise AuditError(f"trust gate: variant {plan.components[i]!r} has a fixed value")
            by_hook.setdefault(p.hook, []).append(p)
        with subject.hooks([(h, _patcher(source[h], ps, slot_rows)) for h, ps in by_hook.items()]):
            serial = metric(
                _plain_readout(subject, metric, base_tokens, mask, part, base_side), ctx
            )
        batched = flat[i, pairs].to(serial.device, torch.float32)
        patched = ~batched.isnan()  # NaN: a slot that pair lacks (nothing to compare)
        if not bool(patched.any()):
            continue
        diff = float((serial.float() - batched)[patched].abs().max())
        if diff >= worst:
            worst, where = diff, plan.components[i]
    tol = tolerance(subject.dtype, _scale(subject, metric, base_tokens, mask))
    return GateResult(
        name="batched_vs_serial",
        target=target,
        passed=worst <= tol,
        max_abs_diff=worst,
        tolerance=tol,
        checked=len(variants) * len(pairs),
        detail={
            "variants": [plan.components[i] for i in variants],
            "pairs": pairs,
            "worst_component": where,
        },
    )


def hf_folder(subject: Subject) -> Path | None:
    """The Hugging Face folder a subject was converted from (for a GGUF file: the float32
    folder ``transformers`` dequantized it to), or None for other sources."""
    prov = subject.provenance or {}
    # a GGUF file as loaded (not a copy saved after a repair): its float32 conversion
    converted = prov.get("float32_folder") if prov.get("loaded_as") == subject.source else None
    path = Path(str(converted or subject.source))
    cfg = path / "config.json"
    if not (path.is_dir() and cfg.exists()):
        return None
    try:
        meta = json.loads(cfg.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return None if "interp_audit_format" in meta or "model_type" not in meta else path


def wrapper_vs_hf(subject: Subject, contrast: ContrastSet, folder: Path) -> GateResult:
    """Wrapper logits (or final hidden states) against plain ``transformers`` on the prompts."""
    import transformers

    rows = list(range(min(SAMPLE_PAIRS, len(contrast))))
    part = contrast[: len(rows)]
    dev = subject.device
    tokens, mask = part.clean.to(dev), part.attention_mask().to(dev)
    with quiet_tl_warnings():
        auto_name, what = subject.adapter.hf_reference(subject.has_lm_head)
        auto = getattr(transformers, auto_name)
        hf = auto.from_pretrained(str(folder), dtype=subject.dtype).to(dev).eval()
        with torch.no_grad():
            ref = getattr(hf(input_ids=tokens, attention_mask=mask), what)
    if what == "logits":
        got = subject.run(tokens, mask)
        got, ref = (t.float() - t.float().mean(-1, keepdim=True) for t in (got, ref))
    else:
        got, ref = subject.run(tokens, mask, return_type="resid").float(), ref.float()
    keep = mask.bool()  # padded positions are not compared
    diff = float((got - ref).abs()[keep].max())
    tol = tolerance(subject.dtype, float(ref[keep].abs().max()))
    del hf
    return GateResult(
        name="wrapper_vs_transformers",
        target=str(folder),
        passed=diff <= tol,
        max_abs_diff=diff,
        tolerance=tol,
        checked=int(keep.sum()) * int(ref.shape[-1]),
        detail={"compared": what, "transformers": transformers.__version__, "prompts": rows},
    )


def tokens_vs_tokenizer(subject: Subject, contrast: ContrastSet, target: str) -> GateResult:
    """Every prompt's ids against the tokenizer's own, re-tokenized here from the text.

    The reference applies the subject's rule independently: the tokenizer's own ids
    (``tokenizer(text)``) for Hugging Face sources, or the text's tokens after an optional BOS
    (TransformerLens's convention, used on request or for TL models). ``detail`` also counts
    how many prompts differ from the tokenizer's own ids, which is what the deployed model sees.
    """
    tok = subject.tokenizer
    own_rule = subject.tokenization == "tokenizer" or not subject.adapter.causal
    bos = getattr(tok, "bos_token_id", None)
    bad, unlike_own, checked, first = 0, 0, 0, None
    for side, texts, ids, lengths in (
        ("clean", contrast.clean_text, contrast.clean, contrast.lengths_of("clean")),
        (
            "counterfactual",
            contrast.counterfactual_text,
            contrast.counterfactual,
            contrast.lengths_of("counterfactual"),
        ),
    ):
        for i, text in enumerate(texts or ()):
            got = ids[i, : int(lengths[i])].tolist()
            own = [int(t) for t in tok(text)["input_ids"]]
            if own_rule:
                want = own
            else:
                want = [int(t) for t in tok(text, add_special_tokens=False)["input_ids"]]
                if subject.prepend_bos and bos is not None:
                    want = [int(bos), *want]
            checked += 1
            unlike_own += got != own
            if got != want:
                bad += 1
                first = first or f"{side} prompt {i} {text!r}: ran on {got}, expected {want}"
    return GateResult(
        name="tokens_vs_tokenizer",
        target=target,
        passed=bad == 0,
        max_abs_diff=float(bad),
        tolerance=0.0,
        checked=checked,
        detail={
            "rule": subject.tokenization_rule(),
            "mismatched_prompts": bad,
            "differ_from_tokenizer_default": unlike_own,
            **({"first_mismatch": first} if first else {}),
        },
    )


def run_gates(
    subject: Subject,
    contrasts: dict[str, ContrastSet],
    effects: dict[str, Effects],
    located: dict[str, tuple[str, Metric]],
    *,
    seed: int = 0,
) -> list[GateResult]:
    """Every gate that applies to this audit (see :func:`raise_if_broken`).

    Args:
        effects: the audit's located results; exact patching ones are re-derived serially.
        located: per located result, the name of its contrast set and its metric.
    """
    from interp_audit.methods.locate.methods import exact_component_methods

    gates: list[GateResult] = []
    exact = exact_component_methods()
    if subject.tokenizer is not None:
        for name, contrast in contrasts.items():
            if contrast.clean_text is not None:
                gates.append(tokens_vs_tokenizer(subject, contrast, target=name))
    folder = hf_folder(subject)
    if folder is not None:
        first = next(iter(contrasts.values()), None)
        if first is not None:
            gates.append(wrapper_vs_hf(subject, first, folder))
    for k, (name, eff) in enumerate(effects.items()):
        if eff.method not in exact or "sites" not in eff.meta or name not in located:
            continue
        gates.append(
            batched_vs_serial(
                subject,
                contrasts[located[name][0]],
                eff,
                located[name][1],
                target=name,
                seed=seed + k,
            )
        )
    return gates


def summary(gates: list[dict[str, Any]]) -> str:
    """One line per gate from report.json's ``provenance.trust_gates`` (for the HTML report)."""
    return "; ".join(str(GateResult(**g)) for g in gates) or "none ran"


def raise_if_broken(gates: list[GateResult], report: Any = None) -> None:
    """A :class:`TrustGateError` quoting every broken gate's numbers (the report attached)."""
    broken = [g for g in gates if not g.passed]
    if broken:
        err = TrustGateError(
            "trust gate broken, the audit's numbers cannot be trusted: "
            + "; ".join(str(g) for g in broken),
            gates,
        )
        err.report = report
        raise err
