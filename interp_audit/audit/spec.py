"""The audit spec: YAML validated with pydantic, errors that name the key and the nearest valid one.

A spec names the model, the contrast sets (from templates, files or a zoo SCM), the metric, the
locate methods to run and the checks. Small sections, each its own model, nested.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Union

import yaml
from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    ValidationError,
    create_model,
    model_validator,
)

from interp_audit.audit.causal_spec import CausalSpec
from interp_audit.audit.sections import (  # noqa: F401  (re-exported: the spec's sections)
    AblationSpec,
    CheckSpec,
    Contrast,
    FileContrast,
    LocateSpec,
    MetricSpec,
    ModelSpec,
    ScmContrast,
    Seed,
    SensitivitySpec,
    SwapSpec,
    TemplateContrast,
    TradeoffSpec,
    UtilitySpec,
    _Section,
)
from interp_audit.core.errors import SpecError, did_you_mean
from interp_audit.core.reading import read_text
from interp_audit.core.yamlio import Loader as _Loader


def _same_sae(chk, step: str, steps: list[LocateSpec], where: str) -> None:
    """Ablating the top features of an SAE locate step needs that step's SAE."""
    abl = getattr(chk, "ablate", None)
    loc = next(x for x in steps if x.default_name() == step)
    opts = loc.options
    if abl is None or opts is None or not hasattr(opts, "sae"):
        return
    if (abl.sae, abl.sae_id) != (opts.sae, opts.sae_id):
        raise ValueError(
            f"{where} names the SAE step {step!r}: ablate its features with the same SAE "
            f"(ablate.sae: {opts.sae}{', ablate.sae_id: ' + opts.sae_id if opts.sae_id else ''})"
        )


class AuditSpecBase(_Section):
    """The whole audit; ``checks`` is the union of every registered check kind."""

    name: str = "audit"
    """The audit's name (reports, JUnit suite)."""
    seed: Seed = 0
    """Seed for everything random (bootstrap, resample ablation, sampling)."""
    model: ModelSpec
    """The model to audit."""
    metric: MetricSpec = MetricSpec()
    """The behaviour metric the checks measure."""
    causal: CausalSpec | str | None = None
    """The causal question: a section, a file or zoo:NAME (graph, equations, rendering)."""
    contrasts: dict[str, Contrast]
    """Named contrast sets: clean/counterfactual pairs from templates, files or a zoo SCM."""
    locate: list[LocateSpec] = Field(default_factory=list)
    """Locate steps (patching, attribution, SAE features) run before the checks; their results are
    shown and can be reused."""
    checks: list[CheckSpec] = Field(default_factory=list)
    """The checks; each gives pass / fail / inconclusive with its interval."""
    tradeoff: TradeoffSpec | None = None
    """Settings of the repair trade-off sweep (``interp-audit tradeoff SPEC``)."""
    sensitivity: SensitivitySpec | None = None
    """Contested admissibility and alternative SCMs (``interp-audit sensitivity SPEC``)."""
    _source_text: str | None = PrivateAttr(default=None)
    _source_path: str | None = PrivateAttr(default=None)

    @property
    def source_text(self) -> str:
        """The spec as written (YAML comments kept); a dump of the model when built in Python."""
        if self._source_text is not None:
            return self._source_text
        return yaml.safe_dump(self.model_dump(mode="json", exclude_none=True), sort_keys=False)

    @property
    def source_path(self) -> str | None:
        """The spec file's absolute path, when it was read from a file."""
        return self._source_path

    @model_validator(mode="after")
    def _references_exist(self):
        known = set(self.contrasts)
        located = {loc.default_name() for loc in self.locate}

        def need(name: str, where: str) -> None:
            if name not in known:
                raise ValueError(
                    f"{where} names contrast {name!r}, which is not defined under 'contrasts' "
                    f"(defined: {sorted(known)}){did_you_mean(name, known)}"
                )

        for name, c in self.contrasts.items():
            if isinstance(c, ScmContrast) and c.scm == "causal" and self.causal is None:
                raise ValueError(
                    f"contrasts.{name}: scm: causal needs a 'causal' section (graph, scm, "
                    "render) in the spec"
                )
        for i, loc in enumerate(self.locate):
            need(loc.contrast, f"locate[{i}]")
        for i, chk in enumerate(self.checks):
            for key, cname in chk.contrast_refs():
                need(cname, f"checks[{i}].{key}")
            for key, step in chk.locate_refs():
                if step not in located:
                    raise ValueError(
                        f"checks[{i}].{key} names {step!r}, which no locate step is called "
                        f"(named: {sorted(located)}){did_you_mean(step, located)}"
                    )
                _same_sae(chk, step, self.locate, f"checks[{i}].{key}")
        if self.tradeoff is not None:
            for step in self.tradeoff.locate or ():
                if step not in located:
                    raise ValueError(
                        f"tradeoff.locate names {step!r}, which no locate step is called "
                        f"(named: {sorted(located)}){did_you_mean(step, located)}"
                    )
            if self.tradeoff.reference is not None:
                need(self.tradeoff.reference, "tradeoff.reference")
        names = [c.name for c in self.checks if c.name]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(
                f"check name {sorted(dup)[0]!r} is used twice; check names must be unique"
            )
        return self

    def check_names(self) -> list[str]:
        return [c.name or f"{c.kind}_{i}" for i, c in enumerate(self.checks)]

    def digest(self) -> str:
        """SHA-256 of the canonical spec: identical specs give identical hashes."""
        return hashlib.sha256(
            json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        ).hexdigest()


