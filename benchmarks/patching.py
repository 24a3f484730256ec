"""Exact patching speed and memory: ia.patch vs transformer_lens.patching, same model and data.

    python benchmarks/patching.py [--layers 4] [--pairs 16] [--tokens 24] [--vocab 2000]
        [--batch-size N]

Prints, for the full head sweep and for resid_pre x positions: wall time of each (best of
--repeats after one warm-up on two pairs), the speed ratio, the max abs difference of their
numbers, and peak memory (each method runs in a fresh subprocess; peak RSS growth during the
timed runs, or peak CUDA allocation on a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import add_model_args, workload  # noqa: E402

SWEEPS = {
    "heads": ("heads", False, "get_act_patch_attn_head_out_all_pos"),
    "resid_pre_pos": ("resid_pre", True, "get_act_patch_resid_pre"),
}


def run_one(args, sweep: str, method: str) -> dict:
    import torch
    from transformer_lens import patching as tlp

    import interp_audit as ia

    subject, pairs = workload(args)
    site, per_pos, tl_name = SWEEPS[sweep]
    dev = subject.device

    def once(pairs):
        if method == "tl":
            model = subject.model
            with torch.no_grad():
                _, cache = model.run_with_cache(pairs.clean.to(dev))
                metric = lambda logits: ia.metrics.logit_diff.from_logits(logits, pairs).mean()  # noqa: E731
                return getattr(tlp, tl_name)(model, pairs.counterfactual.to(dev), cache, metric)
        return ia.patch(
            subject,
            pairs,
            "logit_diff",
            sites=site,
            per_position=per_pos,
            normalize=False,
            batch_size=args.batch_size,
        ).values

    once(pairs[:2])  # warm-up: lazy imports and first-call kernel set-up are not the sweep's cost
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds = float("inf")
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        values = once(pairs)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        seconds = min(seconds, time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss
    gpu_peak = torch.cuda.max_memory_allocated() if dev.type == "cuda" else 0
    return {
        "seconds": seconds,
        "peak_rss_mb": peak / 1024,
        "gpu_peak_mb": gpu_peak / 2**20,
        "values": values.detach().cpu().flatten().tolist(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_args(p)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per method (best is kept)")
    p.add_argument("--one", nargs=2, metavar=("SWEEP", "METHOD"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(run_one(args, *args.one)))
        return
    import platform

    import torch

    print(
        f"model: {args.layers} layers, {args.heads} heads, d_model {args.d_model}, vocab "
        f"{args.vocab}; "
        f"{args.pairs} pairs x {args.tokens} tokens; device {args.device}; torch "
        f"{torch.__version__}; "
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    print(
        f"{'sweep':<15}{'TL s':>9}{'ia s':>9}{'speed-up':>10}{'max |diff|':>12}"
        f"{'TL peak MB':>12}{'ia peak MB':>12}"
    )
    forwarded = [a for a in sys.argv[1:]]
    for sweep in SWEEPS:
        res = {}
        for method in ("tl", "ia"):
            out = subprocess.run(
                [sys.executable, __file__, *forwarded, "--one", sweep, method],
                capture_output=True,
                text=True,
            )
            if out.returncode:
                sys.exit(out.stderr)
            res[method] = json.loads(out.stdout.strip().splitlines()[-1])
        diff = max(
            abs(a - b) for a, b in zip(res["tl"]["values"], res["ia"]["values"], strict=True)
        )
        mem = "gpu_peak_mb" if args.device.startswith("cuda") else "peak_rss_mb"
        print(
            f"{sweep:<15}{res['tl']['seconds']:>9.2f}{res['ia']['seconds']:>9.2f}"
            f"{res['tl']['seconds'] / res['ia']['seconds']:>9.1f}x"
            f"{diff:>12.2e}{res['tl'][mem]:>12.0f}{res['ia'][mem]:>12.0f}"
        )


if __name__ == "__main__":
    main()
