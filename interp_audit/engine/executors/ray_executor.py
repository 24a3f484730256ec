"""Sweeps on Ray: actors that each load the model once and run chunks of planned forward passes.

Why actors and not tasks: loading a model costs far more than a forward pass, so each worker
loads it once (from its *source*: a zoo name, a folder, or the subject's safetensors shipped
through the object store; never a pickled model) and keeps the base/source runs of the current
contrast batch cached. The driver plans the sweep exactly as the local path does and gathers
results by chunk index, so report numbers are bit-identical to a local run.

Faults: actors are created with ``max_restarts`` and ``max_task_retries``; a worker killed
mid-chunk is restarted (reloading the model) and its task re-run. A task's result is a pure
function of its chunk, and results are stored by chunk index, so nothing is lost or counted
twice. A model that fails to load raises :class:`ModelLoadError` naming the worker and cause.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import torch
from tqdm.auto import tqdm

from interp_audit.core.errors import ModelLoadError
from interp_audit.engine.executor_base import Executor, LocalExecutor

__all__ = ["ModelSource", "RayExecutor", "fingerprint"]

#: Test hook: when set to a path, the first worker to run a task creates that file and then
#: dies (``os._exit``) before returning: a worker killed mid-chunk, exactly once per run.
FAULT_ENV = "INTERP_AUDIT_RAY_FAULT_ONCE"


def fingerprint(model: torch.nn.Module) -> str:
    """sha256 of every parameter and buffer (names, dtypes, shapes, bytes): same weights or not."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class ModelSource:
    """How a worker gets the model: a zoo name or folder, or files of ``Subject.save`` shipped
    through the object store (``files``: an ObjectRef to ``{relative path: bytes}``)."""

    source: str | None
    device: str
    dtype: str
    weight_processing: dict[str, bool] = field(default_factory=dict)
    files: Any = None

    def describe(self) -> str:
        return self.source if self.files is None else "the subject's saved weights"


def _has_hooks(model: torch.nn.Module) -> bool:
    return any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


class SweepWorker:
    """A Ray actor (see ``RayExecutor``): one loaded model, a small cache of run contexts."""

    def __init__(self, spec: ModelSource, index: int):
        self.index = index
        self.error: str | None = None
        self.fingerprint: str | None = None
        self.contexts: OrderedDict[str, Any] = OrderedDict()
        try:
            self.subject = self._load(spec)
            self.fingerprint = fingerprint(self.subject.model)
        except Exception as exc:  # reported by ready(): the driver names this worker
            self.error = f"{type(exc).__name__}: {exc}"

    @staticmethod
    def _load(spec: ModelSource):
        from interp_audit.model.loading import load_model

        source = spec.source
        if spec.files is not None:
            files = spec.files
            if isinstance(files, ray.ObjectRef):  # refs nested in an argument are not resolved
                files = ray.get(files)
            folder = Path(tempfile.mkdtemp(prefix="interp_audit_worker_"))
            for rel, data in files.items():
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                (folder / rel).write_bytes(data)
            source = str(folder)
        flags = {k: v for k, v in spec.weight_processing.items() if v}
        return load_model(source, device=spec.device, dtype=spec.dtype, **flags)

    def ready(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "pid": os.getpid(),
            "node": ray.util.get_node_ip_address(),
            "error": self.error,
            "fingerprint": self.fingerprint,
        }

    def run(self, key: str, recipe: dict, chunks: list[tuple[int, list]]) -> list[torch.Tensor]:
        from interp_audit.engine.batched import RunContext, run_chunk

        if self.error is not None:
            raise ModelLoadError(self.error)
        ctx = self.contexts.get(key)
        if ctx is None:
            ctx = RunContext.build(
                self.subject, recipe["contrast"], recipe["metric"], **recipe["kwargs"]
            )
            self.contexts[key] = ctx
            while len(self.contexts) > 2:
                self.contexts.popitem(last=False)
        out = [run_chunk(ctx, variants, start).cpu() for start, variants in chunks]
        marker = os.environ.get(FAULT_ENV)
        if marker and not os.path.exists(marker):
            Path(marker).write_text(f"worker {self.index} pid {os.getpid()} died mid-task\n")
            os._exit(1)
        return out


