"""``load_model``: every source a user has -> a :class:`Subject`.

Sources: an in-memory TransformerLens model, a TransformerLens pretrained name (hub), a local
Hugging Face folder (any family in :mod:`interp_audit.model.adapters.hf_families`), a ``.gguf``
file (dequantized by ``transformers``, cached as float32: :mod:`interp_audit.model.gguf`), a
folder written by :meth:`Subject.save`, and ``"zoo:NAME"``. Weights are read from safetensors,
or with ``torch.load(weights_only=True)``: nothing here unpickles arbitrary objects.

Tokenization follows the source: Hugging Face sources (folders, GGUF files) tokenize exactly as
their own tokenizer does (SmolLM2's adds no BOS, Llama-2's does); TransformerLens models and the
zoo keep TransformerLens's convention (BOS first). ``prepend_bos=True/False`` asks for the
TransformerLens convention on any source.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from interp_audit.core.errors import ModelLoadError, did_you_mean
from interp_audit.model.adapters import adapter_for
from interp_audit.model.adapters.base import config_to_json
from interp_audit.model.subject import DEFAULT_WEIGHT_PROCESSING, Subject

__all__ = ["load_model", "build_model", "config_to_json"]

_PROCESSING_KEYS = tuple(DEFAULT_WEIGHT_PROCESSING)


def _resolve_device(device: str | torch.device | None) -> str:
    from interp_audit.model.devices import resolve_device

    return resolve_device(device)


def _resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    from interp_audit.model.devices import resolve_dtype

    return resolve_dtype(dtype)


def _check_processing(flags: dict[str, Any]) -> dict[str, bool]:
    for key in flags:
        if key not in _PROCESSING_KEYS:
            raise ModelLoadError(
                f"unknown weight-processing option {key!r}; valid: {', '.join(_PROCESSING_KEYS)}"
                f"{did_you_mean(key, _PROCESSING_KEYS)}"
            )
    return {k: bool(flags.get(k, v)) for k, v in DEFAULT_WEIGHT_PROCESSING.items()}


def build_model(
    tl_config: dict[str, Any],
    kind: str = "causal",
    *,
    seed: int | None = None,
    device: str | None = None,
):
    """Build a TransformerLens model (random init) from a config dict: the offline test path."""
    from interp_audit.model.adapters.build import build_tl_model

    cfg = dict(tl_config)
    if seed is not None:
        cfg["seed"] = seed
    cfg["device"] = _resolve_device(device)
    return build_tl_model(cfg, kind=kind, seed=seed)


def _apply_processing(
    subject: Subject, flags: dict[str, bool], already: dict[str, bool] | None = None
) -> dict[str, bool]:
    flags = {**DEFAULT_WEIGHT_PROCESSING, **flags}
    todo = {k: v and not (already or {}).get(k, False) for k, v in flags.items()}
    applied = {k: bool(flags[k] or (already or {}).get(k, False)) for k in flags}
    if any(todo.values()):
        subject.adapter.process_weights(todo)
    return applied


def _subject_from_module(
    model, source: str, flags: dict[str, bool], already: dict[str, bool] | None = None, **kw
) -> Subject:
    adapter = adapter_for(model)
    # the Subject tokenizes: TransformerLens's set_tokenizer is never called (it re-loads the
    # tokenizer by hub name and rejects in-memory word-level tokenizers)
    tokenizer = kw.pop("tokenizer", None) or getattr(model, "tokenizer", None)
    prepend = kw.pop("prepend_bos", None)
    if prepend is None:
        prepend = adapter.prepend_bos_default
    model.eval()
    subject = Subject(
        model=model,
        tokenizer=tokenizer,
        source=source,
        prepend_bos=prepend,
        adapter=adapter,
        **kw,
    )
    subject.weight_processing = _apply_processing(subject, flags, already)
    return subject


def load_model(
    source: Any,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    tokenizer: Any = None,
    prepend_bos: bool | None = None,
    **weight_processing: bool,
) -> Subject:
    """Load a model to audit.

    Args:
        source: a TransformerLens model object; a :class:`Subject`; ``"zoo:NAME"``; a folder
            (written by :meth:`Subject.save`, or a Hugging Face folder with ``config.json`` +
            weights); a ``.gguf`` file; or a TransformerLens pretrained name such as ``"gpt2"``
            (downloads from the Hugging Face hub).
        device: ``"cpu"``, ``"cuda"``, or None/"auto" for CUDA when present.
        dtype: float32 (default), float16 or bfloat16.
        tokenizer: a Hugging Face tokenizer (or a folder holding one) for an in-memory model,
            or to replace the source's own. Any tokenizer works, word-level ones included.
        prepend_bos: None (default): tokenize as the source does (Hugging Face folders and
            GGUF files: exactly the model's own tokenizer; TransformerLens models and the zoo:
            TransformerLens's convention). True/False: TransformerLens's convention, with or
            without BOS first, on request.
        **weight_processing: ``fold_ln``, ``center_writing_weights``, ``center_unembed``,
            ``fold_value_biases``. All default to **False** (unlike TransformerLens's
            ``from_pretrained``): an audit sees the weights as trained unless asked otherwise.
            What was applied is recorded in ``subject.weight_processing``.
    """
    flags = _check_processing(weight_processing)
    if prepend_bos is not None and not isinstance(prepend_bos, bool):
        raise ModelLoadError(f"prepend_bos={prepend_bos!r}: give True, False or None")
    dev = _resolve_device(device)
    dt = _resolve_dtype(dtype)
    subject = _dispatch(source, flags, dev, dt)
    if tokenizer is not None:
        subject.tokenizer = _as_tokenizer(tokenizer)
    if prepend_bos is not None:
        subject.tokenization, subject.prepend_bos = "transformer_lens", prepend_bos
    subject.adapter.move(dev, dt)
    return subject


def _as_tokenizer(tokenizer: Any) -> Any:
    """A tokenizer object as given, or one read from a folder; refuse anything else by name."""
    if isinstance(tokenizer, str | Path):
        folder = Path(tokenizer).expanduser()
        if not folder.is_dir():
            raise ModelLoadError(f"tokenizer={str(tokenizer)!r} is not a tokenizer folder")
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except Exception as err:
            raise ModelLoadError(
                f"tokenizer folder {str(folder)!r} could not be read: {type(err).__name__}: {err}"
            ) from None
    if not callable(tokenizer) or not hasattr(tokenizer, "decode"):
        raise ModelLoadError(
            f"tokenizer={type(tokenizer).__name__} is not a Hugging Face tokenizer (callable on "
            "text, with decode()); pass e.g. AutoTokenizer.from_pretrained(...) or a folder"
        )
    return tokenizer


def _dispatch(
    source: Any, flags: dict[str, bool], device: str, dtype: torch.dtype | None
) -> Subject:
    if isinstance(source, Subject):
        if any(flags.values()):
            source.weight_processing = _apply_processing(source, flags, source.weight_processing)
        return source
    if isinstance(source, torch.nn.Module):
        return _subject_from_module(source, f"<in-memory {type(source).__name__}>", flags)
    if not isinstance(source, str | Path):
        raise ModelLoadError(f"cannot load a model from {type(source).__name__} {source!r}")
    text = str(source)
    if text.startswith("zoo:"):
        return _load_zoo(text[4:], flags)
    path = Path(text).expanduser()
    if path.is_dir():
        return _load_folder(path, flags)
    if path.suffix.lower() == ".gguf":
        subject = _load_gguf(path, flags)
        subject.source = subject.provenance["loaded_as"] = text
        return subject
    if path.suffix in (".safetensors", ".json", ".pt", ".bin") or path.exists():
        raise ModelLoadError(
            f"model source {text!r} is a file; pass the folder that holds config.json and the "
            "weights"
        )
    if "/" in text and (text.startswith((".", "/", "~")) or Path(text).parent.exists()):
        raise ModelLoadError(f"model folder {text!r} does not exist")
    return _load_pretrained_name(text, flags, device, dtype)


def _load_zoo(name: str, flags: dict[str, bool]) -> Subject:
    """``zoo:NAME``: a saved folder, or a config built here and filled by the entry's init."""
    from interp_audit.zoo import entry

    made = entry(name).build()
    if made.file is not None:
        subject = _load_gguf(made.file, {})
    elif made.folder is not None:
        subject = _load_folder(made.folder, {})
        if not made.prepend_bos:  # the entry's model saw raw text (e.g. SmolLM2: no BOS)
            subject.prepend_bos = False
    else:
        model = build_model(made.config, seed=0, device="cpu")
        made.init(model)
        subject = _subject_from_module(
            model, "", {}, tokenizer=made.tokenizer, prepend_bos=made.prepend_bos
        )
    subject.source = f"zoo:{name}"
    if made.file is not None:
        subject.provenance["loaded_as"] = subject.source
    if any(flags.values()):
        subject.weight_processing = _apply_processing(subject, flags, subject.weight_processing)
    return subject


def _load_pretrained_name(
    name: str, flags: dict[str, bool], device: str, dtype: torch.dtype | None
) -> Subject:
    """A TransformerLens pretrained name: the real hub path (needs the internet)."""
    from interp_audit.model.adapters.build import from_pretrained_name

    model = from_pretrained_name(name, flags, device, dtype)
    return _subject_from_module(model, name, dict.fromkeys(flags, False), already=flags)


def _read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    st = folder / "model.safetensors"
    if st.exists():
        try:
            return load_file(str(st))
        except Exception as err:  # SafetensorError / OSError: corrupt, truncated, unreadable
            raise ModelLoadError(
                f"{st} is not a readable safetensors file (corrupt or truncated?): "
                f"{str(err).splitlines()[0] if str(err) else type(err).__name__}"
            ) from None
    pt = folder / "pytorch_model.bin"
    if pt.exists():
        try:
            return torch.load(str(pt), map_location="cpu", weights_only=True)
        except Exception as err:
            raise ModelLoadError(
                f"{pt} is not a plain tensor checkpoint (refusing to unpickle it): {err}"
            ) from err
    raise ModelLoadError(f"folder {str(folder)!r} has no model.safetensors (or pytorch_model.bin)")


def _load_folder(folder: Path, flags: dict[str, bool]) -> Subject:
    cfg_path = folder / "config.json"
    if not cfg_path.exists():
        raise ModelLoadError(f"folder {str(folder)!r} has no config.json")
    try:
        meta = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelLoadError(f"{cfg_path} is not valid JSON: {err}") from None
    if not isinstance(meta, dict):
        raise ModelLoadError(
            f"{cfg_path} must be a JSON object (with model_type or tl_config), got a "
            f"{type(meta).__name__}"
        )
    if "interp_audit_format" in meta:
        return _load_saved(folder, meta, flags)
    from interp_audit.model.adapters.hf_families import load_hf_folder

    loaded = load_hf_folder(folder, meta, _read_state_dict)
    own = loaded.tokenizer is not None  # tokenize exactly as the model's own tokenizer does
    return _subject_from_module(
        loaded.model,
        str(folder),
        flags,
        tokenizer=loaded.tokenizer,
        prepend_bos=_adds_bos(loaded.tokenizer) if own else loaded.prepend_bos,
        has_lm_head=loaded.has_lm_head,
        origin={
            "format": "hf",
            "folder": str(folder.resolve()),
            "model_type": meta.get("model_type"),
        },
        repair=_repair_record(folder),
        tokenization="tokenizer" if own else "transformer_lens",
    )


def _repair_record(folder: Path) -> dict[str, Any] | None:
    """The repair record of a folder ``Subject.save(format="hf")`` wrote (``repair.json``)."""
    path = folder / "repair.json"
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelLoadError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(record, dict):
        raise ModelLoadError(f"{path} must hold a JSON object (a repair record)")
    return record


def _adds_bos(tokenizer) -> bool:
    """Does the tokenizer put BOS first by itself? (SmolLM2's does not, Llama-2's does.)"""
    bos = getattr(tokenizer, "bos_token_id", None)
    try:
        return bos is not None and list(tokenizer("a")["input_ids"][:1]) == [bos]
    except Exception:  # a tokenizer that cannot encode a bare word: informational only
        return False


def _load_gguf(path: Path, flags: dict[str, bool]) -> Subject:
    """A GGUF file: its cached float32 Hugging Face folder (built on first use), converted as
    any folder is; the file's hash, quantization and the cache entry go into provenance."""
    import time

    from interp_audit.model.gguf import float32_folder

    started = time.perf_counter()
    folder, info, cached = float32_folder(path)
    subject = _load_folder(folder, flags)
    subject.source = str(path)
    subject.provenance = {
        "format": "gguf",
        **info.to_dict(),
        "float32_folder": str(folder),
        "float32_cached": cached,
        "load_seconds": round(time.perf_counter() - started, 2),
    }
    return subject


def _load_saved(folder: Path, meta: dict[str, Any], flags: dict[str, bool]) -> Subject:
    kind = meta.get("kind", "causal")
    cfg = meta.get("tl_config")
    if not isinstance(cfg, dict):
        raise ModelLoadError(
            f"{folder / 'config.json'}: 'tl_config' is "
            f"{'missing' if cfg is None else 'a ' + type(cfg).__name__}; a folder written by "
            "Subject.save has a TransformerLens config object there"
        )
    if kind not in ("causal", "encoder"):
        raise ModelLoadError(f"{folder / 'config.json'}: kind {kind!r} is not causal or encoder")
    try:
        model = build_model(cfg, kind=kind, device="cpu")
    except ModelLoadError:
        raise
    except Exception as err:  # TransformerLens's own config checks
        raise ModelLoadError(
            f"{folder / 'config.json'}: tl_config is not a valid TransformerLens config: "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        ) from None
    state = _read_state_dict(folder)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # size mismatches
        first = next((ln.strip() for ln in str(err).splitlines() if "size mismatch" in ln), "")
        raise ModelLoadError(
            f"{folder}/model.safetensors does not match its config.json: {first or err}"
        ) from None
    missing = [k for k in missing if not k.endswith(("IGNORE", "mask"))]
    if missing or unexpected:
        raise ModelLoadError(
            f"{folder}/model.safetensors does not match its config.json: "
            f"missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    tok = None
    if (folder / "tokenizer").is_dir():
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(folder / "tokenizer"))
    tokenization = meta.get("tokenization", "transformer_lens")
    if tokenization not in ("tokenizer", "transformer_lens"):
        raise ModelLoadError(
            f"{folder / 'config.json'}: tokenization {tokenization!r} is not 'tokenizer' or "
            "'transformer_lens'"
        )
    subject = _subject_from_module(
        model,
        meta.get("source", str(folder))
        if str(meta.get("source", "")).startswith("zoo:")
        else str(folder),
        flags,
        already=meta.get("weight_processing"),
        tokenizer=tok,
        prepend_bos=meta.get("prepend_bos", True),
        has_lm_head=meta.get("has_lm_head", True),
        origin=meta.get("origin"),
        repair=meta.get("repair"),
        tokenization=tokenization,
    )
    if isinstance(meta.get("provenance"), dict):  # what the saved weights were derived from
        subject.provenance = {"derived_from": dict(meta["provenance"])}
    return subject
