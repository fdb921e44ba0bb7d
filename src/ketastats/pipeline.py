"""The workflow's steps as functions: one per Snakemake rule, shared with the CLI.

Each step reads its inputs, calls the package, and writes its outputs atomically, so a
failing step leaves nothing half-written behind. Snakemake scripts (``workflow/scripts``)
and the ``ketastats`` command are thin wrappers around these functions.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ._atomic import atomic_path
from .exceptions import DataValidationError, KetastatsError
from .identifiers import redact_provenance
from .io import sha256_file
from .outputs import plain_json, read_json, write_json, write_parquet  # noqa: F401 (re-exported)

__all__ = [
    "log_to",
    "write_json",
    "read_json",
    "step_simulate",
    "step_validate",
    "step_prepare",
    "step_fit",
    "step_report",
    "provenance",
    "run_summary",
]

log = logging.getLogger(__name__)

_PACKAGES = (
    "ketastats",
    "numpy",
    "pandas",
    "scipy",
    "statsmodels",
    "patsy",
    "matplotlib",
    "snakemake",
    "pyarrow",
)


#: what a refused cohort's message says to do once its input is fixed
_RERUN = ("run the workflow again (.venv/bin/snakemake --cores 2); the other cohorts are not "
          "affected")

# ------------------------------------------------------------------- helpers
@contextlib.contextmanager
def log_to(path: str | os.PathLike) -> Iterator[None]:
    """Send ketastats' log records (and any error) to ``path``: a Snakemake rule's log.

    An error is logged with its message, and re-raised so that the job fails.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    except KetastatsError as exc:
        logging.getLogger("ketastats").error("%s", exc)
        raise
    except BaseException:
        logging.getLogger("ketastats").exception("unexpected error")
        raise
    finally:
        root.removeHandler(handler)
        handler.close()


# --------------------------------------------------------------------- steps
def step_simulate(cohort: Mapping[str, Any], *, root: Path = Path(".")) -> Path:
    """Generate a synthetic cohort's input file (and ``truth.json`` beside it)."""
    from .simulate import simulate_cohort, write_cohort

    sim = cohort["simulate"]
    target = root / cohort["input"]
    result = simulate_cohort(
        int(sim["patients"]), seed=int(sim["seed"]), scenario=sim.get("scenario", "sickness")
    )
    paths = write_cohort(result, target.parent)
    if Path(paths["sessions"]).resolve() != target.resolve():
        raise KetastatsError(
            f"the simulator writes {paths['sessions']}, but the cohort's input is {target}; "
            "point cohorts.<name>.input at <folder>/sessions.csv"
        )
    return target


def step_validate(
    cohort_name: str,
    cohort: Mapping[str, Any],
    *,
    out_table: str | os.PathLike,
    out_input: str | os.PathLike,
    problems_csv: str | os.PathLike,
    root: Path = Path("."),
) -> None:
    """Read and validate a cohort's raw input; write the typed table only if it passes.

    The problems table (errors and warnings) is always written to ``problems_csv``; on any
    error :class:`~ketastats.exceptions.DataValidationError` is raised and neither
    ``out_table`` nor ``out_input`` is written.
    """
    from .io import read_cohort
    from .validate import coerce_sessions, validate_file

    raw = root / cohort["input"]
    report = validate_file(cohort["input"], cohort, root=root, problems_csv=problems_csv)
    if not report.ok:
        raise DataValidationError(
            f"cohort {cohort_name!r}: {raw} failed validation "
            f"({len(report.errors)} error(s); the full table is in {problems_csv}):\n"
            + report.format_text(rerun=_RERUN),
            report.problems,
        )
    if len(report.warnings):
        log.warning("%s", report.format_text())
    table = coerce_sessions(read_cohort(cohort, root=root))
    checksum = report.sha256
    if sha256_file(raw) != checksum:
        raise KetastatsError(f"{raw} changed while it was being read; run again")
    write_parquet(table, out_table)
    write_json(
        out_input,
        {
            "cohort": cohort_name,
            "file": str(cohort["input"]),
            "sha256": checksum,
            "records": int(len(table)),
            "patients": int(table["patient_id"].nunique()),
            "warnings": int(len(report.warnings)),
        },
    )


def step_prepare(validated: str | os.PathLike, out: str | os.PathLike) -> None:
    """Derive the analysis variables (:func:`ketastats.prepare.prepare_sessions`)."""
    from .prepare import prepare_sessions

    write_parquet(prepare_sessions(pd.read_parquet(validated)), out)


