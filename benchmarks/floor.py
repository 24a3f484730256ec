"""Exact patching against the compute floor, and against TransformerLens, in one run.

    OMP_NUM_THREADS=1 python benchmarks/floor.py [--config default|small|gpt2-small|pythia|all]
        [--device cpu|cuda] [--repeats 3] [--tl-sample N]

For each config and sweep (all heads; resid_pre x positions) it prints:

* floor: the FLOPs an exact sweep cannot avoid, counted analytically: one clean and one
  corrupted forward (the baseline and the source activations), then for each variant that
  changes anything, only the layers from its patch point on, only the positions from the first
  one that differs between the runs (earlier keys/values are the corrupted run's), the last
  layer's queries and MLP only at the scored position, and two answer columns of the unembedding.
  A head patch enters after attention: its own layer costs one head's output projection (and
  the MLP, unless attention and MLP run in parallel, as in Pythia, when the MLP is unchanged).
  Matmul FLOPs (2 per multiply-add), causal attention counted as a triangle.
* executed: the matmul FLOPs ``ia.patch`` really runs (``torch.utils.flop_counter``), and the
  ratio executed / floor.
* time: wall time of ``ia.patch`` (mean +- sd over --repeats, after a warm-up) and, on CPU, its
  CPU time (this process only: the figure other jobs on a shared machine do not stretch); the
  time a plain batched TransformerLens forward needs for the floor's FLOPs (its FLOP/s measured
  on this model, same run, same clock: CPU time on CPU, wall time on a GPU), and the fraction
  time / floor-time; "(own fwd)" is the same fraction against the engine's own forward
  (``adapter.forward_hidden``: lean blocks where it can), which is faster per FLOP than
  TransformerLens's, so that column is the stricter one.
* TL: ``transformer_lens.patching`` on the same work, same process, same clock, and TL / ia;
  with --tl-sample N only N of its serial forwards are timed and the total extrapolated (each is
  an independent forward of the same shape, so time is linear in their count; said in the output).

Threads: OMP_NUM_THREADS=1 and torch.set_num_threads(1) on CPU (set here before torch loads),
so numbers do not depend on how busy the other cores are.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import add_model_args, workload  # noqa: E402

#: name -> overrides of the common model arguments.
CONFIGS = {
    "default": dict(layers=4, heads=8, d_model=256, vocab=2000, pairs=16, tokens=24),
    "small": dict(layers=4, heads=8, d_model=128, vocab=1000, pairs=16, tokens=20),
    "gpt2-small": dict(layers=12, heads=12, d_model=768, vocab=50257, pairs=8, tokens=32),
    "pythia": dict(
        layers=6, heads=8, d_model=512, vocab=50304, pairs=8, tokens=32, arch="pythia"
    ),  # Pythia-70m's shape: rotary on a quarter of each head, parallel attention + MLP
}

SWEEPS = {
    "heads": ("heads", False, "z", ("layer", "head")),
    "resid_pre_pos": ("resid_pre", True, "resid_pre", ("layer", "pos")),
}


def _sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, dev, repeats: int, warmup: bool = True) -> tuple[float, float, float]:
    """(wall mean, wall sd, CPU mean) seconds over ``repeats`` calls, after one untimed
    warm-up call if asked. CPU time (``time.process_time``, this process only) is the steadier
    figure on a shared machine: other processes' load stretches wall time, not CPU time."""
    if warmup:
        fn()
        _sync(dev)
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        _sync(dev)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    sd = statistics.stdev(wall) if len(wall) > 1 else 0.0
    return statistics.mean(wall), sd, statistics.mean(cpu)


