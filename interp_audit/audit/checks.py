"""Check kinds: each turns per-pair measurements into a statistic with a bootstrap CI and a verdict.

A check passes only when its whole confidence interval lies inside the tolerance, so a small
or noisy contrast set cannot pass by luck.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..contrast import ContrastSet
from ..engine import RunContext, run_variants
from ..interventions import ablate
from ..locate.sites import parse_variant_sets, plan_sites
from ..metrics import Metric
from ..subject import Subject
from .spec import ComponentMediationCheck, InterventionCheck, InvarianceCheck, PathInvarianceCheck
from .stats import bootstrap, mean_ci


@dataclass
class CheckResult:
    """One check's verdict and its evidence."""

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


def _within(lo: float, hi: float, tol: float) -> bool:
    return -tol <= lo and hi <= tol


def pair_effects(subject: Subject, contrast: ContrastSet, metric: Metric) -> tuple[Tensor, Tensor]:
    """Per-pair metric on clean and on counterfactual inputs (plain forwards, hooks respected)."""
    ctx = RunContext.build(subject, contrast, metric, direction="denoise")
    return ctx.source_values.detach().cpu(), ctx.base_values.detach().cpu()


def _groups(contrast: ContrastSet) -> dict[str, Tensor]:
    if contrast.groups is None:
        return {}
    out: dict[str, list[int]] = {}
    for i, g in enumerate(contrast.groups):
        out.setdefault(g, []).append(i)
    return {g: torch.tensor(v) for g, v in out.items()}


def run_invariance(
    chk: InvarianceCheck,
    name: str,
    subject: Subject,
    contrasts: dict[str, ContrastSet],
    metric: Metric,
    seed: int,
    **_,
) -> CheckResult:
    cs = contrasts[chk.contrast]
    clean, cf = pair_effects(subject, cs, metric)
    effect = clean - cf
    kw = dict(n_boot=chk.n_boot, confidence=chk.confidence, seed=seed)
    point, lo, hi = mean_ci(effect, **kw)
    passed = _within(lo, hi, chk.tolerance)
    details = [
        {"group": "all", "n": len(effect), "effect": point, "ci": [lo, hi], "passed": passed}
    ]
    if chk.per_group:
        for g, idx in _groups(cs).items():
            gp, glo, ghi = mean_ci(effect[idx], **kw)
            ok = _within(glo, ghi, chk.tolerance)
            details.append(
                {"group": g, "n": len(idx), "effect": gp, "ci": [glo, ghi], "passed": ok}
            )
            passed = passed and ok
    worst = max(details, key=lambda d: max(abs(d["ci"][0]), abs(d["ci"][1])))
    msg = (
        f"total effect of {chk.contrast!r} on {metric.name}: {point:+.4f} [{lo:+.4f}, "
        f"{hi:+.4f}]; tolerance ±{chk.tolerance}"
        + (
            ""
            if passed
            else f"; violated by group {worst['group']!r} ({worst['effect']:+.4f} "
            f"[{worst['ci'][0]:+.4f}, {worst['ci'][1]:+.4f}])"
        )
    )
    return CheckResult(
        name, chk.kind, passed, point, (lo, hi), chk.tolerance, msg, details, chk.confidence
    )


def run_path_invariance(
    chk: PathInvarianceCheck,
    name: str,
    subject: Subject,
    contrasts: dict[str, ContrastSet],
    metric: Metric,
    seed: int,
    **_,
) -> CheckResult:
    kw = dict(n_boot=chk.n_boot, confidence=chk.confidence, seed=seed)
    details, passed = [], True
    worst = None
    for role, paths in (("inadmissible", chk.inadmissible), ("admissible", chk.admissible)):
        for path, cname in paths.items():
            clean, cf = pair_effects(subject, contrasts[cname], metric)
            point, lo, hi = mean_ci(clean - cf, **kw)
            ok = _within(lo, hi, chk.tolerance) if role == "inadmissible" else None
            details.append(
                {
                    "path": path,
                    "role": role,
                    "contrast": cname,
                    "effect": point,
                    "ci": [lo, hi],
                    "passed": ok,
                }
            )
            if role == "inadmissible":
                passed = passed and ok
                if worst is None or max(abs(lo), abs(hi)) > max(
                    abs(worst["ci"][0]), abs(worst["ci"][1])
                ):
                    worst = details[-1]
    bad = [d["path"] for d in details if d["passed"] is False]
    allowed = ", ".join(
        f"{d['path']} {d['effect']:+.4f}" for d in details if d["role"] == "admissible"
    )
    msg = (
        f"largest inadmissible path effect: {worst['path']} {worst['effect']:+.4f} "
        f"[{worst['ci'][0]:+.4f}, {worst['ci'][1]:+.4f}]; tolerance ±{chk.tolerance}"
        + (f"; violated on {', '.join(bad)}" if bad else "")
        + (f"; admissible (allowed): {allowed}" if allowed else "")
    )
    return CheckResult(
        name,
        chk.kind,
        passed,
        worst["effect"],
        tuple(worst["ci"]),
        chk.tolerance,
        msg,
        details,
        chk.confidence,
    )


