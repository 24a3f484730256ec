"""The audit spec: YAML validated with pydantic, errors that name the key and the nearest valid one.

A spec names the model, the contrast sets (from templates, files or a zoo SCM), the metric, the
locate methods to run and the checks. Small sections, each its own model, nested.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from ..errors import SpecError, did_you_mean


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
        if self.group_by is not None and self.group_by not in names:
            raise ValueError(f"group_by {self.group_by!r} is not a template slot ({sorted(names)})")
        return self


class FileContrast(_Section):
    file: str
    answers: tuple[str, str] | None = None


class ScmContrast(_Section):
    scm: str
    path: str
    n: int = Field(200, ge=1)
    seed: int = 0
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
    method: Literal["patch", "atp", "atp*", "ig", "sae_patch", "sae_atp"] = "patch"
    contrast: str
    sites: str | list[str] = "heads"
    metric: Literal["logit_diff", "prob_diff", "logprob", "kl_to_clean"] | None = (
        None  # default: the spec's metric
    )
    per_position: bool = False
    name: str | None = None
    sae: str | None = None  # sae_*: zoo:NAME, a folder (sae_lens format) or a hub release
    sae_id: str | None = None  # the SAE within a hub release (e.g. blocks.8.hook_resid_pre)
    cards: int = Field(5, ge=0)  # sae_*: feature cards for this many top features

    @model_validator(mode="after")
    def _sae_needs(self):
        if self.method.startswith("sae_"):
            if not self.sae:
                raise ValueError(
                    f"method {self.method!r} locates SAE features: give 'sae' (zoo:NAME, a "
                    "folder, or a hub release with 'sae_id')"
                )
            if self.per_position:
                raise ValueError(f"method {self.method!r} has no per_position mode")
        elif self.sae or self.sae_id:
            raise ValueError(f"'sae' is for the sae_patch and sae_atp methods, not {self.method!r}")
        return self


class AblationSpec(_Section):
    components: list[str] = Field(default_factory=list)  # labels; with 'sae', SAE features (L0F12)
    kind: Literal["zero", "mean", "resample", "clamp", "embedding"] = "mean"
    sae: str | None = None  # an SAE (folder, zoo:NAME or hub release): ablate its features
    sae_id: str | None = None  # the SAE within a hub release
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


class _Check(_Section):
    name: str | None = None
    confidence: float = Field(0.95, gt=0, lt=1)
    n_boot: int = Field(1000, ge=100)


class InvarianceCheck(_Check):
    kind: Literal["invariance"]
    contrast: str
    tolerance: float = Field(ge=0)
    per_group: bool = True


class PathInvarianceCheck(_Check):
    kind: Literal["path_invariance"]
    inadmissible: dict[str, str]  # path name -> contrast
    admissible: dict[str, str] = Field(default_factory=dict)
    tolerance: float = Field(ge=0)


class ComponentMediationCheck(_Check):
    kind: Literal["component_mediation"]
    contrast: str
    sites: str | list[str] = "heads"
    max_share: float = Field(gt=0)
    together: bool = False  # sites is one located set patched jointly


class InterventionCheck(_Check):
    kind: Literal["intervention"]
    contrast: str
    ablate: AblationSpec
    tolerance: float = Field(ge=0)
    utility: UtilitySpec

    @model_validator(mode="after")
    def _utility_kind(self):
        if self.utility.metric == "perplexity":
            raise ValueError(
                "perplexity is the utility of memorization checks; an intervention check "
                "takes accuracy, loss, logit_diff or similarity_correlation"
            )
        return self


class CanarySpec(_Section):
    prefix: str
    secret: str


class MemorizationCheck(_Check):
    kind: Literal["memorization"]
    canaries: list[CanarySpec] = Field(min_length=1)
    alphabet: list[str] = Field(default_factory=lambda: [str(d) for d in range(10)])
    max_exposure: float = Field(ge=0)
    ablate: AblationSpec | None = None
    utility: UtilitySpec | None = None

    @model_validator(mode="after")
    def _utility_with_ablation(self):
        if self.ablate is not None and self.utility is None:
            raise ValueError(
                "a memorization check with 'ablate' needs 'utility' (what the ablation may cost)"
            )
        return self


Check = Annotated[
    InvarianceCheck
    | PathInvarianceCheck
    | ComponentMediationCheck
    | InterventionCheck
    | MemorizationCheck,
    Field(discriminator="kind"),
]
CHECK_KINDS = (
    "invariance",
    "path_invariance",
    "component_mediation",
    "intervention",
    "memorization",
)


class AuditSpec(_Section):
    name: str = "audit"
    seed: int = 0
    model: ModelSpec
    metric: MetricSpec = MetricSpec()
    contrasts: dict[str, Contrast]
    locate: list[LocateSpec] = Field(default_factory=list)
    checks: list[Check] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references_exist(self):
        known = set(self.contrasts)
        located = {loc.name for loc in self.locate if loc.name}

        def need(name: str, where: str) -> None:
            if name not in known:
                raise ValueError(
                    f"{where} names contrast {name!r}, which is not defined under 'contrasts' "
                    f"(defined: {sorted(known)}){did_you_mean(name, known)}"
                )

        for i, loc in enumerate(self.locate):
            need(loc.contrast, f"locate[{i}]")
        for i, chk in enumerate(self.checks):
            where = f"checks[{i}]"
            if isinstance(chk, PathInvarianceCheck):
                for c in [*chk.inadmissible.values(), *chk.admissible.values()]:
                    need(c, where)
            elif not isinstance(chk, MemorizationCheck):
                need(chk.contrast, where)
            abl = getattr(chk, "ablate", None)
            if abl is not None and abl.from_locate and abl.from_locate not in located:
                raise ValueError(
                    f"{where}.ablate.from_locate names {abl.from_locate!r}, which no locate "
                    "step is called (named: "
                    f"{sorted(located)}){did_you_mean(abl.from_locate, located)}"
                )
            if abl is not None and abl.from_locate:
                step = next(loc for loc in self.locate if loc.name == abl.from_locate)
                if step.method.startswith("sae_") and (abl.sae, abl.sae_id) != (
                    step.sae,
                    step.sae_id,
                ):
                    raise ValueError(
                        f"{where}.ablate.from_locate names the SAE step {abl.from_locate!r}: "
                        f"ablate its features with the same SAE (sae: {step.sae}"
                        f"{', sae_id: ' + step.sae_id if step.sae_id else ''})"
                    )
            if isinstance(chk, MemorizationCheck):
                if chk.ablate is not None and chk.ablate.reference:
                    need(chk.ablate.reference, where + ".ablate.reference")
                continue
            if isinstance(chk, InterventionCheck):
                if chk.utility.contrast:
                    need(chk.utility.contrast, where + ".utility")
                if chk.ablate.reference:
                    need(chk.ablate.reference, where + ".ablate.reference")
                elif chk.ablate.kind not in ("zero", "clamp", "embedding"):
                    raise ValueError(
                        f"{where}.ablate: {chk.ablate.kind} ablation needs a 'reference' contrast"
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


# ---- readable errors ---------------------------------------------------------------------------


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """Valid keys at the location of an 'extra' error, for did-you-mean."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part)
            if field is None:
                # a discriminated union tag (e.g. 'invariance') or a dict key: look through it
                for cls in (
                    InvarianceCheck,
                    PathInvarianceCheck,
                    ComponentMediationCheck,
                    InterventionCheck,
                    TemplateContrast,
                    FileContrast,
                    ScmContrast,
                ):
                    if (
                        cls.model_fields.get("kind")
                        and cls.model_fields["kind"].annotation.__args__[0] == part
                    ):
                        current = cls
                        break
                else:
                    current = None
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
    skip = set(CHECK_KINDS) | {"template", "file", "scm"}
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
            kind = {"template": TemplateContrast, "file": FileContrast, "scm": ScmContrast}[loc[2]]
            options = list(kind.model_fields)
        else:
            options = _fields_at(AuditSpec, loc)
        return SpecError(
            f"unknown key {path!r}{did_you_mean(key, options)}; valid keys there: "
            f"{', '.join(options)}"
        )
    if e["type"] == "missing":
        return SpecError(f"missing required key {path!r}")
    if loc and loc[0] == "contrasts" and e["type"] == "union_tag_not_found":
        return SpecError(
            f"{path}: a contrast needs one of 'template', 'file' or 'scm' (got keys "
            f"{sorted(e.get('input') or {})})"
        )
    if e["type"] == "union_tag_invalid" or e["type"] == "union_tag_not_found":
        got = e.get("input", {}).get("kind") if isinstance(e.get("input"), dict) else None
        return SpecError(
            f"{path}: unknown check kind {got!r}; valid kinds: "
            f"{', '.join(CHECK_KINDS)}{did_you_mean(str(got), CHECK_KINDS)}"
        )
    if loc and loc[0] == "contrasts" and len(loc) >= 2 and e["type"] in ("model_type", "dict_type"):
        return SpecError(f"contrasts.{loc[1]}: expected a mapping with 'template', 'file' or 'scm'")
    msg = e["msg"].removeprefix("Value error, ")
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


def load_spec(spec: str | Path | dict | AuditSpec) -> tuple[AuditSpec, Path]:
    """Parse a spec from a YAML path, YAML text or a dict; returns it and its base folder."""
    if isinstance(spec, AuditSpec):
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
            base = path.resolve().parent
            text = path.read_text()
        try:
            raw = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
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
        return AuditSpec.model_validate(raw), base
    except ValidationError as err:
        raise _readable(err, raw) from None
