"""An audit matrix: every model x every spec, one summary page, the worst cell's exit code.

Auditors gate a release on many models (every checkpoint of a run, every model of a release)
against many specs (every policy). Each cell is one ordinary audit with the spec's model
replaced by the cell's model; a cell that cannot run (a spec that does not fit a model) is an
error cell (exit 2) with its reason, never a silent skip. Cells run in this process one after
the other, or as Ray tasks in parallel (one model load per task, ``num_gpus`` where GPUs exist);
a task returns its report files as bytes, so the driver writes every report even when workers
share no filesystem with it.
"""

from __future__ import annotations

import html
import json
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Cell", "MatrixResult", "run_cell", "run_matrix"]

VERDICTS = {0: "pass", 1: "fail", 2: "error"}


@dataclass
class Cell:
    """One model x spec audit: its verdict (exit code), checks passed, report folder or error."""

    model: str
    spec: str
    code: int
    checks_passed: int = 0
    checks_total: int = 0
    error: str = ""
    folder: str = ""
    seconds: float = 0.0
    files: dict[str, bytes] = field(default_factory=dict, repr=False)

    @property
    def verdict(self) -> str:
        return VERDICTS[self.code]


def spec_label(spec: str) -> str:
    """``folder/file.yaml``: shipped specs are all called audit.yaml, their folder names them."""
    return f"{Path(spec).parent.name}/{Path(spec).name}"


def cell_id(model: str, spec: str) -> str:
    def clean(s: str) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("_")

    return f"{clean(model)}__{clean(Path(spec).parent.name)}_{clean(Path(spec).stem)}"


def run_cell(model: str, spec: str, device: str | None = None) -> Cell:
    """Audit ``spec`` on ``model`` here; the report files come back in ``Cell.files``."""
    from interp_audit.audit.run import audit
    from interp_audit.audit.spec import load_spec
    from interp_audit.model.loading import load_model

    t0 = time.perf_counter()
    try:
        parsed, _ = load_spec(spec)
        subject = load_model(
            model,
            device=device or parsed.model.device,
            dtype=parsed.model.dtype,
            **parsed.model.weight_processing,
        )
        report = audit(spec, subject=subject)
        with tempfile.TemporaryDirectory(prefix="interp_audit_cell_") as tmp:
            report.save(tmp)
            files = {
                str(p.relative_to(tmp)): p.read_bytes() for p in Path(tmp).rglob("*") if p.is_file()
            }
        return Cell(
            model,
            spec,
            0 if report.passed else 1,
            sum(c.passed for c in report.checks),
            len(report.checks),
            seconds=time.perf_counter() - t0,
            files=files,
        )
    except Exception as err:  # an error cell: the reason goes on the summary page
        first = str(err).splitlines()[0] if str(err) else ""
        return Cell(
            model, spec, 2, error=f"{type(err).__name__}: {first}", seconds=time.perf_counter() - t0
        )


