"""Populations: the individuals whose decisions a group-fairness check compares between groups.

One prompt per individual, with its group attributes (gender, ethnicity, age band, ...) and
optionally its true outcome (a label, for equalized odds). A population comes from a CSV/JSONL
file, inline rows, a template crossed with slot fillers and attribute tables (a names CSV with
gender and ethnicity columns), or factual units drawn from a causal model (attributes and label
are SCM variables). Every individual belongs to a *cluster*, its unit of replication (a name
rendered into many templates is one cluster), which the bootstrap resamples.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, model_validator

from interp_audit.audit.context import AuditContext
from interp_audit.audit.sections import MAX_SCM_PAIRS, Seed, _Section
from interp_audit.core.errors import ContrastError, SpecError, did_you_mean
from interp_audit.engine.contrasts import ContrastSet, _refuse_unknown_words, answer_positions
from interp_audit.model.subject import Subject

__all__ = ["Population", "PopulationSpec", "build_population"]

Cell = str | int | float | bool


class PopulationSpec(_Section):
    """The individuals whose decisions are compared between groups: one prompt each, with group
    attributes and optionally a true label. Exactly one source: ``file``, ``rows``,
    ``template`` or ``scm``."""

    file: str | None = None
    """A CSV or JSONL file (relative to the spec), one row per individual: the prompt in the
    ``text`` column, attributes (and the label) in other columns."""
    rows: list[dict[str, Cell]] | None = None
    """The same rows inline (a list of mappings)."""
    text: str = "text"
    """file / rows: the column holding the prompt."""
    template: str | list[str] | None = None
    """One template or several with the same ``{slots}``; every combination of slot fillers and
    table rows is rendered in every template."""
    slots: dict[str, list[str]] = Field(default_factory=dict)
    """template: fillers per slot; each slot is also an attribute (its filler)."""
    tables: dict[str, str] = Field(default_factory=dict)
    """template: slot -> a CSV file (relative to the spec) whose column named like the slot holds
    the fillers; its other columns are attributes (e.g. names.csv: name, gender, ethnicity),
    and the template may use them too (``{article} {occupation}``)."""
    scm: str | None = None
    """Factual units of a causal model (``causal``: the spec's causal section; ``zoo:NAME`` or
    a file); attributes and the label are SCM variables (their value names)."""
    n: int = Field(1000, ge=1, le=MAX_SCM_PAIRS)
    """scm: how many units to draw."""
    seed: Seed = 0
    """scm: the seed of the draw."""
    label: str | None = None
    """The column (file, rows, a table's column) or SCM variable holding each individual's true
    outcome: 1 when the positive decision is correct, 0 when not (equalized odds needs it)."""
    answers: tuple[str, str] | None = None
    """``[correct, incorrect]`` answers the spec's metric scores (its group means are reported
    beside the rates). Default: with ``decision.answers``, the positive answer and the first
    other one; else, for ``scm``, the causal model's answers."""
    cluster_by: str | None = None
    """The unit of replication the bootstrap resamples: a column, slot or attribute (individuals
    sharing its value form one cluster), ``template``, or ``row`` (each individual alone).
    Default: a ``cluster`` column (file, rows); the first table's slot (template); each unit
    (scm); else ``row``."""

    @model_validator(mode="after")
    def _one_source(self):
        given = [k for k in ("file", "rows", "template", "scm") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a population needs exactly one source: 'file', 'rows', 'template' or 'scm' "
                f"(got {given or 'none'})"
            )
        src = given[0]
        extra = {
            "slots": src != "template" and bool(self.slots),
            "tables": src != "template" and bool(self.tables),
            "n": src != "scm" and "n" in self.model_fields_set,
            "seed": src != "scm" and "seed" in self.model_fields_set,
            "text": src not in ("file", "rows") and "text" in self.model_fields_set,
        }
        bad = [k for k, v in extra.items() if v]
        if bad:
            raise ValueError(f"'{bad[0]}' does not apply to a '{src}' population")
        if self.rows is not None and not self.rows:
            raise ValueError("rows is empty: give at least one individual")
        if self.template is not None:
            self._check_template()
        return self

    @property
    def templates(self) -> list[str]:
        t = self.template
        return [] if t is None else [t] if isinstance(t, str) else list(t)

    def _check_template(self) -> None:
        if not self.templates:
            raise ValueError("template is an empty list")
        sets = [{f for _, f, _, _ in string.Formatter().parse(t) if f} for t in self.templates]
        if any(s != sets[0] for s in sets):
            raise ValueError(
                f"all templates must use the same slots; got {[sorted(s) for s in sets]}"
            )
        both = set(self.slots) & set(self.tables)
        if both:
            raise ValueError(f"slot {sorted(both)[0]!r} has both 'slots' fillers and a table")
        given = set(self.slots) | set(self.tables)
        if sets[0] - given and not self.tables:  # other fields may be the tables' columns
            raise ValueError(
                f"template slot {sorted(sets[0] - given)[0]!r} has no fillers under 'slots' or "
                "'tables'"
            )
        if given - sets[0]:
            raise ValueError(
                f"slot {sorted(given - sets[0])[0]!r} is not in the template {self.templates[0]!r}"
            )
        for slot, fillers in self.slots.items():
            if not fillers:
                raise ValueError(f"slots.{slot} has no fillers")
            dup = sorted({f for f in fillers if fillers.count(f) > 1})
            if dup:
                raise ValueError(
                    f"slots.{slot} lists {dup[0]!r} twice: it would count as two individuals"
                )


