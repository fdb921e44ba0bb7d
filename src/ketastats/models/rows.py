"""The rows a model analyses: estimand strategies, session selection, complete cases, centring.

Every kind selects its rows here (:func:`model_rows`; :func:`binary_rows` for response and
remission), so that a model's fitted values, residuals and predictions can be reproduced from
the rows it analysed (their keys and centred columns travel with the model's result).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import ModelError
from .common import as_float, require_columns, require_illness, term_columns
from .counted import escape
from .estimands import apply_estimands
from .retries import SkipModel

__all__ = [
    "model_rows",
    "binary_rows",
    "select_sessions",
    "exclude_recent_onset",
    "completers_only",
    "centre_within",
]

log = logging.getLogger(__name__)


def select_sessions(data: pd.DataFrame, which: str, group: str = "patient_id") -> pd.DataFrame:
    """``"post_baseline"``: sessions after the first (the baseline rating is a covariate)."""
    if which == "all":
        return data
    if which == "post_baseline":
        first = data.groupby(group)["session"].transform("min")
        return data.loc[data["session"] > first]
    raise SkipModel(f"unknown session selection {which!r} (use all or post_baseline)")


def exclude_recent_onset(
    data: pd.DataFrame, days: int, what: str = "model"
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Leave out ill sessions held within ``days`` days of the illness onset.

    A sensitivity analysis of the illness effect: the acute phase (fever, malaise,
    poor sleep) inflates sickness-sensitive ratings; without it, is there still an effect?
    An ill session whose onset is unknown (``days_since_onset`` missing) is left out too,
    because it cannot be shown to be past the acute phase.

    Returns
    -------
    data, record
        The remaining rows and ``{"days", "sessions_removed", "onset_unknown_removed",
        "ill_sessions_kept"}``.

    Examples
    --------
    >>> df = pd.DataFrame({"patient_id": ["a"] * 3, "ill": [0, 1, 1],
    ...                    "days_since_onset": [None, 2, 6]})
    >>> kept, rec = exclude_recent_onset(df, 3)
    >>> kept.index.tolist(), rec["sessions_removed"]
    ([0, 2], 1)
    """
    if "ill" not in data.columns:
        raise SkipModel(f"{what}: excluding sessions near an illness onset needs the illness flag 'ill'")
    if "days_since_onset" not in data.columns:
        raise SkipModel(
            f"{what}: excluding sessions within {days} days of an illness onset needs the column "
            "'days_since_onset' (days from onset to the session, on ill sessions), which the data do not have"
        )
    ill = as_float(data["ill"]) > 0
    onset = as_float(data["days_since_onset"])
    recent = ill & (onset <= days)
    unknown = ill & onset.isna()
    drop = recent | unknown
    record = {
        "days": int(days),
        "sessions_removed": int(recent.sum()),
        "onset_unknown_removed": int(unknown.sum()),
        "ill_sessions_kept": int((ill & ~drop).sum()),
        "rule": f"ill sessions with days_since_onset <= {days} (or unknown) left out",
    }
    return data.loc[~drop], record


