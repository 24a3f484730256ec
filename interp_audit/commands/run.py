"""``interp-audit run SPEC --out DIR``: the pre-deployment gate (exit 0 pass, 1 fail, 2 error)."""

from __future__ import annotations

NAME = "run"
HELP = "run an audit spec; exit 0 pass, 1 a check failed, 2 could not run"


def add_arguments(p) -> None:
    p.add_argument("spec", help="audit spec (YAML)")
    p.add_argument("--out", required=True, help="output folder for report.html, report.json")
    p.add_argument("--junit", default=None, help="also write JUnit XML here")
    p.add_argument("--device", default=None, help="cpu, cuda or auto (overrides the spec)")


def main(args) -> int:
    from ..atomic import check_file_target, check_output_folder
    from ..audit.run import audit

    check_output_folder(args.out)  # before any model work, not after the whole audit ran
    if args.junit:
        check_file_target(args.junit, "--junit")
    report = audit(args.spec, device=args.device)
    out = report.save(args.out, junit=args.junit)
    print(repr(report))
    print(f"report: {out / 'report.html'}")
    return 0 if report.passed else 1
