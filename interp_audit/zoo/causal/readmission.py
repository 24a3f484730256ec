"""Structural equations of the readmission SCM, written for interp_audit's causal loader.

The same model as ``circuits/readmission/scm.py`` (the hand-written reference the tests
compare against unit by unit), expressed as one function per variable: parents + noise -> value.
Noise is sampled in the order of VARIABLES from one generator, as the reference does.
"""

import torch

VARIABLES = ["A", "E", "Xs", "X", "Z", "readmitted", "readmitted_fair"]
VALUES = {
    "A": ["young", "mid", "old"],
    "E": ["0", "1", "2", "3"],
    "Xs": ["low", "normal", "high"],
    "X": ["low", "normal", "high"],
    "Z": ["private", "medicare", "medicaid"],
}
SHARED_NOISE = {"readmitted_fair": "readmitted"}

ARTEFACT = torch.tensor([0.0, 0.0, 1.0, -0.8])  # hospital 2's machine reads high, 3's low
POLICY = torch.tensor([0.0, 0.6, -0.4, 0.2])  # hospital discharge policy (admissible)
INS_BIAS = torch.tensor([0.0, 0.5, 0.9])  # insurance -> readmission (historical bias)
INS_GIVEN_AGE = torch.tensor([[0.70, 0.05, 0.25], [0.60, 0.10, 0.30], [0.15, 0.80, 0.05]])
CUTS = torch.tensor([-0.6, 0.6])


def noise_A(n, generator):
    return torch.multinomial(
        torch.tensor([0.35, 0.35, 0.30]), n, replacement=True, generator=generator
    )


def A(u):
    return u


def noise_E(n, generator):
    return torch.randint(0, 4, (n,), generator=generator)


def E(u):
    return u


def noise_Xs(n, generator):
    return torch.randn(n, generator=generator)


def Xs(A, u):
    """True lab severity (continuous; a float tensor): age raises it."""
    return 0.9 * (A.float() - 1) + u


def X(Xs, E):
    """Measured labs, as the model reads them: severity plus the hospital's artefact, banded."""
    return torch.bucketize(Xs + ARTEFACT[E], CUTS)


def noise_Z(n, generator):
    return torch.rand(n, generator=generator)


def Z(A, u):
    return (u[:, None] >= INS_GIVEN_AGE[A].cumsum(-1)).sum(-1).clamp(max=2)


def noise_readmitted(n, generator):
    return torch.rand(n, generator=generator)


def _clinical(Xs, E):
    return -0.8 + 1.5 * (torch.bucketize(Xs, CUTS).float() - 1) + POLICY[E]


def readmitted(Xs, E, A, Z, u):
    """Observed label: clinical risk + hospital policy + the historical age and insurance bias."""
    return (u < torch.sigmoid(_clinical(Xs, E) + 0.9 * (A.float() - 1) + INS_BIAS[Z])).long()


def _population_bias() -> float:
    """Mean of the inadmissible terms over 200k units (seed 12345), so fair base rates match."""
    g = torch.Generator().manual_seed(12345)
    n = 200_000
    a = noise_A(n, g)
    noise_E(n, g)
    noise_Xs(n, g)
    z = Z(a, noise_Z(n, g))
    return float((0.9 * (a.float() - 1) + INS_BIAS[z]).mean())


_BIAS = None


def readmitted_fair(Xs, E, u):
    """The fair label: inadmissible terms replaced by their population mean, same noise."""
    global _BIAS
    if _BIAS is None:
        _BIAS = _population_bias()
    return (u < torch.sigmoid(_clinical(Xs, E) + _BIAS)).long()
