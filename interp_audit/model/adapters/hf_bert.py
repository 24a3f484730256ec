"""A local BERT folder (BertModel or BertForMaskedLM weights) -> a TransformerLens HookedEncoder.

TransformerLens's own BERT loader wants a hub name; sentence encoders on disk often ship no
MLM head, which it does not accept.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import einops
import torch

from interp_audit.core.errors import ModelLoadError
from interp_audit.model.adapters.quiet import quiet_tl_warnings


def tokenizer_of(folder: Path):
    names = ("tokenizer.json", "vocab.json", "vocab.txt", "tokenizer_config.json")
    if not any((folder / n).exists() for n in names):
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except Exception as err:
        raise ModelLoadError(
            f"tokenizer files in {str(folder)!r} could not be read: {err}"
        ) from err


def load_hf_bert(folder: Path, hf: dict[str, Any], flat: dict[str, torch.Tensor]):
    """A BERT folder (BertModel or BertForMaskedLM weights) as a HookedEncoder.

    Sentence encoders such as all-MiniLM-L6-v2 ship no MLM head; the head is then set to a
    deterministic placeholder (identity transform, tied unembedding) and ``has_lm_head`` is
    False, so logit metrics refuse it while embedding metrics work.
    """
    with quiet_tl_warnings():
        from transformer_lens import HookedEncoder, HookedTransformerConfig

        n_heads = hf["num_attention_heads"]
        d_model = hf["hidden_size"]
        cfg = HookedTransformerConfig(
            d_model=d_model,
            d_head=d_model // n_heads,
            n_heads=n_heads,
            d_mlp=hf["intermediate_size"],
            n_layers=hf["num_hidden_layers"],
            n_ctx=hf.get("max_position_embeddings", 512),
            eps=hf.get("layer_norm_eps", 1e-12),
            d_vocab=hf["vocab_size"],
            act_fn=hf.get("hidden_act", "gelu"),
            attention_dir="bidirectional",
            original_architecture="BertForMaskedLM",
            model_name=folder.name,
            device="cpu",
        )
        with contextlib.redirect_stdout(io.StringIO()):
            model = HookedEncoder(cfg)
    sd = {k.removeprefix("bert."): v for k, v in flat.items()}

    def get(key: str) -> torch.Tensor:
        if key not in sd:
            raise ModelLoadError(f"{folder}: BERT weight {key!r} is missing from the checkpoint")
        return sd[key]

    out = {
        "embed.embed.W_E": get("embeddings.word_embeddings.weight"),
        "embed.pos_embed.W_pos": get("embeddings.position_embeddings.weight"),
        "embed.token_type_embed.W_token_type": get("embeddings.token_type_embeddings.weight"),
        "embed.ln.w": get("embeddings.LayerNorm.weight"),
        "embed.ln.b": get("embeddings.LayerNorm.bias"),
    }
    for layer in range(cfg.n_layers):
        p = f"encoder.layer.{layer}."
        for name, short in (("query", "Q"), ("key", "K"), ("value", "V")):
            out[f"blocks.{layer}.attn.W_{short}"] = einops.rearrange(
                get(p + f"attention.self.{name}.weight"), "(i h) m -> i m h", i=n_heads
            )
            out[f"blocks.{layer}.attn.b_{short}"] = einops.rearrange(
                get(p + f"attention.self.{name}.bias"), "(i h) -> i h", i=n_heads
            )
        out[f"blocks.{layer}.attn.W_O"] = einops.rearrange(
            get(p + "attention.output.dense.weight"), "m (i h) -> i h m", i=n_heads
        )
        out[f"blocks.{layer}.attn.b_O"] = get(p + "attention.output.dense.bias")
        out[f"blocks.{layer}.ln1.w"] = get(p + "attention.output.LayerNorm.weight")
        out[f"blocks.{layer}.ln1.b"] = get(p + "attention.output.LayerNorm.bias")
        out[f"blocks.{layer}.mlp.W_in"] = get(p + "intermediate.dense.weight").T
        out[f"blocks.{layer}.mlp.b_in"] = get(p + "intermediate.dense.bias")
        out[f"blocks.{layer}.mlp.W_out"] = get(p + "output.dense.weight").T
        out[f"blocks.{layer}.mlp.b_out"] = get(p + "output.dense.bias")
        out[f"blocks.{layer}.ln2.w"] = get(p + "output.LayerNorm.weight")
        out[f"blocks.{layer}.ln2.b"] = get(p + "output.LayerNorm.bias")
    has_head = "cls.predictions.transform.dense.weight" in flat
    if has_head:
        out["mlm_head.W"] = flat["cls.predictions.transform.dense.weight"].T
        out["mlm_head.b"] = flat["cls.predictions.transform.dense.bias"]
        out["mlm_head.ln.w"] = flat["cls.predictions.transform.LayerNorm.weight"]
        out["mlm_head.ln.b"] = flat["cls.predictions.transform.LayerNorm.bias"]
        out["unembed.W_U"] = out["embed.embed.W_E"].T
        out["unembed.b_U"] = flat.get("cls.predictions.bias", torch.zeros(cfg.d_vocab))
    else:
        out["mlm_head.W"] = torch.eye(d_model)
        out["mlm_head.b"] = torch.zeros(d_model)
        out["mlm_head.ln.w"] = torch.ones(d_model)
        out["mlm_head.ln.b"] = torch.zeros(d_model)
        out["unembed.W_U"] = out["embed.embed.W_E"].T.clone()
        out["unembed.b_U"] = torch.zeros(cfg.d_vocab)
    if "pooler.dense.weight" in sd:
        out["pooler.W"] = sd["pooler.dense.weight"].T
        out["pooler.b"] = sd["pooler.dense.bias"]
    state = model.state_dict()
    for key in state:
        if key not in out:
            if key.startswith("nsp_head") or key.startswith("pooler"):
                out[key] = torch.zeros_like(state[key])
    missing, unexpected = model.load_state_dict(
        {k: v.contiguous() for k, v in out.items()}, strict=False
    )
    missing = [k for k in missing if not k.endswith(("IGNORE", "mask"))]
    if missing:
        raise ModelLoadError(f"{folder}: BERT conversion left parameters unset: {missing[:5]}")
    return model, tokenizer_of(folder), has_head
