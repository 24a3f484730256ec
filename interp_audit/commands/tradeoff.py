"""``interp-audit tradeoff SPEC --out DIR``: sweep top-k ablations (zero / mean / resample) of
the located components and write the trade-off table and Pareto plot (interp_audit.tradeoff)."""

from __future__ import annotations

NAME = "tradeoff"
HELP = "sweep repairs (top-k located components x ablation kind): table + Pareto plot with CIs"


def add_arguments(p) -> None:
    p.add_argument("spec", help="an audit spec with a causal section and locate steps")
    p.add_argument("--out", required=True, help="folder for tradeoff.csv/.json/.html")
    p.add_argument("--k", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    p.add_argument(
        "--kinds",
        nargs="+",
        default=["zero", "mean", "resample"],
        choices=["zero", "mean", "resample"],
    )
    p.add_argument("--locate", nargs="+", default=None, help="locate steps that rank components")
    p.add_argument("--reference", default=None, help="contrast for mean/resample ablation")
    p.add_argument("--utility", default=None, help="factual utility contrast (label, group_by)")
    p.add_argument("--n", type=int, default=200, help="changed units per path")


def main(args) -> int:
    from ..tradeoff import tradeoff

    table = tradeoff(
        args.spec,
        ks=tuple(args.k),
        kinds=tuple(args.kinds),
        locate=args.locate,
        reference=args.reference,
        utility=args.utility,
        n=args.n,
    )
    out = table.save(args.out)
    cols = [
        "repair",
        "inadmissible left",
        "admissible kept",
        "utility",
        "worst group",
        "worst-group utility",
        "pareto",
    ]
    frame = table.to_frame()
    print(frame[[c for c in cols if c in frame]].round(3).to_string(index=False))
    print(f"trade-off: {out / 'tradeoff.html'}")
    return 0
