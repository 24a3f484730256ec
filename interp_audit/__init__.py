"""interp_audit: locate, check and repair the paths that carry a protected attribute (or memorized
data) through a transformer, with exact numbers and clean hooks.

    import interp_audit as ia
    subject = ia.load_model("zoo:handbuilt-copy")
    pairs = ia.ContrastSet.from_prompts(subject, clean=[...], counterfactual=[...], answers=[...])
    eff = ia.patch(subject, pairs, metric=ia.metrics.logit_diff, sites="heads")
    fixed = ia.repaired(subject, ["L1H0"], kind="mean", reference=pairs)  # folded into weights

Importing this package does not import TransformerLens; loading a model does.
"""

from interp_audit import audit
from interp_audit.audit.check import check
from interp_audit.audit.result import CheckResult
from interp_audit.audit.run import AuditReport
from interp_audit.audit.tradeoff import tradeoff
from interp_audit.causal import SCM, CausalGraph, CausalModel
from interp_audit.core.errors import AuditError, ContrastError, ModelLoadError, SiteError, SpecError
from interp_audit.engine.contrasts import ContrastSet
from interp_audit.engine.effects import Effects
from interp_audit.engine.interventions import ablate, patch_in
from interp_audit.engine.repairs import repaired
from interp_audit.methods import features as sae
from interp_audit.methods.locate.attribution import attribute
from interp_audit.methods.locate.compare import Comparison, compare
from interp_audit.methods.locate.edges import Circuit, attribute_edges, patch_edges, prune
from interp_audit.methods.locate.patching import patch
from interp_audit.methods.locate.path_patching import patch_path
from interp_audit.methods.privacy import membership, memorization
from interp_audit.model import metrics
from interp_audit.model.components import Component, parse_component
from interp_audit.model.loading import load_model
from interp_audit.model.subject import Subject

__version__ = "0.1.0"

__all__ = [
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
