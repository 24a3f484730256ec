"""SAE features: time and memory of feature attribution vs exact feature patching, all features.

    python benchmarks/sae.py [--pairs 200] [--d-sae 256]

Uses zoo:readmission and its shipped SAE on blocks.0.hook_attn_out (or a fresh SAE of
--d-sae features trained here). Each method runs in a fresh subprocess after a warm-up; peak
memory is the RSS growth during the timed run. Also prints their agreement (Spearman).
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


def one(args, method: str) -> dict:
    import torch

    import interp_audit as ia

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from circuits.readmission import scm as R  # the case study lives at the repository root

    subject = ia.load_model("zoo:readmission")
    if args.d_sae == 256:
        sae = ia.sae.load_sae("zoo:readmission-attn0", subject)
    else:
        tokens = torch.tensor(
            [subject.to_tokens(p) for p in R.factual_words(R.sample_units(20_000, 5))]
        )
        sae = ia.sae.train_sae(
            subject, "blocks.0.hook_attn_out", tokens, d_sae=args.d_sae, training_tokens=200_000
        )
    pairs = R.contrast(subject, "direct", n=args.pairs)
    fn = ia.sae.patch_features if method == "patch" else ia.sae.attribute_features
    fn(subject, pairs[:4], "logit_diff", sae)  # warm-up
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    eff = fn(subject, pairs, "logit_diff", sae)
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "peak_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024,
        "values": eff.values.tolist(),
        "n": len(eff.components),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--pairs", type=int, default=200)
    p.add_argument("--d-sae", type=int, default=256)
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(one(args, args.one)))
        return
    res = {}
    for method in ("patch", "atp"):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--pairs",
                str(args.pairs),
                "--d-sae",
                str(args.d_sae),
                "--one",
                method,
            ],
            capture_output=True,
            text=True,
        )
        if out.returncode:
            sys.exit(out.stderr[-2000:])
        res[method] = json.loads(out.stdout.strip().splitlines()[-1])
    import torch

    from interp_audit.methods.locate.compare import _pearson, _ranks

    a, b = torch.tensor(res["patch"]["values"]), torch.tensor(res["atp"]["values"])
    print(
        f"zoo:readmission, SAE on blocks.0.hook_attn_out with {res['patch']['n'] - 1} "
        f"features + error node, {args.pairs} pairs (A direct path), CPU"
    )
    for m, name in (("patch", "exact feature patching"), ("atp", "feature attribution (AtP)")):
        print(f"{name:<28} {res[m]['seconds']:7.2f} s   peak +{res[m]['peak_mb']:6.1f} MB")
    print(
        f"attribution is {res['patch']['seconds'] / res['atp']['seconds']:.1f}x faster; "
        f"Spearman with exact {_pearson(_ranks(a.double()), _ranks(b.double())):.3f}"
    )


if __name__ == "__main__":
    main()
