"""Audits: a spec (what must stay invariant, on which paths) in, a verdict with evidence out.

``ia.audit(spec, ...)`` is this package, called: the package is a callable module, so both
``ia.audit("spec.yaml")`` and ``import interp_audit.audit.spec`` work (a plain function named
``audit`` in the package root would shadow the subpackage).
"""

from __future__ import annotations

import sys
import types


class _CallableModule(types.ModuleType):
    def __call__(self, spec, **kwargs):
        from interp_audit.audit.run import audit

        return audit(spec, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
