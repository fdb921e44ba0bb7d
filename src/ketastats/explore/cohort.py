"""Find the project and load one cohort's processed data and model results by name."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..exceptions import KetastatsError

__all__ = ["CohortNotRunError", "find_root", "list_cohorts", "CohortView", "load_cohort"]

log = logging.getLogger(__name__)


class CohortNotRunError(KetastatsError):
    """The cohort asked for has no processed data yet (the workflow has not run it)."""


# ------------------------------------------------------------------- loading
def find_root(start: str | os.PathLike | None = None) -> Path:
    """The project folder: ``start`` or the nearest folder above it holding a ``Snakefile``.

    Lets a notebook work both when the workflow runs it from the project folder and when an
    analyst opens it in JupyterLab from ``notebooks/``.

    Parameters
    ----------
    start : path, optional
        Where to start looking (default: the working directory).

    Raises
    ------
    KetastatsError
        If neither ``start`` nor any folder above it holds a ``Snakefile``.
    """
    here = Path(start if start is not None else os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "Snakefile").is_file():
            return folder
    raise KetastatsError(
        f"no ketastats project (a folder with a Snakefile) at or above {here}; "
        "pass root='path/to/project' or start the notebook inside the project folder"
    )


def list_cohorts(root: str | os.PathLike | None = None) -> list[str]:
    """Names of the cohorts that have a processed session table under ``root``."""
    base = find_root(root) / "data" / "processed"
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / "sessions.parquet").is_file())


@dataclass
class CohortView:
    """What the workflow produced for one cohort, loaded for reading.

    Attributes
    ----------
    cohort : str
        The cohort's name (as in ``config/config.yaml``).
    root : pathlib.Path
        The project folder.
    sessions : pandas.DataFrame
        The analysis table ``data/processed/<cohort>/sessions.parquet``.
    models : dict
        Model name -> the model's JSON (as written by the ``fit_model`` rule), sorted by name.
    results : dict or None
        ``reports/<cohort>/results.json`` when the report has been rendered.
    """

    cohort: str
    root: Path
    sessions: pd.DataFrame
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    results: dict[str, Any] | None = None

    @property
    def score(self) -> str:
        """The cohort's primary instrument (config ``cohorts.<name>.outcome``), as its models
        recorded it: ``"madrs"``, ``"hamd17"``, ``"qids_sr16"``, ``"phq9"`` or ``"bdi2"``."""
        settings = (self.results or {}).get("settings") or {}
        if isinstance(settings.get("instrument"), dict):
            return str(settings["instrument"]["name"])
        for m in self.models.values():
            ins = (m.get("spec") or {}).get("instrument")
            if ins:
                return str(ins)
        return "madrs"

    @property
    def processed_dir(self) -> Path:
        return self.root / "data" / "processed" / self.cohort

    @property
    def report_dir(self) -> Path:
        return self.root / "reports" / self.cohort

    def __repr__(self) -> str:
        n_pat = self.sessions["patient_id"].nunique() if "patient_id" in self.sessions else 0
        # no absolute path here: executed notebooks show it, and must not depend on where
        # the project sits (same inputs, same bytes)
        return (
            f"CohortView(cohort={self.cohort!r}, patients={n_pat}, "
            f"sessions={len(self.sessions)}, models={list(self.models)})"
        )


def load_cohort(cohort: str, root: str | os.PathLike | None = None) -> CohortView:
    """Load a cohort's processed data and model results by name.

    Parameters
    ----------
    cohort : str
        Cohort name, as in ``config/config.yaml`` (``"demo"`` for the bundled demo).
    root : path, optional
        The project folder, or any folder inside it (default: the working directory);
        see :func:`find_root`.

    Returns
    -------
    CohortView

    Raises
    ------
    KetastatsError
        If the cohort has not been run (no ``sessions.parquet``), naming the cohorts that have.
    """
    project = find_root(root)
    processed = project / "data" / "processed" / cohort
    table = processed / "sessions.parquet"
    if not table.is_file():
        have = list_cohorts(project)
        raise CohortNotRunError(
            f"cohort {cohort!r} has no processed data ({table} is missing); run "
            f"`snakemake --cores 2` in {project} first"
            + (f" or pick one of the cohorts already run: {', '.join(have)}" if have else "")
        )
    sessions = pd.read_parquet(table)
    models: dict[str, dict[str, Any]] = {}
    for path in sorted((processed / "models").glob("*.json")):
        try:
            models[path.stem] = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            log.warning("skipping model %s: not valid JSON (%s)", path, exc)
    results_path = project / "reports" / cohort / "results.json"
    results = json.loads(results_path.read_text(encoding="utf-8")) if results_path.is_file() else None
    log.info("cohort %s: %d sessions, models %s", cohort, len(sessions), ", ".join(models) or "none")
    return CohortView(cohort=cohort, root=project, sessions=sessions, models=models, results=results)
