"""Bad contrast inputs, sites, metrics and model sources: each gets the package's own error
naming the pair / token / key and what is valid; none gives a silent or meaningless result."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import interp_audit as ia
from interp_audit.core.errors import MetricError
from interp_audit.model.metrics import Metric, embedding_similarity

NAN, INF = float("nan"), float("inf")
OK_C, OK_F, OK_A = [[0, 3, 5, 7]], [[0, 4, 5, 7]], [[8, 9]]

TOKEN_CASES = [
    (dict(clean=[[0, 3.7, 5, 7]]), ["pair 0 clean position 1", "3.7", "float", "not an integer"]),
    (dict(clean=[[0, NAN, 5, 7]]), ["position 1", "nan", "not an integer"]),
    (dict(clean=[[0, INF, 5, 7]]), ["position 1", "inf", "not an integer"]),
    (dict(counterfactual=[[0, 4, -INF, 7]]), ["counterfactual position 2", "-inf"]),
    (dict(clean=[[0, "3", 5, 7]]), ["position 1", "'3'", "str"]),
    (dict(clean=[[0, None, 5, 7]]), ["position 1", "None"]),
    (dict(clean=[[0, True, 5, 7]]), ["position 1", "True", "bool"]),
    (dict(clean=[[0, [3], 5, 7]]), ["position 1", "[3]", "list"]),
    (dict(clean=[[0, 3.0, 5, 7]]), ["position 1", "3.0", "float"]),
    (dict(clean=[[0, np.float32(3), 5, 7]]), ["position 1", "float32"]),
    (dict(clean=["A x ->"]), ["pair 0", "list of token ids", "'A x ->'"]),
    (dict(clean=[5]), ["pair 0", "list of token ids", "5"]),
    (dict(clean=5), ["clean tokens", "int"]),
    (dict(clean="A x"), ["clean tokens", "str"]),
    (dict(clean=None), ["clean tokens", "NoneType"]),
    (dict(clean=np.array([[0.0, 3.5, 5.0, 7.0]])), ["clean tokens", "dtype float64"]),
    (dict(clean=torch.tensor([[0.0, 3.7, 5.0, 7.0]])), ["clean tokens", "integer ids", "float"]),
    (
        dict(clean=torch.tensor([[0, 3, 5, 7]]), clean_mask=torch.tensor([[1, 2, 1, 1]])),
        ["clean_mask", "other than 0 and 1"],
    ),
    (
        dict(clean=torch.zeros(1, 2, 4, dtype=torch.long)),
        ["clean tokens must be [pair, pos]", "(1, 2, 4)"],
    ),
    (
        dict(counterfactual=[[0, 4, 5]], counterfactual_lengths=[3], counterfactual_mask=[[1] * 3]),
        ["counterfactual lengths or the counterfactual mask, not both"],
    ),
    (dict(counterfactual=OK_F * 2, answers=None), ["1 clean prompts but 2 counterfactual"]),
    (dict(clean=[], counterfactual=[], answers=None), ["empty", "at least one"]),
    (dict(clean=[[]], counterfactual=[[]], answers=None), ["pair 0", "no tokens"]),
    (dict(counterfactual=OK_C), ["pair 0", "identical", "must differ"]),
    (dict(clean=[[0, -5, 5, 7]]), ["pair 0", "-5", "outside the vocabulary", "start at 0"]),
    (dict(clean=[[0, 3, 5, 10]], d_vocab=10), ["pair 0", "[0, 3, 5, 10]", "vocabulary 0..9"]),
    (dict(counterfactual=[[0, 4, 5, 99]], d_vocab=10), ["counterfactual", "0..9"]),
    (dict(answers=[[8, 1.5]]), ["pair 0 answer 1", "1.5", "not an integer"]),
    (dict(answers=[[8, NAN]]), ["pair 0 answer 1", "nan"]),
    (dict(answers=torch.tensor([[8.0, 9.0]])), ["answers", "integer token ids", "float"]),
    (dict(answers=[[8, 9, 7]]), ["answers must be [pair, 2]", "[8, 9, 7]"]),
    (dict(answers=[[8, 8]]), ["pair 0", "same token 8"]),
    (dict(answers=[[8, -1]]), ["pair 0", "answer ids [8, -1]", "negative"]),
    (dict(answers=[[8, 99]], d_vocab=10), ["pair 0", "answer ids [8, 99]", "0..9"]),
    (dict(answers=[["YES", "NO"]]), ["pair 0 answer 0", "'YES'", "str"]),
    (dict(answers=5), ["answers", "int"]),
    (dict(answer_pos=[7]), ["pair 0", "answer position 7", "4 tokens"]),
    (dict(answer_pos=[-1]), ["pair 0", "answer position -1"]),
    (dict(lengths=[0]), ["pair 0", "length 0", "outside 1..4"]),
    (dict(lengths=[9]), ["pair 0", "length 9", "outside 1..4"]),
    (dict(lengths=[4, 4]), ["lengths must have one entry per pair"]),
    (dict(labels=["a", "b"]), ["2 labels for 1 pairs"]),
    (dict(groups=["a", "b", "c"]), ["3 groups for 1 pairs"]),
]


@pytest.mark.parametrize(
    ("change", "words"), TOKEN_CASES, ids=[repr(c[0])[:50] for c in TOKEN_CASES]
)
def test_bad_tokens_are_refused_naming_the_pair(change, words):
    kw = dict(clean=OK_C, counterfactual=OK_F, answers=OK_A, **{})
    kw.update(change)
    with pytest.raises(ia.ContrastError) as info:
        ia.ContrastSet.from_tokens(kw.pop("clean"), kw.pop("counterfactual"), **kw)
    for w in words:
        assert w in str(info.value), str(info.value)


def test_integer_types_are_accepted_unchanged():
    """NumPy ints, 0-d integer tensors and int tensors are ids (nothing is truncated)."""
    a = ia.ContrastSet.from_tokens([[np.int64(0), torch.tensor(3), 5, 7]], OK_F, OK_A)
    b = ia.ContrastSet.from_tokens(np.array(OK_C), np.array(OK_F), np.array(OK_A))
    assert a.clean.tolist() == b.clean.tolist() == OK_C and b.answers.tolist() == OK_A


# ---- the model boundary: ids a model cannot run are refused where a sweep starts ----

RUN_CASES = [
    (dict(clean=[[0, 3, 5, 50]]), ["pair 0", "50", "vocabulary 0..9"]),
    (dict(counterfactual=[[0, 4, 5, 10]]), ["counterfactual", "0..9"]),
    (dict(answers=[[8, 10]]), ["answer ids [8, 10]", "0..9"]),
    (dict(answers=[[1000, 9]]), ["answer ids [1000, 9]", "0..9"]),
    (
        dict(clean=[[0, 3, 5, 5, 5, 5, 5, 5, 7]], counterfactual=[[0, 4, 5, 5, 5, 5, 5, 5, 7]]),
        ["9 tokens", "n_ctx=8"],
    ),
]


@pytest.mark.parametrize(("change", "words"), RUN_CASES, ids=[repr(c[0])[:50] for c in RUN_CASES])
@pytest.mark.parametrize("entry", ["patch", "attribute"])
def test_tokens_the_model_cannot_run_are_refused_before_the_forward(
    handbuilt, change, words, entry
):
    kw = dict(clean=OK_C, counterfactual=OK_F, answers=OK_A)
    kw.update(change)
    pairs = ia.ContrastSet.from_tokens(kw["clean"], kw["counterfactual"], kw["answers"])
    fn = ia.patch if entry == "patch" else ia.attribute
    with pytest.raises(ia.ContrastError) as info:
        fn(handbuilt, pairs, ia.metrics.logit_diff, sites="heads")
    for w in words:
        assert w in str(info.value), str(info.value)
    assert handbuilt.live_hooks() == []


# ---- prompts on a word-level vocabulary ----

PROMPT_CASES = [
    (dict(clean=["A z ->"], counterfactual=["B z ->"]), ["pair 0", "'z'", "outside", "<unk>"]),
    (dict(counterfactual=["C x ->"]), ["pair 0", "counterfactual", "'C'", "vocabulary"]),
    (dict(clean=["A x -> MAYBE"], counterfactual=["B x -> MAYBE"]), ["'MAYBE'", "vocabulary"]),
    (dict(answers=("YES", "MAYBE")), ["pair 0: answer", "'MAYBE'", "vocabulary"]),
    (dict(answers=("yes", "NO")), ["answer", "'yes'", "vocabulary"]),
    (dict(answers=("YES", "YES")), ["pair 0", "same token"]),
    (dict(answers=("YES NO", "NO")), ["pair 0", "'YES NO'", "2 tokens", "single tokens"]),
    (dict(answers=("", "NO")), ["pair 0", "answer ''", "non-empty"]),
    (dict(answers=[(1, 2)]), ["pair 0", "answer 1", "non-empty string"]),
    (dict(answers=[("YES", "NO", "A")]), ["pair 0", "(correct, incorrect)"]),
    (dict(answers=[("YES", "NO")] * 2), ["2 answer pairs for 1 prompt pairs"]),
    (dict(clean=[""], counterfactual=["B x ->"]), ["pair 0", "clean prompt ''", "empty"]),
    (dict(clean=[None], counterfactual=["B x ->"]), ["pair 0", "None", "empty"]),
    (dict(clean="A x ->"), ["lists of prompts", "not a single string"]),
    (dict(counterfactual=["B x ->", "B y ->"]), ["1 clean prompts but 2"]),
    (  # unequal token counts are fine, but each side must fit the context
        dict(counterfactual=["B x x x x x x x ->"]),
        ["pair 0", "'B x x x x x x x ->'", "longer than the model's context"],
    ),
    (dict(counterfactual=["A x ->"]), ["pair 0", "same tokens"]),
    (
        dict(clean=["A x x x x x x x ->"], counterfactual=["B x x x x x x x ->"]),
        ["pair 0", "10 tokens", "context (8)"],
    ),
    (dict(labels=["a", "b"]), ["2 labels for 1 pairs"]),
    (dict(clean=[], counterfactual=[]), ["empty"]),
]


@pytest.mark.parametrize(
    ("change", "words"), PROMPT_CASES, ids=[repr(c[0])[:50] for c in PROMPT_CASES]
)
def test_bad_prompts_are_refused_naming_the_pair(handbuilt, change, words):
    kw = dict(clean=["A x ->"], counterfactual=["B x ->"], answers=("YES", "NO"))
    kw.update(change)
    with pytest.raises(ia.ContrastError) as info:
        ia.ContrastSet.from_prompts(handbuilt, kw.pop("clean"), kw.pop("counterfactual"), **kw)
    for w in words:
        assert w in str(info.value), str(info.value)


def test_literal_unk_is_allowed_and_duplicates_warn(handbuilt):
    pairs = ia.ContrastSet.from_prompts(handbuilt, ["A <unk> ->"], ["B <unk> ->"], ("YES", "NO"))
    assert pairs.clean.tolist() == [[0, 3, 2, 7]]
    with pytest.warns(UserWarning, match=r"pair 1 repeats pair 0 .* narrow the confidence"):
        ia.ContrastSet.from_prompts(handbuilt, ["A x ->"] * 2, ["B x ->"] * 2, ("YES", "NO"))


def test_unknown_answer_in_a_spec_is_refused_not_scored():
    """The issue's case: answers [YES, MAYBE] reported +4.0 instead of refusing."""
    spec = {
        "model": {"source": "zoo:handbuilt-copy"},
        "contrasts": {
            "s": {
                "template": "{subject} x ->",
                "swap": {"slot": "subject", "pairs": [["A", "B"]]},
                "answers": ["YES", "MAYBE"],
            }
        },
        "checks": [{"kind": "invariance", "contrast": "s", "tolerance": 0.1}],
    }
    with pytest.raises(ia.ContrastError, match=r"contrast 's'.*'MAYBE' outside the model's vocab"):
        ia.audit(spec)


