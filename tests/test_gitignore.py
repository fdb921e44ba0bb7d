"""Data and outputs can't be committed by accident: every data/output folder is git-ignored but its README."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from conftest import ROOT

FOLDERS = ("data/raw", "data/processed", "reports", "logs", "results")

@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A scratch git repository holding the project's .gitignore: the check needs no
    checkout of the project (an unpacked archive has no .git) and never skips."""
    where = tmp_path_factory.mktemp("gitignore")
    subprocess.run(["git", "init", "-q", str(where)], check=True)
    shutil.copy(ROOT / ".gitignore", where / ".gitignore")
    return where


def ignored(repo, path: str) -> bool:
    """``git check-ignore`` on a path that need not exist: exit 0 ignored, 1 not ignored."""
    out = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=repo)
    assert out.returncode in (0, 1), f"git check-ignore failed on {path}"
    return out.returncode == 0


@pytest.mark.parametrize(
    "path",
    [
        "data/raw/site_x/export.csv",
        "data/raw/site_x/redcap_export.xlsx",
        "data/raw/demo/sessions.csv",
        "data/raw/export_at_top.csv",
        "data/processed/site_x/sessions.parquet",
        "data/processed/site_x/models/primary.json",
        "reports/site_x/report.html",
        "reports/site_x/tables/table1.csv",
        "logs/site_x/validate.log",
        "results/recovery_null/summary.json",
    ],
)
def test_a_file_dropped_in_a_data_or_output_folder_is_ignored(repo, path):
    assert ignored(repo, path), f"{path} is not git-ignored: `git add -A` would offer it"


@pytest.mark.parametrize("folder", FOLDERS)
def test_each_folder_keeps_its_tracked_readme(repo, folder):
    readme = f"{folder}/README.md"
    assert not ignored(repo, readme)
    assert (ROOT / readme).is_file()
