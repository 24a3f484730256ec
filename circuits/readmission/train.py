"""Train the readmission models shipped in the zoo (fixed seeds, CPU, about a minute each).

    python circuits/readmission/train.py            # writes interp_audit/zoo/weights/readmission*/

* ``readmission``           the audited model: sees age, insurance, measured labs, hospital
* ``readmission-ftu``       fairness through unawareness: the age token masked (age:?)
* ``readmission-blind``     blanket invariance to A: A and its descendants masked (age, ins, lab)
* ``readmission-nohosp``    blanket invariance to E: the hospital token masked
* ``readmission-cleanlabs`` the spurious path fixed in the data: labs measured without the artefact
* ``readmission-holdout2``  the audited model's inputs, trained without hospital 2's patients (the
                            same 40,000 draws, those at hospital 2 left out): hospital 2 is an
                            environment it never saw (its ``hosp:2`` word never trained)

    python circuits/readmission/train.py readmission-holdout2   # one variant
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import interp_audit as ia  # noqa: E402
from circuits.readmission import scm as R  # noqa: E402
from interp_audit.model.loading import build_model  # noqa: E402
from interp_audit.zoo.tokenizers import word_tokenizer  # noqa: E402
from interp_audit.zoo.training import train_answer_model  # noqa: E402

CONFIG = dict(
    n_layers=2,
    d_model=64,
    n_heads=4,
    d_head=16,
    d_mlp=128,
    n_ctx=8,
    d_vocab=len(R.VOCAB),
    act_fn="gelu",
    normalization_type="LN",
    default_prepend_bos=True,
)
VARIANTS = {
    "readmission": dict(mask=(), artefact=True),
    "readmission-ftu": dict(mask=("age",), artefact=True),
    "readmission-blind": dict(mask=("age", "ins", "lab"), artefact=True),
    "readmission-nohosp": dict(mask=("hosp",), artefact=True),
    "readmission-cleanlabs": dict(mask=(), artefact=False),
    "readmission-holdout2": dict(mask=(), artefact=True, hospitals=(0, 1, 3)),
}
N_TRAIN, SEED = 40_000, 0


def train(
    name: str, mask: tuple[str, ...], artefact: bool, hospitals: tuple[int, ...] | None = None
) -> ia.Subject:
    units = R.sample_units(N_TRAIN, SEED)
    if hospitals is not None:  # the same draws, patients of other hospitals left out
        keep = torch.isin(units.e, torch.tensor(hospitals))
        units = R.Units(*(getattr(units, f)[keep] for f in ("a", "e", "u_x", "u_z", "u_y")))
    prompts = R.factual_words(units, mask=mask, artefact=artefact)
    answers = ["YES" if y else "NO" for y in R.labels(units).tolist()]
    subject = ia.load_model(build_model({**CONFIG, "model_name": name}, seed=SEED))
    subject.tokenizer = word_tokenizer(R.VOCAB)
    subject.prepend_bos = True
    print(f"training {name} (mask={mask}, artefact={artefact}) on {len(units)} patients")
    train_answer_model(subject, prompts, answers, epochs=8, seed=SEED)
    return subject


def main() -> None:
    out = ROOT / "interp_audit" / "zoo" / "weights"
    for name in sys.argv[1:] or list(VARIANTS):
        kw = VARIANTS[name]
        subject = train(name, **kw)
        subject.source = f"zoo:{name}"
        subject.save(out / name)
        print(f"  saved {out / name}")


if __name__ == "__main__":
    main()