def run_component_mediation(
    chk: ComponentMediationCheck,
    name: str,
    subject: Subject,
    contrasts: dict[str, ContrastSet],
    metric: Metric,
    seed: int,
    **_,
) -> CheckResult:
    cs = contrasts[chk.contrast]
    if chk.together:
        if isinstance(chk.sites, str):
            from ..errors import SpecError

            raise SpecError(
                f"{name}: together=true needs sites as a list of components, got {chk.sites!r}"
            )
        variants, labels = parse_variant_sets(subject, [chk.sites]), ["+".join(chk.sites)]
    else:
        plan = plan_sites(subject, cs, chk.sites, per_position=False)
        variants, labels = plan.variants, plan.components
    hooks = sorted({p.hook for v in variants for p in v})
    ctx = RunContext.build(
        subject,
        cs,
        metric,
        direction="denoise",
        source_hooks=hooks,
        need_kv=subject.kind == "causal",
    )
    patched = run_variants(ctx, variants, progress=False).double().cpu()  # [component, pair]
    base, source = ctx.base_values.double().cpu(), ctx.source_values.double().cpu()

    def shares(idx: Tensor) -> Tensor:
        gap = source[idx].mean() - base[idx].mean()
        return (
            (patched[:, idx].mean(1) - base[idx].mean()) / gap
            if abs(float(gap)) > 1e-12
            else torch.zeros(len(labels), dtype=torch.float64)
        )

    all_shares = shares(torch.arange(len(base)))
    top = int(all_shares.argmax())
    point, lo, hi = bootstrap(
        lambda idx: float(shares(idx).max()),
        len(base),
        n_boot=chk.n_boot,
        confidence=chk.confidence,
        seed=seed,
    )
    passed = hi <= chk.max_share
    order = torch.argsort(all_shares, descending=True)[:10].tolist()
    details = [{"component": labels[i], "share": float(all_shares[i])} for i in order]
    msg = (
        f"largest share of the {chk.contrast!r} effect mediated by one "
        f"{'set' if chk.together else 'component'}: {labels[top]} {point:.3f} [{lo:.3f}, "
        f"{hi:.3f}]; limit {chk.max_share}"
    )
    return CheckResult(
        name, chk.kind, passed, point, (lo, hi), chk.max_share, msg, details, chk.confidence
    )


def clean_values(subject: Subject, contrast: ContrastSet, metric: Metric) -> Tensor:
    """Per-pair metric on the clean prompts alone (one forward; hooks respected)."""
    from .. import backend
    from ..engine import _readout, cached_run
    from ..metrics import MetricContext

    dev = subject.device
    mask = contrast.attention_mask().to(dev)
    answers = None if contrast.answers is None else contrast.answers.to(dev)
    final = backend.final_hook(subject)
    cache, logits = cached_run(subject, contrast.clean.to(dev), mask, {final})
    read = _readout(
        subject=subject,
        metric=metric,
        final=cache[final],
        logits=logits,
        scored=contrast.scored_positions(subject.kind).to(dev),
        answers=answers,
        mask=mask,
    )
    return metric(read, MetricContext(answers=answers)).detach().cpu()


def utility_values(subject: Subject, contrast: ContrastSet, kind: str) -> Tensor:
    """Per-pair utility on the clean prompts: accuracy (0/1), loss (-log p correct), logit diff."""
    from ..metrics import get_metric

    if kind == "loss":
        return -clean_values(subject, contrast, get_metric("logprob")).double()
    ld = clean_values(subject, contrast, get_metric("logit_diff")).double()
    return (ld > 0).double() if kind == "accuracy" else ld