# ---- sites ----

SITE_CASES = [
    (None, ["sites=None", "non-empty list"]),
    ([], ["sites=[]", "names no component"]),
    ("", ["sites=''", "empty"]),
    (5, ["sites=5", "int"]),
    ({"L0H0"}, ["set"]),
    ([5], ["sites[0]=5", "component label"]),
    (["L0H0", None], ["sites[1]=None"]),
    ("headz", ["unknown sites 'headz'", "did you mean 'heads'"]),
    (["L9H0"], ["L9H0", "0..1"]),
    (["L0H9"], ["L0H9", "0..1"]),
    (["blocks.9.attn.hook_z"], ["blocks.9.attn.hook_z"]),
    ("mlp_out", ["attention-only"]),
    ("resid_mid", ["no resid_mid"]),
    (["L0.resid_pre@20"], ["position 20", "4 positions"]),
]


@pytest.mark.parametrize(("sites", "words"), SITE_CASES, ids=[repr(c[0]) for c in SITE_CASES])
def test_bad_sites_are_refused(handbuilt, handbuilt_pairs, sites, words):
    with pytest.raises(ia.SiteError) as info:
        ia.patch(handbuilt, handbuilt_pairs, ia.metrics.logit_diff, sites=sites)
    for w in words:
        assert w in str(info.value), str(info.value)
    assert handbuilt.live_hooks() == []


