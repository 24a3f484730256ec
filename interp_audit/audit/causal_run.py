"""Run-time side of the ``causal:`` spec section: load the causal model once per audit and
draw (memoised) path-specific contrasts for contrast sections and graph-derived checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp_audit.audit.causal_spec import CausalSpec, ScmContrast
from interp_audit.causal import CausalModel
from interp_audit.causal.graph import format_path
from interp_audit.core.errors import ContrastError, SpecError


def load_causal(spec: CausalSpec | str | None, base: Path) -> CausalModel | None:
    if spec is None:
        return None
    if isinstance(spec, str):
        return CausalModel.from_spec(spec, base)
    return CausalModel.from_spec(spec.model_dump(mode="python"), base)


@dataclass
class CausalContext:
    """The audit's causal model(s), the subject, and every contrast drawn so far."""

    subject: Any
    model: CausalModel | None
    base: Path
    _cache: dict = field(default_factory=dict)
    _models: dict = field(default_factory=dict)
    #: reuse each path's measured effect across checks and graph variants (``interp-audit
    #: sensitivity``: the model and its hooks do not change between admissibility choices)
    reuse_measurements: bool = False

    def resolve(self, scm: str) -> CausalModel:
        if scm == "causal":
            if self.model is None:
                raise SpecError("scm: causal needs a 'causal' section in the spec")
            return self.model
        if scm not in self._models:
            self._models[scm] = CausalModel.from_spec(scm, self.base)
        return self._models[scm]

    def contrast(self, spec: ScmContrast, name: str | None = None):
        key = spec.model_dump_json()
        if key in self._cache:
            return self._cache[key]
        cm = self.resolve(spec.scm)
        try:
            if spec.factual:
                cs = cm.factual_set(
                    self.subject, n=spec.n, seed=spec.seed, label=spec.label, group_by=spec.group_by
                )
            else:
                value, reference = cm.intervention(spec.source, spec.value, spec.reference)
                cs = cm.contrast(
                    self.subject,
                    source=spec.source,
                    value=value,
                    reference=reference,
                    paths=spec.paths,
                    n=spec.n,
                    seed=spec.seed,
                    label=spec.label,
                    group_by=spec.group_by,
                    name=name,
                )
        except (SpecError, ContrastError) as err:
            where = f"contrasts.{name}" if name else "scm contrast"
            raise type(err)(f"{where}: {err}") from None
        self._cache[key] = cs
        return cs

    def path_contrast(self, source: str, path: tuple[str, ...], **kw):
        """One path's contrast (for graph-derived checks)."""
        spec = ScmContrast(scm="causal", source=source, paths=[format_path(path)], **kw)
        return self.contrast(spec, name=f"{source}: {format_path(path)}")

    def memo(self, key, build):
        """``build()`` once per audit for ``key`` (model-independent work checks share: drawn
        populations, rendered worlds), then the stored value."""
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    # ---- populations (exact or drawn; see interp_audit.causal.population) ----------------------
    def enumerable(self, labels: tuple[str, ...] = ()) -> bool:
        """Whether every noise the model's input (and ``labels``) depends on is discrete, so
        population effects are computed by exact enumeration."""
        from interp_audit.causal.population import MAX_CELLS, discrete_support, needed_variables

        cm = self.resolve("causal")
        key = ("enumerable", labels)
        if key not in self._cache:
            names = needed_variables(cm.scm, self._read(cm) + list(labels))
            supports, why = discrete_support(cm.scm, names)
            cells = 1
            for values, _ in supports.values():
                cells *= len(values)
            self._cache[key] = not why and cells <= MAX_CELLS
        return self._cache[key]

    @staticmethod
    def _read(cm: CausalModel) -> list[str]:
        return [v for v in cm.graph.parents(cm.graph.outcome)]

    def population(
        self, *, exact: bool | None, n_units: int, seed: int, labels: tuple[str, ...] = ()
    ):
        """The units (exact enumeration, or ``n_units`` draws) the model's input and ``labels``
        depend on; memoised per audit, shared by every path and check."""
        from interp_audit.causal.population import population

        cm = self.resolve("causal")
        key = ("population", exact, n_units, seed, labels)
        if key not in self._cache:
            self._cache[key] = population(
                cm.scm, self._read(cm) + list(labels), exact=exact, n_units=n_units, seed=seed
            )
        return self._cache[key]

    def path_population(
        self,
        source: str,
        paths: list[tuple[str, ...]],
        *,
        exact: bool | None,
        n_units: int,
        seed: int,
        labels: tuple[str, ...] = (),
    ):
        """Distinct prompt pairs of the population under ``source``'s intervention along
        ``paths`` (:class:`~interp_audit.causal.population.PathPopulation`), memoised."""
        from interp_audit.causal.population import path_population

        cm = self.resolve("causal")
        key = ("path population", source, tuple(paths), exact, n_units, seed, labels)
        if key not in self._cache:
            value, reference = cm.intervention(source)
            pop = self.population(exact=exact, n_units=n_units, seed=seed, labels=labels)
            self._cache[key] = path_population(
                cm, pop, source=source, value=value, paths=paths, reference=reference,
                labels=labels,
            )  # fmt: skip
        return self._cache[key]

    def population_contrast(self, pp, name: str):
        """The ContrastSet of a PathPopulation's distinct pairs (each its own cluster); each
        distinct prompt is tokenised once (a population's pairs share few prompts)."""
        key = ("population contrast", id(pp))
        if key not in self._cache:
            cm = self.resolve("causal")
            cs = pairs_contrast(self.subject, pp.clean, pp.counterfactual, cm.answers, name)
            self._cache[key] = (pp, cs.with_meta(population=pp.description, exact=pp.exact))
        return self._cache[key][1]


