"""GGUF files (llama.cpp's format) -> a float32 Hugging Face folder, cached by the file's hash.

People keep local LLMs as one quantized ``.gguf`` file. ``transformers`` (with the ``gguf``
package) dequantizes such a file to float32 for every family it maps; that takes seconds per
100M parameters, so the result is cached as an ordinary Hugging Face folder (config.json,
model.safetensors, tokenizer files) under the user's cache directory, keyed by the file's
SHA-256: a changed file is a new entry, a renamed or copied file reuses its entry. The folder
appears whole or not at all (built in a private staging folder, marked complete, then renamed).

Cache location: ``$INTERP_AUDIT_CACHE`` if set, else ``$XDG_CACHE_HOME/interp_audit``, else
``~/.cache/interp_audit``; entries live under ``gguf/<sha256>/``. Delete an entry to rebuild it.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from interp_audit.core.errors import ModelLoadError
from interp_audit.core.files import cache_root, cached_folder, sha256_file

__all__ = ["GGUFInfo", "cache_root", "dequantized_model", "float32_folder", "read_info"]

#: written last into a cache entry: its presence means the entry is complete
MARKER = "interp_audit_gguf.json"
GGUF_PIP = "pip install gguf"


@dataclass(frozen=True)
class GGUFInfo:
    """What a report records about a GGUF file: its hash and how it was quantized."""

    file: str
    sha256: str
    architecture: str
    quantization: str  # the file type, e.g. "Q4_1" (llama.cpp's "mostly Q4_1")
    tensor_types: dict[str, int] = field(default_factory=dict)  # e.g. {"Q4_1": 210, "F32": 61}
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: GGUF metadata value types -> struct format of one scalar (8: string, 9: array)
_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}


class _Header:
    """The GGUF header (metadata and tensor types), read straight from the file.

    gguf's own ``GGUFReader`` turns every vocabulary entry into Python objects (seconds for a
    49k-token vocabulary); a report needs only a few keys and the tensor types.
    """

    def __init__(self, path: Path):
        import mmap
        import struct

        self.struct = struct
        with open(path, "rb") as f:
            self.buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        if self.buf[:4] != b"GGUF":
            raise ValueError("no GGUF magic number at the start of the file")
        self.at = 4
        self.end = "<" if self._raw("<I", 4) < 0x10000 else ">"  # version; big-endian files
        self.n_tensors = self._u64()
        self.meta: dict[str, Any] = {}
        for _ in range(self._u64()):
            key = self._str()
            self.meta[key] = self._value(self._u32(), keep=key.startswith("general."))
        self.tensor_types: list[int] = []
        for _ in range(self.n_tensors):
            self._str()
            n_dims = self._u32()
            self.at += 8 * n_dims  # the dims
            self.tensor_types.append(self._u32())
            self.at += 8  # offset
        self.buf.close()

    def _raw(self, fmt: str, size: int):
        (value,) = self.struct.unpack_from(fmt, self.buf, self.at)
        self.at += size
        return value

    def _u32(self) -> int:
        return self._raw(self.end + "I", 4)

    def _u64(self) -> int:
        return self._raw(self.end + "Q", 8)

    def _str(self) -> str:
        n = self._u64()
        self.at += n
        return bytes(self.buf[self.at - n : self.at]).decode("utf-8", "replace")

    def _value(self, kind: int, keep: bool):
        if kind == 8:
            return self._str()
        if kind == 9:
            inner, count = self._u32(), self._u64()
            if inner in _SCALARS and not keep:  # skipped whole: fixed-size elements
                self.at += self.struct.calcsize(self.end + _SCALARS[inner]) * count
                return None
            return [self._value(inner, keep) for _ in range(count)]
        if kind not in _SCALARS:
            raise ValueError(f"unknown GGUF metadata type {kind}")
        fmt = self.end + _SCALARS[kind]
        return self._raw(fmt, self.struct.calcsize(fmt))


def read_info(path: str | Path, sha256: str | None = None) -> GGUFInfo:
    """The GGUF file's architecture, quantization and SHA-256 (header only: no tensor read)."""
    path = Path(path)
    try:
        import gguf
    except ImportError as err:
        raise ModelLoadError(
            f"{str(path)!r} is a GGUF file; reading it needs the gguf package ({GGUF_PIP})"
        ) from err
    try:
        header = _Header(path)
    except Exception as err:  # a truncated or foreign file
        raise ModelLoadError(
            f"{str(path)!r} is not a readable GGUF file: {type(err).__name__}: {err}"
        ) from None

    def name_of(enum, value) -> str:
        try:
            return enum(int(value)).name
        except (TypeError, ValueError):
            return f"type {value}"

    file_type = header.meta.get("general.file_type")
    quant = "unknown" if file_type is None else name_of(gguf.LlamaFileType, file_type)
    types = Counter(name_of(gguf.GGMLQuantizationType, t) for t in header.tensor_types)
    return GGUFInfo(
        file=str(path),
        sha256=sha256 or sha256_file(path),
        architecture=str(header.meta.get("general.architecture") or "unknown"),
        quantization=quant.removeprefix("MOSTLY_"),
        tensor_types=dict(types.most_common()),
        name=header.meta.get("general.name"),
    )


