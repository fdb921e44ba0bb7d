"""Shared pieces of the model kinds: selecting rows, centring, checks, coefficient tables.

Within-person centring is redone on the rows a model analyses (after the estimand and
session selection), so that ``ill_within`` sums to zero within each patient over exactly
the sessions in the model and ``ill_between`` is the patient's share of ill sessions among
them (Curran & Bauer 2011).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .counted import escape
from .robust import SkipModel
from .specs import MCID

__all__ = [
    "as_float",
    "select_sessions",
    "exclude_recent_onset",
    "completers_only",
    "centre_within",
    "term_columns",
    "require_columns",
    "require_illness",
    "coefficient_rows",
    "illness_effect",
    "mcid_for",
    "num",
]

_STRING = re.compile(r"'[^']*'|\"[^\"]*\"")
_IDENT = re.compile(r"(?<![.\w])[A-Za-z_][A-Za-z0-9_]*")
_PATSY_NAMES = {
    "np",
    "I",
    "C",
    "Q",
    "center",
    "scale",
    "standardize",
    "bs",
    "cr",
    "cc",
    "te",
    "Treatment",
    "Sum",
    "Poly",
}


def num(x: Any) -> float | None:
    """A JSON-safe float (None for missing or non-finite)."""
    if x is None:
        return None
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def as_float(values: pd.Series) -> pd.Series:
    """Numbers as float64, missing as NaN, whatever the dtype (bool, nullable boolean, Int64, text).

    Examples
    --------
    >>> as_float(pd.Series([True, pd.NA, False], dtype="boolean")).tolist()
    [1.0, nan, 0.0]
    """
    s = pd.Series(values)
    if not (pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_numeric_dtype(s.dtype)):
        s = pd.to_numeric(s, errors="coerce")
    return pd.Series(s.to_numpy(dtype=float, na_value=np.nan), index=s.index)


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
    never the primary one (domain.md 4.4; Little & Rubin 2019).

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


def term_columns(terms: Iterable[str], centre: Sequence[str] = ()) -> list[str]:
    """Data columns a list of patsy terms reads (``ill_within`` -> ``ill`` when ``ill`` is centred).

    Examples
    --------
    >>> term_columns(["progress", "np.log1p(days)", "ill_within"], centre=["ill"])
    ['progress', 'days', 'ill']
    >>> term_columns(["C(arm, Treatment('TAU'))"])
    ['arm']
    """
    derived = {f"{c}_{s}": c for c in centre for s in ("within", "between")}
    out: list[str] = []
    for term in terms:
        # names inside string literals are levels (C(x, Treatment('TAU'))), not columns
        for ident in _IDENT.findall(_STRING.sub("''", str(term))):
            if ident in _PATSY_NAMES:
                continue
            ident = derived.get(ident, ident)
            if ident not in out:
                out.append(ident)
    return out


def require_columns(data: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    """Skip the model when columns it needs are absent or entirely missing."""
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise SkipModel(f"{what} needs column(s) {', '.join(missing)}, which the data do not have")
    empty = [c for c in columns if data[c].isna().all()]
    if empty:
        raise SkipModel(
            f"{what} needs column(s) {', '.join(empty)}, which hold no values in the analysed rows"
        )


def require_illness(data: pd.DataFrame, what: str, *, column: str = "ill", min_sessions: int = 1) -> None:
    """Skip the model when the analysed rows have fewer than ``min_sessions`` ill sessions."""
    if column not in data.columns:
        raise SkipModel(f"{what} needs the illness flag {column!r}, which the data do not have")
    n_ill = int((as_float(data[column]) > 0).sum())
    if n_ill < min_sessions:
        raise SkipModel(
            escape(what) + ": {ill} ill session(s) among the {analysed} analysed sessions "
            f"(at least {min_sessions} needed): the illness effect is not estimable",
            ill=n_ill,
            analysed=len(data),
        )


def coefficient_rows(
    terms: Sequence[str],
    estimate: np.ndarray,
    se: np.ndarray,
    *,
    alpha: float = 0.05,
    df: np.ndarray | None = None,
    df_method: str = "normal",
    prefix: str = "",
) -> list[dict[str, Any]]:
    """One row per term: estimate, SE, CI, two-sided p-value, df and df method.

    With ``df`` (Satterthwaite) the reference distribution is Student's t with that many
    degrees of freedom; otherwise the standard normal (large-sample Wald, ``df`` null).
    """
    rows = []
    for i, term in enumerate(terms):
        est, s = float(estimate[i]), float(se[i])
        d = None if df is None else float(df[i])
        if d is not None and math.isfinite(d) and d > 0:
            crit = stats.t.ppf(1 - alpha / 2, d)
            p = 2 * stats.t.sf(abs(est / s), d) if s > 0 else float("nan")
            method = df_method
        else:
            crit = stats.norm.ppf(1 - alpha / 2)
            p = 2 * stats.norm.sf(abs(est / s)) if s > 0 else float("nan")
            d, method = None, "normal"
        rows.append(
            {
                "term": f"{prefix}{term}",
                "estimate": num(est),
                "se": num(s),
                "ci_low": num(est - crit * s),
                "ci_high": num(est + crit * s),
                "p_value": num(p),
                "df": num(d),
                "df_method": method,
            }
        )
    return rows


def mcid_for(outcome: str) -> float | None:
    """The instrument's minimal clinically important difference (contract first, then MCID)."""
    base = outcome.removesuffix("_change")
    try:
        from ..contract import INSTRUMENTS  # type: ignore[attr-defined]
    except ImportError:
        INSTRUMENTS = {}
    spec = INSTRUMENTS.get(base) if isinstance(INSTRUMENTS, Mapping) else None
    if spec is not None:
        val = spec.get("mcid") if isinstance(spec, Mapping) else getattr(spec, "mcid", None)
        if val is not None:
            return float(val)
    return MCID.get(base)


def illness_effect(
    coefficients: Sequence[Mapping[str, Any]], term: str, *, scale: str, mcid: float | None = None
) -> dict[str, Any] | None:
    """The illness term's row with the MCID and a plain reading of the CI against it."""
    row = next((c for c in coefficients if c["term"] == term), None)
    if row is None:
        return None
    out = {k: row[k] for k in ("term", "estimate", "se", "ci_low", "ci_high", "p_value", "df", "df_method")}
    out["mcid"] = mcid
    out["scale"] = scale
    if mcid is not None and row["ci_low"] is not None and row["ci_high"] is not None:
        lo, hi = row["ci_low"], row["ci_high"]
        if -mcid < lo and hi < mcid:
            verdict = "the CI excludes effects as large as the MCID"
        elif lo >= mcid or hi <= -mcid:
            verdict = "the whole CI is at or beyond the MCID"
        else:
            verdict = "the CI includes effects as large as the MCID"
        out["versus_mcid"] = verdict
    return out
