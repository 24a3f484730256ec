"""Repaired models as Hugging Face folders that plain ``transformers`` loads.

A repair changes a few TransformerLens parameters (an output projection's slice, a bias, the
embeddings). The export starts from the source checkpoint (the folder the model was read from),
writes each changed parameter back into the Hugging Face tensor it was converted from (the
inverse of TransformerLens's ``convert_*_weights`` for that one tensor), and leaves every other
tensor as the source has it. One table row per family says where each parameter lives.

A bias the source architecture lacks is added only where the family's config can switch it on
(Llama's ``attention_bias`` adds q/k/v/o biases, ``mlp_bias`` gate/up/down biases: the ones the
repair does not set are zero), and the exported config says so. Where the config cannot carry it
(Mistral, Qwen2's ``o_proj``), the export is refused with that reason; the project's own format
(``Subject.save(dir)``) still saves the repaired model. Tied input/output embeddings are untied
when a repair changes the embeddings (concept erasure), with the output embedding kept.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import einops
import torch
from torch import Tensor

from interp_audit.core.errors import AuditError
from interp_audit.model.devices import tolerance

__all__ = ["ExportRefused", "export_hf", "exportable_model_types", "folder_weights_sha256"]

#: logits of the written folder (plain transformers) against the repaired Subject's: at least
#: this, or 5x the float32 tolerance at the logits' scale (two implementations of one float32
#: computation; SmolLM2's logits reach 35, where even the unrepaired model differs by 1e-4)
EXPORT_TOLERANCE = 1e-3


class ExportRefused(AuditError):
    """A model cannot be written as a Hugging Face folder: says which parameter and why."""


@dataclass(frozen=True)
class Slot:
    """Where one TransformerLens parameter lives in a Hugging Face state dict.

    ``put(hf_tensor, tl_tensor)`` writes the TL tensor into (a part of) the HF tensor in place;
    ``flag``: the config attribute that creates ``key`` when the source lacks it (None: the
    family cannot have it; ``reason`` says why).
    """

    key: str
    put: Callable[[Tensor, Tensor], None]
    flag: str | None = None
    reason: str = ""


def _copy(hf: Tensor, t: Tensor) -> None:
    hf.copy_(t.reshape(hf.shape))


def _transposed(hf: Tensor, t: Tensor) -> None:
    hf.copy_(t.T)


def _heads_out(hf: Tensor, t: Tensor) -> None:  # W_O [head, d_head, d_model] -> [d_model, h*d]
    hf.copy_(einops.rearrange(t, "n h m -> m (n h)"))


def _heads_in(hf: Tensor, t: Tensor) -> None:  # W_Q [head, d_model, d_head] -> [h*d, d_model]
    hf.copy_(einops.rearrange(t, "n m h -> (n h) m"))


def _rows(hf: Tensor, t: Tensor) -> None:  # positional embeddings the model reads
    hf[: t.shape[0]].copy_(t)


_LAYER = re.compile(r"^blocks\.(\d+)\.(attn|mlp)\.(_?[Wb]_\w+)$")


def _split(name: str) -> tuple[int, str, str] | None:
    m = _LAYER.match(name)
    return (int(m[1]), m[2], m[3].lstrip("_")) if m else None


Layout = Callable[[str, Any], Slot | None]  # TL parameter name, HF config -> its Slot


def _layout(top: dict[str, Slot], blocks: str):
    """A family's layout from its block layout: ``top`` places the parameters outside the
    blocks (embeddings, unembedding); a block parameter ``blocks.{layer}.{sub}.{p}`` goes to
    ``block(prefix, sub, p, cfg)`` with ``prefix`` = ``blocks.format(layer=layer)``."""

    def wrap(block: Callable[[str, str, str, Any], Slot | None]) -> Layout:
        def layout(name: str, cfg) -> Slot | None:
            if name in top:
                return top[name]
            parts = _split(name)
            if parts is None:
                return None
            layer, sub, p = parts
            return block(blocks.format(layer=layer), sub, p, cfg)

        return layout

    return wrap


@_layout(
    {
        "embed.W_E": Slot("transformer.wte.weight", _copy),
        "pos_embed.W_pos": Slot("transformer.wpe.weight", _rows),
        "unembed.W_U": Slot("lm_head.weight", _transposed),
    },
    "transformer.h.{layer}.",
)
def _gpt2(pre: str, sub: str, p: str, cfg) -> Slot | None:
    d = cfg.n_embd
    table = {
        ("attn", "W_O"): (f"{pre}attn.c_proj.weight", _copy),  # [(head d_head), d_model]
        ("attn", "b_O"): (f"{pre}attn.c_proj.bias", _copy),
        ("mlp", "W_out"): (f"{pre}mlp.c_proj.weight", _copy),
        ("mlp", "b_out"): (f"{pre}mlp.c_proj.bias", _copy),
    }
    if (sub, p) in table:
        return Slot(*table[(sub, p)])
    if sub == "attn" and p[2:] in ("Q", "K", "V"):
        j = "QKV".index(p[2:])
        if p.startswith("W"):  # c_attn [d_model, 3 d_model], columns q | k | v

            def put_w(hf: Tensor, t: Tensor, j=j) -> None:
                hf[:, j * d : (j + 1) * d].copy_(einops.rearrange(t, "i m h -> m (i h)"))

            return Slot(f"{pre}attn.c_attn.weight", put_w)

        def put_b(hf: Tensor, t: Tensor, j=j) -> None:
            hf[j * d : (j + 1) * d].copy_(t.reshape(-1))

        return Slot(f"{pre}attn.c_attn.bias", put_b)
    return None


def _llama_like(
    attn_flag: str | None, mlp_flag: str | None, qkv_bias_always: bool = False
) -> Layout:
    """Llama, Mistral, Qwen2: separate q/k/v/o projections, gated MLP without biases."""
    no_attn = "its config has no switch that adds an attention output bias (o_proj.bias)"
    no_mlp = "its config has no switch that adds an MLP output bias (down_proj.bias)"

    @_layout(
        {
            "embed.W_E": Slot("model.embed_tokens.weight", _copy),
            "unembed.W_U": Slot("lm_head.weight", _transposed),
        },
        "model.layers.{layer}.",
    )
    def layout(pre: str, sub: str, p: str, cfg) -> Slot | None:
        if sub == "mlp":
            if p == "W_out":
                return Slot(f"{pre}mlp.down_proj.weight", _transposed)
            if p == "b_out":
                return Slot(f"{pre}mlp.down_proj.bias", _copy, mlp_flag, no_mlp)
            return None
        if p == "W_O":
            return Slot(f"{pre}self_attn.o_proj.weight", _heads_out)
        if p == "b_O":
            return Slot(f"{pre}self_attn.o_proj.bias", _copy, attn_flag, no_attn)
        if p[2:] in ("Q", "K", "V"):
            proj = f"{pre}self_attn.{p[2:].lower()}_proj"
            if p.startswith("W"):
                return Slot(f"{proj}.weight", _heads_in)
            flag = None if qkv_bias_always else attn_flag
            return Slot(f"{proj}.bias", _copy, flag, no_attn.replace("o_proj", proj[-6:]))
        return None

    return layout


@_layout(
    {
        "embed.W_E": Slot("gpt_neox.embed_in.weight", _copy),
        "unembed.W_U": Slot("lm_head.weight", _transposed),
    },
    "gpt_neox.layers.{layer}.",
)
def _neox(pre: str, sub: str, p: str, cfg) -> Slot | None:
    n = cfg.num_attention_heads
    no_bias = "its attention has no bias (attention_bias: false)"
    table = {
        ("attn", "W_O"): Slot(f"{pre}attention.dense.weight", _heads_out),
        ("attn", "b_O"): Slot(f"{pre}attention.dense.bias", _copy, "attention_bias", no_bias),
        ("mlp", "W_out"): Slot(f"{pre}mlp.dense_4h_to_h.weight", _transposed),
        ("mlp", "b_out"): Slot(f"{pre}mlp.dense_4h_to_h.bias", _copy),
    }
    if (sub, p) in table:
        return table[(sub, p)]
    if sub == "attn" and p[2:] in ("Q", "K", "V"):
        j = "QKV".index(p[2:])
        if p.startswith("W"):  # query_key_value [(head qkv d_head), d_model]

            def put_w(hf: Tensor, t: Tensor, j=j) -> None:
                view = hf.view(n, 3, -1, hf.shape[-1])
                view[:, j].copy_(einops.rearrange(t, "i m h -> i h m"))

            return Slot(f"{pre}attention.query_key_value.weight", put_w)

        def put_b(hf: Tensor, t: Tensor, j=j) -> None:
            hf.view(n, 3, -1)[:, j].copy_(t)

        return Slot(f"{pre}attention.query_key_value.bias", put_b, "attention_bias", no_bias)
    return None


#: model_type -> TL parameter name -> its Slot (None: this family cannot hold it)
LAYOUTS: dict[str, Layout] = {
    "gpt2": _gpt2,
    "llama": _llama_like("attention_bias", "mlp_bias"),
    "mistral": _llama_like(None, None),
    "qwen2": _llama_like(None, None, qkv_bias_always=True),
    "gpt_neox": _neox,
}

_FLAG_NOTES = {
    "attention_bias": "set true by interp_audit to carry the repair's attention bias; the "
    "q/k/v/o biases the repair does not set are zero",
    "mlp_bias": "set true by interp_audit to carry the repair's MLP output bias; the gate/up "
    "biases and the down biases it does not set are zero",
    "tie_word_embeddings": "set false by interp_audit: the repair changed the input embeddings "
    "(concept erasure); the output embedding (lm_head) keeps the source's weights",
}


def exportable_model_types() -> list[str]:
    return list(LAYOUTS)


def _quiet():
    from interp_audit.model.adapters.quiet import quiet_tl_warnings

    return quiet_tl_warnings()


def folder_weights_sha256(folder: Path) -> str:
    """SHA-256 over every tensor in a folder's ``*.safetensors`` files (shards together)."""
    from safetensors.torch import load_file

    from interp_audit.model.hashing import tensors_sha256

    tensors: dict[str, Tensor] = {}
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise AuditError(f"{str(folder)!r} has no .safetensors weights to hash")
    for f in files:
        tensors.update(load_file(str(f)))
    return tensors_sha256(tensors)