def matmul_flops(fn):
    """(matmul FLOPs executed by ``fn()``, its result)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        result = fn()
    return int(counter.get_total_flops()), result


# ---- the floor ------------------------------------------------------------------------------
def _block_flops(cfg, queries: list[int], new_kv: int, *, attn: bool = True, mlp: bool = True):
    """Matmul FLOPs of one block for one example: ``queries`` (absolute positions) get
    attention and MLP; ``new_kv`` positions get key/value projections."""
    d, h, dh = cfg.d_model, cfg.n_heads, cfg.d_head
    kv = getattr(cfg, "n_key_value_heads", None) or h
    q = len(queries)
    flops = 0
    if attn:
        flops += 2 * d * h * dh * q + 2 * 2 * d * kv * dh * new_kv  # q, k, v projections
        flops += sum(2 * 2 * h * dh * (p + 1) for p in queries)  # QK^T and AV, causal
        flops += 2 * h * dh * d * q  # output projection
    if mlp and not cfg.attn_only:
        flops += (3 if cfg.gated_mlp else 2) * 2 * d * cfg.d_mlp * q
    return flops


def floor_flops(subject, pairs, site: str, per_position: bool) -> int:
    """The FLOPs no exact sweep can avoid (see the module docstring)."""
    import torch

    from interp_audit.methods.locate.sites import plan_sites

    cfg = subject.cfg
    n, s, d = cfg.n_layers, pairs.seq_len, cfg.d_model
    scored = int(pairs.scored_positions()[0])
    readout = 2 * 2 * d  # two answer columns at the scored position
    full = sum(_block_flops(cfg, list(range(s)), s) for _ in range(n)) + readout
    total = 2 * len(pairs) * full  # the clean and the corrupted run
    plan = plan_sites(subject, pairs, site, per_position)
    hooks = sorted({p.hook for v in plan.variants for p in v})
    model, dev = subject.model, subject.device
    with torch.no_grad():
        _, clean = model.run_with_cache(pairs.clean.to(dev), names_filter=lambda x: x in hooks)
        _, corrupt = model.run_with_cache(
            pairs.counterfactual.to(dev), names_filter=lambda x: x in hooks
        )
    for variant in plan.variants:
        (patch,) = variant
        idx = (slice(None), *patch.index)
        differs = clean[patch.hook][idx] != corrupt[patch.hook][idx]
        if not bool(differs.any()):
            continue  # patching in what is already there: nothing to compute
        pos = patch.position()
        if pos is None:  # first position where the patched activation differs
            along = differs.movedim(1, 0).reshape(differs.shape[1], -1).any(1)
            pos = int(along.nonzero()[0, 0])
        layer = patch.layer
        per_example = readout
        for lay in range(layer, n):
            queries = list(range(pos, s)) if lay < n - 1 else [scored]
            if lay == layer and patch.hook.endswith("hook_z"):  # enters after attention
                head_out = 2 * cfg.d_head * d * len(queries)  # one head's output projection
                # a parallel block's MLP reads resid_pre, which the patch does not change
                mlp = 0 if cfg.parallel_attn_mlp else _block_flops(cfg, queries, 0, attn=False)
                per_example += head_out + mlp
            else:
                per_example += _block_flops(cfg, queries, s - pos)
        total += per_example * len(pairs)
    return total


# ---- the measurements -----------------------------------------------------------------------
def tl_patch(subject, pairs, sweep: str, sample: int):
    """TransformerLens's patching on the sweep: (values, seconds per serial forward, count)."""
    import pandas as pd
    import torch
    from transformer_lens import patching as tlp

    import interp_audit as ia

    _, _, act, axes = SWEEPS[sweep]
    model, dev = subject.model, subject.device
    setter = (
        tlp.layer_pos_patch_setter if act == "resid_pre" else tlp.layer_head_vector_patch_setter
    )
    sizes = {"layer": model.cfg.n_layers, "head": model.cfg.n_heads, "pos": pairs.seq_len}
    index = tlp.make_df_from_ranges([sizes[a] for a in axes], list(axes))
    if sample and sample < len(index):
        index = index.sample(n=sample, random_state=0).sort_index()
    cf = pairs.counterfactual.to(dev)

    def metric(logits):
        return ia.metrics.logit_diff.from_logits(logits, pairs).mean()

    def run():
        with torch.no_grad():
            _, cache = model.run_with_cache(pairs.clean.to(dev))
            return tlp.generic_activation_patch(
                model, cf, cache, metric, setter, act, index_df=pd.DataFrame(index)
            )

    return run, index


