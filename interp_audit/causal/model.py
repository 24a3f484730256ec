"""A causal question, end to end: graph + structural equations + how a unit becomes model input.

``CausalModel.contrast(subject, source=..., value=..., paths=...)`` draws units, renders the
factual world (clean) and the nested path-specific counterfactual (counterfactual), and keeps
the units whose rendered input changes: on the others the model's input, hence its output, is
identical, so their effect is exactly 0. The contrast records the fraction of units that change,
so effects can be reported both ways: conditional on the input changing (what the pairs
measure) and over all units (that times the fraction), labelled as such.
"""

from __future__ import annotations

import string
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from interp_audit.causal.graph import CausalGraph, format_path, parse_path
from interp_audit.causal.scm import SCM, Units
from interp_audit.core.errors import EmptyPathError, SpecError, did_you_mean
from interp_audit.zoo.registry import ZOO_DIR

__all__ = ["CausalModel", "PathDraw", "Renderer"]

PATH_SETS = ("all", "all-admissible", "all-inadmissible")


@dataclass(frozen=True)
class Renderer:
    """A template with one slot per rendered variable and the wording of each value.

    ``words[var]`` is a format string (``"age:{}"``, the value's name goes in), a list (by value
    index) or a mapping value-name -> word. Unlisted variables render as their value's name.
    For word-level tokenizers the words are the token choices.
    """

    template: str
    words: dict[str, Any] = field(default_factory=dict)

    @property
    def slots(self) -> list[str]:
        return [f for _, f, _, _ in string.Formatter().parse(self.template) if f]

    def word(self, scm: SCM, var: str, value) -> str:
        spec = self.words.get(var, "{}")
        name = scm.value_name(var, value)
        if isinstance(spec, str):
            return spec.format(name)
        if isinstance(spec, list | tuple):
            i = int(value)
            if not 0 <= i < len(spec):
                raise SpecError(f"render.words.{var} has {len(spec)} words; value {i} has none")
            return str(spec[i])
        if name not in spec:
            raise SpecError(
                f"render.words.{var} has no word for value {name!r} (words for: "
                f"{sorted(spec)}){did_you_mean(name, list(spec))}"
            )
        return str(spec[name])

    def render(self, scm: SCM, values: dict[str, torch.Tensor]) -> list[str]:
        slots = self.slots
        n = len(next(iter(values.values())))
        cols = {}
        for s in slots:  # word each distinct value once
            vals = values[s].tolist()
            table = {v: self.word(scm, s, v) for v in set(vals)}
            cols[s] = [table[v] for v in vals]
        return [self.template.format(**{s: cols[s][i] for s in slots}) for i in range(n)]

    def check(self, graph: CausalGraph, scm: SCM) -> None:
        """The template renders exactly the outcome's parents (what the model reads)."""
        slots, want = set(self.slots), set(graph.parents(graph.outcome))
        if slots - want:
            extra = sorted(slots - want)[0]
            raise SpecError(
                f"render.template slot {{{extra}}} is not a parent of the outcome "
                f"{graph.outcome!r} (its parents: {sorted(want)}); the template shows the model "
                "what it reads"
            )
        if want - slots:
            miss = sorted(want - slots)[0]
            raise SpecError(
                f"render.template has no slot for {miss!r}, a parent of the outcome "
                f"{graph.outcome!r}: the model must read it (slots: {sorted(slots)})"
            )
        for var in self.words:
            if var not in slots:
                raise SpecError(
                    f"render.words names {var!r}, which is not a template slot "
                    f"({sorted(slots)}){did_you_mean(var, slots)}"
                )


@dataclass(frozen=True)
class PathDraw:
    """Units whose rendered input changes under a path-specific counterfactual."""

    clean: list[str]
    counterfactual: list[str]
    units: Units
    factual: dict[str, torch.Tensor]
    paths: tuple[tuple[str, ...], ...]
    n_in_scope: int  # units drawn (in scope) while collecting
    n_changed: int  # of those, how many changed
    ids: tuple[str, ...] = ()  # each kept unit's "round:index" in the seeded draws

    @property
    def fraction_changed(self) -> float:
        return self.n_changed / max(self.n_in_scope, 1)


