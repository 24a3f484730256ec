"""``ia.audit(spec) -> AuditReport``: load, build contrasts, locate, check, report."""

from __future__ import annotations

import datetime
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from interp_audit.audit.causal_run import CausalContext, load_causal
from interp_audit.audit.context import AuditContext
from interp_audit.audit.contrasts import build_contrasts
from interp_audit.audit.kinds import check_kinds
from interp_audit.audit.record import (
    HASH_FIELD,
    RESULTS_FIELD,
    build_record,
    content_hash,
    results_hash,
)
from interp_audit.audit.registry import run_check
from interp_audit.audit.result import VERDICT_COLORS, CheckResult
from interp_audit.audit.spec import AuditSpec, load_spec
from interp_audit.core.errors import EmptyPathError, SpecError
from interp_audit.engine.contrasts import ContrastSet
from interp_audit.engine.effects import Effects
from interp_audit.methods.locate.methods import run_locate
from interp_audit.model.loading import load_model
from interp_audit.model.metrics import Metric, embedding_similarity, get_metric, query_similarity
from interp_audit.model.subject import Subject
from interp_audit.stats.bootstrap import Verdict, combine

__all__ = ["AuditReport", "audit"]


def effects_folder_name(step: str) -> str:
    """A locate step's folder under effects/: one safe path component, never '..' or '/'."""
    import re

    name = re.sub(r"[^A-Za-z0-9_.=-]", "_", step.replace("*", "star"))
    return name if name.strip(".") else "_" + name


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
    #: extra tables for the report page (title, columns, rows, note), e.g. a repair's
    #: before/after comparison; left out of report.json when empty
    sections: list[dict[str, Any]] = field(default_factory=list)

    @property
    def verdict(self) -> Verdict:
        """``fail`` if any check fails, ``pass`` if every check passes, else ``inconclusive``."""
        return combine([c.verdict for c in self.checks])

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data, with ``results_sha256`` over what the audit measured
        (equal for identical runs) and ``content_sha256`` over everything else."""
        data = self._body()
        data[RESULTS_FIELD] = results_hash(data)
        data[HASH_FIELD] = content_hash(data)
        return data

    def _body(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": self.verdict,
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
                    **({"cards": e.meta["cards"]} if "cards" in e.meta else {}),
                }
                for k, e in self.effects.items()
            },
            "provenance": self.provenance,
            **({"sections": self.sections} if self.sections else {}),
        }

    def save(self, directory: str | Path, *, junit: str | Path | None = None) -> Path:
        """Write effects/, report.html (self-contained), JUnit XML if asked, then report.json.

        Every file is written atomically, and report.json last: it is the commit mark and lists
        the SHA-256 of every other file (``files``), so an interrupted save leaves a folder that
        ``interp-audit report`` refuses as incomplete, never a new json beside an old html.
        """
        from interp_audit.audit.report_view import render_html
        from interp_audit.core.files import (
            check_file_target,
            check_output_folder,
            sha256_file,
            write_atomic,
        )
        from interp_audit.output import render_junit

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
        counts = {v: sum(c.verdict == v for c in self.checks) for v in VERDICT_COLORS}
        lines = [
            f"AuditReport({self.name!r}: {self.verdict.upper()}, "
            f"{counts['pass']} pass, {counts['fail']} fail, {counts['inconclusive']} inconclusive "
            f"of {len(self.checks)} checks)"
        ]
        tag = {"pass": "pass", "fail": "FAIL", "inconclusive": "INCONCLUSIVE"}
        lines += [
            f"  [{tag[c.verdict]}] {c.name}: {c.message}"
            + ("" if c.verdict == "pass" else f" -- {c.reason}")
            for c in self.checks
        ]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td style='color:{VERDICT_COLORS[c.verdict]};font-weight:bold'>"
            f"{c.verdict}</td>"
            f"<td>{html.escape(c.name)}</td><td>{html.escape(c.kind)}</td><td>"
            f"{c.statistic:+.4f}</td><td>[{c.ci[0]:+.4f}, {c.ci[1]:+.4f}]</td><td>"
            f"{c.half_width:.4f}</td><td>{c.threshold}</td><td>{html.escape(c.reason)}</td>"
            f"<td>{html.escape(c.message)}</td></tr>"
            for c in self.checks
        )
        verdict = (
            f"<span style='color:{VERDICT_COLORS[self.verdict]}'>{self.verdict.upper()}</span>"
        )
        return (
            f"<div><h3>Audit {html.escape(self.name)}: "
            f"{verdict}</h3><table><tr><th></th><th>check</th><th>kind</th><th>statistic</th>"
            f"<th>{int(100 * (self.checks[0].confidence if self.checks else 0.95))}% "
            f"CI</th><th>half-width</th><th>tolerance</th><th>why</th><th>evidence</th></tr>"
            f"{rows}</table>"
            f"<small>located: {', '.join(self.effects) or 'none'}; spec "
            f"{self.provenance.get('spec_hash', '')[:12]}</small></div>"
        )


def audit(
    spec,
    *,
    device: str | None = None,
    subject: Subject | None = None,
    contrasts: dict[str, ContrastSet] | None = None,
    executor=None,
    trust_gates: bool = True,
    base: str | Path | None = None,
) -> AuditReport:
    """Run an audit spec; ``executor`` says where its sweeps run (see ``_audit`` for the rest).

    ``executor``: ``None``/``"local"``, ``"ray"`` or an Executor
    (``interp_audit.engine.executors``);
    the report's numbers are identical on each.
    """
    from interp_audit.engine.executors import using

    with using(executor):
        return _audit(
            spec,
            device=device,
            subject=subject,
            contrasts=contrasts,
            trust_gates=trust_gates,
            base=base,
        )


def load_subject(parsed: AuditSpec, base: Path, device: str | None = None) -> tuple[str, Subject]:
    """The spec's model: a zoo name, a hub name, or a folder relative to the spec's folder,
    loaded with the spec's device, dtype and weight processing. Returns (source, subject)."""
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
    return source, subject


