"""``interp-audit tradeoff SPEC --out DIR``: sweep repairs of one objective (top-k component
ablations, SAE-feature ablations, concept erasure, retrained baselines) and re-measure every
objective; writes the table and Pareto plot (interp_audit.audit.tradeoff)."""

from __future__ import annotations

NAME = "tradeoff"
HELP = (
    "sweep repairs (top-k components x ablation kind, SAE features, retrained baselines) and "
    "re-measure every objective: table + Pareto plot with CIs"
)


def add_arguments(p) -> None:
    p.add_argument(
        "spec",
        help="an audit spec (its tradeoff: section holds the settings; flags override them)",
    )
    p.add_argument("--out", required=True, help="folder for tradeoff.csv/.json/.html")
    p.add_argument("--k", type=int, nargs="+", default=None, help="default 1 2 4 8 16 32")
    p.add_argument(
        "--kinds",
        nargs="+",
        default=None,
        choices=["zero", "mean", "resample", "erase"],
        help="default zero mean resample; erase adds LEACE concept erasure rows",
    )
    p.add_argument(
        "--erase-sites",
        nargs="+",
        default=None,
        help="residual sites the erase rows erase at (L1.resid_pre; join sites fitted together "
        "with '+': L0.resid_pre@1+L0.resid_pre@2); default: see the spec reference",
    )
    p.add_argument(
        "--objective",
        nargs="+",
        default=None,
        help="audited source(s) whose inadmissible paths the repair removes (default: those the "
        "spec's locate steps target); the other sources' paths are the other objectives",
    )
    p.add_argument("--locate", nargs="+", default=None, help="locate steps that rank components")
    p.add_argument(
        "--by",
        default=None,
        choices=["abs", "signed"],
        help="rank by summed |effect| (default) or summed signed effect (what raises the metric)",
    )
    p.add_argument(
        "--sites",
        default=None,
        help="sites patched per position to rank components when the spec locates nothing for "
        "the objective (default heads_v)",
    )
    p.add_argument("--sae", default=None, help="SAE whose top-k features to ablate (zoo:NAME, …)")
    p.add_argument("--sae-id", default=None, help="the SAE within a hub release")
    p.add_argument("--sae-kinds", nargs="+", default=None, choices=["zero", "mean"])
    p.add_argument(
        "--baseline",
        nargs="+",
        action="append",
        default=None,
        metavar=("MODEL", "MASKED"),
        help="a retrained model to compare, then the graph variables its input hides (VAR, shown "
        "as its word with '?', or VAR=WORD); repeat for more (e.g. --baseline "
        "zoo:readmission-ftu A)",
    )
    p.add_argument("--no-checks", action="store_true", help="do not re-run the spec's checks")
    p.add_argument("--reference", default=None, help="contrast for mean/resample ablation")
    p.add_argument(
        "--utility",
        default=None,
        help="a labelled contrast (accuracy) or a held-out text file (perplexity)",
    )
    p.add_argument("--n", type=int, default=None, help="changed units per path (default 200)")
    p.add_argument("--n-boot", type=int, default=None, help="bootstrap draws per CI (default 500)")


def main(args) -> int:
    from interp_audit.audit.tradeoff import tradeoff
    from interp_audit.core.files import check_output_folder

    check_output_folder(args.out)
    baselines = {b[0]: _mask(b[1:]) for b in args.baseline} if args.baseline else None
    table = tradeoff(
        args.spec,
        ks=args.k,
        kinds=args.kinds,
        objective=args.objective,
        locate=args.locate,
        sites=args.sites,
        by=args.by,
        sae=args.sae,
        sae_id=args.sae_id,
        sae_kinds=args.sae_kinds,
        baselines=baselines,
        checks=False if args.no_checks else None,
        reference=args.reference,
        utility=args.utility,
        n=args.n,
        n_boot=args.n_boot,
        erase_sites=[e.split("+") for e in args.erase_sites] if args.erase_sites else None,
    )
    out = table.save(args.out)
    print(table.to_frame(summary=True).round(3).to_string(index=False))
    meta = table.meta
    if meta.get("ks beyond the ranking"):
        print(f"not swept: k = {meta['ks beyond the ranking']} (only {len(table.ranking)} ranked)")
    if meta.get("checks not re-run"):
        print(f"checks not re-run (own repair or located effects): {meta['checks not re-run']}")
    print(f"trade-off: {out / 'tradeoff.html'}")
    return 0


def _mask(items: list[str]) -> tuple[str, ...] | dict[str, str | None]:
    """``A Z`` -> ("A", "Z"); ``A=age:unknown Z`` -> {"A": "age:unknown", "Z": None}."""
    if not any("=" in i for i in items):
        return tuple(items)
    return {i.split("=", 1)[0]: (i.split("=", 1)[1] if "=" in i else None) for i in items}
