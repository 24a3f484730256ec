"""The long prompts of the real-model benchmarks: a shipped passage, cut to an exact token count.

``benchmarks/data/passage.txt`` is an original, public-domain text (CC0), a chronicle of an
invented river town, written by :func:`write_passage` from a fixed seed (so anyone can
regenerate it: ``python benchmarks/long_text.py --write``). Nothing is downloaded.

:func:`name_pairs` builds equal-length prompt pairs of exactly ``n_tokens`` tokens that differ
in one name token, with the answers `` he`` / `` she``:

* ``name_at="start"`` (default): ``"The diary of{ name}." + passage + " Then the author said
  that"``: the name is the 4th token, so every later position differs between the runs (the hard
  case for a sweep: nothing after the name can be reused from the other run);
* ``name_at="end"``: ``passage + " Then{ name} said that"``: the name is 4 tokens from the end.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

PASSAGE = Path(__file__).with_name("data") / "passage.txt"
NAMES = [(" John", " Mary"), (" James", " Sarah"), (" David", " Anna"), (" Michael", " Emma")]
ANSWERS = (" he", " she")

_PLACES = [
    "the mill",
    "the ferry landing",
    "the chapel",
    "the market square",
    "the schoolhouse",
    "the lower bridge",
    "the orchard",
    "the granary",
    "the boatyard",
    "the post office",
    "the inn by the weir",
    "the brickworks",
    "the long meadow",
    "the lock keeper's house",
]
_PEOPLE = [
    "the miller",
    "the ferryman",
    "the schoolteacher",
    "the blacksmith",
    "the doctor",
    "the carpenter",
    "the baker",
    "the lock keeper",
    "the postmistress",
    "the weaver",
    "the innkeeper",
    "the boatwright",
    "the clerk of the parish",
    "the widow at the bridge",
]
_SEASONS = [
    "in the spring",
    "that summer",
    "late in the autumn",
    "during the long winter",
    "at the turn of the year",
    "after the harvest",
    "before the thaw",
    "in the dry months",
]
_THINGS = [
    "the flood",
    "the new road",
    "the cracked bell",
    "the fever",
    "the price of grain",
    "the traveling players",
    "the frozen river",
    "the railway survey",
    "the barn fire",
    "the second schoolroom",
    "the great catch of fish",
    "the stone weir",
]
_EVENTS = [
    "the river rose above the lower fields",
    "a new road was cut through the hills",
    "the old bell cracked and was recast",
    "a fever passed through the houses by the water",
    "the council argued for weeks about the price of grain",
    "a traveling company played in the square for three nights",
    "the ice held so long that carts crossed the river",
    "the railway surveyors came",
    "a fire took two barns on the east side",
    "the school gained a second room",
    "the fishing was better than anyone could remember",
    "the weir was rebuilt in stone",
]
_ACTS = [
    "kept careful accounts of",
    "wrote letters about",
    "complained to everyone about",
    "made a small fortune from",
    "lost a great deal because of",
    "drew a map of",
    "sang songs about",
    "refused to speak of",
    "organized a collection for",
]
_AFTER = [
    "Nobody who lived through it forgot the sound of the water at night.",
    "The children made a game of it, as children do.",
    "Prices at the market rose and then, slowly, fell again.",
    "Some families left for the city and did not come back.",
    "The council recorded it in a single line of its minutes.",
    "Travelers who passed through that year said the town seemed quieter than before.",
    "For a while the talk at the inn was of nothing else.",
    "The older people said they had seen worse, and perhaps they had.",
    "It was the kind of year that is remembered by its weather.",
    "By the next season most of the damage had been repaired.",
]


def write_passage(sentences: int = 320, seed: int = 1871) -> str:
    """The chronicle, deterministic in ``seed``: paragraphs of five to eight sentences."""
    rng = random.Random(seed)
    paras, para = [], []
    for year in range(1871, 1871 + sentences):
        if len(paras) * 7 + len(para) >= sentences:
            break
        kind = rng.randrange(4)
        if kind == 0:
            s = f"In {year}, {rng.choice(_SEASONS)}, {rng.choice(_EVENTS)}."
        elif kind == 1:
            p = rng.choice(_PEOPLE)
            s = f"{p.capitalize()} {rng.choice(_ACTS)} {rng.choice(_THINGS)}."
        elif kind == 2:
            s = (
                f"Near {rng.choice(_PLACES)}, {rng.choice(_PEOPLE)} and {rng.choice(_PEOPLE)} "
                f"met every {rng.choice(['Sunday', 'market day', 'evening', 'morning'])} "
                f"to talk about {rng.choice(_PLACES)}."
            )
        else:
            s = rng.choice(_AFTER)
        para.append(s)
        if len(para) >= rng.randint(5, 8):
            paras.append(" ".join(para))
            para = []
    if para:
        paras.append(" ".join(para))
    return "\n\n".join(paras) + "\n"


def passage_ids(subject) -> list[int]:
    return subject.to_tokens(" " + PASSAGE.read_text().replace("\n\n", " "))


def name_pairs(subject, n_tokens: int, n_pairs: int, name_at: str = "start"):
    """(ContrastSet, name position): ``n_pairs`` pairs of exactly ``n_tokens`` tokens."""
    import torch

    import interp_audit as ia

    if n_pairs > len(NAMES):
        raise SystemExit(f"at most {len(NAMES)} pairs (name pairs shipped)")
    body = passage_ids(subject)
    clean, cf = [], []
    for male, female in NAMES[:n_pairs]:
        rows = []
        for name in (male, female):
            (tok,) = subject.to_tokens(name)
            if name_at == "start":
                head, tail = (
                    subject.to_tokens("The diary of") + [tok] + subject.to_tokens("."),
                    subject.to_tokens(" Then the author said that"),
                )
            else:
                head, tail = (
                    [],
                    subject.to_tokens(" Then") + [tok] + subject.to_tokens(" said that"),
                )
            room = n_tokens - len(head) - len(tail)
            if room < 0 or room > len(body):
                raise SystemExit(f"{n_tokens} tokens: the passage holds {len(body)} tokens")
            rows.append(head + body[:room] + tail)
        clean.append(rows[0])
        cf.append(rows[1])
    pos = 3 if name_at == "start" else n_tokens - 3
    answers = [[subject.to_tokens(a)[0] for a in ANSWERS]] * n_pairs
    pairs = ia.ContrastSet.from_tokens(torch.tensor(clean), torch.tensor(cf), torch.tensor(answers))
    return pairs, pos


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        PASSAGE.parent.mkdir(exist_ok=True)
        PASSAGE.write_text(write_passage())
    print(PASSAGE, len(PASSAGE.read_text().split()), "words")
