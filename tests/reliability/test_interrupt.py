"""Kill `interp-audit run` at seeded random moments (SIGINT, SIGTERM): exit 130 / 143 with one
line and no traceback, and the output folder is complete and valid or clearly incomplete, never
inconsistent. The moments are drawn from the length of a complete run measured in the same test
(no timing is asserted: wherever the signal lands, the same invariants must hold)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from interp_audit.core.errors import IncompleteRunError
from interp_audit.output.run_folder import check_run_folder

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "circuits" / "handbuilt" / "audit.yaml"
# the executable's entry point, started after the interpreter is up: 'ready' marks that moment
WRAPPER = (
    "import sys; from interp_audit.cli.main import console; print('ready', flush=True); console()"
)


def start(out: Path) -> tuple[subprocess.Popen, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRAPPER, "run", str(SPEC), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc, time.monotonic()


def assert_complete_or_incomplete(out: Path) -> str:
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")], "temp files left behind"
    try:
        check_run_folder(out)
        return "complete"
    except IncompleteRunError as err:
        assert "incomplete" in str(err) or "no report.json" in str(err), str(err)
        return "incomplete"


@pytest.mark.reliability
def test_killed_runs_leave_complete_or_clearly_incomplete_folders(tmp_path):
    first = tmp_path / "complete"
    proc, t0 = start(first)
    _, err = proc.communicate(timeout=600)
    length = time.monotonic() - t0
    assert proc.returncode in (0, 1), err
    assert assert_complete_or_incomplete(first) == "complete"

    rng = random.Random(16)
    moments = [
        (signal.SIGINT, rng.uniform(0.0, length)),
        (signal.SIGTERM, rng.uniform(0.0, length)),
        (signal.SIGINT, rng.uniform(0.6, 1.0) * length),  # late: likely while saving
        (signal.SIGTERM, rng.uniform(0.6, 1.0) * length),
    ]
    outcomes = []
    for i, (sig, delay) in enumerate(moments):
        out = tmp_path / f"run{i}"
        shutil.copytree(first, out)  # overwriting a complete run: never old json + new files
        proc, t0 = start(out)
        time.sleep(max(0.0, delay - (time.monotonic() - t0)))
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=600)
        err = err.strip()
        assert "Traceback" not in err, err
        if proc.returncode in (130, 143):
            assert proc.returncode == 128 + int(sig), (sig, proc.returncode)
            assert err.count("\n") == 0 and "interrupted by SIG" in err, err
        else:  # the run had finished before the signal arrived
            assert proc.returncode in (0, 1), (proc.returncode, err)
        state = assert_complete_or_incomplete(out)
        if proc.returncode in (0, 1):
            assert state == "complete"
        outcomes.append((sig.name, proc.returncode, state))
    print(outcomes)
