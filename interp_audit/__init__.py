"""interp_audit: locate, check and repair the paths that carry a protected attribute (or memorized
data) through a transformer, with exact numbers and clean hooks.

    import interp_audit as ia
    subject = ia.load_model("zoo:handbuilt-copy")
    pairs = ia.ContrastSet.from_prompts(subject, clean=[...], counterfactual=[...], answers=[...])
    eff = ia.patch(subject, pairs, metric=ia.metrics.logit_diff, sites="heads")

Importing this package does not import TransformerLens; loading a model does.
"""

from . import audit, membership, memorization, metrics, sae
from .audit.check import check
from .audit.result import CheckResult
from .audit.run import AuditReport
from .causal import SCM, CausalGraph, CausalModel
from .components import Component, parse_component
from .contrast import ContrastSet
from .effects import Effects
from .errors import AuditError, ContrastError, ModelLoadError, SiteError, SpecError
from .interventions import ablate, patch_in
from .loading import load_model
from .locate.attribution import attribute
from .locate.compare import Comparison, compare
from .locate.edges import Circuit, attribute_edges, patch_edges, prune
from .locate.patching import patch
from .locate.path_patching import patch_path
from .subject import Subject
from .tradeoff import tradeoff

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
    "sae",
    "tradeoff",
]
