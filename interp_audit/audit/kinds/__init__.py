"""Built-in check kinds, one module each; importing this package registers them."""

from . import (  # noqa: F401
    component_mediation,
    intervention,
    invariance,
    membership,
    memorization,
    path_invariance,
)
