"""Patching, attribution, ablation and a full audit on CUDA, against references on CUDA.

References: TransformerLens's ``patching`` module run on the same CUDA model; the same code on
CPU for the same weights (already tested against references there); hand-written hooks; and
half precision against float32 at ``devices.tolerance``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from gpu_helpers import DEVICE, GPU_CFG
from transformer_lens import patching as tlp

import interp_audit as ia
from interp_audit.core.errors import ModelLoadError
from interp_audit.model.devices import tolerance
from interp_audit.model.loading import build_model
from interp_audit.model.memory import estimate_sweep
from interp_audit.model.metrics import logit_diff

ROOT = Path(__file__).resolve().parents[2]


def _tl(model, pairs, fn):
    dev = next(model.parameters()).device
    with torch.no_grad():
        _, cache = model.run_with_cache(pairs.clean.to(dev))
        return fn(
            model,
            pairs.counterfactual.to(dev),
            cache,
            lambda logits: logit_diff.from_logits(logits, pairs).mean(),
        )


@pytest.mark.parametrize(
    "site, per_position, tl_fn",
    [
        ("heads", False, tlp.get_act_patch_attn_head_out_all_pos),
        ("resid_pre", True, tlp.get_act_patch_resid_pre),
        ("mlp_out", True, tlp.get_act_patch_mlp_out),
    ],
)
def test_patching_equals_transformer_lens_on_cuda(cuda_subject, pairs, site, per_position, tl_fn):
    ours = ia.patch(cuda_subject, pairs, sites=site, per_position=per_position, normalize=False)
    assert ours.values.device.type == "cpu" or ours.values.is_cuda
    ref = _tl(cuda_subject.model, pairs, tl_fn)
    torch.testing.assert_close(ours.values.cpu(), ref.cpu().float(), atol=2e-5, rtol=0)
    assert float(ref.abs().max()) > 1e-3  # a sweep with something to compare


def test_attribution_on_cuda_equals_cpu(cuda_subject, cpu_twin, pairs):
    for method in ("atp", "atp*"):
        gpu = ia.attribute(cuda_subject, pairs, sites="heads", method=method, normalize=False)
        cpu = ia.attribute(cpu_twin, pairs, sites="heads", method=method, normalize=False)
        torch.testing.assert_close(gpu.values.cpu(), cpu.values, atol=2e-5, rtol=1e-4)


def test_mean_ablation_on_cuda_equals_a_hand_hook(cuda_subject, pairs):
    dev = cuda_subject.device
    hook = "blocks.1.attn.hook_z"
    both = torch.cat([pairs.clean, pairs.counterfactual]).to(dev)
    _, cache = cuda_subject.model.run_with_cache(both)
    mean = cache[hook][:, :, 2].mean(0)  # [pos, d_head]: over clean and counterfactual prompts

    def by_hand(z, hook):
        z = z.clone()
        z[:, :, 2] = mean
        return z

    with torch.no_grad():
        ref = cuda_subject.model.run_with_hooks(pairs.clean.to(dev), fwd_hooks=[(hook, by_hand)])
    with ia.ablate(cuda_subject, ["L1H2"], kind="mean", reference=pairs):
        got = cuda_subject.run(pairs.clean)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
    assert not cuda_subject.live_hooks()
    assert float((got - cuda_subject.run(pairs.clean)).abs().max()) > 1e-4


def test_full_audit_on_cuda_equals_cpu():
    spec = ROOT / "circuits" / "handbuilt" / "audit.yaml"
    gpu, cpu = ia.audit(spec, device=DEVICE), ia.audit(spec, device="cpu")
    assert gpu.provenance["model"]["device"].startswith(DEVICE)
    assert all(g["passed"] for g in gpu.provenance["trust_gates"])
    for a, b in zip(gpu.checks, cpu.checks, strict=True):
        assert a.passed == b.passed and a.statistic == pytest.approx(b.statistic, abs=1e-5)
    for name, eff in gpu.effects.items():
        torch.testing.assert_close(eff.values.cpu(), cpu.effects[name].values, atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_on_cuda_within_stated_tolerance(cuda_subject, pairs, dtype):
    half = ia.load_model(build_model(GPU_CFG, seed=3), device=DEVICE, dtype=dtype)
    scale = float(cuda_subject.run(pairs.clean).abs().max())
    for site, per_pos in (("heads", False), ("resid_pre", True)):
        ref = ia.patch(cuda_subject, pairs, sites=site, per_position=per_pos, normalize=False)
        got = ia.patch(half, pairs, sites=site, per_position=per_pos, normalize=False)
        err = float((got.values.float() - ref.values).abs().max())
        assert 0 < err <= tolerance(dtype, scale), (site, err, tolerance(dtype, scale))


@pytest.mark.skipif(DEVICE != "cuda", reason="reads CUDA's allocator statistics")
def test_memory_estimate_bounds_cuda_peak(cuda_subject, pairs):
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    ia.patch(cuda_subject, pairs, sites="heads", batch_size=16)
    torch.cuda.synchronize()
    measured = torch.cuda.max_memory_allocated() - before
    from interp_audit.methods.locate.sites import plan_sites

    plan = plan_sites(cuda_subject, pairs, "heads", False)
    est = estimate_sweep(
        cuda_subject,
        pairs.seq_len,
        16,
        plan.hooks,
        n_examples=len(pairs),
        n_variants=len(plan.variants),
    )
    assert measured <= est.activations <= 4 * measured, (measured, est.describe())


@pytest.mark.skipif(DEVICE != "cuda", reason="about CUDA device indices")
def test_absent_cuda_index_is_a_clear_error():
    with pytest.raises(ModelLoadError, match="cuda:99"):
        ia.load_model("zoo:handbuilt-copy", device="cuda:99")


@pytest.mark.parametrize("method", ["atp", "atp*"])
def test_attribution_within_max_memory_on_cuda(cuda_subject, pairs, method):
    """A budget that holds one pair's layer-by-layer graph (not the batch's whole graph):
    the same estimates as without a budget, and (on CUDA) an allocator peak within it."""
    from interp_audit.model.memory import estimate_gradient

    ref = ia.attribute(cuda_subject, pairs, sites="heads", method=method, normalize=False)
    hooks = [f"blocks.{i}.attn.hook_z" for i in range(cuda_subject.n_layers)]
    one = estimate_gradient(cuda_subject, pairs.seq_len, 1, hooks, checkpoint=True, n_examples=1)
    budget = int(one.peak * 1.2)
    if DEVICE == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    got = ia.attribute(
        cuda_subject, pairs, sites="heads", method=method, normalize=False, max_memory=budget
    )
    scale = float(ref.values.abs().max())
    torch.testing.assert_close(got.values, ref.values, atol=1e-5 * max(1.0, scale), rtol=0)
    if DEVICE == "cuda":
        torch.cuda.synchronize()
        assert torch.cuda.max_memory_allocated() <= budget, (budget, one.describe())
