"""CSV tables for people: written atomically, and safe to open in a spreadsheet.

A spreadsheet program runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula
(``=cmd|' /C calc'!A0`` starts a program, ``=HYPERLINK(...)`` sends data away): "CSV
injection" (OWASP). Text that came from an input file or a config and is written into a
table (the problems table quotes offending values; report tables carry labels) could be
one. :func:`write_csv` writes every table meant to be opened by people, and
:func:`neutralise_formulas` prefixes such text cells with ``'``, which spreadsheets take
as "text follows" and do not show. Numbers are never touched: numeric columns are left
alone, and a text cell that is just a number (``-3``, ``+1.5e2``) is no formula.
"""

from __future__ import annotations

import os
import re
from typing import Any

import pandas as pd

from ._atomic import atomic_path

__all__ = ["FORMULA_TRIGGERS", "neutralise_formulas", "neutralise_text", "write_csv"]

#: First characters (after any leading white space) that make a spreadsheet read a cell as
#: a formula; tab and carriage return as in OWASP's list.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")

_PLAIN_NUMBER = re.compile(r"\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*")


def neutralise_text(value: Any) -> Any:
    """``value`` with a ``'`` in front if it is text a spreadsheet would run as a formula.

    Examples
    --------
    >>> neutralise_text("=cmd|' /C calc'!A0"), neutralise_text("@SUM(A1:A9)")
    ("'=cmd|' /C calc'!A0", "'@SUM(A1:A9)")
    >>> neutralise_text("-3"), neutralise_text(-3), neutralise_text("ill_within")
    ('-3', -3, 'ill_within')
    """
    if not isinstance(value, str) or not value:
        return value
    if value.lstrip(" \n")[:1] in FORMULA_TRIGGERS and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def neutralise_formulas(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` whose text cells and column names cannot run as spreadsheet formulas.

    Only text is changed (see :func:`neutralise_text`); numeric, boolean and date columns
    are returned as they are, so that their CSV text does not change.

    Examples
    --------
    >>> df = pd.DataFrame({"value": ["=1+2", "-1", "ill"], "estimate": [-1.5, 2.0, 0.1]})
    >>> neutralise_formulas(df).to_dict("list")
    {'value': ["'=1+2", '-1', 'ill'], 'estimate': [-1.5, 2.0, 0.1]}
    """
    out = df.copy()
    for i in range(df.shape[1]):
        col = df.iloc[:, i]
        if not (
            pd.api.types.is_object_dtype(col.dtype)
            or isinstance(col.dtype, (pd.StringDtype, pd.CategoricalDtype))
        ):
            continue
        values = col.astype(object).tolist()
        changed = [neutralise_text(v) for v in values]
        if any(a is not b for a, b in zip(changed, values)):
            out.isetitem(i, pd.Series(changed, index=df.index, dtype=object))
    out.columns = [neutralise_text(c) for c in df.columns]
    return out


def write_csv(
    df: pd.DataFrame, path: str | os.PathLike, *, index: bool = False, float_format: str | None = None
) -> None:
    """Write ``df`` as a UTF-8 CSV table for people: atomically, ``\\n`` line ends, formulas
    neutralised (:func:`neutralise_formulas`)."""
    with atomic_path(path) as tmp:
        neutralise_formulas(df).to_csv(tmp, index=index, lineterminator="\n", float_format=float_format)
