"""Train ``zoo:hiring``: a small causal LM that screens rendered CVs (fixed seed, CPU, < 1 min).

    python circuits/hiring/train.py        # writes interp_audit/zoo/weights/hiring/

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
from interp_audit.loading import build_model  # noqa: E402
from interp_audit.zoo.tokenizers import word_tokenizer  # noqa: E402
from interp_audit.zoo.training import train_answer_model  # noqa: E402

N_TRAIN, SEED = 8_000, 0


def causal_model() -> CausalModel:
    spec = yaml.safe_load((HERE / "audit.yaml").read_text())
    return CausalModel.from_spec(spec["causal"], HERE)


def vocab(cm: CausalModel) -> list[str]:
    words = [
        cm.render.word(cm.scm, var, i)
        for var in cm.render.slots
        for i in range(len(cm.scm.variables[var].values))
    ]
    return ["<bos>", "<pad>", "<unk>", "->", *cm.answers, *words]


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


def train() -> ia.Subject:
    cm = causal_model()
    words = vocab(cm)
    units = cm.scm.sample(N_TRAIN, SEED)
    values = cm.scm.values(units)
    prompts = cm.render.render(cm.scm, values)
    yes, no = cm.answers
    answers = [yes if y else no for y in values["hired"].tolist()]
    subject = ia.load_model(
        build_model({**CONFIG, "d_vocab": len(words), "model_name": "hiring"}, seed=SEED)
    )
    subject.tokenizer = word_tokenizer(words)
    subject.prepend_bos = True
    print(f"training hiring on {N_TRAIN} applicants")
    train_answer_model(subject, prompts, answers, epochs=5, batch_size=128, seed=SEED)
    return subject


def main() -> None:
    import torch

    torch.set_num_threads(1)  # deterministic and light on a shared machine
    out = ROOT / "interp_audit" / "zoo" / "weights" / "hiring"
    subject = train()
    subject.source = "zoo:hiring"
    subject.save(out)
    print(f"  saved {out}")


if __name__ == "__main__":
    main()
