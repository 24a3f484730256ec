"""The readmission SCM: who is readmitted within 30 days, and through which paths.

Variables (one unit = one patient), all exogenous noise drawn once per unit so that
counterfactuals share it (the "same patient" in another world):

* A  age band in {young, mid, old}, P = (0.35, 0.35, 0.30)               -- protected
* E  hospital in {0, 1, 2, 3}, uniform                                   -- environment
* X* true lab severity  = 0.9 (a - 1) + U_X,  U_X ~ N(0, 1)              -- A -> X* (clinical)
* X  measured labs      = X* + artefact[e], artefact = (0, 0, +1.0, -0.8) -- E -> X (spurious)
      shown to the model discretised: low (< -0.6), normal, high (> 0.6)
* Z  insurance in {private, medicare, medicaid} ~ P(Z | A) by inverse CDF of U_Z ~ U(0, 1):
      young (.70 .05 .25), mid (.60 .10 .30), old (.15 .80 .05)          -- A -> Z (proxy)
* Y  readmitted = U_Y < sigmoid(-0.8 + 1.5 (lab*(X*) - 1) + policy[e] + 0.9 (a - 1) + bias[z])
      policy = (0, .6, -.4, .2) (E -> Y, contextual), 0.9 (a - 1) (A -> Y, direct historical
      bias), bias = (0, .5, .9) (Z -> Y, proxy historical bias); U_Y ~ U(0, 1)

Admissible: A -> X* -> Y (age changes labs), E -> Y (hospital policy). Inadmissible: A -> Y,
A -> Z -> Y, E -> X -> Y (a measurement artefact). The *fair* label drops the inadmissible
terms (replaced by their population mean, so base rates match) and uses the same U_Y.

The model reads ``<bos> age:A ins:Z lab:X hosp:E ->`` and answers YES or NO. Path-specific
counterfactuals change only the tokens the path reaches: for A (old patients, had they been
young) ``total`` (age, ins and lab), ``direct`` (age token), ``proxy`` (ins), ``via_labs``
(lab); for E (patients of hospitals 0, 1, 3, had they gone to hospital 2) ``total`` (hosp and
lab), ``contextual`` (hosp), ``spurious`` (lab).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

AGES = ("young", "mid", "old")
INSURANCE = ("private", "medicare", "medicaid")
LABS = ("low", "normal", "high")
N_HOSPITALS = 4
AGE_P = torch.tensor([0.35, 0.35, 0.30])
INS_GIVEN_AGE = torch.tensor([[0.70, 0.05, 0.25], [0.60, 0.10, 0.30], [0.15, 0.80, 0.05]])
ARTEFACT = torch.tensor([0.0, 0.0, 1.0, -0.8])
POLICY = torch.tensor([0.0, 0.6, -0.4, 0.2])
INS_BIAS = torch.tensor([0.0, 0.5, 0.9])
AGE_BIAS, LAB_WEIGHT, INTERCEPT = 0.9, 1.5, -0.8
LAB_CUTS = torch.tensor([-0.6, 0.6])

PATHS = {"A": ("total", "direct", "proxy", "via_labs"), "E": ("total", "contextual", "spurious")}
INADMISSIBLE = {"A": ("direct", "proxy"), "E": ("spurious",)}
ADMISSIBLE = {"A": ("via_labs",), "E": ("contextual",)}
MASKABLE = ("age", "ins", "lab", "hosp")

VOCAB = [
    "<bos>",
    "<pad>",
    "<unk>",
    "->",
    "YES",
    "NO",
    *[f"age:{a}" for a in AGES],
    "age:?",
    *[f"ins:{z}" for z in INSURANCE],
    "ins:?",
    *[f"lab:{x}" for x in LABS],
    "lab:?",
    *[f"hosp:{e}" for e in range(N_HOSPITALS)],
    "hosp:?",
]


@dataclass(frozen=True)
class Units:
    """Exogenous draws of n patients; each world (factual or counterfactual) is made of them."""

    a: Tensor
    e: Tensor
    u_x: Tensor
    u_z: Tensor
    u_y: Tensor

    def __len__(self) -> int:
        return len(self.a)


def sample_units(n: int, seed: int) -> Units:
    g = torch.Generator().manual_seed(seed)
    return Units(
        a=torch.multinomial(AGE_P, n, replacement=True, generator=g),
        e=torch.randint(0, N_HOSPITALS, (n,), generator=g),
        u_x=torch.randn(n, generator=g),
        u_z=torch.rand(n, generator=g),
        u_y=torch.rand(n, generator=g),
    )


def true_severity(a: Tensor, u_x: Tensor) -> Tensor:
    return 0.9 * (a.float() - 1) + u_x


def lab_band(x: Tensor) -> Tensor:
    return torch.bucketize(x, LAB_CUTS)


def measured_lab(a: Tensor, e: Tensor, u_x: Tensor, artefact: bool = True) -> Tensor:
    return lab_band(true_severity(a, u_x) + (ARTEFACT[e] if artefact else 0.0))


def insurance(a: Tensor, u_z: Tensor) -> Tensor:
    cdf = INS_GIVEN_AGE[a].cumsum(-1)
    return (u_z[:, None] >= cdf).sum(-1).clamp(max=2)


def readmission_logit(u: Units, *, fair: bool = False) -> Tensor:
    lab_true = lab_band(true_severity(u.a, u.u_x)).float()
    logit = INTERCEPT + LAB_WEIGHT * (lab_true - 1) + POLICY[u.e]
    biased = AGE_BIAS * (u.a.float() - 1) + INS_BIAS[insurance(u.a, u.u_z)]
    return logit + (_mean_bias() if fair else biased)


def _mean_bias() -> float:
    big = sample_units(200_000, seed=12345)
    return float((AGE_BIAS * (big.a.float() - 1) + INS_BIAS[insurance(big.a, big.u_z)]).mean())


def labels(u: Units, *, fair: bool = False) -> Tensor:
    """Observed readmission (1 = YES); ``fair=True``: with the inadmissible paths removed."""
    return (u.u_y < torch.sigmoid(readmission_logit(u, fair=fair))).long()


def words(a: Tensor, z: Tensor, lab: Tensor, e: Tensor, mask: tuple[str, ...] = ()) -> list[str]:
    """Prompts ``age:old ins:medicare lab:high hosp:2 ->`` (BOS is added by the tokenizer side)."""
    out = []
    for ai, zi, xi, ei in zip(a.tolist(), z.tolist(), lab.tolist(), e.tolist(), strict=True):
        parts = {
            "age": f"age:{AGES[ai]}",
            "ins": f"ins:{INSURANCE[zi]}",
            "lab": f"lab:{LABS[xi]}",
            "hosp": f"hosp:{ei}",
        }
        for m in mask:
            parts[m] = f"{m}:?"
        out.append(" ".join([parts["age"], parts["ins"], parts["lab"], parts["hosp"], "->"]))
    return out


def factual_words(u: Units, mask: tuple[str, ...] = (), artefact: bool = True) -> list[str]:
    return words(u.a, insurance(u.a, u.u_z), measured_lab(u.a, u.e, u.u_x, artefact), u.e, mask)


def counterfactual_value(u: Units, attribute: str) -> Tensor:
    """The other world: age -> young; hospital -> 2 (the one whose labs read high)."""
    return torch.zeros_like(u.a) if attribute == "A" else torch.full_like(u.e, 2)


def in_scope(u: Units, attribute: str) -> Tensor:
    """Units whose counterfactual moves one way (old patients; patients not at hospital 2), so
    path effects do not cancel between units moved in opposite directions."""
    return u.a == 2 if attribute == "A" else u.e != 2


def path_words(
    u: Units, attribute: str, path: str, *, artefact: bool = True
) -> tuple[list[str], list[str]]:
    """(factual, path-specific counterfactual) prompts: only the tokens the path reaches change."""
    if attribute not in PATHS or path not in PATHS[attribute]:
        from interp_audit.core.errors import SpecError

        valid = ", ".join(f"{k}: {'/'.join(v)}" for k, v in PATHS.items())
        raise SpecError(f"unknown readmission path {attribute}.{path}; valid paths: {valid}")
    a, e = u.a, u.e
    z, lab = insurance(a, u.u_z), measured_lab(a, e, u.u_x, artefact)
    cf = counterfactual_value(u, attribute)
    if attribute == "A":
        z_cf, lab_cf = insurance(cf, u.u_z), measured_lab(cf, e, u.u_x, artefact)
        new = {
            "total": (cf, z_cf, lab_cf, e),
            "direct": (cf, z, lab, e),
            "proxy": (a, z_cf, lab, e),
            "via_labs": (a, z, lab_cf, e),
        }[path]
    else:
        lab_cf = measured_lab(a, cf, u.u_x, artefact)
        new = {
            "total": (a, z, lab_cf, cf),
            "contextual": (a, z, lab, cf),
            "spurious": (a, z, lab_cf, e),
        }[path]
    return words(a, z, lab, e), words(*new)


def path_pairs(
    n: int, seed: int, attribute: str, path: str, *, max_draw: int = 20
) -> tuple[list[str], list[str], Units]:
    """``n`` units whose path-specific counterfactual differs from the factual prompt.

    Units where the path changes nothing (e.g. insurance stays the same under the other age)
    carry no path effect to measure and are skipped; sampling continues until ``n`` are found.
    """
    clean, cf, keep = [], [], []
    for k in range(max_draw):
        u = sample_units(4 * n, seed * 1000 + k)
        f, c = path_words(u, attribute, path)
        scope = in_scope(u, attribute)
        idx = [i for i in range(len(f)) if f[i] != c[i] and bool(scope[i])]
        clean += [f[i] for i in idx]
        cf += [c[i] for i in idx]
        keep.append(Units(*(t[idx] for t in (u.a, u.e, u.u_x, u.u_z, u.u_y))))
        if len(clean) >= n:
            break
    units = Units(
        *(torch.cat([getattr(k_, f) for k_ in keep])[:n] for f in ("a", "e", "u_x", "u_z", "u_y"))
    )
    return clean[:n], cf[:n], units


def contrast(
    subject,
    path: str,
    n: int = 200,
    seed: int = 0,
    attribute: str = "A",
    split: str = "test",
    answers: str = "fixed",
):
    """A ContrastSet for one path (held-out units unless ``split='train'``).

    ``answers``: ``"fixed"`` scores (YES, NO) for every pair, so the metric is the model's
    readmission log-odds; ``"observed"`` / ``"fair"`` put each patient's true label first, so
    logit_diff > 0 means a correct prediction (utility sets). Groups: insurance for A (whose
    paths all start from old patients), the factual hospital for E.
    """
    from interp_audit.engine.contrasts import ContrastSet

    offset = {"train": 0, "test": 7919}[split]
    clean, cf, units = path_pairs(n, seed + offset, attribute, path)
    groups = (
        [f"ins:{INSURANCE[z]}" for z in insurance(units.a, units.u_z).tolist()]
        if attribute == "A"
        else [f"hosp:{e}" for e in units.e.tolist()]
    )
    if answers == "fixed":
        ans = ("YES", "NO")
    else:
        y = labels(units, fair=answers == "fair").tolist()
        ans = [("YES", "NO") if yi else ("NO", "YES") for yi in y]
    return ContrastSet.from_prompts(
        subject,
        clean,
        cf,
        answers=ans,
        groups=groups,
        labels=[f"{attribute}.{path}"] * len(clean),
        clusters=[f"unit {i}" for i in range(len(clean))],  # one simulated patient per pair
    )
