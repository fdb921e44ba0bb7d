"""Faults and reruns: a killed run restarts cleanly, reruns do only the needed work,
and two runs from scratch give byte-identical processed data and results."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import (
    ONE_MODEL_SAME_BYTES,
    ROOT,
    SNAKEMAKE,
    copy_project,
    keep_only_the_primary_model,
    kill_group,
    package_env,
    run_group,
    run_snakemake,
)
from report_cohort import same_model_entry

pytestmark = pytest.mark.workflow


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
    # the second cohort fits only what this test needs: the primary model
    others = {name: {"enabled": False} for name in cfg["models"] if name != "primary"}
    cfg["cohorts"]["demo2"] = {"input": "data/raw/demo2/sessions.csv", "models": others}
    (work / "config/config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    added = run_snakemake(work, "--dry-run")
    text = added.stdout + added.stderr
    assert added.returncode == 0, text[-3000:]
    assert "cohort=demo2" in text
    assert "cohort=demo\n" not in text  # adding a cohort leaves demo alone
    # demo2's data reach its primary model; the report is the same rule for every cohort
    reports = ["reports/demo/results.json", "data/processed/demo2/models/primary.json"]
    first = run_snakemake(work, *reports)
    assert first.returncode == 0, first.stderr[-3000:]
    again = run_snakemake(work, "--dry-run", *reports)
    assert "Nothing to be done" in again.stdout + again.stderr
    # edit one value of demo2's input (still valid data)
    raw = work / "data/raw/demo2/sessions.csv"
    lines = raw.read_text().splitlines(keepends=True)
    header = lines[0].rstrip("\n").split(",")
    cells = lines[1].rstrip("\n").split(",")
    cells[header.index("bmi")] = f"{float(cells[header.index('bmi')]) + 0.1:.1f}"
    lines[1] = ",".join(cells) + "\n"
    raw.write_text("".join(lines))
    dry = run_snakemake(work, "--dry-run", *reports)
    text = dry.stdout + dry.stderr
    assert dry.returncode == 0, text[-3000:]
    assert "cohort=demo2" in text
    assert "cohort=demo\n" not in text


def _readme_resume_command() -> str:
    """The one command the README gives for finishing a run after a hard kill."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Reruns, faults and determinism") :]
    block = section[
        section.index("```bash") + len("```bash") : section.index("```", section.index("```bash") + 7)
    ]
    lines = [ln for ln in block.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    return lines[0]


# Where the whole run is SIGKILLed, in order: the first file that shows a stage has begun.
KILL_POINTS = [
    ("simulating", "logs/demo/simulate.log"),
    ("validating", "logs/demo/validate.log"),
    ("fitting", "logs/demo/fit_primary.log"),
    ("reporting", "logs/demo/report.log"),
    ("printing the PDF", "logs/demo/report_pdf.log"),
]


def _start_and_kill_at(cmd: list[str], work: Path, marker: Path) -> None:
    """Start ``cmd`` in its own process group; SIGKILL the whole group once ``marker`` exists."""
    proc = subprocess.Popen(
        cmd,
        cwd=work,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=package_env(),
    )
    try:
        deadline = time.monotonic() + 600
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, f"the run ended before {marker.name} appeared"
    finally:
        kill_group(proc.pid)
        proc.wait()


def _nothing_partial(work: Path) -> None:
    """Every output present is complete (JSON parses) and no temporary file is left."""
    for p in (work / "data").rglob("*"):
        assert not p.name.endswith(".tmp"), p
        if p.suffix == ".json":
            json.loads(p.read_text())


def test_killed_run_resumes_with_the_readme_command_to_identical_outputs(demo_run, tmp_path):
    """SIGKILL the whole run (Snakemake and every job) while it simulates; then run the README's
    resume command, verbatim, and kill that too while it validates, fits, reports and prints
    the PDF (Chromium); the last resume finishes, and the outputs equal those of an
    undisturbed run, byte for byte.

    The run fits the primary model only (every kind of job, 12 jobs instead of 29): what is
    tested is how jobs are killed and resumed, the same for every model."""
    work = copy_project(demo_run, tmp_path / "p")
    cfg = keep_only_the_primary_model(work)
    cfg["report"]["pdf"] = True  # Chromium at /usr/bin/chromium: the PDF job is killed too
    (work / "config/config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    # the README's commands call the project's .venv/bin/snakemake: here, the test's own venv
    (work / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    command = _readme_resume_command()
    cmd = [*SNAKEMAKE, "--cores", "2"]
    for _stage, marker in KILL_POINTS:
        _start_and_kill_at(cmd, work, work / marker)
        # no job outlives the kill; a notebook's Jupyter kernel runs in a session of its own
        # (jupyter_client starts it so) and exits by itself within a second of its parent
        assert _gone_within(work.resolve(), seconds=5) == [], marker
        _nothing_partial(work)
        cmd = ["bash", "-c", command]
    again = run_group(cmd, work, timeout=900)
    assert again.returncode == 0, command + "\n" + again.stdout[-2000:] + again.stderr[-3000:]
    assert not [p for p in work.rglob("*.tmp")]
    pdf = (work / "reports/demo/report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    # determinism: a killed-and-resumed run equals an undisturbed one, byte for byte
    for rel in ONE_MODEL_SAME_BYTES:
        assert (work / rel).read_bytes() == (demo_run / rel).read_bytes(), rel
    ours = json.loads((work / "reports/demo/results.json").read_text())
    local = json.loads((demo_run / "reports/demo/results.json").read_text())
    # the primary's entry: equal estimates; counts concealed in both (their ranges may differ: the
    # local release has every model, whose counts narrow what a reader can derive)
    same_model_entry(ours["models"]["primary"], local["models"]["primary"],
                     json.loads((work / "data/processed/demo/models/primary.json").read_text()))
    assert sorted(p.name for p in (work / "data/processed/demo/models").iterdir()) == ["primary.json"]
    dry = run_snakemake(work, "--dry-run")
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-2000:]


def _processes_in(folder: Path) -> list[str]:
    """Processes whose working directory is ``folder`` or below it (Snakemake and its jobs)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cwd = Path(os.readlink(proc / "cwd"))
        except OSError:
            continue
        if cwd == folder or folder in cwd.parents:
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                cmd = "?"
            found.append(f"{proc.name}: {cmd[:200]}")
    return found


def _gone_within(folder: Path, seconds: float) -> list[str]:
    """Processes still in ``folder`` after waiting up to ``seconds`` for them to end."""
    deadline = time.monotonic() + seconds
    while (left := _processes_in(folder)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def test_a_timeout_kills_the_whole_process_group(tmp_path):
    """A test that gives up on a command leaves nothing behind still writing into its folder:
    run_group kills the command's whole process group, children included. (That Snakemake's
    jobs are in that group, the kill-and-resume test checks after each of its kills.)"""
    writer = "while true; do date +%s%N >> out.txt; sleep 0.05; done"
    with pytest.raises(subprocess.TimeoutExpired):
        run_group(["bash", "-c", f"( {writer} ) & ( {writer} ) & sleep 600"], tmp_path, timeout=1)
    assert (tmp_path / "out.txt").stat().st_size > 0  # the children were writing when it struck
    time.sleep(0.3)
    assert _processes_in(tmp_path.resolve()) == []
    before = (tmp_path / "out.txt").read_bytes()
    time.sleep(0.5)
    assert (tmp_path / "out.txt").read_bytes() == before  # nothing is still writing


def test_a_raw_file_replaced_by_an_older_one_reruns_validate(project_root, tmp_path):
    """Inputs are tracked by checksum, not only by time stamp: a raw file replaced by an edited
    copy whose time stamp is older than the outputs (``cp -p``, unzip, a restored backup) reruns
    validate (and so all after it). That an unchanged input reruns nothing, its checksum
    included, test_rerun_with_unchanged_inputs_does_no_work shows."""
    from ketastats.simulate import simulate_cohort, write_cohort

    work = copy_project(project_root, tmp_path / "p", tiny=True)
    cfg = yaml.safe_load((work / "config/config.yaml").read_text())
    cfg["cohorts"]["site"] = {"input": "data/raw/site/sessions.csv"}
    (work / "config/config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    raw = write_cohort(simulate_cohort(6, seed=3), work / "data/raw/site")["sessions"]
    target = "data/processed/site/validated.parquet"
    first = run_snakemake(work, target)
    assert first.returncode == 0, first.stderr[-3000:]
    # an edited copy of the file, dated a year back, copied over it keeping its date
    edited = tmp_path / "edited.csv"
    table = pd.read_csv(raw, dtype=str, keep_default_na=False)
    first = table["patient_id"] == table["patient_id"].iloc[0]
    table.loc[first, "sex"] = {"male": "female", "female": "male"}[table.loc[first, "sex"].iloc[0]]
    table.to_csv(edited, index=False, lineterminator="\n")
    assert edited.read_bytes() != raw.read_bytes()
    old = time.time() - 365 * 86400
    os.utime(edited, (old, old))
    shutil.copy2(edited, raw)
    assert raw.stat().st_mtime < (work / target).stat().st_mtime
    dry = run_snakemake(work, "--dry-run", target)
    text = dry.stdout + dry.stderr
    assert dry.returncode == 0, text[-3000:]
    assert "rule validate" in text and "Params have changed" in text, text[-3000:]