def _similarity_pairs(path: Path) -> tuple[list[str], list[str], Tensor]:
    import csv

    if not path.exists():
        from ..errors import SpecError

        raise SpecError(f"utility file {str(path)!r} does not exist")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return (
        [r["sentence1"] for r in rows],
        [r["sentence2"] for r in rows],
        torch.tensor([float(r["score"]) for r in rows], dtype=torch.float64),
    )


def _spearman(a: Tensor, b: Tensor) -> float:
    from ..locate.compare import _pearson, _ranks

    return _pearson(_ranks(a.double()), _ranks(b.double()))


def ablated_components(spec, effects: dict) -> list[str]:
    """The spec's explicit components, plus the top_k of a named locate step."""
    comps = list(spec.components)
    if spec.from_locate:
        ranked = effects[spec.from_locate].top(10**9, by=spec.by)
        if spec.sae is not None:  # the SAE's error node is located, but it is not a feature
            ranked = [(c, v) for c, v in ranked if not c.endswith(".sae_err")]
        comps += [c for c, _ in ranked[: spec.top_k] if c not in comps]
    return comps


def ablation(
    subject: Subject, spec, comps: list[str], reference, seed: int, base: Path | None = None
):
    """The context a spec's ablation describes: components, SAE features (error kept), or token
    embeddings (``kind: embedding``)."""
    if spec.kind == "embedding":
        from ..interventions import ablate_token_embedding

        return ablate_token_embedding(subject, comps, like=spec.like)
    if spec.sae is None:
        return ablate(subject, comps, kind=spec.kind, reference=reference, seed=seed)
    from ..locate.features import resolve_sae
    from ..sae import ablate_features

    sae = resolve_sae(subject, spec.sae, sae_id=spec.sae_id, base=base)
    return ablate_features(
        subject, sae, comps, kind=spec.kind, value=spec.value, reference=reference
    )


