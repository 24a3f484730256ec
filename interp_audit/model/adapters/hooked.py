"""TransformerLens HookedTransformer / HookedSAETransformer: causal LMs, piece by piece.

The patching engine runs a model from a given layer, on a slice of positions, reading out only
what a metric needs: that needs the block call conventions (KV cache entries) and the final
norm/unembedding. Configurations this adapter cannot call block by block (local attention,
split inputs, several devices, QK-norm whose keys differ from the cached hook) run through a
plain hooked forward instead (slower, exact).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from interp_audit.core.errors import AuditError, ModelLoadError
from interp_audit.model.adapters import lean
from interp_audit.model.adapters.base import FoldTarget, ModelAdapter, WriterRole

#: Architectures whose attention output is normalised before the residual add (post-norm).
_POST_NORM = ("Olmo2ForCausalLM", "Olmo3ForCausalLM", "OlmoeForCausalLM")
_MOE = "mixture-of-experts MLPs route each token to some experts (no single output weight)"


class HookedAdapter(ModelAdapter):
    family = "hooked"
    kind = "causal"

    @property
    def split_qkv(self) -> bool:
        return hasattr(self.model, "set_use_split_qkv_input")

    @property
    def fast_path(self) -> bool:
        c = self._cfg
        return (
            c("positional_embedding_type", "standard") in ("standard", "rotary")
            and not c("use_split_qkv_input", False)
            and not c("use_attn_in", False)
            and not c("use_local_attn", False)
            and not c("use_qk_norm", False)  # keys are normalised after hook_k: cache mismatch
            and c("clip_qkv", None) is None
            and not c("use_logn_attn", False)
            and c("original_architecture", None) not in _POST_NORM
            and c("n_devices", 1) == 1
        )

    @property
    def kv_cache(self) -> bool:
        return self.fast_path

    @property
    def mid_block_entry(self) -> bool:
        """True where attention output adds linearly into the residual stream and the MLP
        reads that sum: pre-LN blocks without extra norms around sublayers. In parallel blocks
        (GPT-J, Pythia) the MLP reads resid_pre, which a head patch leaves alone, so the patched
        resid_post is the base one plus the heads' change: nothing is recomputed."""
        return self.fast_path and not self._cfg("use_normalization_before_and_after", False)

    def mid_hook(self, layer: int) -> str:
        """resid_post when nothing after attention reads the stream (attention-only blocks, and
        parallel blocks whose MLP reads resid_pre), else resid_mid."""
        return self.resid_post(layer) if self._attention_last else self.resid_mid(layer)

    @property
    def _attention_last(self) -> bool:
        return bool(self.attn_only or self.parallel_attn_mlp)

    # ---- running ---------------------------------------------------------------------------
    def padding_kwargs(self, mask: Tensor | None) -> dict:
        """TransformerLens's ``attention_mask`` for left-padded rows (pads masked, positions
        counted from each row's first real token, learned or rotary alike); nothing for right
        padding, which a causal model never sees before the pad (the engine's layout)."""
        if mask is None or mask.ndim != 2 or mask.shape[1] < 2:
            return {}
        m = mask.bool()
        pad_before_real = (~m[:, :-1] & m[:, 1:]).any()
        return {"attention_mask": mask.long()} if bool(pad_before_real) else {}

    @property
    def extra_weight_bytes(self) -> int:
        """The lean blocks' laid-out attention weights (adapters/lean.py), once built."""
        return sum(lean.layout_bytes(b) for b, ok in zip(self.model.blocks,
                                                          self._lean_supported(), strict=True)
                   if ok)  # fmt: skip

    @property
    def materialises_attention_scores(self) -> bool:
        """Lean blocks attend with scaled_dot_product_attention: no score-sized tensor per row
        (a hook on scores or patterns sends a block to TransformerLens's, which has them)."""
        return not all(self._lean_supported())

    def _lean_supported(self) -> list[bool]:
        # asked each time: split inputs (edge attribution) switch a config flag for a while
        return [lean.supported(b) for b in self.model.blocks]

    def _lean(self, layer: int) -> bool:
        """Can the engine call this block the lean way now (adapters/lean.py)?"""
        block = self.model.blocks[layer]
        return lean.supported(block) and not lean.needs_full_block(block)

    @property
    def runs_layer_by_layer(self) -> bool:
        """Every block called on the whole stream (no key/value cache), as TransformerLens's
        own forward does: split inputs and local attention included."""
        c = self._cfg
        shortformer = c("positional_embedding_type", "standard") == "shortformer"
        return not shortformer and c("n_devices", 1) == 1

    def block_input(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        if self.padding_kwargs(mask):  # left padding: blocks would need TL's attention mask
            raise AuditError("a layer-by-layer run needs right-padded (or unpadded) inputs")
        return self.model(tokens, stop_at_layer=0)

    def forward_hidden(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor | None:
        """The base class's hooked forward, block by block the lean way where every block can
        be (adapters/lean.py): the embeddings through TransformerLens (``stop_at_layer=0``),
        then each block; no final norm or unembedding (nothing reads them)."""
        kwargs = self.padding_kwargs(mask)
        if kwargs or not self.fast_path or not all(self._lean_supported()):
            return super().forward_hidden(tokens, mask)
        resid = self.block_input(tokens)
        for layer in range(self.n_layers):
            resid = self.run_block(layer, resid)
        return None

    def run_block(self, layer, resid, past_kv=None, encoder_mask=None):
        block = self.model.blocks[layer]
        if self._lean(layer):
            return lean.run_block(block, resid, past_kv)
        if past_kv is None:
            return block(resid)
        from transformer_lens.cache.key_value_cache_entry import (
            TransformerLensKeyValueCacheEntry,
        )

        entry = TransformerLensKeyValueCacheEntry(
            past_keys=past_kv[0], past_values=past_kv[1], frozen=True
        )
        return block(resid, past_kv_cache_entry=entry)

    def run_block_after_attention(
        self, layer: int, resid_mid: Float[Tensor, "rows pos d_model"]
    ) -> Float[Tensor, "rows pos d_model"]:
        """The second half of a pre-LN block: from resid_mid to resid_post (MLP and hooks)."""
        block = self.model.blocks[layer]
        if self._attention_last:  # resid_mid is already resid_post (see mid_hook)
            return block.hook_resid_post(resid_mid)
        resid_mid = block.hook_resid_mid(resid_mid)
        mlp_in = (
            block.hook_mlp_in(resid_mid.clone())
            if self._cfg("use_hook_mlp_in", False)
            else resid_mid
        )
        if self._lean(layer):
            mlp_out = lean.mlp(block, lean.norm(block.ln2, mlp_in))
        else:
            mlp_out = block.apply_mlp(block.ln2(mlp_in))
        return block.hook_resid_post(resid_mid + mlp_out)

    def block_kv(self, layer: int, resid: Tensor) -> tuple[Tensor, Tensor]:
        block = self.model.blocks[layer]
        if self._lean(layer):
            return lean.block_kv(block, resid)
        prefix = block.hook_resid_pre(resid)  # resid_pre patches apply here too
        normed = block.ln1(prefix)
        _, k, v = block.attn.calculate_qkv_matrices(normed, normed, normed)
        return k, v

    # ---- weights a repair folds into --------------------------------------------------------
    def fold_refusal(self, target: FoldTarget) -> str | None:
        c = self._cfg
        post_norm = c("original_architecture", None) in _POST_NORM or c(
            "use_normalization_before_and_after", False
        )
        if target == "units":
            return None  # heads, neurons, q/k/v: one slice of one projection, exact
        if post_norm:
            return (
                "this architecture normalises each sublayer's output before it joins the "
                "residual stream, so a sublayer's output (and the stream) is not an affine "
                "function of its output weights"
            )
        if target == "residual" and c("post_embedding_ln", False):
            return "the embeddings pass a LayerNorm before the residual stream (post_embedding_ln)"
        if target == "residual" and c("num_experts", None):
            return _MOE
        return None

    def output_projection(self, layer: int, part: Literal["attn", "mlp"]) -> tuple[str, str]:
        if part == "mlp" and self._cfg("num_experts", None):
            raise AuditError(f"cannot fold into layer {layer}'s MLP: {_MOE}")
        if part == "mlp":
            return f"blocks.{layer}.mlp.W_out", f"blocks.{layer}.mlp.b_out"
        return f"blocks.{layer}.attn.W_O", f"blocks.{layer}.attn.b_O"

    def input_projection(self, layer: int, part: Literal["q", "k", "v"]) -> tuple[str, str]:
        P = part.upper()
        grouped = part != "q" and hasattr(self.model.blocks[layer].attn, f"_W_{P}")
        lead = "_" if grouped else ""  # grouped-query attention stores key/value heads
        return f"blocks.{layer}.attn.{lead}W_{P}", f"blocks.{layer}.attn.{lead}b_{P}"

    def residual_writers(self, before: int) -> list[tuple[str, WriterRole]]:
        out: list[tuple[str, WriterRole]] = [("embed.W_E", "token_embedding")]
        if self._cfg("positional_embedding_type", "standard") == "standard":
            out.append(("pos_embed.W_pos", "embedding"))
        for layer in range(before):
            for part in ("attn",) if self.attn_only else ("attn", "mlp"):
                w, b = self.output_projection(layer, part)
                out += [(w, "weight"), (b, "bias")]
        return out

    def attention_pattern(self, layer, q, k, mask):
        attn = self.model.blocks[layer].attn
        if self._cfg("positional_embedding_type", "standard") not in ("standard", "rotary"):
            raise AuditError(
                "atp*'s QK fix needs standard or rotary positional embeddings; "
                f"this model uses {self._cfg('positional_embedding_type')!r}: use method='atp'"
            )
        if not self.fast_path:
            raise AuditError(
                "atp*'s QK fix cannot recompute this model's attention (local attention, "
                "QK-norm or split inputs); use method='atp'"
            )
        if self.rotary:
            q, k = attn.apply_rotary(q, 0), attn.apply_rotary(k, 0)
        scores = attn.calculate_attention_scores(q, k)  # GQA: repeats key heads itself
        scores = attn.apply_causal_mask(scores)
        return torch.softmax(scores.float(), dim=-1).to(q.dtype)

    @contextlib.contextmanager
    def split_inputs(self, has_mlp: bool) -> Iterator[None]:
        cfg = self.cfg
        before = (cfg.use_split_qkv_input, cfg.use_hook_mlp_in)
        try:
            self.model.set_use_split_qkv_input(True)
            if has_mlp:
                self.model.set_use_hook_mlp_in(True)
            yield
        finally:
            self.model.set_use_split_qkv_input(before[0])
            if has_mlp:
                self.model.set_use_hook_mlp_in(before[1])

    def process_weights(self, todo: dict[str, bool]) -> None:
        from interp_audit.model.adapters.quiet import quiet_tl_warnings

        if not hasattr(self.model, "load_and_process_state_dict"):
            raise ModelLoadError(f"weight processing is not supported for {type(self.model)}")
        with quiet_tl_warnings():
            self.model.load_and_process_state_dict(dict(self.model.state_dict()), **todo)
