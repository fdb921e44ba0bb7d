"""Start-up: the command line, the config check and the Snakefile's parse import nothing heavy.

Snakemake parses the Snakefile (and checks the config) on every call and in every cluster
job; ``ketastats`` subcommands import what they need when they run. Each check runs in a
fresh interpreter and looks at ``sys.modules``; timings are measured, not tested here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: imported by ``import jsonschema`` when installed (jsonschema/_format.py); rfc3987_syntax
#: compiles lark grammars on import (~2 s CPU)
FORMAT_MODULES = (
    "jsonschema._format",
    "rfc3987_syntax",
    "lark",
    "webcolors",
    "fqdn",
    "isoduration",
    "uri_template",
    "jsonpointer",
    "rfc3339_validator",
    "rfc3986_validator",
)
PLOTTING_AND_MODELS = ("matplotlib", "statsmodels", "scipy")
NOTEBOOK_STACK = ("papermill", "nbconvert", "ipykernel")

# Run in the child: list the given modules that are in sys.modules when it exits.
_REPORT = """
import atexit, json, sys
_out, _names = sys.argv[1], json.loads(sys.argv[2])
def _report():
    with open(_out, "w") as f:
        json.dump(sorted(n for n in _names if n in sys.modules), f)
atexit.register(_report)
"""


def _imported(tmp_path: Path, code: str, names: tuple[str, ...], cwd: Path) -> list[str]:
    out = tmp_path / "imported.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, "-c", _REPORT + code, str(out), json.dumps(names)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_cli_and_config_check_import_no_plotting_models_or_format_grammars(tmp_path):
    code = f"""
import ketastats.cli
import ketastats.config
ketastats.config.load_config({str(ROOT / "config/config.yaml")!r})
"""
    names = FORMAT_MODULES + PLOTTING_AND_MODELS + NOTEBOOK_STACK + ("pandas",)
    assert _imported(tmp_path, code, names, cwd=tmp_path) == []


def test_parsing_the_snakefile_imports_no_plotting_models_or_format_grammars(tmp_path):
    """``snakemake --list`` parses the Snakefile (config check, every rule file) in a copy."""
    work = tmp_path / "project"
    work.mkdir()
    shutil.copy2(ROOT / "Snakefile", work / "Snakefile")
    for sub in ("workflow", "config", "notebooks"):
        shutil.copytree(ROOT / sub, work / sub)
    code = """
sys.argv = ["snakemake", "--list"]
from snakemake.cli import main
main()
"""
    names = FORMAT_MODULES + PLOTTING_AND_MODELS + NOTEBOOK_STACK
    assert _imported(tmp_path, code, names, cwd=work) == []
