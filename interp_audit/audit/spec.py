"""The audit spec: YAML validated with pydantic, errors that name the key and the nearest valid one.

A spec names the model, the contrast sets (from templates, files or a zoo SCM), the metric, the
locate methods to run and the checks. Small sections, each its own model, nested.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from ..errors import SpecError, did_you_mean


class _Section(BaseModel):
    # allow_inf_nan=False: `tolerance: .inf` would make a check that cannot fail
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


#: seeds feed torch.manual_seed / torch.Generator: 64-bit
Seed = Annotated[int, Field(ge=0, le=2**63 - 1)]
#: bootstrap resamples: enough for a 99% CI, small enough that [n_boot, pairs] fits in memory
MAX_BOOT = 100_000
#: pairs drawn from an SCM
MAX_SCM_PAIRS = 100_000


class ModelSpec(_Section):
    source: str
    device: str | None = None
    dtype: str | None = None
    weight_processing: dict[str, bool] = Field(default_factory=dict)


class MetricSpec(_Section):
    name: Literal[
        "logit_diff",
        "prob_diff",
        "logprob",
        "kl_to_clean",
        "embedding_similarity",
        "query_similarity",
    ] = "logit_diff"
    # embedding_similarity: [positive, negative] texts, or {positive: [...], negative: [...]}
    # (averaged)
    anchors: list[str] | dict[Literal["positive", "negative"], list[str]] | None = None


class SwapSpec(_Section):
    slot: str
    pairs: list[tuple[str, str]]


class TemplateContrast(_Section):
    template: str | list[str]
    slots: dict[str, list[str]] = Field(default_factory=dict)
    swap: SwapSpec
    answers: tuple[str, str] | None = None
    group_by: str | None = None
    groups: dict[str, str] | None = None  # map the group_by slot's fillers to group names
    query: str | None = None  # per-pair query text (slots allowed), embedded for query_similarity

    @property
    def templates(self) -> list[str]:
        return [self.template] if isinstance(self.template, str) else list(self.template)

    @model_validator(mode="after")
    def _slots_match(self):
        import string

        sets = [{f for _, f, _, _ in string.Formatter().parse(t) if f} for t in self.templates]
        if any(s != sets[0] for s in sets):
            raise ValueError(
                f"all templates must use the same slots; got {[sorted(s) for s in sets]}"
            )
        names = sets[0]
        if self.swap.slot not in names:
            raise ValueError(
                f"swap slot {self.swap.slot!r} is not in the template {self.templates[0]!r} "
                f"(its slots: {sorted(names)})"
            )
        missing = names - set(self.slots) - {self.swap.slot}
        if missing:
            raise ValueError(f"template slot {sorted(missing)[0]!r} has no fillers under 'slots'")
        unused = set(self.slots) - names
        if unused:
            raise ValueError(
                f"slot {sorted(unused)[0]!r} is not in the template {self.templates[0]!r}"
            )
        if self.query is not None:
            qnames = {f for _, f, _, _ in string.Formatter().parse(self.query) if f}
            if qnames - (names - {self.swap.slot}):
                raise ValueError(
                    f"query {self.query!r} may only use the template's fixed slots "
                    f"{sorted(names - {self.swap.slot})}"
                )
        for slot, fillers in self.slots.items():
            dup = sorted({f for f in fillers if fillers.count(f) > 1})
            if dup:
                raise ValueError(
                    f"slots.{slot} lists {dup[0]!r} twice: duplicated pairs would count twice "
                    "and narrow the confidence interval"
                )
            if not fillers:
                raise ValueError(f"slots.{slot} has no fillers")
        pairs = [tuple(p) for p in self.swap.pairs]
        if not pairs:
            raise ValueError("swap.pairs is empty: give at least one [clean, counterfactual] pair")
        for i, (a, b) in enumerate(pairs):
            if a == b:
                raise ValueError(f"swap.pairs[{i}] swaps {a!r} with itself; a pair must differ")
            if pairs.index((a, b)) != i:
                raise ValueError(
                    f"swap.pairs[{i}] repeats {[a, b]}: duplicated pairs would count twice and "
                    "narrow the confidence interval"
                )
        if self.group_by is not None and self.group_by not in names:
            raise ValueError(f"group_by {self.group_by!r} is not a template slot ({sorted(names)})")
        return self


class FileContrast(_Section):
    file: str
    answers: tuple[str, str] | None = None


class ScmContrast(_Section):
    scm: str
    path: str
    n: int = Field(200, ge=1, le=MAX_SCM_PAIRS)
    seed: Seed = 0
    attribute: Literal["A", "E"] = "A"
    split: Literal["train", "test"] = "test"
    answers: Literal["fixed", "observed", "fair"] = "fixed"


def _contrast_kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return {TemplateContrast: "template", FileContrast: "file", ScmContrast: "scm"}.get(
            type(value)
        )
    if isinstance(value, dict):
        for key in ("template", "file", "scm"):
            if key in value:
                return key
    return None


Contrast = Annotated[
    Annotated[TemplateContrast, Tag("template")]
    | Annotated[FileContrast, Tag("file")]
    | Annotated[ScmContrast, Tag("scm")],
    Discriminator(_contrast_kind),
]


class LocateSpec(_Section):
    """One locate step: which method, on which contrast, over which sites.

    ``method`` is any registered locate method (``interp_audit.locate.registry``); keys beyond
    the common ones are that method's own options (e.g. ``steps`` for ``ig``, ``sae`` for SAE
    methods), validated against its options model.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    method: str = "patch"
    contrast: str
    sites: str | list[str] = "heads"
    metric: Literal["logit_diff", "prob_diff", "logprob", "kl_to_clean"] | None = (
        None  # default: the spec's metric
    )
    per_position: bool = False
    # names a folder under effects/: one safe path component (never '..' or a '/')
    name: str | None = None
    _options: Any = PrivateAttr(default=None)

    @field_validator("sites")
    @classmethod
    def _some_sites(cls, v: str | list[str]) -> str | list[str]:
        if (isinstance(v, str) and not v.strip()) or (isinstance(v, list) and not v):
            raise ValueError(
                f"sites={v!r}: give a sweep (heads, resid_pre, ...) or a non-empty list of "
                "component labels"
            )
        return v

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str | None) -> str | None:
        import re

        if v is not None and (
            v.strip(".") == "" or not re.fullmatch(r"[A-Za-z0-9_.=*-]{1,100}", v)
        ):
            raise ValueError(
                f"locate step name {v!r} must be 1-100 letters, digits or _ . = * - (not '.' "
                "or '..'): it names a folder under effects/"
            )
        return v

    @model_validator(mode="after")
    def _method_and_options(self):
        from ..locate.registry import locate_methods

        methods = locate_methods()
        if self.method not in methods:
            raise ValueError(
                f"unknown locate method {self.method!r}; registered: {', '.join(methods)}"
                f"{did_you_mean(self.method, methods)}"
            )
        extra = dict(self.model_extra or {})
        options_model = methods[self.method].options
        if extra and options_model is None:
            key = sorted(extra)[0]
            valid = list(type(self).model_fields)
            raise ValueError(
                f"unknown key {key!r} for locate method {self.method!r}"
                f"{did_you_mean(key, valid)}; valid keys: {', '.join(valid)}"
            )
        if options_model is not None:
            try:
                self._options = options_model.model_validate(extra)
            except ValidationError as err:
                e = err.errors()[0]
                key = ".".join(str(x) for x in e["loc"])
                valid = [*type(self).model_fields, *options_model.model_fields]
                if e["type"] == "extra_forbidden":
                    raise ValueError(
                        f"unknown key {key!r} for locate method {self.method!r}"
                        f"{did_you_mean(key, valid)}; valid keys: {', '.join(valid)}"
                    ) from None
                raise ValueError(f"{key}: {e['msg']}") from None
        return self

    @property
    def options(self) -> Any:
        """The method's own options (a validated pydantic model), or None."""
        return self._options

    def default_name(self) -> str:
        sites = self.sites if isinstance(self.sites, str) else "components"
        return self.name or f"{self.method}_{sites}_{self.contrast}"


