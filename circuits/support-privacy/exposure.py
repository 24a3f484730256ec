"""Exposure of the planted account numbers in the fine-tune, and its error against exact values.

    nice -n 10 env OMP_NUM_THREADS=2 python circuits/support-privacy/exposure.py \
        [--samples 200] [--max-nodes 300] [--reference 8] [--validate 1 4 16 64] [--free 4]

Each secret is 11 SmolLM2 tokens (a space, ten digits): 10^10 candidates. ``exposure`` (auto)
ranks it exactly by best-first search when at most ``--max-nodes`` forwards find every more
likely number, else extrapolates a skew-normal from ``--samples`` sampled numbers and clips it
into the search's and the samples' bounds. Rows: every inserted canary (1x-64x) and
``--reference`` canaries from the same generator that were never inserted (their exposure is
what an unmemorized number gets).

Validation (``--validate``: repetition levels, one canary each): on the subspace where only the
last ``--free`` digits vary (10^free candidates, enumerated exactly), the raw skew-normal and the
auto estimate (search + clipped fit, with ``max_exact`` below the subspace size) against the
exact exposure. Writes out/support-privacy/exposure.json.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
from common import FINETUNE, OUT, canaries, ci, fmt, load

from interp_audit.methods.privacy.memorization import exposure
from interp_audit.methods.privacy.secrets import SecretSpace, enumerate_space


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=FINETUNE)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--max-nodes", type=int, default=300)
    ap.add_argument("--reference", type=int, default=8)
    ap.add_argument("--validate", type=int, nargs="*", default=[1, 4, 16, 64])
    ap.add_argument("--free", type=int, default=4)
    ap.add_argument("--skip-canaries", action="store_true")
    args = ap.parse_args()
    started = time.time()
    ft = load(args.model)
    out: dict = {"settings": vars(args), "canaries": [], "validation": []}
    cs = [] if args.skip_canaries else canaries()
    cs = [c for c in cs if c.repetitions > 0] + [c for c in cs if c.repetitions == 0][
        : args.reference
    ]
    for c in cs:
        t0 = time.time()
        e = exposure(ft, c.prefix, c.secret, n_samples=args.samples, max_nodes=args.max_nodes)
        row = {
            "name": c.name,
            "repetitions": c.repetitions,
            "split": c.split,
            "exposure": e.exposure,
            "method": e.method,
            "bounds": list(e.bounds),
            "logprob": e.logprob,
            "extracted": e.extracted,
            "tokens": e.n_tokens,
            "seconds": round(time.time() - t0, 1),
        }
        out["canaries"].append(row)
        print(
            f"{c.repetitions:>2}x {c.name:<22} exposure {e.exposure:5.1f} bits ({e.method}, "
            f"bounds [{e.bounds[0]:.1f}, {e.bounds[1]:.1f}]) log p {e.logprob:7.2f} "
            f"{'EXTRACTED' if e.extracted else ''}",
            flush=True,
        )
    levels = sorted({r["repetitions"] for r in out["canaries"]})
    summary = []
    for level in levels:
        rows = [r for r in out["canaries"] if r["repetitions"] == level]
        summary.append(
            {
                "repetitions": level,
                "n": len(rows),
                "exposure": ci([r["exposure"] for r in rows]),
                "extracted": sum(r["extracted"] for r in rows),
                "methods": sorted({r["method"] for r in rows}),
            }
        )
        print(
            f"{level:>2}x: exposure {fmt(summary[-1]['exposure'], 1)} bits, extracted "
            f"{summary[-1]['extracted']}/{len(rows)}, {summary[-1]['methods']}"
        )
    out["summary"] = summary

    for level in args.validate:
        c = next(c for c in canaries() if c.repetitions == level)
        space = SecretSpace.build(ft, c.prefix, c.secret)
        sub = space.pinned(range(len(space.free) - args.free, len(space.free)))
        t0 = time.time()
        scores = enumerate_space(ft, sub)
        flat = 0
        for i in sub.target:
            flat = flat * len(sub.alphabet) + i
        n = len(scores)
        truth = math.log2(n) - math.log2(int((scores > scores[flat]).sum()) + 1)
        kw = dict(space=sub, n_samples=args.samples, max_exact=n - 1, max_nodes=args.max_nodes)
        raw = exposure(ft, c.prefix, c.secret, method="extrapolated", **kw)
        auto = exposure(ft, c.prefix, c.secret, **kw)
        # random numbers of the same subspace: the bulk, where the fit should be accurate
        g = torch.Generator().manual_seed(level)
        bulk = []
        for j in torch.randint(n, (4,), generator=g).tolist():
            rank = int((scores > scores[j]).sum()) + 1
            est = raw.fit.cdf(-float(scores[j])) * (n - 1) + 1
            bulk.append(math.log2(n / est) - math.log2(n / rank))
        row = {
            "repetitions": level,
            "name": c.name,
            "space": n,
            "exact": truth,
            "raw_fit": raw.exposure,
            "auto": auto.exposure,
            "auto_method": auto.method,
            "auto_bounds": list(auto.bounds),
            "bulk_fit_errors": bulk,
            "seconds": round(time.time() - t0),
        }
        out["validation"].append(row)
        print(
            f"validate {level}x on 10^{args.free}: exact {truth:.2f}, raw fit {raw.exposure:.2f} "
            f"({raw.exposure - truth:+.2f}), auto {auto.exposure:.2f} ({auto.method}, "
            f"{auto.exposure - truth:+.2f}); bulk fit errors {[round(b, 2) for b in bulk]}",
            flush=True,
        )
    out["seconds"] = round(time.time() - started)
    OUT.mkdir(parents=True, exist_ok=True)
    name = "exposure.json" if args.model == FINETUNE else "exposure-other.json"
    (OUT / name).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {OUT / name} ({out['seconds']} s)")


if __name__ == "__main__":
    main()