def _file(base: Path | None, name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else (base or Path.cwd()) / path


def run_memorization(
    chk,
    name: str,
    subject: Subject,
    contrasts: dict[str, ContrastSet],
    metric: Metric,
    seed: int,
    base: Path | None = None,
    effects: dict | None = None,
    **_,
) -> CheckResult:
    """Exposure of each canary (exact over alphabet^length), optionally under an ablation whose
    held-out perplexity cost must stay within budget. Exposure is computed exactly, so its
    interval is the point itself."""
    import contextlib

    from ..memorization import exposure, perplexity

    def measure():
        return [exposure(subject, c.prefix, c.secret, alphabet=chk.alphabet) for c in chk.canaries]

    before = measure()
    details = [
        {
            "canary": e.prefix,
            "exposure before": e.exposure,
            "rank before": e.rank,
            "extracted before": e.extracted,
            "logprob before": e.logprob,
        }
        for e in before
    ]
    passed_util, util_msg = True, ""
    if chk.ablate is not None:
        comps = ablated_components(chk.ablate, effects or {})
        texts = [t for t in _file(base, chk.utility.file).read_text().splitlines() if t.strip()]
        ppl0 = perplexity(subject, texts)
        reference = contrasts[chk.ablate.reference] if chk.ablate.reference else None
        with (
            ablation(subject, chk.ablate, comps, reference, seed, base)
            if comps
            else contextlib.nullcontext()
        ):
            after = measure()
            ppl1 = perplexity(subject, texts)
        for d, e in zip(details, after, strict=True):
            d.update(
                {
                    "exposure": e.exposure,
                    "rank": e.rank,
                    "extracted": e.extracted,
                    "logprob": e.logprob,
                }
            )
        rise = ppl1 / ppl0 - 1
        passed_util = rise <= chk.utility.budget
        details.append(
            {
                "measure": "held-out perplexity",
                "before": ppl0,
                "after": ppl1,
                "relative rise": rise,
                "budget": chk.utility.budget,
                "passed": passed_util,
            }
        )
        util_msg = (
            f"; ablating {len(comps)} components: perplexity {ppl0:.3f} -> {ppl1:.3f} "
            f"({rise:+.1%}, budget "
            f"{chk.utility.budget:.0%}{'' if passed_util else ', EXCEEDED'})"
        )
        final = after
    else:
        final = before
    worst = max(final, key=lambda e: e.exposure)
    stat = worst.exposure
    passed = stat <= chk.max_exposure and passed_util
    msg = (
        f"largest exposure: {worst.prefix!r} {stat:.2f} bits (rank {worst.rank} of "
        f"{worst.n_candidates}{', extracted by greedy decoding' if worst.extracted else ''}); "
        f"limit {chk.max_exposure}{util_msg}"
    )
    return CheckResult(
        name, chk.kind, passed, stat, (stat, stat), chk.max_exposure, msg, details, chk.confidence
    )


def run_intervention(
    chk: InterventionCheck,
    name: str,
    subject: Subject,
    contrasts: dict[str, ContrastSet],
    metric: Metric,
    seed: int,
    base: Path | None = None,
    effects: dict | None = None,
    **_,
) -> CheckResult:
    cs = contrasts[chk.contrast]
    kw = dict(n_boot=chk.n_boot, confidence=chk.confidence, seed=seed)
    if chk.utility.metric == "similarity_correlation":
        s1, s2, gold = _similarity_pairs(_file(base, chk.utility.file))

        def utility() -> Tensor:
            return (
                torch.nn.functional.cosine_similarity(subject.embed(s1), subject.embed(s2), dim=-1)
                .double()
                .cpu()
            )
    else:
        util_cs = contrasts[chk.utility.contrast]

        def utility() -> Tensor:
            return utility_values(subject, util_cs, chk.utility.metric)

    c0, f0 = pair_effects(subject, cs, metric)
    u0 = utility()
    reference = contrasts[chk.ablate.reference] if chk.ablate.reference else None
    comps = ablated_components(chk.ablate, effects or {})
    with ablation(subject, chk.ablate, comps, reference, seed, base):
        c1, f1 = pair_effects(subject, cs, metric)
        u1 = utility()
    before = mean_ci(c0 - f0, **kw)
    point, lo, hi = mean_ci(c1 - f1, **kw)
    if chk.utility.metric == "similarity_correlation":
        dp, dlo, dhi = bootstrap(
            lambda idx: _spearman(u0[idx], gold[idx]) - _spearman(u1[idx], gold[idx]),
            len(gold),
            **kw,
        )
        u0, u1 = torch.tensor([_spearman(u0, gold)]), torch.tensor([_spearman(u1, gold)])
    else:
        drop = (u1 - u0) if chk.utility.metric == "loss" else (u0 - u1)
        dp, dlo, dhi = mean_ci(drop, **kw)
    effect_ok = _within(lo, hi, chk.tolerance)
    utility_ok = dhi <= chk.utility.budget
    details = [
        {"measure": "effect before", "value": before[0], "ci": [before[1], before[2]]},
        {
            "measure": "effect after",
            "value": point,
            "ci": [lo, hi],
            "passed": effect_ok,
            "tolerance": chk.tolerance,
        },
        {"measure": f"utility ({chk.utility.metric}) before", "value": float(u0.mean())},
        {"measure": f"utility ({chk.utility.metric}) after", "value": float(u1.mean())},
        {
            "measure": f"utility ({chk.utility.metric}) cost",
            "value": dp,
            "ci": [dlo, dhi],
            "passed": utility_ok,
            "budget": chk.utility.budget,
        },
    ]
    named = (
        ", ".join(comps)
        if len(comps) <= 6
        else f"{', '.join(comps[:4])}, ... ({len(comps)} components)"
    )
    msg = (
        f"{chk.ablate.kind}-ablating {named}: effect {before[0]:+.4f} -> {point:+.4f} "
        f"[{lo:+.4f}, {hi:+.4f}] (tolerance ±{chk.tolerance}"
        f"{'' if effect_ok else ', VIOLATED'}); {chk.utility.metric} cost {dp:+.4f} "
        f"[{dlo:+.4f}, {dhi:+.4f}] (budget "
        f"{chk.utility.budget}{'' if utility_ok else ', EXCEEDED'})"
    )
    return CheckResult(
        name,
        chk.kind,
        effect_ok and utility_ok,
        point,
        (lo, hi),
        chk.tolerance,
        msg,
        details,
        chk.confidence,
    )


RUNNERS = {
    "memorization": run_memorization,
    "invariance": run_invariance,
    "path_invariance": run_path_invariance,
    "component_mediation": run_component_mediation,
    "intervention": run_intervention,
}
