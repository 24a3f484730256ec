"""Bad audit specs: each is refused up front (before any model work) with a SpecError naming
the key, the offending value and what is valid."""

from __future__ import annotations

import copy
import math

import pytest

import interp_audit as ia
from interp_audit.audit.spec import load_spec

SWAP = {
    "template": "{subject} {filler} ->",
    "slots": {"filler": ["x", "y"]},
    "swap": {"slot": "subject", "pairs": [["A", "B"]]},
    "answers": ["YES", "NO"],
}
FILLER = {
    "template": "{subject} {filler} ->",
    "slots": {"subject": ["A", "B"]},
    "swap": {"slot": "filler", "pairs": [["x", "y"]]},
    "answers": ["YES", "NO"],
}
BASE = {
    "name": "t",
    "model": {"source": "zoo:handbuilt-copy"},
    "contrasts": {"swap": SWAP, "filler": FILLER},
    "locate": [{"method": "patch", "contrast": "swap", "sites": "heads", "name": "heads_exact"}],
    "checks": [{"name": "inv", "kind": "invariance", "contrast": "filler", "tolerance": 0.01}],
}
DELETE = object()


def edit(path: str, value) -> dict:
    """BASE with the value at a dotted path replaced (list indices are numbers)."""
    spec = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = spec
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key = int(last) if isinstance(node, list) else last
    if value is DELETE:
        del node[key]
    elif isinstance(node, list) and key == len(node):
        node.append(value)
    else:
        node[key] = value
    return spec


MEDIATION = {"kind": "component_mediation", "contrast": "swap", "sites": ["L1H0"], "max_share": 0.8}
INTERVENTION = {
    "kind": "intervention",
    "contrast": "swap",
    "tolerance": 0.1,
    "ablate": {"components": ["L0H0"], "kind": "zero"},
    "utility": {"contrast": "filler", "metric": "accuracy", "budget": 0.05},
}
SCM = {"scm": "causal", "source": "A", "n": 10}

