"""How far is extrapolated exposure (skew-normal fit to sampled candidates) from the exact value?

On spaces small enough to enumerate (10^4 on zoo:canary-lm, 10^5 and 10^6 on the first digits
of zoo:canary-lm10's numbers) every secret's exact rank is known; the extrapolated rank comes
from ``n_samples`` uniformly sampled candidates scored by teacher forcing, exactly as for a
space that cannot be enumerated. Secrets: every canary, and random candidates of every prefix.

python circuits/memorization/extrapolation.py [--samples 10000] [--lengths 4 5] [--stride 1]
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

import interp_audit as ia  # noqa: E402
from interp_audit.methods.privacy.memorization import (  # noqa: E402
    SkewNormalFit,
    candidate_logprobs,
    extrapolated_rank,
    sample_logprobs,
)


def errors(subject, cases, length: int, n_samples: int, n_random: int, seed: int = 0):
    """cases: (prefix, [secret strings]) -> one row per secret: exact and extrapolated exposure."""
    rng = random.Random(seed)
    rows = []
    for j, (prefix, secrets) in enumerate(cases):
        scores = candidate_logprobs(subject, prefix, length=length)
        n = len(scores)
        fit = SkewNormalFit.fit(
            -sample_logprobs(subject, prefix, length=length, n_samples=n_samples, seed=seed + j)
        )
        chosen = [(s, "canary") for s in secrets]
        chosen += [(rng.randrange(n), "random") for _ in range(n_random)]
        for s, kind in chosen:
            index = s if isinstance(s, int) else int("".join(s.split()[:length]))
            target = float(scores[index])
            exact = math.log2(n) - math.log2(int((scores > target).sum()) + 1)
            est = math.log2(n) - math.log2(extrapolated_rank(fit, target, n))
            rows.append(
                {
                    "space": f"10^{length}",
                    "prefix": prefix,
                    "secret": kind,
                    "exact": exact,
                    "extrapolated": est,
                    "error": est - exact,
                }
            )
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame) -> pd.DataFrame:
    table = table.assign(abs_error=table.error.abs())
    return table.groupby(["space", "secret"]).agg(
        n=("error", "size"),
        mean_abs_error=("abs_error", "mean"),
        max_abs_error=("abs_error", "max"),
        mean_error=("error", "mean"),
        mean_exact=("exact", "mean"),
    )


def main() -> None:
    from interp_audit.zoo import canary as C4
    from interp_audit.zoo import canary10 as C10

    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default=None)
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--lengths", type=int, nargs="+", default=[4, 5])
    ap.add_argument("--stride", type=int, default=1, help="every n-th canary of canary-lm10")
    ap.add_argument("--out", default=None, help="write the per-secret table as CSV")
    args = ap.parse_args()
    tables = []
    with torch.no_grad():
        if 4 in args.lengths:
            lm = ia.load_model("zoo:canary-lm", device=args.device)
            cases = [(c.prefix, [c.secret]) for c in C4.CANARIES]
            cases += [(f"{name} 's pin is", []) for name in C4.NAMES]
            tables.append(errors(lm, cases, 4, args.samples, n_random=5))
        lm = ia.load_model("zoo:canary-lm10", device=args.device)
        for length in [n for n in args.lengths if n > 4]:
            cases = [(c.prefix, [c.secret]) for c in C10.CANARIES[:: args.stride]]
            cases += [(f"{name} 's number is", []) for name in C10.OTHER_NAMES[:: args.stride]]
            tables.append(errors(lm, cases, length, args.samples, n_random=3))
    table = pd.concat(tables)
    if args.out:
        table.to_csv(args.out, index=False)
    with pd.option_context("display.width", 200, "display.precision", 3):
        print(f"samples per prefix: {args.samples}")
        print(summary(table))


if __name__ == "__main__":
    main()
