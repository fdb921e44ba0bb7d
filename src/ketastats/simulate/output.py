"""Write a simulated cohort: ``sessions.csv`` (data contract) and ``truth.json``.

Bytes are deterministic: fixed column order, fixed number formats (BMI 1 decimal, dose
2 decimals, cytokines 3 decimals or ``"<LOD"``), empty fields for missing values, ``"\\n"``
line ends, and JSON with fixed key order and rounded floats. Both files are written
atomically.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ketastats._atomic import write_text_atomic
from ketastats.simulate.generator import SimulatedCohort, simulate_cohort
from ketastats.simulate.params import load_params

__all__ = ["format_sessions_csv", "simulate_to_dir", "truth_json", "write_cohort"]

logger = logging.getLogger(__name__)

_FLOAT_FORMATS = {"bmi": "%.1f", "dose_mg_kg": "%.2f"}


def _column_text(series: pd.Series) -> np.ndarray:
    na = series.isna().to_numpy()
    name = str(series.name)
    if name in _FLOAT_FORMATS:
        vals = series.to_numpy(dtype=float, na_value=np.nan)
        text = np.char.mod(_FLOAT_FORMATS[name], np.nan_to_num(vals))
    elif pd.api.types.is_integer_dtype(series.dtype):
        text = series.to_numpy(dtype=np.int64, na_value=0).astype(str)
    else:
        text = series.astype(object).to_numpy().astype(str)
    return np.where(na, "", text)


def format_sessions_csv(sessions: pd.DataFrame) -> str:
    """Return the session table as CSV text with the fixed formats (header included)."""
    header = ",".join(sessions.columns) + "\n"
    if sessions.empty:
        return header
    columns = [_column_text(sessions[c]).tolist() for c in sessions.columns]
    return header + "\n".join(map(",".join, zip(*columns, strict=True))) + "\n"


def truth_json(cohort: SimulatedCohort) -> str:
    """Return ``truth.json`` text: stable key order, one line per patient, trailing newline."""
    head = dict(cohort.truth)
    patients = head.pop("patients", [])
    head["patients"] = "__PATIENTS__"
    text = json.dumps(head, indent=1, ensure_ascii=True, allow_nan=False)
    rows = ",\n".join(
        json.dumps(p, separators=(",", ":"), ensure_ascii=True, allow_nan=False) for p in patients
    )
    return text.replace('"__PATIENTS__"', "[\n" + rows + "\n ]" if rows else "[]") + "\n"


def write_cohort(cohort: SimulatedCohort, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``out_dir/sessions.csv`` and ``out_dir/truth.json`` atomically.

    Parameters
    ----------
    cohort : SimulatedCohort
        Output of :func:`~ketastats.simulate.generator.simulate_cohort`.
    out_dir : path-like
        Directory (created if needed).

    Returns
    -------
    dict of str to Path
        ``{"sessions": .../sessions.csv, "truth": .../truth.json}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"sessions": out / "sessions.csv", "truth": out / "truth.json"}
    write_text_atomic(paths["sessions"], format_sessions_csv(cohort.sessions))
    write_text_atomic(paths["truth"], truth_json(cohort))
    logger.info(
        "wrote %d sessions of %d patients (scenario %s, seed %d) to %s",
        len(cohort.sessions),
        cohort.n_patients,
        cohort.scenario,
        cohort.seed,
        out,
    )
    return paths


def simulate_to_dir(
    out_dir: str | os.PathLike,
    *,
    n_patients: int = 200,
    seed: int = 0,
    scenario: str = "sickness",
    params_path: str | os.PathLike | None = None,
) -> dict[str, Path]:
    """Simulate a cohort and write it: the whole of ``ketastats simulate`` in one call.

    Parameters
    ----------
    out_dir : path-like
        Output directory for ``sessions.csv`` and ``truth.json``.
    n_patients, seed, scenario
        As in :func:`~ketastats.simulate.generator.simulate_cohort`.
    params_path : path-like, optional
        YAML file of parameter overrides (:func:`~ketastats.simulate.params.load_params`).

    Returns
    -------
    dict of str to Path
        As :func:`write_cohort`.

    Raises
    ------
    ConfigError
        For an unknown scenario, a bad parameter file or invalid arguments (before
        anything is written).
    """
    overrides = load_params(params_path) if params_path is not None else None
    cohort = simulate_cohort(n_patients, seed=seed, scenario=scenario, overrides=overrides)
    return write_cohort(cohort, out_dir)
