"""Summary tables of the processed session table: counts, missingness, illness episodes, cytokines."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..exceptions import KetastatsError

__all__ = [
    "cohort_overview",
    "missingness_table",
    "score_by_session",
    "illness_episodes",
    "episode_summary",
    "cytokine_markers",
    "cytokine_summary",
    "cytokine_by_illness",
]

_CYTOKINE_UNITS_FALLBACK = {
    "il6_pg_ml": "pg/mL",
    "tnfa_pg_ml": "pg/mL",
    "il1b_pg_ml": "pg/mL",
    "crp_mg_l": "mg/L",
}


# -------------------------------------------------------------- the sessions
def ill_flags(sessions: pd.DataFrame) -> pd.Series:
    """The sessions' illness flag as numbers (NaN where unknown, or for a cohort without illness data)."""
    if "ill" not in sessions.columns:
        return pd.Series(np.nan, index=sessions.index)
    return pd.to_numeric(sessions["ill"], errors="coerce")


def cohort_overview(sessions: pd.DataFrame) -> pd.DataFrame:
    """Counts that describe a cohort: patients, sessions, illness.

    Returns
    -------
    pandas.DataFrame
        Columns ``quantity`` and ``value``, one row per count.
    """
    per_patient = sessions.groupby("patient_id", sort=True).size()
    ill = ill_flags(sessions)
    episodes = illness_episodes(sessions)
    ever = ill.groupby(sessions["patient_id"]).max()
    rows = [
        ("patients", int(sessions["patient_id"].nunique())),
        ("sessions", len(sessions)),
        ("sessions per patient, median", float(per_patient.median()) if len(per_patient) else math.nan),
        ("sessions per patient, min", int(per_patient.min()) if len(per_patient) else 0),
        ("sessions per patient, max", int(per_patient.max()) if len(per_patient) else 0),
        ("sessions with illness", int((ill == 1).sum())),
        ("sessions with illness unknown", int(ill.isna().sum())),
        ("patients ever ill", int((ever == 1).sum())),
        ("illness episodes", len(episodes)),
    ]
    return pd.DataFrame(rows, columns=["quantity", "value"], dtype=object)


def missingness_table(sessions: pd.DataFrame, *, only_missing: bool = True) -> pd.DataFrame:
    """Missing values per column, most missing first.

    Cytokine values below the detection limit are *censored*, not missing: for a marker
    with a ``<marker>_censored`` column, only values that are neither measured nor censored
    count as missing.

    Returns
    -------
    pandas.DataFrame
        Columns ``column``, ``n_missing``, ``pct_missing`` (0-100).
    """
    n = len(sessions)
    rows = []
    for col in sessions.columns:
        miss = sessions[col].isna()
        flag = f"{col}_censored"
        if flag in sessions.columns:
            miss = miss & ~sessions[flag].fillna(False).astype(bool)
        rows.append((col, int(miss.sum())))
    out = pd.DataFrame(rows, columns=["column", "n_missing"])
    out["pct_missing"] = 100.0 * out["n_missing"] / n if n else math.nan
    if only_missing:
        out = out[out["n_missing"] > 0]
    return out.sort_values(["n_missing", "column"], ascending=[False, True], kind="stable").reset_index(
        drop=True
    )


def score_by_session(sessions: pd.DataFrame, score: str = "madrs") -> pd.DataFrame:
    """Mean, SD and count of ``score`` per session number, by illness at that session.

    Returns
    -------
    pandas.DataFrame
        Index ``session``; columns ``n``, ``mean``, ``sd`` for all sessions and
        ``mean_well``, ``mean_ill``, ``n_ill`` by the session's illness status.
    """
    if score not in sessions.columns:
        raise KetastatsError(f"score {score!r} is not a column of the session table")
    df = sessions[["session", score]].assign(ill=ill_flags(sessions)).dropna(subset=[score])
    g = df.groupby("session")[score]
    out = pd.DataFrame({"n": g.size(), "mean": g.mean(), "sd": g.std()})
    out["mean_well"] = df[df["ill"] == 0].groupby("session")[score].mean()
    out["mean_ill"] = df[df["ill"] == 1].groupby("session")[score].mean()
    out["n_ill"] = df[df["ill"] == 1].groupby("session").size().reindex(out.index, fill_value=0)
    return out


def illness_episodes(sessions: pd.DataFrame) -> pd.DataFrame:
    """Illness episodes: runs of consecutive sessions rated ill, per patient.

    Returns
    -------
    pandas.DataFrame
        One row per episode: ``patient_id``, ``episode`` (1, 2, ... within patient),
        ``first_session``, ``last_session``, ``n_sessions``, ``illness_type`` (most frequent
        within the episode) and ``max_severity``.

    Examples
    --------
    >>> df = pd.DataFrame({"patient_id": ["A"] * 5, "session": [1, 2, 3, 4, 5],
    ...                    "ill": [0, 1, 1, 0, 1]})
    >>> illness_episodes(df)[["episode", "first_session", "n_sessions"]].to_numpy().tolist()
    [[1, 2, 2], [2, 5, 1]]
    """
    cols = [
        "patient_id",
        "episode",
        "first_session",
        "last_session",
        "n_sessions",
        "illness_type",
        "max_severity",
    ]
    if "ill" not in sessions.columns or sessions.empty:
        return pd.DataFrame(columns=cols)
    df = sessions.assign(ill_flags=ill_flags(sessions).fillna(0) == 1).sort_values(
        ["patient_id", "session"], kind="stable"
    )
    new_patient = df["patient_id"] != df["patient_id"].shift()
    starts = df["ill_flags"] & (new_patient | ~df["ill_flags"].shift(fill_value=False))
    df["_episode"] = starts.groupby(df["patient_id"]).cumsum()
    ill = df[df["ill_flags"]]
    if ill.empty:
        return pd.DataFrame(columns=cols)
    severities = ["mild", "moderate", "severe"]
    rows = []
    for (pid, ep), g in ill.groupby(["patient_id", "_episode"], sort=True):
        types = g["illness_type"].dropna().astype(str) if "illness_type" in g else pd.Series(dtype=str)
        sev = g["illness_severity"].dropna().astype(str) if "illness_severity" in g else pd.Series(dtype=str)
        ranked = [s for s in severities if s in set(sev)]
        rows.append(
            (
                pid,
                int(ep),
                int(g["session"].min()),
                int(g["session"].max()),
                len(g),
                types.mode().iloc[0] if len(types) else None,
                ranked[-1] if ranked else None,
            )
        )
    return pd.DataFrame(rows, columns=cols)


