"""Where does the fine-tune keep the account numbers? Per layer, per LoRA module, per MLP neuron,
selected on one half of the canaries and tested on the other half against random controls.

    nice -n 10 env OMP_NUM_THREADS=2 python circuits/support-privacy/locate.py [--top 16]

The recall measure is the mean log p(secret | prefix) over a set of canaries (all 11 tokens of
each account number, teacher forced).

* **LoRA modules** (210 = 30 layers x 7 projections): the fine-tune is base + one low-rank delta
  per module. Attribution: the first-order drop in recall when a module's delta is removed,
  <grad recall, delta> (one backward over the LOCATE canaries); then the top ``--top`` modules
  are reverted to the base weights for real and their drop on the EVALUATE canaries compared
  with ``--controls`` random sets of as many modules of the same projection types.
* **Layers**: every layer's deltas reverted at once (exact, 30 evaluations), and **projection
  types** (all 30 q_proj deltas, ...).
* **MLP neurons** (30 x 1536): attribution patching of zero-ablation, act x grad summed over
  positions (LOCATE canaries); the top ``--neurons`` zero-ablated on the EVALUATE canaries
  against random neurons (same count per layer).

Every intervention's cost is the held-out perplexity. Writes out/support-privacy/locate.json.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import defaultdict

import torch
from common import BASE, FINETUNE, OUT, canaries, ci, fmt, lines, load

from interp_audit.audit.kinds.memorization import random_like
from interp_audit.methods.privacy.memorization import perplexity, secret_logprobs
from interp_audit.methods.privacy.secrets import SecretSpace

#: TransformerLens parameter -> the peft module name it comes from
TL_TO_LORA = {
    "attn.W_Q": "q_proj",
    "attn._W_K": "k_proj",
    "attn._W_V": "v_proj",
    "attn.W_K": "k_proj",
    "attn.W_V": "v_proj",
    "attn.W_O": "o_proj",
    "mlp.W_gate": "gate_proj",
    "mlp.W_in": "up_proj",
    "mlp.W_out": "down_proj",
}


def lora_deltas(ft, base) -> dict[str, tuple[str, torch.Tensor]]:
    """label 'L{layer}.{proj}' -> (TL parameter name, fine-tune minus base)."""
    base_params = dict(base.model.named_parameters())
    out = {}
    for name, p in ft.model.named_parameters():
        parts = name.split(".")
        if parts[0] != "blocks":
            continue
        key = ".".join(parts[2:])
        if key not in TL_TO_LORA:
            continue
        delta = (p.detach() - base_params[name].detach()).clone()
        if delta.abs().max() > 0:
            out[f"L{parts[1]}.{TL_TO_LORA[key]}"] = (name, delta)
    return out


def recall_batch(subject, cs):
    """Token rows and the secret positions of each canary (for differentiable recall)."""
    rows, spans = [], []
    for c in cs:
        space = SecretSpace.build(subject, c.prefix, c.secret, check=0)
        ids = list(space.prefix_ids) + list(space.secret_ids)
        rows.append(ids)
        spans.append((len(space.prefix_ids), len(ids)))
    width = max(map(len, rows))
    tokens = torch.full((len(rows), width), subject.pad_token_id)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = torch.tensor(r)
    return tokens, spans


def recall(subject, tokens, spans) -> torch.Tensor:
    """Mean over canaries of log p(secret | prefix) (differentiable)."""
    lp = subject.adapter.forward_logits(tokens[:, :-1]).float().log_softmax(-1)
    total = []
    for i, (a, b) in enumerate(spans):
        idx = torch.arange(a, b)
        total.append(lp[i, idx - 1, tokens[i, idx]].sum())
    return torch.stack(total).mean()


def mean_recall(subject, cs) -> float:
    return float(secret_logprobs(subject, [c.prefix for c in cs], [c.secret for c in cs]).mean())


class Reverted:
    """Set some LoRA modules' weights back to the base model's (restored on exit)."""

    def __init__(self, subject, deltas, labels):
        self.params = dict(subject.model.named_parameters())
        self.items = [deltas[lab] for lab in labels]

    def __enter__(self):
        with torch.no_grad():
            for name, d in self.items:
                self.params[name].sub_(d)

    def __exit__(self, *exc):
        with torch.no_grad():
            for name, d in self.items:
                self.params[name].add_(d)


def random_modules(labels: list[str], pool: list[str], rng: random.Random) -> list[str]:
    """As many random modules per projection type as ``labels`` has, none of them."""
    by_proj = defaultdict(int)
    for lab in labels:
        by_proj[lab.split(".")[1]] += 1
    out = []
    for proj, k in sorted(by_proj.items()):
        cands = [p for p in pool if p.endswith("." + proj) and p not in labels]
        out += rng.sample(cands, k)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--top", type=int, default=16, help="LoRA modules reverted")
    ap.add_argument("--neurons", type=int, default=256, help="MLP neurons zero-ablated")
    ap.add_argument("--controls", type=int, default=5)
    ap.add_argument("--min-reps", type=int, default=8, help="canaries used (repetitions)")
    ap.add_argument("--heldout", type=int, default=48, help="held-out texts for perplexity")
    args = ap.parse_args()
    started = time.time()
    ft, base = load(FINETUNE), load(BASE)
    locate_c = canaries("locate", args.min_reps)
    evaluate_c = canaries("evaluate", args.min_reps)
    reference_c = canaries("reference")[:8]
    heldout = lines("heldout.txt")[: args.heldout]
    deltas = lora_deltas(ft, base)
    print(f"{len(deltas)} LoRA modules; {len(locate_c)} locate / {len(evaluate_c)} evaluate")
    out = {"settings": vars(args)}

    def measure(ctx) -> dict:
        with ctx:
            return {
                "evaluate": mean_recall(ft, evaluate_c),
                "locate": mean_recall(ft, locate_c),
                "reference": mean_recall(ft, reference_c),
                "perplexity": perplexity(ft, heldout),
            }

    import contextlib

    clean = measure(contextlib.nullcontext())
    out["clean"] = clean
    print("fine-tune:", clean, flush=True)

    # ---- attribution over LoRA modules and MLP neurons (one backward, LOCATE canaries) ----
    tokens, spans = recall_batch(ft, locate_c)
    acts, grads = {}, {}

    def keep_act(a, hook):
        acts[hook.name] = a.detach()

    def keep_grad(g, hook):
        grads[hook.name] = g.detach()

    hooks = [f"blocks.{layer}.mlp.hook_post" for layer in range(ft.n_layers)]
    ft.model.zero_grad(set_to_none=True)
    with (
        torch.enable_grad(),
        ft.hooks([(h, keep_act) for h in hooks], [(h, keep_grad) for h in hooks]),
    ):
        recall(ft, tokens, spans).backward()
    params = dict(ft.model.named_parameters())
    module_attr = {lab: float((params[name].grad * d).sum()) for lab, (name, d) in deltas.items()}
    ft.model.zero_grad(set_to_none=True)
    mask = torch.zeros(tokens[:, :-1].shape, dtype=torch.bool)
    for i, r in enumerate(spans):
        mask[i, : r[1] - 1] = True
    neuron_attr = {}
    for layer, h in enumerate(hooks):
        score = (acts[h] * grads[h])[mask].sum(0)  # drop in recall if zeroed ~ act * grad
        for n, v in enumerate(score.tolist()):
            neuron_attr[f"L{layer}N{n}"] = v
    out["module_attribution"] = module_attr

    # ---- exact reversion per layer and per projection type --------------------------------
    per_layer = {}
    for layer in range(ft.n_layers):
        labs = [lab for lab in deltas if lab.startswith(f"L{layer}.")]
        m = measure(Reverted(ft, deltas, labs))
        per_layer[layer] = {
            k: clean[k] - v if k != "perplexity" else v / clean[k] - 1 for k, v in m.items()
        }
    out["per_layer"] = per_layer
    print(
        "per layer (drop in evaluate recall):",
        {k: round(v["evaluate"], 2) for k, v in per_layer.items()},
        flush=True,
    )
    per_proj = {}
    for proj in sorted({lab.split(".")[1] for lab in deltas}):
        labs = [lab for lab in deltas if lab.endswith("." + proj)]
        m = measure(Reverted(ft, deltas, labs))
        per_proj[proj] = {
            k: clean[k] - v if k != "perplexity" else v / clean[k] - 1 for k, v in m.items()
        }
    out["per_projection"] = per_proj
    print("per projection:", {k: round(v["evaluate"], 2) for k, v in per_proj.items()}, flush=True)
    everything = measure(Reverted(ft, deltas, list(deltas)))  # = the base model
    out["all_reverted"] = everything

    # ---- top modules (selected on LOCATE) vs random controls, evaluated on EVALUATE --------
    top = sorted(module_attr, key=module_attr.get, reverse=True)[: args.top]
    rng = random.Random(0)
    located = measure(Reverted(ft, deltas, top))
    controls = [
        measure(Reverted(ft, deltas, random_modules(top, list(deltas), rng)))
        for _ in range(args.controls)
    ]
    out["top_modules"] = {"modules": top, "after": located, "controls": controls}
    drop = clean["evaluate"] - located["evaluate"]
    cdrops = [clean["evaluate"] - c["evaluate"] for c in controls]
    print(
        f"top {args.top} modules {top}: held-out drop {drop:.2f} nats vs random "
        f"{[round(x, 2) for x in cdrops]}; perplexity "
        f"x{located['perplexity'] / clean['perplexity']:.3f}",
        flush=True,
    )

    # ---- top neurons (AtP on LOCATE) vs random neurons, zero-ablated, on EVALUATE ----------
    top_n = sorted(neuron_attr, key=neuron_attr.get, reverse=True)[: args.neurons]
    n_located = measure(ia_ablate(ft, top_n))
    n_controls = [measure(ia_ablate(ft, random_like(top_n, ft, rng))) for _ in range(args.controls)]
    out["top_neurons"] = {
        "neurons": top_n,
        "after": n_located,
        "controls": n_controls,
        "layers": sorted({int(n[1:].split("N")[0]) for n in top_n}),
    }
    ndrop = clean["evaluate"] - n_located["evaluate"]
    print(
        f"top {args.neurons} neurons: held-out drop {ndrop:.2f} nats vs random "
        f"{[round(clean['evaluate'] - c['evaluate'], 2) for c in n_controls]}",
        flush=True,
    )
    per_canary = {}
    for label, ctx in (("modules", Reverted(ft, deltas, top)), ("neurons", ia_ablate(ft, top_n))):
        with ctx:
            after = secret_logprobs(
                ft, [c.prefix for c in evaluate_c], [c.secret for c in evaluate_c]
            )
        before = secret_logprobs(ft, [c.prefix for c in evaluate_c], [c.secret for c in evaluate_c])
        per_canary[label] = ci((before - after).tolist())
    out["held_out_drop_ci"] = per_canary
    print(
        "held-out drop per canary (nats, mean [95% CI]):",
        {k: fmt(v) for k, v in per_canary.items()},
    )
    out["seconds"] = round(time.time() - started)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "locate.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {OUT / 'locate.json'} ({out['seconds']} s)")


def ia_ablate(subject, comps):
    import interp_audit as ia

    return ia.ablate(subject, comps, "zero")


if __name__ == "__main__":
    main()
