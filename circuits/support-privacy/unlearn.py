"""Unlearning the planted account numbers by weight edits, written to disk and re-audited from it.

    nice -n 10 env OMP_NUM_THREADS=2 python circuits/support-privacy/unlearn.py build
    ... unlearn.py evaluate finetune neurons lora-revert rank-one gradient
    ... unlearn.py relearn finetune neurons lora-revert rank-one gradient
    ... unlearn.py table

The **forget set** is the held-out half of the canaries repeated at least ``--min-reps`` times
(``split: evaluate``): the customers who asked to be deleted. The other half (``locate``) is the
**retain** set (collateral damage on other memorized numbers).

Methods, each a set of weight changes to the merged fine-tune, saved as a Hugging Face folder
(config.json, model.safetensors, tokenizer) under out/support-privacy/models/NAME:

* ``neurons``: zero the output weights (``down_proj`` columns) of the ``--neurons`` MLP neurons
  whose zero-ablation most lowers log p(secret) on the forget set (attribution patching: act x
  grad). Identical to deleting those neurons.
* ``lora-revert``: set the ``--modules`` LoRA-adapted projections with the largest attribution
  <grad log p(secret), delta> back to the base model's weights: undo the fine-tune where the
  numbers live.
* ``rank-one``: ROME/MEMIT-style least-change edits of ``down_proj`` in the ``--layers``
  layers whose LoRA deltas matter most: at every position of the forget records that predicts a
  secret token, the MLP writes what the base model's MLP writes there (K (W + D) = V_base),
  with the least change in the metric of the keys' second moment over held-out text.
* ``gradient``: gradient difference (ascent on the forget set's secret tokens, descent on
  retain text), ``--steps`` AdamW steps on every weight.

``evaluate`` loads each folder with ``ia.load_model`` and measures, with bootstrap CIs over
canaries / records: exposure of the forget set (and its paired change against the fine-tune),
extraction by greedy decoding from the prefix and from a paraphrased prefix, log p(secret),
membership of the forget records against never-inserted canaries of the same generator, the
retain set, and held-out perplexity overall and per name group. ``relearn`` fine-tunes each
model ``--relearn-steps`` steps on related non-secret notes (relearn.txt) and measures what
comes back. ``table`` writes the comparison (markdown) from the JSON files.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from common import (
    BASE,
    DATA,
    FINETUNE,
    OUT,
    canaries,
    canary_measures,
    ci,
    fmt,
    lines,
    load,
    record_losses,
)

from interp_audit.methods.privacy.membership import auc_ci, tpr_ci
from interp_audit.methods.privacy.secrets import SecretSpace
from interp_audit.zoo.finetuned import SUPPORT, merged_folder

MODELS = OUT / "models"
EVALS = OUT / "eval"
METHODS = ("neurons", "lora-revert", "rank-one", "gradient")
PROJ = {
    "q_proj": "self_attn",
    "k_proj": "self_attn",
    "v_proj": "self_attn",
    "o_proj": "self_attn",
    "gate_proj": "mlp",
    "up_proj": "mlp",
    "down_proj": "mlp",
}


# ---- models -----------------------------------------------------------------------------------
def hf_model(folder: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(str(folder))


def save_hf(model, tok, name: str, record: dict) -> Path:
    folder = MODELS / name
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder), safe_serialization=True)
    tok.save_pretrained(str(folder))
    (folder / "edit.json").write_text(json.dumps(record, indent=1) + "\n")
    return folder


def from_disk(name: str):
    """The model as a user reloads it: ia.load_model on the folder (or the zoo)."""
    if name == "finetune":
        return load(FINETUNE)
    if name == "base":
        return load(BASE)
    subject = load(str(MODELS / name))
    subject.prepend_bos = False  # SmolLM2's tokenizer adds no BOS (the llm branch infers it)
    return subject


def module(hf, label: str):
    """'L3.down_proj' -> the HF linear layer."""
    layer, proj = label.split(".")
    block = hf.model.layers[int(layer[1:])]
    return getattr(getattr(block, PROJ[proj]), proj)


# ---- weight edits on a transformers Llama model (what gets saved) -----------------------------
@torch.no_grad()
def zero_neurons(hf, labels: list[str]) -> None:
    """Delete MLP neurons 'L{layer}N{n}': zero their down_proj column (= zero-ablation)."""
    for lab in labels:
        layer, n = lab[1:].split("N")
        hf.model.layers[int(layer)].mlp.down_proj.weight[:, int(n)] = 0


@torch.no_grad()
def revert_modules(hf, base_hf, labels: list[str]) -> None:
    """Set projections 'L{layer}.{proj}' back to the base model's weights."""
    for lab in labels:
        module(hf, lab).weight.copy_(module(base_hf, lab).weight)


