"""TransformerBridge sweeps: the adapter's fast path (layer skipping) against the full-forward
path it used before and against ``transformer_lens.patching`` on the same bridge, one run.

    OMP_NUM_THREADS=1 python benchmarks/bridge.py [--layers 4 --d-model 256 --pairs 8 --tokens 20]

Pins torch to one thread (OMP_NUM_THREADS=1) so ratios do not depend on machine load; prints
median seconds of --repeats runs and the largest disagreement between the methods.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--vocab", type=int, default=2000)
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--tokens", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    import torch
    from transformer_lens import patching as tlp
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import GPT2Config, GPT2LMHeadModel

    import interp_audit as ia
    from interp_audit.model.adapters.bridge import BridgeAdapter

    torch.set_num_threads(1)
    torch.manual_seed(0)
    folder = tempfile.mkdtemp()
    GPT2LMHeadModel(
        GPT2Config(
            n_layer=args.layers,
            n_head=args.heads,
            n_embd=args.d_model,
            vocab_size=args.vocab,
            n_positions=max(64, args.tokens),
        )
    ).save_pretrained(folder)
    bridge = TransformerBridge.boot_transformers(folder)
    fast = ia.load_model(bridge)

    class FullForward(BridgeAdapter):
        fast_path = False

    full = ia.load_model(bridge)
    full.adapter = FullForward(bridge)
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(0, args.vocab, (args.pairs, args.tokens), generator=g)
    cf = clean.clone()
    cf[:, args.tokens // 3] = (clean[:, args.tokens // 3] + 1) % args.vocab
    answers = torch.randint(0, args.vocab, (args.pairs, 2), generator=g)
    pairs = ia.ContrastSet.from_tokens(clean, cf, answers)

    def tl():
        _, cache = bridge.run_with_cache(pairs.clean)
        return tlp.get_act_patch_attn_head_out_all_pos(
            bridge,
            pairs.counterfactual,
            cache,
            lambda lg: ia.metrics.logit_diff.from_logits(lg, pairs).mean(),
        )

    runs = {
        "interp_audit fast path": lambda: ia.patch(fast, pairs, normalize=False).values,
        "interp_audit full forwards": lambda: ia.patch(full, pairs, normalize=False).values,
        "transformer_lens.patching": tl,
    }
    times, values = {}, {}
    with torch.no_grad():
        for name, fn in runs.items():
            fn()  # warm-up
            ts = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                values[name] = fn()
                ts.append(time.perf_counter() - t0)
            times[name] = statistics.median(ts)
    ref = values["transformer_lens.patching"]
    print(
        f"GPT-2 bridge {args.layers}L d{args.d_model} vocab {args.vocab}, "
        f"{args.pairs}x{args.tokens}, heads sweep, OMP_NUM_THREADS=1"
    )
    base = times["interp_audit fast path"]
    for name, t in times.items():
        err = float((values[name] - ref).abs().max())
        print(f"  {name:28s} {t:8.3f}s  {t / base:5.2f}x fast path  max|diff vs TL| {err:.1e}")


if __name__ == "__main__":
    main()
