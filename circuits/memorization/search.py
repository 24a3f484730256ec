"""The skew-normal's low bias on memorized secrets, and the best-first search that removes it.

On zoo:canary-lm10 (56 ten-digit canaries, 1x-64x), for every ``--stride``-th canary:

* the 10^5 subspace where the last five digits vary (the first five are the canary's own),
  enumerated exactly: exact exposure, the raw skew-normal fit (``--samples`` samples of the
  subspace) and ``exposure(method="auto")`` with ``max_exact`` below the subspace (best-first
  search, else the clipped fit);
* the full 10^10 space: the raw fit and auto (no exact value: auto's method says whether the
  search finished, i.e. whether its value is exact).

python circuits/memorization/search.py [--samples 2000] [--max-nodes 2000] [--stride 2]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

import interp_audit as ia  # noqa: E402
from interp_audit.methods.privacy.memorization import exposure  # noqa: E402
from interp_audit.methods.privacy.secrets import SecretSpace, enumerate_space  # noqa: E402
from interp_audit.zoo import canary10 as C10  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--max-nodes", type=int, default=2000)
    ap.add_argument("--stride", type=int, default=2)
    args = ap.parse_args()
    lm = ia.load_model("zoo:canary-lm10")
    rows = []
    for c in C10.CANARIES[:: args.stride]:
        space = SecretSpace.build(lm, c.prefix, c.secret)
        sub = space.pinned(range(5, 10))
        scores = enumerate_space(lm, sub)
        flat = int("".join(str(i) for i in sub.target))
        exact = math.log2(len(scores)) - math.log2(int((scores > scores[flat]).sum()) + 1)
        kw = dict(n_samples=args.samples, max_nodes=args.max_nodes)
        raw5 = exposure(lm, c.prefix, c.secret, method="extrapolated", space=sub, **kw)
        auto5 = exposure(lm, c.prefix, c.secret, space=sub, max_exact=1000, **kw)
        raw10 = exposure(lm, c.prefix, c.secret, method="extrapolated", space=space, **kw)
        auto10 = exposure(lm, c.prefix, c.secret, space=space, **kw)
        rows.append(
            {
                "repetitions": c.repetitions,
                "exact 10^5": exact,
                "raw fit 10^5": raw5.exposure,
                "auto 10^5": auto5.exposure,
                "auto 10^5 method": auto5.method,
                "auto 10^5 in bounds": auto5.bounds[0] - 1e-9 <= exact <= auto5.bounds[1] + 1e-9,
                "raw fit 10^10": raw10.exposure,
                "auto 10^10": auto10.exposure,
                "auto 10^10 method": auto10.method,
                "auto 10^10 bounds": tuple(round(b, 2) for b in auto10.bounds),
            }
        )
        print(rows[-1], flush=True)
    t = pd.DataFrame(rows)
    t["raw error 10^5"] = t["raw fit 10^5"] - t["exact 10^5"]
    t["auto error 10^5"] = t["auto 10^5"] - t["exact 10^5"]
    with pd.option_context("display.width", 220, "display.precision", 2):
        print(
            t.groupby("repetitions").agg(
                n=("exact 10^5", "size"),
                exact_5=("exact 10^5", "mean"),
                raw_error_5=("raw error 10^5", "mean"),
                raw_worst_5=("raw error 10^5", "min"),
                auto_error_5=("auto error 10^5", "mean"),
                auto_worst_5=("auto error 10^5", lambda x: x.abs().max()),
                in_bounds_5=("auto 10^5 in bounds", "mean"),
                raw_10=("raw fit 10^10", "mean"),
                auto_10=("auto 10^10", "mean"),
                searched_10=("auto 10^10 method", lambda x: (x == "search").mean()),
            )
        )


if __name__ == "__main__":
    main()
