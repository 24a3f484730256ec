"""TransformerLens 3.9's TransformerBridge: a Hugging Face model wrapped with TL hook names.

Its blocks are the Hugging Face modules behind TL-named hooks. Where a block called on a
residual stream alone computes exactly what it computes inside the full forward (checked per
architecture: GPT-2, whose positions enter at the embedding and whose attention is causal by
default), bridges take the engine's fast path with layer skipping (variants join at the layer
they patch). Other architectures need more than the residual stream (OPT's blocks need the
attention mask, rotary models the position embeddings) and run full hooked forwards (exact,
slower). Blocks take no TransformerLens KV cache entries, so positions are never skipped.
"""

from __future__ import annotations

import torch

from interp_audit.core.errors import ModelLoadError
from interp_audit.model.adapters.base import ModelAdapter

#: HF architectures whose bridge blocks run standalone on a residual stream, exactly.
BLOCKWISE_ARCHITECTURES = ("GPT2LMHeadModel",)


class BridgeAdapter(ModelAdapter):
    family = "bridge"
    kind = "causal"

    @property
    def fast_path(self) -> bool:
        return (
            self._cfg("architecture", None) in BLOCKWISE_ARCHITECTURES
            and self._cfg("positional_embedding_type", "standard") == "standard"
            and hasattr(self.model, "unembed")
        )

    def run_block(self, layer, resid, past_kv=None, encoder_mask=None):
        if past_kv is not None:
            raise NotImplementedError("TransformerBridge blocks take no KV cache entries")
        out = self.model.blocks[layer](resid)
        return out[0] if isinstance(out, tuple) else out

    def move(self, device: str, dtype: torch.dtype | None) -> None:
        self.model.to(device)
        if dtype is not None:
            self.model.to(dtype)

    def process_weights(self, todo: dict[str, bool]) -> None:
        if any(todo.values()):
            raise ModelLoadError(
                f"weight processing {sorted(k for k, v in todo.items() if v)} is not applied to "
                "a TransformerBridge by load_model; process it with the bridge's own API first"
            )
