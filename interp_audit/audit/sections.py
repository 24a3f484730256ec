"""The sections of an audit spec (pydantic models), each small and documented.

Check kinds build their own sections on :class:`CheckSpec` and the shared ones here
(:class:`AblationSpec`, :class:`UtilitySpec`); :mod:`interp_audit.audit.spec` assembles the
whole spec from them and the check-kind registry.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from interp_audit.audit.causal_spec import CausalSpec, ScmContrast  # noqa: F401  (re-exported: the scm contrast)
from interp_audit.core.errors import SpecError, did_you_mean
from interp_audit.stats.bootstrap import DEFAULT_MIN_CLUSTERS, Confidence, Draws, Resampling


class _Section(BaseModel):
    # allow_inf_nan=False: `tolerance: .inf` would make a check that cannot fail
    model_config = ConfigDict(
        extra="forbid", frozen=True, use_attribute_docstrings=True, allow_inf_nan=False
    )


#: seeds feed torch.manual_seed / torch.Generator: 64-bit
Seed = Annotated[int, Field(ge=0, le=2**63 - 1)]
#: pairs drawn from an SCM
MAX_SCM_PAIRS = 100_000


class ModelSpec(_Section):
    source: str
    """The model: ``zoo:NAME``, a folder (config.json + model.safetensors, or a Hugging Face
    GPT-2/BERT folder) relative to the spec, or a TransformerLens pretrained name."""
    device: str | None = None
    """``cpu``, ``cuda`` or ``auto``; default: CPU (``interp-audit run --device`` overrides it)."""
    dtype: str | None = None
    """Weights' dtype (``float32``, ``bfloat16``, ``float16``); default: as stored."""
    weight_processing: dict[str, bool] = Field(default_factory=dict)
    """TransformerLens weight processing flags (``fold_ln``, ``center_writing_weights``,
    ``center_unembed``, ``fold_value_biases``); all off unless set, and recorded in the report."""


class MetricSpec(_Section):
    name: Literal[
        "logit_diff",
        "prob_diff",
        "logprob",
        "kl_to_clean",
        "embedding_similarity",
        "query_similarity",
    ] = "logit_diff"
    """The behaviour metric every check measures: a logit difference of the answer tokens, their
    probability difference, log-probability, KL to the clean run, or for encoders the
    embedding's cosine similarity to anchors or to a per-pair query."""
    anchors: list[str] | dict[Literal["positive", "negative"], list[str]] | None = None
    """embedding_similarity: ``[positive, negative]`` texts, or ``{positive: [...], negative:
    [...]}`` (averaged)."""


class SwapSpec(_Section):
    slot: str
    """The template slot whose filler the pair swaps (the audited variable)."""
    pairs: list[tuple[str, str]]
    """``[clean, counterfactual]`` fillers, of any token length ("Emily" / "Lakisha")."""


