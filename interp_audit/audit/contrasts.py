"""Contrast sets from spec sections: templates with slot fillers, JSONL/CSV files, zoo SCMs."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

from ..contrast import ContrastSet
from ..errors import ContrastError, SpecError
from ..subject import Subject
from .sections import FileContrast, ScmContrast, TemplateContrast


def from_template(subject: Subject, spec: TemplateContrast, name: str) -> ContrastSet:
    others = [s for s in spec.slots]
    clean, cf, groups, labels, queries = [], [], [], [], []
    for template in spec.templates:
        for values in itertools.product(*(spec.slots[s] for s in others)):
            fill = dict(zip(others, values, strict=True))
            for a, b in spec.swap.pairs:
                clean.append(template.format(**fill, **{spec.swap.slot: a}))
                cf.append(template.format(**fill, **{spec.swap.slot: b}))
                labels.append(
                    ", ".join(f"{k}={v}" for k, v in {**fill, spec.swap.slot: f"{a}/{b}"}.items())
                )
                if spec.group_by is not None:
                    key = f"{a}/{b}" if spec.group_by == spec.swap.slot else fill[spec.group_by]
                    groups.append((spec.groups or {}).get(key, key))
                if spec.query is not None:
                    queries.append(spec.query.format(**fill))
    answers = tuple(spec.answers) if spec.answers else None
    try:
        pairs = ContrastSet.from_prompts(
            subject, clean, cf, answers=answers, labels=labels, groups=groups or None
        )
    except ContrastError as err:
        raise ContrastError(f"contrast {name!r}: {err}") from None
    if queries:
        pairs = pairs.with_extra(query=subject.embed(queries))
    return pairs


def from_file(subject: Subject, spec: FileContrast, name: str, base: Path) -> ContrastSet:
    path = (base / spec.file) if not Path(spec.file).is_absolute() else Path(spec.file)
    if not path.exists():
        raise SpecError(f"contrasts.{name}.file: {str(path)!r} does not exist")
    rows: list[dict] = []
    if path.suffix == ".csv":
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    else:
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise SpecError(
                    f"contrasts.{name}.file: {path.name} line {i} is not valid JSON: {err.msg}"
                ) from None
    for i, row in enumerate(rows, 1):
        for key in ("clean", "counterfactual"):
            if key not in row:
                raise SpecError(
                    f"contrasts.{name}.file: {path.name} row {i} has no {key!r} field "
                    f"(fields: {sorted(row)})"
                )
    answers = None
    if spec.answers:
        answers = tuple(spec.answers)
    elif rows and "correct" in rows[0]:
        answers = [(r["correct"], r["incorrect"]) for r in rows]
    groups = [str(r["group"]) for r in rows] if rows and "group" in rows[0] else None
    labels = [str(r["label"]) for r in rows] if rows and "label" in rows[0] else None
    try:
        return ContrastSet.from_prompts(
            subject,
            [r["clean"] for r in rows],
            [r["counterfactual"] for r in rows],
            answers=answers,
            groups=groups,
            labels=labels,
        )
    except ContrastError as err:
        raise ContrastError(f"contrast {name!r} ({path.name}): {err}") from None


def from_scm(subject: Subject, spec: ScmContrast, name: str) -> ContrastSet:
    from ..zoo.scm import scm_contrast

    return scm_contrast(
        subject,
        spec.scm,
        path=spec.path,
        n=spec.n,
        seed=spec.seed,
        attribute=spec.attribute,
        split=spec.split,
        answers=spec.answers,
    )


def build_contrasts(subject: Subject, specs: dict, base: Path) -> dict[str, ContrastSet]:
    out = {}
    for name, spec in specs.items():
        if isinstance(spec, TemplateContrast):
            out[name] = from_template(subject, spec, name)
        elif isinstance(spec, FileContrast):
            out[name] = from_file(subject, spec, name, base)
        else:
            out[name] = from_scm(subject, spec, name)
    return out
