"""Long prompts within a memory budget: SmolLM2-135M at 1024 tokens under ``max_memory``, CPU.

    python benchmarks/long_prompts.py [--tokens 1024] [--pairs 2] [--max-memory 4e9]
        [--jobs atp heads] [--no-tl]

Each job runs once in a fresh subprocess (so peaks do not mix), one thread: the model
(``zoo:smollm2-135m``, float32) and the pairs (``benchmarks/long_text.py``: the shipped passage
cut to exactly ``--tokens`` tokens, the name 4th, so every later position differs) are loaded
first, then the kernel's peak-RSS mark is reset and the job runs:

* ``atp``: ``ia.attribute(subject, pairs, sites="heads", method="atp", max_memory=B)``;
* ``heads``: ``ia.patch(subject, pairs, sites="heads", max_memory=B)``, every one of the 270
  heads (exact).

Printed per job: wall and CPU seconds, the peak RSS of the whole process (``VmHWM``: weights,
libraries and everything the job held) against the budget, the RSS before the job, and the
memory preflight's estimate for the plan it chose (``interp_audit.model.memory``: weights plus
what the run holds; it does not count the Python/torch libraries). Beside them, TransformerLens
on the same pairs in its own subprocess, no budget (it has none): its AtP with hooks (forward and
backward hooks on ``hook_z``, weights frozen), and its ``patching`` heads sweep after
``run_with_cache`` of everything, run on one head only (its peak is that of one serial forward
beside the full cache: it does not grow with the number of heads; its time is not reported).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings

if __name__ == "__main__":  # one thread, set before torch loads (it is imported lazily)
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from long_text import name_pairs  # noqa: E402
from real import load_subject, reset_peak, rss_mb, run_tl  # noqa: E402


def estimate(subject, pairs, job: str, budget: int) -> dict:
    """What the preflight plans for this job under ``budget``, and its estimated peak."""
    from interp_audit.model import memory

    n, b = pairs.seq_len, len(pairs)
    hooks = [f"blocks.{i}.attn.hook_z" for i in range(subject.n_layers)]
    if job == "heads":
        rows = memory.max_rows(subject, n, budget, hooks)
        est = memory.estimate_sweep(
            subject, n, rows, hooks, budget, n_examples=b, n_variants=subject.n_layers * 9
        )
        return {"plan": f"{est.rows} rows per forward", "estimate_mb": est.peak / 2**20}
    per_run, checkpoint = memory.gradient_plan(subject, n, hooks, budget)
    per_run = min(per_run, b)
    est = memory.estimate_gradient(
        subject, n, per_run, hooks, checkpoint=checkpoint, budget=budget, n_examples=per_run
    )
    return {
        "plan": f"{per_run} pair(s) per gradient run, "
        + ("layer by layer" if checkpoint else "whole graph"),
        "estimate_mb": est.peak / 2**20,
    }


def one(tool: str, job: str, n_tokens: int, n_pairs: int, budget: int) -> dict:
    import torch

    import interp_audit as ia

    torch.set_num_threads(1)
    subject = load_subject()
    pairs, name_pos = name_pairs(subject, n_tokens, n_pairs, "start")
    out = {"tool": tool, "job": job}
    if tool == "ia":
        out.update(estimate(subject, pairs, job, budget))
    reset_peak()
    out["rss_before_mb"], _ = rss_mb()
    t, c = time.perf_counter(), time.process_time()
    if tool == "ia" and job == "atp":
        ia.attribute(subject, pairs, sites="heads", method="atp", max_memory=budget)
    elif tool == "ia":
        ia.patch(subject, pairs, sites="heads", max_memory=budget)
    else:
        sub = {"layers": [subject.n_layers - 1], "heads": [0], "positions": [], "full": False}
        if job == "atp":
            run_tl(subject, pairs, job, sub)
        else:
            with torch.no_grad():
                run_tl(subject, pairs, job, sub)
            out["note"] = "one head (peak of run_with_cache + one serial forward)"
    out["wall_s"], out["cpu_s"] = time.perf_counter() - t, time.process_time() - c
    out["peak_rss_mb"] = rss_mb()[1]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=1024)
    p.add_argument("--pairs", type=int, default=2)
    p.add_argument("--max-memory", type=float, default=4e9, help="bytes (default 4e9 = 4 GB)")
    p.add_argument("--jobs", nargs="+", choices=["atp", "heads"], default=["atp", "heads"])
    p.add_argument("--no-tl", action="store_true", help="skip TransformerLens's peaks")
    p.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    warnings.filterwarnings("ignore")  # TransformerLens's deprecation notices
    budget = int(args.max_memory)
    if args.one:
        print(json.dumps(one(*args.one, args.tokens, args.pairs, budget)))
        return
    print(
        f"SmolLM2-135M (zoo:smollm2-135m, float32, cpu), {args.pairs} pairs x {args.tokens} tokens "
        f"(name 4th), max_memory={budget:,} bytes ({budget / 1e9:.1f} GB = {budget / 2**20:,.0f} "
        f"MiB), OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    print(
        f"{'job':<7}{'tool':<5}{'wall s':>9}{'cpu s':>9}{'RSS before':>12}{'peak RSS':>10}"
        f"{'budget':>9}{'estimate':>10}  plan"
    )
    for job in args.jobs:
        for tool in ("ia",) + (() if args.no_tl else ("tl",)):
            cmd = [sys.executable, os.path.abspath(__file__), "--one", tool, job,
                   "--tokens", str(args.tokens), "--pairs", str(args.pairs),
                   "--max-memory", str(budget)]  # fmt: skip
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode:
                why = (
                    f"killed by signal {-res.returncode} (9: the kernel's OOM killer, see dmesg)"
                    if res.returncode < 0
                    else (res.stderr.strip().splitlines() or ["no message"])[-1]
                )
                print(f"{job:<7}{tool:<5} FAILED: {why}", flush=True)
                continue
            r = json.loads(res.stdout.strip().splitlines()[-1])
            within = r["peak_rss_mb"] * 2**20 <= budget
            mark = ("ok" if within else "OVER") if tool == "ia" else "-"
            est = f"{r['estimate_mb']:>10.0f}" if "estimate_mb" in r else f"{'-':>10}"
            wall = f"{r['wall_s']:>9.1f}{r['cpu_s']:>9.1f}" if "note" not in r else f"{'-':>18}"
            print(
                f"{job:<7}{tool:<5}{wall}{r['rss_before_mb']:>12.0f}{r['peak_rss_mb']:>10.0f}"
                f"{mark:>9}{est}  {r.get('plan', r.get('note', 'no budget'))}",
                flush=True,
            )
    print("MB = MiB; peak RSS: VmHWM of the job's own process (weights and libraries included).")


if __name__ == "__main__":
    main()
