"""``interp-audit tradeoff SPEC --out DIR``: sweep repairs of one objective (top-k component
ablations, SAE-feature ablations, concept erasure, retrained baselines) and re-measure every
objective; writes the table and Pareto plot (interp_audit.audit.tradeoff)."""

from __future__ import annotations

NAME = "tradeoff"
HELP = (
    "sweep repairs (top-k components x ablation kind, SAE features, retrained baselines) and "
    "re-measure every objective: table + Pareto plot with CIs"
)


#: flags whose name or action differs from their TradeoffSpec key
_FLAGS = {"ks": "--k", "baselines": "--baseline", "checks": "--no-checks"}


def add_arguments(p) -> None:
    """``spec`` and ``--out``, then one flag per key of the spec's ``tradeoff:`` section
    (:class:`~interp_audit.audit.sections.TradeoffSpec`: its types, choices and docs)."""
    from interp_audit.audit.sections import TradeoffSpec

    p.add_argument(
        "spec",
        help="an audit spec (its tradeoff: section holds the settings; flags override them)",
    )
    p.add_argument("--out", required=True, help="folder for tradeoff.csv/.json/.html")
    for name, field in TradeoffSpec.model_fields.items():
        flag = _FLAGS.get(name, "--" + name.replace("_", "-"))
        doc = " ".join((field.description or "").split())
        if name == "checks":
            p.add_argument(
                flag, dest=name, action="store_const", const=False, help="do not re-run them"
            )
        elif name == "baselines":
            p.add_argument(
                flag,
                dest=name,
                nargs="+",
                action="append",
                metavar=("MODEL", "MASKED"),
                help="a retrained model to compare, then the graph variables its input hides "
                "(VAR, shown as its word with '?', or VAR=WORD); repeat for more (e.g. "
                "--baseline zoo:readmission-ftu A)",
            )
        else:
            default = field.get_default(call_default_factory=True)
            shown = " ".join(map(str, default)) if isinstance(default, list) else default
            help_ = doc if default is None else f"{doc} (default {shown})"
            kw = _argparse(field.annotation)
            if "choices" not in kw:
                kw["metavar"] = flag[2:].upper().replace("-", "_")
            p.add_argument(flag, dest=name, default=None, help=help_, **kw)


def _argparse(annotation) -> dict:
    """argparse ``type``/``nargs``/``choices`` for a TradeoffSpec field's annotation."""
    import types
    import typing

    kw: dict = {}
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        listed = [a for a in args if typing.get_origin(a) is list]
        return _argparse(listed[0] if listed else args[0])
    if typing.get_origin(annotation) is list:
        kw["nargs"] = "+"
        annotation = args[0]
        args = list(typing.get_args(annotation))
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = args[0]
    if typing.get_origin(annotation) is typing.Literal:
        kw["choices"] = list(typing.get_args(annotation))
    elif annotation in (int, float):
        kw["type"] = annotation
    return kw


def main(args) -> int:
    from interp_audit.audit.sections import TradeoffSpec
    from interp_audit.audit.tradeoff import tradeoff
    from interp_audit.core.files import check_output_folder

    check_output_folder(args.out)
    given = {name: getattr(args, name) for name in TradeoffSpec.model_fields}
    if given["baselines"]:
        given["baselines"] = {b[0]: _mask(b[1:]) for b in given["baselines"]}
    if given["erase_sites"]:  # sites fitted together are joined with '+'
        given["erase_sites"] = [e.split("+") for e in given["erase_sites"]]
    table = tradeoff(args.spec, **given)
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