#: isinstance() target for parsed specs (the concrete model adds the registered check union).
AuditSpec = AuditSpecBase

_MODELS: dict[tuple[str, ...], type[AuditSpecBase]] = {}


def audit_spec_model() -> type[AuditSpecBase]:
    """The spec model for the check kinds registered now (rebuilt when a kind is added)."""
    from interp_audit.audit.kinds import check_kinds

    kinds = check_kinds()
    key = tuple(kinds)
    if key not in _MODELS:
        union = Union[tuple(k.spec for k in kinds.values())]  # noqa: UP007
        check = Annotated[union, Field(discriminator="kind")]
        _MODELS[key] = create_model(
            "AuditSpec",
            __base__=AuditSpecBase,
            checks=(list[check], Field(default_factory=list)),
        )
    return _MODELS[key]


# ---- readable errors ---------------------------------------------------------------------------


CONTRAST_KINDS: dict[str, type[BaseModel]] = {
    "template": TemplateContrast,
    "file": FileContrast,
    "scm": ScmContrast,
}


def _tagged_sections() -> dict[str, type[BaseModel]]:
    """Union members by their tag (check kinds and contrast sources), for did-you-mean."""
    from interp_audit.audit.kinds import check_kinds

    return {**CONTRAST_KINDS, **{k: v.spec for k, v in check_kinds().items()}}


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """Valid keys at the location of an 'extra' error, for did-you-mean."""
    tagged = _tagged_sections()
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part)
            if field is None:  # a discriminated union tag (e.g. 'invariance') or a dict key
                current = tagged.get(part)
                continue
            current = _inner_model(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _inner_model(annotation) -> Any:
    args = getattr(annotation, "__args__", ())
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for a in args:
        inner = _inner_model(a)
        if inner is not None:
            return inner
    return None


def _readable(err: ValidationError, raw: dict) -> SpecError:
    errors = err.errors()
    # a misspelt key also leaves the real key missing: report the misspelling, which explains both
    e = next((x for x in errors if x["type"] == "extra_forbidden"), errors[0])
    loc = tuple(e["loc"])
    kinds = list(_tagged_sections())
    skip = set(kinds)
    shown = [
        p
        for p in loc
        if not (
            isinstance(p, str)
            and ("[" in p or p in skip and loc.index(p) == 2 and loc[0] in ("contrasts", "checks"))
        )
    ]
    path = ".".join(str(p) for p in shown)
    if e["type"] == "extra_forbidden":
        key = str(loc[-1])
        if loc[0] == "contrasts" and len(loc) == 4:
            options = list(CONTRAST_KINDS[loc[2]].model_fields)
        else:
            options = _fields_at(audit_spec_model(), loc)
        return SpecError(
            f"unknown key {path!r}{did_you_mean(key, options)}; valid keys there: "
            f"{', '.join(options)}"
        )
    if e["type"] == "missing":
        return SpecError(f"missing required key {path!r}")
    if (
        len(loc) == 2
        and loc[0] == "contrasts"
        and e["type"] == "union_tag_not_found"
        and not isinstance(e.get("input"), dict)
    ):
        return SpecError(f"{path}: expected a mapping with 'template', 'file' or 'scm'")
    if loc and loc[0] == "contrasts" and e["type"] == "union_tag_not_found":
        return SpecError(
            f"{path}: a contrast needs one of 'template', 'file' or 'scm' (got keys "
            f"{sorted(e.get('input') or {})})"
        )
    if e["type"] == "union_tag_invalid" or e["type"] == "union_tag_not_found":
        from interp_audit.audit.kinds import check_kinds

        got = e.get("input", {}).get("kind") if isinstance(e.get("input"), dict) else None
        valid = list(check_kinds())
        return SpecError(
            f"{path}: unknown check kind {got!r}; valid kinds: "
            f"{', '.join(valid)}{did_you_mean(str(got), valid)}"
        )
    if loc and loc[0] == "contrasts" and len(loc) >= 2 and e["type"] in ("model_type", "dict_type"):
        return SpecError(f"contrasts.{loc[1]}: expected a mapping with 'template', 'file' or 'scm'")
    msg = e["msg"].removeprefix("Value error, ")
    got = e.get("input")
    if e["type"] != "value_error" and isinstance(got, int | float | str | bool | None):
        shown = repr(got) if len(repr(got)) <= 60 else repr(got)[:57] + "..."
        msg += f" (got {shown})"
    return SpecError(f"{path}: {msg}" if path else msg)


def load_spec(spec: str | Path | dict | AuditSpecBase) -> tuple[AuditSpecBase, Path]:
    """Parse a spec from a YAML path, YAML text or a dict; returns it and its base folder.

    The parsed spec keeps the text it was read from (``.source_text``, comments included) and
    its file (``.source_path``), so a report can carry the spec exactly as written.
    """
    if isinstance(spec, AuditSpecBase):
        return spec, Path.cwd()
    base = Path.cwd()
    text, source_path = None, None
    if isinstance(spec, dict):
        raw = spec
    else:
        text = str(spec)
        path = Path(text)
        if "\n" not in text and (path.suffix in (".yaml", ".yml", ".json") or path.exists()):
            text = read_text(
                path,
                f"audit spec {text!r}",
                folder_hint="; give the YAML file in it",
                text_hint="; give a YAML file",
            )
            base = path.resolve().parent
            source_path = str(path.resolve())
        try:
            raw = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
        except RecursionError:
            raise SpecError(
                "the audit spec nests too deeply to parse; a spec is a few levels of mappings"
            ) from None
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise SpecError(
                f"the audit spec is not valid YAML{where}: {getattr(err, 'problem', err)}"
            ) from None
    if not isinstance(raw, dict):
        raise SpecError(
            "the audit spec must be a mapping of keys (model, contrasts, checks, ...); got "
            f"{type(raw).__name__}"
        )
    try:
        parsed = audit_spec_model().model_validate(raw)
    except ValidationError as err:
        raise _readable(err, raw) from None
    except RecursionError:
        raise SpecError(
            "the audit spec nests too deeply; a spec is a few levels of mappings"
        ) from None
    parsed._source_text = text
    parsed._source_path = source_path
    return parsed, base
