"""Contrast sets from spec sections: templates with slot fillers, JSONL/CSV files, causal models
(path-specific counterfactuals, ``interp_audit.causal``)."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

from interp_audit.audit.sections import FileContrast, TemplateContrast
from interp_audit.core.errors import ContrastError, SpecError
from interp_audit.core.reading import read_text
from interp_audit.engine.contrasts import ContrastSet
from interp_audit.model.subject import Subject


def from_template(subject: Subject, spec: TemplateContrast, name: str) -> ContrastSet:
    others = [s for s in spec.slots]
    clean, cf, groups, labels, queries, clusters = [], [], [], [], [], []
    cluster_by = spec.cluster_by or spec.swap.slot
    for t_index, template in enumerate(spec.templates):
        for values in itertools.product(*(spec.slots[s] for s in others)):
            fill = dict(zip(others, values, strict=True))
            for a, b in spec.swap.pairs:
                clean.append(template.format(**fill, **{spec.swap.slot: a}))
                cf.append(template.format(**fill, **{spec.swap.slot: b}))
                labels.append(
                    ", ".join(f"{k}={v}" for k, v in {**fill, spec.swap.slot: f"{a}/{b}"}.items())
                )
                if cluster_by == "pair":
                    clusters.append(str(len(clean)))
                elif cluster_by == "template":
                    clusters.append(f"template {t_index}")
                elif cluster_by == spec.swap.slot:
                    clusters.append(f"{a}/{b}")
                else:
                    clusters.append(f"{cluster_by}={fill[cluster_by]}")
                if spec.group_by is not None:
                    key = f"{a}/{b}" if spec.group_by == spec.swap.slot else fill[spec.group_by]
                    groups.append((spec.groups or {}).get(key, key))
                if spec.query is not None:
                    queries.append(spec.query.format(**fill))
    answers = tuple(spec.answers) if spec.answers else None
    try:
        pairs = ContrastSet.from_prompts(
            subject,
            clean,
            cf,
            answers=answers,
            labels=labels,
            groups=groups or None,
            clusters=clusters,
        )
    except ContrastError as err:
        raise ContrastError(f"contrast {name!r}: {err}") from None
    if queries:
        pairs = pairs.with_extra(query=subject.embed(queries))
    return pairs


def from_file(subject: Subject, spec: FileContrast, name: str, base: Path) -> ContrastSet:
    path = (base / spec.file) if not Path(spec.file).is_absolute() else Path(spec.file)
    rows: list[dict] = []
    text = read_text(
        path, f"contrasts.{name}.file: {str(path)!r}", folder_hint=", not a JSONL/CSV file"
    )
    if path.suffix == ".csv":
        import io

        try:
            rows = list(csv.DictReader(io.StringIO(text, newline="")))
        except csv.Error as err:
            raise SpecError(f"contrasts.{name}.file: {path.name} is not valid CSV: {err}") from None
        unit = "row"
    else:
        unit = "line"
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as err:
                raise SpecError(
                    f"contrasts.{name}.file: {path.name} line {i} is not valid JSON: "
                    f"{getattr(err, 'msg', 'nested too deeply')}"
                ) from None
            if not isinstance(row, dict):
                raise SpecError(
                    f"contrasts.{name}.file: {path.name} line {i} is a JSON "
                    f"{type(row).__name__}, not an object with 'clean' and 'counterfactual'"
                )
            row["__line__"] = i
            rows.append(row)
    if not rows:
        raise SpecError(f"contrasts.{name}.file: {path.name} has no pairs")
    where = [(r.pop("__line__", None) or i + 1) for i, r in enumerate(rows)]
    if spec.answers:
        keys: tuple[str, ...] = ("clean", "counterfactual")
    elif "correct" in rows[0] or "incorrect" in rows[0]:
        keys = ("clean", "counterfactual", "correct", "incorrect")
    else:
        keys = ("clean", "counterfactual")
    for i, row in zip(where, rows, strict=True):
        for key in keys:
            if key not in row or row[key] is None:
                why = (
                    " (the first row has answers, so every row needs them)"
                    if key in ("correct", "incorrect")
                    else ""
                )
                raise SpecError(
                    f"contrasts.{name}.file: {path.name} {unit} {i} has no {key!r} field"
                    f"{why} (fields: {sorted(k for k in row if k is not None)})"
                )
            if not isinstance(row[key], str):
                raise SpecError(
                    f"contrasts.{name}.file: {path.name} {unit} {i}: {key!r} is "
                    f"{row[key]!r}, not text"
                )
    answers = None
    if spec.answers:
        answers = tuple(spec.answers)
    elif "correct" in keys:
        answers = [(r["correct"], r["incorrect"]) for r in rows]
    groups = labels = None
    for key in ("group", "label"):
        if any(key in r for r in rows):
            i = next((w for w, r in zip(where, rows, strict=True) if key not in r), None)
            if i is not None:
                raise SpecError(
                    f"contrasts.{name}.file: {path.name} {unit} {i} has no {key!r} field, "
                    f"which other {unit}s have (give it on every {unit} or on none)"
                )
    if "group" in rows[0]:
        groups = [str(r["group"]) for r in rows]
    if "label" in rows[0]:
        labels = [str(r["label"]) for r in rows]
    column = spec.cluster_column or ("cluster" if rows and "cluster" in rows[0] else None)
    clusters = None
    if column is not None:
        for i, row in enumerate(rows, 1):
            if column not in row:
                raise SpecError(
                    f"contrasts.{name}.cluster_column: {path.name} row {i} has no {column!r} "
                    f"field (fields: {sorted(row)})"
                )
        clusters = [str(r[column]) for r in rows]
    try:
        return ContrastSet.from_prompts(
            subject,
            [r["clean"] for r in rows],
            [r["counterfactual"] for r in rows],
            answers=answers,
            groups=groups,
            labels=labels,
            clusters=clusters,
        )
    except ContrastError as err:
        raise ContrastError(f"contrast {name!r} ({path.name}): {err}") from None


def build_contrasts(
    subject: Subject, specs: dict, base: Path, causal=None
) -> dict[str, ContrastSet]:
    """Every contrast section; ``causal`` (a CausalContext) draws the ``scm:`` ones."""
    out = {}
    for name, spec in specs.items():
        if isinstance(spec, TemplateContrast):
            out[name] = from_template(subject, spec, name)
        elif isinstance(spec, FileContrast):
            out[name] = from_file(subject, spec, name, base)
        else:
            if causal is None:
                from interp_audit.audit.causal_run import CausalContext

                causal = CausalContext(subject, None, base)
            out[name] = causal.contrast(spec, name)
    return out
