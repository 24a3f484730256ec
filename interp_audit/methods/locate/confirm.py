"""``confirm``: exact patching of the top components an earlier locate step found.

Attribution (AtP, AtP*) screens every component for two forward-equivalents; exact patching of
every component is what a verdict can rest on, but costs one patched run per component. The
scalable pattern is both: screen everything, then patch exactly the ``top_k`` the screen ranked
highest, and report how the two agree. In a spec::

    locate:
      - {method: atp, contrast: pairs, sites: heads, name: heads_atp}
      - {method: confirm, contrast: pairs, of: heads_atp, top_k: 20, name: heads_confirmed}

The components (labels, with ``@pos`` for per-position screens) come from ``of``; ``sites`` is
not read. The step that ``of`` names must come earlier in ``locate``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from interp_audit.core.errors import SpecError
from interp_audit.methods.locate.registry import LocateMethod, register_locate


class ConfirmOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    of: str
    """The earlier locate step whose ranking is confirmed."""
    top_k: int = Field(10, ge=1)
    """How many of its top components to patch exactly."""
    by: Literal["abs", "signed"] = "abs"
    """Rank by absolute or signed estimate."""


def _confirm(step, contrast, metric, ctx):
    from interp_audit.methods.locate.patching import patch

    opts: ConfirmOptions = step.options
    screened = ctx.effects.get(opts.of)
    if screened is None:
        done = ", ".join(ctx.effects) or "none"
        raise SpecError(
            f"locate step {step.default_name()!r}: 'of: {opts.of}' names no earlier locate "
            f"step (those run before it: {done}); list the screen first"
        )
    comps = [c for c, _ in screened.top(opts.top_k, by=opts.by)]
    eff = patch(ctx.subject, contrast, metric, sites=comps, progress=False)
    eff.meta.update(confirms=opts.of, top_k=opts.top_k, by=opts.by)
    return eff


register_locate(
    LocateMethod(
        "confirm",
        _confirm,
        "exact patching of the top_k components an earlier step ('of') ranked highest",
        options=ConfirmOptions,
    )
)
