"""``memorization``: canaries must not be exposed, optionally under an unlearning intervention.

Exposure (Carlini et al. 2019) is exact over alphabet^length candidates when the space is small
and extrapolated from a skew-normal fit to sampled candidates when it is not (``exposure:``);
the method, sample size and fit are in the details. With ``ablate`` the held-out perplexity
rise must stay in budget, and every intervention is labelled by what it touches: a
**weight-level** intervention (zero-ablating neurons/heads = deleting their weights; a
``rank_one`` edit of W_out) removes the association from the model, an **input redaction**
(``embedding``) only stops the model from seeing the key, an **activation patch** (mean,
resample) changes run-time activations. With ``controls: k`` the located intervention must
beat k random interventions of the same size (same count per layer and kind) on the check's
canaries by ``margin`` nats of log p(secret): select components on some canaries (the locate
step's contrast) and name others here, and the check is a held-out test of the localisation.
"""

from __future__ import annotations

import contextlib
import random
from typing import Literal

import torch
from pydantic import Field, model_validator

from interp_audit.audit.context import AuditContext
from interp_audit.audit.measure import ablated_components, ablation
from interp_audit.audit.registry import CheckKind, register_check
from interp_audit.audit.result import CheckResult
from interp_audit.audit.sections import AblationSpec, CheckSpec, UtilitySpec, _Section
from interp_audit.core.errors import SpecError
from interp_audit.model.components import parse_component


class CanarySpec(_Section):
    """A secret inserted in training: the prefix an attacker knows, the secret it completes."""

    prefix: str
    """The text an attacker knows."""
    secret: str
    """The secret the model may complete it with."""


class ExposureSpec(_Section):
    """How exposure is computed: ``auto`` enumerates up to ``max_exact`` candidates; above
    that a best-first search ranks the secret exactly when at most ``max_nodes`` forwards find
    every more likely candidate, else a skew-normal over ``samples`` uniform candidates is
    extrapolated and clipped into the bounds the search and the samples set."""

    method: Literal["auto", "exact", "search", "extrapolated"] = "auto"
    """``auto``, ``exact`` (enumerate), ``search`` (then extrapolate within bounds) or
    ``extrapolated`` (the raw skew-normal fit, for validation)."""
    samples: int = Field(10_000, ge=100)
    """Uniform candidates scored for the extrapolation."""
    max_exact: int = Field(100_000, ge=1)
    """Largest space enumerated."""
    max_nodes: int = Field(2000, ge=0)
    """Forwards the best-first search may spend (0: no search)."""


class MemorizationCheck(CheckSpec):
    """Largest canary exposure (bits) at most ``max_exposure``."""

    kind: Literal["memorization"]
    """``memorization``."""
    canaries: list[CanarySpec] = Field(min_length=1)
    """Canaries inserted in training."""
    alphabet: list[str] = Field(default_factory=lambda: [str(d) for d in range(10)])
    """Symbols that vary in a secret (each occurrence is free; literal characters between them
    stay): exposure ranks all alphabet^free candidates, however many tokens each spans."""
    max_exposure: float | None = Field(None, ge=0)  # None: no exposure demand (controls only)
    """The largest allowed exposure in bits (None: no exposure demand, controls only). The
    verdict reads the largest exposure's evidence bounds: pass when every canary's upper bound
    is at most this, fail when some canary's lower bound exceeds it, else inconclusive (an
    extrapolated exposure whose bounds straddle the limit)."""
    exposure: ExposureSpec = ExposureSpec()
    """How exposure is computed: exact enumeration or extrapolation (method, samples)."""
    ablate: AblationSpec | None = None
    """Optional unlearning ablation, measured before and after."""
    utility: UtilitySpec | None = None
    """With ``ablate``: the held-out perplexity budget."""
    controls: int = Field(0, ge=0)  # random interventions of the same size
    """Random interventions of the same size the located one must beat."""
    margin: float = 0.0  # nats of mean log p(secret) the located drop must beat every control by
    """Nats of mean log p(secret) by which the located drop must beat every control."""

    @model_validator(mode="after")
    def _utility_with_ablation(self):
        if self.max_exposure is None and not self.controls:
            raise ValueError(
                "a memorization check needs max_exposure (bits), or controls (a localisation "
                "test against random interventions), or both"
            )
        if self.ablate is not None and self.utility is None:
            raise ValueError(
                "a memorization check with 'ablate' needs 'utility' (what the ablation may cost)"
            )
        if self.utility is not None and self.utility.metric != "perplexity":
            raise ValueError("a memorization check's utility is 'perplexity' (held-out text)")
        if self.controls and (
            self.ablate is None
            or self.ablate.kind not in ("zero", "mean", "resample")
            or self.ablate.sae is not None
        ):
            raise ValueError(
                "controls: random interventions of the same size need an 'ablate' of model "
                "components (kind zero, mean or resample)"
            )
        return self