# ---- the metric contract ----


def _metric(fn, readout="answer_logits"):
    return Metric("custom", readout, fn)


METRIC_CASES = [
    (lambda r, c: r, ["returned shape (3, 2)", "expected shape [3]"]),
    (lambda r, c: r[:, :1], ["returned shape (3, 1)", "expected shape [3]"]),
    (lambda r, c: r.sum(), ["returned shape ()", "expected shape [3]"]),
    (lambda r, c: r[:2, 0], ["returned shape (2,)", "expected shape [3]"]),
    (lambda r, c: (r[:, 0] - r[:, 1]).tolist(), ["returned a list", "shape [3]"]),
    (lambda r, c: r[:, 0] * NAN, ["returned nan for example 0", "finite"]),
    (lambda r, c: r[:, 0] * 0 + torch.tensor([0.0, INF, 0.0]), ["inf for example 1", "finite"]),
    (lambda r, c: torch.log(r[:, 0] * 0), ["-inf", "log of 0"]),
]


@pytest.mark.parametrize(("fn", "words"), METRIC_CASES, ids=[w[0] for _, w in METRIC_CASES])
@pytest.mark.parametrize("entry", ["patch", "attribute"])
def test_metric_contract_is_checked(handbuilt, handbuilt_pairs, fn, words, entry):
    call = ia.patch if entry == "patch" else ia.attribute
    with pytest.raises(MetricError) as info:
        call(handbuilt, handbuilt_pairs, _metric(fn), sites="heads")
    for w in words:
        assert w in str(info.value), str(info.value)
    assert handbuilt.live_hooks() == []


