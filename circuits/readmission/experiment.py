"""The readmission repair experiment: selective path repair vs blanket invariance, measured.

For the audited model, the audit locates (by exact per-position patching of every head's keys
and values) the components that carry each path from a token to the answer. *Selective* repair
mean-ablates only the components located on inadmissible paths; *blanket* repair ablates every
component located for the total effect of A (or E), or retrains the model blind to A and its
descendants (or to E); fairness through unawareness retrains without the age token. Every
variant is scored on held-out patients: accuracy against observed and against fair labels, and
each path-specific effect (mean change of the YES-NO logit difference, old -> young for A,
hospitals 0/1/3 -> 2 for E).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch

from circuits.readmission import scm as R
from interp_audit.engine.contrasts import ContrastSet
from interp_audit.engine.effects import Effects
from interp_audit.engine.interventions import ablate
from interp_audit.model.subject import Subject

THRESHOLD = 0.03  # |normalised patching effect| above which a component is "located"
PATH_COLUMNS = [
    ("A", "direct"),
    ("A", "proxy"),
    ("A", "via_labs"),
    ("E", "contextual"),
    ("E", "spurious"),
]


def locate(
    subject: Subject, attribute: str, path: str, n: int = 200, seed: int = 0
) -> tuple[list[str], dict[str, Effects]]:
    """Components carrying one path: keys/values of every head at every position, exact patching."""
    cs = R.contrast(subject, path, n=n, seed=seed, attribute=attribute)
    effects = {site: _patch(subject, cs, site) for site in ("heads_k", "heads_v")}
    located = sorted(
        {c for e in effects.values() for c, v in e.as_dict().items() if abs(v) >= THRESHOLD}
    )
    return located, effects


def _patch(subject: Subject, cs: ContrastSet, site: str) -> Effects:
    from interp_audit.methods.locate.patching import patch

    return patch(subject, cs, "logit_diff", sites=site, per_position=True, progress=False)


@dataclass
class Variant:
    """One row of the repair table: a model, how its inputs are shown, and an optional ablation."""

    name: str
    family: str  # "A" or "E"
    subject: Subject
    mask: tuple[str, ...] = ()
    artefact: bool = True
    ablated: list[str] = field(default_factory=list)


def _apply_mask(prompts: list[str], mask: tuple[str, ...]) -> list[str]:
    out = []
    for p in prompts:
        words = p.split()
        out.append(
            " ".join(
                f"{w.split(':')[0]}:?" if ":" in w and w.split(":")[0] in mask else w for w in words
            )
        )
    return out


def _logit_diff(subject: Subject, prompts: list[str]) -> torch.Tensor:
    tokens = torch.tensor([subject.to_tokens(p) for p in prompts], device=subject.device)
    yes, no = subject.answer_token("YES")[0], subject.answer_token("NO")[0]
    with torch.no_grad():
        logits = subject.run(tokens)[:, -1]
    return (logits[:, yes] - logits[:, no]).float().cpu()


def _reference(subject: Subject, n: int = 1000, seed: int = 31337) -> torch.Tensor:
    units = R.sample_units(n, seed)
    return torch.tensor([subject.to_tokens(p) for p in R.factual_words(units)])


def evaluate(
    v: Variant, n_test: int = 4000, n_paths: int = 300, seed: int = 424242
) -> dict[str, float]:
    """Accuracy (observed, fair) and path effects of one variant on held-out patients."""
    ctx = (
        ablate(v.subject, v.ablated, kind="mean", reference=_reference(v.subject))
        if v.ablated
        else contextlib.nullcontext()
    )
    units = R.sample_units(n_test, seed)
    with ctx:
        ld = _logit_diff(
            v.subject, _apply_mask(R.factual_words(units, artefact=v.artefact), v.mask)
        )
        pred = (ld > 0).long()
        row = {
            "model": v.name,
            "family": v.family,
            "n_ablated": len(v.ablated),
            "acc_observed": float((pred == R.labels(units)).float().mean()),
            "acc_fair": float((pred == R.labels(units, fair=True)).float().mean()),
        }
        for attribute, path in PATH_COLUMNS:
            _, _, pu = R.path_pairs(n_paths, seed + 1, attribute, path)
            clean, cf = R.path_words(pu, attribute, path, artefact=v.artefact)
            eff = _logit_diff(v.subject, _apply_mask(clean, v.mask)) - _logit_diff(
                v.subject, _apply_mask(cf, v.mask)
            )
            row[f"{attribute}.{path}"] = float(eff.mean())
    return row


def repair_variants(subject: Subject | None = None) -> list[Variant]:
    from interp_audit.model.loading import load_model

    subject = subject or load_model("zoo:readmission")
    direct, _ = locate(subject, "A", "direct")
    proxy, _ = locate(subject, "A", "proxy")
    total_a, _ = locate(subject, "A", "total")
    spurious, _ = locate(subject, "E", "spurious")
    total_e, _ = locate(subject, "E", "total")
    return [
        Variant("original", "A", subject),
        Variant(
            "selective: ablate direct+proxy paths",
            "A",
            subject,
            ablated=sorted(set(direct) | set(proxy)),
        ),
        Variant("blanket: ablate all located for A", "A", subject, ablated=total_a),
        Variant(
            "blanket: retrain blind to A and descendants",
            "A",
            load_model("zoo:readmission-blind"),
            mask=("age", "ins", "lab"),
        ),
        Variant(
            "unawareness: retrain without age",
            "A",
            load_model("zoo:readmission-ftu"),
            mask=("age",),
        ),
        Variant("original", "E", subject),
        Variant("selective: ablate spurious path", "E", subject, ablated=spurious),
        Variant("blanket: ablate all located for E", "E", subject, ablated=total_e),
        Variant(
            "blanket: retrain without hospital",
            "E",
            load_model("zoo:readmission-nohosp"),
            mask=("hosp",),
        ),
        Variant(
            "data fix: retrain on artefact-free labs",
            "E",
            load_model("zoo:readmission-cleanlabs"),
            artefact=False,
        ),
    ]


def repair_table(subject: Subject | None = None):
    """The repair experiment as a pandas DataFrame (one row per variant)."""
    import pandas as pd

    return pd.DataFrame([evaluate(v) for v in repair_variants(subject)])


def pareto_plot(table):
    """Accuracy (observed and fair) against the inadmissible effect left, per variant."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("A: age (direct + proxy)", "E: hospital (spurious via labs)"),
    )
    for col, fam in ((1, "A"), (2, "E")):
        t = table[table.family == fam]
        left = (t["A.direct"].abs() + t["A.proxy"].abs()) if fam == "A" else t["E.spurious"].abs()
        for acc, symbol in (("acc_observed", "circle"), ("acc_fair", "diamond")):
            fig.add_trace(
                go.Scatter(
                    x=left,
                    y=t[acc],
                    mode="markers+text",
                    text=t["model"].str.split(":").str[0],
                    textposition="top center",
                    marker={"symbol": symbol, "size": 11},
                    name=f"{fam} {acc.replace('acc_', 'accuracy vs ')} labels",
                    hovertext=t["model"],
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text="inadmissible effect left (|logit diff|)", row=1, col=col)
    fig.update_yaxes(title_text="accuracy", row=1, col=1)
    fig.update_layout(
        title="Selective path repair vs blanket invariance (held-out patients)",
        template="plotly_white",
        height=450,
    )
    return fig
