"""Eligible decision points: the "trials" of a sequential target-trial emulation.

A *decision point* is a scheduled infusion (session 2 on; session 1 has no rating before the
decision) at which the patient is acutely ill on the day the decision is made:

- an infusion given on its planned day (``postponed`` = 0) with ``ill`` = 1: the session's own
  illness columns describe the patient at the decision;
- a postponed infusion (``postponed`` = 1) with ``planned_ill`` = 1: the ``planned_*`` columns
  describe the illness on the planned day, the day of the decision (the session's own illness
  columns describe the later day on which it was given, after the decision).

For each point the table holds the decisions, the confounders measured before the decision and
the outcomes after it.

Decisions (0/1)
---------------
``postpone``
    the infusion was postponed (1) or given on its planned day (0); every eligible point.
``reduced_dose``
    among points at which the infusion was given on its planned day: a dose below the patient's
    usual dose (1) or not (0). The usual dose is that of the latest earlier infusion given while
    the patient was not ill (the largest earlier dose if every earlier one was given ill), so a
    reduction for an illness is not taken for the usual dose at the next ill infusion.

Confounders (:data:`CONFOUNDERS`)
---------------------------------
``severity`` (mild/moderate/severe), ``illness_type``, ``febrile`` (influenza-like or other
febrile illness), ``days_since_onset`` (to the decision day), ``previous_score`` (the rating at
the previous session, before the decision for both decisions), ``baseline_score``, ``progress``
(infusions received), ``days_since_previous`` (from the previous session to the *planned* day),
``illness_medication`` (antipyretic, NSAID, steroid or antibiotic at the decision),
``baseline_log_il6``, ``baseline_log_crp`` (log of the session-1 value; used only when present
for at least 90% of points).

Outcomes (:data:`OUTCOMES`)
---------------------------
``next``: the score at the next rating after the infusion is given (session + 1; the rating
of a session is taken before its infusion); ``end``: the score at the end of the course (the
planned last session, the cohort's most common last session); ``response_next``,
``response_end``: response (at least 50% below baseline) at those ratings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["CONFOUNDERS", "DECISIONS", "FEBRILE_TYPES", "OUTCOMES", "decision_points", "missing_columns"]

#: the two decisions compared, each a binary contrast
DECISIONS = ("postpone", "reduced_dose")
#: outcome name -> (column of the points table, binary?)
OUTCOMES = {
    "next": ("y_next", False),
    "end": ("y_end", False),
    "response_next": ("response_next", True),
    "response_end": ("response_end", True),
}
#: confounders measured before the decision, by default all of them
CONFOUNDERS = (
    "severity",
    "illness_type",
    "febrile",
    "days_since_onset",
    "previous_score",
    "baseline_score",
    "progress",
    "days_since_previous",
    "illness_medication",
    "baseline_log_il6",
    "baseline_log_crp",
)
#: categorical confounders (dummy-coded; the first level is the reference)
CATEGORICAL = {"severity": ("mild", "moderate", "severe"),
               "illness_type": ("respiratory", "influenza_like", "gastrointestinal", "other_febrile", "other")}
FEBRILE_TYPES = ("influenza_like", "other_febrile")
_ILLNESS_MEDICATION = ("antipyretic", "nsaid", "steroid", "antibiotic")
#: what each confounder is made from at an infusion given on its planned day / a postponed one
_SOURCES = {
    "severity": ("illness_severity", "planned_illness_severity"),
    "illness_type": ("illness_type", "planned_illness_type"),
    "febrile": ("illness_type", "planned_illness_type"),
    "days_since_onset": ("days_since_onset", "planned_days_since_onset"),
    "illness_medication": (None, "planned_illness_medication"),
}
#: what to record, per missing column, for the report
RECORD = {
    "postponed": "whether each infusion was postponed from its planned day (postponed, 0/1)",
    "delay_days": "the days of postponement (delay_days)",
    "planned_ill": "whether the patient was ill on the planned day of a postponed infusion (planned_ill)",
    "planned_illness_severity": "the severity of that illness (planned_illness_severity)",
    "dose_mg_kg": "the dose of each infusion in mg/kg (dose_mg_kg)",
    "ill": "whether the patient was acutely ill at each session (ill, 0/1)",
    "illness_severity": "the severity of the illness (illness_severity)",
}
_MIN_SHARE_CYTOKINE = 0.9


def _num(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce").astype(float)


def _text(s: pd.Series) -> pd.Series:
    return s.astype("object").where(s.notna(), None)


def _usual_dose(df: pd.DataFrame, pid: pd.Series, ill: pd.Series) -> np.ndarray:
    """Per row, the patient's usual dose: that of the latest earlier infusion given while not ill
    (the largest earlier dose when every earlier one was given ill)."""
    if "dose_mg_kg" not in df.columns:
        return np.full(len(df), np.nan)
    dose = _num(df["dose_mg_kg"])
    well = dose.where(ill.fillna(0.0) != 1)
    previous_well = well.groupby(pid).shift(1).groupby(pid).ffill()
    earlier_max = dose.groupby(pid).shift(1).groupby(pid).cummax()
    return previous_well.fillna(earlier_max).to_numpy()


def missing_columns(data: pd.DataFrame, decision: str) -> list[str]:
    """Columns a decision needs that the cohort does not have (or has only empty)."""

    def absent(c: str) -> bool:
        return c not in data.columns or data[c].isna().all()

    need = ["ill", "illness_severity"]
    if decision == "postpone":
        need += ["postponed", "delay_days", "planned_ill", "planned_illness_severity"]
        # a cohort that never postponed needs no planned_* columns to say so
        if "postponed" in data.columns and not absent("postponed") and (_num(data["postponed"]) != 1).all():
            need = [c for c in need if not c.startswith("planned_")]
    else:
        need += ["dose_mg_kg"]
    return [c for c in need if absent(c)]


def decision_points(
    data: pd.DataFrame,
    *,
    score: str = "madrs",
    planned_last: int | None = None,
    group: str = "patient_id",
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The eligible decision points of a prepared session table (module docstring).

    Parameters
    ----------
    data : pandas.DataFrame
        The prepared session table (:func:`ketastats.prepare.prepare_sessions`).
    score : str
        The score column (``madrs``); ``<score>_baseline`` and ``<score>_response`` are used.
    planned_last : int, optional
        The last session of a planned course (the end-of-course rating); default the most
        common last session.
    group : str
        The patient column.

    Returns
    -------
    (pandas.DataFrame, dict)
        One row per eligible point (columns: ``patient_id``, ``session``, ``postpone``,
        ``reduced_dose``, the confounders, ``y_next``, ``y_end``, ``response_next``,
        ``response_end``) and notes: ``planned_last``, ``n_infusions_ill`` and which
        confounders could not be formed (``unavailable``).
    """
    df = data.sort_values([group, "session"], kind="stable").reset_index(drop=True)
    pid = df[group].astype(str)
    session = df["session"].astype(int)
    last = session.groupby(pid).max()
    if planned_last is None:
        planned_last = int(last.mode().max()) if len(last) else 0
    notes: dict[str, Any] = {"planned_last": int(planned_last), "unavailable": []}

    def col(name: str) -> pd.Series | None:
        return df[name] if name in df.columns else None

    postponed = _num(df["postponed"]).fillna(0.0) if "postponed" in df.columns else pd.Series(0.0, index=df.index)
    post = postponed == 1
    ill = _num(df["ill"]) if "ill" in df.columns else pd.Series(np.nan, index=df.index)
    planned_ill = _num(df["planned_ill"]) if "planned_ill" in df.columns else pd.Series(np.nan, index=df.index)
    ill_at_decision = np.where(post, planned_ill, ill)
    if "dose_mg_kg" in df.columns and df["dose_mg_kg"].notna().any():
        infusion = df["dose_mg_kg"].notna()
    else:
        infusion = session < planned_last
    eligible = (ill_at_decision == 1) & infusion.to_numpy() & (session >= 2).to_numpy()

    # neighbours by session number within a patient
    key = pd.MultiIndex.from_arrays([pid, session])
    scores = pd.Series(_num(df[score]).to_numpy(), index=key) if score in df.columns else None
    resp_col = f"{score}_response"
    responses = pd.Series(_num(df[resp_col]).to_numpy(), index=key) if resp_col in df.columns else None

    def at(series: pd.Series | None, sessions: pd.Series) -> np.ndarray:
        if series is None:
            return np.full(len(sessions), np.nan)
        idx = pd.MultiIndex.from_arrays([pid[eligible].to_numpy(), sessions.to_numpy()])
        return series.reindex(idx).to_numpy(dtype=float)

    rows = df.loc[eligible]
    s = session[eligible]
    out = pd.DataFrame({"patient_id": pid[eligible].to_numpy(), "session": s.to_numpy()})
    p = post[eligible].to_numpy()
    out["postpone"] = p.astype(float)
    dose = _num(rows["dose_mg_kg"]).to_numpy() if "dose_mg_kg" in rows.columns else np.full(len(rows), np.nan)
    usual = _usual_dose(df, pid, ill)[eligible]
    reduced = np.where(np.isfinite(dose) & np.isfinite(usual), (dose < usual - 1e-9).astype(float), np.nan)
    out["dose"] = dose
    out["usual_dose"] = usual
    out["reduced_dose"] = np.where(p, np.nan, reduced)

    def pick(now: str | None, planned: str | None, as_text: bool) -> np.ndarray:
        conv = _text if as_text else _num
        a = conv(rows[now]).to_numpy() if now and now in rows.columns else np.full(len(rows), None if as_text else np.nan)
        b = conv(rows[planned]).to_numpy() if planned and planned in rows.columns else np.full(
            len(rows), None if as_text else np.nan)
        return np.where(p, b, a)

    out["severity"] = pick(*_SOURCES["severity"], as_text=True)
    out["illness_type"] = pick(*_SOURCES["illness_type"], as_text=True)
    typ = out["illness_type"]
    out["febrile"] = np.where(typ.isna(), np.nan, typ.isin(FEBRILE_TYPES).astype(float))
    out["days_since_onset"] = pick(*_SOURCES["days_since_onset"], as_text=False)
    meds = [c for c in _ILLNESS_MEDICATION if c in rows.columns]
    now_med = (
        rows[meds].apply(_num).fillna(0.0).max(axis=1).to_numpy() if meds else np.full(len(rows), np.nan)
    )
    planned_med = (
        _num(rows["planned_illness_medication"]).to_numpy()
        if "planned_illness_medication" in rows.columns
        else np.full(len(rows), np.nan)
    )
    out["illness_medication"] = np.where(p, planned_med, now_med)
    out["previous_score"] = at(scores, s - 1)
    base_col = f"{score}_baseline"
    out["baseline_score"] = _num(rows[base_col]).to_numpy() if base_col in rows.columns else np.nan
    out["progress"] = (s - 1).to_numpy().astype(float)
    gap = _num(rows["days_since_prev"]) if "days_since_prev" in rows.columns else pd.Series(np.nan, index=rows.index)
    delay = _num(rows["delay_days"]).fillna(0.0) if "delay_days" in rows.columns else 0.0
    out["days_since_previous"] = (gap - np.where(p, delay, 0.0)).to_numpy()
    for marker, name in (("il6_pg_ml", "baseline_log_il6"), ("crp_mg_l", "baseline_log_crp")):
        out[name] = np.nan
        if marker in df.columns:
            first = df.loc[session == 1, [marker]].assign(pid=pid[session == 1])
            first = first.set_index("pid")[marker].pipe(_num)
            vals = first.reindex(out["patient_id"]).to_numpy()
            with np.errstate(divide="ignore", invalid="ignore"):
                out[name] = np.where(vals > 0, np.log(vals), np.nan)
    out["y_next"] = at(scores, s + 1)
    out["response_next"] = at(responses, s + 1)
    end = pd.Series(planned_last, index=s.index)
    out["y_end"] = at(scores, end)
    out["response_end"] = at(responses, end)
    postponed_points = out["postpone"] == 1
    for name in CONFOUNDERS:
        values = out[name]
        share = float(values.notna().mean()) if len(values) else 0.0
        limit = _MIN_SHARE_CYTOKINE if name.startswith("baseline_log_") else 0.5
        # a confounder recorded for given infusions only (no planned_* column for it) would drop
        # every postponed point from the analysis: it is left out instead
        one_arm = bool(postponed_points.any()) and bool(values[postponed_points].isna().all())
        if share < limit or one_arm:
            notes["unavailable"].append(name)
    notes["n_points"] = int(len(out))
    return out, notes


def complete_rows(points: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """True where every named column is observed."""
    return points[list(columns)].notna().all(axis=1)
