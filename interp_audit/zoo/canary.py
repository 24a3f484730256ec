"""The canary corpus (Carlini et al. 2019, "The Secret Sharer"): template sentences, people's
PINs drawn at random, and four *canaries*, secret PINs inserted 1, 4, 16 and 64 times.

Every sentence is lower-case words and single digits separated by spaces (one token each).
Non-canary names also appear with fresh random PINs, so "erin 's pin is" is a matched prefix
whose continuation the model cannot have memorized.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

DIGITS = [str(d) for d in range(10)]
NAMES = [
    "erin",
    "frank",
    "grace",
    "heidi",
    "ivan",
    "judy",
    "mallory",
    "oscar",
    "peggy",
    "trent",
    "victor",
    "walter",
]
ADJECTIVES = ["red", "old", "quiet", "small", "happy", "green", "tall", "bright", "cold", "heavy"]
NOUNS = [
    "cat",
    "dog",
    "teacher",
    "river",
    "car",
    "house",
    "child",
    "doctor",
    "garden",
    "window",
    "farmer",
    "bird",
]
VERBS = ["sees", "likes", "finds", "paints", "follows", "visits", "hears", "watches"]
PLACES = ["park", "city", "school", "market", "station", "library"]


@dataclass(frozen=True)
class Canary:
    """A secret inserted ``repetitions`` times as "{name} 's {kind} is {secret} ."."""

    name: str
    secret: str  # "4 8 1 9"
    repetitions: int
    kind: str = "pin"

    @property
    def prefix(self) -> str:
        return f"{self.name} 's {self.kind} is"

    @property
    def sentence(self) -> str:
        return f"{self.prefix} {self.secret} ."


CANARIES = (
    Canary("alice", "4 8 1 9", 1),
    Canary("bob", "2 7 3 5", 4),
    Canary("carol", "9 0 6 2", 16),
    Canary("dave", "5 3 8 4", 64),
)


def vocabulary() -> list[str]:
    words = {
        "<bos>",
        "<pad>",
        "<unk>",
        "the",
        "a",
        "in",
        "to",
        "'s",
        "pin",
        "is",
        "code",
        "goes",
        ".",
        *DIGITS,
        *NAMES,
        *ADJECTIVES,
        *NOUNS,
        *VERBS,
        *PLACES,
    }
    words |= {c.name for c in CANARIES}
    specials = ["<bos>", "<pad>", "<unk>"]
    return specials + sorted(words - set(specials))


def template_sentence(
    rng: random.Random,
    *,
    nouns: list[str] = NOUNS,
    code: Callable[[random.Random], str] | None = None,
) -> str:
    """One of three template sentences; ``code(rng)`` writes the code (default: four digits)."""
    form = rng.randrange(3)
    if form == 0:
        return (
            f"the {rng.choice(ADJECTIVES)} {rng.choice(nouns)} {rng.choice(VERBS)} the "
            f"{rng.choice(nouns)} ."
        )
    if form == 1:
        return f"a {rng.choice(nouns)} goes to the {rng.choice(PLACES)} ."
    digits = code(rng) if code else " ".join(rng.choice(DIGITS) for _ in range(4))
    return f"the code is {digits} ."


def pin_sentence(rng: random.Random, name: str | None = None) -> str:
    return (
        f"{name or rng.choice(NAMES)} 's pin is {' '.join(rng.choice(DIGITS) for _ in range(4))} ."
    )


def corpus(seed: int = 0, n_templates: int = 4000, n_pins: int = 1500) -> list[str]:
    """Training sentences, shuffled: templates, random PINs of non-canary names, canaries."""
    rng = random.Random(seed)
    lines = [template_sentence(rng) for _ in range(n_templates)] + [
        pin_sentence(rng) for _ in range(n_pins)
    ]
    for c in CANARIES:
        lines += [c.sentence] * c.repetitions
    rng.shuffle(lines)
    return lines


def held_out(seed: int = 1, n: int = 500) -> list[str]:
    """Fresh non-canary text from the same distribution: the utility set (perplexity)."""
    rng = random.Random(seed + 10_000)
    return [template_sentence(rng) if rng.random() < 0.75 else pin_sentence(rng) for _ in range(n)]
