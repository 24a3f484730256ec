"""Ray executor: one vs two local workers on a sweep big enough to amortise the overhead.

Run (OMP_NUM_THREADS=1 is pinned below, so each worker and the local run use one core):

    PYTHONPATH=. python benchmarks/distributed.py            # heads x positions, 4x8x24 model
    PYTHONPATH=. python benchmarks/distributed.py --pairs 32 --tokens 32 --repeats 5

Prints, from one run: the local sweep time, the Ray sweep time with 1 and 2 workers (actors
started and model loaded before timing: a warm pool, as inside an audit after its first sweep),
the speed-up of 2 workers over 1 and over local (the three timed interleaved, round by round, so
load drift on a shared machine hits all alike), and the per-task overhead
``(t_ray1 - t_local) / tasks``. Each Ray sweep also builds the base/source runs once per worker
(they are cached per sweep), which is part of that overhead. Every Ray result is checked to be
bit-identical to the local one. Mean and standard error over ``--repeats``.
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"  # pinned: one core per worker and for the local baseline
os.environ["MKL_NUM_THREADS"] = "1"
os.environ.setdefault("TQDM_DISABLE", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

from common import add_model_args, workload  # noqa: E402


def _stats(times: list[float]) -> tuple[float, float]:
    se = statistics.stdev(times) / len(times) ** 0.5 if len(times) > 1 else float("nan")
    return statistics.mean(times), se


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_args(p)
    p.add_argument("--sites", default="heads")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128, help="rows per forward pass")
    args = p.parse_args()

    import ray
    import torch

    import interp_audit as ia
    from interp_audit.engine.batched import RunContext, plan_chunks
    from interp_audit.engine.executors.ray_executor import RayExecutor
    from interp_audit.methods.locate.sites import plan_sites

    torch.set_num_threads(1)
    subject, pairs = workload(args)
    kw = dict(metric="logit_diff", sites=args.sites, per_position=True, batch_size=args.batch_size)
    plan = plan_sites(subject, pairs, args.sites, per_position=True)
    ctx = RunContext.build(
        subject, pairs, ia.metrics.logit_diff, source_hooks=plan.hooks, need_kv=True
    )
    _, chunks = plan_chunks(ctx, plan.variants, max_rows=args.batch_size)
    print(
        f"sweep: {args.sites} x positions on a {args.layers}-layer {args.heads}-head "
        f"d_model={args.d_model} model, {args.pairs} pairs x {args.tokens} tokens: "
        f"{len(plan.variants)} variants in {len(chunks)} forward passes"
    )
    local = ia.patch(subject, pairs, **kw)  # warm-up, and the reference result
    # Logical CPUs: the 1-worker and 2-worker pools live side by side (idle actors use no CPU),
    # so the three set-ups are timed interleaved, round by round: load drift hits all alike.
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    try:
        pools, startup = {}, {}
        for workers in (1, 2):
            pools[workers] = RayExecutor(num_workers=workers)
            t0 = time.perf_counter()
            pools[workers].actors(subject)  # model shipped and loaded once per actor
            startup[workers] = time.perf_counter() - t0
            ia.patch(subject, pairs, **kw, executor=pools[workers])  # warm-up
        times: dict = {0: [], 1: [], 2: []}
        for _ in range(args.repeats):
            for workers in (0, 1, 2):
                ex = pools.get(workers, "local")
                t0 = time.perf_counter()
                eff = ia.patch(subject, pairs, **kw, executor=ex)
                times[workers].append(time.perf_counter() - t0)
                assert torch.equal(eff.per_example, local.per_example), "results differ"
        rows = {}
        for workers in (1, 2):
            ex = pools[workers]
            size = -(-len(chunks) // (workers * ex.tasks_per_worker))
            rows[workers] = (*_stats(times[workers]), startup[workers], -(-len(chunks) // size))
            ex.close()
        t_local, se_local = _stats(times[0])
    finally:
        ray.shutdown()
    (t1, se1, st1, n1), (t2, se2, st2, _) = rows[1], rows[2]
    print(f"local (1 process, 1 thread):  {t_local:7.3f} s +- {se_local:.3f}")
    print(f"ray, 1 worker:                {t1:7.3f} s +- {se1:.3f}   (pool start {st1:.1f} s)")
    print(f"ray, 2 workers:               {t2:7.3f} s +- {se2:.3f}   (pool start {st2:.1f} s)")
    print(f"speed-up 2 workers vs 1:      {t1 / t2:7.2f}x")
    print(f"speed-up 2 workers vs local:  {t_local / t2:7.2f}x")
    print(
        f"overhead per task (1 worker): {1000 * (t1 - t_local) / n1:7.1f} ms "
        f"({n1} tasks of {len(chunks)} forward passes; includes the worker's own base run)"
    )
    print("all Ray results bit-identical to the local run: yes")
    print(f"load average at the end (1, 5, 15 min): {os.getloadavg()}")


if __name__ == "__main__":
    main()
