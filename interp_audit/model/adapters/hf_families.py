"""Local Hugging Face folders -> TransformerLens models, one table row per architecture.

TransformerLens's own config conversion wants hub names (Gemma's configs are keyed by name,
Llama's branch by a substring of it); users hold fine-tuned copies on disk. Each row maps the
folder's ``config.json`` (read by ``transformers.AutoConfig``) to a HookedTransformerConfig,
mirroring ``transformer_lens.loading_from_pretrained.convert_hf_model_config`` for that
architecture, and reuses TransformerLens's own weight conversion ``convert_*_weights``.
Configurations TransformerLens cannot represent (OPT-350m's post-LN, projected embeddings)
are refused by name rather than converted wrongly.
"""

from __future__ import annotations

import contextlib
import importlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from interp_audit.core.errors import ModelLoadError


@dataclass(frozen=True)
class Family:
    """One architecture: how its HF config maps to TransformerLens and how weights convert."""

    model_type: str  # config.json's "model_type"
    architecture: str  # TransformerLens's original_architecture
    config: Callable[[Any], dict[str, Any]]  # HF config object -> TL config fields
    convert: str  # "module:function" under transformer_lens.pretrained.weight_conversions
    prepend_bos: bool = True
    #: fills in what TL's conversion leaves out: (hf model, hf config, TL state, TL config)
    complete: Callable[[Any, Any, dict[str, torch.Tensor], Any], None] | None = None


@dataclass
class LoadedFolder:
    model: torch.nn.Module
    tokenizer: Any
    prepend_bos: bool = True
    has_lm_head: bool = True


def _rope_theta(hf) -> float:
    theta = getattr(hf, "rope_theta", None)
    if theta is None:
        params = getattr(hf, "rope_parameters", None) or {}
        theta = params.get("rope_theta", 10000.0) if isinstance(params, dict) else 10000.0
    return theta


def _head_dim(hf) -> int:
    d = getattr(hf, "head_dim", None)
    return int(d) if d else hf.hidden_size // hf.num_attention_heads


def _kv_heads(hf) -> int | None:
    n = getattr(hf, "num_key_value_heads", None)
    return None if n is None or n == hf.num_attention_heads else int(n)


def _refuse(cond: bool, what: str) -> None:
    if cond:
        raise ModelLoadError(f"this checkpoint uses {what}, which TransformerLens cannot represent")


def _sizes(hf, eps: float, *, d_head: int | None = None, d_mlp=None, act_fn=None) -> dict:
    """The fields every family below reads the same way from a config with the usual names."""
    return {
        "d_model": hf.hidden_size,
        "d_head": d_head or hf.hidden_size // hf.num_attention_heads,
        "n_heads": hf.num_attention_heads,
        "d_mlp": hf.intermediate_size if d_mlp is None else d_mlp,
        "n_layers": hf.num_hidden_layers,
        "n_ctx": hf.max_position_embeddings,
        "eps": eps,
        "d_vocab": hf.vocab_size,
        "act_fn": hf.hidden_act if act_fn is None else act_fn,
    }


def _gpt2(hf) -> dict[str, Any]:
    return {
        "d_model": hf.n_embd,
        "d_head": hf.n_embd // hf.n_head,
        "n_heads": hf.n_head,
        "d_mlp": getattr(hf, "n_inner", None) or 4 * hf.n_embd,
        "n_layers": hf.n_layer,
        "n_ctx": getattr(hf, "n_positions", None) or hf.n_ctx,
        "eps": hf.layer_norm_epsilon,
        "d_vocab": hf.vocab_size,
        "act_fn": hf.activation_function,
        "use_attn_scale": getattr(hf, "scale_attn_weights", True),
        "scale_attn_by_inverse_layer_idx": hf.scale_attn_by_inverse_layer_idx,
        "normalization_type": "LN",
    }


def _rotary_fraction(hf) -> float:
    """Share of each head's dims that rotate (transformers 5 keeps it in rope_parameters)."""
    from transformer_lens.utilities.hf_utils import get_rotary_pct_from_config

    return get_rotary_pct_from_config(hf)


def _neox(hf) -> dict[str, Any]:
    d_head = hf.hidden_size // hf.num_attention_heads
    return {
        **_sizes(hf, hf.layer_norm_eps),
        "parallel_attn_mlp": getattr(hf, "use_parallel_residual", True),
        "positional_embedding_type": "rotary",
        "rotary_adjacent_pairs": False,
        "rotary_dim": round(_rotary_fraction(hf) * d_head),
        "rotary_base": _rope_theta(hf),
        "normalization_type": "LN",
    }