@dataclass(frozen=True)
class Population:
    """Prompts with attributes, optional 0/1 labels and clusters (one entry per individual)."""

    prompts: tuple[str, ...]
    attributes: dict[str, tuple[str, ...]]
    labels: tuple[int, ...] | None
    clusters: tuple[str, ...]
    answers: tuple[str, str] | None
    source: str

    def __len__(self) -> int:
        return len(self.prompts)

    def contrast(self, subject: Subject, where: str) -> ContrastSet:
        """The prompts tokenized as one-sided pairs (clean = counterfactual), for plain forwards
        over the clean side; unknown words, over-long prompts and bad answers are refused."""
        rows = []
        n_ctx = subject.n_ctx
        for i, p in enumerate(self.prompts):
            _refuse_unknown_words(subject, p, f"{where}: individual {i}:")
            ids = subject.to_tokens(p)
            if n_ctx is not None and len(ids) > int(n_ctx):
                raise ContrastError(
                    f"{where}: individual {i} {p!r} is {len(ids)} tokens, longer than the "
                    f"model's context n_ctx={int(n_ctx)}"
                )
            rows.append(ids)
        answers = None
        if self.answers is not None:
            ids = [subject.single_token(a, f"{where}: population answer") for a in self.answers]
            answers = torch.tensor([ids] * len(rows), dtype=torch.long)
        return ContrastSet.one_sided(
            rows,
            self.prompts,
            subject.pad_token_id,
            answers=answers,
            answer_pos=answer_positions(subject, rows),
            clusters=self.clusters,
            meta={"population": self.source},
        )


# ---- building -----------------------------------------------------------------------------------


def _label(value: Any, where: str) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float) and value in (0, 1):
        return int(value)
    if isinstance(value, str) and value.strip().lower() in ("0", "1", "true", "false"):
        return int(value.strip().lower() in ("1", "true"))
    raise SpecError(f"{where}: label {value!r} is not 0/1 (or true/false)")