class RayExecutor(Executor):
    """Run sweeps on Ray actors, one model load per actor.

    Args:
        address: ``None`` starts a local Ray cluster (unless Ray is already initialised);
            ``"auto"`` joins the running cluster; or a ``ray://`` / ``host:port`` address.
        num_workers: actors per model (default: one per GPU when the cluster has GPUs, else one
            per CPU).
        num_gpus_per_worker: default 1 when the cluster has GPUs, else 0 (CPU actors).
        max_retries: restarts of a dead actor and retries of its task.
        tasks_per_worker: chunks are grouped into about this many tasks per actor, so a slow
            actor does not hold the tail of the sweep.
        actor_options: extra ``.options(...)`` for the actors (e.g. a ``runtime_env``).
        progress: one progress bar per sweep over all workers' chunks (default on, whatever
            the caller asked of the local loop; ``TQDM_DISABLE=1`` turns it off).

    One pool of actors lives at a time: a sweep on other weights replaces it (its actors hold
    the cluster's CPUs/GPUs).
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        num_workers: int | None = None,
        num_gpus_per_worker: float | None = None,
        num_cpus_per_worker: float = 1,
        max_retries: int = 3,
        tasks_per_worker: int = 4,
        init_kwargs: dict[str, Any] | None = None,
        actor_options: dict[str, Any] | None = None,
        progress: bool = True,
    ):
        self._started = False
        if not ray.is_initialized():
            kw = {"include_dashboard": False, "log_to_driver": False, **(init_kwargs or {})}
            ray.init(address=address, **kw)
            self._started = True
        res = ray.cluster_resources()
        gpus = int(res.get("GPU", 0))
        self.num_gpus_per_worker = (
            num_gpus_per_worker if num_gpus_per_worker is not None else (1 if gpus else 0)
        )
        self.num_cpus_per_worker = num_cpus_per_worker
        if num_workers is None:
            if self.num_gpus_per_worker:
                num_workers = max(1, int(gpus / self.num_gpus_per_worker))
            else:
                num_workers = max(1, int(res.get("CPU", 1) / max(num_cpus_per_worker, 1e-9)))
        self.num_workers = num_workers
        self.max_retries = max_retries
        self.tasks_per_worker = tasks_per_worker
        self.actor_options = dict(actor_options or {})
        self.progress = progress
        self._pools: dict[str, list] = {}
        self._spec: ModelSource | None = None
        self._recipes: OrderedDict[str, Any] = OrderedDict()
        self._fingerprints: dict[int, tuple[tuple, str]] = {}
        self.workers_info: list[dict] = []

    # ---- model source and actors -------------------------------------------------------
    def _fingerprint(self, model: torch.nn.Module) -> str:
        versions = tuple(t._version for t in model.state_dict().values())
        cached = self._fingerprints.get(id(model))
        if cached is not None and cached[0] == versions:
            return cached[1]
        fp = fingerprint(model)
        self._fingerprints[id(model)] = (versions, fp)
        return fp

    def _source(self, subject, ship: bool) -> ModelSource:
        device = "cuda" if self.num_gpus_per_worker else "cpu"
        dtype = str(subject.dtype).removeprefix("torch.")
        src = subject.source
        if not ship and (src.startswith("zoo:") or Path(src).is_dir()):
            source = src if src.startswith("zoo:") else str(Path(src).resolve())
            return ModelSource(source, device, dtype, dict(subject.weight_processing))
        with tempfile.TemporaryDirectory(prefix="interp_audit_ship_") as tmp:
            subject.save(tmp)
            files = {
                str(p.relative_to(tmp)): p.read_bytes() for p in Path(tmp).rglob("*") if p.is_file()
            }
        return ModelSource(None, device, dtype, {}, files=ray.put(files))

    def _start_pool(self, spec: ModelSource, want: str) -> tuple[list, list[dict]]:
        actor_cls = ray.remote(SweepWorker).options(
            num_cpus=self.num_cpus_per_worker,
            num_gpus=self.num_gpus_per_worker,
            max_restarts=self.max_retries,
            max_task_retries=self.max_retries,
            **self.actor_options,
        )
        actors = [actor_cls.remote(spec, i) for i in range(self.num_workers)]
        infos = ray.get([a.ready.remote() for a in actors])
        return actors, infos

    def _pool(self, subject) -> list:
        want = self._fingerprint(subject.model)
        if want in self._pools:
            return self._pools[want]
        for actors in self._pools.values():
            self._kill(actors)
        self._pools.clear()
        shippable = subject.source.startswith("zoo:") or Path(subject.source).is_dir()
        for ship in [False, True] if shippable else [True]:
            spec = self._source(subject, ship)
            actors, infos = self._start_pool(spec, want)
            failed = [i for i in infos if i["error"] is not None]
            if failed:
                self._kill(actors)
                i = failed[0]
                raise ModelLoadError(
                    f"Ray worker {i['index']} (pid {i['pid']} on {i['node']}) could not load the "
                    f"model from {spec.describe()!r}: {i['error']}"
                )
            if all(i["fingerprint"] == want for i in infos):
                self._pools[want] = actors
                self._spec = spec  # keeps shipped weights alive for actor restarts
                self.workers_info = infos
                return actors
            self._kill(actors)  # the source names other weights (edited in memory?): ship them
        raise ModelLoadError(
            f"Ray workers loaded weights that differ from {subject.source!r} even when shipped "
            "the subject's own safetensors (device or dtype conversion on the worker?)"
        )

    @staticmethod
    def _kill(actors: list) -> None:
        for a in actors:
            ray.kill(a, no_restart=True)

    def actors(self, subject) -> list:
        """The actor pool for this subject's weights (started on first use)."""
        return self._pool(subject)

    # ---- running a sweep ---------------------------------------------------------------
    def run_chunks(self, ctx, variants, chunks, *, progress=False, desc="patching"):
        if not chunks:
            return []
        if ctx.recipe is None or _has_hooks(ctx.subject.model):
            # Hooks attached in this process (an ablation context, attached SAEs) are not
            # part of the model's source: a worker could not reproduce them. Run here.
            return list(LocalExecutor().run_chunks(ctx, variants, chunks, progress=progress))
        actors = self._pool(ctx.subject)
        key = ctx.recipe.setdefault("key", uuid.uuid4().hex)
        if key not in self._recipes:
            recipe = {k: ctx.recipe[k] for k in ("contrast", "metric", "kwargs")}
            self._recipes[key] = ray.put(recipe)
            while len(self._recipes) > 4:
                self._recipes.popitem(last=False)
        ref = self._recipes[key]
        size = max(1, math.ceil(len(chunks) / (len(actors) * self.tasks_per_worker)))
        tasks = [list(range(k, min(k + size, len(chunks)))) for k in range(0, len(chunks), size)]
        results: list[torch.Tensor | None] = [None] * len(chunks)
        pending: dict[Any, tuple[int, Any]] = {}
        queue = list(range(len(tasks)))[::-1]
        idle = list(actors)
        bar = tqdm(
            total=len(chunks),
            desc=f"{desc} (ray x{len(actors)})",
            disable=not self.progress or bool(os.environ.get("TQDM_DISABLE")),
            leave=False,
        )
        with bar:
            while queue or pending:
                while queue and idle:
                    t, actor = queue.pop(), idle.pop()
                    payload = [
                        (chunks[c][0], [variants[i] for i in chunks[c][1]]) for c in tasks[t]
                    ]
                    pending[actor.run.remote(key, ref, payload)] = (t, actor)
                done, _ = ray.wait(list(pending), num_returns=1)
                for fut in done:
                    t, actor = pending.pop(fut)
                    for c, value in zip(tasks[t], ray.get(fut), strict=True):
                        if results[c] is not None:  # cannot happen: one task per chunk
                            raise RuntimeError(f"chunk {c} came back twice")
                        results[c] = value
                    bar.update(len(tasks[t]))
                    idle.append(actor)
        missing = [c for c, r in enumerate(results) if r is None]
        if missing:
            raise RuntimeError(f"chunks {missing} never came back")
        return results

    def map_cells(self, fn, pairs: list[tuple[str, str]], *, device: str | None = None) -> list:
        """Run ``fn(model, spec, device)`` for each pair as a Ray task; results in pair order.

        Each task loads its own model (a matrix cell is one whole audit); a task whose worker
        dies is retried (``max_retries``), and its result replaces nothing else: slot by index.
        """
        for actors in self._pools.values():  # cells need the CPUs/GPUs the sweep actors hold
            self._kill(actors)
        self._pools.clear()
        task = ray.remote(fn).options(
            num_cpus=self.num_cpus_per_worker,
            num_gpus=self.num_gpus_per_worker,
            max_retries=self.max_retries,
            retry_exceptions=False,
            **{k: v for k, v in self.actor_options.items() if k == "runtime_env"},
        )
        dev = device or ("cuda" if self.num_gpus_per_worker else "cpu")
        futures = [task.remote(m, s, dev) for m, s in pairs]
        index = {f: i for i, f in enumerate(futures)}
        results: list[Any] = [None] * len(futures)
        pending = list(futures)
        with tqdm(
            total=len(futures), desc="matrix (ray)", disable=bool(os.environ.get("TQDM_DISABLE"))
        ) as bar:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for f in done:
                    results[index[f]] = ray.get(f)
                    bar.update(1)
        return results

    def close(self) -> None:
        for actors in self._pools.values():
            self._kill(actors)
        self._pools.clear()
        self._recipes.clear()
        self._spec = None
        if self._started and ray.is_initialized():
            ray.shutdown()
            self._started = False
