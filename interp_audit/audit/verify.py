"""``verify(folder)``: is a saved report still what its spec, weights and data produce?

Three kinds of evidence, each listed with where it differs:

* **tamper**: report.json's ``content_sha256`` no longer matches its content;
* **inputs**: the weights (tensors and files), the spec file or a data file hash differently now;
* **numbers**: re-running the saved spec text gives different statistics, intervals, verdicts
  or located effects (compared to ``rtol``; the run is seeded, so on the same software and
  device they match exactly).

:func:`compare_runs` compares two saved folders without re-running anything: their
``results_sha256`` (what each audit measured) first, then every number where they differ.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp_audit.audit.record import (
    HASH_FIELD,
    RESULTS_FIELD,
    content_hash,
    data_files,
    file_sha256,
    results_hash,
    weight_files,
)
from interp_audit.core.errors import AuditError
from interp_audit.methods.locate.patching import flat_effects_as_raw

__all__ = ["Difference", "Verification", "compare_runs", "verify"]


@dataclass(frozen=True)
class Difference:
    """One value that differs: where (a JSON path), what was saved and what there is now."""

    kind: str  # "tamper", "input" or "number"
    where: str
    saved: Any
    now: Any

    def __str__(self) -> str:
        return f"[{self.kind}] {self.where}: saved {_short(self.saved)}, now {_short(self.now)}"


@dataclass
class Verification:
    """The outcome of :func:`verify`: ``ok`` when nothing differs; ``notes`` never fail it."""

    folder: Path
    differences: list[Difference] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    compared: int = 0
    against: Path | None = None  # compare_runs: the other folder
    same_results_hash: bool | None = None

    @property
    def ok(self) -> bool:
        return not self.differences

    def __str__(self) -> str:
        if self.against is not None:
            same = (
                "the same results_sha256" if self.same_results_hash else "different results_sha256"
            )
            head = (
                f"{self.folder} and {self.against}: {same}; every number ({self.compared}) matches"
                if self.ok
                else f"{self.folder} and {self.against}: {same}; "
                f"{len(self.differences)} difference(s) ({self.compared} numbers compared)"
            )
        else:
            head = (
                f"verified {self.folder}: every number ({self.compared}) and hash matches"
                if self.ok
                else f"{self.folder}: {len(self.differences)} difference(s) "
                f"({self.compared} numbers compared)"
            )
        lines = [head, *(f"  {d}" for d in self.differences[:50])]
        if len(self.differences) > 50:
            lines.append(f"  ... and {len(self.differences) - 50} more")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _short(v: Any) -> str:
    text = json.dumps(v) if not isinstance(v, str) else v
    return text if len(text) <= 80 else text[:77] + "..."


def _compare(saved: Any, now: Any, where: str, out: list[Difference], rtol: float) -> int:
    """Recursive comparison; returns how many numbers were compared."""
    if isinstance(saved, bool) or isinstance(now, bool) or saved is None or now is None:
        if saved != now:
            out.append(Difference("number", where, saved, now))
        return 0
    if isinstance(saved, int | float) and isinstance(now, int | float):
        same = (math.isnan(saved) and math.isnan(now)) or math.isclose(
            saved, now, rel_tol=rtol, abs_tol=rtol * 1e-3
        )
        if not same:
            out.append(Difference("number", where, saved, now))
        return 1
    if isinstance(saved, dict) and isinstance(now, dict):
        n = 0
        for key in sorted(set(saved) | set(now)):
            if key not in saved or key not in now:
                out.append(Difference("number", f"{where}.{key}", saved.get(key), now.get(key)))
                continue
            n += _compare(saved[key], now[key], f"{where}.{key}", out, rtol)
        return n
    if isinstance(saved, list) and isinstance(now, list):
        if len(saved) != len(now):
            out.append(Difference("number", f"{where} (length)", len(saved), len(now)))
            return 0
        return sum(
            _compare(a, b, f"{where}[{i}]", out, rtol)
            for i, (a, b) in enumerate(zip(saved, now, strict=True))
        )
    if saved != now:
        out.append(Difference("number", where, saved, now))
    return 0


def verify(folder: str | Path, *, device: str | None = None, rtol: float = 1e-6) -> Verification:
    """Check a saved run folder: content hash, input hashes, and a seeded re-run's numbers.

    Raises :class:`AuditError` when the folder has no readable report.json or the saved spec
    can no longer run (the CLI exits 2 then).
    """
    from interp_audit.audit.run import audit

    folder = Path(folder)
    data = _read(folder)
    result = Verification(folder)
    diffs = result.differences
    _check_hashes(data, "", result)
    path = folder / "report.json"
    prov = data.get("provenance", {})
    if "spec_text" not in prov:
        raise AuditError(f"{path}: no spec_text in provenance; this report cannot be re-run")

    spec_path = prov.get("spec_path")
    if spec_path and Path(spec_path).is_file():
        now = file_sha256(Path(spec_path))
        if now != prov.get("spec_sha256"):
            diffs.append(Difference("input", f"spec file {spec_path}", prov["spec_sha256"], now))
    base = Path(prov.get("base") or Path.cwd())
    dev = device or prov.get("model", {}).get("device")
    subject = _repaired_subject(folder, prov, dev, diffs) if "repair" in prov else None
    with flat_effects_as_raw() if subject is not None else contextlib.nullcontext():
        report = audit(prov["spec_text"], base=base, device=dev, subject=subject)
    new = report.to_dict()
    new_prov = new["provenance"]
    if subject is not None:
        record = prov["repair"].get("record") or {}
        if record.get("weights_sha256") != new_prov["weights"]["state_sha256"]:
            diffs.append(
                Difference(
                    "input",
                    "repaired weights as loaded (tensors) vs the repair record",
                    record.get("weights_sha256"),
                    new_prov["weights"]["state_sha256"],
                )
            )

    saved_w, now_w = prov.get("weights", {}), new_prov["weights"]
    if saved_w.get("state_sha256") != now_w["state_sha256"]:
        diffs.append(
            Difference(
                "input", "weights (tensors)", saved_w.get("state_sha256"), now_w["state_sha256"]
            )
        )
    weights_at = saved_w.get("source") or prov.get("model", {}).get("source", "")
    if subject is not None:  # the repaired model travels with the folder
        weights_at = str(folder / prov["repair"].get("model", "model"))
    _, files_now = weight_files(weights_at)
    for name in sorted(set(saved_w.get("files") or {}) | set(files_now)):
        a, b = (saved_w.get("files") or {}).get(name), files_now.get(name)
        if a != b:
            diffs.append(Difference("input", f"weight file {name}", a, b))
    saved_data = prov.get("data_files") or {}
    now_data = data_files(report_spec(report), base)
    for key in sorted(set(saved_data) | set(now_data)):
        if saved_data.get(key) != now_data.get(key):
            diffs.append(
                Difference("input", f"data file {key}", saved_data.get(key), now_data.get(key))
            )

    result.compared += _compare(data.get("checks"), new["checks"], "checks", diffs, rtol)
    result.compared += _compare(data.get("located"), new["located"], "located", diffs, rtol)
    if data.get("verdict") != new["verdict"]:
        diffs.append(Difference("number", "verdict", data.get("verdict"), new["verdict"]))
    for pkg, version in (prov.get("versions") or {}).items():
        if new_prov["versions"].get(pkg) != version:
            result.notes.append(f"{pkg} was {version}, now {new_prov['versions'].get(pkg)}")
    return result


def _read(folder: Path) -> dict[str, Any]:
    path = folder / "report.json"
    if not path.exists():
        raise AuditError(f"{str(folder)!r} has no report.json (nothing to verify)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise AuditError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(data, dict):
        raise AuditError(f"{path}: not a report (a JSON {type(data).__name__})")
    return data


def _check_hashes(data: dict[str, Any], where: str, result: Verification) -> None:
    """Tamper evidence: each stored hash must match what the report holds."""
    for key, fn in ((HASH_FIELD, content_hash), (RESULTS_FIELD, results_hash)):
        stored = data.get(key)
        if stored is None:
            result.notes.append(f"{where}report.json has no {key} (written before it existed)")
        elif stored != fn(data):
            result.differences.append(Difference("tamper", f"{where}{key}", stored, fn(data)))


def compare_runs(folder: str | Path, against: str | Path, *, rtol: float = 1e-6) -> Verification:
    """Do two saved run folders hold the same results? No model work: each folder's hashes are
    checked (tampering), then their ``results_sha256``; where those differ, every statistic,
    interval, verdict and located effect is compared to ``rtol`` and each difference listed.
    Differences in what ran (spec, weights, data, versions, device) are notes: they explain a
    difference in the results, they are not one.
    """
    a, b = Path(folder), Path(against)
    da, db = _read(a), _read(b)
    result = Verification(a, against=b)
    _check_hashes(da, f"{a}/", result)
    _check_hashes(db, f"{b}/", result)
    result.same_results_hash = results_hash(da) == results_hash(db)
    for key in ("checks", "located"):
        result.compared += _compare(da.get(key), db.get(key), key, result.differences, rtol)
    if da.get("verdict") != db.get("verdict"):
        result.differences.append(
            Difference("number", "verdict", da.get("verdict"), db.get("verdict"))
        )
    pa, pb = da.get("provenance") or {}, db.get("provenance") or {}
    ran = {
        "spec (canonical hash)": lambda p: p.get("spec_hash"),
        "weights (tensors)": lambda p: (p.get("weights") or {}).get("state_sha256"),
        "data files": lambda p: p.get("data_files"),
        "seed": lambda p: p.get("seed"),
        "device": lambda p: (p.get("model") or {}).get("device"),
        "dtype": lambda p: (p.get("model") or {}).get("dtype"),
        "versions": lambda p: p.get("versions"),
    }
    for what, get in ran.items():
        if get(pa) != get(pb):
            result.notes.append(f"{what} differ: {_short(get(pa))} vs {_short(get(pb))}")
    return result


def _repaired_subject(folder: Path, prov: dict[str, Any], device, diffs: list[Difference]):
    """A repair folder (``interp-audit repair``): its model's weights against the repair
    record, then the model loaded from the folder for the re-run."""
    from interp_audit.model.loading import load_model
    from interp_audit.model.repair_record import check_weights, read_record

    model_dir = folder / prov["repair"].get("model", "model")
    if not model_dir.is_dir():
        raise AuditError(f"{str(folder)!r} is a repair report, but its model folder is missing")
    for what, saved, now in check_weights(model_dir):
        diffs.append(Difference("input", f"repaired model: {what}", saved, now))
    record, _ = read_record(model_dir)
    saved = (prov["repair"].get("record") or {}).get("weights_sha256")
    if (record or {}).get("weights_sha256") != saved:
        diffs.append(
            Difference(
                "input",
                "repair record (model folder vs report)",
                saved,
                (record or {}).get("weights_sha256"),
            )
        )
    spec = prov.get("spec") or {}
    model = spec.get("model") or {}
    return load_model(
        model_dir,
        device=device,
        dtype=model.get("dtype"),
        **(model.get("weight_processing") or {}),
    )


def report_spec(report) -> Any:
    """The parsed spec a re-run report came from (kept on its provenance by :func:`audit`)."""
    from interp_audit.audit.spec import load_spec

    return load_spec(report.provenance["spec_text"])[0]
