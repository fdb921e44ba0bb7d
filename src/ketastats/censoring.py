"""Values below an assay's detection limit: parse them, never substitute them silently.

A cytokine concentration arrives in one of these forms (see ``docs/data_contract.md``):

* a number (measured, detected),
* ``"<L"`` such as ``"<0.15"`` (below the detection limit ``L``; left-censored),
* ``"<LOD"`` (also ``"<LLOQ"``, ``"<LOQ"``), with the limit in a separate ``<marker>_lod``
  column,
* empty (not measured).

Parsing keeps three things apart: the value (``NaN`` when censored), the limit and a
censoring flag. What to do with censored values (Tobit model, multiple imputation,
``LOD/sqrt(2)`` as a sensitivity analysis) is the analysis's decision, not the reader's.

References
----------
.. [1] Hornung RW, Reed LD. Estimation of average concentration in the presence of
   nondetectable values. Appl Occup Environ Hyg 1990;5:46-51.
.. [2] Okdahl T et al. BMJ Open 2022 (analytes with > 30% of values below LOD dropped).

Examples
--------
>>> import pandas as pd
>>> parse_censored(pd.Series(["1.2", "<0.15", None]))[["value", "lod", "censored"]]
   value   lod  censored
0    1.2   NaN     False
1    NaN  0.15      True
2    NaN   NaN     False
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "MISSING_TOKENS",
    "as_text",
    "censored_fraction",
    "on_uniques",
    "parse_censored",
    "split_censored",
    "to_float",
]

#: Strings that mean "no value" in any column (compared case-insensitively after stripping).
MISSING_TOKENS: frozenset[str] = frozenset(
    {"", "na", "n/a", "nan", "null", "none", "missing", "."}
)

_MISSING_SPELLINGS = sorted({v for t in MISSING_TOKENS for v in (t, t.upper(), t.title())}
                            | {"NaN", "N/a"})
_LT_NUMBER = r"^<\s*=?\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)$"
_LT_WORD = r"^<\s*(?:lod|llod|lloq|loq)$"


def as_text(values: pd.Series) -> pd.Series:
    """Return ``values`` as stripped strings (``string`` dtype), missing tokens as ``<NA>``.

    Numbers become their shortest round-trip text (``1.0`` -> ``"1.0"``); the strings of
    :data:`MISSING_TOKENS` (any case) become missing.

    Parameters
    ----------
    values : pandas.Series
        Any values.

    Returns
    -------
    pandas.Series
        Same index, dtype ``string``.
    """
    s = pd.Series(values, copy=False)
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        f = s.astype("float64")
        out = f.astype(str).astype("string").mask(f.isna())
    elif isinstance(s.dtype, pd.StringDtype):
        out = s.astype("string").str.strip()
    else:
        out = s.astype(object).where(s.notna(), None).astype("string").str.strip()
    missing = out.isna() | out.isin(_MISSING_SPELLINGS)
    if missing.any():
        return out.mask(missing.fillna(True).astype(bool))
    return out


def on_uniques(text: pd.Series, fn) -> pd.Series:
    """Apply an element-wise string function ``fn`` once per distinct value of ``text``.

    Session tables repeat values a lot (scores, flags, levels), so parsing the distinct
    values and broadcasting back is much faster than parsing every cell.

    Parameters
    ----------
    text : pandas.Series
        Output of :func:`as_text`.
    fn : callable
        Takes a ``string`` Series of the distinct non-missing values and returns a Series of
        the same length.

    Returns
    -------
    pandas.Series
        ``fn``'s results broadcast to ``text``'s index; missing where ``text`` is missing.
    """
    codes, uniques = pd.factorize(text, use_na_sentinel=True)
    res = fn(pd.Series(np.asarray(uniques, dtype=object), dtype="string"))
    arr = np.asarray(res.to_numpy())
    valid = codes >= 0
    if arr.dtype.kind == "f":
        out = np.full(len(codes), np.nan)
    elif arr.dtype.kind == "b":
        out = np.zeros(len(codes), dtype=bool)
    else:
        arr = arr.astype(object)
        out = np.full(len(codes), None, dtype=object)
    out[valid] = arr[codes[valid]]
    return pd.Series(out, index=text.index)


def to_float(text: pd.Series) -> pd.Series:
    """Numbers from the output of :func:`as_text` (``NaN`` where not a number)."""
    return on_uniques(
        text, lambda u: pd.to_numeric(u, errors="coerce").astype("float64")).astype("float64")


def parse_censored(values: pd.Series, lod: pd.Series | None = None) -> pd.DataFrame:
    """Parse cytokine values into value, detection limit and censoring flag.

    Parameters
    ----------
    values : pandas.Series
        Raw values: numbers, strings like ``"<0.15"`` or ``"<LOD"``, or missing.
    lod : pandas.Series, optional
        Per-row detection limits from a ``<marker>_lod`` column (numbers or numeric strings).

    Returns
    -------
    pandas.DataFrame
        Same index as ``values``, columns

        ``value`` (float; ``NaN`` when censored, missing or invalid),
        ``lod`` (float; the limit from ``"<L"`` or else from ``lod``),
        ``censored`` (bool; below the detection limit),
        ``invalid`` (bool; a non-missing entry that is neither a number nor a recognised
        below-limit string, or ``"<LOD"`` with no limit available),
        ``lod_conflict`` (bool; ``"<L"`` disagrees with the ``lod`` column),
        ``lod_invalid`` (bool; the ``lod`` entry is not a non-negative number).

    Notes
    -----
    Nothing is substituted: a censored value stays ``NaN`` in ``value`` and is marked in
    ``censored``; downstream code chooses how to model it.
    """
    text = as_text(values)
    index = text.index
    number = to_float(text)
    lt_limit = on_uniques(text, lambda u: pd.to_numeric(
        u.str.extract(_LT_NUMBER, expand=False), errors="coerce").astype("float64"))
    lt_limit = lt_limit.astype("float64")
    lt_word = on_uniques(text, lambda u: u.str.match(_LT_WORD, case=False)
                         .fillna(False).astype(bool)).fillna(False).astype(bool)
    present = text.notna()

    if lod is not None:
        lod_text = as_text(pd.Series(lod, index=index))
        lod_num = to_float(lod_text)
        lod_invalid = lod_text.notna() & (lod_num.isna() | (lod_num < 0) | ~np.isfinite(
            lod_num.fillna(0.0)))
        lod_num = lod_num.where(~lod_invalid)
    else:
        lod_num = pd.Series(np.nan, index=index, dtype="float64")
        lod_invalid = pd.Series(False, index=index)

    censored = (lt_limit.notna() | lt_word) & present
    limit = lt_limit.where(lt_limit.notna(), lod_num)
    invalid = present & number.isna() & ~censored
    invalid |= lt_word & lod_num.isna()
    invalid |= present & number.notna() & ~np.isfinite(number.fillna(0.0))
    censored &= ~invalid
    conflict = lt_limit.notna() & lod_num.notna() & ~np.isclose(
        lt_limit.fillna(0.0), lod_num.fillna(0.0), rtol=1e-9, atol=0.0)
    value = number.where(~censored & ~invalid)
    return pd.DataFrame(
        {
            "value": value.astype("float64"),
            "lod": limit.where(present | lod_num.notna()).astype("float64"),
            "censored": censored.astype(bool),
            "invalid": invalid.astype(bool),
            "lod_conflict": conflict.astype(bool),
            "lod_invalid": lod_invalid.astype(bool),
        },
        index=index,
    )


def split_censored(df: pd.DataFrame, marker: str) -> pd.DataFrame:
    """Replace ``marker`` (and ``marker_lod``) by value, limit and flag columns.

    Parameters
    ----------
    df : pandas.DataFrame
        Table holding the raw ``marker`` column and optionally ``marker + "_lod"``.
    marker : str
        Cytokine column name, e.g. ``"il6_pg_ml"``.

    Returns
    -------
    pandas.DataFrame
        A copy with ``marker`` (float, ``NaN`` when censored), ``marker_lod`` (float) and
        ``marker_censored`` (bool).
    """
    lod_col = marker + "_lod"
    parsed = parse_censored(df[marker], df[lod_col] if lod_col in df.columns else None)
    out = df.copy()
    out[marker] = parsed["value"]
    out[lod_col] = parsed["lod"]
    out[marker + "_censored"] = parsed["censored"]
    return out


def censored_fraction(parsed: pd.DataFrame) -> float:
    """Fraction of measured values that are below the detection limit.

    Parameters
    ----------
    parsed : pandas.DataFrame
        Output of :func:`parse_censored`.

    Returns
    -------
    float
        ``censored / (censored + detected)``; ``nan`` when nothing was measured.
    """
    measured = parsed["censored"] | parsed["value"].notna()
    n = int(measured.sum())
    return float(parsed["censored"].sum()) / n if n else float("nan")
