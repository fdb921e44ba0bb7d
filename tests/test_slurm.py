"""The scale-out path: the workflow through Snakemake's SLURM executor on a real SLURM.

`.ci/run` installs Debian's slurm-wlm and starts munged, slurmctld and slurmd
(`.ci/start_slurm.sh`). Outside CI, start them the same way; in CI this test never skips.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from conftest import (
    ONE_MODEL_SAME_BYTES,
    ROOT,
    SNAKEMAKE,
    copy_project,
    keep_only_the_primary_model,
    run_group,
)
from report_cohort import same_model_entry

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


def _cancel_jobs_under(folder) -> None:
    """scancel every SLURM job whose working directory is ``folder`` (left by a failed run)."""
    out = subprocess.run(["squeue", "-h", "-o", "%i %Z"], capture_output=True, text=True).stdout
    ids = [line.split()[0] for line in out.splitlines() if line.split()[1:] == [str(folder)]]
    if ids:
        subprocess.run(["scancel", *ids], check=False)


def test_demo_and_recovery_through_slurm_equal_a_local_run(slurm, request, tmp_path):
    """Every kind of job (simulate, validate, prepare, a model fit, the report, the notebooks,
    recovery batches and their summary) through the SLURM executor gives the same bytes as
    the local run. One model is enough here: each model is its own job, and the other
    sixteen would only add a wave of ~20 Snakemake start-ups to the two-core node."""
    # the local run is asked for only after the cluster run: the two may then run side by side
    work = copy_project(ROOT, tmp_path / "slurm", tiny=True).resolve()
    cfg = keep_only_the_primary_model(work)
    assert "demo" in cfg["recovery"] and cfg["recovery"]["demo"]["model"] == "primary"
    cmd = [*SNAKEMAKE, "--profile", "profiles/slurm", "--jobs", "8"]
    try:
        # the executor can wait forever if it loses track of a job: a timeout kills the group
        proc = run_group(cmd, work, timeout=900)
    finally:
        _cancel_jobs_under(work)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "submitted with SLURM jobid" in text
    demo_run = request.getfixturevalue("demo_run")
    for rel in ONE_MODEL_SAME_BYTES:
        assert (work / rel).read_bytes() == (demo_run / rel).read_bytes(), rel
    ours = json.loads((work / "reports/demo/results.json").read_text())
    local = json.loads((demo_run / "reports/demo/results.json").read_text())
    # the primary's entry: equal estimates; counts concealed in both (their ranges may differ: the
    # local release has every model, whose counts narrow what a reader can derive)
    same_model_entry(ours["models"]["primary"], local["models"]["primary"],
                     json.loads((work / "data/processed/demo/models/primary.json").read_text()))
    assert ours["recovery"] == local["recovery"]
    for nb in sorted((work / "notebooks").glob("[0-9]*.ipynb")):
        assert (work / f"reports/demo/notebooks/{nb.stem}.html").stat().st_size > 0, nb.stem
    summary = json.loads((work / "reports/demo/recovery/summary.json").read_text())
    assert summary["replicates"] == cfg["recovery"]["demo"]["replicates"]
