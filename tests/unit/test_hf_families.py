"""Every supported Hugging Face family, offline, against plain ``transformers``.

Tiny random-init models are built from a config (``AutoConfig.for_model`` -> ``from_config``
-> ``save_pretrained``) and loaded back through ``ia.load_model(folder)``. References are
computed on the Hugging Face model itself with forward hooks on its own modules (the input
of the attention output projection holds the heads' outputs side by side; k_proj/v_proj
outputs hold the pre-rotary keys/values), so a wrong conversion, hook or GQA index shows up.
"""

from __future__ import annotations

import pytest
import torch

import interp_audit as ia
from interp_audit.methods.locate.edges import EdgeGraph
from interp_audit.model.loading import build_model

from helpers import build_cfg

VOCAB = 100
SIZE = dict(num_hidden_layers=2, num_attention_heads=4, hidden_size=64, max_position_embeddings=64)
GQA = dict(num_key_value_heads=2, intermediate_size=128)

#: model_type -> (config kwargs, attention output projection of layer l, k_proj, v_proj)
FAMILIES = {
    "gpt2": (
        dict(n_layer=2, n_head=4, n_embd=64, n_positions=64),
        lambda m, layer: m.transformer.h[layer].attn.c_proj,
    ),
    "gpt_neox": (
        dict(**SIZE, intermediate_size=128, rotary_pct=0.5),
        lambda m, layer: m.gpt_neox.layers[layer].attention.dense,
    ),
    "llama": (dict(**SIZE, **GQA), lambda m, layer: m.model.layers[layer].self_attn.o_proj),
    "mistral": (
        dict(**SIZE, **GQA, sliding_window=None),
        lambda m, layer: m.model.layers[layer].self_attn.o_proj,
    ),
    "qwen2": (dict(**SIZE, **GQA), lambda m, layer: m.model.layers[layer].self_attn.o_proj),
    "gemma": (
        dict(**SIZE, num_key_value_heads=1, head_dim=16, intermediate_size=128),
        lambda m, layer: m.model.layers[layer].self_attn.o_proj,
    ),
    "opt": (
        dict(**SIZE, ffn_dim=128, word_embed_proj_dim=64),
        lambda m, layer: m.model.decoder.layers[layer].self_attn.out_proj,
    ),
    "phi": (
        dict(**SIZE, intermediate_size=128, partial_rotary_factor=0.5),
        lambda m, layer: m.model.layers[layer].self_attn.dense,
    ),
}
D_HEAD = 16
#: model_type -> (n_key_value_heads, rotary, parallel attn+MLP, mid-block entry) as converted
#: (parallel blocks enter after attention: their MLP reads resid_pre, which heads leave alone)
CAPABILITIES = {
    "gpt2": (None, False, False, True),
    "gpt_neox": (None, True, True, True),
    "llama": (2, True, False, True),
    "mistral": (2, True, False, True),
    "qwen2": (2, True, False, True),
    "gemma": (1, True, False, True),
    "opt": (None, False, False, True),
    "phi": (None, True, True, True),
}


def _build(model_type: str, folder):
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    cfg = AutoConfig.for_model(model_type, vocab_size=VOCAB, **FAMILIES[model_type][0])
    hf = AutoModelForCausalLM.from_config(cfg).eval()
    hf.save_pretrained(folder)
    return hf, ia.load_model(folder)


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request, tmp_path_factory):
    hf, subject = _build(request.param, tmp_path_factory.mktemp(request.param))
    return request.param, hf, subject


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return _build("llama", tmp_path_factory.mktemp("llama-gqa"))


@pytest.fixture(scope="module")
def pairs():
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(5, VOCAB, (4, 7), generator=g)
    cf = clean.clone()
    cf[:, 2] = (clean[:, 2] + 7) % (VOCAB - 5) + 5
    answers = torch.randint(0, VOCAB, (4, 2), generator=g)
    answers[:, 1] = (answers[:, 0] + 1) % VOCAB
    return ia.ContrastSet.from_tokens(clean, cf, answers)


