"""Contrast data files (JSONL / CSV) with faults: each refused naming the file, line and field;
and edge pruning with a meaningless top_k."""

from __future__ import annotations

import pytest

import interp_audit as ia

GOOD = '{"clean": "A x ->", "counterfactual": "B x ->", "correct": "YES", "incorrect": "NO"}'

FILE_CASES = [
    ("a.jsonl", "5\n", ["a.jsonl line 1", "JSON int", "'clean'"]),
    ("a.jsonl", GOOD + "\n[1, 2]\n", ["line 2", "JSON list"]),
    ("a.jsonl", GOOD + '\n"text"\n', ["line 2", "JSON str"]),
    ("a.jsonl", GOOD + "\n{not json\n", ["line 2 is not valid JSON"]),
    ("a.jsonl", GOOD + '\n{"clean": "A y ->"}\n', ["line 2", "no 'counterfactual'"]),
    (
        "a.jsonl",
        GOOD + '\n{"clean": "A y ->", "counterfactual": "B y ->"}\n',
        ["line 2", "no 'correct'", "first row has answers"],
    ),
    ("a.jsonl", GOOD.replace('"A x ->"', "5") + "\n", ["line 1", "'clean' is 5", "not text"]),
    ("a.jsonl", GOOD.replace('"NO"', "null") + "\n", ["line 1", "no 'incorrect'"]),
    ("a.jsonl", "\n\n", ["has no pairs"]),
    ("a.jsonl", "[" * 5000 + "]" * 5000 + "\n", ["line 1 is not valid JSON"]),
    (
        "a.jsonl",
        GOOD[:-1] + ', "group": "g"}\n' + GOOD + "\n",
        ["line 2", "no 'group' field", "every line or on none"],
    ),
    ("a.jsonl", GOOD.replace("YES", "MAYBE") + "\n", ["'MAYBE' outside the model's vocabulary"]),
    ("a.jsonl", GOOD.replace("B x", "B z") + "\n", ["'z' outside", "a.jsonl"]),
    ("b.csv", "clean,counterfactual,correct\nA x ->,B x ->,YES\n", ["row 1", "no 'incorrect'"]),
    ("b.csv", "clean,correct,incorrect\nA x ->,YES,NO\n", ["b.csv row 1", "no 'counterfactual'"]),
    ("b.csv", "clean,counterfactual\nA x ->\n", ["row 1", "no 'counterfactual'"]),
    ("b.csv", "clean,counterfactual\n", ["has no pairs"]),
    ("b.csv", b"\xff\xfeclean", ["not UTF-8 text"]),
]


@pytest.mark.parametrize(
    ("name", "content", "words"), FILE_CASES, ids=[f"{c[0]}:{c[1]!r}"[:40] for c in FILE_CASES]
)
def test_bad_contrast_file_is_refused_naming_file_and_line(tmp_path, name, content, words):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    spec = {
        "model": {"source": "zoo:handbuilt-copy"},
        "contrasts": {"f": {"file": str(path)}},
        "checks": [{"kind": "invariance", "contrast": "f", "tolerance": 0.1}],
    }
    with pytest.raises(ia.AuditError) as info:
        ia.audit(spec)
    for w in words:
        assert w in str(info.value), str(info.value)


def test_contrast_file_that_is_a_folder(tmp_path):
    spec = {
        "model": {"source": "zoo:handbuilt-copy"},
        "contrasts": {"f": {"file": str(tmp_path)}},
        "checks": [],
    }
    with pytest.raises(ia.SpecError, match="is a folder, not a JSONL/CSV file"):
        ia.audit(spec)


@pytest.fixture(scope="module")
def edges(handbuilt, handbuilt_pairs):
    return ia.attribute_edges(handbuilt, handbuilt_pairs)


@pytest.mark.parametrize("top_k", [-1, -100, 1.5, True, "3", None, 10**9])
def test_prune_refuses_a_meaningless_top_k(handbuilt, handbuilt_pairs, edges, top_k):
    with pytest.raises(ia.AuditError, match=r"prune\(top_k=.*whole number of edges in 0\.\.\d+"):
        ia.prune(handbuilt, handbuilt_pairs, edges, top_k=top_k)


@pytest.mark.parametrize("steps", [0, -1, 2.5, 10**6])
def test_edge_ig_steps_are_bounded(handbuilt, handbuilt_pairs, steps):
    with pytest.raises(ia.AuditError, match="steps=.*1..10000"):
        ia.attribute_edges(handbuilt, handbuilt_pairs, method="eap-ig", steps=steps)
