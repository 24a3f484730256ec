"""Train the readmission model's SAE on layer 0's attention output with sae_lens (offline, seed 0).

python circuits/readmission/train_sae.py  # writes interp_audit/zoo/weights/saes/readmission-attn0/
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import interp_audit as ia  # noqa: E402
from circuits.readmission import scm as R  # noqa: E402

if __name__ == "__main__":
    subject = ia.load_model("zoo:readmission")
    tokens = torch.tensor(
        [subject.to_tokens(p) for p in R.factual_words(R.sample_units(20_000, 5))]
    )
    sae = ia.sae.train_sae(
        subject,
        "blocks.0.hook_attn_out",
        tokens,
        d_sae=256,
        l1_coefficient=2.0,
        training_tokens=400_000,
        seed=0,
    )
    out = ROOT / "interp_audit" / "zoo" / "weights" / "saes" / "readmission-attn0"
    sae.save_model(out)
    print(f"saved {out}")
