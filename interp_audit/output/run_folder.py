"""Reading a run folder back: refuse an incomplete or inconsistent one by name.

The write side is :func:`interp_audit.core.files.write_atomic` with report.json last (its manifest
lists the SHA-256 of every other file); this module checks that protocol when a folder is read.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from interp_audit.core.errors import IncompleteRunError
from interp_audit.core.files import RUN_FILES, sha256_file
from interp_audit.output.validate import data_digest, validate_report

__all__ = ["check_run_folder"]


def check_run_folder(folder: str | Path, *, check_html: bool = True) -> dict[str, Any]:
    """Read a run folder's report.json; refuse an incomplete or inconsistent folder by name.

    ``check_html=False`` skips the report.html check (``interp-audit report`` re-renders it).
    """
    folder = Path(folder)
    if not folder.exists():
        raise IncompleteRunError(f"run folder {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise IncompleteRunError(f"{str(folder)!r} is a file, not a run folder")
    report = folder / "report.json"
    if not report.exists():
        present = [n for n in RUN_FILES[1:] if (folder / n).exists()]
        if present:
            raise IncompleteRunError(
                f"run folder {str(folder)!r} is incomplete: it has {', '.join(present)} but no "
                "report.json (the run was interrupted); run `interp-audit run SPEC --out "
                f"{folder}` again"
            )
        raise IncompleteRunError(
            f"{str(folder)!r} has no report.json (run `interp-audit run SPEC --out {folder}` first)"
        )
    text = report.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise IncompleteRunError(f"{report} is empty: the run folder is incomplete; run again")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise IncompleteRunError(
            f"{report} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}): "
            "it is corrupt or half-written; run the audit again"
        ) from None
    validate_report(data, str(report))
    html_file = folder / "report.html"
    if check_html and html_file.exists():
        head = html_file.read_text(encoding="utf-8", errors="replace")[:4096]
        found = re.search(r"<meta name='interp-audit-data' content='([0-9a-f]{64})'>", head)
        if found is None or found.group(1) != data_digest(data):
            raise IncompleteRunError(
                f"run folder {str(folder)!r} is inconsistent: report.html was not rendered from "
                "this report.json (written by another run?); run the audit again"
            )
    for name, digest in (data.get("files") or {}).items():
        target = folder / name
        if ".." in Path(name).parts or Path(name).is_absolute():
            raise IncompleteRunError(f"{report}: files entry {name!r} points outside the folder")
        if not target.exists():
            raise IncompleteRunError(
                f"run folder {str(folder)!r} is inconsistent: report.json lists {name!r}, which "
                "is missing"
            )
        if sha256_file(target) != digest:
            raise IncompleteRunError(
                f"run folder {str(folder)!r} is inconsistent: {name!r} does not match "
                "report.json (written by another run?); run the audit again"
            )
    return data
