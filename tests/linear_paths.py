"""A hand-wired model whose path-specific effects are known analytically, and its causal
spec: shared by the causal and trade-off tests.

One attention-only layer with zero queries/keys attends uniformly over the prompt, so
logit(YES) - logit(NO) at the last position is the mean of per-token weights (``WEIGHT``)."""

import torch

VOCAB = ["<bos>", "<pad>", "<unk>", "->", "YES", "NO", "a:0", "a:1", "m:0", "m:1", "z:0", "z:1"]
WEIGHT = {"a:1": 2.0, "m:1": 1.0, "z:1": -3.0}  # logit_diff = mean over the 5 tokens of these


def build_linear(
    vocab: list[str] = VOCAB,
    weight: dict[str, float] = WEIGHT,
    head_of: dict[str, int] | None = None,
):
    """One attention-only layer with zero queries/keys: uniform attention over the prompt, so
    logit(YES) - logit(NO) at the last position is the mean of per-token weights. ``head_of``:
    which head reads each weighted token (default all head 0); with several heads the logit is
    the same sum, and zero-ablating head h removes exactly its tokens' weights."""
    head_of = head_of or {}
    n_heads = 1 + max(head_of.values(), default=0)
    from interp_audit.model.loading import _subject_from_module, build_model
    from interp_audit.zoo.tokenizers import word_tokenizer

    d = len(vocab) + 1
    cfg = dict(
        n_layers=1,
        d_model=d,
        n_ctx=8,
        d_head=2,
        n_heads=n_heads,
        d_vocab=len(vocab),
        d_mlp=None,
        attn_only=True,
        normalization_type=None,
        act_fn="relu",
        default_prepend_bos=True,
        positional_embedding_type="standard",
        model_name="linear-paths",
    )
    model = build_model(cfg, seed=0, device="cpu")
    sd = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    sd["embed.W_E"][torch.arange(len(vocab)), torch.arange(len(vocab))] = 1.0
    for tok, w in weight.items():
        sd["blocks.0.attn.W_V"][head_of.get(tok, 0)][vocab.index(tok), 0] = w
    for h in range(n_heads):
        sd["blocks.0.attn.W_O"][h][0, d - 1] = 1.0
    sd["unembed.W_U"][d - 1, vocab.index("YES")] = 1.0
    model.load_state_dict(sd)
    return _subject_from_module(
        model, "linear-paths", {}, tokenizer=word_tokenizer(vocab), prepend_bos=True
    )


P_M = {"0": 0.3, "1": 0.7}  # P(M = 1 | A)
P_Z = {("0", "0"): 0.2, ("0", "1"): 0.5, ("1", "0"): 0.6, ("1", "1"): 0.9}  # P(Z = 1 | A, M)


P_L = {"0": 0.2, "1": 0.8}  # a label outside the graph: P(L = 1 | M)
TABLES = {
    "A": {"values": ["0", "1"], "p": [0.5, 0.5]},
    "M": {"values": ["0", "1"], "parents": ["A"], "p": {a: [1 - p, p] for a, p in P_M.items()}},
    "Z": {
        "values": ["0", "1"],
        "parents": ["A", "M"],
        "p": {f"{a}, {m}": [1 - p, p] for (a, m), p in P_Z.items()},
    },
    "L": {"values": ["0", "1"], "parents": ["M"], "p": {m: [1 - p, p] for m, p in P_L.items()}},
}
CAUSAL = {
    "graph": {"edges": {"A": ["M", "Z", "Y"], "M": ["Z", "Y"], "Z": ["Y"]}, "outcome": "Y",
              "resolving": ["M"]},
    "scm": TABLES,
    "render": {"template": "{A} {M} {Z} ->", "words": {"A": "a:{}", "M": "m:{}", "Z": "z:{}"}},
    "answers": ["YES", "NO"],
    "paths": {"mediated": "A -> M -> Y"},
    "interventions": {"A": {"value": "1", "reference": "0"}},
}  # fmt: skip


def analytic_effect(path: tuple[str, ...]) -> float:
    """E[logit_diff(factual) - logit_diff(path-specific A := 1)] over units with A = 0, from the
    tables (inverse-CDF coupling: M switches 0 -> 1 exactly when U_M falls in [0.3, 0.7))."""
    pm0, pm1 = P_M["0"], P_M["1"]
    if path == ("A", "Y"):
        diff = WEIGHT["a:1"]
    elif path == ("A", "M", "Y"):
        diff = (pm1 - pm0) * WEIGHT["m:1"]
    elif path == ("A", "Z", "Y"):  # Z(A=1, M factual) vs Z(A=0, M factual)
        diff = (
            (1 - pm0) * (P_Z[("1", "0")] - P_Z[("0", "0")])
            + pm0 * (P_Z[("1", "1")] - P_Z[("0", "1")])
        ) * WEIGHT["z:1"]
    else:  # A -> M -> Z -> Y: Z(A=0, M under A=1) vs Z(A=0, M factual); M moves on pm1 - pm0
        diff = (pm1 - pm0) * (P_Z[("0", "1")] - P_Z[("0", "0")]) * WEIGHT["z:1"]
    return -diff / 5  # 5 tokens: <bos> A M Z ->; factual minus counterfactual


def linear_spec(*checks, **contrasts):
    return {
        "name": "linear",
        "model": {"source": "zoo:handbuilt-copy"},  # replaced by subject= below
        "causal": CAUSAL,
        "contrasts": contrasts or {"direct": {"scm": "causal", "source": "A", "paths": "A -> Y"}},
        "checks": list(checks),
    }
