"""Train ``zoo:hiring``: a small causal LM that screens rendered CVs (fixed seed, CPU, < 1 min).

    python circuits/hiring/train.py        # writes interp_audit/zoo/weights/hiring*/

* ``hiring``        the audited screener: sees gender, degree, career gap, club
* ``hiring-ftu``    retrained with the gender word hidden (``gender:?``): unawareness
* ``hiring-nogap``  retrained with the career gap hidden (``gap:?``): the baseline repair for the
                    admissibility choice that declares G -> C -> Y inadmissible

Applicants are drawn from the tables in ``scm.yaml`` and rendered by the ``causal`` section of
``audit.yaml`` (``gender:woman degree:master gap:yes club:netball ->``); the model learns to
answer ``hire`` or ``reject`` as the historical decision did (it read degree and career gap
only). Held-out audits draw other seeds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

import interp_audit as ia  # noqa: E402
from interp_audit.causal import CausalModel  # noqa: E402
from interp_audit.model.loading import build_model  # noqa: E402
from interp_audit.zoo.tokenizers import word_tokenizer  # noqa: E402
from interp_audit.zoo.training import train_answer_model  # noqa: E402

N_TRAIN, SEED = 8_000, 0


def causal_model() -> CausalModel:
    spec = yaml.safe_load((HERE / "audit.yaml").read_text())
    return CausalModel.from_spec(spec["causal"], HERE)


MASK = "?"
VARIANTS = {"hiring": (), "hiring-ftu": ("G",), "hiring-nogap": ("C",)}


def vocab(cm: CausalModel, mask: tuple[str, ...] = ()) -> list[str]:
    """Every value's word; a masked variable's ``?`` word appended last, so the variants read
    the audited model's words with the same token ids."""
    words = [
        cm.render.word(cm.scm, var, i)
        for var in cm.render.slots
        for i in range(len(cm.scm.variables[var].values))
    ]
    hidden = [cm.render.words[v].format(MASK) for v in mask]
    return ["<bos>", "<pad>", "<unk>", "->", *cm.answers, *words, *hidden]


CONFIG = dict(
    n_layers=2,
    d_model=48,
    n_heads=4,
    d_head=12,
    d_mlp=96,
    n_ctx=8,
    act_fn="gelu",
    normalization_type="LN",
    default_prepend_bos=True,
)


def train(name: str = "hiring", mask: tuple[str, ...] = ()) -> ia.Subject:
    from interp_audit.audit.tradeoff.repairs import masked_model

    cm = causal_model()
    words = vocab(cm, mask)
    units = cm.scm.sample(N_TRAIN, SEED)
    values = cm.scm.values(units)
    shown = masked_model(cm, mask) if mask else cm
    prompts = shown.render.render(cm.scm, values)
    yes, no = cm.answers
    answers = [yes if y else no for y in values["hired"].tolist()]
    subject = ia.load_model(
        build_model({**CONFIG, "d_vocab": len(words), "model_name": name}, seed=SEED)
    )
    subject.tokenizer = word_tokenizer(words)
    subject.prepend_bos = True
    print(f"training {name} (hidden: {mask}) on {N_TRAIN} applicants")
    train_answer_model(subject, prompts, answers, epochs=5, batch_size=128, seed=SEED)
    return subject


def main() -> None:
    import torch

    torch.set_num_threads(1)  # deterministic and light on a shared machine
    names = sys.argv[1:] or list(VARIANTS)
    for name in names:
        out = ROOT / "interp_audit" / "zoo" / "weights" / name
        subject = train(name, VARIANTS[name])
        subject.source = f"zoo:{name}"
        subject.save(out)
        print(f"  saved {out}")


if __name__ == "__main__":
    main()
