"""Shared fixtures: project paths, a throw-away copy of the workflow, one tiny demo run.

Workflow tests run the tiny config (``tests/config/tiny.yaml`` laid over
``config/config.yaml``): every model, notebook and report section, on 40 patients.
Every Snakemake process a test starts runs in its own process group, and a timeout
kills that whole group, so no job is left writing after a test gives up.
"""

# ruff: noqa: E402  (the BLAS thread variables must be set before anything imports numpy)
from __future__ import annotations

import os

# One BLAS thread per process, set before numpy loads: the suite runs on every core already
# (pytest-xdist workers, Snakemake jobs), and OpenBLAS threads that spin while waiting for a
# core made some statistical tests 10x slower when two workers ran side by side.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import contextlib
import fcntl
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml
from hypothesis import settings

# CI explores the same examples every run (reproducible); elsewhere hypothesis explores anew.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
TINY = Path(__file__).resolve().parent / "config" / "tiny.yaml"


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


def tiny_config(root: Path = ROOT) -> dict:
    """``config/config.yaml`` with ``tests/config/tiny.yaml`` laid over it, merged as
    Snakemake merges ``--configfile`` (nested keys updated, lists and scalars replaced)."""
    from snakemake.utils import update_config

    cfg = yaml.safe_load((root / "config/config.yaml").read_text())
    update_config(cfg, yaml.safe_load(TINY.read_text()))
    return cfg


def keep_only_the_primary_model(work: Path) -> dict:
    """Cut a workflow copy's config to the primary model (and what uses it: the recovery
    study, the report, the notebooks); returns the config written.

    For tests of the machinery around jobs (kills, the cluster executor): each model is its
    own job, so one shows every kind of job while the run costs 11 jobs instead of 28.
    """
    cfg = yaml.safe_load((work / "config/config.yaml").read_text())
    cfg["models"] = {"primary": cfg["models"]["primary"]}
    (work / "config/config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return cfg


#: Outputs of a one-model run (keep_only_the_primary_model) that equal the full run's, byte
#: for byte: everything upstream of the models, the primary model, the recovery study.
ONE_MODEL_SAME_BYTES = (
    "data/raw/demo/sessions.csv",
    "data/processed/demo/validated.parquet",
    "data/processed/demo/sessions.parquet",
    "data/processed/demo/input.json",
    "data/processed/demo/models/primary.json",
    "reports/demo/recovery/summary.json",
)


def copy_project(root: Path, dest: Path, *, tiny: bool = False) -> Path:
    """The workflow's own files (no data, no outputs) in ``dest``.

    ``tiny=True`` writes the tiny test config as the copy's ``config/config.yaml``, so
    that plain ``snakemake`` commands (as the README gives them) run it.
    """
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(root / "Snakefile", dest / "Snakefile")
    for sub in ("workflow", "config", "profiles"):
        shutil.copytree(root / sub, dest / sub, ignore=shutil.ignore_patterns("__pycache__"))
    if (root / "notebooks").is_dir():
        shutil.copytree(
            root / "notebooks", dest / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints")
        )
    if tiny:
        (dest / "config/config.yaml").write_text(yaml.safe_dump(tiny_config(root), sort_keys=False))
    return dest


def package_env() -> dict[str, str]:
    """The environment with this checkout's ``src/`` first on ``PYTHONPATH``.

    Workflow copies run in another folder, where a relative ``PYTHONPATH=src`` finds
    nothing; jobs (and notebook kernels) must import the ketastats under test.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    return env


def run_group(
    cmd: Sequence[str], cwd: Path, *, timeout: float = 900, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``cmd`` in a new process group; on timeout SIGKILL the whole group, then raise.

    ``subprocess.run(timeout=...)`` kills only its child: Snakemake's jobs (and theirs)
    would go on writing into the test's folder. Here nothing of the run outlives it.
    """
    proc = subprocess.Popen(
        list(cmd),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env if env is not None else package_env(),
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        out, err = proc.communicate()
        raise subprocess.TimeoutExpired(proc.args, timeout, output=out, stderr=err) from None
    finally:
        # the leader has ended (or was killed): whatever it left behind goes too
        kill_group(proc.pid)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def kill_group(pgid: int) -> None:
    """SIGKILL every process of group ``pgid`` (no error if none is left)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_snakemake(workdir: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """``snakemake --cores 2 ARGS`` in ``workdir`` (the venv's snakemake), in its own process group."""
    return run_group([*SNAKEMAKE, "--cores", "2", *args], workdir, timeout=timeout)


@contextlib.contextmanager
def _exclusive(lock: Path):
    """Hold an exclusive lock on ``lock`` (one pytest-xdist worker at a time)."""
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """The tiny workflow (demo cohort + its recovery study), run once per test session.

    Under pytest-xdist every worker shares the one run: the first to need it builds it
    in the session's common temporary folder while the others wait. Tests copy it before
    they change anything.
    """
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    work, done = shared / "demo_run", shared / "demo_run.done"
    with _exclusive(shared / "demo_run.lock"):
        if not done.exists():
            shutil.rmtree(work, ignore_errors=True)
            copy_project(ROOT, work, tiny=True)
            proc = run_snakemake(work)
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
            done.touch()
    return work