@pytest.mark.parametrize(
    ("anchor", "words"),
    [
        (torch.full((4,), NAN), ["anchor contains NaN or inf"]),
        (torch.tensor([1.0, INF, 0.0, 0.0]), ["NaN or inf"]),
        (torch.zeros(4), ["zero vector"]),
        (torch.ones(3, 4), ["[d] or [2, d]", "(3, 4)"]),
    ],
)
def test_bad_embedding_anchor_is_refused(anchor, words):
    with pytest.raises(MetricError) as info:
        embedding_similarity(anchor)
    for w in words:
        assert w in str(info.value)


def test_unknown_metric_name():
    with pytest.raises(ia.AuditError, match="unknown metric 'logit_dif'.*did you mean"):
        ia.metrics.get_metric("logit_dif")


# ---- model sources ----


@pytest.fixture(scope="module")
def saved(tmp_path_factory, handbuilt):
    folder = tmp_path_factory.mktemp("saved") / "m"
    handbuilt.save(folder)
    return folder


def _copy(saved, tmp_path, config=None, weights=None):
    import shutil

    dst = tmp_path / "m"
    shutil.copytree(saved, dst)
    if config is not None:
        (dst / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    if weights is not None:
        (dst / "model.safetensors").write_bytes(weights(dst / "model.safetensors"))
    return dst


def _meta(saved):
    return json.loads((saved / "config.json").read_text())


FOLDER_CASES = [
    ("config a list", dict(config="[1, 2]"), ["config.json must be a JSON object", "list"]),
    ("config not json", dict(config="{not json"), ["config.json is not valid JSON"]),
    ("config empty obj", dict(config="{}"), ["model_type None is not supported"]),
    ("mamba", dict(config='{"model_type": "mamba"}'), ["model_type 'mamba'", "gpt2"]),
    ("no tl_config", "drop", ["'tl_config' is missing"]),
    ("tl_config list", "list", ["'tl_config' is a list"]),
    ("bad tl key", "badkey", ["unknown TransformerLens config key 'd_modle'"]),
    ("bad kind", "kind", ["kind 'decoder'"]),
    ("wider model", "wider", ["does not match its config.json", "size mismatch"]),
    ("truncated", dict(weights=lambda p: p.read_bytes()[:100]), ["model.safetensors", "corrupt"]),
    ("garbage", dict(weights=lambda p: b"\x00" * 64), ["not a readable safetensors"]),
    ("empty", dict(weights=lambda p: b""), ["not a readable safetensors"]),
]


@pytest.mark.parametrize(("name", "how", "words"), FOLDER_CASES, ids=[c[0] for c in FOLDER_CASES])
def test_bad_model_folder_is_refused_naming_the_file(saved, tmp_path, name, how, words):
    if isinstance(how, str):
        meta = _meta(saved)
        if how == "drop":
            meta.pop("tl_config")
        elif how == "list":
            meta["tl_config"] = [1]
        elif how == "badkey":
            meta["tl_config"]["d_modle"] = 3
        elif how == "kind":
            meta["kind"] = "decoder"
        elif how == "wider":
            meta["tl_config"]["d_model"] = 32
        how = dict(config=meta)
    folder = _copy(saved, tmp_path, **how)
    with pytest.raises(ia.ModelLoadError) as info:
        ia.load_model(folder)
    for w in words:
        assert w in str(info.value), str(info.value)


def test_missing_weights_and_pickles(saved, tmp_path):
    folder = _copy(saved, tmp_path)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ia.ModelLoadError, match="has no model.safetensors"):
        ia.load_model(folder)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, folder / "pytorch_model.bin")
    with pytest.raises(ia.ModelLoadError, match="refusing to unpickle"):
        ia.load_model(folder)