@dataclass
class MatrixResult:
    """Cells in (model, spec) order; ``code`` is the worst cell's exit code."""

    models: list[str]
    specs: list[str]
    cells: list[Cell]
    out: Path

    @property
    def code(self) -> int:
        return max((c.code for c in self.cells), default=0)

    def cell(self, model: str, spec: str) -> Cell:
        return next(c for c in self.cells if c.model == model and c.spec == spec)

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "model": c.model,
                    "spec": spec_label(c.spec),
                    "verdict": c.verdict,
                    "checks": f"{c.checks_passed}/{c.checks_total}",
                    "error": c.error,
                }
                for c in self.cells
            ]
        )

    def table(self) -> str:
        """A plain-text grid (models down, specs across) for the terminal."""
        names = [spec_label(s) for s in self.specs]
        width = max([len(m) for m in self.models] + [5])
        cols = [max(len(n), 12) for n in names]
        lines = [
            "".ljust(width) + "  " + "  ".join(n.ljust(w) for n, w in zip(names, cols, strict=True))
        ]
        for m in self.models:
            row = []
            for s, w in zip(self.specs, cols, strict=True):
                c = self.cell(m, s)
                mark = (
                    c.verdict if c.code == 2 else f"{c.verdict} {c.checks_passed}/{c.checks_total}"
                )
                row.append(mark.ljust(w))
            lines.append(m.ljust(width) + "  " + "  ".join(row))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        cells = []
        for c in self.cells:
            d = asdict(c)
            d.pop("files")
            d["verdict"] = c.verdict
            cells.append(d)
        return {"models": self.models, "specs": self.specs, "code": self.code, "cells": cells}

    def render_html(self) -> str:
        colour = {0: "#2e7d32", 1: "#c62828", 2: "#6d4c41"}
        head = "".join(f"<th>{html.escape(spec_label(s))}</th>" for s in self.specs)
        rows = []
        for m in self.models:
            tds = []
            for s in self.specs:
                c = self.cell(m, s)
                style = f"color:{colour[c.code]};font-weight:bold"
                if c.code == 2:
                    why = html.escape(c.error)
                    body = f"<span style='{style}'>error</span><br><small>{why}</small>"
                else:
                    link = html.escape(f"{c.folder}/report.html")
                    body = (
                        f"<a href='{link}' style='{style}'>{c.verdict}</a><br><small>"
                        f"{c.checks_passed}/{c.checks_total} checks pass</small>"
                    )
                tds.append(f"<td>{body}</td>")
            rows.append(f"<tr><th>{html.escape(m)}</th>{''.join(tds)}</tr>")
        worst = VERDICTS[self.code]
        return (
            "<!doctype html><html><head><meta charset='utf-8'><title>Audit matrix</title><style>"
            "body{font-family:sans-serif;margin:2em}td,th{border:1px solid #ccc;padding:.5em;"
            "vertical-align:top}table{border-collapse:collapse}</style></head><body>"
            f"<h1>Audit matrix: {len(self.models)} models x {len(self.specs)} specs</h1>"
            f"<p>Worst cell: <b style='color:{colour[self.code]}'>{worst}</b> "
            f"(exit code {self.code}). Each verdict links to that cell's report.</p>"
            f"<table><tr><th>model \\ spec</th>{head}</tr>{''.join(rows)}</table>"
            "</body></html>"
        )

    def save(self) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "summary.json").write_text(json.dumps(self.to_dict(), indent=2))
        (self.out / "index.html").write_text(self.render_html())
        return self.out / "index.html"


def _resolve(model: str) -> str:
    return (
        model
        if model.startswith("zoo:") or not Path(model).exists()
        else str(Path(model).resolve())
    )


def run_matrix(
    models: list[str],
    specs: list[str],
    out: str | Path,
    *,
    executor: Any = None,
    device: str | None = None,
) -> MatrixResult:
    """Audit every model against every spec; write ``out/cells/*/`` reports and ``index.html``.

    ``executor``: ``None``/``"local"`` (cells one after the other here), ``"ray"`` or a
    ``RayExecutor`` (cells as parallel Ray tasks on its cluster, retried if a worker dies).
    """
    from interp_audit.engine.executors import Executor, LocalExecutor, get_executor

    models = [_resolve(m) for m in models]
    specs = [str(Path(s).resolve()) for s in specs]
    pairs = [(m, s) for m in models for s in specs]
    ex, owned = get_executor(executor) if executor is not None else (LocalExecutor(), False)
    assert isinstance(ex, Executor)
    try:
        if ex.name == "ray":
            cells = ex.map_cells(run_cell, pairs, device=device)
        else:
            cells = [run_cell(m, s, device) for m, s in pairs]
    finally:
        if owned:
            ex.close()
    out = Path(out)
    for c in cells:
        folder = Path("cells") / cell_id(c.model, c.spec)
        c.folder = folder.as_posix() if c.files else ""
        for rel, data in c.files.items():
            path = out / folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    result = MatrixResult(models, specs, cells, out)
    result.save()
    return result
