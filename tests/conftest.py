"""Shared fixtures: project paths, a throw-away copy of the workflow, one demo run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# CI explores the same examples every run (reproducible); elsewhere hypothesis explores anew.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


def copy_project(root: Path, dest: Path) -> Path:
    """The workflow's own files (no data, no outputs) in ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(root / "Snakefile", dest / "Snakefile")
    for sub in ("workflow", "config", "profiles"):
        shutil.copytree(root / sub, dest / sub, ignore=shutil.ignore_patterns("__pycache__"))
    if (root / "notebooks").is_dir():
        shutil.copytree(
            root / "notebooks", dest / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints")
        )
    return dest


def package_env() -> dict[str, str]:
    """The environment with this checkout's ``src/`` first on ``PYTHONPATH``.

    Workflow copies run in another folder, where a relative ``PYTHONPATH=src`` finds
    nothing; jobs (and notebook kernels) must import the ketastats under test.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    return env


def run_snakemake(workdir: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """``snakemake --cores 2 ARGS`` in ``workdir`` (the venv's snakemake)."""
    return subprocess.run(
        [*SNAKEMAKE, "--cores", "2", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=package_env(),
    )


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """The default workflow (demo cohort + its recovery study), run once per test session."""
    work = copy_project(ROOT, tmp_path_factory.mktemp("demo"))
    proc = run_snakemake(work)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return work
