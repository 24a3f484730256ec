"""Verdicts under disagreement: which checks hold whatever a contested path's admissibility.

Reviewers disagree about the graph: whether a career gap may count (hiring's G -> C -> Y), which
structural equations are right. ``sensitivity(spec, contest=[...], scms=[...])`` runs the spec's
checks under every combination of the contested paths' admissibility (each taken admissible and
inadmissible, whatever the graph's rules say) and, for each alternative SCM file for the same
graph, again. Path effects do not depend on admissibility: each path is measured once per SCM
and reused by every check and every choice (only its role changes), and a check that never asks
the graph about admissibility (an intervention's cost, membership, environment risk) runs once.
The result is a table of verdicts (check x choice) and the checks that pass under all of them.

    interp-audit sensitivity circuits/hiring/audit.yaml --contest "G -> C -> Y"
"""

from __future__ import annotations

import dataclasses
import html
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp_audit.causal.graph import format_path
from interp_audit.core.errors import SpecError

__all__ = ["Sensitivity", "sensitivity"]

_TAG = {"pass": "pass", "fail": "FAIL", "inconclusive": "inconclusive"}


@dataclass
class Sensitivity:
    """Verdicts of every check under every choice (contested admissibility x SCM)."""

    spec: str
    contested: list[str]
    choices: list[dict[str, Any]]  # label, admissible {path: bool}, scm
    verdicts: dict[str, dict[str, str]]  # check -> choice label -> verdict
    statistics: dict[str, dict[str, float]]
    choice_free: list[str]  # checks whose result does not depend on admissibility
    paths: list[dict[str, Any]] = field(default_factory=list)  # each path measured once per SCM

    @property
    def labels(self) -> list[str]:
        return [c["label"] for c in self.choices]

    def holds_under_all(self) -> list[str]:
        """The checks that pass under every choice."""
        return [n for n, v in self.verdicts.items() if all(x == "pass" for x in v.values())]

    def depends(self) -> list[str]:
        """The checks whose verdict changes with the choice."""
        return [n for n, v in self.verdicts.items() if len(set(v.values())) > 1]

    @property
    def passed(self) -> bool:
        return len(self.holds_under_all()) == len(self.verdicts)

    def to_frame(self):
        import pandas as pd

        rows = []
        for name, v in self.verdicts.items():
            row = {"check": name, **v}
            row["holds under all"] = name in self.holds_under_all()
            rows.append(row)
        return pd.DataFrame(rows).set_index("check")

    def to_markdown(self) -> str:
        head = ["check", *self.labels, "holds under all"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, v in self.verdicts.items():
            cells = [name]
            for label in self.labels:
                stat = self.statistics[name][label]
                cells.append(f"{_TAG[v[label]]} ({stat:+.3f})")
            cells.append("yes" if name in self.holds_under_all() else "no")
            lines.append("| " + " | ".join(cells) + " |")
        if self.paths:
            lines += ["", "| path | scm | effect (measured once) | roles by choice |",
                      "|---|---|---|---|"]  # fmt: skip
            for p in self.paths:
                ci = (
                    "exact"
                    if p.get("exact")
                    else (f"[{p['ci'][0]:+.3f}, {p['ci'][1]:+.3f}]" if "ci" in p else "")
                )
                roles = ", ".join(f"{k}: {v}" for k, v in p["roles"].items())
                lines.append(f"| {p['path']} | {p['scm']} | {p['effect']:+.4f} {ci} | {roles} |")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "contested": self.contested,
            "choices": self.choices,
            "verdicts": self.verdicts,
            "statistics": self.statistics,
            "holds under all": self.holds_under_all(),
            "depends on the choice": self.depends(),
            "measured once (no admissibility question)": self.choice_free,
            "paths": self.paths,
        }

    def save(self, directory: str | Path) -> Path:
        """``sensitivity.json`` and ``sensitivity.md``."""
        from interp_audit.core.files import check_output_folder, write_atomic

        out = check_output_folder(directory, "sensitivity output")
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / "sensitivity.json", json.dumps(self.to_dict(), indent=2))
        write_atomic(out / "sensitivity.md", self.to_markdown() + "\n")
        return out

    def __repr__(self) -> str:
        return (
            f"Sensitivity({len(self.verdicts)} checks x {len(self.choices)} choices; hold under "
            f"all: {self.holds_under_all() or 'none'}; depend on the choice: "
            f"{self.depends() or 'none'})\n" + self.to_markdown()
        )

    def _repr_html_(self) -> str:
        colors = {"pass": "#2e7d32", "fail": "#c62828", "inconclusive": "#ef6c00"}
        head = "".join(f"<th>{html.escape(c)}</th>" for c in [*self.labels, "holds under all"])
        body = ""
        for name, v in self.verdicts.items():
            cells = "".join(
                f"<td style='color:{colors[v[c]]};font-weight:bold'>{v[c]} "
                f"({self.statistics[name][c]:+.3f})</td>"
                for c in self.labels
            )
            holds = "yes" if name in self.holds_under_all() else "no"
            body += f"<tr><td>{html.escape(name)}</td>{cells}<td>{holds}</td></tr>"
        return (
            f"<div><b>Sensitivity of {html.escape(self.spec)} to "
            f"{html.escape(', '.join(self.contested) or 'the SCM')}</b>"
            f"<table><tr><th>check</th>{head}</tr>{body}</table></div>"
        )