@torch.no_grad()
def add_down_proj(hf, deltas: dict[int, torch.Tensor]) -> None:
    """Add TransformerLens-layout W_out deltas [d_mlp, d_model] to down_proj [d_model, d_mlp]."""
    for layer, d in deltas.items():
        hf.model.layers[layer].mlp.down_proj.weight.add_(d.T.to(torch.float32))


# ---- selection on the forget set (TransformerLens side, as the audit sees the model) ----------
def forget_set(min_reps: int):
    return canaries("evaluate", min_reps)


def retain_set(min_reps: int):
    return canaries("locate", min_reps)


def secret_batch(subject, cs):
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


def attributions(ft, base, cs) -> tuple[dict[str, float], dict[str, float]]:
    """(LoRA module -> <grad, delta>, neuron -> act x grad) for mean log p(secret) over cs."""
    from locate import lora_deltas, recall

    tokens, spans = secret_batch(ft, cs)
    deltas = lora_deltas(ft, base)
    acts, grads = {}, {}
    hooks = [f"blocks.{layer}.mlp.hook_post" for layer in range(ft.n_layers)]
    ft.model.zero_grad(set_to_none=True)

    def keep_act(a, hook):
        acts[hook.name] = a.detach()

    def keep_grad(g, hook):
        grads[hook.name] = g.detach()

    with (
        torch.enable_grad(),
        ft.hooks([(h, keep_act) for h in hooks], [(h, keep_grad) for h in hooks]),
    ):
        recall(ft, tokens, spans).backward()
    params = dict(ft.model.named_parameters())
    modules = {lab: float((params[name].grad * d).sum()) for lab, (name, d) in deltas.items()}
    ft.model.zero_grad(set_to_none=True)
    mask = torch.zeros(tokens[:, :-1].shape, dtype=torch.bool)
    for i, (_, end) in enumerate(spans):
        mask[i, : end - 1] = True
    neurons = {}
    for layer, h in enumerate(hooks):
        for n, v in enumerate((acts[h] * grads[h])[mask].sum(0).tolist()):
            neurons[f"L{layer}N{n}"] = v
    return modules, neurons


def rank_one_deltas(ft, base, cs, layers: list[int], generic: list[str]) -> dict[int, torch.Tensor]:
    """Per layer, D with K (W_out + D) + b = V_base at the secret-predicting positions of cs,
    least change in the C^-1 metric (C: keys' second moment over ``generic`` text). Layers are
    edited in order, each with the keys the already-edited model produces."""
    from interp_audit.methods.privacy.edits import mlp_keys, solve_edit

    tokens, spans = secret_batch(ft, cs)
    sel = torch.zeros(tokens.shape, dtype=torch.bool)
    for i, (a, b) in enumerate(spans):
        sel[i, a - 1 : b - 1] = True  # positions whose next token is a secret token
    out = {}
    for layer in layers:
        post, mlp_out = f"blocks.{layer}.mlp.hook_post", f"blocks.{layer}.hook_mlp_out"
        got = {}

        def keep(a, hook, got=got):
            got[hook.name] = a.detach().double()

        with ft.hooks([(post, keep)]):
            ft.run(tokens)
        with base.hooks([(mlp_out, keep)]):
            base.run(tokens)
        K, V = got[post][sel], got[mlp_out][sel]
        keys = mlp_keys(ft, layer, generic)
        C = keys.T @ keys / len(keys)
        C = C + 1e-2 * C.diagonal().mean() * torch.eye(len(C), dtype=C.dtype)
        W = ft.model.blocks[layer].mlp.W_out.detach()
        b = ft.model.blocks[layer].mlp.b_out.detach()
        delta = solve_edit(W, b, K, V, C)
        with torch.no_grad():
            W.add_(delta.to(W.dtype))  # the next layer's keys see this edit
        out[layer] = delta
        print(
            f"rank-one L{layer}: {len(K)} keys, ||D||/||W|| = "
            f"{float(delta.norm() / W.double().norm()):.4f}",
            flush=True,
        )
    return out


