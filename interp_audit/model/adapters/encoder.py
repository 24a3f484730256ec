"""TransformerLens HookedEncoder (BERT): bidirectional, post-LN blocks, MLM head or pooling.

Blocks take an additive attention mask; the final residual stream is the last block's
normalised output; logits go through the MLM head (sentence encoders without one read a
mean-pooled embedding instead); special tokens ([CLS] ... [SEP]) come from the tokenizer and
the scored position is the first [MASK].
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp_audit.core.errors import ModelLoadError
from interp_audit.model.adapters.base import FoldTarget, ModelAdapter, unembed
from interp_audit.model.metrics import Readout, mean_pool


class EncoderAdapter(ModelAdapter):
    family = "encoder"
    kind = "encoder"

    @property
    def fast_path(self) -> bool:
        return not self._cfg("use_split_qkv_input", False)

    def final_hook(self, n_layers: int) -> str:
        """BERT blocks end in a LayerNorm: its output is the final residual stream."""
        return f"blocks.{n_layers - 1}.hook_normalized_resid_post"

    def to_tokens(self, tokenizer: Any, text: str, prepend_bos: bool) -> list[int]:
        return list(tokenizer(text, add_special_tokens=True)["input_ids"])

    def answer_position(self, ids, tokenizer) -> int | None:
        mask_id = getattr(tokenizer, "mask_token_id", None)
        return list(ids).index(mask_id) if mask_id in ids else 0

    def default_scored(self, lengths: Int[Tensor, " b"]) -> Int[Tensor, " b"]:
        return torch.zeros_like(lengths)

    def forward_logits(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.model(tokens, one_zero_attention_mask=mask)

    def forward_hidden(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor | None:
        self.model.encoder_output(tokens, None, mask)
        return None

    def forward_resid(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.model.encoder_output(tokens, None, mask)

    def run_block(self, layer, resid, past_kv=None, encoder_mask=None):
        return self.model.blocks[layer](resid, encoder_mask)

    def encoder_mask(self, mask: Int[Tensor, "b pos"], dtype: torch.dtype) -> Tensor:
        """HookedEncoder's additive attention mask from a one/zero mask."""
        add = torch.where(mask.bool(), 0.0, float("-inf")).to(dtype)
        return add[:, None, None, :]

    # ---- weights a repair folds into --------------------------------------------------------
    def fold_refusal(self, target: FoldTarget) -> str | None:
        """Heads, neurons and whole sublayers write linearly before BERT's residual add; the
        stream itself is normalised after every sublayer (post-LN): not a sum of writes."""
        if target == "residual":
            return (
                "BERT blocks normalise the residual stream after every sublayer (post-LN), so "
                "the stream is not a sum of writes an affine map could be folded into"
            )
        return None

    def output_projection(self, layer: int, part: Literal["attn", "mlp"]) -> tuple[str, str]:
        if part == "mlp":
            return f"blocks.{layer}.mlp.W_out", f"blocks.{layer}.mlp.b_out"
        return f"blocks.{layer}.attn.W_O", f"blocks.{layer}.attn.b_O"

    def input_projection(self, layer: int, part: Literal["q", "k", "v"]) -> tuple[str, str]:
        P = part.upper()
        return f"blocks.{layer}.attn.W_{P}", f"blocks.{layer}.attn.b_{P}"

    def attention_pattern(self, layer, q, k, mask):
        attn = self.model.blocks[layer].attn
        scores = attn.calculate_attention_scores(q, k)
        scores = scores + torch.where(mask.bool(), 0.0, float("-inf"))[:, None, None, :]
        return torch.softmax(scores.float(), dim=-1).to(q.dtype)

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
        if readout == "embedding":
            return mean_pool(hidden, mask)
        if not has_lm_head:
            self.raise_readout(readout, source)
        x = self.model.mlm_head(resid_at[:, None, :])[:, 0]
        return unembed(self.model, readout, x, answers)

    def process_weights(self, todo: dict[str, bool]) -> None:
        raise ModelLoadError(
            f"weight processing {sorted(k for k, v in todo.items() if v)} is not supported for "
            f"{type(self.model).__name__} (BERT's post-LayerNorm cannot be folded)"
        )
