"""Does a repaired model folder still hold the weights its repair record vouches for?

Both formats carry the record: the project's format in ``config.json`` (``repair``), a Hugging
Face export in ``repair.json`` (with ``export.weights_sha256`` over its safetensors tensors).
One changed weight changes the hash; ``interp-audit verify`` reports it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from interp_audit.core.errors import ModelLoadError

__all__ = ["check_weights", "read_record"]


def read_record(folder: Path) -> tuple[dict[str, Any] | None, str]:
    """(the repair record, ``"hf"`` or ``"interp_audit"``) of a model folder; None if none."""
    folder = Path(folder)
    hf = folder / "repair.json"
    if hf.is_file():
        return json.loads(hf.read_text()), "hf"
    cfg = folder / "config.json"
    if cfg.is_file():
        meta = json.loads(cfg.read_text())
        if isinstance(meta, dict) and "interp_audit_format" in meta:
            return meta.get("repair"), "interp_audit"
    return None, ""


def check_weights(folder: Path) -> list[tuple[str, str | None, str | None]]:
    """(what, recorded sha256, sha256 now) for every hash that differs; empty when all match.

    Raises ModelLoadError when the folder has no repair record.
    """
    from safetensors.torch import load_file

    from interp_audit.core.files import sha256_file
    from interp_audit.model.adapters.hf_export import folder_weights_sha256
    from interp_audit.model.hashing import tensors_sha256

    folder = Path(folder)
    record, fmt = read_record(folder)
    if record is None:
        raise ModelLoadError(f"{str(folder)!r} holds no repair record (not a repaired model)")
    diffs: list[tuple[str, str | None, str | None]] = []
    if fmt == "hf":
        export = record.get("export") or {}
        now = folder_weights_sha256(folder)
        if export.get("weights_sha256") != now:
            diffs.append(("weights (tensors)", export.get("weights_sha256"), now))
        for name, saved in sorted((export.get("files") or {}).items()):
            path = folder / name
            got = sha256_file(path) if path.is_file() else None
            if got != saved:
                diffs.append((f"weight file {name}", saved, got))
        return diffs
    st = folder / "model.safetensors"
    now = tensors_sha256(load_file(str(st))) if st.is_file() else None
    if record.get("weights_sha256") != now:
        diffs.append(("weights (tensors)", record.get("weights_sha256"), now))
    return diffs
