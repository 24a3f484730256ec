"""Load an SAE (sae_lens: a release, a local folder or ``zoo:NAME``), check it fits the subject, and
run it: feature activations, reconstruction quality, splicing it into the forward.

An SAE at hook h splits the activation into features and an error term,
``x = decode(encode(x)) + err`` exactly. Every operation keeps ``err``, so the model's forward is
unchanged until a feature is touched (Marks et al. 2024). Feature labels are ``L{layer}F{index}``,
the error ``L{layer}.sae_err`` (one SAE per layer).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from interp_audit.core.errors import ModelLoadError, SiteError
from interp_audit.engine.batched import (
    cached_run,
)
from interp_audit.model.adapters import hooks as hook_names
from interp_audit.model.subject import Subject, quiet_tl_warnings
from interp_audit.zoo.registry import WEIGHTS

__all__ = [
    "Reconstruction",
    "check_processing",
    "check_sae",
    "feature_activations",
    "feature_labels",
    "hook_of",
    "is_affine",
    "load_sae",
    "reconstruction",
    "splice",
    "split_activation",
    "texts_to_batch",
    "top_activating",
]


def hook_of(sae) -> str:
    meta = getattr(sae.cfg, "metadata", None)
    hook = getattr(meta, "hook_name", None) or getattr(sae.cfg, "hook_name", None)
    if not hook:
        raise SiteError(
            "this SAE does not say which hook it reads (cfg.metadata.hook_name is empty)"
        )
    return hook


def check_sae(subject: Subject, sae) -> str:
    """The SAE's hook exists on the model and its d_in matches that activation; returns the hook."""
    hook = hook_of(sae)
    subject.check_hook(hook)
    tokens = torch.zeros((1, 2), dtype=torch.long, device=subject.device)
    cache, _ = cached_run(subject, tokens, torch.ones_like(tokens), {hook})
    width = (
        cache[hook].shape[-1]
        if cache[hook].ndim == 3
        else int(torch.tensor(cache[hook].shape[2:]).prod())
    )
    if int(sae.cfg.d_in) != width:
        raise SiteError(
            f"SAE for {hook!r} has d_in={sae.cfg.d_in}, but that activation has width {width} "
            f"on this {subject.model_class}"
        )
    return hook


def load_sae(
    source: Any,
    subject: Subject | None = None,
    *,
    sae_id: str | None = None,
    device: str | None = None,
):
    """An SAE from an object, a local folder (sae_lens format), ``"zoo:NAME"``, or a pretrained
    release name with ``sae_id`` (downloads from the hub). Checked against ``subject`` if given."""
    with quiet_tl_warnings(), warnings.catch_warnings():
        # check_processing (below) compares the SAE's processing with the subject's instead
        warnings.filterwarnings("ignore", message="(?s).*model_from_pretrained_kwargs")
        from sae_lens import SAE

        dev = device or (str(subject.device) if subject is not None else "cpu")
        if hasattr(source, "encode") and hasattr(source, "decode"):
            sae = source
        elif isinstance(source, str) and source.startswith("zoo:"):
            folder = WEIGHTS / "saes" / source[4:]
            if not folder.exists():
                avail = (
                    sorted(p.name for p in folder.parent.iterdir())
                    if folder.parent.exists()
                    else []
                )
                raise ModelLoadError(f"no zoo SAE {source[4:]!r}; available: {', '.join(avail)}")
            sae = SAE.load_from_disk(str(folder), device=dev)
        elif Path(str(source)).is_dir():
            sae = SAE.load_from_disk(str(source), device=dev)
        elif sae_id is not None:
            try:
                sae = SAE.from_pretrained(str(source), sae_id, device=dev)
                _record_release_processing(sae, str(source), sae_id)
            except Exception as err:
                raise ModelLoadError(
                    f"could not load SAE {source!r}/{sae_id!r} from the hub: "
                    f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                ) from err
        else:
            raise ModelLoadError(
                f"cannot load an SAE from {source!r}: give a folder, 'zoo:NAME', or a release "
                "name with sae_id="
            )
    sae.eval()
    if subject is not None:
        check_sae(subject, sae)
        check_processing(subject, sae)
    return sae


def _record_release_processing(sae, release: str, sae_id: str) -> None:
    """sae_lens's release directory says how the release's model was loaded (e.g. centred
    writing weights) but does not put it on the loaded SAE: record it there for the check."""
    from sae_lens.loading.pretrained_saes_directory import get_config_overrides

    kwargs = get_config_overrides(release, sae_id).get("model_from_pretrained_kwargs")
    meta = getattr(sae.cfg, "metadata", None)
    if kwargs and meta is not None and not getattr(meta, "model_from_pretrained_kwargs", None):
        meta.model_from_pretrained_kwargs = dict(kwargs)


