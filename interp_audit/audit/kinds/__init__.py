"""Built-in check kinds, one module each; importing this package registers them."""

from ..registry import CheckKind, all_registered
from . import (  # noqa: F401
    component_mediation,
    intervention,
    invariance,
    memorization,
    path_invariance,
)


def check_kinds() -> dict[str, CheckKind]:
    """Every registered check kind (the built-in ones, registered above, first)."""
    return all_registered()
