"""Case-study experiments (import with the repository root on sys.path)."""