class AblationSpec(_Section):
    components: list[str] = Field(default_factory=list)  # labels; with 'sae', SAE features (L0F12)
    kind: Literal["zero", "mean", "resample", "clamp", "embedding"] = "mean"
    sae: str | None = None  # an SAE (folder or zoo:NAME): ablate its features, the error kept
    value: float | None = None  # clamp value
    like: list[str] | None = None  # embedding: components are tokens, embedded as the mean of these
    reference: str | None = None
    from_locate: str | None = None  # ablate the top_k components this locate step found
    top_k: int | None = Field(None, ge=1)
    by: Literal["abs", "signed"] = "signed"

    @model_validator(mode="after")
    def _what(self):
        if not self.components and not self.from_locate:
            raise ValueError("ablate needs 'components' or 'from_locate' (with top_k)")
        if self.from_locate and not self.top_k:
            raise ValueError(
                "from_locate needs top_k: how many of the located components to ablate"
            )
        if self.kind == "clamp" and (self.sae is None or self.value is None):
            raise ValueError("clamp ablation is for SAE features: give 'sae' and 'value'")
        if self.kind == "embedding" and not self.like:
            raise ValueError(
                "embedding ablation replaces the tokens in 'components' by the mean of 'like' "
                "tokens: give 'like'"
            )
        if self.kind in ("mean", "resample") and not self.reference:
            raise ValueError(f"{self.kind} ablation needs a 'reference' contrast")
        if self.sae is not None and self.kind == "resample":
            raise ValueError("SAE features can be zero-, mean-ablated or clamped, not resampled")
        return self


