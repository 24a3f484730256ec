"""``interp-audit sweep``: one locate sweep over prompt pairs from the command line."""

from __future__ import annotations

NAME = "sweep"
HELP = "one patching or attribution sweep over prompt pairs"


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="zoo:NAME, a folder, or a TransformerLens name")
    p.add_argument("--clean", required=True, nargs="+", help="clean prompts")
    p.add_argument(
        "--counterfactual", required=True, nargs="+", help="counterfactual prompts (same count)"
    )
    p.add_argument(
        "--answers",
        nargs=2,
        metavar=("CORRECT", "INCORRECT"),
        help="answer tokens (causal LMs)",
    )
    p.add_argument("--sites", default="heads", help="heads, resid_pre, attn_out, mlp_out, ...")
    p.add_argument("--per-position", action="store_true")
    p.add_argument("--metric", default="logit_diff")
    p.add_argument(
        "--method",
        default="patch",
        help="a registered locate method: patch (exact, default), atp, atp*, ig, ...",
    )
    p.add_argument("--sae", default=None, help="sae_patch / sae_atp: zoo:NAME, folder or release")
    p.add_argument("--sae-id", default=None, help="the SAE within a hub release")
    p.add_argument("--out", default=None, help="folder to save the Effects (JSON + safetensors)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N, mps or auto")


def readable_flag_error(err) -> str:
    """A pydantic error on the flags as one line: the flag, what is wrong, what is valid."""
    e = err.errors()[0]
    msg = str(e["msg"]).removeprefix("Value error, ")
    loc = [str(x) for x in e["loc"]]
    flag = f"--{loc[0].replace('_', '-')}: " if loc else ""
    return f"{flag}{msg}"


def main(args) -> int:
    from pydantic import ValidationError

    from interp_audit.audit.context import AuditContext
    from interp_audit.audit.spec import LocateSpec
    from interp_audit.core.errors import SpecError
    from interp_audit.engine.contrasts import ContrastSet
    from interp_audit.methods.locate.methods import run_locate
    from interp_audit.model.loading import load_model
    from interp_audit.model.metrics import get_metric

    if args.out:
        from interp_audit.core.files import check_output_folder

        check_output_folder(args.out)  # before any model work
    metric = get_metric(args.metric)
    sae = {k: v for k, v in (("sae", args.sae), ("sae_id", args.sae_id)) if v is not None}
    try:
        step = LocateSpec(
            method=args.method,
            contrast="cli",
            sites=args.sites,
            per_position=args.per_position,
            **sae,
        )
    except ValidationError as err:  # e.g. --method bogus: name it and the registered methods
        raise SpecError(readable_flag_error(err)) from None
    subject = load_model(args.model, device=args.device)
    answers = tuple(args.answers) if args.answers else None
    pairs = ContrastSet.from_prompts(subject, args.clean, args.counterfactual, answers=answers)
    ctx = AuditContext(subject=subject, contrasts={"cli": pairs}, metric=metric)
    eff = run_locate(step, pairs, metric, ctx)
    print(eff)
    for comp, val in eff.top(10):
        print(f"{comp:>20s} {val:+.4f}")
    if args.out:
        print(f"saved: {eff.save(args.out)}")
    return 0
