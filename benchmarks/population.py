"""Population path effects against today's sampled contrasts, on the shipped case studies.

    OMP_NUM_THREADS=1 python benchmarks/population.py [--repeats 5] [--n-units 100000]

For readmission (continuous lab noise: ``n_units`` drawn units, deduplicated) and hiring (tables:
exact enumeration), it runs each spec's graph-form checks (path_invariance, responsiveness) twice
on the same loaded model, each time from a fresh causal context (units drawn, prompts rendered
and tokenised, forwards, bootstrap): ``exact: false`` (sampled pairs, the spec's ``n``) and
``exact: true`` (the population). It prints the wall time of each (mean +- sd over
``--repeats``, after a warm-up), their ratio, and every path's effect both ways: the sampled
effect with its 95% CI and the population effect (exact, or with its unit-sampling CI), and
whether the population effect lies inside the sampled CI.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ["OMP_NUM_THREADS"] = "1"
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SPECS = {
    "readmission": ROOT / "circuits" / "readmission" / "audit.yaml",
    "hiring": ROOT / "circuits" / "hiring" / "audit.yaml",
}
GRAPH_KINDS = ("path_invariance", "responsiveness")


def _context(parsed, base, subject, cm):
    from interp_audit.audit.causal_run import CausalContext
    from interp_audit.audit.context import AuditContext
    from interp_audit.model.metrics import get_metric

    return AuditContext(
        subject=subject,
        contrasts={},
        metric=get_metric(parsed.metric.name),
        seed=parsed.seed,
        base=base,
        causal=CausalContext(subject, cm, base),
    )


def run_checks(parsed, base, subject, cm, exact: bool, n_units: int):
    from interp_audit.audit.kinds import check_kinds

    kinds = check_kinds()
    ctx = _context(parsed, base, subject, cm)
    out = []
    for name, chk in zip(parsed.check_names(), parsed.checks, strict=True):
        if chk.kind in GRAPH_KINDS and getattr(chk, "source", "x") is not None:
            chk = chk.model_copy(update={"exact": exact, "n_units": n_units})
            out.append(kinds[chk.kind].run(chk, ctx, name))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--n-units", type=int, default=100_000)
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    import interp_audit as ia
    from interp_audit.audit.causal_run import load_causal
    from interp_audit.audit.spec import load_spec

    for case, path in SPECS.items():
        parsed, base = load_spec(path)
        subject = ia.load_model(parsed.model.source)
        cm = load_causal(parsed.causal, base)
        times = {}
        results = {}
        for exact in (False, True):
            run_checks(parsed, base, subject, cm, exact, args.n_units)  # warm-up
            ts = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                results[exact] = run_checks(parsed, base, subject, cm, exact, args.n_units)
                ts.append(time.perf_counter() - t0)
            times[exact] = ts
        s, e = (statistics.mean(times[k]) for k in (False, True))
        sd = {k: statistics.stdev(v) if len(v) > 1 else 0.0 for k, v in times.items()}
        print(f"\n== {case}: {', '.join(c.name for c in results[True])}")
        print(f"sampled pairs (exact: false): {s:.3f} s +- {sd[False]:.3f}")
        print(f"population    (exact: true):  {e:.3f} s +- {sd[True]:.3f}")
        print(f"population / sampled: {e / s:.2f}")
        print(f"{'path':<22s} {'sampled effect [95% CI]':<34s} {'population effect':<36s} inside")
        seen = set()
        for cs, cp in zip(results[False], results[True], strict=True):
            rows_p = {d["path"]: d for d in cp.details}
            for d in cs.details:
                if d["path"] in seen or "ci" not in d:
                    continue
                seen.add(d["path"])
                q = rows_p[d["path"]]
                pop = (
                    f"{q['effect']:+.4f} (exact)"
                    if q.get("exact")
                    else f"{q['effect']:+.4f} [{q['ci'][0]:+.4f}, {q['ci'][1]:+.4f}]"
                )
                inside = d["ci"][0] <= q["effect"] <= d["ci"][1]
                print(
                    f"{d['path']:<22s} {d['effect']:+.4f} [{d['ci'][0]:+.4f}, {d['ci'][1]:+.4f}]"
                    f"{'':<9s} {pop:<36s} {'yes' if inside else 'NO'}"
                )
        print(f"population: {next(iter(cp.details))['population']}")


if __name__ == "__main__":
    main()
