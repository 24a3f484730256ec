"""``zoo:handbuilt-copy``: a 2-layer attention-only model whose circuit is set by hand.

Prompts are ``<bos> S F ->`` with subject token S in {A, B} and a filler F in {x, y}; the answer
is YES for A and NO for B. Residual stream layout (d_model = 24): token one-hots 0-9, position
one-hots 10-17, copied-subject dims c_A=18, c_B=19, relayed dims d_A=20, d_B=21, junk 22.

* L0H0 (mover) attends from every position to position 1 and copies S into c.
* L0H1 (distractor) attends to <bos> and writes the filler into junk.
* L1H0 (relay) attends from the last position to itself and copies c into d.
* L1H1 (distractor) attends to <bos>, where c is empty: it writes nothing.
* The unembedding reads YES = c_A + 3 d_A and NO = c_B + 3 d_B.

So logit_diff(YES - NO) is +4 on A, -4 on B. Denoising patches, normalised: L0H0 = 1,
L1H0 = 0.75, distractors 0; path L0H0 -> logits = 0.25, L0H0 -> L1H0.v = 0.75, via q/k = 0.
Attention scores differ by 500, so every softmax is one-hot to float32 precision.
"""

from __future__ import annotations

import torch

from interp_audit.model.adapters.build import block_param
from interp_audit.zoo.registry import ZooModel, register
from interp_audit.zoo.tokenizers import word_tokenizer

VOCAB = ["<bos>", "<pad>", "<unk>", "A", "B", "x", "y", "->", "YES", "NO"]
TOK = {w: i for i, w in enumerate(VOCAB)}
POS0, C_A, C_B, D_A, D_B, JUNK = 10, 18, 19, 20, 21, 22
N_CTX, SHARP = 8, 1000.0

CONFIG = dict(
    n_layers=2,
    d_model=24,
    n_ctx=N_CTX,
    d_head=4,
    n_heads=2,
    d_vocab=len(VOCAB),
    d_mlp=None,
    attn_only=True,
    normalization_type=None,
    act_fn="relu",
    positional_embedding_type="standard",
    default_prepend_bos=True,
    model_name="handbuilt-copy",
)


def _attend_to(w_q: torch.Tensor, w_k: torch.Tensor, pos: int) -> None:
    """Query is 1 at every position; key is SHARP at ``pos``: attend there when visible."""
    w_q[POS0 : POS0 + N_CTX, 0] = 1.0
    w_k[POS0 + pos, 0] = SHARP


@register(
    "handbuilt-copy",
    "2-layer attention-only model with a hand-set copy/relay circuit (analytic effects)",
)
def build() -> ZooModel:
    return ZooModel(config=CONFIG, init=_set_weights, tokenizer=word_tokenizer(VOCAB))


def _set_weights(model) -> None:
    """Every weight zero except the circuit's, set by hand (see the module docstring)."""
    sd = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    sd["embed.W_E"][torch.arange(len(VOCAB)), torch.arange(len(VOCAB))] = 1.0
    sd["pos_embed.W_pos"][torch.arange(N_CTX), POS0 + torch.arange(N_CTX)] = 1.0
    a0, a1 = block_param(0, "attn."), block_param(1, "attn.")
    # L0H0: position 1 -> copy subject token into c
    _attend_to(sd[a0 + "W_Q"][0], sd[a0 + "W_K"][0], 1)
    sd[a0 + "W_V"][0][TOK["A"], 0] = 1.0
    sd[a0 + "W_V"][0][TOK["B"], 1] = 1.0
    sd[a0 + "W_O"][0][0, C_A] = 1.0
    sd[a0 + "W_O"][0][1, C_B] = 1.0
    # L0H1: <bos> -> filler into junk
    _attend_to(sd[a0 + "W_Q"][1], sd[a0 + "W_K"][1], 0)
    sd[a0 + "W_V"][1][TOK["x"], 0] = 1.0
    sd[a0 + "W_O"][1][0, JUNK] = 1.0
    # L1H0: last position (3) attends to itself, copies c into d
    _attend_to(sd[a1 + "W_Q"][0], sd[a1 + "W_K"][0], 3)
    sd[a1 + "W_V"][0][C_A, 0] = 1.0
    sd[a1 + "W_V"][0][C_B, 1] = 1.0
    sd[a1 + "W_O"][0][0, D_A] = 1.0
    sd[a1 + "W_O"][0][1, D_B] = 1.0
    # L1H1: <bos> (where c is empty) -> junk
    _attend_to(sd[a1 + "W_Q"][1], sd[a1 + "W_K"][1], 0)
    sd[a1 + "W_V"][1][C_A, 0] = 1.0
    sd[a1 + "W_O"][1][0, JUNK] = 1.0
    # unembedding
    sd["unembed.W_U"][C_A, TOK["YES"]] = 1.0
    sd["unembed.W_U"][D_A, TOK["YES"]] = 3.0
    sd["unembed.W_U"][C_B, TOK["NO"]] = 1.0
    sd["unembed.W_U"][D_B, TOK["NO"]] = 3.0
    model.load_state_dict(sd)
