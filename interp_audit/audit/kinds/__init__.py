"""Built-in check kinds, one module each; importing this package registers them."""

from interp_audit.audit.kinds import (  # noqa: F401  (each registers itself on import)
    component_mediation,
    environment_risk,
    faithfulness,
    flip_rate,
    group_parity,
    intervention,
    invariance,
    membership,
    memorization,
    path_invariance,
    responsiveness,
)
from interp_audit.audit.registry import CheckKind, all_registered


def check_kinds() -> dict[str, CheckKind]:
    """Every registered check kind (the built-in ones, registered above, first)."""
    return all_registered()
