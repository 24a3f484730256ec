"""The user's causal question: a graph with admissible paths, structural equations, and the
path-specific counterfactual contrasts that audits measure on a model."""

from interp_audit.causal.graph import CausalGraph, format_path, parse_path
from interp_audit.causal.model import CausalModel, PathDraw, Renderer
from interp_audit.causal.scm import SCM, Units, Variable

__all__ = [
    "SCM",
    "CausalGraph",
    "CausalModel",
    "PathDraw",
    "Renderer",
    "Units",
    "Variable",
    "format_path",
    "parse_path",
]