@dataclass
class CausalModel:
    """A graph, its structural equations, a renderer and named path sets."""

    graph: CausalGraph
    scm: SCM
    render: Renderer
    answers: tuple[str, str] | None = None
    named_paths: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)
    interventions: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.scm.check_graph(self.graph)
        self.render.check(self.graph, self.scm)
        self.named_paths = {
            k: [self._one_path(p) for p in ([v] if isinstance(v, str) else v)]
            for k, v in self.named_paths.items()
        }

    def _one_path(self, p) -> tuple[str, ...]:
        return self.graph._existing_path(p)

    def resolve_paths(self, source: str, paths: str | Sequence[str]) -> list[tuple[str, ...]]:
        """``all`` / ``all-admissible`` / ``all-inadmissible``, a named set, or a list of paths
        (``"A -> Z -> Y"``) and names."""
        g = self.graph
        if isinstance(paths, str):
            if paths == "all":
                return g.paths(source)
            if paths == "all-admissible":
                return g.admissible_paths_from(source)
            if paths == "all-inadmissible":
                return g.inadmissible_paths(source)
            paths = [paths]
        out: list[tuple[str, ...]] = []
        for p in paths:
            if isinstance(p, str) and p in self.named_paths:
                got = self.named_paths[p]
            elif isinstance(p, str) and "->" not in p:
                valid = [*PATH_SETS, *self.named_paths]
                raise SpecError(
                    f"paths: {p!r} is neither a path ('A -> X -> Y') nor a named path set "
                    f"(named: {', '.join(valid)}){did_you_mean(p, valid)}"
                )
            else:
                got = [parse_path(p)]
            out += g.check_paths(source, got)
        if not out:
            raise SpecError(f"no paths selected from {source!r}")
        return sorted(set(out))

    def draw(
        self,
        *,
        source: str,
        value: Any,
        paths: str | Sequence[str] = "all",
        n: int = 200,
        seed: int = 0,
        reference: Any = None,
        max_rounds: int = 20,
    ) -> PathDraw:
        """``n`` units (in scope: factual ``source`` == ``reference`` when given) whose rendered
        input changes. Units are drawn in rounds of ``4 n`` with seeds ``seed * 1000 + k``."""
        chosen = tuple(self.resolve_paths(source, paths))
        ref = None if reference is None else self.scm.encode(source, reference)
        self.scm.encode(source, value)
        keep_u, keep_f, clean, cf, ids = [], [], [], [], []
        n_scope = n_changed = 0
        for k in range(max_rounds):
            u = self.scm.sample(4 * n, seed * 1000 + k)
            fact = self.scm.values(u)
            world = self.scm.path_specific(u, self.graph, source, value, chosen, factual=fact)
            f_txt = self.render.render(self.scm, fact)
            c_txt = self.render.render(self.scm, {**fact, **world})
            scope = torch.ones(u.n, dtype=torch.bool) if ref is None else fact[source] == ref
            idx = [i for i in range(u.n) if bool(scope[i]) and f_txt[i] != c_txt[i]]
            n_scope += int(scope.sum())
            n_changed += len(idx)
            keep_u.append(u.select(idx))
            keep_f.append({kk: v[idx] for kk, v in fact.items()})
            clean += [f_txt[i] for i in idx]
            cf += [c_txt[i] for i in idx]
            ids += [f"{k}:{i}" for i in idx]
            if len(clean) >= n:
                break
        if not clean:
            raise EmptyPathError(
                f"no unit's rendered input changes along {[format_path(p) for p in chosen]} "
                f"when {source} is set to {value!r}"
                + (f" (among units with {source} = {reference!r})" if ref is not None else "")
                + "; the path carries nothing the model reads"
            )
        units = Units.cat(keep_u)
        take = torch.arange(min(n, units.n))
        factual = {k: torch.cat([f[k] for f in keep_f])[take] for k in keep_f[0]}
        return PathDraw(
            clean[:n], cf[:n], units.select(take), factual, chosen, n_scope, n_changed,
            tuple(ids[:n]),
        )  # fmt: skip

    def contrast(
        self,
        subject,
        *,
        source: str,
        value: Any,
        paths: str | Sequence[str] = "all",
        n: int = 200,
        seed: int = 0,
        reference: Any = None,
        label: str | None = None,
        group_by: str | None = None,
        name: str | None = None,
    ):
        """A ContrastSet: clean = factual rendering, counterfactual = path-specific rendering.

        ``label``: an SCM variable (0/1) whose factual value picks the correct answer per unit
        (utility sets); otherwise every pair scores ``answers`` as given. ``group_by``: a
        variable whose factual wording names each pair's group.
        """
        from interp_audit.engine.contrasts import ContrastSet, DuplicatePairWarning

        d = self.draw(source=source, value=value, paths=paths, n=n, seed=seed, reference=reference)
        if self.answers is None:
            ans = None
        elif label is None:
            ans = tuple(self.answers)
        else:
            self._need_var(label, "label")
            y = self.scm.values(d.units)[label].tolist()
            yes, no = self.answers
            ans = [(yes, no) if yi else (no, yes) for yi in y]
        groups = None
        if group_by is not None:
            self._need_var(group_by, "group_by")
            groups = [self.render.word(self.scm, group_by, v) for v in d.factual[group_by].tolist()]
        tag = name or f"{source}: " + " + ".join(format_path(p) for p in d.paths)
        with warnings.catch_warnings():  # distinct units may render alike: each is its own cluster
            warnings.simplefilter("ignore", DuplicatePairWarning)
            cs = ContrastSet.from_prompts(
                subject,
                d.clean,
                d.counterfactual,
                answers=ans,
                groups=groups,
                labels=[tag] * len(d.clean),
                clusters=[f"unit {i}" for i in range(len(d.clean))],  # independent draws
            )
        return cs.with_meta(
            source=source,
            value=value,
            reference=reference,
            paths=[format_path(p) for p in d.paths],
            n_in_scope=d.n_in_scope,
            n_changed=d.n_changed,
            fraction_changed=d.fraction_changed,
            units=d.ids,
        )

    # ---- loading -------------------------------------------------------------------------
    @classmethod
    def from_spec(cls, spec: dict[str, Any] | str | Path, base: Path | None = None) -> CausalModel:
        """From a ``causal:`` mapping (graph, scm, render, answers, paths), a YAML file holding
        one, or ``zoo:NAME`` (``interp_audit/zoo/causal/NAME.yaml``)."""

        base = base or Path.cwd()
        if isinstance(spec, str | Path):
            text = str(spec)
            if text.startswith("zoo:"):
                path = ZOO_DIR / "causal" / f"{text[4:]}.yaml"
                if not path.exists():
                    avail = sorted(p.stem for p in path.parent.glob("*.yaml"))
                    raise SpecError(
                        f"unknown zoo causal model {text!r} (available: {', '.join(avail)})"
                        f"{did_you_mean(text[4:], avail)}"
                    )
            else:
                path = Path(text) if Path(text).is_absolute() else base / text
                if not path.exists():
                    raise SpecError(f"causal model file {str(path)!r} does not exist")
            base = path.parent
            from interp_audit.core.yamlio import (
                load_yaml,  # YAML 1.2 booleans: YES / NO stay strings
            )

            spec = load_yaml(path.read_text())
        if not isinstance(spec, dict):
            raise SpecError("causal: expected a mapping with graph, scm and render")
        known = {"graph", "scm", "render", "answers", "paths", "interventions"}
        unknown = set(spec) - known
        if unknown:
            k = sorted(unknown)[0]
            raise SpecError(
                f"unknown key 'causal.{k}'{did_you_mean(k, known)}; valid keys there: "
                f"{', '.join(sorted(known))}"
            )
        for key in ("graph", "scm", "render"):
            if key not in spec:
                raise SpecError(f"missing required key 'causal.{key}'")
        graph = CausalGraph.from_dict(spec["graph"])
        scm_spec = spec["scm"]
        if isinstance(scm_spec, dict):
            scm = SCM.from_tables(scm_spec)
        else:
            p = Path(scm_spec) if Path(scm_spec).is_absolute() else base / scm_spec
            scm = SCM.from_python(p) if p.suffix == ".py" else SCM.from_tables(p)
        r = spec["render"]
        if not isinstance(r, dict) or "template" not in r:
            raise SpecError("causal.render needs 'template' (and optionally 'words')")
        extra = set(r) - {"template", "words"}
        if extra:
            raise SpecError(
                f"unknown key 'causal.render.{sorted(extra)[0]}' (valid: template, words)"
            )
        answers = spec.get("answers")
        return cls(
            graph,
            scm,
            Renderer(r["template"], dict(r.get("words") or {})),
            answers=tuple(answers) if answers else None,
            named_paths=dict(spec.get("paths") or {}),
            interventions={k: dict(v) for k, v in (spec.get("interventions") or {}).items()},
        )

    def label_effect(
        self,
        label: str,
        *,
        source: str,
        value: Any,
        paths: str | Sequence[str],
        n: int = 200,
        seed: int = 0,
        reference: Any = None,
    ) -> float:
        """The SCM's own path-specific effect on ``label``: mean of label(factual) -
        label(path-specific world) over the same units :meth:`draw` returns (the sign a model's
        effect on the path should have)."""
        self._need_var(label, "label")
        d = self.draw(source=source, value=value, paths=paths, n=n, seed=seed, reference=reference)
        fact = self.scm.values(d.units)
        world = self.scm.path_specific(
            d.units, self.graph, source, value, d.paths, factual=fact, targets=[label]
        )
        return float((fact[label].double() - world[label].double()).mean())

    def intervention(self, source: str, value: Any = None, reference: Any = None) -> tuple:
        """(value, reference) for ``source``: as given, else from ``interventions``."""
        if value is None:
            if source not in self.interventions:
                raise SpecError(
                    f"no counterfactual value for {source!r}: give 'value' or declare "
                    f"causal.interventions.{source}.value (declared: "
                    f"{sorted(self.interventions) or 'none'})"
                )
            value = self.interventions[source]["value"]
            if reference is None:
                reference = self.interventions[source].get("reference")
        return value, reference

    def factual_set(
        self, subject, *, n: int, seed: int, label: str | None = None, group_by: str | None = None
    ):
        """Factual units only (clean = counterfactual): what utility is measured on."""
        from interp_audit.engine.contrasts import ContrastSet, answer_positions

        units = self.scm.sample(n, seed)
        fact = self.scm.values(units)
        prompts = self.render.render(self.scm, fact)
        rows = [subject.to_tokens(p) for p in prompts]
        ans = None
        if self.answers is not None:
            yes, no = (subject.answer_token(a)[0] for a in self.answers)
            if label is None:
                ans = torch.tensor([[yes, no]] * n)
            else:
                self._need_var(label, "label")
                ans = torch.tensor([[yes, no] if y else [no, yes] for y in fact[label].tolist()])
        groups = None
        if group_by is not None:
            self._need_var(group_by, "group_by")
            groups = tuple(self.render.word(self.scm, group_by, v) for v in fact[group_by].tolist())
        return ContrastSet.one_sided(
            rows,
            prompts,
            subject.pad_token_id,
            answers=ans,
            answer_pos=answer_positions(subject, rows),  # an encoder scores its [MASK]
            groups=groups,
            meta={"factual": True, "n": n, "seed": seed},
        )

    def _need_var(self, var: str, what: str) -> None:
        if var not in self.scm.variables:
            raise SpecError(
                f"{what} {var!r} is not an SCM variable (variables: "
                f"{', '.join(self.scm.variables)}){did_you_mean(var, self.scm.variables)}"
            )

    def _repr_html_(self) -> str:
        return self.graph._repr_html_()
