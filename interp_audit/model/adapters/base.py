"""The ModelAdapter interface: everything the package needs to know about a model family.

Downstream code (engine, locate, metrics, interventions) speaks hook names and component
addresses; whatever differs between model families (which hook holds a role, how a block or
its second half is called, the KV cache entry, the final readout, tokenization, capabilities)
is answered by the subject's adapter, chosen once at load by :func:`adapter_for`.

Hook names follow TransformerLens's vocabulary (``blocks.{L}.attn.hook_z``), the lingua franca
of the field; a family whose modules are named differently overrides the role methods.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp_audit.core.errors import AuditError
from interp_audit.model.adapters import hooks as hook_names
from interp_audit.model.metrics import Readout

AttnPart = Literal["z", "q", "k", "v", "pattern", "attn_scores", "result"]
_ATTN_ROLES = {
    "z": "head",
    "q": "head.q",
    "k": "head.k",
    "v": "head.v",
    "pattern": "head.pattern",
    "attn_scores": "head.scores",
    "result": "head.result",
}
#: What a repair folds into weights: units of a sublayer (heads, neurons, one head's q/k/v),
#: a whole sublayer's output, or an affine map of the residual stream (concept erasure).
FoldTarget = Literal["units", "sublayer", "residual"]
#: How a parameter writes into the residual stream: token embedding rows (one per position,
#: so a constant added to every row is added once), another embedding, a weight whose last
#: axis is d_model, or a bias [d_model].
WriterRole = Literal["token_embedding", "embedding", "weight", "bias"]


class ModelAdapter:
    """One model family's conventions and capabilities, bound to one model instance.

    Subclasses set ``family`` and implement the block calls; hook-name roles, weights and the
    causal readout default to TransformerLens's conventions, which all three supported
    families share.
    """

    family: ClassVar[str] = "abstract"
    #: The Subject.kind string this family reports (backward compatibility).
    kind: ClassVar[Literal["causal", "encoder"]] = "causal"

    def __init__(self, model: torch.nn.Module):
        self.model = model

    # ---- facts -----------------------------------------------------------------------------
    @property
    def cfg(self):
        return self.model.cfg

    def _cfg(self, key: str, default: Any = None) -> Any:
        return getattr(self.cfg, key, default)

    @property
    def n_layers(self) -> int:
        return int(self.cfg.n_layers)

    @property
    def n_heads(self) -> int:
        return int(self.cfg.n_heads)

    @property
    def d_model(self) -> int:
        return int(self.cfg.d_model)

    @property
    def d_vocab(self) -> int:
        return int(self.cfg.d_vocab)

    @property
    def n_ctx(self) -> int | None:
        """Longest sequence the model takes (None: unbounded)."""
        n = self._cfg("n_ctx")
        return None if n is None else int(n)

    @property
    def d_mlp(self) -> int | None:
        """MLP width; None for attention-only models."""
        return None if self.attn_only else self._cfg("d_mlp")

    @property
    def sizes(self) -> dict[str, int]:
        """Widths of the activation axes (:meth:`activation_axes`), for memory planning:
        ``d`` model, ``h`` heads, ``dh`` head, ``kv`` key/value heads as configured, ``dm`` MLP
        (4 d when unset, 0 attention-only), ``v`` vocabulary, ``n`` layers; ``gated`` is 1 for
        gated MLPs."""
        d, h = self.d_model, self.n_heads
        return dict(
            d=d,
            h=h,
            dh=int(self._cfg("d_head", d // h)),
            kv=int(self._cfg("n_key_value_heads") or h),
            dm=0 if self.attn_only else int(self._cfg("d_mlp") or 4 * d),
            v=self.d_vocab,
            n=self.n_layers,
            gated=int(bool(self._cfg("gated_mlp", False))),
        )

    def config_json(self) -> dict[str, Any]:
        """The model's config as plain JSON (what ``Subject.save`` writes)."""
        return config_to_json(self.cfg)

    @property
    def causal(self) -> bool:
        return self.kind == "causal"

    @property
    def n_key_value_heads(self) -> int | None:
        """Key/value heads under grouped-query attention (None: one per query head)."""
        n = self._cfg("n_key_value_heads")
        if n is None or self._cfg("ungroup_grouped_query_attention", False):
            return None
        return int(n) if int(n) != int(self.cfg.n_heads) else None

    @property
    def gqa(self) -> bool:
        return self.n_key_value_heads is not None

    @property
    def rotary(self) -> bool:
        return self._cfg("positional_embedding_type", "standard") == "rotary"

    @property
    def parallel_attn_mlp(self) -> bool:
        return bool(self._cfg("parallel_attn_mlp", False))

    @property
    def attn_only(self) -> bool:
        return bool(self._cfg("attn_only", False))

    @property
    def split_qkv(self) -> bool:
        """Can every head get its own query/key/value input hook (edge attribution)?"""
        return False

    @property
    def fast_path(self) -> bool:
        """Can the engine call blocks directly (layer skipping)? Else it runs full forwards."""
        return False

    @property
    def kv_cache(self) -> bool:
        """Can a block run on a slice of positions given the earlier positions' keys/values
        (position skipping, the last block at one position)? Needs ``fast_path``."""
        return False

    @property
    def mid_block_entry(self) -> bool:
        """Can a variant that changes only head outputs join mid-block (attention reused)?"""
        return False

    @property
    def has_resid_mid(self) -> bool:
        return not self.attn_only and not self.parallel_attn_mlp and self.causal

    @property
    def logit_lens(self) -> bool:
        """Can residual-stream directions be read as logits (:meth:`logit_directions`)?"""
        return self.causal and getattr(self.model, "unembed", None) is not None

    @property
    def sentence_embedding(self) -> bool:
        """Is a pooled final hidden state this family's output (sentence encoders)?"""
        return not self.causal

    def hf_reference(self, has_lm_head: bool) -> tuple[str, str]:
        """The ``transformers`` Auto class that computes this model from its Hugging Face
        folder, and the output attribute to compare (the wrapper-vs-HF gate)."""
        if self.causal:
            return "AutoModelForCausalLM", "logits"
        if has_lm_head:
            return "AutoModelForMaskedLM", "logits"
        return "AutoModel", "last_hidden_state"

    @property
    def prepend_bos_default(self) -> bool:
        return bool(self._cfg("default_prepend_bos", True)) if self.causal else False

    # ---- hook names per role (the table: :mod:`interp_audit.model.adapters.hooks`) ---------
    def hook(self, role: str, layer: int) -> str:
        """The hook holding ``role`` (a component kind such as ``"head"``, or ``"neuron.pre"``,
        ``"q_input"`` ...) at block ``layer``."""
        return hook_names.hook_of(role, layer)

    def role_of(self, name: str) -> tuple[int, str] | None:
        """``(layer, role)`` of a block hook name; None for other hooks."""
        return hook_names.role_of(name)

    def layer_of(self, name: str) -> int | None:
        return hook_names.layer_of(name)

    def position_dims(self, name: str) -> tuple[int, ...]:
        """Axes of a hook's activation (batch first) that index positions: queries and keys for
        attention patterns and scores ``[b, head, q, k]``, else axis 1 of ``[b, pos, ...]``."""
        role = self.role_of(name)
        return (2, 3) if role is not None and role[1] in ("head.pattern", "head.scores") else (1,)

    def in_block(self, name: str) -> bool:
        """Does ``name`` look like the name of a hook inside a block?"""
        return hook_names.in_block(name)

    def resid_pre(self, layer: int) -> str:
        return self.hook("resid_pre", layer)

    def resid_mid(self, layer: int) -> str:
        return self.hook("resid_mid", layer)

    def resid_post(self, layer: int) -> str:
        return self.hook("resid_post", layer)

    def attn(self, layer: int, part: AttnPart = "z") -> str:
        return self.hook(_ATTN_ROLES[part], layer)

    def attn_out(self, layer: int) -> str:
        return self.hook("attn", layer)

    def mlp_out(self, layer: int) -> str:
        return self.hook("mlp", layer)

    def mlp_in(self, layer: int) -> str:
        return self.hook("mlp_in", layer)

    def mlp_pre(self, layer: int) -> str:
        return self.hook("neuron.pre", layer)

    def mlp_post(self, layer: int) -> str:
        return self.hook("neuron", layer)

    def qkv_input(self, layer: int, part: Literal["q", "k", "v"]) -> str:
        return self.hook(f"{part}_input", layer)

    @property
    def embed_hook(self) -> str:
        return hook_names.EMBED

    def kv_hooks(self, layer: int) -> tuple[str, str]:
        """Hook names whose activations are what the KV cache stores for ``layer``."""
        return self.attn(layer, "k"), self.attn(layer, "v")

    def mid_hook(self, layer: int) -> str:
        """Residual stream between attention and MLP (after the block, if attention-only)."""
        return self.resid_post(layer) if self.attn_only else self.resid_mid(layer)

    def final_hook(self, n_layers: int) -> str:
        """The hook whose activation is the final residual stream (before the final norm)."""
        return self.resid_post(n_layers - 1)

    def processing_affecting(self, name: str) -> list[str]:
        """TransformerLens weight-processing flags that change the activation at ``name``."""
        return hook_names.processing_affecting(name)

    @property
    def extra_weight_bytes(self) -> int:
        """Bytes the adapter keeps beside the model's parameters (weights laid out for speed)."""
        return 0

    @property
    def materialises_attention_scores(self) -> bool:
        """Does a block call hold score-sized tensors (``[rows, head, pos, pos]``)? Memory
        planning counts them per row when it does (TransformerLens's blocks do)."""
        return True

    def activation_axes(self, name: str) -> tuple[str, ...]:
        """Per-example axes of the activation at hook ``name`` (``s`` positions, ``h`` heads,
        ``dh`` head width, ``kv`` key/value heads, ``d`` model width, ``dm`` MLP width)."""
        return hook_names.activation_axes(name)

    # ---- hooks -----------------------------------------------------------------------------
    @property
    def hook_dict(self) -> dict[str, Any]:
        return self.model.hook_dict

    def add_hook(self, name: str, fn: Callable, direction: str, level: int) -> Any:
        hp = self.hook_dict[name]
        hp.add_hook(fn, dir=direction, level=level)
        return hp

    def remove_hooks(self, handle: Any, level: int) -> None:
        handle.remove_hooks("both", including_permanent=False, level=level)

    def has_hooks(self, name: str) -> bool:
        return bool(self.hook_dict[name].has_hooks(including_permanent=False))

    # ---- tokens ----------------------------------------------------------------------------
    def to_tokens(self, tokenizer: Any, text: str, prepend_bos: bool) -> list[int]:
        """Token ids of one prompt with the special tokens this family expects (BOS, causal)."""
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        if prepend_bos and tokenizer.bos_token_id is not None:
            ids = [int(tokenizer.bos_token_id)] + ids
        return ids

    def answer_position(self, ids: Sequence[int], tokenizer: Any) -> int | None:
        """The position a metric scores for this prompt; None means the last token."""
        return None

    def default_scored(self, lengths: Int[Tensor, " b"]) -> Int[Tensor, " b"]:
        """Scored position when none was set: the last real token (causal LMs)."""
        return lengths - 1

    # ---- running ---------------------------------------------------------------------------
    def padding_kwargs(self, mask: Tensor | None) -> dict:
        """Keyword arguments that tell the model about padding in ``mask`` (none by default:
        the engine pads on the right, which a causal model never sees before the pad)."""
        return {}

    def forward_logits(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        """A plain hooked forward returning logits."""
        return self.model(tokens, **self.padding_kwargs(mask))

    def forward_hidden(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor | None:
        """A hooked forward run for its activations; returns logits only if it had to compute
        them anyway. On the fast path the unembedding is skipped (``return_type=None``, as
        TransformerLens models and bridges take it); other runs return the logits."""
        if self.fast_path:
            self.model(tokens, return_type=None, **self.padding_kwargs(mask))
            return None
        return self.model(tokens, **self.padding_kwargs(mask))

    def forward_resid(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        raise AuditError(f"{self.family} models have no sentence-embedding output")

    @property
    def runs_layer_by_layer(self) -> bool:
        """Can a forward run as :meth:`block_input` then :meth:`run_block` layer by layer
        (full positions, hooks firing as in a plain forward)? Gradient runs then re-run one
        layer at a time instead of keeping every layer's graph (memory)."""
        return False

    def block_input(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        """The residual stream entering the first block (embeddings, through their hooks)."""
        raise NotImplementedError

    def run_block(
        self,
        layer: int,
        resid: Float[Tensor, "rows pos d_model"],
        past_kv: tuple[Tensor, Tensor] | None = None,
        encoder_mask: Tensor | None = None,
    ) -> Float[Tensor, "rows pos d_model"]:
        raise NotImplementedError

    def run_block_after_attention(self, layer: int, resid_mid: Tensor) -> Tensor:
        raise NotImplementedError

    def block_kv(self, layer: int, resid: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values a block computes from ``resid`` (through its hooks), no queries."""
        raise NotImplementedError

    def head_output(
        self, layer: int, z: Float[Tensor, "rows pos head d_head"]
    ) -> Float[Tensor, "rows pos d_model"]:
        """What the heads write into the residual stream for head vectors ``z`` (no bias)."""
        return torch.einsum("rphd,hdm->rpm", z, self.W_O(layer))

    def head_outputs(
        self, layer: int, z: Float[Tensor, "rows pos head d_head"]
    ) -> Float[Tensor, "rows pos head d_model"]:
        """Each head's own write into the residual stream (no bias)."""
        return torch.einsum("rphd,hdm->rphm", z, self.W_O(layer))

    def W_O(self, layer: int) -> Float[Tensor, "head d_head d_model"]:
        return self.model.blocks[layer].attn.W_O

    def embedding_matrix(self) -> Tensor | None:
        return getattr(self.model, "W_E", None)

    def encoder_mask(self, mask: Int[Tensor, "b pos"], dtype: torch.dtype) -> Tensor | None:
        """The additive attention mask run_block wants (encoders); None for causal models."""
        return None

    def attention_pattern(
        self, layer: int, q: Tensor, k: Tensor, mask: Int[Tensor, "b pos"]
    ) -> Float[Tensor, "b head q k"]:
        """Softmax attention pattern from hook_q/hook_k activations (AtP*'s QK fix)."""
        raise AuditError(
            f"{self.family} models cannot recompute attention patterns; use method='atp'"
        )

    @contextlib.contextmanager
    def split_inputs(self, has_mlp: bool) -> Iterator[None]:
        """Give every head its own q/k/v input hook and MLPs an input hook, restored on exit."""
        raise AuditError(f"{self.family} models have no per-head input hooks")
        yield  # pragma: no cover

    def final_readout(
        self,
        readout: Readout,
        resid_at: Float[Tensor, "rows d_model"] | None,
        answers: Int[Tensor, "rows 2"] | None = None,
        hidden: Float[Tensor, "rows pos d_model"] | None = None,
        mask: Int[Tensor, "rows pos"] | None = None,
        *,
        has_lm_head: bool = True,
        source: str = "",
    ) -> Tensor:
        """Final norm then unembedding (causal LMs): only the two answer columns for
        ``answer_logits``."""
        if readout == "embedding":
            self.raise_readout(readout, source)
        ln = getattr(self.model, "ln_final", None)  # absent when normalization_type is None
        x = resid_at if ln is None else ln(resid_at[:, None, :])[:, 0]
        return unembed(self.model, readout, x, answers)

    def raise_readout(self, readout: str, source: str):
        if readout == "embedding":
            raise AuditError(
                f"metric reads a sentence embedding, but {source!r} is a causal LM; use "
                "logit_diff, prob_diff, logprob or kl_to_clean"
            )
        raise AuditError(
            f"metric reads logits, but {source!r} has no language-model head (a sentence "
            "encoder); use ia.metrics.embedding_similarity(...)"
        )

    # ---- weights a repair folds into --------------------------------------------------------
    def fold_refusal(self, target: FoldTarget) -> str | None:
        """None when a repair of ``target`` folds exactly into this family's weights, else the
        reason it cannot (quoted in the error that refuses the repair)."""
        return f"{self.family} models have no weight fold (load the model as a HookedTransformer)"

    def output_projection(self, layer: int, part: Literal["attn", "mlp"]) -> tuple[str, str]:
        """State-dict names of the weight that writes a sublayer's units into the residual stream
        (attention: ``[head, d_head, d_model]``, MLP: ``[neuron, d_model]``) and of its bias."""
        raise AuditError(self.fold_refusal("units") or f"{self.family}: no output projection")

    def input_projection(self, layer: int, part: Literal["q", "k", "v"]) -> tuple[str, str]:
        """State-dict names of a query/key/value weight ``[head, d_model, d_head]`` (key/value
        heads under grouped-query attention) and of its bias ``[head, d_head]``."""
        raise AuditError(self.fold_refusal("units") or f"{self.family}: no input projection")

    def residual_writers(self, before: int) -> list[tuple[str, WriterRole]]:
        """Every parameter whose output adds into the residual stream read by block ``before``
        (``n_layers``: the final stream): embeddings, then each earlier sublayer's output
        weight and bias, as (state-dict name, role)."""
        raise AuditError(self.fold_refusal("residual") or f"{self.family}: no residual writers")

    # ---- weights ---------------------------------------------------------------------------
    def move(self, device: str, dtype: torch.dtype | None) -> None:
        """Move the model (and what its config records) to ``device`` / ``dtype``."""
        with contextlib.redirect_stdout(io.StringIO()):  # TL's .to() prints
            self.model.to(device)
            if dtype is not None:
                self.model.to(dtype)
            if hasattr(self.model.cfg, "dtype"):
                self.model.cfg.dtype = dtype
        if hasattr(self.model.cfg, "device"):
            self.model.cfg.device = device

    def mlp_output_weights(self, layer: int) -> tuple[Tensor, Tensor] | None:
        """The live output projection of the MLP at ``layer``: ``W_out`` ``[d_mlp, d_model]``
        and ``b_out`` (what a rank-one edit changes); None when the block has none."""
        try:
            return (
                self.model.get_parameter(f"blocks.{layer}.mlp.W_out"),
                self.model.get_parameter(f"blocks.{layer}.mlp.b_out"),
            )
        except AttributeError:
            return None

    def logit_directions(
        self, directions: Float[Tensor, "n d_model"], source: str = ""
    ) -> Float[Tensor, "n vocab"]:
        """Direct logit effect of residual-stream directions: through the final norm treated
        as linear (LayerNorm centres and scales by its weight, RMSNorm scales; the per-position
        1/sigma is held fixed, as TransformerLens's ``apply_ln_to_stack`` does), then W_U.
        Causal LMs only: an encoder's output is a sentence embedding, not logits."""
        if not self.causal:
            self.raise_readout("final_logits", source)
        model = self.model
        d = directions.to(model.unembed.W_U.dtype)
        ln = getattr(model, "ln_final", None)
        if ln is not None:
            if self.cfg.normalization_type in ("LN", "LNPre"):
                d = d - d.mean(-1, keepdim=True)
            w = getattr(ln, "w", None)
            if w is not None:
                d = d * w
        return d @ model.unembed.W_U

    def process_weights(self, todo: dict[str, bool]) -> None:
        """Apply TransformerLens-style weight processing (fold_ln, ...) in place."""
        from interp_audit.core.errors import ModelLoadError

        raise ModelLoadError(
            f"weight processing {sorted(k for k, v in todo.items() if v)} is not supported for "
            f"{type(self.model).__name__}"
        )


def unembed(
    model, readout: str, x: Float[Tensor, "rows d_model"], answers: Tensor | None
) -> Tensor:
    """Logits of final residual vectors ``x``: only the answer columns for ``answer_logits``."""
    if readout == "answer_logits":
        w = model.unembed.W_U[:, answers]  # [d, rows, 2]
        out = torch.einsum("rd,drk->rk", x, w)
        b = getattr(model.unembed, "b_U", None)
        return out if b is None else out + b[answers]
    return model.unembed(x[:, None, :])[:, 0]


def config_to_json(cfg) -> dict[str, Any]:
    """A TransformerLens config as plain JSON (dtype by name, device dropped)."""
    import json

    out = {}
    for key, value in cfg.to_dict().items():
        if key in ("device", "tokenizer_name"):
            continue
        if isinstance(value, torch.dtype):
            value = str(value).replace("torch.", "")
        try:
            json.dumps(value)
        except TypeError:
            continue
        out[key] = value
    return out
