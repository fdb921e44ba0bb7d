"""The report rules in Snakemake: outputs declared, captions, and Snakemake's own report.

The upstream steps (validate, prepare, fit) are stood in for by the synthetic cohort's
files, written oldest first, so that Snakemake runs only ``report`` and ``report_pdf``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import report_cohort as rc
import yaml

from ketastats.report import FIGURES, TABLES

ROOT = Path(__file__).resolve().parents[1]


def test_every_report_output_has_a_caption():
    captions = ROOT / "workflow" / "report"
    assert (captions / "workflow.rst").stat().st_size > 0
    for name in FIGURES:
        assert (captions / f"figure_{name}.rst").read_text().strip(), name
    for name in TABLES:
        assert (captions / f"table_{name}.rst").read_text().strip(), name
    for name in ("report_html", "report_pdf", "results_json"):
        assert (captions / f"{name}.rst").read_text().strip()
    assert 'report: "workflow/report/workflow.rst"' in (ROOT / "Snakefile").read_text()


@pytest.mark.workflow
def test_report_rules_and_snakemake_report(tmp_path):
    work = tmp_path / "p"
    work.mkdir()
    shutil.copy(ROOT / "Snakefile", work / "Snakefile")
    shutil.copytree(ROOT / "workflow", work / "workflow", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "config", work / "config")
    cfg = rc.project_config(ROOT)
    (work / "config/config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    b = rc.built()
    for rel in (
        "data/raw/synth/sessions.csv",
        "data/processed/synth/sessions.parquet",
        "data/processed/synth/input.json",
        "data/processed/synth/models/primary.json",
    ):
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(b["root"] / rel, work / rel)
    shutil.copy(b["sessions"], work / "data/processed/synth/validated.parquet")
    upstream = [
        "data/raw/synth/sessions.csv",
        "data/processed/synth/validated.parquet",
        "data/processed/synth/input.json",
        "data/processed/synth/sessions.parquet",
        "data/processed/synth/models/primary.json",
    ]
    for i, rel in enumerate(upstream):
        os.utime(work / rel, (1_700_000_000 + i, 1_700_000_000 + i))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    # the stand-in upstream files have no Snakemake metadata: judge them by modification time
    run = [sys.executable, "-m", "snakemake", "--cores", "2", "--rerun-triggers", "mtime"]
    proc = subprocess.run(run, cwd=work, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    logs = {p.name for p in (work / "logs/synth").iterdir()}
    assert logs == {"report.log", "report_pdf.log"}, logs  # nothing upstream was rerun
    out = work / "reports/synth"
    for name in FIGURES:
        assert (out / "figures" / f"{name}.png").stat().st_size > 0
        assert (out / "figures" / f"{name}.svg").stat().st_size > 0
    for name in TABLES:
        assert (out / "tables" / f"{name}.csv").stat().st_size > 0
    assert (out / "report.pdf").read_bytes()[:5] == b"%PDF-"
    assert "snakemake --cores 2" in (out / "report.html").read_text()  # the command, from KETASTATS_COMMAND

    zpath = out / "workflow_report.zip"
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--report", str(zpath.relative_to(work))],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    names = zipfile.ZipFile(zpath).namelist()
    basenames = {Path(n).name for n in names}
    assert "report.html" in basenames and "report.pdf" in basenames and "results.json" in basenames
    assert {f"{n}.png" for n in FIGURES} <= basenames
    assert {f"{n}.csv" for n in TABLES} <= basenames
    index = zipfile.ZipFile(zpath).read("workflow_report/report.html").decode("utf-8")
    for category in ("1. Report", "2. Figures", "3. Tables"):
        assert category in index
    assert "Swimmer plot of acute illness" in index  # a caption made it in
