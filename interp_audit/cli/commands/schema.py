"""``interp-audit schema``: the JSON Schema of audit specs (for editors' YAML completion).

Point an editor at it, e.g. ``interp-audit schema > audit.schema.json`` and, in VS Code's YAML
extension, ``# yaml-language-server: $schema=audit.schema.json`` at the top of a spec.
"""

from __future__ import annotations

NAME = "schema"
HELP = "print the JSON Schema of audit specs (every key, type, default and description)"


def add_arguments(p) -> None:
    p.add_argument("--markdown", action="store_true", help="print the Markdown reference instead")


def main(args) -> int:
    import json

    from interp_audit.audit.reference import json_schema, reference

    print(reference() if args.markdown else json.dumps(json_schema(), indent=2))
    return 0
