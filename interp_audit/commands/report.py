"""``interp-audit report DIR``: re-render report.html (and JUnit) from a saved report.json."""

from __future__ import annotations

NAME = "report"
HELP = "re-render report.html (and JUnit) from a saved run folder"


def add_arguments(p) -> None:
    p.add_argument("folder", help="a folder written by `interp-audit run`")
    p.add_argument("--junit", default=None)


def main(args) -> int:
    import json
    from pathlib import Path

    from ..errors import AuditError
    from ..report import render_html, render_junit

    folder = Path(args.folder)
    if not (folder / "report.json").exists():
        raise AuditError(
            f"{str(folder)!r} has no report.json (run `interp-audit run SPEC --out {folder}` first)"
        )
    data = json.loads((folder / "report.json").read_text())
    (folder / "report.html").write_text(render_html(data))
    if args.junit:
        Path(args.junit).write_text(render_junit(data))
    print(f"report: {folder / 'report.html'}")
    return 0 if data["passed"] else 1
