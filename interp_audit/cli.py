"""``interp-audit``: command-line entry point.

Exit codes: 0 success, 1 a check failed (audit specs), 2 the command could not run, with the
reason on stderr in one line. ``--help`` does not import TransformerLens.
"""

from __future__ import annotations

import argparse
import sys


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="interp-audit", description="Mechanistic-interpretability audits of transformers.")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="run the demo audit on the real all-MiniLM-L6-v2 encoder")
    d.add_argument("--out", default="demo-report", help="output folder (default: demo-report)")
    d.add_argument("--device", default=None, help="cpu, cuda or auto")
    s = sub.add_parser("sweep", help="one exact patching sweep over prompt pairs")
    s.add_argument("--model", required=True, help="zoo:NAME, a folder, or a TransformerLens name")
    s.add_argument("--clean", required=True, nargs="+", help="clean prompts")
    s.add_argument("--counterfactual", required=True, nargs="+", help="counterfactual prompts (same count)")
    s.add_argument("--answers", nargs=2, metavar=("CORRECT", "INCORRECT"), help="answer tokens (causal LMs)")
    s.add_argument("--sites", default="heads", help="heads, resid_pre, attn_out, mlp_out, ... (default heads)")
    s.add_argument("--per-position", action="store_true")
    s.add_argument("--metric", default="logit_diff")
    s.add_argument("--out", default=None, help="folder to save the Effects (JSON + safetensors)")
    s.add_argument("--device", default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .errors import AuditError

    try:
        if args.command == "demo":
            from .demo import run_demo

            out = run_demo(args.out, device=args.device)
            import json

            summary = json.loads((out / "summary.json").read_text())
            print(f"demo: {summary['pairs']} pairs on {summary['model']['source']}")
            print("top heads:", ", ".join(f"{c} {v:+.3f}" for c, v in summary["top_heads"]))
            print(f"report: {out / 'report.html'}")
            return 0
        if args.command == "sweep":
            import interp_audit as ia

            subject = ia.load_model(args.model, device=args.device)
            pairs = ia.ContrastSet.from_prompts(subject, args.clean, args.counterfactual, answers=tuple(args.answers) if args.answers else None)
            eff = ia.patch(subject, pairs, args.metric, sites=args.sites, per_position=args.per_position)
            print(eff)
            for comp, val in eff.top(10):
                print(f"{comp:>20s} {val:+.4f}")
            if args.out:
                print(f"saved: {eff.save(args.out)}")
            return 0
    except AuditError as err:
        print(f"interp-audit: error: {err}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