def bench(name: str, args, out) -> None:
    import torch

    import interp_audit as ia

    subject, pairs = workload(args)
    dev = subject.device
    cfg = subject.cfg
    n_rows = min(256, len(pairs) * 32)
    plain_tokens = pairs.counterfactual.repeat(n_rows // len(pairs), 1).to(dev)

    def plain():
        with torch.no_grad():
            subject.model(plain_tokens, return_type=None)

    def engine_forward():  # the engine's own forward (lean blocks where it can: adapters/lean)
        with torch.no_grad():
            subject.adapter.forward_hidden(plain_tokens.to(dev), None)

    plain_flops, _ = matmul_flops(plain)
    plain_wall, _, plain_cpu = timed(plain, dev, args.repeats)
    _, _, lean_cpu = timed(engine_forward, dev, args.repeats)
    lean_wall, _, _ = timed(engine_forward, dev, args.repeats, warmup=False)
    cpu_clock = dev.type == "cpu"  # on a GPU, CPU time is launch time: wall time only
    rate = plain_flops / (plain_cpu if cpu_clock else plain_wall)
    lean_rate = plain_flops / (lean_cpu if cpu_clock else lean_wall)
    clock = "CPU" if cpu_clock else "wall"
    out(
        f"\n[{name}] {cfg.n_layers} layers, d_model {cfg.d_model}, {cfg.n_heads} heads, vocab "
        f"{cfg.d_vocab}, {cfg.positional_embedding_type} positions, parallel attn+MLP "
        f"{bool(cfg.parallel_attn_mlp)}; {len(pairs)} pairs x {pairs.seq_len} tokens; {dev}; "
        f"plain TransformerLens forward ({n_rows} rows): {rate / 1e9:.1f} GFLOP/s, the engine's "
        f"own forward {lean_rate / 1e9:.1f} GFLOP/s ({clock} time)"
    )
    out(
        f"{'sweep':<14}{'floor GF':>9}{'exec GF':>9}{'exec/fl':>8}{'ia wall s':>16}"
        f"{'ia ' + clock + ' s':>10}{'floor s':>9}{'time/floor':>11}{'(own fwd)':>10}"
        f"{'TL s':>9}{'TL/ia':>7}{'max|diff|':>10}"
    )
    for sweep, (site, per_pos, _, _) in SWEEPS.items():
        if args.sweeps and sweep not in args.sweeps:
            continue

        def ours(site=site, per_pos=per_pos):
            return ia.patch(
                subject, pairs, "logit_diff", sites=site, per_position=per_pos, normalize=False
            )

        floor = floor_flops(subject, pairs, site, per_pos)
        executed, result = matmul_flops(ours)  # also the warm-up: lazy imports, kernel set-up
        values = result.values.flatten()
        ia_wall, ia_sd, ia_cpu = timed(ours, dev, args.repeats, warmup=False)
        ia_s = ia_cpu if cpu_clock else ia_wall
        floor_s, lean_floor_s = floor / rate, floor / lean_rate
        tl_run, index = tl_patch(subject, pairs, sweep, args.tl_sample)
        tl_vals = tl_run().to(values.device)  # also TL's warm-up
        tl_wall, _, tl_cpu = timed(tl_run, dev, max(1, args.repeats // 2), warmup=False)
        full = values.numel()
        tl_total = (tl_cpu if cpu_clock else tl_wall) * full / len(index)
        flat = torch.as_tensor(index.to_numpy())
        dims = [cfg.n_layers, cfg.n_heads if "head" in SWEEPS[sweep][3] else pairs.seq_len]
        lin = flat[:, 0] * dims[1] + flat[:, 1]
        diff = float((values[lin] - tl_vals.flatten()).abs().max())
        sampled = "" if len(index) == full else f" (TL: {len(index)} of {full} forwards timed)"
        out(
            f"{sweep:<14}{floor / 1e9:>9.2f}{executed / 1e9:>9.2f}{executed / floor:>7.2f}x"
            f"{ia_wall:>10.3f}+-{ia_sd:<4.3f}{ia_s:>10.3f}{floor_s:>9.3f}"
            f"{ia_s / floor_s:>10.2f}x{ia_s / lean_floor_s:>9.2f}x"
            f"{tl_total:>9.2f}{tl_total / ia_s:>6.1f}x{diff:>10.1e}{sampled}"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_args(p)
    p.add_argument("--config", default="all", choices=[*CONFIGS, "all", "args"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--tl-sample", type=int, default=0, help="time only N of TL's serial forwards (0: all)"
    )
    p.add_argument("--sweeps", nargs="+", choices=list(SWEEPS), default=None)
    args = p.parse_args()
    import torch

    if args.device == "cpu":
        torch.set_num_threads(1)
    print(
        f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} thread(s) "
        f"(OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}), repeats {args.repeats}"
    )
    names = list(CONFIGS) if args.config == "all" else [args.config]
    for name in names:
        if name != "args":
            for key, value in CONFIGS[name].items():
                setattr(args, key, value)
        bench(name, args, lambda line: print(line, flush=True))


if __name__ == "__main__":
    main()
