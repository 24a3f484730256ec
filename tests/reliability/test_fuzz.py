"""Property-based fuzzing (hypothesis): random token arrays, random specs and random YAML never
raise anything but the package's own errors, never give a non-finite result, and never hang
(each example has a deadline). Derandomized with no example database, so CI cannot flake: the
same examples run every time."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import interp_audit as ia
from interp_audit.audit.spec import load_spec

FUZZ = settings(
    max_examples=50,
    deadline=30_000,  # ms per example: a bound on hangs, generous for a loaded machine
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

ran: list[int] = []  # 0: a random contrast was swept, 1: a random audit reported

token = st.one_of(
    st.integers(-3, 12),  # the hand-built model's vocabulary is 0..9
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
)
rows = st.lists(st.lists(token, min_size=0, max_size=10), min_size=0, max_size=4)
int_rows = st.lists(st.lists(st.integers(0, 9), min_size=1, max_size=9), min_size=1, max_size=4)
sites = st.sampled_from(["heads", "resid_pre", "attn_out", ["L0H0", "L1H1"], "L1H0", [], None])


@st.composite
def contrast_inputs(draw):
    """Half wild token arrays; half well-formed pairs (width 2..10, n_ctx is 8) with at most
    one entry replaced by a wild token, as tensors or lists."""
    if draw(st.booleans()):
        answers = draw(st.one_of(st.none(), st.lists(st.lists(token, max_size=3), max_size=4)))
        return draw(rows), draw(rows), answers
    n, w = draw(st.integers(1, 4)), draw(st.integers(2, 10))
    clean = [[draw(st.integers(0, 9)) for _ in range(w)] for _ in range(n)]
    cf = [list(r) for r in clean]
    for r in cf:
        r[1] = (r[1] + draw(st.integers(1, 9))) % 10
    answers = [[8, 9] for _ in range(n)]
    if draw(st.booleans()):
        target = draw(st.sampled_from([clean, cf, answers]))
        row = draw(st.integers(0, n - 1))
        col = draw(st.integers(0, len(target[row]) - 1))
        target[row][col] = draw(token)
    as_tensor = draw(st.booleans())
    try:
        if as_tensor:
            return torch.tensor(clean), torch.tensor(cf), torch.tensor(answers)
    except (ValueError, TypeError, RuntimeError, OverflowError):
        pass
    return clean, cf, answers


@pytest.mark.reliability
@FUZZ
@given(inputs=contrast_inputs(), where=sites, method=st.sampled_from(["patch", "atp"]))
def test_random_token_arrays_give_package_errors_or_finite_effects(
    handbuilt, inputs, where, method
):
    clean, cf, answers = inputs
    try:
        pairs = ia.ContrastSet.from_tokens(clean, cf, answers)
        if method == "patch":
            eff = ia.patch(handbuilt, pairs, ia.metrics.logit_diff, sites=where, normalize=False)
        else:
            eff = ia.attribute(handbuilt, pairs, ia.metrics.logit_diff, sites=where, method="atp")
    except ia.AuditError as err:
        assert str(err) and "\n" not in str(err).strip()
        return
    finally:
        assert handbuilt.live_hooks() == []
    ran.append(0)
    assert bool(torch.isfinite(eff.values).all()), eff.values
    assert len(eff.top(3)) == min(3, eff.values.numel())


# ---- specs ----

BASE = {
    "name": "fuzz",
    "model": {"source": "zoo:handbuilt-copy"},
    "contrasts": {
        "swap": {
            "template": "{subject} {filler} ->",
            "slots": {"filler": ["x", "y"]},
            "swap": {"slot": "subject", "pairs": [["A", "B"]]},
            "answers": ["YES", "NO"],
        }
    },
    "locate": [{"method": "patch", "contrast": "swap", "sites": "heads"}],
    "checks": [{"name": "inv", "kind": "invariance", "contrast": "swap", "tolerance": 0.5}],
}
PATHS = [
    ("name",),
    ("seed",),
    ("model",),
    ("model", "source"),
    ("model", "dtype"),
    ("contrasts",),
    ("contrasts", "swap"),
    ("contrasts", "swap", "template"),
    ("contrasts", "swap", "slots"),
    ("contrasts", "swap", "slots", "filler"),
    ("contrasts", "swap", "swap", "pairs"),
    ("contrasts", "swap", "answers"),
    ("locate",),
    ("locate", 0, "sites"),
    ("locate", 0, "name"),
    ("locate", 0, "method"),
    ("checks", 0, "tolerance"),
    ("checks", 0, "n_boot"),
    ("checks", 0, "confidence"),
    ("checks", 0, "kind"),
    ("checks", 0, "contrast"),
]
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**30), 10**30),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=12),
        st.sampled_from(["heads", "swap", "invariance", "..", "A", "YES", "{subject}", "zoo:x"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def _set(spec: dict, path: tuple, value) -> dict:
    spec = copy.deepcopy(spec)
    node = spec
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return spec


@pytest.mark.reliability
@FUZZ
@given(edits=st.lists(st.tuples(st.sampled_from(PATHS), json_values), min_size=1, max_size=3))
def test_random_specs_give_spec_errors_only(edits):
    spec = BASE
    for path, value in edits:
        try:
            spec = _set(spec, path, value)
        except (KeyError, IndexError, TypeError):  # an earlier edit removed the parent
            continue
    try:
        load_spec(spec)
    except ia.SpecError as err:
        assert str(err) and "\n" not in str(err).strip()


@pytest.mark.reliability
@FUZZ
@given(text=st.text(max_size=200))
def test_random_yaml_text_gives_spec_errors_only(text):
    try:
        load_spec(text + "\n")
    except ia.SpecError as err:
        assert str(err)


@pytest.mark.reliability
@settings(FUZZ, max_examples=12)
@given(
    tolerance=st.one_of(st.floats(0, 10), st.floats(allow_nan=True, allow_infinity=True)),
    n_boot=st.one_of(st.integers(100, 400), st.integers(-5, 10**8)),
    seed=st.one_of(st.integers(0, 1000), st.integers(-5, 2**70)),
    confidence=st.one_of(st.floats(0.5, 0.99), st.floats(allow_nan=True, allow_infinity=True)),
    answers=st.one_of(
        st.just(["YES", "NO"]),
        st.lists(st.sampled_from(["YES", "NO", "MAYBE", "A", "<unk>"]), min_size=2, max_size=2),
    ),
)
def test_random_audits_run_or_refuse(handbuilt, tolerance, n_boot, seed, confidence, answers):
    spec = copy.deepcopy(BASE)
    spec["seed"] = seed
    spec["contrasts"]["swap"]["answers"] = answers
    spec["checks"][0].update(tolerance=tolerance, n_boot=min(n_boot, 10**8), confidence=confidence)
    try:
        report = ia.audit(spec, subject=handbuilt)
    except ia.AuditError as err:
        assert str(err) and "\n" not in str(err).strip()
        return
    finally:
        assert handbuilt.live_hooks() == []
    ran.append(1)
    c = report.checks[0]
    assert math.isfinite(tolerance) and 100 <= n_boot <= 100_000 and 0 < confidence < 1
    assert all(math.isfinite(x) for x in (c.statistic, *c.ci)) and c.ci[0] <= c.ci[1]
    assert "MAYBE" not in answers  # an unknown answer word is refused, never scored


def test_the_audit_fuzz_ran_some_audits_to_the_end():
    """Guard against a fuzz that only ever exercises refusals (runs after the fuzz above)."""
    assert 0 in ran, "no random contrast was swept"
    assert 1 in ran, "no random audit ran to a report"
