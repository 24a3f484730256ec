"""``interp-audit``: command-line entry point.

Exit codes: 0 success, 1 a check failed (audit specs), 2 the command could not run, with the
reason on stderr in one line. ``--help`` does not import TransformerLens.
"""

from __future__ import annotations

import argparse
import sys


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="interp-audit", description="Mechanistic-interpretability audits of transformers."
    )
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser(
        "run", help="run an audit spec; exit 0 pass, 1 a check failed, 2 could not run"
    )
    r.add_argument("spec", help="audit spec (YAML)")
    r.add_argument(
        "--out", required=True, help="output folder for report.html, report.json, effects/"
    )
    r.add_argument("--junit", default=None, help="also write JUnit XML here")
    r.add_argument("--device", default=None, help="cpu, cuda or auto (overrides the spec)")
    rep = sub.add_parser("report", help="re-render report.html (and JUnit) from a saved run folder")
    rep.add_argument("folder", help="a folder written by `interp-audit run`")
    rep.add_argument("--junit", default=None)
    d = sub.add_parser(
        "demo", help="run the readmission audit end to end (or --minilm: the real MiniLM encoder)"
    )
    d.add_argument("--out", default="demo-report", help="output folder (default: demo-report)")
    d.add_argument(
        "--minilm",
        action="store_true",
        help="patching sweep on the real all-MiniLM-L6-v2 encoder instead",
    )
    d.add_argument("--device", default=None, help="cpu, cuda or auto")
    s = sub.add_parser("sweep", help="one patching or attribution sweep over prompt pairs")
    s.add_argument("--model", required=True, help="zoo:NAME, a folder, or a TransformerLens name")
    s.add_argument("--clean", required=True, nargs="+", help="clean prompts")
    s.add_argument(
        "--counterfactual", required=True, nargs="+", help="counterfactual prompts (same count)"
    )
    s.add_argument(
        "--answers", nargs=2, metavar=("CORRECT", "INCORRECT"), help="answer tokens (causal LMs)"
    )
    s.add_argument(
        "--sites", default="heads", help="heads, resid_pre, attn_out, mlp_out, ... (default heads)"
    )
    s.add_argument("--per-position", action="store_true")
    s.add_argument("--metric", default="logit_diff")
    s.add_argument(
        "--method",
        default="patch",
        choices=["patch", "atp", "atp*", "ig"],
        help="exact patching (default) or an attribution estimate",
    )
    s.add_argument("--out", default=None, help="folder to save the Effects (JSON + safetensors)")
    s.add_argument("--device", default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .errors import AuditError

    try:
        if args.command == "run":
            import interp_audit as ia

            report = ia.audit(args.spec, device=args.device)
            out = report.save(args.out, junit=args.junit)
            print(repr(report))
            print(f"report: {out / 'report.html'}")
            return 0 if report.passed else 1
        if args.command == "report":
            import json
            from pathlib import Path

            from .report import render_html, render_junit

            folder = Path(args.folder)
            if not (folder / "report.json").exists():
                raise AuditError(
                    f"{str(folder)!r} has no report.json (run `interp-audit run SPEC --out "
                    f"{folder}` first)"
                )
            data = json.loads((folder / "report.json").read_text())
            (folder / "report.html").write_text(render_html(data))
            if args.junit:
                Path(args.junit).write_text(render_junit(data))
            print(f"report: {folder / 'report.html'}")
            return 0 if data["passed"] else 1
        if args.command == "demo" and not args.minilm:
            from .demo import run_demo

            report, out, table = run_demo(args.out, device=args.device)
            print(repr(report))
            print("\nrepair experiment (held-out patients):")
            cols = [
                "family",
                "model",
                "acc_observed",
                "acc_fair",
                "A.direct",
                "A.proxy",
                "A.via_labs",
                "E.contextual",
                "E.spurious",
            ]
            print(table[cols].round(3).to_string(index=False))
            print(f"\nreport: {out / 'report.html'}\nrepair plot: {out / 'repair.html'}")
            return 0
        if args.command == "demo":
            from .demo import run_minilm_demo

            out = run_minilm_demo(args.out, device=args.device)
            import json

            summary = json.loads((out / "summary.json").read_text())
            print(f"demo: {summary['pairs']} pairs on {summary['model']['source']}")
            print("top heads:", ", ".join(f"{c} {v:+.3f}" for c, v in summary["top_heads"]))
            print(f"report: {out / 'report.html'}")
            return 0
        if args.command == "sweep":
            import interp_audit as ia

            subject = ia.load_model(args.model, device=args.device)
            pairs = ia.ContrastSet.from_prompts(
                subject,
                args.clean,
                args.counterfactual,
                answers=tuple(args.answers) if args.answers else None,
            )
            if args.method == "patch":
                eff = ia.patch(
                    subject, pairs, args.metric, sites=args.sites, per_position=args.per_position
                )
            else:
                eff = ia.attribute(
                    subject,
                    pairs,
                    args.metric,
                    sites=args.sites,
                    per_position=args.per_position,
                    method=args.method,
                )
            print(eff)
            for comp, val in eff.top(10):
                print(f"{comp:>20s} {val:+.4f}")
            if args.out:
                print(f"saved: {eff.save(args.out)}")
            return 0
    except AuditError as err:
        print(f"interp-audit: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # the audit could not run: say why in one line, exit 2
        first = str(err).splitlines()[0] if str(err) else ""
        print(f"interp-audit: error: {type(err).__name__}: {first}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
