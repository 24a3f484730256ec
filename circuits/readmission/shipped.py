"""The figures of docs/repairs.md: folds against hooks, exports against transformers, and what a
linear probe still reads after concept erasure on zoo:readmission.

python circuits/readmission/shipped.py        # ~2 minutes on one core
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("TQDM_DISABLE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402

import interp_audit as ia  # noqa: E402
from interp_audit.audit.measure import clusters_of, pair_effects  # noqa: E402
from interp_audit.engine.erasure import erase, fit_eraser  # noqa: E402
from interp_audit.methods.probing import concept_probe, split_rows  # noqa: E402
from interp_audit.model.loading import build_model  # noqa: E402
from interp_audit.stats.bootstrap import mean_ci  # noqa: E402

REPAIRS = [
    ("zero", ["L0H1", "L1N3"]),
    ("mean", ["L0H1", "L1N3", "L1H0.v"]),
    ("mean", ["L1.attn", "L0.mlp"]),
    ("erase", ["L1.resid_pre"]),
]
HF = {
    "gpt2": dict(n_layer=2, n_head=4, n_embd=64, n_positions=64),
    "gpt_neox": dict(
        num_hidden_layers=2, num_attention_heads=4, hidden_size=64, intermediate_size=128,
        max_position_embeddings=64, rotary_pct=0.5,
    ),
    "llama": dict(
        num_hidden_layers=2, num_attention_heads=4, hidden_size=64, intermediate_size=128,
        max_position_embeddings=64, num_key_value_heads=2,
    ),
    "mistral": dict(
        num_hidden_layers=2, num_attention_heads=4, hidden_size=64, intermediate_size=128,
        max_position_embeddings=64, num_key_value_heads=2, sliding_window=None,
    ),
    "qwen2": dict(
        num_hidden_layers=2, num_attention_heads=4, hidden_size=64, intermediate_size=128,
        max_position_embeddings=64, num_key_value_heads=2,
    ),
    "gemma": dict(
        num_hidden_layers=2, num_attention_heads=4, hidden_size=64, intermediate_size=128,
        max_position_embeddings=64, num_key_value_heads=1, head_dim=16,
    ),
    "opt": dict(
        num_hidden_layers=2, num_attention_heads=4, hidden_size=64, ffn_dim=128,
        max_position_embeddings=64, word_embed_proj_dim=64,
    ),
    "phi": dict(
        num_hidden_layers=2, num_attention_heads=4, hidden_size=64, intermediate_size=128,
        max_position_embeddings=64, partial_rotary_factor=0.5,
    ),
}  # fmt: skip


def _pairs(vocab: int, n: int = 8, width: int = 9):
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(5, vocab, (n, width), generator=g)
    cf = clean.clone()
    cf[:, 3] = (clean[:, 3] + 7) % (vocab - 5) + 5
    return ia.ContrastSet.from_tokens(clean, cf)


def fold_diffs(subject, pairs, repairs=REPAIRS, mask=None) -> dict[str, float]:
    """max |repaired - hooked| logits per repair (and |hooked - plain|: the repair's size)."""
    out = {}
    plain = subject.run(pairs.clean, mask)
    for kind, comps in repairs:
        per = {} if kind == "erase" else {"per_position": False}
        try:
            fixed = ia.repaired(subject, comps, kind=kind, reference=pairs)
        except ia.AuditError as err:
            out[f"{kind} {'+'.join(comps)}"] = f"refused: {str(err)[:60]}"
            continue
        with ia.ablate(subject, comps, kind=kind, reference=pairs, **per):
            ref = subject.run(pairs.clean, mask)
        d = float((fixed.run(pairs.clean, mask) - ref).abs().max())
        size = float((ref - plain).abs().max())
        out[f"{kind} {'+'.join(comps)}"] = f"{d:.1e} (repair moves logits {size:.2f})"
    return out


def families() -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    from helpers import ENCODER_CFG, build_cfg

    print("## fold vs hooked: max |logit difference| (float32)")
    subjects = {
        "TL LayerNorm GELU (3 layers)": ia.load_model(build_model(build_cfg(), seed=1)),
        "TL GQA rotary RMSNorm gated": ia.load_model(
            build_model(
                build_cfg(
                    n_key_value_heads=2,
                    positional_embedding_type="rotary",
                    normalization_type="RMS",
                    gated_mlp=True,
                    act_fn="silu",
                ),
                seed=4,
            )
        ),
        "TL parallel attn+MLP": ia.load_model(
            build_model(build_cfg(parallel_attn_mlp=True), seed=5)
        ),
        "zoo:readmission": ia.load_model("zoo:readmission"),
    }
    for name, s in subjects.items():
        print(name, fold_diffs(s, _pairs(int(s.cfg.d_vocab), width=6)))
    hand = ia.load_model("zoo:handbuilt-copy")
    hp = ia.ContrastSet.from_prompts(
        hand, clean=["A x ->", "A y ->"], counterfactual=["B x ->", "B y ->"]
    )
    print("zoo:handbuilt-copy", fold_diffs(hand, hp, [("zero", ["L1H0"]), ("mean", ["L1H0"])]))
    enc = ia.load_model(build_model(ENCODER_CFG, kind="encoder", seed=2))
    ep = _pairs(50, width=7)
    bert_repairs = [r for r in REPAIRS if r[0] != "erase"] + [("erase", ["L1.resid_pre"])]
    print("BERT encoder", fold_diffs(enc, ep, bert_repairs, torch.ones_like(ep.clean)))
    tmp = Path(tempfile.mkdtemp())
    print("\n## Hugging Face folders: fold vs hooked; export vs plain transformers")
    for model_type, kw in HF.items():
        torch.manual_seed(0)
        cfg = AutoConfig.for_model(model_type, vocab_size=100, **kw)
        AutoModelForCausalLM.from_config(cfg).eval().save_pretrained(tmp / model_type)
        s = ia.load_model(tmp / model_type)
        pairs = _pairs(100)
        print(model_type, fold_diffs(s, pairs))
        exports = {}
        for kind, comps in REPAIRS:
            try:
                fixed = ia.repaired(s, comps, kind=kind, reference=pairs)
                out = fixed.save(tmp / f"{model_type}-{kind}-{len(comps)}", format="hf")
            except ia.AuditError as err:
                exports[f"{kind} {'+'.join(comps)}"] = f"refused: {str(err)[:90]}"
                continue
            plain = AutoModelForCausalLM.from_pretrained(str(out)).eval()
            with torch.no_grad():
                d = float((plain(pairs.clean).logits - fixed.run(pairs.clean)).abs().max())
            exports[f"{kind} {'+'.join(comps)}"] = f"{d:.1e}"
        print("  export:", exports)


def _effect(subject, cs) -> str:
    c, f = pair_effects(subject, cs, ia.metrics.logit_diff)
    iv = mean_ci(c - f, clusters_of(cs), n_boot=1000, seed=0)
    return f"{iv.point:+.3f} [{iv.lo:+.3f}, {iv.hi:+.3f}]"


def readmission_erasure() -> None:
    from circuits.readmission.scm import contrast

    s = ia.load_model("zoo:readmission")
    total = contrast(s, "total", n=400, seed=0)
    paths = {p: contrast(s, p, n=400, seed=1) for p in ("direct", "proxy", "via_labs")}
    split = split_rows(len(total), seed=0)
    print("\n## readmission: LEACE of age (old vs young, a_total), fitted on 200 held-out pairs")
    print("path effects before:", {p: _effect(s, cs) for p, cs in paths.items()})
    cases = [
        ("L0.resid_pre (every position)", ["L0.resid_pre"], False),
        ("L0.resid_pre@1,@2 (age, insurance tokens), applied everywhere",
         ["L0.resid_pre@1", "L0.resid_pre@2"], False),
        ("L1.resid_pre, foldable (every read up to L1)", ["L1.resid_pre"], False),
        ("L1.resid_pre, at L1 only (hooks; no fold)", ["L1.resid_pre"], True),
    ]  # fmt: skip
    for name, sites, only in cases:
        er = fit_eraser(s, sites, total, rows=split[0])
        site = sites[0].split("@")[0]
        rows = {}
        for probe_site in dict.fromkeys([site, "L1.resid_post"]):
            for where in ("all", "scored"):
                before = concept_probe(s, probe_site, total, positions=where, split=split)
                with erase(s, er, only_site=only):
                    after = concept_probe(s, probe_site, total, positions=where, split=split)
                a, b = after.accuracy, before.accuracy
                rows[f"{probe_site} {where}"] = (
                    f"{b.point:.3f} [{b.lo:.3f}, {b.hi:.3f}] -> {a.point:.3f} "
                    f"[{a.lo:.3f}, {a.hi:.3f}] (chance {after.chance:.2f})"
                )
        with erase(s, er, only_site=only):
            effects = {p: _effect(s, cs) for p, cs in paths.items()}
        print(f"\n{name}: {er.rank} directions erased")
        for k, v in rows.items():
            print(f"  probe {k}: {v}")
        print("  path effects after:", effects)


if __name__ == "__main__":
    families()
    readmission_erasure()
