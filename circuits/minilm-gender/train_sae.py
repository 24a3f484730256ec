"""Train the all-MiniLM-L6-v2 SAE on the last hidden state with sae_lens (offline, seed 0).

    python circuits/minilm-gender/train_sae.py   # writes interp_audit/zoo/weights/saes/minilm-l5/

Sentences: the STS pairs (sts.csv), the job queries, and every rendering of the gender audit's
templates (audit.yaml's subjects x occupations.csv x templates). One sentence in five is held
out to report reconstruction on text the SAE never saw. The last hidden state
(``blocks.5.hook_normalized_resid_post``) is what mean pooling turns into the sentence
embedding, so a feature's decoder direction acts on the job-match score directly.
"""

import argparse
import csv
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

import interp_audit as ia  # noqa: E402

HOOK = "blocks.5.hook_normalized_resid_post"


def sentences() -> list[str]:
    """STS sentences, job queries and all renderings of the audit's templates (deduplicated)."""
    spec = yaml.safe_load((HERE / "audit.yaml").read_text())
    with (HERE / "sts.csv").open(newline="") as f:
        sts = [s for r in csv.DictReader(f) for s in (r["sentence1"], r["sentence2"])]
    with (HERE / "occupations.csv").open(newline="") as f:
        jobs = [r["occupation"] for r in csv.DictReader(f)]
    first = next(iter(spec["contrasts"].values()))
    people = [p for pair in first["swap"]["pairs"] for p in pair]
    rendered = [
        t.format(subject=p, occupation=o) for t in first["template"] for p in people for o in jobs
    ]
    return list(dict.fromkeys([*sts, *[f"{o} job" for o in jobs], *rendered]))


def split(texts: list[str], seed: int = 0) -> tuple[list[str], list[str]]:
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    held = set(order[: len(texts) // 5])
    return [t for i, t in enumerate(texts) if i not in held], [
        t for i, t in enumerate(texts) if i in held
    ]


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--d-sae", type=int, default=768)
    ap.add_argument("--l1", type=float, default=1.0)
    ap.add_argument("--tokens", type=int, default=200_000)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument(
        "--out", default=str(ROOT / "interp_audit" / "zoo" / "weights" / "saes" / "minilm-l5")
    )
    args = ap.parse_args()
    subject = ia.load_model("zoo:all-minilm-l6-v2")
    train, held = split(sentences())
    rows = [subject.to_tokens(t) for t in train]
    print(f"{len(train)} training sentences ({sum(map(len, rows))} tokens), {len(held)} held out")
    sae = ia.sae.train_sae(
        subject,
        HOOK,
        rows,
        d_sae=args.d_sae,
        l1_coefficient=args.l1,
        training_tokens=args.tokens,
        lr=args.lr,
        batch_tokens=512,
        seed=0,
    )
    quality = {
        name: ia.sae.reconstruction(subject, sae, texts).to_dict()
        for name, texts in (("train", train), ("held_out", held))
    }
    print(json.dumps(quality, indent=1))
    sae.save_model(args.out)
    print(f"saved {args.out}")
