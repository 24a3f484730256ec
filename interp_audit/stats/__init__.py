"""Statistics shared by checks, the trade-off and feature cards: cluster bootstrap, CIs and
verdicts. Imports only :mod:`interp_audit.core`."""
