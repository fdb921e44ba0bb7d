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

from ..contract import INSTRUMENTS
from .counted import escape
from .retries import SkipModel

__all__ = [
    "as_float",
    "term_columns",
    "require_columns",
    "require_illness",
    "coefficient_rows",
    "illness_effect",
    "mcid_for",
    "num",
    "odds",
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
    """The instrument's minimal clinically important difference (:data:`ketastats.contract.INSTRUMENTS`,
    the one source of MCIDs), None for a column that is not an instrument or has none.

    Examples
    --------
    >>> mcid_for("madrs"), mcid_for("madrs_change"), mcid_for("il6_pg_ml")
    (2.0, 2.0, None)
    """
    spec = INSTRUMENTS.get(outcome.removesuffix("_change"))
    return None if spec is None or spec.mcid is None else float(spec.mcid)


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


def odds(log_odds: float | None) -> float | None:
    """exp of a log odds (ratio), None when the estimate is missing (a fit without that estimate).

    Examples
    --------
    >>> odds(None) is None, odds(0.0)
    (True, 1.0)
    """
    return None if log_odds is None else num(np.exp(log_odds))