def _metric(logits, pairs) -> float:
    return float(ia.metrics.logit_diff.from_logits(logits, pairs).mean())


def _capture_input(hf, module, tokens) -> torch.Tensor:
    seen = {}
    handle = module.register_forward_pre_hook(lambda m, args: seen.update(x=args[0].clone()))
    with torch.no_grad():
        hf(tokens)
    handle.remove()
    return seen["x"]


def _run_with(hf, module, tokens, edit, output: bool = False) -> torch.Tensor:
    """HF logits with ``edit`` applied to ``module``'s input (or output)."""
    if output:
        handle = module.register_forward_hook(lambda m, args, out: edit(out.clone()))
    else:
        handle = module.register_forward_pre_hook(lambda m, args: (edit(args[0].clone()),))
    try:
        with torch.no_grad():
            return hf(tokens).logits
    finally:
        handle.remove()


def _slot(x, head, pos=None):
    cols = slice(head * D_HEAD, (head + 1) * D_HEAD)
    return (slice(None), slice(None) if pos is None else pos, cols)


def test_logits_equal_transformers(family):
    name, hf, subject = family
    tokens = torch.randint(0, VOCAB, (3, 11), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = hf(tokens).logits
    torch.testing.assert_close(subject.run(tokens), ref, atol=1e-4, rtol=1e-4)
    a = subject.adapter
    assert a.fast_path and a.kv_cache, name  # the batched engine, not the fallback
    assert (a.n_key_value_heads, a.rotary, a.parallel_attn_mlp, a.mid_block_entry) == (
        CAPABILITIES[name]
    )


def test_heads_patching_equals_hand_hooked_transformers(family, pairs):
    """Every head of every layer: swap its slice of o_proj's input in from the clean run."""
    name, hf, subject = family
    eff = ia.patch(subject, pairs, sites="heads", normalize=False)
    for layer in range(2):
        proj = FAMILIES[name][1](hf, layer)
        clean_z = _capture_input(hf, proj, pairs.clean)
        for head in range(4):

            def swap(x, head=head, clean_z=clean_z):
                x[_slot(x, head)] = clean_z[_slot(x, head)]
                return x

            ref = _metric(_run_with(hf, proj, pairs.counterfactual, swap), pairs)
            assert eff.values[layer, head].item() == pytest.approx(ref, abs=1e-4), (name, layer)


@pytest.mark.parametrize("part", ["k", "v"])
def test_kv_head_patching_per_position_equals_transformers(llama, pairs, part):
    """GQA + rotary: kv-head axis of size n_key_value_heads; k_proj output is pre-rotary."""
    hf, subject = llama
    eff = ia.patch(subject, pairs, sites=f"heads_{part}", per_position=True, normalize=False)
    assert eff.dims == ("layer", "pos", "head") and eff.values.shape == (2, 7, 2)
    for layer in range(2):
        proj = getattr(hf.model.layers[layer].self_attn, f"{part}_proj")
        clean_kv = _capture_input_out(hf, proj, pairs.clean)
        for pos in (1, 2, 6):
            for g in range(2):

                def swap(y, g=g, pos=pos, clean_kv=clean_kv):
                    y[_slot(y, g, pos)] = clean_kv[_slot(y, g, pos)]
                    return y

                logits = _run_with(hf, proj, pairs.counterfactual, swap, output=True)
                got = eff.values[layer, pos, g].item()
                assert got == pytest.approx(_metric(logits, pairs), abs=1e-4), (layer, pos, g)


def _capture_input_out(hf, module, tokens) -> torch.Tensor:
    seen = {}
    handle = module.register_forward_hook(lambda m, args, out: seen.update(y=out.clone()))
    with torch.no_grad():
        hf(tokens)
    handle.remove()
    return seen["y"]


@pytest.mark.parametrize(
    "receiver, parts", [("L1H1.v", {"v": 1}), ("L1H2", {"q": 2, "k": 1, "v": 1})]
)
def test_path_patching_under_gqa_equals_two_step_transformers(llama, pairs, receiver, parts):
    """Sender L0H1 -> a layer-1 receiver, other heads frozen. Query head 2 reads key/value
    head 2 // 2 = 1, so 'L1H2' (all three inputs) patches q head 2 and kv head 1."""
    hf, subject = llama
    attn = [hf.model.layers[layer].self_attn for layer in range(2)]
    clean_z = [_capture_input(hf, a.o_proj, pairs.clean) for a in attn]
    base_z = [_capture_input(hf, a.o_proj, pairs.counterfactual) for a in attn]
    recorded = {}

    def freeze(layer):
        def fn(m, args):
            x = base_z[layer].clone()
            if layer == 0:
                x[_slot(x, 1)] = clean_z[0][_slot(x, 1)]
            return (x,)

        return fn

    def record(part):
        return lambda m, a, y: recorded.update({part: y})

    handles = [a.o_proj.register_forward_pre_hook(freeze(i)) for i, a in enumerate(attn)]
    handles += [getattr(attn[1], f"{p}_proj").register_forward_hook(record(p)) for p in parts]
    with torch.no_grad():
        hf(pairs.counterfactual)
    for h in handles:
        h.remove()

    def put(part, head):
        def fn(m, a, y):
            y = y.clone()
            y[_slot(y, head)] = recorded[part][_slot(y, head)]
            return y

        return fn

    handles = [
        getattr(attn[1], f"{p}_proj").register_forward_hook(put(p, h)) for p, h in parts.items()
    ]
    with torch.no_grad():
        manual = _metric(hf(pairs.counterfactual).logits, pairs)
    for h in handles:
        h.remove()
    eff = ia.patch_path(subject, pairs, senders=["L0H1"], receivers=[receiver], normalize=False)
    assert eff.values.item() == pytest.approx(manual, abs=1e-4)


def test_atp_equals_transformers_gradient(llama, pairs):
    """AtP for heads: (z_clean - z_cf) . dM/dz at the counterfactual run, from HF autograd."""
    hf, subject = llama
    est = ia.attribute(subject, pairs, sites="heads", method="atp", normalize=False)
    for layer in range(2):
        proj = hf.model.layers[layer].self_attn.o_proj
        clean_z = _capture_input(hf, proj, pairs.clean)
        leaf = {}

        def grab(m, args, leaf=leaf):
            leaf["z"] = args[0].detach().requires_grad_(True)
            return (leaf["z"],)

        handle = proj.register_forward_pre_hook(grab)
        per_example = ia.metrics.logit_diff.from_logits(hf(pairs.counterfactual).logits, pairs)
        handle.remove()
        (grad,) = torch.autograd.grad(per_example.sum(), [leaf["z"]])
        delta = ((clean_z - leaf["z"].detach()) * grad).reshape(4, 7, 4, D_HEAD).sum((1, 3))
        ref = per_example.detach()[:, None] + delta  # [b, head]
        torch.testing.assert_close(est.values[layer], ref.mean(0), atol=1e-4, rtol=0)
    hf.zero_grad(set_to_none=True)


@pytest.mark.parametrize("part", ["q", "k"])
def test_qk_fix_recomputes_rotary_gqa_patterns_exactly(llama, pairs, part):
    """AtP*'s QK fix (no GradDrop) = sum (pattern under the patch - base) * dM/dpattern, with
    the patched pattern taken from TransformerLens's own forward (rotary, repeated kv heads)."""
    _, subject = llama
    est = ia.attribute(subject, pairs, sites=f"heads_{part}", method="atp*", graddrop=False)
    est_raw = ia.attribute(
        subject, pairs, sites=f"heads_{part}", method="atp*", graddrop=False, normalize=False
    )
    model = subject.model
    _, clean = model.run_with_cache(pairs.clean)
    pats: dict[str, torch.Tensor] = {}
    new: dict[str, torch.Tensor] = {}

    def keep(act, *, hook):
        act.retain_grad()
        pats[hook.name] = act
        return act

    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(2)]
    with subject.hooks([(n, keep) for n in names]):
        per_example = ia.metrics.logit_diff.from_logits(model(pairs.counterfactual), pairs)
        per_example.sum().backward()
    grads = {n: pats[n].grad.detach() for n in names}
    model.zero_grad(set_to_none=True)
    n_heads = 2 if part == "k" else 4
    for layer in range(2):
        hook = f"blocks.{layer}.attn.hook_{part}"
        pat = names[layer]
        for head in range(n_heads):

            def swap(act, *, hook, head=head):
                act = act.clone()
                act[:, :, head] = clean[hook.name][:, :, head]
                return act

            def record(act, *, hook):
                new["p"] = act.detach()

            with torch.no_grad(), subject.hooks([(hook, swap), (pat, record)]):
                model(pairs.counterfactual)
            delta = ((new["p"] - pats[pat].detach()) * grads[pat]).sum((1, 2, 3))
            ref = float((per_example.detach() + delta).mean())
            assert est_raw.values[layer, head].item() == pytest.approx(ref, abs=1e-5)
    assert est.values.shape == est_raw.values.shape
    assert subject.live_hooks() == []