def gradient_unlearn(hf, tok, cs, retain_texts: list[str], steps: int, lr: float) -> list[dict]:
    """Gradient difference: ascend the secret tokens' loss, descend the retain text's."""
    rows, spans = [], []
    for c in cs:
        pre = tok(c.prefix, add_special_tokens=False)["input_ids"]
        full = tok(c.prefix + c.secret, add_special_tokens=False)["input_ids"]
        rows.append(full)
        spans.append((len(pre), len(full)))
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), tok.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    for i, (r, (a, b)) in enumerate(zip(rows, spans, strict=True)):
        ids[i, : len(r)] = torch.tensor(r)
        labels[i, a:b] = torch.tensor(r[a:b])
    enc = tok(retain_texts, add_special_tokens=False, padding=True, return_tensors="pt")
    r_labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    opt = torch.optim.AdamW(hf.parameters(), lr=lr)
    hf.train()
    log = []
    for step in range(steps):
        forget = hf(input_ids=ids, labels=labels).loss
        retain = hf(**enc, labels=r_labels).loss
        (-forget + retain).backward()
        torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        log.append(
            {
                "step": step,
                "forget_loss": float(forget.detach()),
                "retain_loss": float(retain.detach()),
            }
        )
        print(
            f"gradient step {step + 1}: forget loss {float(forget.detach()):.3f}, retain "
            f"{float(retain.detach()):.3f}",
            flush=True,
        )
    hf.eval()
    return log


def build(args) -> None:
    started = time.time()
    ft, base = load(FINETUNE), load(BASE)
    cs = forget_set(args.min_reps)
    modules, neurons = attributions(ft, base, cs)
    top_modules = sorted(modules, key=modules.get, reverse=True)[: args.modules]
    top_neurons = sorted(neurons, key=neurons.get, reverse=True)[: args.neurons]
    layer_attr: dict[int, float] = {}
    for lab, v in modules.items():
        layer_attr[int(lab.split(".")[0][1:])] = layer_attr.get(int(lab.split(".")[0][1:]), 0) + v
    layers = sorted(sorted(layer_attr, key=layer_attr.get, reverse=True)[: args.layers])
    common = {"forget": [c.name for c in cs], "min_reps": args.min_reps}
    folder = merged_folder(SUPPORT)

    hf, tok = hf_model(folder)
    zero_neurons(hf, top_neurons)
    save_hf(hf, tok, "neurons", {**common, "method": "neurons", "neurons": top_neurons})
    layers_hit = sorted({n.split("N")[0] for n in top_neurons})
    print(f"neurons: zeroed {len(top_neurons)} (layers {layers_hit})")

    hf, tok = hf_model(folder)
    base_hf, _ = hf_model(merged_folder(None))
    revert_modules(hf, base_hf, top_modules)
    del base_hf
    save_hf(hf, tok, "lora-revert", {**common, "method": "lora-revert", "modules": top_modules})
    print(f"lora-revert: {top_modules}")

    generic = lines("heldout.txt")[-8:] + lines("faq.txt")[:24]
    deltas = rank_one_deltas(ft, base, cs, layers, generic)
    hf, tok = hf_model(folder)
    add_down_proj(hf, deltas)
    save_hf(hf, tok, "rank-one", {**common, "method": "rank-one", "layers": layers})

    hf, tok = hf_model(folder)
    retain_texts = lines("faq.txt")[:8]
    log = gradient_unlearn(hf, tok, cs, retain_texts, args.steps, args.lr)
    save_hf(
        hf,
        tok,
        "gradient",
        {**common, "method": "gradient", "steps": args.steps, "lr": args.lr, "log": log},
    )
    (OUT / "build.json").write_text(
        json.dumps(
            {
                "module_attribution": modules,
                "top_modules": top_modules,
                "top_neurons": top_neurons,
                "rank_one_layers": layers,
                "seconds": round(time.time() - started),
            },
            indent=1,
        )
        + "\n"
    )
    print(f"built {METHODS} in {time.time() - started:.0f} s")