def build_context(
    parsed: AuditSpec,
    base: Path,
    subject: Subject,
    causal_model,
    *,
    given: dict[str, ContrastSet] | None = None,
    locate: bool = True,
    effects: dict[str, Effects] | None = None,
    skip_empty: bool = False,
) -> AuditContext:
    """Contrasts built (``given`` ones replace the spec's by name) and locate steps run
    (``effects`` already located by name are reused, not re-run). ``skip_empty``: leave out
    SCM contrasts along which no unit's input changes (a model whose input hides a variable)
    instead of refusing them."""
    given = dict(given or {})
    causal = CausalContext(subject, causal_model, base)
    wanted = {k: v for k, v in parsed.contrasts.items() if k not in given}
    if skip_empty:
        built = {}
        for name, c in wanted.items():
            try:
                built.update(build_contrasts(subject, {name: c}, base, causal))
            except EmptyPathError:
                continue  # the model cannot read this contrast's change
    else:
        built = build_contrasts(subject, wanted, base, causal)
    ctx = AuditContext(
        subject=subject,
        contrasts={**built, **given},
        metric=_metric(subject, parsed),
        seed=parsed.seed,
        base=base,
        causal=causal,
    )
    for loc in parsed.locate if locate else ():
        name = loc.default_name()
        if effects is not None and name in effects:
            ctx.effects[name] = effects[name]
            continue
        m = get_metric(loc.metric) if loc.metric else ctx.metric
        ctx.effects[name] = run_locate(loc, ctx.contrasts[loc.contrast], m, ctx)
    return ctx


def _audit(
    spec,
    *,
    device: str | None = None,
    subject: Subject | None = None,
    contrasts: dict[str, ContrastSet] | None = None,
    trust_gates: bool = True,
    base: str | Path | None = None,
) -> AuditReport:
    """Run an audit spec (a YAML path, YAML text, a dict or an AuditSpec).

    ``subject`` replaces the spec's model (a notebook's in-memory model); ``contrasts`` adds or
    replaces contrast sets by name, so a spec's checks can run on ContrastSets built in Python.
    ``trust_gates`` re-derives a sample of the located numbers serially and, for Hugging Face
    folders, compares the wrapper with plain ``transformers`` (:mod:`.gates`); a broken gate
    raises :class:`~interp_audit.audit.gates.TrustGateError` with the report attached.
    ``base``: the folder relative files resolve against (default: the spec file's folder, or
    the working directory for YAML text and dicts).
    """
    from interp_audit.audit.gates import raise_if_broken, run_gates

    parsed, found = load_spec(spec)
    base = Path(base).resolve() if base is not None else found
    torch.manual_seed(parsed.seed)
    causal_model = load_causal(parsed.causal, base)  # spec errors before any model work
    source = None
    if subject is None:
        source, subject = load_subject(parsed, base, device)
    given = dict(contrasts or {})
    for name, cs in given.items():
        if not isinstance(cs, ContrastSet):
            raise SpecError(f"contrasts[{name!r}] must be a ContrastSet, got {type(cs).__name__}")
    ctx = build_context(parsed, base, subject, causal_model, given=given)
    located = {  # name -> (contrast, metric), for the trust gates
        loc.default_name(): (loc.contrast, get_metric(loc.metric) if loc.metric else ctx.metric)
        for loc in parsed.locate
    }
    gates = (
        run_gates(subject, ctx.contrasts, ctx.effects, located, seed=parsed.seed)
        if trust_gates
        else []
    )
    kinds = check_kinds()
    results = [
        run_check(kinds[chk.kind], chk, ctx, name)
        for name, chk in zip(parsed.check_names(), parsed.checks, strict=True)
    ]
    provenance = build_record(parsed, base, subject, ctx, source)
    provenance["causal"] = causal_model.graph.to_dict() if causal_model is not None else None
    provenance["trust_gates"] = [g.to_dict() for g in gates]
    provenance["timestamp"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    report = AuditReport(parsed.name, results, ctx.effects, provenance)
    raise_if_broken(gates, report)
    return report
