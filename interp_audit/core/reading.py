"""Reading the user's text files (specs, contrast files) with an error that names the file.

A missing file, a folder, bytes that are not UTF-8 or an unreadable file each get a
:class:`SpecError` saying which, never a raw ``OSError`` or ``UnicodeDecodeError``.
"""

from __future__ import annotations

from pathlib import Path

from interp_audit.core.errors import SpecError

__all__ = ["read_text"]


def read_text(path: Path, what: str, *, folder_hint: str = "", text_hint: str = "") -> str:
    """The UTF-8 text of ``path``; ``what`` names it in errors (``"audit spec 'a.yaml'"``), the
    hints say what was expected (``"; give the YAML file in it"``)."""
    if not path.exists():
        raise SpecError(f"{what} does not exist")
    if path.is_dir():
        raise SpecError(f"{what} is a folder{folder_hint}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise SpecError(f"{what} is not UTF-8 text (byte {err.start}){text_hint}") from None
    except OSError as err:
        raise SpecError(f"cannot read {what}: {err.strerror}") from None