def completers_only(
    data: pd.DataFrame,
    columns: Sequence[str],
    group: str = "patient_id",
    what: str = "model",
    *,
    last_session: int | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Complete-case analysis: only patients with every planned session and every variable.

    The planned sessions are the session numbers present among the rows (after the model's
    session selection) up to ``last_session``, by default the most common last session of
    the patients (the usual course length); a patient is a completer when each of them is
    present with all ``columns`` observed (later, extra sessions are kept, not required). Complete-case analysis is valid only when missingness
    is completely at random (it is biased under MAR dropout); it is a sensitivity analysis,
    never the primary one (docs/statistics.md, "Missing data"; Little & Rubin 2019).

    Returns
    -------
    data, record
        The completers' rows and ``{"planned_sessions", "patients_kept",
        "patients_removed", "sessions_removed"}``.

    Examples
    --------
    >>> df = pd.DataFrame({"patient_id": ["a", "a", "b", "b"], "session": [2, 3, 2, 3],
    ...                    "madrs": [20.0, 15.0, 25.0, None]})
    >>> kept, rec = completers_only(df, ["madrs"])
    >>> kept["patient_id"].unique().tolist(), rec["patients_removed"]
    (['a'], 1)
    """
    if last_session is None:  # the usual course length: the most common last session
        last = data.groupby(group)["session"].max()
        last_session = int(last.mode().max()) if len(last) else 0
    planned = sorted(s for s in pd.unique(data["session"]) if s <= last_session)
    complete = data[list(columns)].notna().all(axis=1) & data["session"].isin(planned)
    patients = pd.Index(pd.unique(data[group]))
    sessions_per = data.loc[complete].groupby(group)["session"].nunique()
    ok = sessions_per.reindex(patients).fillna(0) >= len(planned)
    keep_ids = set(ok.index[ok])
    keep = data[group].isin(keep_ids)
    record = {
        "planned_sessions": [int(s) for s in planned],
        "patients_kept": int(len(keep_ids)),
        "patients_removed": int(data[group].nunique() - len(keep_ids)),
        "sessions_removed": int((~keep).sum()),
        "rule": "patients with every planned session rated and every model variable observed",
    }
    if not keep_ids:
        raise SkipModel(f"{what}: no patient has every planned session with every variable (complete case)")
    return data.loc[keep], record


def centre_within(data: pd.DataFrame, columns: Iterable[str], group: str = "patient_id") -> pd.DataFrame:
    """Add ``<col>_within`` (person-mean centred) and ``<col>_between`` (person mean) per column.

    Examples
    --------
    >>> df = pd.DataFrame({"patient_id": ["a", "a", "b"], "ill": [1.0, 0.0, 0.0]})
    >>> centre_within(df, ["ill"])[["ill_within", "ill_between"]].to_numpy().tolist()
    [[0.5, 0.5], [-0.5, 0.5], [0.0, 0.0]]
    """
    df = data.copy()
    for col in columns:
        if col not in df.columns:
            continue
        x = as_float(df[col])
        mean = x.groupby(df[group]).transform("mean")
        df[f"{col}_between"] = mean
        df[f"{col}_within"] = x - mean
    return df


def model_rows(
    data: pd.DataFrame,
    spec: Mapping[str, Any],
    estimands: Mapping[str, str],
    *,
    outcome: str,
    terms: Sequence[str],
    outcome_type: str = "continuous",
    cytokines: Sequence[str] = (),
    what: str = "model",
    level: str = "session",
    derive: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Rows a model analyses: estimands, session selection, complete cases, then centring.

    ``derive`` adds columns after the estimands are applied (e.g. log cytokine values, so
    that draws removed by the illness-medication strategy stay removed).
    """
    df, record = apply_estimands(
        data,
        estimands,
        outcome=outcome,
        outcome_type=outcome_type,
        cytokine_columns=cytokines,
        level=level,
        group=spec["group"],
    )
    if derive is not None:
        df = derive(df)
    filters: dict[str, Any] = {}
    days = spec.get("exclude_onset_within_days")
    if days is not None:
        df, filters["exclude_onset_within_days"] = exclude_recent_onset(df, int(days), what)
    df = select_sessions(df, spec["sessions"], spec["group"])
    centre = list(spec.get("centre") or [])
    if "progress_log" not in df.columns and "progress" in df.columns:
        df = df.assign(progress_log=np.log1p(as_float(df["progress"])))
    cols = [outcome, *term_columns(terms, centre), spec["group"]]
    cols = list(dict.fromkeys(cols))
    require_columns(df, cols, what)
    if spec.get("complete_case"):
        df, filters["complete_case"] = completers_only(
            df, cols, spec["group"], what, last_session=spec.get("planned_sessions")
        )
    df = df.dropna(subset=cols)
    if df.empty:
        raise SkipModel(f"{what}: no session has every variable it needs ({', '.join(cols)})")
    df = centre_within(df, centre, spec["group"])
    df.attrs["row_filters"] = filters
    n_pat = df[spec["group"]].nunique()
    if n_pat < int(spec.get("min_patients", 2)):
        raise SkipModel(
            escape(what) + ": {patients} patient(s) with usable sessions " + f"(at least {spec['min_patients']} needed)",
            patients=n_pat,
        )
    return df, record


def binary_rows(data: pd.DataFrame, spec: Mapping[str, Any], estimands: Mapping[str, str], what: str):
    """Rows, formula and record for a binary model (session or end-of-course level)."""
    level = spec.get("level", "session")
    outcome = spec["outcome"]
    fixed = list(spec["fixed"])
    df, record = model_rows(
        data.sort_values([spec["group"], "session"], kind="stable"),
        spec,
        estimands,
        outcome=outcome,
        terms=[t for t in fixed if t != "ever_ill"] + (["ill"] if "ever_ill" in fixed else []),
        outcome_type="binary",
        what=what,
        level=level,
    )
    if level == "end":
        ever = (as_float(df["ill"]) > 0).groupby(df[spec["group"]]).transform("max")
        df = df.assign(ever_ill=ever.astype(float))
        df = df.groupby(spec["group"], sort=True).tail(1)
    y = pd.to_numeric(df[outcome], errors="coerce")
    bad = ~y.isin([0, 1])
    if bad.any():
        raise ModelError(f"{what}: outcome {outcome!r} must be 0/1; found {sorted(y[bad].unique())[:5]}")
    events, non = int((y == 1).sum()), int((y == 0).sum())
    if min(events, non) < int(spec.get("min_events", 10)):
        raise SkipModel(
            escape(what) + ": {events} event(s) and {non_events} non-event(s) of " + escape(outcome) + "; at least "
            f"{spec.get('min_events', 10)} of each are needed",
            events=events,
            non_events=non,
        )
    ill_term = spec["illness_term"]
    if ill_term and any(ill_term in t for t in fixed):
        col = "ever_ill" if ill_term == "ever_ill" else "ill"
        require_illness(df, what, column=col)
    formula = f"{outcome} ~ " + " + ".join(fixed)
    return df, formula, record, events, non
