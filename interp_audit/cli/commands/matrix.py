"""``interp-audit matrix --models A B --specs S1 S2 --out DIR``: every model x spec audited."""

from __future__ import annotations

NAME = "matrix"
HELP = "audit every model against every spec; one summary page; exit code of the worst cell"


def add_arguments(p) -> None:
    p.add_argument("--models", required=True, nargs="+", help="zoo:NAME or model folders")
    p.add_argument("--specs", required=True, nargs="+", help="audit specs (YAML)")
    p.add_argument("--out", required=True, help="output folder: index.html, summary.json, cells/")
    p.add_argument("--device", default=None, help="cpu, cuda or auto (overrides the specs)")
    from interp_audit.cli.commands.run import add_ray_argument

    add_ray_argument(
        p, "run cells as Ray tasks: no value starts a local cluster, 'auto' joins a running one"
    )


def main(args) -> int:
    from interp_audit.audit.matrix import run_matrix
    from interp_audit.cli.commands.run import executor_from

    result = run_matrix(
        args.models, args.specs, args.out, executor=executor_from(args.ray), device=args.device
    )
    print(result.table())
    for c in result.cells:
        if c.code == 2:
            print(f"error in {c.model} x {c.spec}: {c.error}")
    print(f"summary: {result.out / 'index.html'}")
    return result.code