def episode_summary(episodes: pd.DataFrame) -> pd.DataFrame:
    """Episodes counted by illness type and worst severity.

    Returns
    -------
    pandas.DataFrame
        Index ``illness_type`` (``"unknown"`` when not recorded); one column per severity
        plus ``total``.
    """
    if episodes.empty:
        return pd.DataFrame(columns=["total"])
    e = episodes.assign(
        illness_type=episodes["illness_type"].fillna("unknown"),
        max_severity=episodes["max_severity"].fillna("unknown"),
    )
    out = pd.crosstab(e["illness_type"], e["max_severity"])
    order = [s for s in ("mild", "moderate", "severe", "unknown") if s in out.columns]
    out = out[order]
    out["total"] = out.sum(axis=1)
    out.columns.name = None
    return out.sort_values("total", ascending=False, kind="stable")


# --------------------------------------------------------------- cytokines
def cytokine_markers(sessions: pd.DataFrame) -> dict[str, str]:
    """Cytokine marker columns present in ``sessions`` -> unit."""
    try:
        from ..contract import CYTOKINES as units
    except ImportError:  # pragma: no cover - the contract ships with the package
        units = _CYTOKINE_UNITS_FALLBACK
    return {m: u for m, u in units.items() if m in sessions.columns}


def _censored(sessions: pd.DataFrame, marker: str) -> pd.Series:
    flag = f"{marker}_censored"
    if flag in sessions.columns:
        return sessions[flag].fillna(False).astype(bool)
    return pd.Series(False, index=sessions.index)


def cytokine_summary(sessions: pd.DataFrame) -> pd.DataFrame:
    """Per marker: how often measured, how often below the detection limit, and the spread.

    Quantiles are of the detected values only; censored values are counted, never
    substituted.

    Returns
    -------
    pandas.DataFrame
        One row per marker: ``marker``, ``unit``, ``n_measured``, ``n_detected``,
        ``n_censored``, ``pct_censored`` (of measured), ``median``, ``q1``, ``q3``,
        ``patients_measured``.
    """
    rows = []
    for marker, unit in cytokine_markers(sessions).items():
        value = pd.to_numeric(sessions[marker], errors="coerce")
        cens = _censored(sessions, marker)
        detected = value.notna()
        measured = detected | cens
        d = value[detected]
        rows.append(
            {
                "marker": marker,
                "unit": unit,
                "n_measured": int(measured.sum()),
                "n_detected": int(detected.sum()),
                "n_censored": int(cens.sum()),
                "pct_censored": 100.0 * cens.sum() / measured.sum() if measured.any() else np.nan,
                "median": d.median() if len(d) else np.nan,
                "q1": d.quantile(0.25) if len(d) else np.nan,
                "q3": d.quantile(0.75) if len(d) else np.nan,
                "patients_measured": int(sessions.loc[measured, "patient_id"].nunique()),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "marker",
            "unit",
            "n_measured",
            "n_detected",
            "n_censored",
            "pct_censored",
            "median",
            "q1",
            "q3",
            "patients_measured",
        ],
    )


def cytokine_by_illness(sessions: pd.DataFrame) -> pd.DataFrame:
    """Detected cytokine values by illness at the session: count, median, censored share.

    Returns
    -------
    pandas.DataFrame
        One row per marker and illness status (``well``/``ill``): ``marker``, ``status``,
        ``n_measured``, ``pct_censored``, ``median``, ``q1``, ``q3``.
    """
    ill = ill_flags(sessions)
    rows = []
    for marker in cytokine_markers(sessions):
        value = pd.to_numeric(sessions[marker], errors="coerce")
        cens = _censored(sessions, marker)
        for status, mask in (("well", ill == 0), ("ill", ill == 1)):
            measured = mask & (value.notna() | cens)
            d = value[mask & value.notna()]
            rows.append(
                {
                    "marker": marker,
                    "status": status,
                    "n_measured": int(measured.sum()),
                    "pct_censored": 100.0 * (cens & mask).sum() / measured.sum()
                    if measured.any()
                    else np.nan,
                    "median": d.median() if len(d) else np.nan,
                    "q1": d.quantile(0.25) if len(d) else np.nan,
                    "q3": d.quantile(0.75) if len(d) else np.nan,
                }
            )
    return pd.DataFrame(
        rows, columns=["marker", "status", "n_measured", "pct_censored", "median", "q1", "q3"]
    )
