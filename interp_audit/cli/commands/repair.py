"""``interp-audit repair SPEC --check NAME --out DIR``: ship an intervention check's repair.

Folds the check's ablation into the weights, writes the repaired model to ``DIR/model`` (a
Hugging Face folder for models read from one, else the project's format), loads it back from
disk and re-runs the whole spec on it: ``DIR/report.json`` + ``report.html`` with every
verdict before and after, the repair's cost per group and the admissible paths it damaged
(``DIR/before/`` holds the audit of the model as given). Exit codes follow ``run``: 0 the
repaired model passes every check, 1 a check fails or is inconclusive, 2 the repair could not
be made (an ablation weights cannot carry is refused, naming the first such component).
``interp-audit verify DIR`` checks the weights against the repair record and re-runs.
"""

from __future__ import annotations

NAME = "repair"
HELP = (
    "fold an intervention check's repair into the weights, export DIR/model and re-audit it "
    "from disk; exit 0 pass, 1 fail or inconclusive, 2 could not repair"
)


def add_arguments(p) -> None:
    from interp_audit.cli.commands.run import add_device_argument, add_gate_argument

    p.add_argument("spec", help="audit spec (YAML)")
    p.add_argument("--check", required=True, help="the intervention check whose repair to ship")
    p.add_argument("--out", required=True, help="output folder (model/, report.json, before/)")
    add_device_argument(p)
    add_gate_argument(p)


def main(args) -> int:
    import sys
    from pathlib import Path

    from interp_audit.audit.record import cli_command
    from interp_audit.audit.repair import repair
    from interp_audit.cli.commands.run import gate

    argv = ["repair", str(Path(args.spec).resolve()), "--check", args.check, "--out"]
    argv.append(str(Path(args.out).resolve()))
    if args.device:
        argv += ["--device", args.device]
    outcome = repair(args.spec, args.check, args.out, device=args.device, command=cli_command(argv))
    print(repr(outcome))
    print(f"repaired model: {outcome.model}")
    print(f"report: {Path(args.out) / 'report.html'}")
    return gate(outcome.after, allow_inconclusive=args.allow_inconclusive, stream=sys.stderr)
