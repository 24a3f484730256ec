"""``interp-audit verify DIR``: re-run a saved report's spec and compare every number and hash.

Exit 0 when the content hash, the weight / spec / data hashes and every re-computed number
match; 1 when anything differs (tampering or drift, each difference listed); 2 when the report
cannot be read or its spec cannot run. ``--against DIR2`` compares two saved folders instead
(no re-run): their results hashes, then every number where they differ.
"""

from __future__ import annotations

NAME = "verify"
HELP = "re-run a saved report's spec; exit 0 everything matches, 1 something differs, 2 error"


def add_arguments(p) -> None:
    p.add_argument("folder", help="a folder written by `interp-audit run`")
    p.add_argument(
        "--against",
        default=None,
        metavar="DIR2",
        help="compare with another run folder (results_sha256, then every number); no re-run",
    )
    p.add_argument("--device", default=None, help="re-run on this device (default: as saved)")
    p.add_argument(
        "--rtol", type=float, default=1e-6, help="relative tolerance for numbers (default 1e-6)"
    )


def main(args) -> int:
    from interp_audit.audit.verify import compare_runs, verify

    if args.against is not None:
        result = compare_runs(args.folder, args.against, rtol=args.rtol)
    else:
        result = verify(args.folder, device=args.device, rtol=args.rtol)
    print(result)
    return 0 if result.ok else 1