def intervention_level(spec: AblationSpec, comps: list[str]) -> str:
    """What an intervention touches, said plainly in every result."""
    if spec.kind == "embedding":
        return "input redaction (token-embedding edit; the weights still hold the secret)"
    if spec.kind == "rank_one":
        return "weight edit (rank-one updates of W_out, one per key)"
    if spec.sae is not None:
        return "activation patch (SAE features, run time; weights unchanged)"
    if spec.kind == "zero":
        return "weight-level (zero-ablation: the same as deleting these components' weights)"
    return f"activation patch ({spec.kind}-ablation at run time; weights unchanged)"


def random_like(comps: list[str], subject, rng: random.Random) -> list[str]:
    """As many random components as ``comps`` per (layer, kind), none of ``comps`` itself."""
    parsed = [parse_component(c, subject.shape) for c in comps]
    taken = {(p.layer, p.kind, p.head) for p in parsed}
    groups: dict[tuple, int] = {}
    for p in parsed:
        key = (p.layer, p.kind, p.pos) if p.kind in ("neuron", "head") else (None, p.kind, p.pos)
        groups[key] = groups.get(key, 0) + 1
    out = []
    for (layer, kind, pos), count in sorted(groups.items(), key=str):
        at = "" if pos is None else f"@{pos}"
        if kind == "neuron":
            pool = [f"L{layer}N{n}{at}" for n in range(subject.shape.d_mlp)]
            pool = [
                c
                for c, n in zip(pool, range(subject.shape.d_mlp), strict=True)
                if (layer, kind, n) not in taken
            ]
        elif kind == "head":
            pool = [
                f"L{layer}H{h}{at}"
                for h in range(subject.shape.n_heads)
                if (layer, kind, h) not in taken
            ]
        else:
            pool = [
                f"L{layer}.{kind}{at}"
                for layer in range(subject.n_layers)
                if (layer, kind, None) not in taken
            ]
        if len(pool) < count:
            raise SpecError(
                f"controls: cannot draw {count} random {kind} components other than the "
                f"located ones (only {len(pool)} exist)"
            )
        out += rng.sample(pool, count)
    return out


