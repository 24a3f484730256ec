"""Sparse-autoencoder features (``ia.sae``): load or train an SAE, read its features, patch,
attribute and ablate them, and describe them (feature cards).

One module a job: :mod:`.saes` (load, check, run), :mod:`.training`, :mod:`.patching` (exact
patching and attribution), :mod:`.ablation`, :mod:`.cards`. This package re-exports the public
functions so that ``ia.sae.load_sae(...)`` reads as one namespace.
"""

from interp_audit.methods.features.ablation import ablate_features
from interp_audit.methods.features.patching import (
    attribute_features,
    feature_diff,
    patch_features,
)
from interp_audit.methods.features.saes import (
    check_sae,
    feature_activations,
    hook_of,
    load_sae,
    reconstruction,
    splice,
    top_activating,
)
from interp_audit.methods.features.training import train_sae

__all__ = [
    "ablate_features",
    "attribute_features",
    "check_sae",
    "feature_activations",
    "feature_diff",
    "hook_of",
    "load_sae",
    "patch_features",
    "reconstruction",
    "splice",
    "top_activating",
    "train_sae",
]