@pytest.fixture(scope="module")
def linear_gqa():
    """A GQA + rotary model made linear in its residual stream (W_Q = W_K = 0: uniform causal
    attention; MLPs output a constant), so EAP's first order is exact."""
    cfg = build_cfg(
        normalization_type=None,
        act_fn="relu",
        n_key_value_heads=2,
        positional_embedding_type="rotary",
    )
    model = build_model(cfg, seed=2)
    with torch.no_grad():
        for block in model.blocks:
            block.attn.W_Q.zero_()
            block.attn._W_K.zero_()
            block.mlp.W_in.zero_()
            block.mlp.b_in.fill_(-1.0)
    return ia.load_model(model)


def test_eap_equals_single_edge_patching_under_gqa(linear_gqa):
    from helpers import random_pairs

    pairs = random_pairs(seed=2)
    edges = ia.attribute_edges(linear_gqa, pairs, method="eap")
    graph = EdgeGraph.of(linear_gqa)
    assert "L2H1.k" in graph.receivers and "L2H2.k" not in graph.receivers  # 2 kv heads
    clean = float(ia.patch_edges(linear_gqa, pairs, graph.valid).mean())
    for label, score in edges.top(6) + [
        ("L0H1->L2H0.k", edges["L0H1->L2H0.k"]),
        ("L0H3->L1H1.v", edges["L0H3->L1H1.v"]),
        ("embed->logits", edges["embed->logits"]),
    ]:
        keep = graph.valid.clone()
        s, r = label.split("->")
        keep[graph.senders.index(s), graph.receivers.index(r)] = False
        without = float(ia.patch_edges(linear_gqa, pairs, keep).mean())
        assert clean - without == pytest.approx(score, abs=1e-4), label


def test_edge_patching_extremes_on_a_gqa_llama(llama, pairs):
    _, subject = llama
    graph = EdgeGraph.of(subject)
    exact = ia.patch(subject, pairs, sites="heads")
    assert float(ia.patch_edges(subject, pairs, graph.valid).mean()) == pytest.approx(
        exact.baseline["clean"], abs=1e-5
    )
    assert float(ia.patch_edges(subject, pairs, torch.zeros_like(graph.valid)).mean()) == (
        pytest.approx(exact.baseline["counterfactual"], abs=1e-5)
    )
    assert subject.live_hooks() == [] and not subject.cfg.use_split_qkv_input


def test_unsupported_configs_are_refused_by_name(tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model("opt", vocab_size=VOCAB, **SIZE, ffn_dim=128, word_embed_proj_dim=32)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path / "opt-proj")
    with pytest.raises(ia.ModelLoadError, match="projected word embeddings"):
        ia.load_model(tmp_path / "opt-proj")
