"""Shared pieces of the support-privacy experiments: data, models, per-record measures, CIs.

Every script here measures through interp_audit's own functions (the numbers an audit reports),
on models loaded with ``ia.load_model``: the fine-tune from the zoo, edited models from the
folders they were written to.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DATA = HERE / "data"
OUT = ROOT / "out" / "support-privacy"
sys.path.insert(0, str(ROOT))

import interp_audit as ia  # noqa: E402
from interp_audit.methods.privacy.memorization import (  # noqa: E402
    exposure,
    greedy_batch,
    secret_logprobs,
)
from interp_audit.methods.privacy.secrets import SecretSpace  # noqa: E402
from interp_audit.methods.privacy.tokens import token_logprobs  # noqa: E402
from interp_audit.stats.bootstrap import bootstrap  # noqa: E402

FINETUNE = "zoo:smollm2-135m-support"
BASE = "zoo:smollm2-135m"


def lines(name: str) -> list[str]:
    return [t for t in (DATA / name).read_text().splitlines() if t.strip()]


@dataclass(frozen=True)
class Canary:
    prefix: str
    secret: str
    text: str
    repetitions: int
    split: str
    name: str
    gender: str
    paraphrases: tuple[str, ...]


def canaries(split: str | None = None, min_reps: int = 0) -> list[Canary]:
    out = []
    for line in (DATA / "canaries.jsonl").read_text().splitlines():
        d = json.loads(line)
        d["paraphrases"] = tuple(d["paraphrases"])
        c = Canary(**d)
        if (split is None or c.split == split) and c.repetitions >= min_reps:
            out.append(c)
    return out


def load(source: str):
    started = time.time()
    subject = ia.load_model(source)
    print(f"loaded {source} in {time.time() - started:.0f} s", flush=True)
    return subject


def record_losses(subject, texts: list[str]) -> torch.Tensor:
    """Mean token loss (nats) of each text."""
    return torch.stack([-lp.mean() for lp in token_logprobs(subject, texts)])


def ci(values, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and percentile bootstrap CI over independent units (canaries, records)."""
    x = torch.as_tensor(values, dtype=torch.float64)
    return bootstrap(lambda idx: float(x[idx].mean()), len(x), n_boot=n_boot, seed=seed)


def fmt(v: tuple[float, float, float], digits: int = 2) -> str:
    return f"{v[0]:.{digits}f} [{v[1]:.{digits}f}, {v[2]:.{digits}f}]"


def extracted(subject, prefix: str, secret: str) -> bool:
    """Greedy decoding from the prefix reproduces the secret's tokens."""
    return extracted_many(subject, [prefix], [secret])[0]


def extracted_many(subject, prefixes: list[str], secrets: list[str]) -> list[bool]:
    """Per (prefix, secret): greedy decoding (batched) reproduces the secret's tokens."""
    spaces = [
        SecretSpace.build(subject, p, s, check=0) for p, s in zip(prefixes, secrets, strict=True)
    ]
    width = max(len(sp.secret_ids) for sp in spaces)
    got = greedy_batch(subject, [list(sp.prefix_ids) for sp in spaces], width)
    return [
        g[: len(sp.secret_ids)] == list(sp.secret_ids) for g, sp in zip(got, spaces, strict=True)
    ]


def canary_measures(
    subject,
    cs: list[Canary],
    *,
    exposure_for: set[str] | None = None,
    samples: int = 200,
    max_nodes: int = 100,
    paraphrases: bool = True,
) -> list[dict]:
    """Per canary: log p(secret | prefix), extraction, (exposure), and the same from each
    paraphrased prefix."""
    rows = []
    lps = secret_logprobs(subject, [c.prefix for c in cs], [c.secret for c in cs])
    ext = extracted_many(subject, [c.prefix for c in cs], [c.secret for c in cs])
    if paraphrases:
        pre = [p for c in cs for p in c.paraphrases]
        sec = [c.secret for c in cs for _ in c.paraphrases]
        p_lps = secret_logprobs(subject, pre, sec).tolist()
        p_ext = extracted_many(subject, pre, sec)
    k = 0
    for c, lp, x in zip(cs, lps.tolist(), ext, strict=True):
        row = {
            "name": c.name,
            "repetitions": c.repetitions,
            "split": c.split,
            "gender": c.gender,
            "logprob": lp,
            "extracted": x,
        }
        if exposure_for is None or c.name in exposure_for:
            e = exposure(subject, c.prefix, c.secret, n_samples=samples, max_nodes=max_nodes)
            row.update(
                exposure=e.exposure,
                exposure_method=e.method,
                exposure_bounds=list(e.bounds) if e.bounds else None,
            )
        if paraphrases:
            n = len(c.paraphrases)
            row["paraphrase_logprob"] = sum(p_lps[k : k + n]) / n
            row["paraphrase_extracted"] = sum(p_ext[k : k + n]) / n
            k += n
        rows.append(row)
    return rows


def bits(n: float) -> float:
    return math.log2(n)
