"""The spec reference, generated from the pydantic models (docs/spec-reference.md).

``python -m interp_audit.audit.reference > docs/spec-reference.md`` rewrites the page; a test
keeps it in sync, so every key a spec accepts is documented with its type, default and meaning.
``interp-audit schema`` prints the JSON Schema of the same models (for editors' completion).
"""

from __future__ import annotations

import json
import re
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

__all__ = ["json_schema", "reference"]


def json_schema() -> dict[str, Any]:
    """The JSON Schema of audit specs, for the check kinds registered now."""
    from interp_audit.audit.spec import audit_spec_model

    schema = audit_spec_model().model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "interp_audit audit spec"
    return schema


def _type(annotation: Any) -> str:
    text = repr(annotation) if not isinstance(annotation, type) else annotation.__name__
    text = re.sub(r"<class '([\w.]+)'>", lambda m: m.group(1).split(".")[-1], text)
    text = re.sub(r"\b(?:[a-z_]\w*\.)+([A-Za-z_]\w*)", r"\1", text)
    text = text.replace("NoneType", "None")
    if "Discriminator" in text or "Tag(" in text:
        return "dict[str, template | file | scm]"
    return text.replace("list[CheckSpec]", "list[a check kind below]")


def _default(field) -> str:
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        value = field.default_factory()
    else:
        value = field.default
    if value is PydanticUndefined:
        return "**required**"
    if isinstance(value, BaseModel):
        return "(defaults)"
    return f"`{json.dumps(value)}`"


def _doc(model: type[BaseModel]) -> str:
    doc = typing.cast(str, model.__doc__ or "").strip()
    return " ".join(doc.split()) if doc and not doc.startswith("!!!") else ""


def _section(title: str, model: type[BaseModel], note: str = "") -> str:
    lines = [f"### {title}", ""]
    doc = _doc(model)
    if doc and "A base class for creating Pydantic models" not in doc:
        lines += [doc, ""]
    if note:
        lines += [note, ""]
    lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        desc = " ".join((field.description or "").split()).replace("|", "\\|")
        kind = _type(field.annotation).replace("|", "\\|")
        lines.append(f"| `{name}` | {kind} | {_default(field)} | {desc} |")
    return "\n".join(lines) + "\n"


def reference() -> str:
    """The whole reference page (Markdown)."""
    from interp_audit.audit import spec as s
    from interp_audit.audit.decisions import DecisionSpec
    from interp_audit.audit.kinds import check_kinds
    from interp_audit.audit.kinds.membership import TprBudget
    from interp_audit.audit.kinds.memorization import CanarySpec
    from interp_audit.audit.population import PopulationSpec

    parts = [
        "# Audit spec reference",
        "",
        "Generated from the pydantic models by `python -m interp_audit.audit.reference > "
        "docs/spec-reference.md` (a test keeps it in sync). `interp-audit schema` prints the "
        "same as JSON Schema. Unknown keys are errors that name the nearest valid key.",
        "",
        "## The spec",
        "",
        _section("top level", s.AuditSpecBase),
        _section("model", s.ModelSpec),
        _section("metric", s.MetricSpec),
        "## Contrast sets (`contrasts.NAME`)",
        "",
        "A contrast set is one of three sources, told apart by its key: `template`, `file` or "
        "`scm`. Every pair belongs to a *cluster* (its unit of replication), which the "
        "bootstrap resamples.",
        "",
        _section("template", s.TemplateContrast),
        _section("template: swap", s.SwapSpec),
        _section("file", s.FileContrast),
        _section("scm", s.ScmContrast),
        "## Locate steps (`locate[i]`)",
        "",
        _section(
            "locate",
            s.LocateSpec,
            "Keys beyond these are the method's own options, validated against its options "
            "model (e.g. `steps` for `ig`).",
        ),
        "## Checks (`checks[i]`)",
        "",
        "Every check gives **pass** (its interval lies inside the tolerance), **fail** (entirely "
        "outside; Holm-corrected over a check's groups or paths) or **inconclusive** (it "
        "straddles the tolerance, or there are fewer clusters than `min_clusters`). Keys every "
        "kind accepts:",
        "",
        _section("common keys", s.CheckSpec),
    ]
    for name, kind in check_kinds().items():
        common = set(s.CheckSpec.model_fields) - {"kind"}
        fields = {k: v for k, v in kind.spec.model_fields.items() if k not in common}
        sub = type(kind.spec.__name__, (), {})  # only for the table below
        sub.model_fields = fields  # type: ignore[attr-defined]
        sub.__doc__ = kind.spec.__doc__
        parts.append(_section(f"kind: {name}", sub, kind.description))  # type: ignore[arg-type]
    parts += [
        "## Shared sections",
        "",
        _section("ablate", s.AblationSpec),
        _section("utility", s.UtilitySpec),
        _section("memorization: canaries[i]", CanarySpec),
        _section("decision (flip_rate, group_parity)", DecisionSpec),
        _section("population (group_parity)", PopulationSpec),
        _section("membership: tpr_budget[i]", TprBudget),
        "## Trade-off (`tradeoff`)",
        "",
        _section("tradeoff", s.TradeoffSpec),
    ]
    return "\n".join(parts).rstrip() + "\n"


if __name__ == "__main__":
    print(reference(), end="")
