"""``interp-audit run SPEC --out DIR``: the pre-deployment gate.

Exit 0 when every check passes; 1 when one fails *or is inconclusive* (an interval that
straddles a tolerance proves nothing either way, so a gate must not wave it through), with the
reason; ``--allow-inconclusive`` lets inconclusive checks through with a warning; 2 when the
audit could not run.
"""

from __future__ import annotations

NAME = "run"
HELP = "run an audit spec; exit 0 pass, 1 a check failed or is inconclusive, 2 could not run"


def add_arguments(p) -> None:
    p.add_argument("spec", help="audit spec (YAML)")
    p.add_argument("--out", required=True, help="output folder for report.html, report.json")
    p.add_argument("--junit", default=None, help="also write JUnit XML here")
    add_device_argument(p)
    add_ray_argument(
        p,
        "run sweeps on Ray actors: no value starts a local cluster, 'auto' joins a running "
        "one, or host:port / ray://host:port; report.json is identical to a local run's",
    )
    add_gate_argument(p)


def add_device_argument(p) -> None:
    """``--device``: where a command that audits a spec runs it."""
    p.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:N, mps or auto (overrides the spec)"
    )


def add_gate_argument(p) -> None:
    """``--allow-inconclusive``: the flag of every command whose exit code is :func:`gate`'s."""
    p.add_argument(
        "--allow-inconclusive",
        action="store_true",
        help="exit 0 (with a warning) when no check fails but some are inconclusive",
    )


def add_ray_argument(p, help: str) -> None:
    """``--ray [ADDRESS]``: the executor flag of every command that runs audits."""
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS", help=help)


def executor_from(ray: str | None):
    """``--ray`` value -> an executor: None (local), or a RayExecutor on that address."""
    if ray is None:
        return None
    from interp_audit.engine.executors import ray_executor_class

    return ray_executor_class()(None if ray == "local" else ray)


def main(args) -> int:
    import sys
    from pathlib import Path

    from interp_audit.audit.gates import TrustGateError
    from interp_audit.audit.record import cli_command
    from interp_audit.audit.run import audit
    from interp_audit.core.files import check_file_target, check_output_folder
    from interp_audit.engine.executors import using

    check_output_folder(args.out)  # before any model work, not after the whole audit ran
    if args.junit:
        check_file_target(args.junit, "--junit")
    with using(executor_from(args.ray)) as ex:
        try:
            report = audit(args.spec, device=args.device)
        except TrustGateError as err:  # keep the evidence: report.json holds the gates' numbers
            if err.report is not None:
                err.report.save(args.out, junit=args.junit)
            raise
        finally:
            ex.close()
    argv = ["run", str(Path(args.spec).resolve()), "--out", str(Path(args.out).resolve())]
    if args.junit:
        argv += ["--junit", str(Path(args.junit).resolve())]
    if args.device:
        argv += ["--device", args.device]
    if args.ray:
        argv += ["--ray", args.ray] if args.ray != "local" else ["--ray"]
    report.provenance["command"] = cli_command(argv)
    out = report.save(args.out, junit=args.junit)
    print(repr(report))
    print(f"report: {out / 'report.html'}")
    return gate(report, allow_inconclusive=args.allow_inconclusive, stream=sys.stderr)


def gate(report, *, allow_inconclusive: bool, stream) -> int:
    """The exit status for a report, with the reason for anything but a clean pass."""
    verdict = report.verdict
    if verdict == "pass":
        return 0
    for c in report.checks:
        if c.verdict != "pass":
            print(f"interp-audit: {c.verdict}: {c.name}: {c.reason}", file=stream)
    if verdict == "inconclusive" and allow_inconclusive:
        print(
            "interp-audit: warning: no check failed but some are inconclusive; exiting 0 "
            "because of --allow-inconclusive",
            file=stream,
        )
        return 0
    return 1