class UtilitySpec(_Section):
    contrast: str | None = None
    metric: Literal["accuracy", "loss", "logit_diff", "similarity_correlation", "perplexity"] = (
        "accuracy"
    )
    file: str | None = (
        None  # similarity_correlation: CSV sentence1,sentence2,score; perplexity: text lines
    )
    budget: float = Field(ge=0)  # perplexity: largest allowed relative increase (0.05 = 5%)

    @model_validator(mode="after")
    def _source(self):
        if self.metric in ("similarity_correlation", "perplexity"):
            if not self.file:
                what = (
                    "a CSV of sentence1, sentence2, score"
                    if self.metric == "similarity_correlation"
                    else "held-out text, one line per sentence"
                )
                raise ValueError(f"{self.metric} needs 'file' ({what})")
        elif not self.contrast:
            raise ValueError(
                f"utility metric {self.metric!r} needs 'contrast' (a contrast set with answers)"
            )
        return self


class CheckSpec(_Section):
    """Base of every check kind's spec section (``kind:`` names the registered kind)."""

    kind: str
    name: str | None = None
    confidence: float = Field(0.95, gt=0, lt=1)
    n_boot: int = Field(1000, ge=100, le=MAX_BOOT)

    def contrast_refs(self) -> list[tuple[str, str]]:
        """(key, contrast name) for every contrast this check reads (checked against the spec)."""
        refs = []
        if isinstance(getattr(self, "contrast", None), str):
            refs.append(("contrast", self.contrast))
        abl = getattr(self, "ablate", None)
        if abl is not None and abl.reference:
            refs.append(("ablate.reference", abl.reference))
        util = getattr(self, "utility", None)
        if util is not None and util.contrast:
            refs.append(("utility.contrast", util.contrast))
        return refs

    def locate_refs(self) -> list[tuple[str, str]]:
        """(key, locate step name) for every located result this check reuses."""
        abl = getattr(self, "ablate", None)
        if abl is not None and abl.from_locate:
            return [("ablate.from_locate", abl.from_locate)]
        return []


class AuditSpecBase(_Section):
    """The whole audit; ``checks`` is the union of every registered check kind."""

    name: str = "audit"
    seed: Seed = 0
    model: ModelSpec
    metric: MetricSpec = MetricSpec()
    contrasts: dict[str, Contrast]
    locate: list[LocateSpec] = Field(default_factory=list)
    checks: list[CheckSpec] = Field(default_factory=list)

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
    from .registry import check_kinds

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
    from .registry import check_kinds

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
        from .registry import check_kinds

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


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. YES, NO, on, off stay strings (answer tokens!)."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    __import__("re").compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def load_spec(spec: str | Path | dict | AuditSpecBase) -> tuple[AuditSpecBase, Path]:
    """Parse a spec from a YAML path, YAML text or a dict; returns it and its base folder."""
    if isinstance(spec, AuditSpecBase):
        return spec, Path.cwd()
    base = Path.cwd()
    if isinstance(spec, dict):
        raw = spec
    else:
        text = str(spec)
        path = Path(text)
        if "\n" not in text and (path.suffix in (".yaml", ".yml", ".json") or path.exists()):
            if not path.exists():
                raise SpecError(f"audit spec {text!r} does not exist")
            if path.is_dir():
                raise SpecError(f"audit spec {text!r} is a folder; give the YAML file in it")
            base = path.resolve().parent
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError as err:
                raise SpecError(
                    f"audit spec {text!r} is not UTF-8 text (byte {err.start}); give a YAML file"
                ) from None
            except OSError as err:
                raise SpecError(f"cannot read audit spec {text!r}: {err.strerror}") from None
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
        return audit_spec_model().model_validate(raw), base
    except ValidationError as err:
        raise _readable(err, raw) from None
    except RecursionError:
        raise SpecError(
            "the audit spec nests too deeply; a spec is a few levels of mappings"
        ) from None
