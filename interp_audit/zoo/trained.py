"""Zoo models trained by scripts under ``circuits/`` and shipped as safetensors folders."""

from __future__ import annotations

from interp_audit.zoo.registry import WEIGHTS, ZooModel, register

TRAINED = {
    "readmission": "the readmission model (circuits/readmission/train.py): age, insurance, "
    "measured labs, hospital -> YES/NO",
    "readmission-ftu": "readmission retrained without the age token (fairness through unawareness)",
    "readmission-blind": "readmission retrained with age and all its descendants (insurance, "
    "labs) masked",
    "readmission-nohosp": "readmission retrained without the hospital token",
    "readmission-cleanlabs": "readmission retrained on labs measured without the hospital artefact",
    "readmission-holdout2": "readmission trained without hospital 2's patients: an environment "
    "it never saw (circuits/readmission/train.py readmission-holdout2)",
    "hiring": "a CV screener trained on the hiring SCM (circuits/hiring/train.py): gender, degree, "
    "career gap, club -> hire/reject",
    "hiring-ftu": "hiring retrained with the gender word hidden (gender:?): unawareness",
    "hiring-nogap": "hiring retrained with the career gap hidden (gap:?): the baseline repair "
    "when G -> C -> Y is declared inadmissible",
    "canary-lm": "a small causal LM trained with secret canaries repeated 1/4/16/64 times "
    "(circuits/memorization/train.py)",
    "canary-lm10": "a small causal LM with 56 secret 10-digit numbers, 8 each inserted 1, 2, 4, 8, "
    "16, 32 and 64 times (circuits/memorization/train.py canary-lm10)",
    "canary-lm10-clean": "canary-lm10's corpus without the canary records (the membership "
    "reference: a model that never saw them)",
}


def _loader(name: str):
    def build() -> ZooModel:
        folder = WEIGHTS / name
        if not (folder / "model.safetensors").exists():
            from interp_audit.core.errors import ModelLoadError

            raise ModelLoadError(
                f"zoo:{name} weights are missing from {folder}; run the training script under "
                "circuits/"
            )
        return ZooModel(folder=folder)

    return build


for _name, _doc in TRAINED.items():
    register(_name, _doc)(_loader(_name))
