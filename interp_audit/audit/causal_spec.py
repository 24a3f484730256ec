"""Spec sections for the user's causal question: ``causal:`` (graph, structural equations,
rendering, audited interventions) and the ``scm:`` contrast source that draws path-specific
counterfactuals from it.

    causal:                                  # or: causal: zoo:readmission | path/to/causal.yaml
      graph:
        edges: {A: [X, Z, Y], X: [Y], Z: [Y]}
        outcome: Y                           # the model's prediction; its parents are rendered
        blocked_edges: [A -> Y, Z -> Y]      # and/or resolving: [X], admissible_paths: [...]
      scm: equations.py                      # a Python file, a tables YAML file, or tables inline
      render: {template: "{A} {Z} {X} ->", words: {A: "age:{}"}}
      answers: [YES, NO]
      paths: {proxy: A -> Z -> Y}            # optional names for path sets
      interventions: {A: {value: young, reference: old}}
    contrasts:
      a_proxy: {scm: causal, source: A, paths: proxy}  # or [A -> Z -> Y], all-inadmissible
      utility: {scm: causal, factual: true, n: 400, label: Y_fair, group_by: A}
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

Value = str | int | float


class _Section(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, use_attribute_docstrings=True, allow_inf_nan=False
    )


class GraphSpec(_Section):
    edges: dict[str, list[str]]
    outcome: str
    admissible_paths: list[str] | None = None
    blocked_edges: list[str] | None = None
    resolving: list[str] | None = None

    @model_validator(mode="after")
    def _valid(self):
        self.build()  # cycles, unknown nodes, missing edges, conflicts: named here
        return self

    def build(self):
        from interp_audit.causal import CausalGraph
        from interp_audit.core.errors import SpecError

        try:
            return CausalGraph(
                self.edges,
                self.outcome,
                admissible_paths=self.admissible_paths,
                blocked_edges=self.blocked_edges,
                resolving=self.resolving,
            )
        except SpecError as err:
            raise ValueError(str(err)) from None


class RenderSpec(_Section):
    template: str
    words: dict[str, str | list[str] | dict[str, str]] = Field(default_factory=dict)


class InterventionSpec(_Section):
    value: Value  # the source's counterfactual value (name or number)
    reference: Value | None = None  # only units whose factual value is this (one direction)


class CausalSpec(_Section):
    graph: GraphSpec
    scm: str | dict[str, Any]  # Python file, tables YAML file (relative to the spec), or tables
    render: RenderSpec
    answers: tuple[str, str] | None = None
    paths: dict[str, str | list[str]] = Field(default_factory=dict)
    interventions: dict[str, InterventionSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _names(self):
        g = self.graph.build()
        for src in self.interventions:
            if src not in g.nodes:
                raise ValueError(
                    f"interventions names {src!r}, which is not a graph variable "
                    f"({', '.join(g.nodes)})"
                )
        return self


class ScmContrast(_Section):
    """Path-specific counterfactual pairs from the spec's ``causal`` model (``scm: causal``) or a
    causal-model file / ``zoo:NAME``. ``factual: true`` gives factual units only (utility sets)."""

    scm: str = "causal"
    """Which causal model draws the units: ``causal`` (the spec's ``causal:`` section)."""
    source: str | None = None
    """The variable intervened on (e.g. ``A``)."""
    value: Value | None = None  # default: causal.interventions[source].value
    """Its value in the counterfactual world (default: ``causal.interventions[source].value``)."""
    reference: Value | None = None  # default: causal.interventions[source].reference
    """Its value in the reference world (default: the intervention's ``reference``)."""
    paths: str | list[str] = "all"
    """Which paths carry the change: ``all``, ``all-admissible``, ``all-inadmissible`` or a list
    such as ``A -> Z -> Y``."""
    n: int = Field(200, ge=1, le=100_000)
    """Units (pairs) whose rendered input changes along the paths (each unit is its own cluster)."""
    seed: int = Field(0, ge=0, le=2**63 - 1)
    """Seed for drawing the units."""
    label: str | None = None  # SCM variable (0/1) choosing each unit's correct answer
    """A label for the pairs in reports (default: the source and paths)."""
    group_by: str | None = None
    """An SCM variable whose rendered value groups the pairs (per-group statistics)."""
    factual: bool = False
    """Factual renderings only (no intervention): e.g. utility sets scored against labels."""

    @model_validator(mode="after")
    def _source(self):
        if not self.factual and self.source is None:
            raise ValueError(
                "an scm contrast needs 'source' (the variable intervened on), or factual: true"
            )
        return self
