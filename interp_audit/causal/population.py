"""Population effects: a path effect over the whole population of units, not a sample of pairs.

A model reads a rendered prompt, and an SCM's units render to few distinct prompts (the
readmission model reads 108), so a path-specific effect over the population is a *finite
weighted sum over distinct (factual, counterfactual) prompt pairs*. Two ways to get the weights:

* **exact enumeration**: when every noise the question depends on has a finite support (table
  SCMs always do; a Python SCM declares ``support_NAME()``), the units are the cartesian product
  of the supports with their probabilities. The effect is exact: no sampling, no interval.
* **drawn population**: otherwise ``n_units`` units (default 10^5) are drawn from the SCM. Drawing
  and evaluating the equations costs little next to a forward pass, and units are deduplicated
  into distinct prompt pairs (on the rendered variables' values, then on the rendered text), each
  run once and weighted by its count. The only uncertainty left is the sampling of units.

:class:`Population` holds the units and their weights; :func:`path_population` turns it into the
distinct pairs of one path-specific intervention (:class:`PathPopulation`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from interp_audit.causal.scm import SCM, Units
from interp_audit.core.errors import SpecError

if TYPE_CHECKING:
    from interp_audit.causal.model import CausalModel

__all__ = [
    "DEFAULT_N_UNITS",
    "MAX_CELLS",
    "PathPopulation",
    "Population",
    "Worlds",
    "discrete_support",
    "distinct_rows",
    "needed_variables",
    "path_population",
    "population",
    "rendered_worlds",
]

#: units drawn for a population when some noise is continuous
DEFAULT_N_UNITS = 100_000
#: the largest exact enumeration (product of the supports); larger ones are drawn
MAX_CELLS = 1_000_000


def needed_variables(scm: SCM, targets: Sequence[str]) -> list[str]:
    """``targets`` and every SCM variable they depend on (parents, recursively)."""
    seen: list[str] = []
    todo = list(targets)
    while todo:
        v = todo.pop()
        if v in seen:
            continue
        seen.append(v)
        todo += list(scm.variables[v].parents)
    return [v for v in scm.variables if v in seen]


def _noise_keys(scm: SCM, names: Sequence[str]) -> list[str]:
    """The noise tensors ``names`` read (a variable sharing noise reads its donor's)."""
    keys = []
    for name in names:
        v = scm.variables[name]
        if not v.takes_noise:
            continue
        key = v.shares_noise_with or name
        if key not in keys:
            keys.append(key)
    return keys


def discrete_support(
    scm: SCM, names: Sequence[str]
) -> tuple[dict[str, tuple[Tensor, Tensor]], str]:
    """(support of each noise ``names`` read, reason exact enumeration is impossible or "")."""
    out: dict[str, tuple[Tensor, Tensor]] = {}
    for key in _noise_keys(scm, names):
        var = scm.variables[key]
        if var.support is None:
            missing = [k for k in _noise_keys(scm, names) if scm.variables[k].support is None]
            return {}, (
                f"no finite support is declared for the noise of {', '.join(missing)} (a Python "
                "SCM declares support_NAME() for discrete noise)"
            )
        values, probs = var.support()
        values, probs = torch.as_tensor(values), torch.as_tensor(probs, dtype=torch.float64)
        if values.shape[:1] != probs.shape or probs.ndim != 1 or len(probs) == 0:
            raise SpecError(
                f"SCM {scm.source}: support_{key}() must return k noise values and k "
                f"probabilities; got shapes {tuple(values.shape)} and {tuple(probs.shape)}"
            )
        if bool((probs < 0).any()) or abs(float(probs.sum()) - 1) > 1e-6:
            raise SpecError(
                f"SCM {scm.source}: support_{key}() probabilities must be >= 0 and sum to 1 "
                f"(sum {float(probs.sum()):.6g})"
            )
        out[key] = (values, probs)
    return out, ""


@dataclass
class Population:
    """Units with weights: exact (the noise supports' product, weights = probabilities) or drawn
    (``n_units`` seeded draws, weight 1 each). ``factual`` holds every variable's value."""

    units: Units
    weights: Tensor  # [unit] float64
    exact: bool
    n_units: int  # draws, or enumerated cells
    seed: int
    note: str = ""
    factual: dict[str, Tensor] = field(default_factory=dict, repr=False)

    def describe(self) -> str:
        if self.exact:
            return f"exact: {self.n_units} enumerated noise cells (every noise discrete)"
        return f"{self.n_units} units drawn (seed {self.seed})" + (
            f"; not exact: {self.note}" if self.note else ""
        )


def population(
    scm: SCM,
    variables: Sequence[str],
    *,
    exact: bool | None = None,
    n_units: int = DEFAULT_N_UNITS,
    seed: int = 0,
    max_cells: int = MAX_CELLS,
) -> Population:
    """The units a population effect sums over, for questions about ``variables``.

    ``exact``: None or True enumerate when every noise ``variables`` depend on is discrete (and
    the product of supports is at most ``max_cells``), else draw ``n_units`` units (seed
    ``seed * 1000``); False always draws.
    """
    if isinstance(n_units, bool) or not isinstance(n_units, int) or n_units < 1:
        raise SpecError(f"n_units={n_units!r}: the population needs a whole number of units >= 1")
    needed = needed_variables(scm, variables)
    note = "exact: false" if exact is False else ""
    if exact is not False:
        supports, note = discrete_support(scm, needed)
        if not note:
            cells = 1
            for values, _ in supports.values():
                cells *= len(values)
            if cells > max_cells:
                note = f"{cells} noise cells exceed the enumeration limit {max_cells}"
            else:
                return _enumerate(scm, supports, cells, seed)
    units = scm.sample(n_units, seed * 1000)
    weights = torch.ones(n_units, dtype=torch.float64)
    return Population(units, weights, False, n_units, seed, note, scm.values(units))


def _enumerate(scm: SCM, supports: dict[str, tuple[Tensor, Tensor]], cells: int, seed: int):
    keys = list(supports)
    grids = [torch.arange(len(supports[k][0])) for k in keys]
    combos = torch.cartesian_prod(*grids).reshape(cells, len(keys)) if keys else None
    noise: dict[str, Tensor] = {}
    weights = torch.ones(cells, dtype=torch.float64)
    for j, key in enumerate(keys):
        values, probs = supports[key]
        idx = combos[:, j]
        noise[key] = values[idx]
        weights = weights * probs[idx]
    # noise the question does not read: any value will do; drawn so the equations can run
    drawn = scm.sample(cells, seed * 1000)
    for key, u in drawn.noise.items():
        noise.setdefault(key, u)
    units = Units(noise, cells)
    return Population(units, weights, True, cells, seed, "", scm.values(units))


@dataclass(frozen=True)
class PathPopulation:
    """The distinct (factual, counterfactual) prompt pairs of one path-specific intervention.

    ``weights[i]``: the mass of pair ``i`` (a probability when exact, a count of units when
    drawn). ``mass_in_scope``: all units in scope (factual source = reference); those outside
    the pairs are in scope but their rendered input does not change (effect exactly 0).
    ``unit_pair[u]``: which pair unit ``u`` renders to (-1: unchanged or out of scope).
    """

    clean: list[str]
    counterfactual: list[str]
    weights: Tensor
    mass_in_scope: float
    mass_total: float
    exact: bool
    n_units: int
    paths: tuple[tuple[str, ...], ...]
    description: str
    unit_pair: Tensor = field(repr=False)
    label_effects: dict[str, float] = field(default_factory=dict)

    @property
    def mass_changed(self) -> float:
        return float(self.weights.sum())

    @property
    def fraction_changed(self) -> float:
        return self.mass_changed / self.mass_in_scope if self.mass_in_scope > 0 else 0.0

    def rest(self) -> Tensor:
        """Masses outside the pairs: [in scope but unchanged, out of scope] (the resampling
        categories a drawn population's bootstrap needs beside the pairs)."""
        unchanged = max(self.mass_in_scope - self.mass_changed, 0.0)
        outside = max(self.mass_total - self.mass_in_scope, 0.0)
        return torch.tensor([unchanged, outside], dtype=torch.float64)


def distinct_rows(rows: Tensor, weights: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(distinct rows, summed weight of each, index of each input row's distinct row).

    Integer rows are packed into one int64 key per row (mixed radix) so the deduplication is a
    1-d ``unique`` (``unique(dim=0)`` is an order of magnitude slower on 10^5 rows)."""
    key = _packed(rows)
    if key is None:
        uniq, inverse = torch.unique(rows, dim=0, return_inverse=True)
    else:
        keys, inverse = torch.unique(key, return_inverse=True)
        first = torch.full((len(keys),), len(rows), dtype=torch.long)
        first.scatter_reduce_(0, inverse, torch.arange(len(rows)), reduce="amin")
        uniq = rows[first]
    mass = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inverse, weights)
    return uniq, mass, inverse


def _packed(rows: Tensor) -> Tensor | None:
    if rows.dtype.is_floating_point or rows.ndim != 2 or len(rows) == 0:
        return None
    low = rows.min(0).values
    span = rows.max(0).values - low + 1
    if float(torch.log2(span.double()).sum()) > 62:
        return None
    key = torch.zeros(len(rows), dtype=torch.long)
    for j in range(rows.shape[1]):
        key = key * span[j] + (rows[:, j] - low[j])
    return key


def _stack(values: dict[str, Tensor], slots: list[str]) -> Tensor:
    cols = [values[s] for s in slots]
    if any(c.dtype.is_floating_point for c in cols):
        return torch.stack([c.double() for c in cols], 1)
    return torch.stack([c.long() for c in cols], 1)


def render_rows(cm: CausalModel, slots: list[str], rows: Tensor) -> list[str]:
    """Prompts of distinct rows of the rendered variables' values (one column per slot)."""
    if len(rows) == 0:
        return []
    cols = {s: rows[:, j] for j, s in enumerate(slots)}
    return cm.render.render(cm.scm, cols)


def path_population(
    cm: CausalModel,
    pop: Population,
    *,
    source: str,
    value: Any,
    paths: Sequence[tuple[str, ...]],
    reference: Any = None,
    labels: Sequence[str] = (),
) -> PathPopulation:
    """Distinct prompt pairs of ``pop``'s units under the path-specific intervention.

    ``labels``: SCM variables (0/1) whose own path-specific effect (factual - world, over the
    units whose input changes) is recorded in ``label_effects`` (the sign a model's effect along
    the path should have).
    """
    from interp_audit.causal.graph import format_path

    scm, graph = cm.scm, cm.graph
    chosen = tuple(tuple(p) for p in paths)
    fact = pop.factual
    world = scm.path_specific(
        pop.units, graph, source, value, chosen, factual=fact, targets=list(labels)
    )
    slots = cm.render.slots
    f_rows = _stack(fact, slots)
    c_rows = _stack({**fact, **{k: v for k, v in world.items() if k in slots}}, slots)
    scope = torch.ones(pop.units.n, dtype=torch.bool)
    if reference is not None:
        scope = fact[source] == scm.encode(source, reference)
    moved = scope & (f_rows != c_rows).any(1)
    w = pop.weights
    idx = moved.nonzero().flatten()
    pairs, mass, inverse = distinct_rows(torch.cat([f_rows[idx], c_rows[idx]], 1), w[idx])
    k = len(slots)
    clean = render_rows(cm, slots, pairs[:, :k])
    cf = render_rows(cm, slots, pairs[:, k:])
    # merge pairs that render alike (two values with one word); drop those whose text is equal
    by_text: dict[tuple[str, str], int] = {}
    keep_mass: list[float] = []
    remap = torch.full((len(pairs),), -1, dtype=torch.long)
    for i, (a, b) in enumerate(zip(clean, cf, strict=True)):
        if a == b:
            continue
        j = by_text.setdefault((a, b), len(by_text))
        if j == len(keep_mass):
            keep_mass.append(0.0)
        keep_mass[j] += float(mass[i])
        remap[i] = j
    texts = list(by_text)
    unit_pair = torch.full((pop.units.n,), -1, dtype=torch.long)
    unit_pair[idx] = remap[inverse]
    effects = {}
    changed = unit_pair >= 0
    for label in labels:
        if not bool(changed.any()):
            effects[label] = 0.0
            continue
        diff = fact[label].double() - world[label].double()
        effects[label] = float((w[changed] * diff[changed]).sum() / w[changed].sum())
    desc = pop.describe() + f"; {len(texts)} distinct prompt pairs, each run once"
    if not texts:
        from interp_audit.core.errors import EmptyPathError

        raise EmptyPathError(
            f"no unit's rendered input changes along {[format_path(p) for p in chosen]} when "
            f"{source} is set to {value!r}"
            + (f" (among units with {source} = {reference!r})" if reference is not None else "")
            + f" ({pop.describe()}); the path carries nothing the model reads"
        )
    return PathPopulation(
        clean=[a for a, _ in texts],
        counterfactual=[b for _, b in texts],
        weights=torch.tensor(keep_mass, dtype=torch.float64),
        mass_in_scope=float(w[scope].sum()),
        mass_total=float(w.sum()),
        exact=pop.exact,
        n_units=pop.n_units,
        paths=chosen,
        description=desc,
        unit_pair=unit_pair,
        label_effects=effects,
    )


@dataclass(frozen=True)
class Worlds:
    """Every unit of a population rendered in several worlds (interventions), with a label.

    ``prompt[w, u]`` indexes ``prompts`` (the distinct prompts of all worlds); ``label[w, u]``
    is the label's value for unit ``u`` in world ``w``; ``names[w]`` says which world."""

    names: list[str]
    prompts: list[str]
    prompt: Tensor  # [world, unit] long
    label: Tensor  # [world, unit] long
    weights: Tensor  # [unit] float64
    exact: bool
    n_units: int
    description: str

    def conditional(self) -> Tensor:
        """``[world, prompt]`` P(label = 1 | the prompt, in that world) over the population:
        the Bayes-optimal prediction from what the model reads (nan: prompt absent there)."""
        n_w, n_p = len(self.names), len(self.prompts)
        flat = (self.prompt + torch.arange(n_w)[:, None] * n_p).flatten()
        w = self.weights.repeat(n_w)
        mass = torch.zeros(n_w * n_p, dtype=torch.float64).index_add_(0, flat, w)
        ones = torch.zeros(n_w * n_p, dtype=torch.float64).index_add_(
            0, flat, w * self.label.flatten().double()
        )
        return (ones / mass).reshape(n_w, n_p)


def rendered_worlds(
    cm: CausalModel,
    pop: Population,
    worlds: dict[str, dict[str, Tensor]],
    label: str,
) -> Worlds:
    """Render each world's values (variable -> tensor over ``pop``'s units) and read ``label``
    there; prompts are rendered once per distinct combination of the rendered values."""
    slots = cm.render.slots
    rows = torch.cat([_stack(v, slots) for v in worlds.values()])
    uniq, _, inverse = distinct_rows(rows, torch.ones(len(rows), dtype=torch.float64))
    texts = render_rows(cm, slots, uniq)
    index: dict[str, int] = {}
    remap = torch.tensor([index.setdefault(t, len(index)) for t in texts], dtype=torch.long)
    prompts = list(index)
    n = pop.units.n
    prompt = remap[inverse].reshape(len(worlds), n)
    labels = torch.stack([v[label].long() for v in worlds.values()])
    return Worlds(
        names=list(worlds),
        prompts=prompts,
        prompt=prompt,
        label=labels,
        weights=pop.weights,
        exact=pop.exact,
        n_units=pop.n_units,
        description=pop.describe() + f"; {len(prompts)} distinct prompts, each run once",
    )
