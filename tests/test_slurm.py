"""The scale-out path: the workflow through Snakemake's SLURM executor on a real SLURM.

`.ci/run` installs Debian's slurm-wlm and starts munged, slurmctld and slurmd
(`.ci/start_slurm.sh`). Outside CI, start them the same way; in CI this test never skips.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml
from conftest import copy_project, package_env

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]


def _slurm_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    return proc.returncode == 0 and any(s in proc.stdout for s in ("idle", "mixed", "alloc"))


@pytest.fixture(scope="module")
def slurm():
    if not _slurm_up():
        if os.environ.get("CI"):
            pytest.fail("SLURM is not running; .ci/run should have started it (.ci/start_slurm.sh)")
        pytest.skip("no SLURM here: run `bash .ci/start_slurm.sh` as root to start a single-node one")


def test_demo_and_recovery_through_slurm_equal_a_local_run(slurm, demo_run, tmp_path):
    work = copy_project(demo_run, tmp_path / "slurm")
    cfg = yaml.safe_load((work / "config/config.yaml").read_text())
    assert "demo" in cfg["recovery"]
    # SIGKILL guard: the executor can wait forever if it loses track of a job
    cmd = [
        "timeout",
        "-s",
        "KILL",
        "900",
        sys.executable,
        "-m",
        "snakemake",
        "--profile",
        "profiles/slurm",
        # every fit of the tiny workflow in one wave (the CI node advertises 20 CPUs): the
        # executor waits 2 s, then 10 s more per empty poll, so each wave of jobs costs ~14 s
        "--jobs",
        "20",
    ]
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=package_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "slurm" in (proc.stdout + proc.stderr).lower()
    for rel in [
        "reports/demo/results.json",
        "reports/demo/recovery/summary.json",
        "data/processed/demo/sessions.parquet",
    ]:
        assert (work / rel).read_bytes() == (demo_run / rel).read_bytes(), rel
    summary = json.loads((work / "reports/demo/recovery/summary.json").read_text())
    assert summary["replicates"] == cfg["recovery"]["demo"]["replicates"]
