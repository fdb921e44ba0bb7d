"""Faults and reruns: a killed run restarts cleanly, reruns do only the needed work,
and two runs from scratch give byte-identical processed data and results."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import SNAKEMAKE, copy_project, run_snakemake

pytestmark = pytest.mark.workflow


def _files(root: Path, *subdirs: str) -> dict[str, bytes]:
    out = {}
    for sub in subdirs:
        for p in sorted((root / sub).rglob("*")):
            if p.is_file():
                out[str(p.relative_to(root))] = p.read_bytes()
    return out


def test_rerun_with_unchanged_inputs_does_no_work(demo_run):
    proc = run_snakemake(demo_run, "--dry-run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_changing_one_cohorts_data_reruns_only_that_cohort(demo_run, tmp_path):
    work = tmp_path / "p"
    shutil.copytree(demo_run, work, symlinks=True)
    (work / "data/raw/demo2").mkdir()
    shutil.copy(work / "data/raw/demo/sessions.csv", work / "data/raw/demo2/sessions.csv")
    cfg = yaml.safe_load((work / "config/config.yaml").read_text())
    cfg["cohorts"]["demo2"] = {"input": "data/raw/demo2/sessions.csv"}
    (work / "config/config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    first = run_snakemake(work)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "cohort=demo\n" not in first.stdout + first.stderr  # adding a cohort leaves demo alone
    # edit one value of demo2's input (still valid data)
    raw = work / "data/raw/demo2/sessions.csv"
    lines = raw.read_text().splitlines(keepends=True)
    header = lines[0].rstrip("\n").split(",")
    cells = lines[1].rstrip("\n").split(",")
    cells[header.index("bmi")] = f"{float(cells[header.index('bmi')]) + 0.1:.1f}"
    lines[1] = ",".join(cells) + "\n"
    raw.write_text("".join(lines))
    dry = run_snakemake(work, "--dry-run")
    text = dry.stdout + dry.stderr
    assert dry.returncode == 0, text[-3000:]
    assert "cohort=demo2" in text
    assert "cohort=demo\n" not in text


def test_killed_run_restarts_to_identical_outputs(demo_run, project_root, tmp_path):
    """SIGKILL while a model is being fitted; restart; compare with an undisturbed run."""
    work = copy_project(project_root, tmp_path / "p")
    proc = subprocess.Popen(
        [*SNAKEMAKE, "--cores", "2"],
        cwd=work,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    fit_log = work / "logs/demo/fit_primary.log"
    deadline = time.monotonic() + 600
    while not fit_log.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before the model fit started"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (work / "reports/demo/results.json").exists()
    # nothing partial: every output present is complete (JSON parses), no temporary files
    for p in (work / "data/processed").rglob("*"):
        assert not p.name.endswith(".tmp"), p
        if p.suffix == ".json":
            json.loads(p.read_text())
    unlock = subprocess.run([*SNAKEMAKE, "--unlock"], cwd=work, capture_output=True, text=True)
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    again = run_snakemake(work)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    assert not [p for p in work.rglob("*.tmp")]
    # determinism: two runs from scratch give byte-identical processed data and results
    a = _files(work, "data/processed", "data/raw")
    b = _files(demo_run, "data/processed", "data/raw")
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == b[key], key
    for rel in ["reports/demo/results.json", "reports/demo/recovery/summary.json"]:
        assert (work / rel).read_bytes() == (demo_run / rel).read_bytes(), rel


def test_a_fatal_fit_fails_only_its_own_branch(demo_run, tmp_path):
    """--keep-going: a required model that cannot be fitted stops its cohort's report only."""
    work = tmp_path / "p"
    shutil.copytree(demo_run, work, symlinks=True)
    (work / "data/raw/demo2").mkdir()
    shutil.copy(work / "data/raw/demo/sessions.csv", work / "data/raw/demo2/sessions.csv")
    cfg = yaml.safe_load((work / "config/config.yaml").read_text())
    others = {name: {"enabled": False} for name in cfg["models"] if name not in ("primary", "response_gee")}
    # BDI-II is not in the demo data: fitting it is impossible, and the spec says that is fatal
    others["primary"] = {"outcome": "bdi2", "required": True}
    cfg["cohorts"]["demo2"] = {"input": "data/raw/demo2/sessions.csv", "models": others}
    (work / "config/config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = run_snakemake(work, "--keep-going")
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "fit_model" in text and "demo2" in text
    # the failing branch: no model file, no report; its sibling model still ran
    assert not (work / "data/processed/demo2/models/primary.json").exists()
    assert (work / "data/processed/demo2/models/response_gee.json").exists()
    assert not (work / "reports/demo2").exists()
    log = (work / "logs/demo2/fit_primary.log").read_text()
    assert "bdi2" in log
    # the other cohort is untouched and complete
    assert (work / "reports/demo/results.json").read_bytes() == (demo_run / "reports/demo/results.json").read_bytes()
