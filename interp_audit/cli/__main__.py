"""``python -m interp_audit.cli``."""

from interp_audit.cli.main import console

console()
