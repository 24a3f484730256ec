"""``interp-audit sensitivity SPEC --contest "C -> Y" ...``: the spec's verdicts under every
admissibility choice for the contested paths (and each alternative SCM file), each path measured
once; which checks hold under all (interp_audit.audit.sensitivity)."""

from __future__ import annotations

NAME = "sensitivity"
HELP = (
    "verdicts under disagreement: every check under every admissibility choice for contested "
    "paths (and alternative SCM files); which hold under all"
)


def add_arguments(p) -> None:
    p.add_argument("spec", help="an audit spec with a causal section (its sensitivity: section "
                   "holds the defaults; flags override them)")  # fmt: skip
    p.add_argument(
        "--contest",
        nargs="+",
        action="extend",
        default=None,
        metavar="PATH",
        help="contested paths, e.g. --contest 'G -> C -> Y' (each taken admissible and "
        "inadmissible; every combination is run)",
    )
    p.add_argument(
        "--scm",
        nargs="+",
        action="extend",
        default=None,
        metavar="FILE",
        help="alternative SCM files (Python or tables YAML) for the same graph",
    )
    p.add_argument("--out", default=None, help="folder for sensitivity.json and .md")
    p.add_argument("--device", default=None, help="cpu, cuda or auto (overrides the spec)")


def main(args) -> int:
    """Exit 0 when every check passes under every choice, 1 when one fails or is inconclusive
    under some choice (2, from the entry point, when it could not run)."""
    from interp_audit.audit.sensitivity import sensitivity
    from interp_audit.core.files import check_output_folder

    if args.out:
        check_output_folder(args.out, "sensitivity output")
    res = sensitivity(args.spec, contest=args.contest, scms=args.scm, device=args.device)
    print(res.to_markdown())
    holds = res.holds_under_all()
    print(f"\nhold under every choice: {', '.join(holds) or 'none'}")
    if res.depends():
        print(f"depend on the choice: {', '.join(res.depends())}")
    if res.choice_free:
        print(f"measured once (no admissibility question): {', '.join(res.choice_free)}")
    if args.out:
        print(f"sensitivity: {res.save(args.out) / 'sensitivity.md'}")
    return 0 if res.passed else 1