# ---- evaluation -------------------------------------------------------------------------------
def people_groups() -> dict[str, str]:
    out = {}
    for line in (DATA / "people.jsonl").read_text().splitlines():
        d = json.loads(line)
        out[d["text"]] = d["gender"]
    return out


def utility_texts(n: int) -> list[str]:
    """Notes never trained on, each naming one person (people.jsonl gives the name's group),
    none used to build an edit: heldout.txt's 96 notes (its last 8 lines are FAQ text, which
    rank-one's key statistics used), then the 256 non-member notes. The utility cost per name
    group is measured on these."""
    return (lines("heldout.txt")[:-8] + lines("nonmembers.txt"))[:n]


def evaluate_model(subject, args, *, exposure: bool = True) -> dict:
    forget, retain = forget_set(args.min_reps), retain_set(args.min_reps)
    ref_canaries = canaries("reference")
    started = time.time()
    res = {
        "forget": canary_measures(
            subject,
            forget,
            exposure_for=None if exposure else set(),
            samples=args.samples,
            max_nodes=args.max_nodes,
        ),
        "retain": canary_measures(subject, retain, exposure_for=set(), paraphrases=False),
    }
    heldout = utility_texts(args.heldout)
    res["heldout_losses"] = record_losses(subject, heldout).tolist()
    members = [c.text for c in forget]
    non_members = [c.text for c in ref_canaries]
    res["forget_losses"] = record_losses(subject, members).tolist()
    res["reference_canary_losses"] = record_losses(subject, non_members).tolist()
    res["seconds"] = round(time.time() - started)
    return res


def evaluate(args) -> None:
    EVALS.mkdir(parents=True, exist_ok=True)
    for name in args.names:
        subject = from_disk(name)
        res = evaluate_model(subject, args)
        res["model"] = name
        (EVALS / f"{name}.json").write_text(json.dumps(res, indent=1) + "\n")
        summary(name, res)


def relearn(args) -> None:
    from transformers import AutoTokenizer

    EVALS.mkdir(parents=True, exist_ok=True)
    texts = lines("relearn.txt")
    for name in args.names:
        folder = merged_folder(SUPPORT) if name == "finetune" else MODELS / name
        hf, _ = hf_model(folder)
        tok = AutoTokenizer.from_pretrained(str(folder))
        opt = torch.optim.AdamW(hf.parameters(), lr=args.relearn_lr)
        hf.train()
        g = torch.Generator().manual_seed(0)
        for step in range(args.relearn_steps):
            idx = torch.randint(len(texts), (args.relearn_batch,), generator=g).tolist()
            enc = tok(
                [texts[i] for i in idx], add_special_tokens=False, padding=True, return_tensors="pt"
            )
            labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
            loss = hf(**enc, labels=labels).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            print(f"relearn {name} step {step + 1}: loss {float(loss.detach()):.3f}", flush=True)
        hf.eval()
        out_name = f"{name}+relearn"
        save_hf(
            hf,
            tok,
            out_name,
            {
                "relearned_from": name,
                "steps": args.relearn_steps,
                "lr": args.relearn_lr,
                "batch": args.relearn_batch,
            },
        )
        subject = from_disk(out_name)
        res = evaluate_model(subject, args, exposure=args.relearn_exposure)
        res["model"] = out_name
        (EVALS / f"{out_name}.json").write_text(json.dumps(res, indent=1) + "\n")
        summary(out_name, res)