def check_processing(subject: Subject, sae) -> None:
    """An SAE reads the activations of the model it was trained on: hub releases record the
    TransformerLens weight processing that model had (``gpt2-small-res-jb``: centred writing
    weights). Processing that changes this SAE's hook must match the subject's, or every
    feature reads a shifted activation."""
    meta = getattr(sae.cfg, "metadata", None)
    wanted = dict(getattr(meta, "model_from_pretrained_kwargs", None) or {})
    hook = hook_of(sae)
    for flag in subject.adapter.processing_affecting(hook):
        if flag not in wanted:
            continue
        have = bool(subject.weight_processing.get(flag, False))
        if bool(wanted[flag]) != have:
            raise ModelLoadError(
                f"this SAE was trained on {hook!r} of a model loaded with {flag}="
                f"{bool(wanted[flag])}, but the subject has {flag}={have}: the activations "
                f"differ; load the model with ia.load_model(..., {flag}={bool(wanted[flag])})"
            )


def feature_labels(sae) -> tuple[int, list[str]]:
    layer = hook_names.layer_of(hook_of(sae))
    layer = 0 if layer is None else layer
    return layer, [f"L{layer}F{i}" for i in range(int(sae.cfg.d_sae))] + [f"L{layer}.sae_err"]


@torch.no_grad()
def split_activation(sae, x: Tensor) -> tuple[Tensor, Tensor]:
    """Features and error of activations ``x``: x == decode(f) + err."""
    f = sae.encode(x)
    return f, x - sae.decode(f)


def feature_activations(
    subject: Subject, sae, tokens: Tensor, mask: Tensor | None = None
) -> Tensor:
    hook = hook_of(sae)
    mask = torch.ones_like(tokens) if mask is None else mask
    cache, _ = cached_run(subject, tokens.to(subject.device), mask.to(subject.device), {hook})
    return split_activation(sae, cache[hook])[0]


def texts_to_batch(subject: Subject, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
    """Right-padded token ids and the mask of real tokens for a list of texts."""
    rows = [subject.to_tokens(t) for t in texts]
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), subject.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(tokens)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return tokens, mask


@dataclass(frozen=True)
class Reconstruction:
    """How well an SAE reconstructs its activation on some text, over real tokens.

    ``explained_variance``: 1 - sum|x - x_hat|^2 / sum|x - mean(x)|^2 (sae_lens's definition,
    pooled over tokens); ``l0``: mean number of active features per token; ``dead``: features
    that never fire on this text; ``cosine``: mean cosine of x_hat with x."""

    tokens: int
    explained_variance: float
    l0: float
    dead: int
    d_sae: int
    cosine: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


@torch.no_grad()
def reconstruction(subject: Subject, sae, texts: Sequence[str]) -> Reconstruction:
    """Explained variance, L0 and dead features of ``sae`` on ``texts`` (padding excluded)."""
    hook = check_sae(subject, sae)
    tokens, mask = texts_to_batch(subject, texts)
    if subject.adapter.causal:
        mask = torch.ones_like(mask) if tokens.shape[0] == 1 else mask
    cache, _ = cached_run(subject, tokens.to(subject.device), mask.to(subject.device), {hook})
    x = cache[hook][mask.bool().to(subject.device)]  # [tokens, d]
    f = sae.encode(x)
    x_hat = sae.decode(f)
    resid = ((x - x_hat) ** 2).sum()
    total = ((x - x.mean(0)) ** 2).sum()
    return Reconstruction(
        tokens=int(x.shape[0]),
        explained_variance=float(1 - resid / total),
        l0=float((f > 0).sum(-1).float().mean()),
        dead=int(((f > 0).sum(0) == 0).sum()),
        d_sae=int(sae.cfg.d_sae),
        cosine=float(torch.nn.functional.cosine_similarity(x, x_hat, dim=-1).mean()),
    )


@contextlib.contextmanager
def splice(subject: Subject, sae, *, keep_error: bool = False) -> Iterator[Subject]:
    """Run the model with the SAE's reconstruction in place of its activation. Without the error
    term this measures what the SAE misses (the gap to the real forward); with it, the forward
    is unchanged (a test of the splice itself)."""
    hook = check_sae(subject, sae)

    def fn(x, *, hook):
        with torch.no_grad():
            x_hat = sae.decode(sae.encode(x))
            return x_hat + (x - x_hat) if keep_error else x_hat

    with subject.hooks([(hook, fn)]):
        yield subject


def top_activating(
    subject: Subject, sae, feature: int, texts: Sequence[str], k: int = 5
) -> list[tuple[str, str, float]]:
    """The ``k`` texts (and token) where ``feature`` fires most: (text, token, activation)."""
    rows = [subject.to_tokens(t) for t in texts]
    out = []
    for text, row in zip(texts, rows, strict=True):
        acts = feature_activations(subject, sae, torch.tensor([row]))[0, :, feature]
        pos = int(acts.argmax())
        out.append((text, subject.token_str([row[pos]])[0], float(acts[pos])))
    return sorted(out, key=lambda r: -r[2])[:k]


def is_affine(sae) -> bool:
    return getattr(sae.cfg, "normalize_activations", "none") == "none"