def _read_rows(path: Path, where: str) -> list[dict[str, Any]]:
    if not path.exists():
        raise SpecError(f"{where}: {str(path)!r} does not exist")
    if path.is_dir():
        raise SpecError(f"{where}: {str(path)!r} is a folder, not a CSV/JSONL file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise SpecError(f"{where}: {path.name} is not UTF-8 text (byte {err.start})") from None
    if path.suffix == ".csv":
        try:
            rows = list(csv.DictReader(io.StringIO(text, newline="")))
        except csv.Error as err:
            raise SpecError(f"{where}: {path.name} is not valid CSV: {err}") from None
    else:
        rows = []
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise SpecError(
                    f"{where}: {path.name} line {i} is not valid JSON: {err.msg}"
                ) from None
            if not isinstance(row, dict):
                raise SpecError(f"{where}: {path.name} line {i} is not a JSON object")
            rows.append(row)
    if not rows:
        raise SpecError(f"{where}: {path.name} has no rows")
    return rows


def _column(rows: list[dict[str, Any]], key: str, where: str, what: str) -> list[Any]:
    for i, r in enumerate(rows):
        if key not in r or r[key] is None or (isinstance(r[key], str) and not r[key].strip()):
            raise SpecError(
                f"{where}: row {i + 1} has no {what} {key!r} (columns: {sorted(r)})"
                f"{did_you_mean(key, list(r))}"
            )
    return [r[key] for r in rows]


def _from_rows(spec: PopulationSpec, rows: list[dict[str, Any]], where: str, source: str):
    prompts = [str(t) for t in _column(rows, spec.text, where, "prompt column")]
    columns = {k for r in rows for k in r} - {spec.text}
    attrs = {k: tuple(str(r.get(k, "")) for r in rows) for k in sorted(columns)}
    return prompts, attrs, source


def _from_template(spec: PopulationSpec, ctx: AuditContext, where: str):
    tables: dict[str, list[dict[str, str]]] = {}
    for slot, file in spec.tables.items():
        rows = _read_rows(ctx.file(file), f"{where}: population.tables.{slot}")
        fillers = _column(rows, slot, f"{where}: population.tables.{slot} ({file})", "column")
        dup = sorted({f for f in fillers if fillers.count(f) > 1})
        if dup:
            raise SpecError(
                f"{where}: population.tables.{slot} ({file}) lists {dup[0]!r} twice: it would "
                "count as two individuals"
            )
        tables[slot] = rows
    fields = [f for _, f, _, _ in string.Formatter().parse(spec.templates[0]) if f]
    order = [f for f in dict.fromkeys(fields) if f in spec.slots or f in tables]
    choices = {s: [{s: f} for f in spec.slots[s]] for s in order if s in spec.slots}
    choices |= {s: tables[s] for s in order if s in tables}
    columns = {k for rows in tables.values() for r in rows for k in r}
    unknown = sorted(set(fields) - set(order) - columns)
    if unknown:
        raise SpecError(
            f"{where}: template field {unknown[0]!r} is neither a slot nor a column of the "
            f"tables (columns: {', '.join(sorted(columns))})"
            f"{did_you_mean(unknown[0], sorted(columns))}"
        )
    prompts: list[str] = []
    attrs: dict[str, list[str]] = {}
    for t_index, template in enumerate(spec.templates):
        for combo in itertools.product(*(choices[s] for s in order)):
            fill: dict[str, str] = {}
            row_attrs: dict[str, str] = {"template": str(t_index)}
            for row in combo:
                for k, v in row.items():
                    if k in row_attrs and row_attrs[k] != str(v):
                        raise SpecError(
                            f"{where}: attribute {k!r} is a column of two tables; rename one"
                        )
                    row_attrs[k] = fill[k] = str(v)
            for k, v in row_attrs.items():
                attrs.setdefault(k, []).append(v)
            prompts.append(template.format(**fill))
    lengths = {k: len(v) for k, v in attrs.items()}
    if any(n != len(prompts) for n in lengths.values()):  # a column missing in some table rows
        k = next(k for k, n in lengths.items() if n != len(prompts))
        raise SpecError(f"{where}: attribute {k!r} is missing in some table rows")
    source = f"template x {', '.join(order)}"
    return prompts, {k: tuple(v) for k, v in attrs.items()}, source


def _from_scm(spec: PopulationSpec, ctx: AuditContext, wanted: list[str], where: str):
    from interp_audit.audit.causal_run import CausalContext

    causal = ctx.causal or CausalContext(ctx.subject, None, ctx.base)
    try:
        cm = causal.resolve(spec.scm)
    except SpecError as err:
        raise SpecError(f"{where}: population.scm: {err}") from None
    units = cm.scm.sample(spec.n, spec.seed)
    fact = cm.scm.values(units)
    prompts = cm.render.render(cm.scm, fact)
    attrs = {}
    for var in wanted:
        if var not in fact:
            raise SpecError(
                f"{where}: {var!r} is not a variable of the causal model (variables: "
                f"{', '.join(fact)}){did_you_mean(var, list(fact))}"
            )
        attrs[var] = tuple(cm.scm.value_name(var, v) for v in fact[var].tolist())
    attrs["unit"] = tuple(f"unit {i}" for i in range(units.n))
    return prompts, attrs, f"scm {spec.scm} (n={spec.n}, seed={spec.seed})", cm.answers


def build_population(
    spec: PopulationSpec,
    ctx: AuditContext,
    where: str,
    *,
    attributes: list[str],
    default_answers: tuple[str, str] | None = None,
) -> Population:
    """Render the population; ``attributes`` must exist (named with the ones that do)."""
    model_answers = None
    label_key = [spec.label] if spec.label else []
    if spec.scm is not None:
        extra = [spec.cluster_by] if spec.cluster_by not in (None, "row", "unit") else []
        prompts, attrs, source, model_answers = _from_scm(
            spec, ctx, [*dict.fromkeys([*attributes, *label_key, *extra])], where
        )
    elif spec.template is not None:
        prompts, attrs, source = _from_template(spec, ctx, where)
    else:
        rows = spec.rows if spec.rows is not None else _read_rows(ctx.file(spec.file), where)
        what = "rows" if spec.rows is not None else f"file {spec.file}"
        prompts, attrs, source = _from_rows(spec, list(rows), where, what)
    if not prompts:
        raise SpecError(f"{where}: the population is empty")
    for key in [*attributes, *label_key]:
        if key not in attrs:
            avail = sorted(k for k in attrs if k != "unit")
            raise SpecError(
                f"{where}: the population has no attribute {key!r} (it has: "
                f"{', '.join(avail)}){did_you_mean(key, avail)}"
            )
    labels = None
    if spec.label:
        labels = tuple(
            _label(v, f"{where}: individual {i} ({prompts[i]!r})")
            for i, v in enumerate(attrs[spec.label])
        )
    by = spec.cluster_by
    if by is None:
        if "cluster" in attrs and spec.scm is None:
            by = "cluster"
        elif spec.tables:
            by = next(iter(spec.tables))
        elif spec.scm is not None:
            by = "unit"
        else:
            by = "row"
    if by == "row":
        clusters = tuple(str(i) for i in range(len(prompts)))
    elif by in attrs:
        clusters = tuple(f"{by}={v}" for v in attrs[by])
    else:
        avail = sorted(attrs)
        raise SpecError(
            f"{where}: population.cluster_by {by!r} is not a column, slot or attribute (have: "
            f"{', '.join(avail)}, or 'row'){did_you_mean(by, avail)}"
        )
    answers = spec.answers or default_answers or model_answers
    return Population(
        prompts=tuple(prompts),
        attributes={k: attrs[k] for k in attributes},
        labels=labels,
        clusters=clusters,
        answers=None if answers is None else (str(answers[0]), str(answers[1])),
        source=source,
    )