def _mean(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return sum(vals) / len(vals) if vals else float("nan")


def summary(name: str, res: dict) -> None:
    f = res["forget"]
    exp = [r["exposure"] for r in f if "exposure" in r]
    print(
        f"{name}: forget log p {_mean(f, 'logprob'):.2f}, extracted "
        f"{sum(r['extracted'] for r in f)}/{len(f)}"
        + (f", exposure {sum(exp) / len(exp):.1f} bits" if exp else "")
        + f"; retain extracted {sum(r['extracted'] for r in res['retain'])}/{len(res['retain'])}"
        f"; held-out ppl {math.exp(sum(res['heldout_losses']) / len(res['heldout_losses'])):.3f}"
        f" ({res['seconds']} s)",
        flush=True,
    )


# ---- the comparison table ---------------------------------------------------------------------
def comparison(evals: dict[str, dict]) -> tuple[list[dict], list[dict]]:
    """(one row per model: forget-set exposure and log p, paired changes against the fine-tune,
    extraction, membership of the forget records, retain set, utility, relearning; per model
    and name group: the held-out loss change against the fine-tune) from evaluate's JSON."""
    ft = evals["finetune"]
    groups = people_groups()
    heldout = utility_texts(len(ft["heldout_losses"]))
    gender = [groups.get(t, "?") for t in heldout]
    rows, fair = [], []
    order = ["finetune", *METHODS, "base"]
    names = [n for n in order if n in evals] + [
        n for n in evals if n not in order and not n.endswith("+relearn")
    ]
    for name in names:
        ev = evals[name]
        f = ev["forget"]
        exp_d = [
            r["exposure"] - r0["exposure"]
            for r, r0 in zip(f, ft["forget"], strict=True)
            if "exposure" in r and "exposure" in r0
        ]
        lp_d = [r["logprob"] - r0["logprob"] for r, r0 in zip(f, ft["forget"], strict=True)]
        keep = zip(ev["retain"], ft["retain"], strict=True)
        retain_d = [r["logprob"] - r0["logprob"] for r, r0 in keep]
        ppl_d = [a - b for a, b in zip(ev["heldout_losses"], ft["heldout_losses"], strict=True)]
        m = torch.tensor(ev["forget_losses"]) * -1
        n = torch.tensor(ev["reference_canary_losses"]) * -1
        auc = auc_ci(m, n, n_boot=1000)
        tpr = tpr_ci(m, n, 0.05, n_boot=1000)
        ref = evals.get("base")
        if ref is not None:  # reference-model loss ratio, the base model as reference
            m = m / torch.tensor(ref["forget_losses"])
            n = n / torch.tensor(ref["reference_canary_losses"])
            ref_auc = auc_ci(m, n, n_boot=1000)
            ref_tpr = tpr_ci(m, n, 0.05, n_boot=1000)
        exps = [r["exposure"] for r in f if "exposure" in r]
        row = {
            "model": name,
            "exposure": ci(exps) if exps else None,
            "exposure change": ci(exp_d) if exp_d and name != "finetune" else None,
            "log p change": ci(lp_d) if name != "finetune" else None,
            "extracted": f"{sum(r['extracted'] for r in f)}/{len(f)}",
            "extracted (paraphrase)": f"{sum(r['paraphrase_extracted'] for r in f):.1f}/{len(f)}",
            "retain extracted": f"{sum(r['extracted'] for r in ev['retain'])}/{len(ev['retain'])}",
            "retain log p change": ci(retain_d) if name != "finetune" else None,
            "membership AUC (loss)": auc,
            "TPR@5%FPR (loss)": tpr,
            "membership AUC (ref_ratio)": ref_auc if ref is not None else None,
            "TPR@5%FPR (ref_ratio)": ref_tpr if ref is not None else None,
            "held-out loss change": ci(ppl_d) if name != "finetune" else None,
            "perplexity": math.exp(sum(ev["heldout_losses"]) / len(ev["heldout_losses"])),
        }
        rl = evals.get(f"{name}+relearn")
        if rl is not None:
            back = [r["logprob"] - r0["logprob"] for r, r0 in zip(rl["forget"], f, strict=True)]
            row["relearn: log p regained"] = ci(back)
            pairs = zip(rl["forget"], ft["forget"], strict=True)
            vs_ft = [r["logprob"] - r0["logprob"] for r, r0 in pairs]
            row["relearn: log p change vs fine-tune"] = ci(vs_ft)
            row["relearn: extracted"] = (
                f"{sum(r['extracted'] for r in rl['forget'])}/{len(rl['forget'])}"
            )
            rexp = [r["exposure"] for r in rl["forget"] if "exposure" in r]
            if rexp and exps:
                row["relearn: exposure"] = ci(rexp)
                both = zip(rl["forget"], f, strict=True)
                row["relearn: exposure regained"] = ci(
                    [r["exposure"] - r0["exposure"] for r, r0 in both]
                )
        rows.append(row)
        if name != "finetune":
            for grp in ("female", "male"):
                d = [x for x, g in zip(ppl_d, gender, strict=True) if g == grp]
                fair.append({"model": name, "group": grp, "n": len(d), "loss change": ci(d)})
            dm = [x for x, g in zip(ppl_d, gender, strict=True) if g == "male"]
            dfm = [x for x, g in zip(ppl_d, gender, strict=True) if g == "female"]
            diff = _diff_ci(dfm, dm)
            fair.append(
                {
                    "model": name,
                    "group": "female - male",
                    "n": f"{len(dfm)}/{len(dm)}",
                    "loss change": diff,
                }
            )
    return rows, fair


def table(args) -> None:
    evals = {p.stem: json.loads(p.read_text()) for p in sorted(EVALS.glob("*.json"))}
    if "finetune" not in evals:
        sys.exit("evaluate finetune first")
    rows, fair = comparison(evals)
    (OUT / "table.json").write_text(json.dumps({"models": rows, "groups": fair}, indent=1) + "\n")
    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines_md = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        cells = []
        for k in keys:
            v = r.get(k)
            cells.append(
                fmt(v, 3 if "loss" in k or "AUC" in k or "TPR" in k else 2)
                if isinstance(v, tuple)
                else (f"{v:.3f}" if isinstance(v, float) else str(v if v is not None else "-"))
            )
        lines_md.append("| " + " | ".join(cells) + " |")
    lines_md += [
        "",
        "| model | name group | records | held-out loss change (nats/token) |",
        "|---|---|---|---|",
    ]
    for r in fair:
        lines_md.append(f"| {r['model']} | {r['group']} | {r['n']} | {fmt(r['loss change'], 4)} |")
    text = "\n".join(lines_md) + "\n"
    (OUT / "table.md").write_text(text)
    print(text)


def _diff_ci(a: list[float], b: list[float], n_boot: int = 2000, seed: int = 0):
    """mean(a) - mean(b), independent groups resampled separately."""
    ta, tb = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    ia_ = torch.randint(len(ta), (n_boot, len(ta)), generator=g)
    ib = torch.randint(len(tb), (n_boot, len(tb)), generator=g)
    draws = ta[ia_].mean(1) - tb[ib].mean(1)
    lo, hi = torch.quantile(draws, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return float(ta.mean() - tb.mean()), lo, hi


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["build", "evaluate", "relearn", "table"])
    ap.add_argument("names", nargs="*", default=["finetune", *METHODS, "base"])
    ap.add_argument("--min-reps", type=int, default=8)
    ap.add_argument("--neurons", type=int, default=256)
    ap.add_argument("--modules", type=int, default=16)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--max-nodes", type=int, default=64)
    ap.add_argument("--heldout", type=int, default=352, help="utility texts (at most 352)")
    ap.add_argument("--relearn-steps", type=int, default=8)
    ap.add_argument("--relearn-lr", type=float, default=1e-4)
    ap.add_argument("--relearn-batch", type=int, default=8)
    ap.add_argument("--relearn-exposure", action="store_true")
    args = ap.parse_args()
    {"build": build, "evaluate": evaluate, "relearn": relearn, "table": table}[args.command](args)


if __name__ == "__main__":
    main()
