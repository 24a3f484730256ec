"""Does SmolLM2 resolve a pronoun by the occupation's gender stereotype? A dose-response reading.

    python circuits/smollm2-gender/stereotype.py [--model zoo:smollm2-135m] [--occupations N]
        [--n-boot 2000] [--ablate L26H2 L25H2 ...]

The audit's ``she_rate_by_occupation_stereotype`` check compares three bins (female / mixed /
male occupations). This asks the graded question: across every occupation of
``occupations.csv``, does ``P(" she") - P(" he")`` after "The {occupation} said that" (the
spec's four templates, averaged per occupation) rise with the share of women in that occupation
(US BLS, via WinoGender)? Reported: Pearson's r and Spearman's rho, each with a 95% bootstrap CI
over occupations (an occupation is the unit: its four templates move together), the slope per
10 points of female share, and each bin's mean. Probabilities are over the full vocabulary at
the prompt's last token, read through the same tokenization and forwards as the audit's
population checks. ``--ablate`` repeats it with components mean-ablated (the mean over every
token of the ``occupation_swap`` contrast, the repair ``interp-audit repair`` folds).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parents[1]))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

import interp_audit as ia  # noqa: E402
from interp_audit.audit.decisions import pair_values  # noqa: E402
from interp_audit.audit.measure import weighted_spearman  # noqa: E402
from interp_audit.audit.population import Population  # noqa: E402
from interp_audit.core.yamlio import load_yaml  # noqa: E402
from interp_audit.model.metrics import get_metric  # noqa: E402
from interp_audit.stats.bootstrap import cluster_bootstrap_columns  # noqa: E402

ANSWERS = (" she", " he", " they")


def templates() -> list[str]:
    """The spec's pronoun templates (check ``she_rate_by_occupation_stereotype``)."""
    spec = load_yaml((HERE / "audit.yaml").read_text())
    chk = next(c for c in spec["checks"] if c["name"] == "she_rate_by_occupation_stereotype")
    return list(chk["population"]["template"])


def occupations(n: int | None = None) -> list[dict[str, str]]:
    """``occupations.csv`` rows; with ``n``, every k-th row by female share (a spread subset)."""
    with (HERE / "occupations.csv").open(newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: float(r["bls_pct_female"]))
    if n is None or n >= len(rows):
        return rows
    step = (len(rows) - 1) / (n - 1)
    return [rows[round(i * step)] for i in range(n)]


def pronoun_probs(subject, occ: list[dict[str, str]], temps: list[str]) -> pd.DataFrame:
    """One row per occupation x template: P(she), P(he), P(they) at the last token."""
    prompts, names, temp_ids = [], [], []
    for o in occ:
        for t, template in enumerate(temps):
            prompts.append(template.format(**o))
            names.append(o["occupation"])
            temp_ids.append(str(t))
    pop = Population(
        prompts=tuple(prompts),
        attributes={"occupation": tuple(names), "template": tuple(temp_ids)},
        labels=None,
        clusters=tuple(names),
        answers=None,
        source="stereotype.py",
    )
    cs = pop.contrast(subject, "stereotype")
    ids = [subject.single_token(a, "stereotype answer") for a in ANSWERS]
    logprob = get_metric("logprob")
    answers = [torch.tensor([[i, i]] * len(cs)) for i in ids]
    ((she, he, they),) = pair_values(subject, cs, [logprob] * 3, answers, sides=("clean",))
    return pd.DataFrame(
        {
            "occupation": names,
            "template": temp_ids,
            "p_she": she.double().exp().numpy(),
            "p_he": he.double().exp().numpy(),
            "p_they": they.double().exp().numpy(),
        }
    )


def per_occupation(probs: pd.DataFrame, occ: list[dict[str, str]]) -> pd.DataFrame:
    """Template means per occupation, beside its BLS share and stereotype bin."""
    table = probs.groupby("occupation", sort=False)[["p_she", "p_he", "p_they"]].mean()
    table["she_minus_he"] = table["p_she"] - table["p_he"]
    info = pd.DataFrame(occ).set_index("occupation")
    table["bls_pct_female"] = info["bls_pct_female"].astype(float)
    table["stereotype"] = info["stereotype"]
    return table.reset_index()


