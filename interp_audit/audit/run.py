"""``ia.audit(spec) -> AuditReport``: load, build contrasts, locate, check, report."""

from __future__ import annotations

import datetime
import html
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..contrast import ContrastSet
from ..effects import Effects
from ..errors import SpecError
from ..loading import load_model
from ..locate.methods import run_locate
from ..metrics import Metric, embedding_similarity, get_metric, query_similarity
from ..subject import Subject
from .context import AuditContext
from .contrasts import build_contrasts
from .kinds import check_kinds
from .result import CheckResult
from .spec import AuditSpec, load_spec

__all__ = ["AuditReport", "audit"]


def effects_folder_name(step: str) -> str:
    """A locate step's folder under effects/: one safe path component, never '..' or '/'."""
    import re

    name = re.sub(r"[^A-Za-z0-9_.=-]", "_", step.replace("*", "star"))
    return name if name.strip(".") else "_" + name


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("interp_audit", "torch", "transformer_lens", "sae_lens", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _metric(subject: Subject, spec: AuditSpec) -> Metric:
    m = spec.metric
    if m.name == "query_similarity":
        return query_similarity()
    if m.name == "embedding_similarity":
        if isinstance(m.anchors, dict):
            pos, neg = (
                torch.nn.functional.normalize(subject.embed(m.anchors[k]), dim=-1).mean(0)
                for k in ("positive", "negative")
            )
            return embedding_similarity(
                torch.stack([pos, neg]), name="embedding_similarity(positive vs negative anchors)"
            )
        if m.anchors:
            anchors = subject.embed(m.anchors)
            return embedding_similarity(
                anchors if len(m.anchors) == 2 else anchors[0],
                name="embedding_similarity(" + " vs ".join(m.anchors) + ")",
            )
        return embedding_similarity()
    return get_metric(m.name)


@dataclass
class AuditReport:
    """The verdict of an audit: checks with statistics, located effects, provenance."""

    name: str
    checks: list[CheckResult]
    effects: dict[str, Effects] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "checks": [c.to_dict() for c in self.checks],
            "located": {
                k: {
                    "method": e.method,
                    "metric": e.metric,
                    "dims": list(e.dims),
                    "axes": e.axes,
                    "values": e.values.detach().cpu().tolist(),
                    "top": [[c, v] for c, v in e.top(10)],
                    "baseline": e.baseline,
                    "normalized": e.normalized,
                }
                for k, e in self.effects.items()
            },
            "provenance": self.provenance,
        }

    def save(self, directory: str | Path, *, junit: str | Path | None = None) -> Path:
        """Write effects/, report.html (self-contained), JUnit XML if asked, then report.json.

        Every file is written atomically, and report.json last: it is the commit mark and lists
        the SHA-256 of every other file (``files``), so an interrupted save leaves a folder that
        ``interp-audit report`` refuses as incomplete, never a new json beside an old html.
        """
        from ..atomic import check_file_target, check_output_folder, sha256_file, write_atomic
        from ..report import render_html, render_junit

        out = check_output_folder(directory, "output folder")
        if junit is not None:
            check_file_target(junit, "junit file")
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").unlink(missing_ok=True)  # the folder is incomplete from here on
        data = self.to_dict()
        files: dict[str, str] = {}
        for k, e in self.effects.items():
            folder = e.save(out / "effects" / effects_folder_name(k))
            for f in sorted(folder.iterdir()):
                files[f.relative_to(out).as_posix()] = sha256_file(f)
        write_atomic(out / "report.html", render_html(data))  # carries the data's digest
        if junit is not None:
            write_atomic(junit, render_junit(data))
        write_atomic(
            out / "report.json", json.dumps({**data, "files": files}, indent=2, sort_keys=True)
        )
        return out

    def __repr__(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [
            f"AuditReport({self.name!r}: {verdict}, "
            f"{sum(c.passed for c in self.checks)}/{len(self.checks)} checks pass)"
        ]
        lines += [
            f"  [{'pass' if c.passed else 'FAIL'}] {c.name}: {c.message}" for c in self.checks
        ]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td style='color:{'#2e7d32' if c.passed else '#c62828'};font-weight:bold'>"
            f"{'pass' if c.passed else 'FAIL'}</td>"
            f"<td>{html.escape(c.name)}</td><td>{html.escape(c.kind)}</td><td>"
            f"{c.statistic:+.4f}</td><td>[{c.ci[0]:+.4f}, {c.ci[1]:+.4f}]</td><td>"
            f"{c.threshold}</td><td>{html.escape(c.message)}</td></tr>"
            for c in self.checks
        )
        verdict = (
            "<span style='color:#2e7d32'>PASSED</span>"
            if self.passed
            else "<span style='color:#c62828'>FAILED</span>"
        )
        return (
            f"<div><h3>Audit {html.escape(self.name)}: "
            f"{verdict}</h3><table><tr><th></th><th>check</th><th>kind</th><th>statistic</th>"
            f"<th>{int(100 * (self.checks[0].confidence if self.checks else 0.95))}% "
            f"CI</th><th>tolerance</th><th>evidence</th></tr>{rows}</table>"
            f"<small>located: {', '.join(self.effects) or 'none'}; spec "
            f"{self.provenance.get('spec_hash', '')[:12]}</small></div>"
        )


def audit(
    spec,
    *,
    device: str | None = None,
    subject: Subject | None = None,
    contrasts: dict[str, ContrastSet] | None = None,
) -> AuditReport:
    """Run an audit spec (a YAML path, YAML text, a dict or an AuditSpec).

    ``subject`` replaces the spec's model (a notebook's in-memory model); ``contrasts`` adds or
    replaces contrast sets by name, so a spec's checks can run on ContrastSets built in Python.
    """
    parsed, base = load_spec(spec)
    torch.manual_seed(parsed.seed)
    if subject is None:
        source = parsed.model.source
        if source.startswith((".", "/")) or (
            not source.startswith("zoo:") and (base / source).exists()
        ):
            source = str((base / source).resolve())
        subject = load_model(
            source,
            device=device or parsed.model.device,
            dtype=parsed.model.dtype,
            **parsed.model.weight_processing,
        )
    given = dict(contrasts or {})
    for name, cs in given.items():
        if not isinstance(cs, ContrastSet):
            raise SpecError(f"contrasts[{name!r}] must be a ContrastSet, got {type(cs).__name__}")
    wanted = {k: v for k, v in parsed.contrasts.items() if k not in given}
    built = build_contrasts(subject, wanted, base)
    ctx = AuditContext(
        subject=subject,
        contrasts={**built, **given},
        metric=_metric(subject, parsed),
        seed=parsed.seed,
        base=base,
    )
    for loc in parsed.locate:
        m = get_metric(loc.metric) if loc.metric else ctx.metric
        ctx.effects[loc.default_name()] = run_locate(loc, ctx.contrasts[loc.contrast], m, ctx)
    kinds = check_kinds()
    results = [
        kinds[chk.kind].run(chk, ctx, name)
        for name, chk in zip(parsed.check_names(), parsed.checks, strict=True)
    ]
    provenance = {
        "spec_hash": parsed.digest(),
        "spec": parsed.model_dump(mode="json"),
        "seed": parsed.seed,
        "versions": _versions(),
        "model": subject.describe(),
        "metric": ctx.metric.name,
        "contrasts": {k: len(v) for k, v in ctx.contrasts.items()},
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    return AuditReport(parsed.name, results, ctx.effects, provenance)
