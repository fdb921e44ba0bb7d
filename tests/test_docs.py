"""What the project cites lies inside the project (issue 28, point 3).

* No file cites the research notes or the reference folder that were kept beside the
  checkout while the project was built: their content now lives in ``docs/`` (the
  simulator's parameters in docs/simulation.md, the tests' references and tolerances in
  docs/testing.md, the statistical background in docs/statistics.md).
* Every ``docs/<name>.md`` that a file cites exists, and every section it cites by name
  (``docs/<name>.md, "Heading"``) is a heading of that page.
* docs/simulation.md lists every parameter of the generator with the default the code has,
  the calibration targets with the ranges the code checks, and every scenario.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from ketastats.simulate import CALIBRATION_TARGETS, PARAM_DOCS, SCENARIOS, default_params

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

#: what is scanned: the package, tests (with their data and R scripts), docs, workflow,
#: notebooks, config, benchmarks, run profiles, CI and the top-level files
SCANNED_DIRS = ("src", "tests", "docs", "workflow", "notebooks", "config", "benchmarks", "profiles", ".ci")
SCANNED_FILES = ("README.md", "Snakefile", "pyproject.toml", ".gitignore")
SKIPPED_DIRS = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".ruff_cache"}

#: citations of the notes outside the repository (written so that this file does not match)
OUTSIDE = {
    "the domain research note": re.compile(r"domain\.md"),
    "the setup-facts note": re.compile(r"setup_fact[s]"),
    "the workflow-and-statistics note": re.compile(r"workflow_and_statistic[s]"),
    "the attenuation note": re.compile(r"attenuation\.md"),
    "the architecture note (upper case)": re.compile(r"ARCHITECTURE\.md"),
    "the shared folder": re.compile(r"(?<![\w-])share[d]/"),
    "a research note": re.compile(r"(?<![\w-])research/[\w-]+\.md"),
}
DOC_PATH = re.compile(r"(?<![\w/.-])docs/([\w-]+)\.md")
#: ``docs/<name>.md, "Heading"``; the heading may wrap onto a comment or docstring line
DOC_SECTION = re.compile(r'(?<![\w/.-])docs/([\w-]+)\.md,\s*"([^"\n]+(?:\n[^"\n]+)?)"')


def _scanned() -> list[Path]:
    files = [ROOT / name for name in SCANNED_FILES if (ROOT / name).is_file()]
    for top in SCANNED_DIRS:
        for path in sorted((ROOT / top).rglob("*")):
            parts = path.relative_to(ROOT).parts
            if path.is_file() and not SKIPPED_DIRS.intersection(parts) and not any(
                q.endswith(".egg-info") for q in parts  # pip's build metadata (a copy of the README)
            ):
                files.append(path)
    return files


def _texts() -> dict[str, str]:
    """Relative path -> text of every scanned text file (binary files, e.g. .gz, skipped)."""
    out = {}
    for path in _scanned():
        try:
            out[path.relative_to(ROOT).as_posix()] = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
    return out


@pytest.fixture(scope="module")
def texts() -> dict[str, str]:
    found = _texts()
    # the scan must see what it is meant to check
    assert {"README.md", "docs/simulation.md", "src/ketastats/simulate/params.py"} <= set(found)
    assert any(name.startswith("tests/data/") and name.endswith(".R") for name in found)
    return found


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def test_nothing_cites_the_notes_outside_the_repository(texts):
    hits = [
        f"{name}:{_line(text, m.start())}: {what} ({m.group(0)!r})"
        for name, text in texts.items()
        for what, pattern in OUTSIDE.items()
        for m in pattern.finditer(text)
    ]
    assert hits == [], "cite the repository's own docs instead:\n" + "\n".join(hits)


def test_the_outside_patterns_catch_what_they_are_for():
    cited = [
        "see research/" + "domain" + ".md section 6",
        "(" + "shared" + "/reference/README.md)",
        "/work/" + "shared" + "/research/" + "x.md",
        "setup" + "_facts.md section 3",
        "started from `" + "ARCHITECTURE" + ".md`",
    ]
    for text in cited:
        assert any(p.search(text) for p in OUTSIDE.values()), text
    for text in ("docs/architecture.md", "_shared(layer, key)", "1e-8 shared out over the patients"):
        assert not any(p.search(text) for p in OUTSIDE.values()), text


def _headings(page: str) -> list[str]:
    text = (DOCS / f"{page}.md").read_text(encoding="utf-8")
    return [" ".join(m.group(1).split()) for m in re.finditer(r"^#{1,6}\s+(.+)$", text, flags=re.M)]


def test_every_cited_doc_and_section_exists(texts):
    missing = []
    n_sections = 0
    for name, text in texts.items():
        for m in DOC_PATH.finditer(text):
            if not (DOCS / f"{m.group(1)}.md").is_file():
                missing.append(f"{name}:{_line(text, m.start())}: {m.group(0)} does not exist")
        for m in DOC_SECTION.finditer(text):
            page = m.group(1)
            if not (DOCS / f"{page}.md").is_file():
                continue  # reported above
            # a heading wrapped onto the next comment or docstring line
            cited = " ".join(re.sub(r"\n\s*(#:?)?", " ", m.group(2)).split())
            n_sections += 1
            if not any(h.startswith(cited) for h in _headings(page)):
                missing.append(f'{name}:{_line(text, m.start())}: docs/{page}.md has no section "{cited}"')
    assert missing == [], "\n".join(missing)
    assert n_sections >= 10  # the citations by section are found at all


def _leaf(tree: dict, dotted: str):
    node = tree
    for part in dotted.split("."):
        node = node[part]
    return node


def _simulation_doc() -> str:
    return (DOCS / "simulation.md").read_text(encoding="utf-8")


def _section(text: str, heading: str) -> str:
    start = re.search(rf"^#+ {re.escape(heading)}\s*$", text, flags=re.M)
    assert start, heading
    level = len(text[start.start() :].split(" ", 1)[0])
    end = re.compile(rf"^#{{1,{level}}} ", flags=re.M).search(text, start.end())
    return text[start.end() : end.start() if end else len(text)]


def test_simulation_doc_lists_every_parameter_with_the_code_default():
    rows = re.findall(
        r"^\| `([a-z0-9_]+\.[a-z0-9_]+)` \| `([^`]*)` \|", _section(_simulation_doc(), "Parameters"), re.M
    )
    documented = [key for key, _ in rows]
    assert sorted(documented) == sorted(PARAM_DOCS), (
        "docs/simulation.md, Parameters, must have one row per PARAM_DOCS entry: "
        f"missing {sorted(set(PARAM_DOCS) - set(documented))}, "
        f"unknown {sorted(set(documented) - set(PARAM_DOCS))}"
    )
    assert len(documented) == len(set(documented))
    defaults = default_params()
    wrong = []
    for key, literal in rows:
        written, actual = ast.literal_eval(literal), _leaf(defaults, key)
        if written != actual or isinstance(written, bool) != isinstance(actual, bool):
            wrong.append(f"{key}: the doc says {written!r}, the code has {actual!r}")
    assert wrong == [], "\n".join(wrong)


def _range(cell: str) -> tuple[float, float]:
    cell = cell.strip()
    if cell.startswith("exactly "):
        value = float(cell.removeprefix("exactly "))
        return value, value
    lo, hi = cell.split(" to ") if " to " in cell else cell.split("-")
    return float(lo), float(hi)


def test_simulation_doc_lists_the_calibration_targets_the_code_checks():
    section = _section(_simulation_doc(), "Targets and tolerances")
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", section, re.M))
    assert sorted(rows) == sorted(CALIBRATION_TARGETS)
    for metric, (lo, hi, _) in CALIBRATION_TARGETS.items():
        assert _range(rows[metric]) == pytest.approx((lo, hi)), metric


def test_simulation_doc_lists_every_scenario():
    section = _section(_simulation_doc(), "Scenarios")
    names = re.findall(r"^\| `(\w+)`", section, re.M)
    assert sorted(names) == sorted(SCENARIOS)
