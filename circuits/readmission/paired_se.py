"""Paired standard errors of the selective repair's accuracy change on held-out patients.

python circuits/readmission/paired_se.py

The same 4000 patients and the same 25 mean-ablated keys/values as the repair table
(`circuits/readmission/repair.py`) and the readmission spec; each patient is scored with and
without the repair, so the SE is of the per-patient difference.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import interp_audit as ia  # noqa: E402
from circuits.readmission import experiment as E  # noqa: E402
from circuits.readmission import scm as R  # noqa: E402


def main() -> None:
    spec = yaml.safe_load((ROOT / "interp_audit/zoo/specs/readmission.yaml").read_text())
    comps = next(
        c["ablate"]["components"]
        for c in spec["checks"]
        if c.get("kind") == "intervention" and "components" in c.get("ablate", {})
    )
    subject = ia.load_model("zoo:readmission")
    units = R.sample_units(4000, 424242)
    prompts = R.factual_words(units)

    def correct(ablated):
        ctx = (
            ia.ablate(subject, ablated, kind="mean", reference=E._reference(subject))
            if ablated
            else contextlib.nullcontext()
        )
        with ctx:
            pred = (E._logit_diff(subject, prompts) > 0).long()
        return (pred == R.labels(units)).double(), (pred == R.labels(units, fair=True)).double()

    before, after = correct([]), correct(comps)
    for name, a, b in zip(("observed", "fair"), before, after, strict=True):
        d = b - a
        se = float(d.std() / len(d) ** 0.5)
        print(
            f"{name}: {a.mean():.3f} -> {b.mean():.3f}, change {d.mean():+.4f}, paired SE {se:.4f}"
        )
    print(f"{len(comps)} components")


if __name__ == "__main__":
    main()
