"""Achieved throughput of one Llama-3-8B-shaped decoder block on a GPU, at sweep shapes.

The input to docs/scale.md's estimate: the patching engine's per-variant cost is "recompute the
blocks from the patched layer on, from the patched position on, with earlier positions' keys and
values from the base run's cache". This times exactly that unit (one block: RMSNorm, GQA
attention over a cached prefix, SwiGLU MLP; bf16) in plain torch, since it needs no model
weights (random ones cost the same), and reports achieved TFLOP/s against the analytic FLOP
count. Mean and standard error over ``--repeats`` timed runs (CUDA events) after warm-up.

    python benchmarks/gpu_block.py            # needs CUDA
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F

D, H, KV, DH, MLP = 4096, 32, 8, 128, 14336  # Llama-3-8B


def block_flops(rows: int, new: int, prefix: int) -> float:
    """Matmul FLOPs of one block on ``rows`` sequences, ``new`` recomputed positions."""
    tokens = rows * new
    proj = 2 * tokens * D * (D + 2 * KV * DH + D)  # q, k, v, o
    mlp = 2 * tokens * 3 * D * MLP  # gate, up, down
    ctx = prefix + new
    attn = 2 * 2 * rows * H * new * ctx * DH  # scores and weighted values (no causal saving)
    return proj + mlp + attn


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args()
    dev, dt = "cuda", torch.bfloat16
    g = torch.Generator(device=dev).manual_seed(0)

    def w(*shape):
        return torch.randn(*shape, device=dev, dtype=dt, generator=g) * 0.02

    wq, wk, wv, wo = w(D, D), w(KV * DH, D), w(KV * DH, D), w(D, D)
    wg, wu, wd = w(MLP, D), w(MLP, D), w(D, MLP)
    n1, n2 = torch.ones(D, device=dev, dtype=dt), torch.ones(D, device=dev, dtype=dt)

    def block(x, k_cache, v_cache):
        b, t, _ = x.shape
        h = F.rms_norm(x, (D,), n1)
        q = (h @ wq.T).view(b, t, H, DH).transpose(1, 2)
        k = (h @ wk.T).view(b, t, KV, DH).transpose(1, 2)
        v = (h @ wv.T).view(b, t, KV, DH).transpose(1, 2)
        k = torch.cat([k_cache, k], 2).repeat_interleave(H // KV, 1)
        v = torch.cat([v_cache, v], 2).repeat_interleave(H // KV, 1)
        prefix = k_cache.shape[2]
        mask = torch.ones(t, prefix + t, device=dev, dtype=torch.bool).tril(prefix)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + a.transpose(1, 2).reshape(b, t, D) @ wo.T
        h = F.rms_norm(x, (D,), n2)
        return x + (F.silu(h @ wg.T) * (h @ wu.T)) @ wd.T

    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, bf16")
    print("rows  new  prefix   ms/block (+-se)   TFLOP/s   us per (row x new position)")
    for rows, new, prefix in [(64, 32, 32), (256, 32, 32), (512, 16, 48), (1024, 32, 32)]:
        x = torch.randn(rows, new, D, device=dev, dtype=dt, generator=g)
        kc = torch.randn(rows, KV, prefix, DH, device=dev, dtype=dt, generator=g)
        vc = torch.randn(rows, KV, prefix, DH, device=dev, dtype=dt, generator=g)
        with torch.no_grad():
            for _ in range(3):
                block(x, kc, vc)
            torch.cuda.synchronize()
            times = []
            for _ in range(args.repeats):
                s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                s.record()
                block(x, kc, vc)
                e.record()
                torch.cuda.synchronize()
                times.append(s.elapsed_time(e))
        ms = statistics.mean(times)
        se = statistics.stdev(times) / len(times) ** 0.5
        tflops = block_flops(rows, new, prefix) / (ms / 1e3) / 1e12
        print(
            f"{rows:5d} {new:4d} {prefix:6d}   {ms:8.3f} (+-{se:.3f})   {tflops:7.1f}   "
            f"{1e3 * ms / (rows * new):8.3f}"
        )


if __name__ == "__main__":
    main()