CASES = [
    # numbers that would make a check meaningless or exhaust memory
    ("checks.0.tolerance", math.inf, ["checks.0", "tolerance", "finite"]),
    ("checks.0.tolerance", -math.inf, ["tolerance", "finite"]),
    ("checks.0.tolerance", math.nan, ["tolerance", "finite"]),
    ("checks.0.tolerance", -1, ["tolerance", "greater than or equal to 0", "-1"]),
    ("checks.0.tolerance", "big", ["tolerance", "number", "'big'"]),
    ("checks.0.tolerance", DELETE, ["missing", "tolerance"]),
    ("checks.0.n_boot", 10**12, ["n_boot", "less than or equal to 100000"]),
    ("checks.0.n_boot", 10**7, ["n_boot", "less than or equal to 100000"]),
    ("checks.0.n_boot", 5, ["n_boot", "greater than or equal to 100"]),
    ("checks.0.n_boot", 1.5, ["n_boot", "integer"]),
    ("checks.0.n_boot", "many", ["n_boot", "integer"]),
    ("checks.0.confidence", 1.0, ["confidence", "less than 1"]),
    ("checks.0.confidence", 0, ["confidence", "greater than 0"]),
    ("checks.0.confidence", math.nan, ["confidence", "finite"]),
    ("seed", 10**30, ["seed", "less than or equal to 9223372036854775807"]),
    ("seed", -1, ["seed", "greater than or equal to 0"]),
    ("seed", "abc", ["seed", "integer", "'abc'"]),
    ("seed", 1.5, ["seed", "integer"]),
    # a locate step names a folder under effects/: never outside it
    ("locate.0.name", "..", ["'..'", "effects/"]),
    ("locate.0.name", ".", ["'.'", "effects/"]),
    ("locate.0.name", "../../etc", ["'../../etc'", "effects/"]),
    ("locate.0.name", "a/b", ["'a/b'", "effects/"]),
    ("locate.0.name", "", ["''", "effects/"]),
    ("locate.0.name", "x" * 101, ["1-100", "effects/"]),
    ("locate.0.name", "na me", ["'na me'", "letters, digits"]),
    ("locate.0.method", "patc", ["unknown locate method 'patc'", "did you mean 'patch'"]),
    ("locate.0.method", "", ["unknown locate method ''", "registered"]),
    ("locate.0.contrast", "nope", ["locate[0]", "'nope'", "not defined under 'contrasts'"]),
    ("locate.0.sites", [], ["sites", "non-empty"]),
    ("locate.0.sites", "", ["sites", "non-empty"]),
    ("locate.0.sites", None, ["sites", "string"]),
    ("locate.0.sites", [5], ["sites", "string"]),
    ("locate.0.steps", 5, ["unknown key 'steps'", "patch"]),
    ("locate.0.per_position", "maybe", ["per_position", "boolean"]),
    ("locate.0", {"method": "ig", "contrast": "swap", "steps": 0}, ["steps", "greater than"]),
    ("locate.0", {"method": "ig", "contrast": "swap", "steps": 10**9}, ["steps", "less than"]),
    ("locate.0.metric", "accuracy", ["metric", "logit_diff"]),
    ("locate", {"method": "patch"}, ["locate", "list"]),
    # checks
    ("checks.0.kind", "invariant", ["unknown check kind 'invariant'", "did you mean 'invariance'"]),
    ("checks.0.kind", 5, ["unknown check kind", "valid kinds"]),
    ("checks.0.contrast", "nope", ["checks[0].contrast", "'nope'", "defined"]),
    ("checks.0.tolrance", 0.1, ["unknown key", "tolrance", "did you mean 'tolerance'"]),
    ("checks.0", 5, ["checks.0"]),
    ("checks", "abc", ["checks", "list"]),
    ("checks.1", {**MEDIATION, "max_share": math.inf}, ["max_share", "finite"]),
    ("checks.1", {**MEDIATION, "max_share": 0}, ["max_share", "greater than 0"]),
    ("checks.1", {**MEDIATION, "name": "inv"}, ["'inv'", "used twice"]),
    ("checks.1", {**INTERVENTION, "tolerance": math.nan}, ["tolerance", "finite"]),
    (
        "checks.1",
        {**INTERVENTION, "utility": {"contrast": "filler", "metric": "accuracy", "budget": -1}},
        ["budget", "greater than or equal to 0"],
    ),
    (
        "checks.1",
        {**INTERVENTION, "utility": {"contrast": "filler", "budget": math.inf}},
        ["budget", "finite"],
    ),
    (
        "checks.1",
        {**INTERVENTION, "ablate": {"from_locate": "heads_exact", "top_k": 0}},
        ["top_k", "greater than or equal to 1"],
    ),
    (
        "checks.1",
        {**INTERVENTION, "ablate": {"from_locate": "heads_exact"}},
        ["from_locate needs top_k"],
    ),
    (
        "checks.1",
        {**INTERVENTION, "ablate": {"from_locate": "nope", "top_k": 2, "kind": "zero"}},
        ["from_locate names 'nope'", "heads_exact"],
    ),
    ("checks.1", {**INTERVENTION, "ablate": {"kind": "zero"}}, ["ablate needs 'components'"]),
    (
        "checks.1",
        {**INTERVENTION, "ablate": {"components": ["L0H0"], "kind": "mean"}},
        ["mean ablation needs a 'reference'"],
    ),
    (
        "checks.1",
        {**INTERVENTION, "ablate": {"components": ["L0H0"], "kind": "zero", "value": math.inf}},
        ["value", "finite"],
    ),
    (
        "checks.1",
        {
            "kind": "memorization",
            "canaries": [{"prefix": "A", "secret": "x"}],
            "max_exposure": math.nan,
        },
        ["max_exposure", "finite"],
    ),
    (
        "checks.1",
        {"kind": "memorization", "canaries": [], "max_exposure": 1},
        ["canaries", "at least 1"],
    ),
    # contrasts
    ("contrasts.swap.slots.filler", ["x", "x"], ["slots.filler", "'x' twice", "narrow"]),
    ("contrasts.swap.slots.filler", [], ["slots.filler", "no fillers"]),
    ("contrasts.swap.swap.pairs", [["A", "A"]], ["swap.pairs[0]", "'A' with itself"]),
    ("contrasts.swap.swap.pairs", [["A", "B"], ["A", "B"]], ["swap.pairs[1]", "repeats"]),
    ("contrasts.swap.swap.pairs", [], ["swap.pairs", "empty"]),
    ("contrasts.swap.swap.pairs", [["A", "B", "C"]], ["swap.pairs", "2 items"]),
    ("contrasts.swap.swap.slot", "nope", ["swap slot 'nope'", "slots"]),
    ("contrasts.swap.group_by", "nope", ["group_by 'nope'", "template slot"]),
    ("contrasts.swap.answers", ["YES"], ["contrasts.swap.answers"]),
    ("contrasts.swap.slots", {"filler": ["x"], "extra": ["e"]}, ["slot 'extra'", "not in"]),
    ("contrasts.swap.template", "{subject} {other} ->", ["'other'", "no fillers"]),
    ("contrasts.swap.query", "{subject} job", ["query", "fixed slots"]),
    ("contrasts.s", {**SCM, "n": 10**12}, ["n", "less than or equal to 100000"]),
    ("contrasts.s", {**SCM, "n": 0}, ["n", "greater than or equal to 1"]),
    ("contrasts.s", {**SCM, "seed": 10**30}, ["seed", "less than or equal"]),
    ("contrasts.s", {"foo": 1}, ["contrasts.s", "'template', 'file' or 'scm'"]),
    ("contrasts.s", 5, ["contrasts.s", "mapping"]),
    ("contrasts.s", {"file": "x.jsonl", "answers": ["YES"]}, ["contrasts.s.answers"]),
    ("contrasts", [], ["contrasts", "dictionary"]),
    # top level
    ("metric", {"name": "logit"}, ["metric.name", "logit_diff"]),
    ("metric", {"name": "embedding_similarity", "anchors": 5}, ["metric.anchors"]),
    ("metric", "logit_diff", ["metric", "dictionary"]),
    ("chekcs", [], ["unknown key 'chekcs'", "did you mean 'checks'"]),
    ("model", DELETE, ["missing required key 'model'"]),
    ("model.source", DELETE, ["missing required key 'model.source'"]),
    ("model.source", 5, ["model.source", "string"]),
    ("model.weight_processing", {"fold_ln": "sure"}, ["fold_ln", "boolean"]),
    ("model.colour", "red", ["unknown key 'model.colour'", "valid keys there"]),
    ("name", 5, ["name", "string"]),
]


