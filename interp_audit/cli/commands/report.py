"""``interp-audit report DIR``: re-render report.html (and JUnit) from a saved report.json."""

from __future__ import annotations

NAME = "report"
HELP = "re-render report.html (and JUnit) from a saved run folder"


def add_arguments(p) -> None:
    p.add_argument("folder", help="a folder written by `interp-audit run`")
    p.add_argument("--junit", default=None)


def main(args) -> int:
    from pathlib import Path

    from interp_audit.audit.report_view import render_html
    from interp_audit.core.files import check_file_target, write_atomic
    from interp_audit.output import render_junit
    from interp_audit.output.run_folder import check_run_folder

    folder = Path(args.folder)
    if args.junit:
        check_file_target(args.junit, "--junit")
    data = check_run_folder(folder, check_html=False)  # refuses incomplete/inconsistent folders
    data.pop("files", None)
    # report.json is left as it is (its data is what is rendered; the page carries its digest)
    write_atomic(folder / "report.html", render_html(data))
    if args.junit:
        write_atomic(args.junit, render_junit(data))
    print(f"report: {folder / 'report.html'}")
    return 0 if data.get("verdict", "pass" if data["passed"] else "fail") == "pass" else 1
