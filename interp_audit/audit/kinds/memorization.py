"""``memorization``: canaries must not be exposed, optionally under an unlearning ablation.

Exposure (Carlini et al. 2019) is computed exactly over alphabet^length candidates, so its
interval is the point itself; with ``ablate`` the held-out perplexity rise must stay in budget.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ..context import AuditContext
from ..measure import ablated_components, ablation
from ..registry import CheckKind, register_check
from ..result import CheckResult
from ..sections import AblationSpec, CheckSpec, UtilitySpec, _Section


class CanarySpec(_Section):
    """A secret inserted in training: the prefix an attacker knows, the secret it completes."""

    prefix: str
    secret: str


class MemorizationCheck(CheckSpec):
    """Largest canary exposure (bits) at most ``max_exposure``."""

    kind: Literal["memorization"]
    canaries: list[CanarySpec] = Field(min_length=1)
    alphabet: list[str] = Field(default_factory=lambda: [str(d) for d in range(10)])
    max_exposure: float = Field(ge=0)
    ablate: AblationSpec | None = None
    utility: UtilitySpec | None = None

    @model_validator(mode="after")
    def _utility_with_ablation(self):
        if self.ablate is not None and self.utility is None:
            raise ValueError(
                "a memorization check with 'ablate' needs 'utility' (what the ablation may cost)"
            )
        if self.utility is not None and self.utility.metric != "perplexity":
            raise ValueError("a memorization check's utility is 'perplexity' (held-out text)")
        return self


def run(chk: MemorizationCheck, ctx: AuditContext, name: str) -> CheckResult:
    from ...memorization import exposure, perplexity

    subject = ctx.subject

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
    passed_util, util_msg, final = True, "", before
    if chk.ablate is not None:
        comps = ablated_components(chk.ablate, ctx.effects)
        texts = [t for t in ctx.file(chk.utility.file).read_text().splitlines() if t.strip()]
        ppl0 = perplexity(subject, texts)
        with ablation(chk.ablate, comps, ctx):
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
        details.append({"measure": "ablated components", "components": comps})
        util_msg = (
            f"; ablating {len(comps)} components: perplexity {ppl0:.3f} -> {ppl1:.3f} "
            f"({rise:+.1%}, budget {chk.utility.budget:.0%}"
            f"{'' if passed_util else ', EXCEEDED'})"
        )
        final = after
    worst = max(final, key=lambda e: e.exposure)
    stat = worst.exposure
    passed = stat <= chk.max_exposure and passed_util
    extracted = ", extracted by greedy decoding" if worst.extracted else ""
    msg = (
        f"largest exposure: {worst.prefix!r} {stat:.2f} bits (rank {worst.rank} of "
        f"{worst.n_candidates}{extracted}); limit {chk.max_exposure}{util_msg}"
    )
    return CheckResult(
        name, chk.kind, passed, stat, (stat, stat), chk.max_exposure, msg, details, chk.confidence
    )


register_check(
    CheckKind(
        "memorization",
        MemorizationCheck,
        run,
        "exposure of inserted canaries at most max_exposure bits (optionally under an ablation)",
    )
)