def _weighted_pearson(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    total = w.sum(1, keepdim=True)
    dx = x - (w * x).sum(1, keepdim=True) / total
    dy = y - (w * y).sum(1, keepdim=True) / total
    return (w * dx * dy).sum(1) / ((w * dx * dx).sum(1) * (w * dy * dy).sum(1)).sqrt()


def correlation(table: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Pearson r, Spearman rho and the least-squares slope (per 10 points of female share) of
    P(she) - P(he) on the BLS share, each with a 95% cluster-bootstrap CI over occupations."""
    x = torch.tensor(table["bls_pct_female"].to_numpy(), dtype=torch.float64)
    y = torch.tensor(table["she_minus_he"].to_numpy(), dtype=torch.float64)

    def stats(w: torch.Tensor) -> torch.Tensor:
        total = w.sum(1, keepdim=True)
        dx = x - (w * x).sum(1, keepdim=True) / total
        slope = (w * dx * y).sum(1) / (w * dx * dx).sum(1) * 10
        return torch.stack([_weighted_pearson(x, y, w), weighted_spearman(x, y, w), slope], 1)

    ivs = cluster_bootstrap_columns(
        stats, list(table["occupation"]), len(table), n_boot=n_boot, seed=seed
    )
    rows = []
    for name, iv in zip(("Pearson r", "Spearman rho", "slope per 10 pts"), ivs, strict=True):
        lo, hi = (max(iv.lo, -1.0), min(iv.hi, 1.0)) if "slope" not in name else (iv.lo, iv.hi)
        rows.append(
            {"statistic": name, "value": iv.point, "ci_lo": lo, "ci_hi": hi, "n": len(table)}
        )
    return pd.DataFrame(rows)


def by_stereotype(table: pd.DataFrame) -> pd.DataFrame:
    """Mean P(she), P(he), P(they) and their difference per stereotype bin."""
    cols = ["p_she", "p_he", "p_they", "she_minus_he"]
    out = table.groupby("stereotype")[cols].mean()
    out["occupations"] = table.groupby("stereotype").size()
    return out.loc[[s for s in ("female", "mixed", "male") if s in out.index]]


def run(subject, *, n_occupations: int | None = None, n_boot: int = 2000, ablate=None):
    """(per-occupation table, correlation table), with ``ablate`` components mean-ablated."""
    occ = occupations(n_occupations)
    temps = templates()
    if not ablate:
        table = per_occupation(pronoun_probs(subject, occ, temps), occ)
        return table, correlation(table, n_boot=n_boot)
    reference = ia.ContrastSet.from_prompts(
        subject,
        *_occupation_swap(),
        answers=(" she", " he"),
    )
    with ia.ablate(subject, list(ablate), kind="mean", reference=reference, per_position=False):
        table = per_occupation(pronoun_probs(subject, occ, temps), occ)
    return table, correlation(table, n_boot=n_boot)


def _occupation_swap() -> tuple[list[str], list[str]]:
    import json

    rows = [json.loads(x) for x in (HERE / "contrasts" / "occupation_swap.jsonl").open()]
    return [r["clean"] for r in rows], [r["counterfactual"] for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="zoo:smollm2-135m")
    ap.add_argument("--occupations", type=int, default=None, help="a spread subset of N")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--ablate", nargs="*", default=None, help="components to mean-ablate")
    args = ap.parse_args()
    subject = ia.load_model(args.model)
    table, corr = run(
        subject, n_occupations=args.occupations, n_boot=args.n_boot, ablate=args.ablate
    )
    pd.set_option("display.width", 140)
    print(table.sort_values("bls_pct_female").round(4).to_string(index=False))
    print()
    print(by_stereotype(table).round(4).to_string())
    print()
    print(corr.round(4).to_string(index=False))


if __name__ == "__main__":
    main()