def _scm_of(path: str, base: Path):
    from interp_audit.causal.scm import SCM

    p = Path(path)
    if not p.is_absolute() and not p.exists():
        p = base / p
    if not p.exists():
        raise SpecError(f"sensitivity: alternative SCM file {path!r} does not exist")
    return SCM.from_python(p) if p.suffix == ".py" else SCM.from_tables(p)


def _labels(paths: list[str], combo: Sequence[bool], scm: str | None) -> str:
    parts = [
        f"{p} {'admissible' if ok else 'inadmissible'}" for p, ok in zip(paths, combo, strict=True)
    ]
    return "; ".join(parts + ([f"scm {scm}"] if scm else [])) or "as declared"  # fmt: skip


def sensitivity(
    spec,
    *,
    contest: Sequence[str] | None = None,
    scms: Sequence[str] | None = None,
    subject=None,
    device: str | None = None,
) -> Sensitivity:
    """Run ``spec``'s checks under every combination of the ``contest``-ed paths' admissibility
    (and each alternative SCM file in ``scms``); settings left None come from the spec's
    ``sensitivity:`` section. Returns the verdict table (:class:`Sensitivity`)."""
    from interp_audit.audit.causal_run import load_causal
    from interp_audit.audit.kinds import check_kinds
    from interp_audit.audit.run import build_context, load_subject
    from interp_audit.audit.spec import load_spec

    parsed, base = load_spec(spec)
    cfg = parsed.sensitivity
    contest = list(contest if contest is not None else (cfg.contest if cfg else []))
    scms = list(scms if scms is not None else (cfg.scms if cfg else []))
    if not contest and not scms:
        raise SpecError(
            "sensitivity needs contested paths (--contest 'C -> Y', or sensitivity.contest in "
            "the spec) or alternative SCM files (--scm FILE, or sensitivity.scms)"
        )
    cm = load_causal(parsed.causal, base)
    if cm is None:
        raise SpecError("sensitivity varies the causal graph: the spec needs a 'causal' section")
    paths = []
    for p in contest:
        try:
            paths.append(format_path(cm.graph._existing_path(p)))
        except SpecError as err:
            raise SpecError(f"sensitivity: contested path {p!r}: {err}") from None
    if len(set(paths)) != len(paths):
        raise SpecError(f"sensitivity: a contested path is named twice ({paths})")
    if subject is None:
        subject = load_subject(parsed, base, device)[1]
    kinds = check_kinds()
    names = parsed.check_names()
    verdicts: dict[str, dict[str, str]] = {n: {} for n in names}
    stats: dict[str, dict[str, float]] = {n: {} for n in names}
    choices: list[dict[str, Any]] = []
    choice_free: set[str] = set()
    measured: list[dict[str, Any]] = []
    variants = [(None, cm)] + [
        (s, dataclasses.replace(cm, scm=_scm_of(s, base))) for s in scms
    ]  # each alternative is checked against the graph and the rendering here
    for scm_name, model in variants:
        ctx = build_context(parsed, base, subject, model)
        ctx.causal.reuse_measurements = True
        once: dict[str, Any] = {}
        for combo in itertools.product((True, False), repeat=len(paths)):
            label = _labels(paths, combo, scm_name)
            graph = model.graph.with_admissibility(dict(zip(paths, combo, strict=True)))
            ctx.causal.model = dataclasses.replace(model, graph=graph)
            choices.append({"label": label, "admissible": dict(zip(paths, combo, strict=True)),
                            "scm": scm_name or "as declared"})  # fmt: skip
            for name, chk in zip(names, parsed.checks, strict=True):
                if name in once:
                    res = once[name]
                else:
                    before = graph.queries
                    res = kinds[chk.kind].run(chk, ctx, name)
                    if graph.queries == before:  # never asked about admissibility
                        once[name] = res
                        choice_free.add(name)
                verdicts[name][label] = res.verdict
                stats[name][label] = float(res.statistic)
        measured += _paths_measured(ctx, paths, scm_name or "as declared", model)
        ctx.causal.model = model
    return Sensitivity(
        spec=str(spec) if isinstance(spec, str | Path) else parsed.name,
        contested=paths,
        choices=choices,
        verdicts=verdicts,
        statistics=stats,
        choice_free=sorted(choice_free),
        paths=measured,
    )


def _paths_measured(ctx, contested: list[str], scm: str, model) -> list[dict[str, Any]]:
    """Each path measured (once) in this SCM variant, with its role under each choice."""
    out, seen = [], set()
    for key, row in ctx.causal._cache.items():
        if not (isinstance(key, tuple) and key and key[0] == "path row"):
            continue
        path = format_path(key[2])
        if path in seen:
            continue
        seen.add(path)
        roles = {}
        for combo in itertools.product((True, False), repeat=len(contested)):
            g = model.graph.with_admissibility(dict(zip(contested, combo, strict=True)))
            tag = "; ".join(
                f"{'adm.' if ok else 'inadm.'} {p}" for p, ok in zip(contested, combo, strict=True)
            )
            roles[tag or "as declared"] = "admissible" if g.admissible(path) else "inadmissible"
        item = {"path": path, "scm": scm, "effect": row["effect"], "roles": roles}
        if row.get("exact"):
            item["exact"] = True
        elif "ci" in row:
            item["ci"] = list(row["ci"])
        out.append(item)
    return out
