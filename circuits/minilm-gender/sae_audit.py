"""The gender audit with SAE features on all-MiniLM-L6-v2's last hidden state (zoo:minilm-l5).

    python circuits/minilm-gender/sae_audit.py

Prints (1) the SAE's reconstruction quality and what splicing it in does to the job-match
score, (2) the features that carry gender into the score (exact feature patching, the SAE's
error term as its own node), (3) the trade-off of ablating those features vs ablating the
located heads: gender gap removed vs STS Spearman kept. Every gap comes with its 95% bootstrap
CI over pairs. The notebook (notebooks/minilm_gender.ipynb) calls the same functions.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parents[1]))

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

import interp_audit as ia  # noqa: E402
from interp_audit.audit.measure import pair_effects, similarity_pairs, spearman  # noqa: E402
from interp_audit.stats.bootstrap import mean_ci  # noqa: E402

SAE = "zoo:minilm-l5"
GROUPS = ("male_jobs", "mixed_jobs", "female_jobs")


def contrasts(subject) -> dict:
    """The audit's three contrast sets (100 pairs each), built from audit.yaml."""
    from interp_audit.audit.contrasts import build_contrasts
    from interp_audit.audit.spec import load_spec

    spec, base = load_spec(HERE / "audit.yaml")
    return build_contrasts(subject, spec.contrasts, base)


def _sts(subject) -> float:
    s1, s2, gold = similarity_pairs(HERE / "sts.csv")
    cos = torch.nn.functional.cosine_similarity(subject.embed(s1), subject.embed(s2), dim=-1)
    return spearman(cos.double().cpu(), gold)


def _fmt(ci) -> str:
    return f"{ci[0]:+.4f} [{ci[1]:+.4f}, {ci[2]:+.4f}]"


def _row(subject, sets, label: str, scores0=None) -> tuple[dict, Tensor]:
    """Gender gap per group (95% CI over pairs), STS Spearman, and the job-match scores of
    every pair (clean and counterfactual) under whatever intervention is active."""
    q = ia.metrics.query_similarity()
    row, scores = {"intervention": label}, []
    for g in GROUPS:
        c, f = pair_effects(subject, sets[g], q)
        row[f"gap {g}"] = _fmt(mean_ci((c - f).double(), seed=0))
        scores.append(torch.stack([c, f]))
    row["STS Spearman"] = round(_sts(subject), 4)
    scores = torch.cat(scores, 1)
    if scores0 is not None:
        row["mean |change of score|"] = round(float((scores - scores0).abs().mean()), 4)
    return row, scores


def reconstruction_table(subject, sae, sets) -> pd.DataFrame:
    """Explained variance and L0 (training / held-out sentences), and the job-match gaps and
    STS with the SAE spliced in without its error term (what the SAE alone explains)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_sae", HERE / "train_sae.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)  # the training script's sentences and held-out split
    train, held = script.split(script.sentences())
    quality = pd.DataFrame(
        {
            n: ia.sae.reconstruction(subject, sae, t).to_dict()
            for n, t in (("train", train), ("held-out", held))
        }
    ).T
    original, scores0 = _row(subject, sets, "original")
    with ia.sae.splice(subject, sae):
        spliced, _ = _row(subject, sets, "SAE spliced in (error dropped)", scores0)
    return quality, pd.DataFrame([original, spliced])


def located(subject, sae, sets) -> ia.Effects:
    """Exact patching of every feature and the error node, male-dominated jobs."""
    return ia.sae.patch_features(subject, sets["male_jobs"], ia.metrics.query_similarity(), sae)


def tradeoff_table(subject, sae, sets, features: list[str], heads=("L5H8", "L5H3")):
    """Gap removed vs STS kept: the top features (mean-ablated over the male-job prompts, the
    error kept) against the located heads (mean-ablated over the same prompts)."""
    ref = sets["male_jobs"]
    rows = [_row(subject, sets, "none")[0]]
    for k in sorted({1, len(features)}):
        with ia.sae.ablate_features(subject, sae, features[:k], kind="mean", reference=ref):
            rows.append(_row(subject, sets, f"features {', '.join(features[:k])} (mean)")[0])
    with ia.ablate(subject, list(heads), kind="mean", reference=ref):
        rows.append(_row(subject, sets, f"heads {', '.join(heads)} (mean)")[0])
    return pd.DataFrame(rows)


def error_share(eff: ia.Effects) -> pd.DataFrame:
    """Normalised effect (share of the gap) of the error node alone, of all features patched
    together (the other half of that split), of the largest feature, and of all features patched
    one at a time, summed: patching effects on a cosine are not additive, so neither sum is
    claimed to be 1."""
    err = eff.meta["error_node"]
    feats = [c for c in eff.components if c != err]
    return pd.DataFrame(
        [
            {"node": "SAE error (patched alone)", "share of gap": eff[err]},
            {
                "node": "all features patched together (error kept)",
                "share of gap": eff.meta["all_features"],
            },
            {"node": "largest feature", "share of gap": max(eff[c] for c in feats)},
            {
                "node": "all features, one at a time, summed",
                "share of gap": float(sum(eff[c] for c in feats)),
            },
        ]
    ).round(3)


if __name__ == "__main__":
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 20)
    subject = ia.load_model("zoo:all-minilm-l6-v2")
    sae = ia.sae.load_sae(SAE, subject)
    sets = contrasts(subject)
    quality, splice = reconstruction_table(subject, sae, sets)
    print(quality.round(4), "\n", splice.to_string(index=False), "\n")
    eff = located(subject, sae, sets)
    top = [c for c, _ in eff.top(4, by="signed") if c != eff.meta["error_node"]][:3]
    print("top features (share of the male-job gap):", eff.top(6), "\n")
    print(error_share(eff).to_string(index=False), "\n")
    print(tradeoff_table(subject, sae, sets, top).to_string(index=False))
