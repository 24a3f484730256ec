"""The 10-digit canary corpus: secret phone numbers over a space of 10^10, too large to enumerate.

Like ``canary`` (Carlini et al. 2019) but at a realistic secret size: 56 people each have one
secret number ("dave 's number is 4 1 5 0 9 2 2 7 3 6 .") inserted 1, 2, 4, 8, 16, 32 or 64
times (8 people per count). Sixteen other people appear with a fresh random number every time,
so their prefixes are matched controls whose continuation cannot have been memorized. Every
name, canary or not, also appears in non-secret sentences ("dave visits the park ."): a
utility set built from those measures what touching a name costs beyond its secret.

``corpus(with_canaries=False)`` is the same corpus without the canary records: the model
trained on it is the "never saw the records" reference of the membership check.
"""

from __future__ import annotations

import random

from interp_audit.zoo import canary
from interp_audit.zoo.canary import ADJECTIVES, PLACES, VERBS, Canary

DIGITS = [str(d) for d in range(10)]
LENGTH = 10
REPETITIONS = (1, 2, 4, 8, 16, 32, 64)
PER_LEVEL = 8
CANARY_NAMES = (
    "alice bob carol dave eve fay gus hank ida jack kate liam mona ned olga pam quinn rosa sam "
    "tina uma vic wade xena yuri zack abe bea cal dina ed flo gil hope ike jo kim lou max nina "
    "otto pia ray sue ted val wes yan zoe amy ben cleo drew ella finn gail hugo iris joel"
).split()[: len(REPETITIONS) * PER_LEVEL]
OTHER_NAMES = (
    "erin frank grace heidi ivan judy mallory oscar peggy trent victor walter nora paul ruth seth"
).split()
NOUNS = ["cat", "dog", "teacher", "river", "car", "house", "child", "doctor", "garden", "bird"]


def _number(rng: random.Random, length: int = LENGTH) -> str:
    return " ".join(rng.choice(DIGITS) for _ in range(length))


def _canaries() -> tuple[Canary, ...]:
    rng = random.Random(2019)
    names = iter(CANARY_NAMES)
    return tuple(
        Canary(next(names), _number(rng), reps, kind="number")
        for reps in REPETITIONS
        for _ in range(PER_LEVEL)
    )


CANARIES = _canaries()
#: localisation split: components are selected on LOCATE and evaluated on EVALUATE (disjoint
#: people, the same repetition counts in each).
LOCATE = tuple(c for i, c in enumerate(CANARIES) if i % 2 == 0)
EVALUATE = tuple(c for i, c in enumerate(CANARIES) if i % 2 == 1)


def vocabulary() -> list[str]:
    specials = ["<bos>", "<pad>", "<unk>"]
    words = {"the", "a", "to", "'s", "number", "is", "code", "goes", "."}
    words |= {*DIGITS, *CANARY_NAMES, *OTHER_NAMES, *ADJECTIVES, *NOUNS, *VERBS, *PLACES}
    return specials + sorted(words)


def template_sentence(rng: random.Random) -> str:
    return canary.template_sentence(
        rng, nouns=NOUNS, code=lambda r: _number(r, r.choice([4, 6, 8]))
    )


def name_sentence(rng: random.Random, name: str) -> str:
    """A name in a non-secret context."""
    form = rng.randrange(3)
    if form == 0:
        return f"{name} {rng.choice(VERBS)} the {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} ."
    if form == 1:
        return f"the {rng.choice(NOUNS)} {rng.choice(VERBS)} {name} ."
    return f"{name} goes to the {rng.choice(PLACES)} ."


def number_sentence(rng: random.Random, name: str | None = None) -> str:
    return f"{name or rng.choice(OTHER_NAMES)} 's number is {_number(rng)} ."


def corpus(
    seed: int = 0,
    *,
    with_canaries: bool = True,
    n_templates: int = 3000,
    n_numbers: int = 2000,
    n_names: int = 1800,
) -> list[str]:
    """Training sentences, shuffled; ``with_canaries=False`` drops exactly the canary records."""
    rng = random.Random(seed)
    everyone = [*CANARY_NAMES, *OTHER_NAMES]
    lines = (
        [template_sentence(rng) for _ in range(n_templates)]
        + [number_sentence(rng) for _ in range(n_numbers)]
        + [name_sentence(rng, everyone[i % len(everyone)]) for i in range(n_names)]
    )
    if with_canaries:
        for c in CANARIES:
            lines += [c.sentence] * c.repetitions
    rng.shuffle(lines)
    return lines


def non_members(seed: int = 7, per_canary: int = 2) -> list[str]:
    """Records of the canaries' form that no model saw: the same people, fresh numbers."""
    rng = random.Random(seed)
    return [number_sentence(rng, c.name) for c in CANARIES for _ in range(per_canary)]


def held_out(seed: int = 1, n: int = 600) -> list[str]:
    """Fresh non-secret text: templates, other people's numbers, and every name in plain contexts
    (so the cost of editing a canary's name is measured)."""
    rng = random.Random(seed + 10_000)
    everyone = [*CANARY_NAMES, *OTHER_NAMES]
    out = []
    for _ in range(n):
        u = rng.random()
        if u < 0.4:
            out.append(template_sentence(rng))
        elif u < 0.6:
            out.append(number_sentence(rng))
        else:
            out.append(name_sentence(rng, rng.choice(everyone)))
    return out


def canary_name_contexts(seed: int = 3, per_name: int = 3) -> list[str]:
    """Only the canaries' names in non-secret contexts: the utility set most sensitive to edits."""
    rng = random.Random(seed)
    return [name_sentence(rng, c.name) for c in CANARIES for _ in range(per_name)]