def run(chk: MemorizationCheck, ctx: AuditContext, name: str) -> CheckResult:
    from interp_audit.methods.privacy.memorization import exposure, perplexity, secret_logprobs

    subject = ctx.subject
    ex = chk.exposure
    prefixes = [c.prefix for c in chk.canaries]
    secrets = [c.secret for c in chk.canaries]

    def measure():
        return [
            exposure(
                subject,
                c.prefix,
                c.secret,
                alphabet=chk.alphabet,
                method=ex.method,
                n_samples=ex.samples,
                seed=ctx.seed,
                max_exact=ex.max_exact,
                max_nodes=ex.max_nodes,
            )
            for c in chk.canaries
        ]

    def mean_logp() -> float:
        return float(secret_logprobs(subject, prefixes, secrets, alphabet=chk.alphabet).mean())

    before = measure()
    details = [
        {
            "canary": e.prefix,
            "exposure before": e.exposure,
            "rank before": e.rank,
            "extracted before": e.extracted,
            "logprob before": e.logprob,
            "exposure method": e.method,
            **({f"fit {k}": v for k, v in e.fit.to_dict().items()} if e.fit is not None else {}),
            **({"exposure bounds before": list(e.bounds)} if e.bounds is not None else {}),
            **({"secret tokens": e.n_tokens} if e.n_tokens is not None else {}),
        }
        for e in before
    ]
    passed_util, passed_ctrl, extra_msg, final = True, True, "", before
    if chk.ablate is not None:
        comps = ablated_components(chk.ablate, ctx.effects)
        texts = [t for t in ctx.file(chk.utility.file).read_text().splitlines() if t.strip()]
        level = intervention_level(chk.ablate, comps)
        ppl0, lp0 = perplexity(subject, texts), mean_logp()
        if chk.ablate.kind == "rank_one":
            from interp_audit.methods.privacy.edits import rank_one_edit

            records = [
                f"{c.prefix} {' '.join(c.secret.split()[:-1])}".strip() for c in chk.canaries
            ]
            stack = contextlib.ExitStack()
            for comp in comps:
                stack.enter_context(rank_one_edit(subject, comp, records, chk.ablate.like, texts))
            intervention = stack
        else:
            intervention = ablation(chk.ablate, comps, ctx)
        with intervention:
            after = measure()
            ppl1, lp1 = perplexity(subject, texts), mean_logp()
        for d, e in zip(details, after, strict=True):
            d.update(
                {
                    "exposure": e.exposure,
                    **({"exposure bounds": list(e.bounds)} if e.bounds is not None else {}),
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
        details.append(
            {
                "measure": "intervention",
                "level": level,
                "kind": chk.ablate.kind,
                "components": comps,
            }
        )
        located_drop = lp0 - lp1
        extra_msg = (
            f"; {level}, {len(comps)} components: mean log p(secret) {lp0:.2f} -> {lp1:.2f}, "
            f"perplexity {ppl0:.3f} -> {ppl1:.3f} ({rise:+.1%}, budget "
            f"{chk.utility.budget:.0%}{'' if passed_util else ', EXCEEDED'})"
        )
        if chk.controls:
            rng = random.Random(ctx.seed)
            drops = []
            for _ in range(chk.controls):
                with ablation(chk.ablate, random_like(comps, subject, rng), ctx):
                    drops.append(lp0 - mean_logp())
            drops_t = torch.tensor(drops, dtype=torch.float64)
            best = float(drops_t.max())
            passed_ctrl = located_drop - best >= chk.margin
            p_value = (1 + int((drops_t >= located_drop).sum())) / (chk.controls + 1)
            details.append(
                {
                    "measure": "located vs random controls (drop in mean log p(secret), nats)",
                    "located": located_drop,
                    "controls mean": float(drops_t.mean()),
                    "controls max": best,
                    "controls": drops,
                    "margin": chk.margin,
                    "p (rank among controls)": p_value,
                    "passed": passed_ctrl,
                }
            )
            extra_msg += (
                f"; located drop {located_drop:.2f} nats vs {chk.controls} random controls of "
                f"the same size (max {best:.2f}, mean {float(drops_t.mean()):.2f}; margin "
                f"{chk.margin}{'' if passed_ctrl else ', NOT BEATEN'})"
            )
        final = after
    worst = max(final, key=lambda e: e.exposure)
    stat = worst.exposure
    threshold, ci = chk.max_exposure, _largest_exposure_bounds(final)
    verdict, reason = "pass", ""
    if chk.max_exposure is None:  # a localisation test: located drop minus the best control
        threshold = chk.margin
        stat = located_drop - best
        ci = (stat, stat)
    elif ci[0] > chk.max_exposure:
        verdict = "fail"
        reason = f"the largest exposure's lower bound {ci[0]:.2f} bits exceeds max_exposure"
    elif ci[1] > chk.max_exposure:
        verdict = "inconclusive"
        reason = (
            f"the largest exposure lies in [{ci[0]:.2f}, {ci[1]:.2f}] bits, which straddles "
            f"max_exposure {chk.max_exposure} (more samples or search forwards narrow it)"
        )
    if not (passed_util and passed_ctrl):
        verdict = "fail"
        reason = "; ".join(
            [r for r in (reason,) if r]
            + ([] if passed_util else ["the utility budget is exceeded"])
            + ([] if passed_ctrl else ["random controls are not beaten by the margin"])
        )
    limit = "no limit" if chk.max_exposure is None else f"limit {chk.max_exposure}"
    extracted = ", extracted by greedy decoding" if worst.extracted else ""
    if worst.method == "exact":
        how = f"exact over {worst.n_candidates}"
    elif worst.method == "search":
        how = (
            f"exact by best-first search over {worst.n_candidates:.3g} "
            f"({worst.search.nodes} forwards)"
        )
    else:
        how = f"extrapolated from {worst.fit.n_samples} samples of {worst.n_candidates:.3g}"
        if worst.bounds is not None:
            how += f", bounds [{worst.bounds[0]:.2f}, {worst.bounds[1]:.2f}] bits"
    msg = (
        f"largest exposure: {worst.prefix!r} {worst.exposure:.2f} bits "
        f"(rank {worst.rank:.4g}, {how}"
        f"{extracted}); {limit}{extra_msg}"
    )
    return CheckResult(
        name, chk.kind, verdict, stat, ci, threshold, msg, details, chk.confidence, reason=reason
    )


def _largest_exposure_bounds(exposures) -> tuple[float, float]:
    """Where the largest exposure lies: between the largest lower bound and the largest upper
    bound of the canaries' (exact exposures bound themselves; a raw fit outside its evidence
    bounds widens them to include it)."""
    lows, highs = [], []
    for e in exposures:
        lo, hi = e.bounds if e.bounds is not None else (e.exposure, e.exposure)
        lows.append(min(lo, e.exposure))
        highs.append(max(hi, e.exposure))
    return max(lows), max(highs)


register_check(
    CheckKind(
        "memorization",
        MemorizationCheck,
        run,
        "exposure of inserted canaries at most max_exposure bits (optionally under an "
        "intervention, against random controls)",
        threshold="limit {:g}",
    )
)
