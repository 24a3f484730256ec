"""What the shipped SmolLM2 repair costs and removes, measured on the model loaded from disk.

    python circuits/smollm2-gender/shipped.py runs/smollm2-gender-repair [--n-boot 2000]

``interp-audit repair`` writes the repaired model (``DIR/model``, a Hugging Face folder) and
re-audits it with the spec. This adds the numbers the spec does not hold, each on the original
and the shipped model, paired:

* **utility**: next-token loss (mean negative log-likelihood per token, nats) on
  ``heldout.txt``, 300 lines of neutral text written for this audit, before and after, with the
  95% bootstrap CI of the change over lines (each line a unit: its summed loss and token count
  resampled together), and the relative rise in perplexity;
* **the stereotype**: Pearson r / Spearman rho of P(she) - P(he) with the BLS share of women
  over the 60 occupations (``stereotype.py``) before and after;
* **pronoun agreement** with an explicitly gendered name (the admissible path the repair must
  keep): the share of ``pronoun_agreement.jsonl`` prompts whose " she" / " he" logit difference
  has the right sign, before and after, with the paired CI of the change (clusters: name pairs).
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
import torch  # noqa: E402

import interp_audit as ia  # noqa: E402
from interp_audit.audit.measure import utility_values  # noqa: E402
from interp_audit.methods.privacy.memorization import token_logprobs  # noqa: E402
from interp_audit.stats.bootstrap import cluster_bootstrap_columns, mean_ci  # noqa: E402


def _stereotype():
    spec = importlib.util.spec_from_file_location("smollm2_stereotype", HERE / "stereotype.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("smollm2_stereotype", mod)
    spec.loader.exec_module(mod)
    return mod


def heldout_lines(n: int | None = None) -> list[str]:
    lines = [x for x in (HERE / "heldout.txt").read_text().splitlines() if x.strip()]
    return lines if n is None else lines[:n]


def line_losses(subject, texts: list[str]) -> torch.Tensor:
    """``[line, 2]``: summed next-token loss (nats) and token count of each line."""
    lps = token_logprobs(subject, texts)
    return torch.tensor([[float(-lp.sum()), float(len(lp))] for lp in lps], dtype=torch.float64)


def heldout_loss(before, after, texts: list[str], *, n_boot: int = 2000, seed: int = 0):
    """Loss per token before and after, the paired change and the relative perplexity rise,
    each with a 95% bootstrap CI over lines."""
    b, a = line_losses(before, texts), line_losses(after, texts)

    def stats(w: torch.Tensor) -> torch.Tensor:
        lb = (w @ b[:, 0]) / (w @ b[:, 1])
        la = (w @ a[:, 0]) / (w @ a[:, 1])
        return torch.stack([lb, la, la - lb, torch.exp(la - lb) - 1], 1)

    ivs = cluster_bootstrap_columns(stats, None, len(texts), n_boot=n_boot, seed=seed)
    names = ["loss before", "loss after", "change", "perplexity rise"]
    rows = [
        {"measure": m, "value": iv.point, "ci_lo": iv.lo, "ci_hi": iv.hi}
        for m, iv in zip(names, ivs, strict=True)
    ]
    return pd.DataFrame(rows).assign(lines=len(texts), tokens=int(b[:, 1].sum()))


def agreement(
    before, after, *, n: int | None = None, n_boot: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Pronoun agreement with a gendered name, before and after (paired, clusters: name pairs);
    ``n``: the first n prompts only (a subset of name pairs)."""
    rows = [json.loads(x) for x in (HERE / "contrasts" / "pronoun_agreement.jsonl").open()][:n]
    cs = ia.ContrastSet.from_prompts(
        before,
        [r["clean"] for r in rows],
        [r["counterfactual"] for r in rows],
        answers=[(r["correct"], r["incorrect"]) for r in rows],
        clusters=[r["cluster"] for r in rows],
        groups=[r["group"] for r in rows],
    )
    u0 = utility_values(before, cs, "accuracy")
    u1 = utility_values(after, cs, "accuracy")
    out = []
    for group in ("all", "female", "male"):
        idx = [i for i, r in enumerate(rows) if group == "all" or r["group"] == group]
        clusters = [rows[i]["cluster"] for i in idx]
        iv = mean_ci(u0[idx] - u1[idx], clusters, n_boot=n_boot, seed=seed)
        out.append(
            {
                "names": group,
                "n": len(idx),
                "before": float(u0[idx].mean()),
                "after": float(u1[idx].mean()),
                "cost": iv.point,
                "ci_lo": iv.lo,
                "ci_hi": iv.hi,
            }
        )
    return pd.DataFrame(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", help="the output folder of interp-audit repair")
    ap.add_argument("--model", default="zoo:smollm2-135m", help="the model as given")
    ap.add_argument("--n-boot", type=int, default=2000)
    args = ap.parse_args()
    folder = Path(args.folder)
    before = ia.load_model(args.model)
    after = ia.load_model(folder / "model")
    record = after.repair or {}
    rep = record.get("repair", {})
    print(f"repair: {rep.get('kind')} of {', '.join(rep.get('components', []))}")
    export = record.get("export", {})
    if export:
        print(f"export check: {json.dumps(export.get('check', export), default=str)[:300]}")
    pd.set_option("display.width", 140)
    print("\nheld-out next-token loss (nats per token), 95% CI over lines")
    print(heldout_loss(before, after, heldout_lines(), n_boot=args.n_boot).round(4).to_string())
    print("\npronoun agreement with a gendered name (accuracy; cost = before - after)")
    print(agreement(before, after, n_boot=args.n_boot).round(4).to_string(index=False))
    st = _stereotype()
    for label, subject in (("before", before), ("after", after)):
        table, corr = st.run(subject, n_boot=args.n_boot)
        print(f"\nstereotype ({label}): P(she) - P(he) against the BLS share of women")
        print(st.by_stereotype(table).round(4).to_string())
        print(corr.round(4).to_string(index=False))


if __name__ == "__main__":
    main()
