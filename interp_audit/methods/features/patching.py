"""Exact feature patching and feature attribution: the effect of each SAE feature (and of the
error term) on the metric, from the batched engine or one gradient."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from interp_audit.engine.batched import (
    Patch,
    RunContext,
    default_max_rows,
    run_variants,
)
from interp_audit.engine.contrasts import ContrastSet
from interp_audit.engine.effects import Effects
from interp_audit.methods.features.saes import (
    check_sae,
    feature_activations,
    feature_labels,
    is_affine,
    split_activation,
)
from interp_audit.methods.locate.patching import metric_of_final
from interp_audit.model.metrics import Metric, get_metric
from interp_audit.model.subject import Subject

__all__ = ["attribute_features", "feature_diff", "finish_effects", "patch_features"]


def feature_diff(subject: Subject, sae, contrast: ContrastSet) -> Effects:
    """Mean feature activation, clean minus counterfactual, over pairs and real positions."""
    check_sae(subject, sae)
    layer, labels = feature_labels(sae)
    mask = contrast.attention_mask().to(subject.device)
    cf_mask = contrast.attention_mask("counterfactual").to(subject.device)
    fc = feature_activations(subject, sae, contrast.clean, mask)
    ff = feature_activations(subject, sae, contrast.counterfactual, cf_mask)
    m = mask[..., None].to(fc.dtype)
    if contrast.equal_lengths:
        per_pair = ((fc - ff) * m).sum(1) / m.sum(1)  # [pair, feature]
    else:  # each side's mean over its own real tokens
        mf = cf_mask[..., None].to(ff.dtype)
        per_pair = (fc * m).sum(1) / m.sum(1) - (ff * mf).sum(1) / mf.sum(1)
    values = per_pair.mean(0).cpu()
    return Effects(
        values=values,
        dims=("feature",),
        axes={"feature": labels[:-1]},
        components=labels[:-1],
        metric="activation",
        method="feature_diff",
        normalized=False,
        per_example=per_pair.T.cpu(),
    )


def finish_effects(
    values_pe: Tensor,
    base_pe: Tensor,
    source_pe: Tensor,
    labels: list[str],
    metric: Metric,
    method: str,
    normalize: bool,
    direction: str,
) -> Effects:
    from interp_audit.methods.locate.patching import normalise

    mean = values_pe.mean(1)
    base, source = float(base_pe.mean()), float(source_pe.mean())
    values = normalise(mean, base, source, "feature effects") if normalize else mean
    clean, cf = (source, base) if direction == "denoise" else (base, source)
    return Effects(
        values=values,
        dims=("feature",),
        axes={"feature": labels},
        components=labels,
        metric=metric.name,
        method=method,
        normalized=normalize,
        per_example=values_pe,
        baseline={"clean": clean, "counterfactual": cf},
        meta={"direction": direction, "error_node": labels[-1]},
        base_values=base_pe.float(),
        source_values=source_pe.float(),
    )


@torch.no_grad()
def _pooled_feature_metrics(ctx: RunContext, x_base, delta, sae, todo: list[int]) -> Tensor:
    """Encoders, SAE on the final hidden state: the metric with each feature in ``todo``
    patched, from pooled(x_base) + pool(delta_i) W_dec[i]. ``[len(todo), batch]``."""
    from interp_audit.model.metrics import mean_pool

    pooled = mean_pool(x_base, ctx.mask)  # [b, d]
    coef = mean_pool(delta[..., todo].to(x_base.dtype), ctx.mask)  # [b, k]
    out = []
    for start in range(0, len(todo), 128):
        k = todo[start : start + 128]
        c = coef[:, start : start + len(k)]
        emb = pooled[None] + torch.einsum("bk,kd->kbd", c, sae.W_dec[k].to(pooled.dtype))
        mctx = ctx.metric_ctx.repeat(len(k))
        out.append(ctx.metric(emb.flatten(0, 1), mctx).view(len(k), -1))
    return torch.cat(out)


def _patcher(sae, x_base, f_base, e_base, f_src, e_src, err_index: int):
    """``patched(i)``: the activation with feature ``i`` taken from the source run, the error
    kept (or, for ``err_index``, the source's error). An SAE whose decoder is affine (no output
    normalisation) changes by (f_src - f_base)_i W_dec[i]: one rank-one update, not a decode."""
    affine = is_affine(sae)
    shape = x_base.shape[2:]

    @torch.no_grad()
    def patched(i: int) -> Tensor:
        if i == err_index:
            return x_base - e_base + e_src
        if affine:
            delta = (f_src[..., i] - f_base[..., i]).to(x_base.dtype)
            return x_base + delta[..., None] * sae.W_dec[i].view(*([1] * 2), *shape)
        f = f_base.clone()
        f[..., i] = f_src[..., i]
        return sae.decode(f) + e_base

    return patched


def patch_features(
    subject: Subject,
    contrast: ContrastSet,
    metric: Metric | str,
    sae,
    *,
    direction: Literal["denoise", "noise"] = "denoise",
    normalize: bool = True,
    batch_size: int | None = None,
) -> Effects:
    """Exact patching of every SAE feature (and the error node), one at a time, error kept."""
    metric = get_metric(metric)
    hook = check_sae(subject, sae)
    final = subject.final_hook()
    _, labels = feature_labels(sae)
    rows = batch_size or default_max_rows(subject, contrast.seq_len)
    per_example, bases, sources, joint = [], [], [], []
    for part in contrast.batches(max(1, rows)):
        ctx = RunContext.build(
            subject,
            part,
            metric,
            direction=direction,
            source_hooks=[hook],
            need_kv=True,
        )
        x_base, x_src = ctx.base_sites[hook], ctx.source[hook]
        f_base, e_base = split_activation(sae, x_base)
        f_src, e_src = split_activation(sae, x_src)
        vals = ctx.base_values.new_empty((len(labels), ctx.batch)).double()
        todo = []
        for i in range(len(labels) - 1):
            if torch.equal(f_base[..., i], f_src[..., i]):
                vals[i] = ctx.base_values.double()  # the feature does not change: nothing to patch
            else:
                todo.append(i)

        patched = _patcher(sae, x_base, f_base, e_base, f_src, e_src, len(labels) - 1)
        together = x_src - e_src + e_base  # every feature from the source, the base's error
        if hook == final:
            joint.append(metric_of_final(ctx, together, 1)[0].cpu())
        else:
            joint.append(
                run_variants(ctx, [(Patch(hook, (), value=together),)], progress=False)[0].cpu()
            )
        if hook == final and metric.readout == "embedding" and is_affine(sae) and todo:
            # mean pooling is linear too: every feature's pooled embedding in one product
            vals[todo] = _pooled_feature_metrics(ctx, x_base, f_src - f_base, sae, todo).double()
            todo = []
        todo.append(len(labels) - 1)
        step = 16 if hook == final else 64  # built one chunk at a time: d_sae copies are large
        for start in range(0, len(todo), step):
            chunk = todo[start : start + step]
            if hook == final:  # the patched activation is what the metric reads: no forward
                values = torch.cat([patched(i) for i in chunk])
                vals[chunk] = metric_of_final(ctx, values, len(chunk)).double()
            else:
                variants = [(Patch(hook, (), value=patched(i)),) for i in chunk]
                vals[chunk] = run_variants(ctx, variants, max_rows=rows, progress=False).double()
        per_example.append(vals.float().cpu())
        bases.append(ctx.base_values.cpu())
        sources.append(ctx.source_values.cpu())
    eff = finish_effects(
        torch.cat(per_example, 1),
        torch.cat(bases),
        torch.cat(sources),
        labels,
        metric,
        "feature_patch",
        normalize,
        direction,
    )
    # the two-way split the error node belongs to: all features at once vs the error alone
    from interp_audit.methods.locate.patching import normalise

    both = float(torch.cat(joint).double().mean())
    base, src = float(eff.base_values.mean()), float(eff.source_values.mean())
    eff.meta["all_features"] = normalise(both, base, src, "feature effects") if normalize else both
    return eff


def attribute_features(
    subject: Subject,
    contrast: ContrastSet,
    metric: Metric | str,
    sae,
    *,
    direction: Literal["denoise", "noise"] = "denoise",
    normalize: bool = True,
) -> Effects:
    """AtP over features: (f_src - f_base)_i * (W_dec[i] . dM/dx), plus (e_src - e_base) . dM/dx.
    Features + error add up to the AtP estimate of patching the whole activation."""
    from interp_audit.methods.locate.gradients import gradient_run

    metric = get_metric(metric)
    hook = check_sae(subject, sae)
    _, labels = feature_labels(sae)
    per_example, bases, sources = [], [], []
    for part in contrast.batches(default_max_rows(subject, contrast.seq_len)):
        ctx = RunContext.build(
            subject, part, metric, direction=direction, source_hooks=[hook], base_run=False
        )
        acts, grads, base_values = gradient_run(ctx, ctx.base_tokens, [hook])
        ctx.fill_unmatched(acts)  # unequal-length pairs: unmatched positions stay base
        g, x_base = grads[0][hook], acts[hook]
        f_base, e_base = split_activation(sae, x_base)
        f_src, e_src = split_activation(sae, ctx.source[hook])
        with torch.no_grad():
            per_feature = torch.einsum("bpf,fd,bpd->bf", f_src - f_base, sae.W_dec, g)
            err = ((e_src - e_base) * g).sum((1, 2))
        est = torch.cat([per_feature, err[:, None]], dim=1).T  # [label, pair]
        per_example.append((base_values[None] + est).float().cpu())
        bases.append(base_values.cpu())
        sources.append(ctx.source_values.cpu())
    return finish_effects(
        torch.cat(per_example, 1),
        torch.cat(bases),
        torch.cat(sources),
        labels,
        metric,
        "feature_atp",
        normalize,
        direction,
    )