def _load_source(origin: dict[str, Any]):
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = origin.get("folder")
    if not folder or not Path(folder).is_dir():
        raise ExportRefused(
            f"the Hugging Face export starts from the source folder {folder!r}, which no longer "
            "exists; save in the project's format instead (subject.save(dir))"
        )
    kw: dict[str, Any] = {"local_files_only": True}
    if origin.get("gguf_file"):
        kw["gguf_file"] = origin["gguf_file"]
    with _quiet():
        cfg = AutoConfig.from_pretrained(folder, **kw)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kw)
    return cfg, model


def export_hf(subject: Any, out: Path) -> Path:
    """Write ``subject`` (a :class:`~interp_audit.model.subject.Subject` read from a Hugging Face
    folder, repaired or not; the subject module calls this one) as a folder
    ``transformers.AutoModelForCausalLM.from_pretrained`` loads, in float32, with the repair
    record in ``repair.json`` and a summary under ``interp_audit_repair`` in ``config.json``.

    The written folder is loaded back with plain ``transformers`` and its logits compared with
    the Subject's on a fixed batch; a difference above 1e-3 (or 5x the float32 tolerance at the
    logits' scale) refuses the export (recorded).
    """
    from transformers import AutoModelForCausalLM

    from interp_audit.core.files import sha256_file, write_atomic

    origin = subject.origin or {}
    if origin.get("format") != "hf":
        raise ExportRefused(
            f"format='hf' writes models read from a Hugging Face folder; {subject.source!r} "
            "was not: save it in the project's format (subject.save(dir))"
        )
    processed = sorted(k for k, v in subject.weight_processing.items() if v)
    if processed:
        raise ExportRefused(
            f"weight processing {processed} rewrote the weights TransformerLens-style; a "
            "Hugging Face export needs them as trained: load without it, or save in the "
            "project's format (subject.save(dir))"
        )
    model_type = origin.get("model_type")
    layout = LAYOUTS.get(model_type)
    if layout is None:
        raise ExportRefused(
            f"no Hugging Face export for model_type {model_type!r} yet (exportable: "
            f"{', '.join(LAYOUTS)}); save it in the project's format (subject.save(dir))"
        )
    record = subject.repair or {}
    changed = list(record.get("changed_parameters", {}))
    hf_cfg, hf = _load_source(origin)
    state = {k: v.detach().clone() for k, v in hf.state_dict().items()}
    tl = subject.model.state_dict()
    notes: dict[str, str] = {}
    if "embed.W_E" in changed and getattr(hf_cfg, "tie_word_embeddings", False):
        hf_cfg.tie_word_embeddings = False
        notes["tie_word_embeddings"] = _FLAG_NOTES["tie_word_embeddings"]
        changed.append("unembed.W_U")
    slots = []
    for name in changed:
        slot = layout(name, hf_cfg)
        if slot is None:
            raise ExportRefused(
                f"the repair changed {name!r}, which has no place in a {model_type} checkpoint"
            )
        if slot.key not in state:
            if slot.flag is None:
                raise ExportRefused(
                    f"cannot export this repair as a {model_type} checkpoint: it sets {name!r} "
                    f"(Hugging Face {slot.key!r}), but {slot.reason}; the project's format "
                    "still saves it (subject.save(dir))"
                )
            setattr(hf_cfg, slot.flag, True)
            notes[slot.flag] = _FLAG_NOTES.get(slot.flag, "set true by interp_audit")
        slots.append((name, slot))
    with _quiet(), torch.no_grad():
        new = AutoModelForCausalLM.from_config(hf_cfg, dtype=torch.float32).eval()
        new_state = new.state_dict()
        for key, value in new_state.items():
            value.copy_(state[key] if key in state else torch.zeros_like(value))
        for name, slot in slots:
            slot.put(new_state[slot.key], tl[name].detach().to(torch.float32).cpu())
        new.load_state_dict(new_state, strict=True)
    summary = {
        "record": "repair.json",
        "kind": (record.get("repair") or {}).get("kind"),
        "components": (record.get("repair") or {}).get("components"),
        "config_changes": notes,
        "dtype": "float32 (the precision the repaired model was audited in)",
    }
    hf_cfg.interp_audit_repair = summary
    new.config.interp_audit_repair = summary
    for flag in notes:
        setattr(new.config, flag, getattr(hf_cfg, flag))
    out.mkdir(parents=True, exist_ok=True)
    (out / "repair.json").unlink(missing_ok=True)  # the folder is incomplete until it is back
    with _quiet():
        new.save_pretrained(str(out))
    if subject.tokenizer is not None and hasattr(subject.tokenizer, "save_pretrained"):
        subject.tokenizer.save_pretrained(str(out))
    diff = _check_export(subject, out)
    export = {
        "format": "hf",
        "model_type": model_type,
        "config_changes": notes,
        "weights_sha256": folder_weights_sha256(out),
        "files": {f.name: sha256_file(f) for f in sorted(out.glob("*.safetensors"))},
        "check": {
            "max_abs_logit_diff": diff,
            "against": "the repaired Subject, plain transformers forward of this folder",
        },
    }
    write_atomic(out / "repair.json", json.dumps({**record, "export": export}, indent=2))
    return out


def _check_export(subject: Any, out: Path) -> float:
    """Max |logit difference| between plain transformers on the folder and the Subject."""
    from transformers import AutoModelForCausalLM

    with _quiet():
        back = AutoModelForCausalLM.from_pretrained(
            str(out), local_files_only=True, dtype=torch.float32
        ).eval()
    vocab = int(subject.cfg.d_vocab)
    tokens = torch.randint(0, vocab, (2, min(12, int(subject.cfg.n_ctx))), generator=_gen())
    with torch.no_grad():
        ref = back(tokens).logits
    got = subject.run(tokens).to(ref.device, torch.float32)
    diff = float((got - ref).abs().max())
    tol = max(EXPORT_TOLERANCE, 5 * tolerance(torch.float32, float(ref.abs().max())))
    if not diff <= tol:
        raise ExportRefused(
            f"the exported folder {str(out)!r} does not reproduce the repaired model: plain "
            f"transformers logits differ by {diff:.3g} (> {tol:.3g})"
        )
    return diff


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)
