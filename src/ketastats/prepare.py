"""Derived variables, in one place.

:func:`prepare_sessions` turns the validated, typed canonical session table (see
``docs/data_contract.md``) into the analysis table written to
``data/processed/<cohort>/sessions.parquet``. Nothing here reads raw files; nothing
downstream derives variables again.

Derived columns
---------------
``madrs``
    Kept as given; when missing and all ten items are present, the sum of the items.
``madrs_nonsick``
    The MADRS without the sickness-sensitive items 4-8 (reduced sleep, reduced appetite,
    concentration difficulties, lassitude, inability to feel): items 1-3, 9, 10 (0-30).
``progress``
    Infusions received before this session's rating: ``session - 1``.
``progress_log``
    ``log(1 + progress)``: a nonlinear basis for the fast-then-plateau course of response.
``days_since_prev``
    Days since the patient's previous session (0 at the first session).
``<score>_baseline``, ``<score>_change``, ``<score>_response``, ``<score>_remission``
    Per instrument: the session-1 rating, change from it, response (a reduction of at least
    50% from baseline) and remission (at or below the instrument's threshold).
``ill_between``, ``ill_within``
    The person mean of ``ill`` (between-person part) and the person-mean-centred
    ``ill`` (within-person part), after Curran & Bauer (2011).
``ill_lag1``
    ``ill`` at the patient's previous session (0 at the first session: no earlier session).
``ever_ill``
    1 if the patient has any session with ``ill == 1``.

References
----------
Curran, P. J., & Bauer, D. J. (2011). The disaggregation of within-person and
between-person effects in longitudinal models of change. *Annual Review of Psychology*,
62, 583-619.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .contract import INSTRUMENTS, MADRS_ITEMS, MADRS_SICKNESS_ITEMS

__all__ = ["prepare_sessions"]

log = logging.getLogger(__name__)


def _remission_thresholds() -> dict[str, float]:
    """Remission thresholds ("at or below") of every instrument in the data contract."""
    return {
        name: float(ins.remission_max) for name, ins in INSTRUMENTS.items() if ins.remission_max is not None
    }


def prepare_sessions(sessions: pd.DataFrame) -> pd.DataFrame:
    """Add the derived analysis variables to a validated session table.

    Parameters
    ----------
    sessions : pandas.DataFrame
        The typed canonical table, one row per patient and session.

    Returns
    -------
    pandas.DataFrame
        Sorted by ``patient_id`` and ``session``, with the derived columns listed in the
        module docstring. The input is not modified.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"patient_id": ["A", "A"], "session": [1, 2], "day": [0, 3],
    ...                    "madrs": [30.0, 12.0], "ill": [0, 1]})
    >>> prepare_sessions(df)[["madrs_change", "madrs_response", "ill_within"]].to_numpy().tolist()
    [[0.0, 0.0, -0.5], [-18.0, 1.0, 0.5]]
    """
    df = sessions.copy()
    df["patient_id"] = df["patient_id"].astype(str)
    df = df.sort_values(["patient_id", "session"], kind="stable").reset_index(drop=True)
    g = df.groupby("patient_id", sort=False)

    if all(c in df.columns for c in MADRS_ITEMS):
        items = df[list(MADRS_ITEMS)].apply(pd.to_numeric, errors="coerce")
        total = items.sum(axis=1, min_count=10)
        if "madrs" in df.columns:
            df["madrs"] = pd.to_numeric(df["madrs"], errors="coerce").fillna(total)
        else:
            df["madrs"] = total
        keep = [c for c in MADRS_ITEMS if c not in MADRS_SICKNESS_ITEMS]
        df["madrs_nonsick"] = items[keep].sum(axis=1, min_count=len(keep))

    df["progress"] = df["session"].astype(int) - 1
    df["progress_log"] = np.log1p(df["progress"].astype(float))
    df["days_since_prev"] = g["day"].diff().fillna(0).astype(int)

    thresholds = _remission_thresholds()
    scores = [c for c in ["madrs", "madrs_nonsick", *thresholds] if c in df.columns]
    for score in dict.fromkeys(scores):
        values = pd.to_numeric(df[score], errors="coerce").astype(float)
        df[score] = values
        first = df["session"] == g["session"].transform("min")
        base = values.where(first).groupby(df["patient_id"]).transform("max")
        df[f"{score}_baseline"] = base
        df[f"{score}_change"] = values - base
        resp = values <= 0.5 * base
        df[f"{score}_response"] = resp.astype(float).where(values.notna() & base.notna())
        if score in thresholds:
            rem = values <= thresholds[score]
            df[f"{score}_remission"] = rem.astype(float).where(values.notna())

    if "ill" in df.columns:
        ill = pd.to_numeric(df["ill"], errors="coerce").astype(float)
        df["ill"] = ill
        mean = ill.groupby(df["patient_id"]).transform("mean")
        df["ill_between"] = mean
        df["ill_within"] = ill - mean
        df["ill_lag1"] = ill.groupby(df["patient_id"]).shift(1).fillna(0.0)
        df["ever_ill"] = (ill.groupby(df["patient_id"]).transform("max") > 0).astype(int)
    log.info("prepared %d sessions of %d patients", len(df), df["patient_id"].nunique())
    return df
