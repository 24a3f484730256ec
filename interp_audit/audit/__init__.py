"""Audits: a spec (what must stay invariant, on which paths) in, a verdict with evidence out."""
