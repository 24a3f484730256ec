"""Shape check of a report.json before it is rendered: a crafted or damaged file is refused by key.

Why: ``interp-audit report`` renders whatever report.json says. A number that is a string (or a
``<script>``) must be refused naming the key, not formatted into HTML or crash a renderer.
"""

from __future__ import annotations

import math
from typing import Any

from interp_audit.core.errors import AuditError

__all__ = ["ReportFileError", "data_digest", "validate_report"]


class ReportFileError(AuditError, ValueError):
    """A report.json does not have the shape interp_audit writes: names the key."""


def data_digest(report: dict[str, Any]) -> str:
    """SHA-256 of the report data (without its file manifest): ties report.html to its json."""
    import hashlib
    import json

    body = {k: v for k, v in report.items() if k != "files"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _need(cond: bool, where: str, key: str, what: str, got: Any) -> None:
    if not cond:
        shown = repr(got)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        raise ReportFileError(f"{where}: {key} must be {what}, got {shown}")


def validate_report(data: Any, where: str = "report.json") -> None:
    """Raise :class:`ReportFileError` naming the first key that is not what interp_audit wrote."""
    _need(isinstance(data, dict), where, "the top level", "a JSON object", type(data).__name__)
    for key in ("name", "passed", "checks", "provenance"):
        _need(key in data, where, key, "present", "nothing")
    _need(isinstance(data["name"], str), where, "name", "a string", data["name"])
    _need(isinstance(data["passed"], bool), where, "passed", "true or false", data["passed"])
    _need(isinstance(data["checks"], list), where, "checks", "a list", data["checks"])
    _need(
        isinstance(data["provenance"], dict), where, "provenance", "an object", data["provenance"]
    )
    for i, c in enumerate(data["checks"]):
        k = f"checks[{i}]"
        _need(isinstance(c, dict), where, k, "an object", c)
        for f in ("name", "kind", "message"):
            _need(isinstance(c.get(f), str), where, f"{k}.{f}", "a string", c.get(f))
        _need(
            isinstance(c.get("passed"), bool),
            where,
            f"{k}.passed",
            "true or false",
            c.get("passed"),
        )
        for f in ("statistic", "threshold"):
            _need(_num(c.get(f)), where, f"{k}.{f}", "a number", c.get(f))
        ci = c.get("ci")
        _need(
            isinstance(ci, list) and len(ci) == 2 and all(_num(x) for x in ci),
            where,
            f"{k}.ci",
            "a list of two numbers",
            ci,
        )
        if "confidence" in c:
            conf = c["confidence"]
            _need(_num(conf) and 0 < conf < 1, where, f"{k}.confidence", "in (0, 1)", conf)
        details = c.get("details", [])
        _need(isinstance(details, list), where, f"{k}.details", "a list", details)
        for j, d in enumerate(details):
            _need(isinstance(d, dict), where, f"{k}.details[{j}]", "an object", d)
            if "ci" in d:
                _need(
                    isinstance(d["ci"], list)
                    and len(d["ci"]) == 2
                    and all(_num(x) for x in d["ci"]),
                    where,
                    f"{k}.details[{j}].ci",
                    "a list of two numbers",
                    d["ci"],
                )
    located = data.get("located", {})
    _need(isinstance(located, dict), where, "located", "an object", located)
    for name, e in located.items():
        k = f"located[{name!r}]"
        _need(isinstance(e, dict), where, k, "an object", e)
        for f in ("method", "metric"):
            _need(isinstance(e.get(f), str), where, f"{k}.{f}", "a string", e.get(f))
        _need(isinstance(e.get("dims"), list), where, f"{k}.dims", "a list", e.get("dims"))
        _need(isinstance(e.get("axes"), dict), where, f"{k}.axes", "an object", e.get("axes"))
        _need("values" in e, where, f"{k}.values", "present", "nothing")
        flat = _flatten(e["values"])
        _need(flat is not None, where, f"{k}.values", "a nested list of numbers", e["values"])
        _need(
            isinstance(e.get("normalized"), bool),
            where,
            f"{k}.normalized",
            "true or false",
            e.get("normalized"),
        )
    sections = data.get("sections", [])
    _need(isinstance(sections, list), where, "sections", "a list", sections)
    for i, sec in enumerate(sections):
        k = f"sections[{i}]"
        _need(isinstance(sec, dict), where, k, "an object", sec)
        _need(isinstance(sec.get("title"), str), where, f"{k}.title", "a string", sec.get("title"))
        cols = sec.get("columns")
        _need(
            isinstance(cols, list) and all(isinstance(c, str) for c in cols),
            where,
            f"{k}.columns",
            "a list of strings",
            cols,
        )
        rows = sec.get("rows")
        _need(
            isinstance(rows, list)
            and all(isinstance(r, list) and len(r) == len(cols) for r in rows),
            where,
            f"{k}.rows",
            f"a list of rows of {len(cols)} values",
            rows,
        )
    files = data.get("files", {})
    _need(isinstance(files, dict), where, "files", "an object", files)


def _flatten(v: Any) -> list[float] | None:
    if _num(v):
        return [v]
    if not isinstance(v, list):
        return None
    out: list[float] = []
    for x in v:
        f = _flatten(x)
        if f is None:
            return None
        out += f
    return out


def is_finite_number(v: Any) -> bool:
    return _num(v) and math.isfinite(v)
