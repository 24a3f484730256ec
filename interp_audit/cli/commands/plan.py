"""``interp-audit plan SPEC``: how many clusters each check needs to be decidable.

Runs the spec once as a pilot, then for every tested quantity (each group, path, effect and
cost) prints its estimate, tolerance, CI half-width, the between-cluster SD it implies, the
clusters it has and the clusters it would need for the half-width to drop below the distance to
the tolerance (below the tolerance for a zero effect).
"""

from __future__ import annotations

NAME = "plan"
HELP = "run a spec as a pilot; say how many clusters each check needs to be decidable"


def add_arguments(p) -> None:
    p.add_argument("spec", help="audit spec (YAML)")
    p.add_argument("--device", default=None, help="cpu, cuda or auto (overrides the spec)")


def main(args) -> int:
    from interp_audit.audit.plan import HEADER, plan

    rows = plan(args.spec, device=args.device)
    print(HEADER)
    for row in rows:
        print(row.line())
    print(
        "\nneed = clusters for the CI half-width to fall below the distance from the estimate "
        "to the tolerance (half-width shrinks as 1/sqrt(clusters)); sd_betw = the "
        "between-cluster SD the pilot implies."
    )
    return 0