def step_fit(
    sessions: str | os.PathLike | pd.DataFrame,
    spec: Mapping[str, Any],
    out_json: str | os.PathLike,
    *,
    alpha: float = 0.05,
    name: str | None = None,
    estimands: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Fit one model specification and write its JSON (estimates, CIs, BLUPs, status).

    Parameters
    ----------
    sessions : path or DataFrame
        The cohort's prepared table (``data/processed/<cohort>/sessions.parquet``).
    spec : mapping
        The model's specification, resolved for the cohort (:func:`ketastats.config.model_spec`).
    out_json : path
        Where the model JSON goes (``data/processed/<cohort>/models/<name>.json``).
    alpha : float
        1 - confidence level.
    name : str, optional
        The model's name (default: the JSON file's stem).
    estimands : mapping, optional
        Strategy per intercurrent event (:func:`ketastats.config.cohort_estimands`); project
        defaults when omitted.

    A model that cannot be fitted is written with ``status`` ``"skipped"`` or ``"failed"`` and
    the reason (see :func:`ketastats.models.run_model`); only a ``required`` model raises.
    """
    from .models import resolve_estimands, resolve_spec, run_model

    data = pd.read_parquet(sessions) if not isinstance(sessions, pd.DataFrame) else sessions
    name = name or Path(out_json).stem
    full_spec = resolve_spec(name, spec)
    out = run_model(name, full_spec, data, resolve_estimands(estimands), alpha=alpha)
    write_json(out_json, out)
    return out


def _git_commit(root: Path) -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return sha + (" (with uncommitted changes)" if dirty else "")


def provenance(config: Mapping[str, Any], input_info: Mapping[str, Any], root: Path) -> dict[str, Any]:
    """What produced a result: input checksum, config, code version, package versions."""
    packages = {}
    for name in _PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = "not installed"
    # config text, the input path and the command pass the identifier guard (issue 21)
    return redact_provenance({
        "input": {"file": input_info["file"], "sha256": input_info["sha256"]},
        "git_commit": _git_commit(root),
        "packages": packages,
        "config_yaml": yaml.safe_dump(plain_json(config), sort_keys=False),
    })


def step_report(
    cohort_name: str,
    config: Mapping[str, Any],
    *,
    sessions: str | os.PathLike,
    input_json: str | os.PathLike,
    model_jsons: Mapping[str, str | os.PathLike],
    out_results: str | os.PathLike,
    out_html: str | os.PathLike,
    root: Path = Path("."),
    command: str | None = None,
    figures_dir: str | os.PathLike | None = None,
    tables_dir: str | os.PathLike | None = None,
    out_pdf: str | os.PathLike | None = None,
    recovery_json: str | os.PathLike | None = None,
    power_json: str | os.PathLike | None = None,
    run_date: str | None = None,
) -> dict[str, Any]:
    """Write ``results.json``, the self-contained ``report.html`` and its figures and tables.

    Parameters
    ----------
    cohort_name, config
        The cohort and the checked workflow config.
    sessions, input_json, model_jsons
        The processed table, the validation step's record of the input, and model name ->
        model JSON path.
    out_results, out_html
        ``reports/<cohort>/results.json`` (no run date: byte-identical for the same
        inputs) and ``report.html``.
    command : str, optional
        The command that ran the workflow, shown in the report's provenance (never in
        results.json).
    figures_dir, tables_dir : path, optional
        Write every figure as PNG and SVG, and every table as CSV, there.
    out_pdf : path, optional
        Also print the report to PDF (needs Chromium; see :func:`ketastats.report.render_pdf`).
    recovery_json, power_json : path, optional
        Simulation summaries to show; by default ``recovery/summary.json`` and
        ``power/summary.json`` beside ``out_results`` when they exist.
    run_date : str, optional
        The run date shown in the report (default: now).
    """
    from .report import build_results, render_html, render_pdf

    info = read_json(input_json)
    raw = root / info["file"]
    if raw.exists() and sha256_file(raw) != info["sha256"]:
        raise KetastatsError(f"{raw} changed since it was validated (checksum differs); rerun the workflow")
    data = pd.read_parquet(sessions)
    models = {name: read_json(path) for name, path in model_jsons.items()}
    cohort_cfg = dict(config["cohorts"][cohort_name])
    cfg_view = {"cohort": {cohort_name: cohort_cfg}, "models": config["models"], "report": config["report"]}
    prov = provenance(cfg_view, info, root)
    # every number traces to a file: the processed table and each model JSON, by checksum
    prov["derived"] = {
        "sessions": {"file": str(sessions), "sha256": sha256_file(sessions)},
        **{
            f"model {name}": {"file": str(path), "sha256": sha256_file(path)}
            for name, path in model_jsons.items()
        },
    }
    prov["python"] = platform.python_version()
    here = Path(out_results).parent
    extras = {}
    for key, given in (("recovery", recovery_json), ("power", power_json)):
        path = Path(given) if given else here / key / "summary.json"
        extras[key] = read_json(path) if path.exists() else None
    settings = {
        **config["report"],
        "instrument": cohort_cfg.get("outcome", "madrs"),
        "schedule_unit": cohort_cfg.get("schedule_unit", "infusion"),
    }
    results = build_results(cohort_name, data, info, models, prov, settings, **extras)
    write_json(out_results, results)
    results_view = dict(results)
    results_view["provenance"] = redact_provenance({**prov, "command": command or "ketastats report"})
    render_html(
        results_view,
        data,
        out_html,
        models=models,
        figures_dir=figures_dir,
        tables_dir=tables_dir,
        run_date=run_date,
    )
    if out_pdf is not None:
        render_pdf(out_html, out_pdf)
    return results


def step_recovery_batch(
    study: Mapping[str, Any],
    spec: Mapping[str, Any],
    batch: int,
    out_csv: str | os.PathLike,
    *,
    estimands: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Run replicates ``batch * batch_size ...`` of a recovery study; write them as CSV."""
    from .recovery import run_replicate

    size = int(study["batch_size"])
    reps = range(batch * size, min((batch + 1) * size, int(study["replicates"])))
    rows = [
        run_replicate(
            study["scenario"], int(study["patients"]), int(study["seed"]), r, spec=spec, estimands=estimands
        )
        for r in reps
    ]
    table = pd.DataFrame(rows)
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False, lineterminator="\n", float_format="%.10g")
    return table


