"""Estimands (ICH E9(R1)): how each intercurrent event changes the data a model uses.

Four intercurrent events are handled, each with one of the five strategies of ICH E9(R1)
(treatment policy, hypothetical, composite, while on treatment, principal stratum). What
each choice does to the data:

================== ===================== ====================================================
event              strategy              data used
================== ===================== ====================================================
postponement       treatment_policy      every rating, as observed (the models adjust for
                                         the gap in days, ``days_since_prev``)
                   hypothetical          ratings at postponed sessions removed ("had the
                                         session not been postponed"; MAR under the model)
                   while_on_treatment    each patient's sessions before the first postponed
                                         one
                   composite             binary outcomes: a postponed session counts as
                                         failure; not defined for scores (model skipped)
dose_change        treatment_policy      every rating
                   hypothetical          ratings from the first dose change on removed
                                         (MAR under the model)
                   while_on_treatment    ratings before the first dose change
                   composite             binary outcomes: failure from the first change on
discontinuation    treatment_policy      every observed rating (likelihood-based, MAR)
                   hypothetical          same data; interpreted under MAR
                   while_on_treatment    same data: ratings stop at discontinuation
                   composite             end-of-course binary outcomes: a patient who
                                         discontinued counts as failure
illness_medication treatment_policy      every cytokine draw
(cytokine outcomes hypothetical          draws at sessions exposed to an antipyretic, NSAID,
and mediators)                           steroid or antibiotic removed
                   while_on_treatment    draws before the patient's first exposure
================== ===================== ====================================================

``principal_stratum`` needs a model of the latent stratum (patients who would never be
postponed, ...), which these data cannot identify without further assumptions: a model
whose estimand uses it is skipped with that reason. ``composite`` for a score, and for
illness medication, is likewise undefined and skips the model.

A patient *discontinued* when the last rated session is before the planned number of
sessions, taken as the most common last session in the cohort.

References
----------
ICH E9(R1) addendum on estimands and sensitivity analysis in clinical trials (2019).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .common import as_float
from .markers import censored
from .retries import SkipModel

__all__ = ["apply_estimands", "ILLNESS_MEDICATION_COLUMNS", "discontinued_patients"]

log = logging.getLogger(__name__)

#: concomitant medication columns that count as "illness medication"
ILLNESS_MEDICATION_COLUMNS = ("antipyretic", "nsaid", "steroid", "antibiotic")

_DESCRIPTION = {
    ("postponement", "treatment_policy"): "every rating as observed; the gap since the previous infusion "
    "is a covariate",
    ("postponement", "hypothetical"): "ratings at postponed sessions removed (as if not postponed; MAR)",
    ("postponement", "while_on_treatment"): "sessions before each patient's first postponement",
    ("postponement", "composite"): "a postponed session counts as failure (binary outcomes)",
    ("dose_change", "treatment_policy"): "every rating, whatever the dose",
    ("dose_change", "hypothetical"): "ratings from the first dose change on removed (as if the dose had "
    "not changed; MAR)",
    ("dose_change", "while_on_treatment"): "ratings before each patient's first dose change",
    ("dose_change", "composite"): "failure from the first dose change on (binary outcomes)",
    ("discontinuation", "treatment_policy"): "every observed rating (likelihood-based, valid under MAR)",
    ("discontinuation", "hypothetical"): "every observed rating, missing ratings treated as MAR",
    ("discontinuation", "while_on_treatment"): "ratings up to discontinuation (all observed ratings)",
    ("discontinuation", "composite"): "discontinuation counts as failure at the end of the course",
    ("illness_medication", "treatment_policy"): "every cytokine draw, whatever the medication",
    (
        "illness_medication",
        "hypothetical",
    ): "cytokine draws at sessions exposed to illness medication removed",
    ("illness_medication", "while_on_treatment"): "cytokine draws before each patient's first illness "
    "medication",
}


def discontinued_patients(data: pd.DataFrame, group: str = "patient_id") -> pd.Series:
    """Per patient, True when the last session is before the planned number (the cohort's mode)."""
    last = data.groupby(group)["session"].max()
    planned = int(last.mode().max()) if len(last) else 0
    return last < planned


def _flag(data: pd.DataFrame, col: str) -> pd.Series:
    return as_float(data[col]).fillna(0.0) > 0


def _from_first(data: pd.DataFrame, flag: pd.Series, group: str) -> pd.Series:
    """True at and after each patient's first flagged session."""
    return flag.astype(int).groupby(data[group]).cummax().astype(bool)


def apply_estimands(
    data: pd.DataFrame,
    estimands: Mapping[str, str],
    *,
    outcome: str | None,
    outcome_type: str,
    cytokine_columns: Sequence[str] = (),
    level: str = "session",
    group: str = "patient_id",
) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """Apply the estimand strategies to a model's data.

    Parameters
    ----------
    data : pandas.DataFrame
        The prepared session table, sorted by patient and session.
    estimands : mapping
        Strategy per intercurrent event (see :data:`ketastats.models.specs.DEFAULT_ESTIMANDS`).
    outcome : str or None
        The model's outcome column (binary outcomes may be set to failure by ``composite``).
    outcome_type : {"continuous", "binary", "cytokine"}
        What the outcome is; decides which strategies apply.
    cytokine_columns : sequence of str
        Cytokine columns the model uses (outcome or mediator): illness medication acts on these.
    level : {"session", "end"}
        ``"end"``: an end-of-course outcome (composite discontinuation applies).

    Returns
    -------
    data, record
        The data to analyse and, per event, ``{"strategy", "description", "rows_removed",
        "rows_changed"}`` for the model's JSON.

    Raises
    ------
    SkipModel
        When a strategy is not defined for this kind of outcome, or not identifiable.
    """
    df = data.copy()
    record: dict[str, dict[str, Any]] = {}
    order = ["postponement", "dose_change", "discontinuation", "illness_medication"]
    for event in order:
        strategy = estimands.get(event, "treatment_policy")
        entry: dict[str, Any] = {
            "strategy": strategy,
            "description": _DESCRIPTION.get((event, strategy), ""),
            "rows_removed": 0,
            "rows_changed": 0,
        }
        record[event] = entry
        if strategy == "principal_stratum":
            raise SkipModel(
                f"estimand for {event}: the principal-stratum strategy needs a model of the latent "
                "stratum, which these data cannot identify; choose another strategy in estimands"
            )
        if event == "illness_medication":
            if not cytokine_columns:
                entry["description"] = "not applicable (the model uses no cytokine)"
                continue
            if strategy == "composite":
                raise SkipModel(
                    "estimand for illness_medication: composite is not defined for cytokine values; "
                    "choose treatment_policy, hypothetical or while_on_treatment"
                )
            cols = [c for c in ILLNESS_MEDICATION_COLUMNS if c in df.columns]
            if strategy == "treatment_policy":
                continue
            if not cols:
                entry["description"] += " (no medication columns in the data: nothing removed)"
                continue
            exposed = np.zeros(len(df), dtype=bool)
            for c in cols:
                exposed |= _flag(df, c).to_numpy()
            exposed_s = pd.Series(exposed, index=df.index)
            drop = exposed_s if strategy == "hypothetical" else _from_first(df, exposed_s, group)
            n = 0
            for m in cytokine_columns:
                if m not in df.columns:
                    continue
                hit = drop & (df[m].notna() | censored(df, m))
                n += int(hit.sum())
                df.loc[drop, m] = np.nan
                if f"{m}_censored" in df.columns:
                    df.loc[drop, f"{m}_censored"] = False
            entry["rows_changed"] = n
            continue
        if outcome_type == "cytokine" or strategy == "treatment_policy":
            if outcome_type == "cytokine" and strategy != "treatment_policy":
                entry["description"] = "not applicable to cytokine outcomes (every draw used)"
            continue
        col = {"postponement": "postponed", "dose_change": "dose_changed"}.get(event)
        if event == "discontinuation":
            if strategy != "composite":
                continue
            if outcome_type != "binary" or level != "end":
                raise SkipModel(
                    "estimand for discontinuation: composite is defined for end-of-course binary "
                    "outcomes only; choose treatment_policy, hypothetical or while_on_treatment"
                )
            disc = discontinued_patients(df, group)
            hit = df[group].map(disc).fillna(False).astype(bool)
            entry["rows_changed"] = int(hit.sum())
            df.loc[hit, outcome] = 0.0
            continue
        if col not in df.columns:
            entry["description"] += f" (column {col!r} not in the data: nothing changed)"
            continue
        flag = _flag(df, col)
        if event == "dose_change" or strategy == "while_on_treatment":
            affected = _from_first(df, flag, group)
        else:
            affected = flag
        if strategy == "composite":
            if outcome_type != "binary":
                raise SkipModel(
                    f"estimand for {event}: composite is defined for binary outcomes only; "
                    "choose treatment_policy, hypothetical or while_on_treatment for a score"
                )
            entry["rows_changed"] = int(affected.sum())
            df.loc[affected, outcome] = 0.0
        else:
            entry["rows_removed"] = int(affected.sum())
            df = df.loc[~affected]
    return df, record