def pairs_contrast(subject, clean: list[str], counterfactual: list[str], answers, name: str):
    """A ContrastSet of distinct rendered pairs, tokenising each distinct prompt once (the
    checks ``ContrastSet.from_prompts`` makes, per prompt instead of per pair); unaligned
    pairs go through ``from_prompts`` for its error."""
    import torch

    from interp_audit.engine.contrasts import (
        ContrastSet,
        _refuse_unknown_words,
        answer_positions,
        pad_rows,
    )

    tokens: dict[str, list[int]] = {}
    for text in dict.fromkeys([*clean, *counterfactual]):
        _refuse_unknown_words(subject, text, f"{name}: the prompt")
        tokens[text] = subject.to_tokens(text)
    rows_c, rows_f = [tokens[t] for t in clean], [tokens[t] for t in counterfactual]
    if any(len(a) != len(b) or a == b for a, b in zip(rows_c, rows_f, strict=True)):
        return ContrastSet.from_prompts(
            subject, clean, counterfactual, answers=tuple(answers) if answers else None,
            labels=[name] * len(clean),
        )  # fmt: skip
    ans = None
    if answers:
        ids = []
        for text in answers:
            _refuse_unknown_words(subject, text, f"{name}: answer")
            got = subject.answer_token(text)
            if len(got) != 1:
                raise ContrastError(
                    f"{name}: answer {text!r} is {len(got)} tokens, not one; answers must be "
                    "single tokens"
                )
            ids.append(got[0])
        ans = torch.tensor([ids] * len(clean), dtype=torch.long)
    strs = {t: tuple(subject.token_str(ids)) for t, ids in tokens.items()}
    out = ContrastSet(
        clean=pad_rows(rows_c, subject.pad_token_id),
        counterfactual=pad_rows(rows_f, subject.pad_token_id),
        lengths=torch.tensor([len(r) for r in rows_c]),
        answers=ans,
        answer_pos=answer_positions(subject, rows_c),
        pad_id=subject.pad_token_id,
        labels=(name,) * len(clean),
        clean_text=tuple(clean),
        counterfactual_text=tuple(counterfactual),
        str_tokens=tuple(strs[t] for t in clean),
        cf_str_tokens=tuple(strs[t] for t in counterfactual),
    )
    out.validate(d_vocab=subject.d_vocab)
    return out
