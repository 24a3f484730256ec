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

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp_audit.core.errors import AuditError, ModelLoadError
from interp_audit.model.adapters.base import ModelAdapter
from interp_audit.model.metrics import Readout

#: Architectures whose attention output is normalised before the residual add (post-norm).
_POST_NORM = ("Olmo2ForCausalLM", "Olmo3ForCausalLM", "OlmoeForCausalLM")


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
    def forward_logits(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.model(tokens, **_padding(mask))

    def forward_hidden(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor | None:
        if self.fast_path:
            self.model(tokens, return_type=None, **_padding(mask))
            return None
        return self.model(tokens, **_padding(mask))

    def run_block(self, layer, resid, past_kv=None, encoder_mask=None):
        block = self.model.blocks[layer]
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
        mlp_out = block.apply_mlp(block.ln2(mlp_in))
        return block.hook_resid_post(resid_mid + mlp_out)

    def block_kv(self, layer: int, resid: Tensor) -> tuple[Tensor, Tensor]:
        block = self.model.blocks[layer]
        prefix = block.hook_resid_pre(resid)  # resid_pre patches apply here too
        normed = block.ln1(prefix)
        _, k, v = block.attn.calculate_qkv_matrices(normed, normed, normed)
        return k, v

    def W_O(self, layer: int) -> Tensor:
        return self.model.blocks[layer].attn.W_O

    def embedding_matrix(self) -> Tensor | None:
        return getattr(self.model, "W_E", None)

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

    def final_readout(
        self,
        readout: Readout,
        resid_at: Float[Tensor, "rows d_model"] | None,
        answers: Int[Tensor, "rows 2"] | None = None,
        hidden: Tensor | None = None,
        mask: Tensor | None = None,
        *,
        has_lm_head: bool = True,
        source: str = "",
    ) -> Tensor:
        """Final norm then unembedding: only the two answer columns for ``answer_logits``."""
        if readout == "embedding":
            self.raise_readout(readout, source)
        ln = getattr(self.model, "ln_final", None)  # absent when normalization_type is None
        x = resid_at if ln is None else ln(resid_at[:, None, :])[:, 0]
        return _unembed(self.model, readout, x, answers)

    def process_weights(self, todo: dict[str, bool]) -> None:
        from interp_audit.model.adapters.quiet import quiet_tl_warnings

        if not hasattr(self.model, "load_and_process_state_dict"):
            raise ModelLoadError(f"weight processing is not supported for {type(self.model)}")
        with quiet_tl_warnings():
            self.model.load_and_process_state_dict(dict(self.model.state_dict()), **todo)


def _padding(mask: Tensor | None) -> dict:
    """TransformerLens's ``attention_mask`` for left-padded rows (pads masked, positions
    counted from each row's first real token, learned or rotary alike); nothing for right
    padding, which a causal model never sees before the pad (the engine's layout)."""
    if mask is None or mask.ndim != 2 or mask.shape[1] < 2:
        return {}
    m = mask.bool()
    pad_before_real = (~m[:, :-1] & m[:, 1:]).any()
    return {"attention_mask": mask.long()} if bool(pad_before_real) else {}


def _unembed(model, readout: str, x: Tensor, answers: Tensor | None) -> Tensor:
    if readout == "answer_logits":
        w = model.unembed.W_U[:, answers]  # [d, rows, 2]
        out = torch.einsum("rd,drk->rk", x, w)
        b = getattr(model.unembed, "b_U", None)
        return out if b is None else out + b[answers]
    return model.unembed(x[:, None, :])[:, 0]
