"""Silence TransformerLens 3.9's deprecation notices (HookedTransformer -> TransformerBridge).

Lives with the adapters (the TransformerLens-aware code); :mod:`interp_audit.model.subject`
re-exports it for the modules that run models.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_tl_warnings() -> Iterator[None]:
    """Silence TransformerLens 3.9's deprecation notices (HookedTransformer -> Bridge)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*deprecated.*")
        yield
