import subprocess
import sys

import interp_audit as ia


def test_public_api_is_curated():
    assert sorted(ia.__all__) == sorted(
        [
            "AuditError",
            "AuditReport",
            "CausalGraph",
            "CausalModel",
            "CheckResult",
            "Circuit",
            "Comparison",
            "Component",
            "ContrastError",
            "ContrastSet",
            "Effects",
            "ModelLoadError",
            "SCM",
            "SiteError",
            "SpecError",
            "Subject",
            "ablate",
            "attribute",
            "attribute_edges",
            "audit",
            "check",
            "compare",
            "load_model",
            "membership",
            "memorization",
            "metrics",
            "parse_component",
            "patch",
            "patch_edges",
            "patch_in",
            "patch_path",
            "prune",
            "repaired",
            "sae",
            "tradeoff",
        ]
    )
    for name in ia.__all__:
        assert hasattr(ia, name), name


def test_one_exception_hierarchy():
    for err in (ia.SpecError, ia.ModelLoadError, ia.ContrastError, ia.SiteError):
        assert issubclass(err, ia.AuditError)


def test_import_does_not_load_transformer_lens():
    code = (
        "import sys, interp_audit; print('transformer_lens' in sys.modules, 'sae_lens' in "
        "sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "False"]


def test_audit_is_callable_and_its_subpackage_importable():
    import importlib

    spec_module = importlib.import_module("interp_audit.audit.spec")
    assert ia.audit.spec is spec_module
    assert callable(ia.audit)
    assert ia.memorization.exposure is not None
