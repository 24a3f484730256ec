"""Train the hiring screener's SAE on layer 0's attention output with sae_lens (offline, seed 0).

python circuits/hiring/train_sae.py  # writes interp_audit/zoo/weights/saes/hiring-attn0/

The trade-off sweeps its features as one family of repairs (``--sae zoo:hiring-attn0``).
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import interp_audit as ia  # noqa: E402
from circuits.hiring.train import causal_model  # noqa: E402

if __name__ == "__main__":
    torch.set_num_threads(1)
    subject = ia.load_model("zoo:hiring")
    cm = causal_model()
    prompts = cm.render.render(cm.scm, cm.scm.values(cm.scm.sample(20_000, 5)))
    tokens = torch.tensor([subject.to_tokens(p) for p in prompts])
    sae = ia.sae.train_sae(
        subject,
        "blocks.0.hook_attn_out",
        tokens,
        d_sae=192,
        l1_coefficient=2.0,
        training_tokens=400_000,
        seed=0,
    )
    out = ROOT / "interp_audit" / "zoo" / "weights" / "saes" / "hiring-attn0"
    sae.save_model(out)
    print(f"saved {out}")
