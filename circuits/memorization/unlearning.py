"""Locate where zoo:canary-lm recalls its secrets, ablate it, and prove what it cost.

Localisation: for each high-repetition canary and each secret digit, a pair (canary prefix up
to that digit, the same with a non-canary name whose PINs were random in training); metric:
log-probability of the true next digit. Exact patching over every MLP neuron (and heads, and
residual positions); the neurons with the largest effects are zero-ablated, and the position
that carries all of the recall (the name, ``L0.resid_pre@1``) is edited token-conditionally.
Controls: as many random neurons; two non-canary names edited the same way. Reported per
canary: exposure, log p(secret) and greedy extraction; and held-out perplexity.
"""

from __future__ import annotations

import contextlib
import random

from interp_audit.engine.contrasts import ContrastSet
from interp_audit.engine.effects import Effects
from interp_audit.engine.interventions import ablate, ablate_token_embedding
from interp_audit.methods.privacy.memorization import exposure, perplexity
from interp_audit.model.subject import Subject
from interp_audit.zoo import canary as C

MATCHED = ("erin", "frank", "grace", "heidi")


def recall_pairs(subject: Subject, canaries=None) -> ContrastSet:
    """Canary prefix + k secret digits vs a matched non-canary name, scored on digit k+1."""
    canaries = canaries or [c for c in C.CANARIES if c.repetitions >= 16]
    clean, cf, answers, groups = [], [], [], []
    for c in canaries:
        digits = c.secret.split()
        for k in range(len(digits)):
            shown = " ".join(digits[:k])
            for other in MATCHED:
                clean.append(f"{c.prefix} {shown}".strip())
                cf.append(f"{other} 's pin is {shown}".strip())
                answers.append((digits[k], str((int(digits[k]) + 1) % 10)))
                groups.append(c.name)
    return ContrastSet.from_prompts(subject, clean, cf, answers=answers, groups=groups)


def locate_neurons(subject: Subject, pairs: ContrastSet | None = None) -> Effects:
    from interp_audit.methods.locate.patching import patch

    pairs = pairs or recall_pairs(subject)
    return patch(subject, pairs, "logprob", sites="neurons", progress=False)


def top_neurons(effects: Effects, k: int) -> list[str]:
    return [c for c, _ in effects.top(k, by="signed")]


def measure(
    subject: Subject, ablated: list[str] | None = None, forget_names: list[str] | None = None
) -> dict:
    """Held-out perplexity, and per canary: exposure (bits), log p(secret), greedy extraction."""
    if forget_names:
        ctx = ablate_token_embedding(subject, forget_names, like=C.NAMES)
    else:
        ctx = ablate(subject, ablated, kind="zero") if ablated else contextlib.nullcontext()
    with ctx:
        row = {"perplexity": perplexity(subject, C.held_out())}
        for c in C.CANARIES:
            e = exposure(subject, c.prefix, c.secret)
            row[f"{c.name} x{c.repetitions} exposure"] = e.exposure
            row[f"{c.name} x{c.repetitions} log p"] = e.logprob
            row[f"{c.name} x{c.repetitions} extracted"] = float(e.extracted)
    return row


def random_neurons(subject: Subject, k: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    d_mlp = subject.shape.d_mlp
    cells = rng.sample([(layer, n) for layer in range(subject.n_layers) for n in range(d_mlp)], k)
    return [f"L{layer}N{n}" for layer, n in cells]


def unlearning_table(
    subject: Subject | None = None, k: int = 256, n_random: int = 5, effects: Effects | None = None
):
    """Before / located ablation / random ablations of equal size (mean and each).

    ``effects``: a neuron sweep already run (``locate_neurons``), so it is not run twice.
    """
    import pandas as pd

    from interp_audit.model.loading import load_model

    subject = subject or load_model("zoo:canary-lm")
    effects = effects if effects is not None else locate_neurons(subject)
    located = top_neurons(effects, k)
    rows = [
        {"intervention": "none", **measure(subject)},
        {"intervention": f"zero-ablate {k} located neurons", **measure(subject, located)},
    ]
    randoms = [measure(subject, random_neurons(subject, k, seed)) for seed in range(n_random)]
    mean = {key: (sum(r[key] for r in randoms) / n_random) for key in randoms[0]}
    rows.append({"intervention": f"zero-ablate {k} random neurons (mean of {n_random})", **mean})
    # The located residual position is the canary's name (patching L0.resid_pre@1 restores all of
    # the recall): edit it. The control edits a name of the same frequency class that is no canary.
    high = [c.name for c in C.CANARIES if c.repetitions >= 16]
    rows.append(
        {
            "intervention": f"edit: embed {'/'.join(high)} as an average name",
            **measure(subject, forget_names=high),
        }
    )
    rows.append(
        {
            "intervention": "edit control: embed 2 non-canary names as an average name",
            **measure(subject, forget_names=list(C.NAMES[-2:])),
        }
    )
    table = pd.DataFrame(rows)
    table.attrs["located"] = located
    return table
