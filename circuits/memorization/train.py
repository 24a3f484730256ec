"""Train the canary LMs: small causal LMs that memorize their canaries (fixed seed, CPU).

python circuits/memorization/train.py                    # zoo:canary-lm (4-digit PINs, ~40 s)
python circuits/memorization/train.py canary-lm10        # zoo:canary-lm10 (10-digit numbers)
python circuits/memorization/train.py canary-lm10-clean  # the same corpus without the canaries

Each writes interp_audit/zoo/weights/NAME/ (safetensors + config + tokenizer).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import interp_audit as ia  # noqa: E402
from interp_audit.model.loading import build_model  # noqa: E402
from interp_audit.zoo import canary as C  # noqa: E402
from interp_audit.zoo import canary10 as C10  # noqa: E402
from interp_audit.zoo.tokenizers import word_tokenizer  # noqa: E402


def _config(vocab: list[str], n_ctx: int, name: str) -> dict:
    return dict(
        n_layers=2,
        d_model=128,
        n_heads=4,
        d_head=32,
        d_mlp=512,
        n_ctx=n_ctx,
        d_vocab=len(vocab),
        act_fn="gelu",
        normalization_type="LN",
        default_prepend_bos=True,
        model_name=name,
    )


# name -> (vocabulary, corpus lines, n_ctx, epochs)
MODELS = {
    "canary-lm": (C.vocabulary(), lambda: C.corpus(0), 16, 6),
    "canary-lm10": (C10.vocabulary(), lambda: C10.corpus(0), 20, 10),
    "canary-lm10-clean": (C10.vocabulary(), lambda: C10.corpus(0, with_canaries=False), 20, 10),
}
SEED, BATCH, LR = 0, 128, 2e-3


def main(name: str = "canary-lm") -> None:
    vocab, lines_of, n_ctx, epochs = MODELS[name]
    torch.manual_seed(SEED)
    subject = ia.load_model(build_model(_config(vocab, n_ctx, name), seed=SEED))
    subject.tokenizer = word_tokenizer(vocab)
    rows = [subject.to_tokens(s) for s in lines_of()]
    width = max(map(len, rows))
    pad = subject.pad_token_id
    tokens = torch.full((len(rows), width), pad)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = torch.tensor(r)
    model = subject.model
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    g = torch.Generator().manual_seed(SEED)
    t0 = time.time()
    for epoch in range(epochs):
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
        print(f"epoch {epoch + 1}/{epochs}: loss {total / count:.4f} ({time.time() - t0:.0f} s)")
    model.eval()
    for p in model.parameters():
        p.grad = None
    subject.source = f"zoo:{name}"
    out = ROOT / "interp_audit" / "zoo" / "weights" / name
    subject.save(out)
    print(f"saved {out}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