SOURCE_CASES = [
    (dict(dtype="int8"), ["unknown dtype 'int8'", "float32"]),
    (dict(dtype=torch.int64), ["unknown dtype 'torch.int64'", "float32"]),
    (dict(dtype="float33"), ["unknown dtype 'float33'"]),
    (dict(device="banana"), ["unknown device 'banana'", "cpu"]),
    (dict(device="cuda:x"), ["device 'cuda:x'"]),
    (dict(fold_lm=True), ["unknown weight-processing option 'fold_lm'", "fold_ln"]),
    (dict(source="zoo:handbuilt"), ["no zoo model 'handbuilt'", "did you mean"]),
    (dict(source=5), ["cannot load a model from int"]),
    (dict(source="./no/such/folder"), ["does not exist"]),
]


@pytest.mark.parametrize(("kw", "words"), SOURCE_CASES, ids=[repr(c[0]) for c in SOURCE_CASES])
def test_bad_model_source_or_option(kw, words):
    kw = {"source": "zoo:handbuilt-copy", **kw}
    with pytest.raises(ia.ModelLoadError) as info:
        ia.load_model(kw.pop("source"), **kw)
    for w in words:
        assert w in str(info.value), str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_without_cuda():
    with pytest.raises(ia.ModelLoadError, match="'cuda' is not available"):
        ia.load_model("zoo:handbuilt-copy", device="cuda")


def test_a_file_is_not_a_model_source(saved):
    with pytest.raises(ia.ModelLoadError, match="is a file; pass the folder"):
        ia.load_model(saved / "model.safetensors")


# ---- sizes that would exhaust memory or loop forever ----


def test_sizes_are_bounded():
    from interp_audit.stats.bootstrap import bootstrap, mean_ci

    with pytest.raises(ia.AuditError, match="n_boot=1000000"):
        mean_ci(torch.zeros(3), n_boot=10**6)
    with pytest.raises(ia.AuditError, match="n_boot=0"):
        bootstrap(lambda i: 0.0, 3, n_boot=0)
    with pytest.raises(ia.AuditError, match="n_boot=1.5"):
        bootstrap(lambda i: 0.0, 3, n_boot=1.5)
    assert not math.isnan(bootstrap(lambda i: float(i.float().mean()), 3, n_boot=10)[1])