def dequantized_model(path: str | Path):
    """``transformers``' own load of a GGUF file, every weight unpacked to dense float32.

    ``dequantize=True`` is explicit: with the ``kernels`` package installed, transformers would
    otherwise keep the weights packed in GGUF blocks (fast inference, but no plain weights).
    """
    from interp_audit.model.adapters.quiet import quiet_tl_warnings

    path = Path(path)
    with quiet_tl_warnings():
        from transformers import AutoModelForCausalLM, GgufConfig

        return AutoModelForCausalLM.from_pretrained(
            str(path.parent),
            gguf_file=path.name,
            dtype=torch.float32,
            quantization_config=GgufConfig(dequantize=True),
            local_files_only=True,
        ).eval()


def _convert(path: Path, staging: Path, info: GGUFInfo) -> None:
    """transformers' own GGUF load (dequantized to float32), saved as a Hugging Face folder."""
    from interp_audit.model.adapters.quiet import quiet_tl_warnings

    try:
        hf = dequantized_model(path)
        with quiet_tl_warnings():
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(
                str(path.parent), gguf_file=path.name, local_files_only=True
            )
    except Exception as err:
        raise ModelLoadError(
            f"transformers could not dequantize {str(path)!r} (architecture "
            f"{info.architecture!r}, {info.quantization}): {type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}"
        ) from err
    # the weights are plain float32 now: saved as an ordinary (unquantized) checkpoint
    hf.hf_quantizer = None
    hf.is_quantized = False
    if hasattr(hf.config, "quantization_config"):
        del hf.config.quantization_config
    with quiet_tl_warnings():
        hf.save_pretrained(str(staging))
        tok.save_pretrained(str(staging))


def float32_folder(path: str | Path, *, cache: Path | None = None) -> tuple[Path, GGUFInfo, bool]:
    """The cached float32 Hugging Face folder of a GGUF file: (folder, info, was it cached).

    A missing entry is built by ``transformers`` (``from_pretrained(dir, gguf_file=name)``) and
    written whole: staging folder, completion marker, then one atomic rename.
    """
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise ModelLoadError(f"GGUF file {str(path)!r} does not exist")
    sha = sha256_file(path)
    root = (cache or cache_root()) / "gguf"
    folder = root / sha
    if (folder / MARKER).is_file():
        try:
            saved = json.loads((folder / MARKER).read_text())
            fields = {k: saved[k] for k in GGUFInfo.__dataclass_fields__ if k in saved}
            return folder, GGUFInfo(**{**fields, "file": str(path), "sha256": sha}), True
        except (OSError, ValueError, TypeError, KeyError):
            pass  # an unreadable marker: rebuild the entry
    info = read_info(path, sha256=sha)

    def build(staging: Path) -> dict:
        _convert(path, staging, info)
        return {**info.to_dict(), "dtype": "float32", "converted_by": _versions()}

    cached_folder(root, sha, MARKER, build, f"the float32 cache of {str(path)!r}")
    return folder, info, False


def _versions() -> dict[str, str]:
    import transformers

    out = {"transformers": transformers.__version__}
    try:
        from importlib.metadata import version

        out["gguf"] = version("gguf")
    except Exception:
        pass
    return out