def _llama_like(hf) -> dict[str, Any]:
    """Llama, Mistral, Qwen2: RMSNorm, rotary, gated SiLU MLP, grouped-query attention."""
    d_head = _head_dim(hf)
    sliding = (
        getattr(hf, "sliding_window", None) if getattr(hf, "use_sliding_window", True) else None
    )
    out = {
        **_sizes(hf, hf.rms_norm_eps, d_head=d_head),
        "n_key_value_heads": _kv_heads(hf),
        "normalization_type": "RMS",
        "positional_embedding_type": "rotary",
        "rotary_adjacent_pairs": False,
        "rotary_dim": d_head,
        "rotary_base": _rope_theta(hf),
        "final_rms": True,
        "gated_mlp": True,
    }
    if sliding and sliding < hf.max_position_embeddings:
        out.update(
            use_local_attn=True, window_size=sliding, attn_types=["local"] * hf.num_hidden_layers
        )
    return out


def _llama(hf) -> dict[str, Any]:
    from transformer_lens.loading_from_pretrained import _apply_llama3_rope_scaling

    out = _llama_like(hf)
    _apply_llama3_rope_scaling(out, hf)
    return out


def _llama_biases(hf_model, hf, state: dict[str, torch.Tensor], cfg) -> None:
    """Llama checkpoints with ``attention_bias`` / ``mlp_bias`` (which Subject.save(format="hf")
    writes to carry a mean ablation): TL's conversion sets every bias to zero, so copy them."""
    import einops

    layers = hf_model.model.layers
    kv = "_" if cfg.n_key_value_heads is not None else ""
    for i, layer in enumerate(layers):
        attn, mlp = layer.self_attn, layer.mlp
        if getattr(hf, "attention_bias", False):
            for part, heads in (("q", cfg.n_heads), ("k", None), ("v", None)):
                bias = getattr(attn, f"{part}_proj").bias
                n = heads or (cfg.n_key_value_heads or cfg.n_heads)
                key = f"blocks.{i}.attn.{'' if part == 'q' else kv}b_{part.upper()}"
                state[key] = einops.rearrange(bias, "(n h) -> n h", n=n)
            state[f"blocks.{i}.attn.b_O"] = attn.o_proj.bias
        if getattr(hf, "mlp_bias", False):  # TL's gated MLP adds b_in after the product
            for proj in ("gate_proj", "up_proj"):
                _refuse(
                    bool(getattr(mlp, proj).bias.detach().abs().max() > 0),
                    f"a nonzero {proj} bias (mlp_bias) inside its gated MLP",
                )
            state[f"blocks.{i}.mlp.b_out"] = mlp.down_proj.bias


def _qwen2(hf) -> dict[str, Any]:
    out = _llama_like(hf)
    # TL's Qwen2 always uses its grouped-query attention class (biased q/k/v, separate K/V)
    out["n_key_value_heads"] = hf.num_key_value_heads
    return out


def _gemma(hf) -> dict[str, Any]:
    d_head = _head_dim(hf)
    return {
        # act_fn: transformers maps the legacy "gelu" to the tanh form
        **_sizes(hf, hf.rms_norm_eps, d_head=d_head),
        "normalization_type": "RMS",
        "rotary_base": _rope_theta(hf),
        "rotary_dim": d_head,
        "positional_embedding_type": "rotary",
        "use_attn_scale": True,
        # TL's Gemma conversion always writes separate K/V weights (GQA class)
        "n_key_value_heads": hf.num_key_value_heads,
        "gated_mlp": True,
        "final_rms": True,
    }


def _opt(hf) -> dict[str, Any]:
    _refuse(not getattr(hf, "do_layer_norm_before", True), "post-LayerNorm blocks (OPT-350m)")
    _refuse(
        getattr(hf, "word_embed_proj_dim", hf.hidden_size) != hf.hidden_size,
        "projected word embeddings (word_embed_proj_dim != hidden_size)",
    )
    return {
        **_sizes(hf, 1e-5, d_mlp=hf.ffn_dim, act_fn=hf.activation_function),
        "normalization_type": "LN",
    }


def _phi(hf) -> dict[str, Any]:
    _refuse(getattr(hf, "qk_layernorm", False), "QK LayerNorm")
    d_head = hf.hidden_size // hf.num_attention_heads
    return {
        **_sizes(hf, hf.layer_norm_eps),
        "normalization_type": "LN",
        "positional_embedding_type": "rotary",
        "rotary_base": _rope_theta(hf),
        "rotary_dim": round(_rotary_fraction(hf) * d_head),
        "parallel_attn_mlp": True,
    }


