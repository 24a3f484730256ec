"""Audits on a local 2-worker Ray cluster give the local report.json, bit for bit (minus times).

One Ray cluster for the module (starting one costs seconds); each local reference report is
computed once. The MiniLM audit is a reduced spec derived from circuits/minilm-gender (one
contrast, the exact head sweep and the checks that run sweeps), to keep the module short.
"""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import yaml

import interp_audit as ia

ray = pytest.importorskip("ray")
from interp_audit.engine.executors.ray_executor import FAULT_ENV, RayExecutor  # noqa: E402

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
READMISSION = ROOT / "interp_audit" / "zoo" / "specs" / "readmission.yaml"
TIME_KEYS = {"timestamp", "seconds", "duration", "elapsed", "started", "finished", "wall_s"}
# the content hash covers the whole report.json, timestamp included, so it differs with it
TIME_KEYS |= {"content_sha256"}
# the command line that produced a report names --ray on the distributed run
TIME_KEYS |= {"command"}


def minilm_spec() -> dict:
    raw = yaml.safe_load((ROOT / "circuits" / "minilm-gender" / "audit.yaml").read_text())
    raw["name"] = "minilm-gender-small"
    raw["contrasts"] = {"male_jobs": raw["contrasts"]["male_jobs"]}
    raw["locate"] = [{"method": "patch", "contrast": "male_jobs", "sites": "heads", "name": "h"}]
    raw["checks"] = [c for c in raw["checks"] if c["kind"] in ("invariance", "component_mediation")]
    raw["checks"] = [c for c in raw["checks"] if c["contrast"] == "male_jobs"]
    return raw


def without_times(x):
    if isinstance(x, dict):
        return {k: without_times(v) for k, v in x.items() if k not in TIME_KEYS}
    if isinstance(x, list):
        return [without_times(v) for v in x]
    return x


def report_json(report, folder: Path) -> dict:
    report.save(folder)
    return without_times(json.loads((folder / "report.json").read_text()))


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def executor(cluster):
    ex = RayExecutor(num_workers=2)
    yield ex
    ex.close()


@pytest.mark.parametrize(
    "which",
    ["readmission", pytest.param("minilm", marks=pytest.mark.slow)],  # MiniLM: --run-slow
)
def test_report_json_is_identical_locally_and_on_ray(which, executor, tmp_path):
    spec = READMISSION if which == "readmission" else minilm_spec()
    local = report_json(ia.audit(spec), tmp_path / "local")
    distributed = report_json(ia.audit(spec, executor=executor), tmp_path / "ray")
    assert len(executor.workers_info) == 2
    assert len({w["pid"] for w in executor.workers_info}) == 2  # two processes did the work
    assert distributed == local
    # the reference is a real audit, not an empty one: it located effects and ran checks
    assert local["located"] and len(local["checks"]) >= 2


@pytest.fixture(scope="module")
def readmission_sweep():
    from circuits.readmission import scm as R

    subject = ia.load_model("zoo:readmission")
    pairs = R.contrast(subject, "direct", n=200)  # = the spec's a_direct (tested elsewhere)
    kw = dict(metric="logit_diff", sites="heads_v", per_position=True, batch_size=256)
    return subject, pairs, kw, ia.patch(subject, pairs, **kw)


@pytest.fixture
def free_cluster(executor):
    """Release the shared executor's actors: a test's own executor needs the 2 CPUs."""
    executor.close()


def test_worker_killed_mid_task_is_retried_and_nothing_is_lost(
    free_cluster, readmission_sweep, tmp_path
):
    subject, pairs, kw, local = readmission_sweep
    # an in-memory model (no zoo name, no folder): its safetensors are shipped to the workers
    subject = dataclasses.replace(subject, source="<in-memory>")
    marker = tmp_path / "died"
    ex = RayExecutor(
        num_workers=2, actor_options={"runtime_env": {"env_vars": {FAULT_ENV: str(marker)}}}
    )
    try:
        eff = ia.patch(subject, pairs, **kw, executor=ex)
        first_pids = {w["pid"] for w in ex.workers_info}
        assert marker.exists()  # one worker really died with a task in hand
        dead_pid = int(marker.read_text().split("pid ")[1].split()[0])
        assert dead_pid in first_pids
        pids_now = {
            ray.get(a.ready.remote())["pid"] for a in ex.actors(subject)
        }  # the dead actor was restarted as a new process
        assert dead_pid not in pids_now and len(pids_now) == 2
    finally:
        ex.close()
    # nothing lost, nothing counted twice: every variant equals the local number exactly
    assert torch.equal(eff.per_example, local.per_example)
    assert torch.equal(eff.values, local.values)


def test_worker_that_cannot_load_the_model_is_named(free_cluster, readmission_sweep):
    subject, pairs, kw, _ = readmission_sweep
    broken = dataclasses.replace(subject, source="zoo:no-such-model")
    ex = RayExecutor(num_workers=2)
    try:
        with pytest.raises(ia.ModelLoadError, match=r"Ray worker \d \(pid \d+ on .*no-such-model"):
            ia.patch(broken, pairs, **kw, executor=ex)
    finally:
        ex.close()


HANDBUILT = ROOT / "circuits" / "handbuilt" / "audit.yaml"


@pytest.fixture(scope="module")
def handbuilt_local(tmp_path_factory):
    return report_json(ia.audit(HANDBUILT), tmp_path_factory.mktemp("handbuilt_local"))


def test_cli_run_with_ray_writes_the_local_report(free_cluster, handbuilt_local, tmp_path):
    from interp_audit.cli.main import main

    assert main(["run", str(HANDBUILT), "--out", str(tmp_path), "--ray"]) == 0
    assert without_times(json.loads((tmp_path / "report.json").read_text())) == handbuilt_local
    assert ray.is_initialized()  # it joined the running cluster and left it running


def test_matrix_on_ray_gives_each_cell_the_local_report(
    free_cluster, executor, handbuilt_local, tmp_path
):
    from interp_audit.audit.matrix import run_matrix

    result = run_matrix(
        ["zoo:handbuilt-copy", "zoo:readmission"], [str(HANDBUILT)], tmp_path, executor=executor
    )
    ok = result.cell("zoo:handbuilt-copy", str(HANDBUILT))
    assert ok.code == 0 and ok.checks_passed == ok.checks_total == len(handbuilt_local["checks"])
    cell_json = json.loads((tmp_path / ok.folder / "report.json").read_text())
    assert without_times(cell_json) == handbuilt_local
    bad = result.cell("zoo:readmission", str(HANDBUILT))
    assert bad.code == 2 and "ContrastError" in bad.error  # the spec's prompts do not fit
    assert result.code == 2  # the worst cell
    page = (tmp_path / "index.html").read_text()
    assert f"{ok.folder}/report.html" in page and "ContrastError" in page
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [c["verdict"] for c in summary["cells"]] == ["pass", "error"]


def test_matrix_cli_runs_locally(handbuilt_local, tmp_path, capsys):
    from interp_audit.cli.main import main

    code = main(
        ["matrix", "--models", "zoo:handbuilt-copy", "--specs", str(HANDBUILT)]
        + ["--out", str(tmp_path)]
    )
    assert code == 0  # the only cell passes
    summary = json.loads((tmp_path / "summary.json").read_text())
    folder = summary["cells"][0]["folder"]
    assert without_times(json.loads((tmp_path / folder / "report.json").read_text())) == (
        handbuilt_local
    )
    n = len(handbuilt_local["checks"])
    assert f"pass {n}/{n}" in capsys.readouterr().out