def step_recovery_summary(batches: Sequence[str | os.PathLike], out_replicates: str | os.PathLike) -> dict:
    """Combine batch CSVs; write replicates.csv, summary.json and summary.csv beside it."""
    from .recovery import summarize_replicates, write_recovery

    table = pd.concat([pd.read_csv(b) for b in batches], ignore_index=True)
    summary = summarize_replicates(table)
    write_recovery(table, summary, Path(out_replicates).parent)
    return summary


def model_names(config: Mapping[str, Any]) -> Sequence[str]:
    return list(config["models"])


def run_summary(cohorts: Sequence[str], root: str | os.PathLike = ".") -> str:
    """Where each cohort stands after a run that had a failing job: Snakemake's ``onerror``.

    A cohort whose input was refused names its problems table; a cohort without a report
    names its log folder; the rest name their report. The failing cohorts' branches stopped
    alone (the default profile runs with ``keep-going``).

    Examples
    --------
    >>> import tempfile
    >>> print(run_summary(["demo"], tempfile.mkdtemp()))
    ketastats: some jobs failed; by cohort:
      demo: no report: stopped before validation; see logs/demo/
    After fixing, run the workflow again (.venv/bin/snakemake --cores 2): finished outputs are kept.
    """
    import csv

    root = Path(root)
    lines = ["ketastats: some jobs failed; by cohort:"]
    for cohort in cohorts:
        report = Path("reports", cohort, "report.html")
        problems = Path("logs", cohort, "validation_problems.csv")
        if (root / report).exists():
            state = f"report written: {report}"
        elif (root / "data/processed" / cohort / "validated.parquet").exists():
            state = f"no report: a job after validation failed; its log is in logs/{cohort}/"
        elif (root / problems).exists():
            with open(root / problems, newline="", encoding="utf-8") as fh:
                n = sum(1 for row in csv.DictReader(fh) if row.get("severity") == "error")
            state = (f"input refused by validation ({n} error(s)); every problem, with file, "
                     f"row, column and fix, is in {problems}")
        else:
            state = f"no report: stopped before validation; see logs/{cohort}/"
        lines.append(f"  {cohort}: {state}")
    lines.append("After fixing, run the workflow again (.venv/bin/snakemake --cores 2): "
                 "finished outputs are kept.")
    return "\n".join(lines)
