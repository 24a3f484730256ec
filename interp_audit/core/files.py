"""Atomic file writes and the run-folder protocol (report.json is the commit mark).

Why: an audit that is interrupted (Ctrl-C, SIGTERM, a full disk) must never leave a folder
whose files disagree, e.g. a new report.json beside an old report.html. Every file the package
writes goes through :func:`write_atomic` (temp file in the same folder, flush, fsync, rename),
and a run folder is written in a fixed order: the old ``report.json`` is removed first, then
effects, HTML and JUnit, then ``report.json`` last with a manifest (``files``: SHA-256 of every
other file it vouches for). A folder without ``report.json`` is incomplete; a folder whose files
do not match the manifest is inconsistent.
:func:`interp_audit.output.run_folder.check_run_folder` says which, by name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from interp_audit.core.errors import AuditError, ModelLoadError

__all__ = [
    "cache_root",
    "cached_folder",
    "check_file_target",
    "check_output_folder",
    "sha256_file",
    "write_atomic",
]

#: files (relative to a run folder) that belong to a run; any of them without report.json
#: means the run that wrote them did not finish
RUN_FILES = ("report.json", "report.html", "effects")


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never half.

    The temp file lives in the same folder (rename is atomic only within a file system) and is
    removed if anything, including KeyboardInterrupt, stops the write. The file gets the mode a
    plain ``open(path, "w")`` would give it: an existing file keeps its mode, a new one is
    ``0o666`` less the umask (``mkstemp`` creates its temp file ``0o600``, and a rename keeps
    that, so without this a CI artifact server or a colleague could not read the report).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    mode = _plain_write_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        else:  # pragma: no cover - Windows: only the read-only bit exists
            os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def _plain_write_mode(path: Path) -> int:
    """The permission bits ``open(path, "w")`` would leave: the existing file's, else 0o666 less
    the process umask."""
    with contextlib.suppress(OSError):
        return stat.S_IMODE(os.stat(path).st_mode)
    return 0o666 & ~current_umask()


def current_umask() -> int:
    """The process umask, read without changing it where the platform allows (Linux's
    /proc/self/status); elsewhere set and restored at once."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a directory
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_output_folder(out: str | Path, what: str = "--out") -> Path:
    """Refuse an output path that cannot become a run folder, before any model work."""
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise AuditError(
            f"{what} {str(p)!r} is an existing file, not a folder: give a folder for "
            "report.json, report.html and effects/"
        )
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise AuditError(f"{what} {str(p)!r}: {str(parent)!r} is a file, not a folder")
            if not os.access(parent, os.W_OK):
                raise AuditError(f"{what} {str(p)!r}: cannot write into {str(parent)!r}")
            break
    return p


def check_file_target(path: str | Path, what: str) -> Path:
    """Refuse a file output (e.g. ``--junit``) that is an existing folder."""
    p = Path(path)
    if p.is_dir():
        raise AuditError(f"{what} {str(p)!r} is a folder; give a file name such as junit.xml")
    return p


def cache_root() -> Path:
    """Where interp_audit caches derived files: ``$INTERP_AUDIT_CACHE``, else
    ``$XDG_CACHE_HOME/interp_audit``, else ``~/.cache/interp_audit``."""
    env = os.environ.get("INTERP_AUDIT_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "interp_audit"


def cached_folder(
    root: Path, key: str, marker: str, build: Callable[[Path], dict], what: str
) -> Path:
    """``root/key``, built once by ``build(staging) -> marker contents`` and appearing whole or
    not at all: built in a private staging folder, marked complete (``marker`` written last),
    then renamed into place in one step. A present marker means a complete entry; an entry
    without one (an interrupted run) is rebuilt. Two processes building the same entry at once
    both succeed (the first rename wins). ``what`` names the entry in errors."""
    folder = root / key
    if (folder / marker).is_file():
        return folder
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key[:16]}.", dir=root))
    except OSError as err:
        raise ModelLoadError(
            f"cannot write {what} under {str(root)!r} ({err}); set INTERP_AUDIT_CACHE to a "
            "writable folder"
        ) from None
    try:
        contents = build(staging)
        write_atomic(staging / marker, json.dumps(contents, indent=1))
        if folder.exists():  # an incomplete entry (no marker) from an interrupted run
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.replace(staging, folder)
        except OSError:
            if not (folder / marker).is_file():  # not another process finishing first
                raise
    finally:
        with contextlib.suppress(OSError):
            if staging.exists():
                shutil.rmtree(staging)
    return folder
