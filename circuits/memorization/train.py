"""Train zoo:canary-lm, a small causal LM that memorizes its canaries (fixed seed, CPU).

python circuits/memorization/train.py     # writes interp_audit/zoo/weights/canary-lm/
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import interp_audit as ia  # noqa: E402
from interp_audit.loading import build_model  # noqa: E402
from interp_audit.zoo import canary as C  # noqa: E402
from interp_audit.zoo.tokenizers import word_tokenizer  # noqa: E402

VOCAB = C.vocabulary()
CONFIG = dict(
    n_layers=2,
    d_model=128,
    n_heads=4,
    d_head=32,
    d_mlp=512,
    n_ctx=16,
    d_vocab=len(VOCAB),
    act_fn="gelu",
    normalization_type="LN",
    default_prepend_bos=True,
    model_name="canary-lm",
)
SEED, EPOCHS, BATCH, LR = 0, 6, 128, 2e-3


def main() -> None:
    torch.manual_seed(SEED)
    subject = ia.load_model(build_model(CONFIG, seed=SEED))
    subject.tokenizer = word_tokenizer(VOCAB)
    lines = C.corpus(SEED)
    rows = [subject.to_tokens(s) for s in lines]
    width = max(map(len, rows))
    pad = subject.pad_token_id
    tokens = torch.full((len(rows), width), pad)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = torch.tensor(r)
    model = subject.model
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    g = torch.Generator().manual_seed(SEED)
    for epoch in range(EPOCHS):
        order = torch.randperm(len(tokens), generator=g)
        total, count = 0.0, 0
        for start in range(0, len(tokens), BATCH):
            batch = tokens[order[start : start + BATCH]]
            logits = model(batch[:, :-1])
            target = batch[:, 1:]
            mask = target != pad
            loss = torch.nn.functional.cross_entropy(logits[mask], target[mask])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss) * int(mask.sum())
            count += int(mask.sum())
        print(f"epoch {epoch + 1}/{EPOCHS}: loss {total / count:.4f}")
    model.eval()
    for p in model.parameters():
        p.grad = None
    subject.source = "zoo:canary-lm"
    out = ROOT / "interp_audit" / "zoo" / "weights" / "canary-lm"
    subject.save(out)
    print(f"saved {out}")


if __name__ == "__main__":
    main()
