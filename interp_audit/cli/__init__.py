"""``interp-audit``: :mod:`.main` parses and dispatches; one module per command in
:mod:`.commands`."""
