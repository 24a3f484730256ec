"""TransformerLens 3.9's TransformerBridge: a Hugging Face model wrapped with TL hook names.

Its blocks are the Hugging Face modules, so they cannot be called with TransformerLens's KV
cache entries: every sweep runs full hooked forwards (the generic path, exact and slower).
"""

from __future__ import annotations

from torch import Tensor

from ..errors import ModelLoadError
from .base import ModelAdapter


class BridgeAdapter(ModelAdapter):
    family = "bridge"
    kind = "causal"

    def forward_logits(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.model(tokens)

    def forward_hidden(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor | None:
        return self.model(tokens)

    def embedding_matrix(self) -> Tensor | None:
        return getattr(self.model, "W_E", None)

    def process_weights(self, todo: dict[str, bool]) -> None:
        if any(todo.values()):
            raise ModelLoadError(
                f"weight processing {sorted(k for k, v in todo.items() if v)} is not applied to "
                "a TransformerBridge by load_model; process it with the bridge's own API first"
            )