@pytest.mark.parametrize(
    ("path", "value", "words"),
    CASES,
    ids=[f"{c[0]}=" + ("<deleted>" if c[1] is DELETE else repr(c[1]))[:60] for c in CASES],
)
def test_bad_spec_value_is_refused_naming_key_and_valid_range(path, value, words):
    with pytest.raises(ia.SpecError) as info:
        load_spec(edit(path, value))
    msg = str(info.value)
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"
    assert "\n" not in msg.strip()


TEXT_CASES = [
    ("- a\n- b\n", ["must be a mapping", "list"]),
    ("just text", ["must be a mapping", "str"]),
    ("", ["must be a mapping", "NoneType"]),
    ("name: [unclosed\n", ["not valid YAML", "line"]),
    ("a: 1\n b: 2\n", ["not valid YAML", "line 2"]),
    ("!!python/object/apply:os.system ['echo hi']\n", ["not valid YAML", "python/object"]),
    ("x: !!python/name:os.system\n", ["not valid YAML"]),
    ("[" * 2000 + "]" * 2000 + "\n", ["nests too deeply"]),
    ("a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 1500)) + "\n", ["nest"]),
]


@pytest.mark.parametrize(("text", "words"), TEXT_CASES, ids=[t[0][:30] for t in TEXT_CASES])
def test_bad_spec_text_is_refused(text, words):
    with pytest.raises(ia.SpecError) as info:
        load_spec(text if "\n" in text else text + "\n" if text else "\n")
    for w in words:
        assert w in str(info.value), str(info.value)


def test_spec_paths(tmp_path):
    with pytest.raises(ia.SpecError, match="is a folder; give the YAML file"):
        load_spec(str(tmp_path))
    with pytest.raises(ia.SpecError, match="does not exist"):
        load_spec(str(tmp_path / "nope.yaml"))
    binary = tmp_path / "spec.yaml"
    binary.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ia.SpecError, match="not UTF-8 text"):
        load_spec(str(binary))
