"""Structural causal models in the zoo, by name: contrast sets for audit specs' ``scm:`` key."""

from __future__ import annotations

from ..errors import SpecError, did_you_mean

SCMS = ("readmission",)


def scm_contrast(
    subject,
    name: str,
    *,
    path: str,
    n: int,
    seed: int,
    attribute: str,
    split: str,
    answers: str = "fixed",
):
    name = name.removeprefix("zoo:")
    if name == "readmission":
        from .readmission import contrast

        return contrast(
            subject, path, n=n, seed=seed, attribute=attribute, split=split, answers=answers
        )
    raise SpecError(f"unknown SCM {name!r}; available: {', '.join(SCMS)}{did_you_mean(name, SCMS)}")
