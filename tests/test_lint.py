"""`snakemake --lint` on the shipped workflow and config prints no lint (a few seconds)."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
from conftest import ROOT, SNAKEMAKE, package_env

TIMEOUT = 180  # seconds; the lint takes about 4 s


def test_snakemake_lint_is_clean():
    proc = subprocess.Popen(
        [*SNAKEMAKE, "--lint"],
        cwd=ROOT,
        env=package_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"snakemake --lint did not finish within {TIMEOUT} s (killed)")
    text = out + err
    assert proc.returncode == 0 and "Lints for" not in text, (
        f"snakemake --lint exited {proc.returncode}; fix the lints below (helper functions belong in "
        f"workflow/rules/common.smk, every rule needs conda: '../envs/ketastats.yaml'):\n{text[-6000:]}"
    )
