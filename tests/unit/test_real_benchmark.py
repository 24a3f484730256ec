"""benchmarks/real.py's TransformerLens and nnsight implementations compute ia's numbers.

The benchmark's ratios mean something only if the three tools do the same job: on a small
random Llama (GQA) loaded both as ia's subject and as nnsight's ``transformers`` model, the
heads sweep, resid_pre x positions and AtP of TransformerLens (``patching`` / hooks) and of
nnsight (batched invokes / ``.grad``) equal ia's, on every variant and on a subset. Also: the
prompt pairs of ``benchmarks/long_text.py`` have exactly the asked length and differ only at
the name, and the shipped passage is what its generator writes.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

import interp_audit as ia

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
VOCAB = 64


def _load(name: str):
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def real():
    return _load("real")


@pytest.fixture(scope="module")
def tools(tmp_path_factory):
    """(ia subject, nnsight model) of one random Llama: 2 layers, 4 query / 2 key-value heads."""
    nnsight = pytest.importorskip("nnsight")
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
        initializer_range=0.2,  # effects well above float rounding
    )
    hf = LlamaForCausalLM(cfg).eval()
    folder = tmp_path_factory.mktemp("llama")
    hf.save_pretrained(str(folder))
    subject = ia.load_model(str(folder))
    words = Tokenizer(WordLevel({f"t{i}": i for i in range(VOCAB)}, unk_token="t0"))
    tok = PreTrainedTokenizerFast(tokenizer_object=words, pad_token="t0")
    return subject, nnsight.LanguageModel(hf, tokenizer=tok)


@pytest.fixture(scope="module")
def pairs():
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(0, VOCAB, (3, 9), generator=g)
    cf = clean.clone()
    cf[:, 2] = (clean[:, 2] + 1 + torch.randint(0, VOCAB - 1, (3,), generator=g)) % VOCAB
    return ia.ContrastSet.from_tokens(clean, cf, torch.randint(0, VOCAB, (3, 2), generator=g))


SUBSETS = {
    "all": {"layers": [0, 1], "heads": [0, 1, 2, 3], "positions": list(range(9)), "full": True},
    "subset": {"layers": [1], "heads": [1, 3], "positions": [2, 5, 8], "full": False},
}


@pytest.mark.parametrize("which", list(SUBSETS))
@pytest.mark.parametrize("job", ["heads", "resid_pos", "atp"])
def test_tools_agree_with_ia(real, tools, pairs, job, which):
    subject, lm = tools
    sub = SUBSETS[which]
    ours = real.run("ia", subject, pairs, job, sub)
    n = 8 if job == "atp" else len(real.variants(job, sub))
    assert ours.shape == (n,)
    assert float(ours.std()) > 1e-3  # the variants differ: a misplaced patch would show
    for tool, model in (("tl", subject), ("nnsight", lm)):
        theirs = real.run(tool, model, pairs, job, sub)
        torch.testing.assert_close(theirs, ours, atol=2e-6, rtol=0, msg=f"{tool} {job}")
    if job == "resid_pos" and which == "all":  # a patch before the change does nothing
        per_layer = ours.reshape(2, 9)
        assert torch.allclose(per_layer[:, :2], per_layer[:1, :1].expand(2, 2))


def test_subset_keeps_name_and_last_position(real):
    class Args:
        full_below, layers, max_heads, max_positions = 64, None, None, None

    sub = real.subset(Args, 512, 3, 30, 9)
    assert sub["layers"] == [0, 15, 29] and sub["heads"] == [0, 1, 2]
    assert sub["positions"][0] == 3 and sub["positions"][-1] == 511
    assert len(sub["positions"]) == 5 and not sub["full"]
    assert real.subset(Args, 16, 3, 30, 9)["full"]


class _WordSubject:
    """Tokenizes words (a leading space kept) to ids: enough for the pair builder."""

    def __init__(self):
        self.ids: dict[str, int] = {}

    def to_tokens(self, text: str) -> list[int]:
        import re

        return [self.ids.setdefault(w, len(self.ids)) for w in re.findall(r" ?\w+|[^\w ]", text)]


@pytest.mark.parametrize("name_at", ["start", "end"])
def test_name_pairs_exact_length_one_difference(name_at):
    long_text = _load("long_text")
    subject = _WordSubject()
    pairs, pos = long_text.name_pairs(subject, 300, 3, name_at)
    assert pairs.clean.shape == (3, 300) == pairs.counterfactual.shape
    differs = (pairs.clean != pairs.counterfactual).nonzero()
    assert differs[:, 1].tolist() == [pos] * 3
    assert pairs.answers.tolist() == [[subject.ids[" he"], subject.ids[" she"]]] * 3


def test_shipped_passage_is_its_generator_output():
    long_text = _load("long_text")
    assert long_text.PASSAGE.read_text() == long_text.write_passage()
