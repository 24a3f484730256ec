"""The executor layer: Ray stays unimported on the local path; bad executor names are errors."""

import subprocess
import sys

import pytest
import torch

import interp_audit as ia
from interp_audit.engine.batched import RunContext, plan_chunks, run_chunk, run_variants
from interp_audit.engine.executors import LocalExecutor, current_executor, get_executor, using


def test_local_path_never_imports_ray():
    code = (
        "import sys, interp_audit as ia\n"
        "s = ia.load_model('zoo:handbuilt-copy')\n"
        "p = ia.ContrastSet.from_prompts(s, ['A x ->'], ['B x ->'], answers=('YES', 'NO'))\n"
        "ia.patch(s, p, sites='heads', executor='local')\n"
        "ia.patch(s, p, sites='heads')\n"
        "print('ray' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split()[-1] == "False"


def test_unknown_executor_is_named():
    with pytest.raises(ia.AuditError, match=r"unknown executor 'rya'.*did you mean 'ray'"):
        get_executor("rya")


def test_using_restores_the_previous_executor():
    before = current_executor()
    with using("local") as ex:
        assert isinstance(ex, LocalExecutor) and current_executor() is ex
    assert current_executor() is before


def test_chunks_run_one_by_one_equal_the_whole_sweep():
    """What a remote worker computes (one planned chunk) is what the local sweep computes."""
    s = ia.load_model("zoo:handbuilt-copy")
    pairs = ia.ContrastSet.from_prompts(
        s, ["A x ->", "A y ->"], ["B x ->", "B y ->"], answers=("YES", "NO")
    )
    from interp_audit.methods.locate.sites import plan_sites

    plan = plan_sites(s, pairs, "heads", per_position=True)
    ctx = RunContext.build(s, pairs, ia.metrics.logit_diff, source_hooks=plan.hooks, need_kv=True)
    whole = run_variants(ctx, plan.variants, max_rows=4)
    noop, chunks = plan_chunks(ctx, plan.variants, max_rows=4)
    assert len(chunks) > 1 and sorted(noop + [i for _, c in chunks for i in c]) == list(
        range(len(plan.variants))
    )  # every variant planned exactly once
    for start, idxs in chunks:
        assert torch.equal(run_chunk(ctx, [plan.variants[i] for i in idxs], start), whole[idxs])
    assert torch.equal(whole[noop], ctx.base_values.expand(len(noop), -1))