FAMILIES: dict[str, Family] = {
    f.model_type: f
    for f in (
        Family("gpt2", "GPT2LMHeadModel", _gpt2, "gpt2:convert_gpt2_weights"),
        Family(
            "gpt_neox", "GPTNeoXForCausalLM", _neox, "neox:convert_neox_weights", prepend_bos=False
        ),
        Family(
            "llama",
            "LlamaForCausalLM",
            _llama,
            "llama:convert_llama_weights",
            complete=_llama_biases,
        ),
        Family("mistral", "MistralForCausalLM", _llama_like, "mistral:convert_mistral_weights"),
        Family(
            "qwen2", "Qwen2ForCausalLM", _qwen2, "qwen2:convert_qwen2_weights", prepend_bos=False
        ),
        Family("gemma", "GemmaForCausalLM", _gemma, "gemma:convert_gemma_weights"),
        Family("opt", "OPTForCausalLM", _opt, "opt:convert_opt_weights"),
        Family("phi", "PhiForCausalLM", _phi, "phi:convert_phi_weights", prepend_bos=False),
    )
}


def supported_model_types() -> list[str]:
    return [*FAMILIES, "bert"]


def tl_config_for(folder: Path, family: Family, hf) -> dict[str, Any]:
    """The HookedTransformerConfig fields of a folder's checkpoint (no weights read)."""
    cfg = family.config(hf)
    cfg.update(
        original_architecture=family.architecture,
        model_name=folder.name,
        default_prepend_bos=family.prepend_bos,
        device="cpu",
        dtype=torch.float32,
        init_weights=False,
    )
    return {k: v for k, v in cfg.items() if v is not None or k == "n_key_value_heads"}


def load_hf_folder(
    folder: Path, meta: dict[str, Any], read_state: Callable[[Path], dict[str, torch.Tensor]]
) -> LoadedFolder:
    """A local Hugging Face checkpoint folder as a TransformerLens model (weights as trained)."""
    model_type = meta.get("model_type")
    if model_type == "bert":
        from interp_audit.model.adapters.hf_bert import load_hf_bert

        model, tok, has_head = load_hf_bert(folder, meta, read_state(folder))
        return LoadedFolder(model, tok, prepend_bos=False, has_lm_head=has_head)
    family = FAMILIES.get(model_type)
    if family is None:
        raise ModelLoadError(
            f"{folder / 'config.json'}: model_type {model_type!r} is not supported from a local "
            f"folder (supported: {', '.join(repr(t) for t in supported_model_types())}, or a "
            "folder written by Subject.save); load it with TransformerLens and pass the model "
            "object instead"
        )
    weights = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
    if not any((folder / w).exists() for w in (*weights, "pytorch_model.bin.index.json")):
        # checked first: building a default-sized model from config alone can take gigabytes
        raise ModelLoadError(
            f"folder {str(folder)!r} has a {model_type!r} config.json but no weights "
            f"({', '.join(weights)})"
        )
    from interp_audit.model.adapters.build import tl_config
    from interp_audit.model.adapters.quiet import quiet_tl_warnings

    with quiet_tl_warnings():
        from transformer_lens import HookedTransformer
        from transformers import AutoConfig, AutoModelForCausalLM

        try:
            hf_cfg = AutoConfig.from_pretrained(str(folder), local_files_only=True)
            hf_model = AutoModelForCausalLM.from_pretrained(
                str(folder), local_files_only=True, dtype=torch.float32
            ).eval()
        except Exception as err:
            raise ModelLoadError(
                f"could not read the {family.architecture} checkpoint in {str(folder)!r}: "
                f"{type(err).__name__}: {err}"
            ) from err
        cfg = tl_config(tl_config_for(folder, family, hf_cfg))
        module, fn = family.convert.split(":")
        convert = getattr(
            importlib.import_module(f"transformer_lens.pretrained.weight_conversions.{module}"), fn
        )
        with torch.no_grad():
            state = convert(hf_model, cfg)
            if family.complete is not None:
                family.complete(hf_model, hf_cfg, state, cfg)
        with contextlib.redirect_stdout(io.StringIO()):
            model = HookedTransformer(cfg)
            # no processing: TL's load_and_process_state_dict would only fill the missing keys
            # and copy, one load_state_dict call per tensor (8 s for SmolLM2's 272): one call,
            # the same tensors bit for bit
            model.load_state_dict(model.fill_missing_keys(state), strict=False)
    from interp_audit.model.adapters.hf_bert import tokenizer_of

    return LoadedFolder(model, tokenizer_of(folder), prepend_bos=family.prepend_bos)
