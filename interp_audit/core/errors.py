"""One exception hierarchy: every failure a user can cause is an ``AuditError``.

Each message quotes the thing that failed (the prompt, token, hook or spec key) and, where it
helps, what would have been valid, the way einops quotes the pattern it could not parse.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "AuditError",
    "ContrastError",
    "MetricError",
    "ModelLoadError",
    "SiteError",
    "SpecError",
]


class AuditError(Exception):
    """Base class of every error interp_audit raises on purpose."""


class SpecError(AuditError, ValueError):
    """An audit spec (YAML or dict) is malformed: names the key and the nearest valid one."""


class EmptyPathError(SpecError):
    """No unit's rendered input changes along the requested causal paths: the model cannot
    read them (the path's effect is 0 exactly; a model whose input hides a variable)."""


class ModelLoadError(AuditError):
    """A model source could not be turned into a Subject."""


class ContrastError(AuditError, ValueError):
    """A contrast set is inconsistent: names the pair index, its text and its tokens."""


class MetricError(AuditError, ValueError):
    """A metric broke its contract: one finite number per example, shape ``[batch]``."""


class SiteError(AuditError, KeyError):
    """A component label or hook name does not exist on this model: names the valid range."""

    def __str__(self) -> str:  # KeyError would repr() the message; keep it readable
        return str(self.args[0]) if self.args else ""


def did_you_mean(word: str, options: Iterable[str], n: int = 3) -> str:
    """A ' (did you mean ...?)' suffix for error messages, or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(options), n=n, cutoff=0.5)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"


class IncompleteRunError(AuditError):
    """A run folder is incomplete (no report.json) or inconsistent (files disagree with it)."""
