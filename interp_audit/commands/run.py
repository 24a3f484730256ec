"""``interp-audit run SPEC --out DIR``: the pre-deployment gate (exit 0 pass, 1 fail, 2 error)."""

from __future__ import annotations

NAME = "run"
HELP = "run an audit spec; exit 0 pass, 1 a check failed, 2 could not run"


def add_arguments(p) -> None:
    p.add_argument("spec", help="audit spec (YAML)")
    p.add_argument("--out", required=True, help="output folder for report.html, report.json")
    p.add_argument("--junit", default=None, help="also write JUnit XML here")
    p.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:N, mps or auto (overrides the spec)"
    )
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="run sweeps on Ray actors: no value starts a local cluster, 'auto' joins a running "
        "one, or host:port / ray://host:port; report.json is identical to a local run's",
    )


def executor_from(ray: str | None):
    """``--ray`` value -> an executor: None (local), or a RayExecutor on that address."""
    if ray is None:
        return None
    from ..executors import ray_executor_class

    return ray_executor_class()(None if ray == "local" else ray)


def main(args) -> int:
    from ..audit.gates import TrustGateError
    from ..audit.run import audit
    from ..executors import using

    with using(executor_from(args.ray)) as ex:
        try:
            report = audit(args.spec, device=args.device)
        except TrustGateError as err:  # keep the evidence: report.json holds the gates' numbers
            if err.report is not None:
                err.report.save(args.out, junit=args.junit)
            raise
        finally:
            ex.close()
    out = report.save(args.out, junit=args.junit)
    print(repr(report))
    print(f"report: {out / 'report.html'}")
    return 0 if report.passed else 1
