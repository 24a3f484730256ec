"""``interp-audit demo``: the readmission audit end to end (or the real MiniLM encoder)."""

from __future__ import annotations

NAME = "demo"
HELP = "run the readmission audit end to end (or --minilm: the real MiniLM encoder)"


def add_arguments(p) -> None:
    p.add_argument("--out", default="demo-report", help="output folder (default: demo-report)")
    p.add_argument(
        "--minilm",
        action="store_true",
        help="patching sweep on the real all-MiniLM-L6-v2 encoder instead",
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N, mps or auto")


def main(args) -> int:
    import json

    if not args.minilm:
        from interp_audit.cli.demo import run_demo

        report, out, table = run_demo(args.out, device=args.device)
        print(repr(report))
        if table is not None:
            print("\nrepair experiment (held-out patients):")
            cols = ["family", "model", "acc_observed", "acc_fair", "A.direct", "A.proxy"]
            cols += ["A.via_labs", "E.contextual", "E.spurious"]
            print(table[cols].round(3).to_string(index=False))
            print(f"repair plot: {out / 'repair.html'}")
        print(f"\nreport: {out / 'report.html'}")
        return 0
    from interp_audit.cli.demo import run_minilm_demo

    out = run_minilm_demo(args.out, device=args.device)
    summary = json.loads((out / "summary.json").read_text())
    print(f"demo: {summary['pairs']} pairs on {summary['model']['source']}")
    print("top heads:", ", ".join(f"{c} {v:+.3f}" for c, v in summary["top_heads"]))
    print(f"report: {out / 'report.html'}")
    return 0