class TemplateContrast(_Section):
    template: str | list[str]
    """One template or several with the same ``{slots}``; every combination of fillers is rendered
    for every swap pair."""
    slots: dict[str, list[str]] = Field(default_factory=dict)
    """Fillers for each slot other than the swap slot."""
    swap: SwapSpec
    """The slot that changes between clean and counterfactual, and its pairs."""
    answers: tuple[str, str] | None = None
    """``[correct, incorrect]`` answer tokens (causal LMs, masked LMs); omitted for embedding
    metrics."""
    group_by: str | None = None
    """A slot whose fillers split the statistics into groups (each tested, Holm-corrected)."""
    groups: dict[str, str] | None = None
    """Map the group_by slot's fillers to group names (several fillers may share a group)."""
    query: str | None = None
    """Per-pair query text (the template's fixed slots allowed), embedded for
    ``query_similarity``."""
    cluster_by: str | None = Field(
        None,
        description="The unit of replication the bootstrap resamples: a slot name (its fillers; "
        "the swap slot means the swap pair), 'template', or 'pair' (every pair independent). "
        "Default: the swap pair.",
    )

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
        if self.cluster_by is not None and self.cluster_by not in names | {"template", "pair"}:
            raise ValueError(
                f"cluster_by {self.cluster_by!r} is not a template slot, 'template' or 'pair' "
                f"(slots: {sorted(names)})"
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
    """A JSONL or CSV file (relative to the spec) with ``clean`` and ``counterfactual`` fields, and
    optionally ``correct``/``incorrect``, ``group``, ``label`` and ``cluster``."""
    answers: tuple[str, str] | None = None
    """``[correct, incorrect]`` answer tokens for every row (else the file's own columns)."""
    cluster_column: str | None = Field(
        None,
        description="Column naming each row's unit of replication (the bootstrap resamples "
        "these). Default: a 'cluster' column if the file has one, else every row independent.",
    )


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

    ``method`` is any registered locate method (``interp_audit.methods.locate.registry``); keys
    beyond
    the common ones are that method's own options (e.g. ``steps`` for ``ig``, ``sae`` for SAE
    methods), validated against its options model.
    """

    model_config = ConfigDict(extra="allow", frozen=True, use_attribute_docstrings=True)

    method: str = "patch"
    """A registered locate method (``patch`` exact, ``atp``, ``atp*``, ``ig``, SAE methods, ...)."""
    contrast: str
    """The contrast set to locate on."""
    sites: str | list[str] = "heads"
    """Where to patch or attribute: ``heads``, ``heads_q/k/v``, ``resid_pre``, ``attn_out``,
    ``mlp_out``, ... or a list of component labels."""
    metric: Literal["logit_diff", "prob_diff", "logprob", "kl_to_clean"] | None = (
        None  # default: the spec's metric
    )
    """Override the spec's metric for this step (default: the spec's metric)."""
    per_position: bool = False
    """One site per token position (the set's positions must align)."""
    name: str | None = None
    """The name checks use to reuse this result (``ablate.from_locate``); default
    ``{method}_{sites}_{contrast}``."""
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
        from interp_audit.methods.locate.methods import locate_methods

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
    components: list[str] = Field(default_factory=list)
    """Component labels (``L0H2``, ``L1.mlp``, ``L0H0.v@2``, hook names); with ``sae``, SAE
    features (``L0F12``); with ``kind: embedding``, tokens."""
    kind: Literal["zero", "mean", "resample", "erase", "clamp", "embedding", "rank_one"] = "mean"
    """``zero``, ``mean`` or ``resample`` ablation; ``erase`` a concept (LEACE) at one
    residual site (``components: [L1.resid_pre]``, with ``@pos`` to fit it where an
    inadmissible path starts), learnt from ``reference``; ``clamp`` an SAE feature to
    ``value``; ``embedding`` replaces tokens' embeddings (input redaction); ``rank_one`` edits
    an MLP's W_out so the canaries' keys write what a ``like`` token's would (memorization
    checks)."""
    sae: str | None = None
    """An SAE (folder relative to the spec, or ``zoo:NAME``): ablate its features, the
    reconstruction error kept."""
    sae_id: str | None = None
    """The SAE within a hub release (with ``sae: RELEASE``)."""
    value: float | None = None
    """The clamp value (``kind: clamp``)."""
    like: list[str] | None = None
    """``kind: embedding``: the components (tokens) are embedded as the mean of these tokens."""
    reference: str | None = None
    """The contrast set whose activations define the mean (``mean``), the donors
    (``resample``) or the concept (``erase``)."""
    per_position: bool | None = None
    """Mean ablation: ``false`` the mean over every real reference token (the mean a repair
    folded into weights carries: ``interp-audit repair`` needs it), ``true`` the mean at each
    position; unset: per position when the inputs have the reference's length."""
    concept: Literal["contrast", "groups"] = "contrast"
    """``erase``: the concept is clean vs counterfactual prompts of ``reference``, or its
    groups."""
    erase_at: Literal["all", "positions"] = "all"
    """``erase`` with ``@pos`` sites: apply the map at every position (foldable into weights)
    or only at those positions (hooks only)."""
    from_locate: str | None = None
    """Also ablate the ``top_k`` components this locate step found (recorded by name in the
    report)."""
    top_k: int | None = Field(None, ge=1)
    """How many located components to ablate (with ``from_locate``)."""
    by: Literal["abs", "signed"] = "signed"
    """Rank located components by signed effect or by its absolute value."""

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
        if self.kind == "rank_one" and not self.like:
            raise ValueError(
                "a rank_one edit writes, at the canaries' keys, what the same prompts write "
                "with the name replaced by the 'like' tokens: give 'like'"
            )
        if self.kind in ("mean", "resample", "erase") and not self.reference:
            raise ValueError(f"{self.kind} ablation needs a 'reference' contrast")
        if self.kind == "erase" and self.sae is not None:
            raise ValueError("erase acts on the residual stream, not on SAE features")
        if self.per_position is not None and self.kind != "mean":
            raise ValueError("per_position is a setting of mean ablation")
        if self.sae is not None and self.kind == "resample":
            raise ValueError("SAE features can be zero-, mean-ablated or clamped, not resampled")
        return self


class UtilitySpec(_Section):
    contrast: str | None = None
    """A contrast set with answers whose clean prompts measure utility (accuracy, loss,
    logit_diff)."""
    metric: Literal["accuracy", "loss", "logit_diff", "similarity_correlation", "perplexity"] = (
        "accuracy"
    )
    """What the intervention may cost: accuracy, loss, logit_diff, Spearman correlation with human
    similarity judgements, or held-out perplexity (memorization checks)."""
    file: str | None = (
        None  # similarity_correlation: CSV sentence1,sentence2,score; perplexity: text lines
    )
    """similarity_correlation: a CSV of sentence1, sentence2, score; perplexity: held-out text, one
    line per sentence."""
    budget: float = Field(ge=0)
    """The largest allowed utility cost (its CI must lie below it); perplexity: the largest
    relative increase (0.05 = 5%)."""
    per_group: bool = False
    """Report the cost in every group of the utility contrast; the worst group's must fit the
    budget."""

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


class TradeoffSpec(_Section):
    """The settings of ``interp-audit tradeoff SPEC`` (``ia.tradeoff``): which repairs to sweep
    and what to re-measure. Flags on the command line (arguments in Python) override them."""

    objective: str | list[str] | None = None
    """The audited source(s) whose inadmissible paths the repair removes (default: those the
    exact-patching locate steps target)."""
    ks: list[Annotated[int, Field(ge=1, strict=True)]] = Field(
        default_factory=lambda: [1, 2, 4, 8, 16, 32], min_length=1
    )
    """How many top-ranked components (and SAE features) each repair ablates."""
    kinds: list[Literal["zero", "mean", "resample", "erase"]] = Field(
        default_factory=lambda: ["zero", "mean", "resample"]
    )
    """Component ablation kinds, and ``erase``: LEACE concept erasure at ``erase_sites``."""
    erase_sites: list[str | list[str]] | None = None
    """Where ``erase`` rows erase (a residual site, or a list fitted together such as
    ``[L0.resid_pre@1, L0.resid_pre@2]``); default: block inputs of up to 8 layers, the final
    stream, and the embeddings fitted where the objective's inadmissible paths start."""
    erase_concept: Literal["contrast", "groups"] = "contrast"
    """The concept ``erase`` rows remove: the reference's clean vs counterfactual prompts, or
    its groups."""
    locate: list[str] | None = None
    """Locate steps whose effects rank the components (default: those on the objective's
    inadmissible-path contrasts)."""
    by: Literal["abs", "signed"] = "abs"
    """Rank by summed |effect| or summed signed effect (the components that raise the metric)."""
    sites: str = "heads_v"
    """Sites patched per position to rank components when no locate step targets the
    objective."""
    sae: str | None = None
    """An SAE whose top features to ablate (zoo:NAME, a folder, or a release with sae_id)."""
    sae_id: str | None = None
    """The SAE within a hub release."""
    sae_kinds: list[Literal["zero", "mean"]] = Field(default_factory=lambda: ["zero", "mean"])
    """Feature ablation kinds (the SAE's error term is kept)."""
    baselines: dict[str, list[str] | dict[str, str | None]] = Field(default_factory=dict)
    """Retrained models to compare (zoo:NAME or a folder, relative to the spec) -> the graph
    variables their input hides (a list, shown as the word with '?', or VAR: WORD)."""
    checks: bool = True
    """Re-run the spec's checks on every repaired model."""
    reference: str | None = None
    """The contrast mean and resample ablation draw from (default: the first non-factual)."""
    utility: str | None = None
    """A labelled contrast (accuracy) or a held-out text file (perplexity); default: the first
    factual contrast, else the held-out file a memorization check names."""
    n: int = Field(200, ge=1, le=MAX_SCM_PAIRS)
    """Units per path whose input changes."""
    n_boot: Draws = 500
    """Bootstrap draws per interval (100 to 100000)."""
    confidence: Confidence = 0.95
    """Confidence level of every interval."""

    def overridden(self, **given: Any) -> TradeoffSpec:
        """These settings with ``given`` ones (None: not given) in their place, validated by this
        model: how ``ia.tradeoff``'s arguments and the CLI's flags override the spec's section.
        A new ``sae`` comes with its own ``sae_id`` (None unless given)."""
        given = {k: v for k, v in given.items() if v is not None}
        if "sae" in given:
            given.setdefault("sae_id", None)
        try:
            return type(self).model_validate({**self.model_dump(), **given})
        except ValidationError as err:
            e = err.errors()[0]
            if e["loc"][:1] == ("ks",):
                ks = given.get("ks", self.ks)
                shown = list(ks) if isinstance(ks, list | tuple) else ks
                raise SpecError(
                    f"tradeoff ks must be whole numbers >= 1 (one or more); got {shown}"
                ) from None
            path = ".".join(str(p) for p in ("tradeoff", *e["loc"]))
            msg = e["msg"].removeprefix("Value error, ")
            got = "" if e["type"] == "value_error" else f" (got {e.get('input')!r})"
            raise SpecError(f"{path}: {msg}{got}") from None


class SensitivitySpec(_Section):
    """The settings of ``interp-audit sensitivity SPEC`` (``interp_audit.audit.sensitivity``):
    which admissibility choices and structural equations reviewers contest. Flags override."""

    contest: list[str] = Field(default_factory=list)
    """Contested paths (``G -> C -> Y``): every combination of their admissibility is run."""
    scms: list[str] = Field(default_factory=list)
    """Alternative SCM files for the same graph (relative to the spec), each run too."""


class CheckSpec(_Section):
    """Base of every check kind's spec section (``kind:`` names the registered kind)."""

    kind: str
    """The check kind (a registered kind: invariance, path_invariance, component_mediation,
    intervention, memorization)."""
    name: str | None = None
    """The check's name in reports and JUnit (default ``{kind}_{index}``)."""
    confidence: Confidence = 0.95
    """Confidence level of the intervals (and 1 - the family-wise error of 'violated' claims)."""
    n_boot: Draws = 1000
    """Cluster-bootstrap draws (100 to 100000)."""
    min_clusters: int = Field(DEFAULT_MIN_CLUSTERS, ge=1)
    """Fewest clusters (independent units) for a decidable verdict; with fewer the check is
    inconclusive. Lower it only for exact, noise-free models."""

    def resampling(self, seed: int) -> Resampling:
        """This check's bootstrap settings, drawn with the spec's ``seed``."""
        return Resampling(
            n_boot=self.n_boot,
            confidence=self.confidence,
            seed=seed,
            min_clusters=self.min_clusters,
        )

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
