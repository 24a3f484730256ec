"""zoo:canary-lm10: held-out localisation against random controls, and honest unlearning.

Neurons are selected (attribution patching, AtP) on the recall of the LOCATE half of the
canaries and evaluated on the EVALUATE half, which played no part in selecting them; each
located set is compared with random sets of the same size (same count per layer). Unlearning
interventions are labelled by what they touch: zero-ablating neurons and a rank-one edit of
W_out are weight-level, a token-embedding edit is an input redaction (the weights still hold
the numbers). Utility: held-out text, and the canaries' names in non-secret sentences.
"""

from __future__ import annotations

import contextlib
import random

import pandas as pd

from interp_audit.audit.kinds.memorization import random_like
from interp_audit.engine.contrasts import ContrastSet
from interp_audit.engine.effects import Effects
from interp_audit.engine.interventions import ablate, ablate_token_embedding
from interp_audit.methods.privacy.edits import rank_one_edit
from interp_audit.methods.privacy.memorization import greedy_completion, perplexity, secret_logprobs
from interp_audit.model.subject import Subject
from interp_audit.zoo import canary10 as C

MATCHED = ("erin", "frank")
LOCATE_DIGITS = 5


def recall_rows(canaries) -> list[dict]:
    """Canary prefix + k digits vs a matched other person's prefix, scored on digit k+1."""
    out = []
    for c in canaries:
        digits = c.secret.split()
        for k in range(LOCATE_DIGITS):
            shown = " ".join(digits[:k])
            for other in MATCHED:
                out.append(
                    {
                        "clean": f"{c.prefix} {shown}".strip(),
                        "counterfactual": f"{other} 's number is {shown}".strip(),
                        "correct": digits[k],
                        "incorrect": str((int(digits[k]) + 1) % 10),
                        "group": c.name,
                    }
                )
    return out


def selection_canaries():
    return [c for c in C.LOCATE if c.repetitions >= 8]


def held_out_canaries():
    return [c for c in C.EVALUATE if c.repetitions >= 8]


def recall_pairs(subject: Subject, canaries=None) -> ContrastSet:
    rows = recall_rows(canaries or selection_canaries())
    return ContrastSet.from_prompts(
        subject,
        [r["clean"] for r in rows],
        [r["counterfactual"] for r in rows],
        answers=[(r["correct"], r["incorrect"]) for r in rows],
        groups=[r["group"] for r in rows],
    )


def locate(subject: Subject) -> Effects:
    from interp_audit.methods.locate.attribution import attribute

    return attribute(subject, recall_pairs(subject), "logprob", sites="neurons", method="atp")


def _mean_logp(subject: Subject, canaries) -> float:
    return float(
        secret_logprobs(subject, [c.prefix for c in canaries], [c.secret for c in canaries]).mean()
    )


def located_vs_random(
    subject: Subject, effects: Effects, k: int = 256, n_random: int = 5, seed: int = 0
) -> pd.DataFrame:
    """Drop in mean log p(secret) (nats) on the selection and the held-out canaries."""
    sel, held = selection_canaries(), held_out_canaries()
    base = (_mean_logp(subject, sel), _mean_logp(subject, held))
    located = [c for c, _ in effects.top(k, by="signed")]
    rng = random.Random(seed)
    sets = [("located", located)] + [
        (f"random {i}", random_like(located, subject, rng)) for i in range(n_random)
    ]
    rows = []
    for name, comps in sets:
        with ablate(subject, comps, "zero"):
            rows.append(
                {
                    "neurons": name,
                    "k": len(comps),
                    "drop on selection canaries": base[0] - _mean_logp(subject, sel),
                    "drop on held-out canaries": base[1] - _mean_logp(subject, held),
                }
            )
    return pd.DataFrame(rows).set_index("neurons")


def unlearning_table(subject: Subject, effects: Effects, k: int = 256) -> pd.DataFrame:
    """Each intervention, labelled, on the held-out canaries: what it removes, what it costs."""
    held = held_out_canaries()
    others = [c for c in C.CANARIES if c not in held and c.repetitions >= 8]
    texts, names = C.held_out(), C.canary_name_contexts()
    located = [c for c, _ in effects.top(k, by="signed")]
    records = [f"{c.prefix} {' '.join(c.secret.split()[:-1])}" for c in held]
    interventions = [
        ("none", "-", contextlib.nullcontext),
        (
            f"zero-ablate {k} located neurons",
            "weight-level",
            lambda: ablate(subject, located, "zero"),
        ),
        (
            "rank-one edits of L1 W_out (each record's keys)",
            "weight edit",
            lambda: rank_one_edit(subject, "L1.mlp", records, C.OTHER_NAMES[:12], texts),
        ),
        (
            "embed the names as an average other name",
            "input redaction",
            lambda: ablate_token_embedding(subject, [c.name for c in held], C.OTHER_NAMES[:12]),
        ),
    ]
    rows = []
    for name, level, make in interventions:
        with make():
            rows.append(
                {
                    "intervention": name,
                    "level": level,
                    "log p(secret), held-out canaries": _mean_logp(subject, held),
                    "extracted (of 16)": sum(
                        greedy_completion(subject, c.prefix, 10) == c.secret.split() for c in held
                    ),
                    "log p(secret), other canaries": _mean_logp(subject, others),
                    "perplexity, held-out text": perplexity(subject, texts),
                    "perplexity, the names in plain sentences": perplexity(subject, names),
                }
            )
    return pd.DataFrame(rows).set_index("intervention")
