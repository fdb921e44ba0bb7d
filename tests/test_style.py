"""ruff is part of the test suite: the code base stays lint-clean."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def test_ruff_clean(project_root):
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is not installed (pip install -e '.[dev]')"
    proc = subprocess.run([ruff, "check", "."], cwd=project_root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
