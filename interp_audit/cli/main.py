"""``interp-audit``: command-line entry point.

Exit codes: 0 success, 1 a check failed (audit specs), 2 the command could not run, with the
reason on stderr in one line. Subcommands live one per module in :mod:`interp_audit.cli.commands`;
``--help`` does not import TransformerLens.
"""

from __future__ import annotations

import argparse
import sys


def _parser() -> argparse.ArgumentParser:
    from interp_audit.cli.commands import commands

    p = argparse.ArgumentParser(
        prog="interp-audit", description="Mechanistic-interpretability audits of transformers."
    )
    sub = p.add_subparsers(dest="command", required=True)
    for name, module in commands().items():
        module.add_arguments(sub.add_parser(name, help=module.HELP))
    return p


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every context (hooks, atomic writes) unwinds."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None, *, restore_signals: bool = True) -> int:
    import signal

    previous = None
    try:  # SIGTERM unwinds like Ctrl-C (contexts exit, temp files go); restored on return
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (embedded): keep the default
        pass
    try:
        return _main(argv)
    except KeyboardInterrupt as err:
        # 128 + signal number, as a shell reports it; one line, no traceback. Files are written
        # atomically with report.json last, so the folder is complete or visibly incomplete.
        term = isinstance(err, Terminated)
        print(
            f"interp-audit: interrupted by {'SIGTERM' if term else 'SIGINT'}; a run folder "
            "without report.json is incomplete and will be refused",
            file=sys.stderr,
        )
        return 143 if term else 130
    finally:
        if previous is not None and restore_signals:
            signal.signal(signal.SIGTERM, previous)


def console() -> None:
    """The ``interp-audit`` executable: main(), then exit with its status.

    Once main() has returned, the work is committed (or refused): a signal arriving while the
    interpreter shuts down must not turn a finished run into one killed by SIGINT/SIGTERM.
    """
    import signal

    rc = 130
    try:
        rc = main(restore_signals=False)
    except KeyboardInterrupt as err:  # landed between main's return and here
        rc = 143 if isinstance(err, Terminated) else 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(rc)


def _main(argv: list[str] | None) -> int:
    from interp_audit.cli.commands import commands

    args = _parser().parse_args(argv)
    from interp_audit.core.errors import AuditError

    try:
        return int(commands()[args.command].main(args))
    except AuditError as err:
        print(f"interp-audit: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # the audit could not run: say why in one line, exit 2
        first = str(err).splitlines()[0] if str(err) else ""
        if callable(getattr(err, "errors", None)) and hasattr(err, "title"):  # pydantic's
            e = err.errors()[0]  # its first line only counts errors: say which and why
            where = ".".join(str(x) for x in e.get("loc", ()))
            first = (f"{where}: " if where else "") + str(e.get("msg", "")).removeprefix(
                "Value error, "
            )
        print(f"interp-audit: error: {type(err).__name__}: {first}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    console()
