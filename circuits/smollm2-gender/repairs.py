"""Candidate repairs of the occupation stereotype in SmolLM2, each folded into the weights.

    python circuits/smollm2-gender/repairs.py [--heads L26H2 L25H2 ...] [--erase-layers 10 20]
        [--agreement N] [--lines N] [--n-boot 2000]

Each candidate is built with ``ia.repaired`` (a new model whose weights carry the repair; what
``interp-audit repair`` ships) and measured on the same prompts as the model as given:

* ``occupation effect``: the mean of logit(" she") - logit(" he") between a female- and a
  male-dominated occupation (``occupation_swap.jsonl``, 48 pairs, clusters: occupation pairs);
* ``stereotype r``: Pearson r of P(she) - P(he) with the BLS share of women (60 occupations);
* ``agreement``: the pronoun agrees with an explicitly gendered name (the admissible path):
  accuracy on women's and men's names (``pronoun_agreement.jsonl``);
* ``held-out loss``: the change of next-token loss per token on ``heldout.txt`` (paired).

Every figure with its 95% bootstrap CI. Candidates: mean- and zero-ablation of the top heads
the exact sweep located, and LEACE erasure of the occupation contrast at one block input (which
folds into every write before that block). Refused candidates (position-restricted ablations,
per-position means) are listed with the reason ``ia.repaired`` gives.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parents[1]))

import pandas as pd  # noqa: E402

import interp_audit as ia  # noqa: E402
from interp_audit.audit.measure import pair_effects, utility_values  # noqa: E402
from interp_audit.core.errors import AuditError  # noqa: E402
from interp_audit.stats.bootstrap import mean_ci  # noqa: E402

#: the top heads of the exact sweep on occupation_locate (circuits/smollm2-gender/README.md)
HEADS = ["L26H2", "L25H2", "L27H5", "L23H5", "L26H0", "L27H2", "L27H4", "L29H1"]


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"smollm2_{name}", HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(f"smollm2_{name}", mod)
    spec.loader.exec_module(mod)
    return mod


def pairs(subject, file: str, n: int | None = None, answers=(" she", " he")) -> ia.ContrastSet:
    rows = [json.loads(x) for x in (HERE / "contrasts" / file).open()][:n]
    if answers is None:
        answers = [(r["correct"], r["incorrect"]) for r in rows]
    return ia.ContrastSet.from_prompts(
        subject,
        [r["clean"] for r in rows],
        [r["counterfactual"] for r in rows],
        answers=answers,
        groups=[r["group"] for r in rows],
        clusters=[r["cluster"] for r in rows],
    )


def measure(base, subject, sets: dict, lines: list[str], n_boot: int) -> dict:
    """One row: every figure of ``subject`` (held-out loss paired with ``base``)."""
    st, sh = _module("stereotype"), _module("shipped")
    swap, agree = sets["swap"], sets["agreement"]
    c, f = pair_effects(subject, swap, ia.metrics.logit_diff)
    eff = mean_ci((c - f).double(), list(swap.clusters), n_boot=n_boot)
    _, corr = st.run(subject, n_boot=n_boot)
    r = corr.iloc[0]
    acc = utility_values(subject, agree, "accuracy")
    row = {
        "occupation effect": f"{eff.point:+.3f} [{eff.lo:+.3f}, {eff.hi:+.3f}]",
        "stereotype r": f"{r['value']:+.3f} [{r['ci_lo']:+.3f}, {r['ci_hi']:+.3f}]",
    }
    for g in ("female", "male"):
        idx = [i for i, x in enumerate(agree.groups) if x == g]
        iv = mean_ci(acc[idx], [agree.clusters[i] for i in idx], n_boot=n_boot)
        row[f"agreement ({g} names)"] = f"{iv.point:.3f} [{iv.lo:.3f}, {iv.hi:.3f}]"
    loss = sh.heldout_loss(base, subject, lines, n_boot=n_boot).set_index("measure")
    ch = loss.loc["change"]
    row["held-out loss change"] = f"{ch['value']:+.4f} [{ch['ci_lo']:+.4f}, {ch['ci_hi']:+.4f}]"
    return row


def candidates(heads: list[str], erase_layers: list[int]) -> list[tuple[str, list[str], str]]:
    out = []
    for k in sorted({2, len(heads)}):
        out.append((f"mean-ablate top {k} heads", heads[:k], "mean"))
    out.append((f"zero-ablate top {len(heads)} heads", heads, "zero"))
    out += [
        (f"erase at L{layer}.resid_pre", [f"L{layer}.resid_pre"], "erase") for layer in erase_layers
    ]
    return out


def refused(subject, heads: list[str], reference) -> list[dict]:
    """Repairs that cannot be written into weights, with the reason ia.repaired gives."""
    out = []
    for label, comps, kind, kw in (
        ("mean-ablate at one position (@3)", [f"{heads[0]}@3"], "mean", {}),
        ("per-position mean", heads[:1], "mean", {"per_position": True}),
        ("resample ablation", heads[:1], "resample", {}),
    ):
        try:
            ia.repaired(subject, comps, kind=kind, reference=reference, **kw)
            out.append({"repair": label, "refused": "no: it folded"})
        except AuditError as err:
            out.append({"repair": label, "refused": str(err)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="zoo:smollm2-135m")
    ap.add_argument("--heads", nargs="*", default=HEADS)
    ap.add_argument("--erase-layers", nargs="*", type=int, default=[10, 20])
    ap.add_argument("--agreement", type=int, default=None, help="first N agreement prompts")
    ap.add_argument("--lines", type=int, default=None, help="first N held-out lines")
    ap.add_argument("--n-boot", type=int, default=2000)
    args = ap.parse_args()
    subject = ia.load_model(args.model)
    sets = {
        "swap": pairs(subject, "occupation_swap.jsonl"),
        "agreement": pairs(subject, "pronoun_agreement.jsonl", args.agreement, answers=None),
    }
    lines = _module("shipped").heldout_lines(args.lines)
    rows = [{"repair": "none", **measure(subject, subject, sets, lines, args.n_boot)}]
    for label, comps, kind in candidates(args.heads, args.erase_layers):
        try:
            fixed = ia.repaired(subject, comps, kind=kind, reference=sets["swap"])
        except AuditError as err:
            rows.append({"repair": label, "refused": str(err)})
            continue
        rows.append({"repair": label, **measure(subject, fixed, sets, lines, args.n_boot)})
        print(rows[-1], flush=True)
        del fixed
    pd.set_option("display.width", 250, "display.max_colwidth", 60)
    print(pd.DataFrame(rows).to_string(index=False))
    print()
    print(pd.DataFrame(refused(subject, args.heads, sets["swap"])).to_string(index=False))


if __name__ == "__main__":
    main()
