"""Map a cohort's file onto the contract: read, rename columns, recode values.

The cohort config (see ``docs/data_contract.md``) says where the file is, its format, which
file column holds each contract column (``columns``) and how raw values translate into
contract values (``recode``). Unmapped contract names are matched as-is. Columns that are
not in the contract are kept, so that the identifier guard sees them; ``coerce_sessions``
drops them after validation.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from ..exceptions import ConfigError
from .readers import detect_format, read_table
from .redcap import read_redcap

__all__ = ["SOURCE_ROW", "apply_mapping", "apply_recode", "read_cohort", "resolve_input"]

log = logging.getLogger(__name__)

#: Column added by the readers: the line a spreadsheet user would look at (header = 1).
SOURCE_ROW = "_source_row"


def resolve_input(path: str | Path, root: Path) -> Path:
    """Return ``path`` as given if absolute, else relative to the project ``root``."""
    p = Path(path)
    return p if p.is_absolute() else Path(root) / p


def apply_mapping(df: pd.DataFrame, columns: Mapping[str, str] | None) -> pd.DataFrame:
    """Rename file columns to contract names.

    Parameters
    ----------
    df : pandas.DataFrame
        Raw table.
    columns : mapping of str to str
        ``{contract name: column name in the file}``.

    Returns
    -------
    pandas.DataFrame
        A copy with mapped columns renamed; everything else unchanged.

    Raises
    ------
    ConfigError
        If a mapped file column does not exist, two contract names map to the same file
        column, or a rename would collide with another existing column; all such problems
        are listed at once.
    """
    columns = dict(columns or {})
    problems: list[str] = []
    seen: dict[str, str] = {}
    for contract, source in columns.items():
        if not isinstance(source, str) or not source:
            problems.append(f"columns.{contract}: must be a column name, got {source!r}")
            continue
        if source in seen:
            problems.append(f"columns.{contract} and columns.{seen[source]} both map to "
                            f"{source!r}; each file column can hold one contract column")
        seen[source] = contract
        if source not in df.columns:
            near = [c for c in df.columns if str(c).lower() == source.lower()]
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            problems.append(f"columns.{contract}: the file has no column {source!r}{hint}")
    renames = {src: dst for dst, src in columns.items() if isinstance(src, str)
               and src in df.columns and src != dst}
    for src, dst in renames.items():
        if dst in df.columns and dst not in renames:
            problems.append(f"columns.{dst}: maps {src!r} to {dst!r}, but the file already has "
                            f"a column {dst!r}; rename or map that one too")
    if problems:
        raise ConfigError("the cohort's column mapping does not fit the file:\n  - "
                          + "\n  - ".join(problems))
    return df.rename(columns=renames)


def apply_recode(df: pd.DataFrame, recode: Mapping[str, Mapping] | None) -> pd.DataFrame:
    """Translate raw values into contract values, column by column.

    Keys are compared as stripped text, so ``{1: "male"}`` from YAML matches the string
    ``"1"`` in a CSV. Values not in the map are left as they are (the validator then reports
    any that are not allowed).

    Raises
    ------
    ConfigError
        If a recoded column is not in the table or its map is not a mapping.
    """
    out = df.copy()
    problems = []
    for column, table in dict(recode or {}).items():
        if column not in out.columns:
            problems.append(f"recode.{column}: no such column after mapping")
            continue
        if not isinstance(table, Mapping):
            problems.append(f"recode.{column}: must be a mapping of raw value to value")
            continue
        lookup = {str(k).strip(): v for k, v in table.items()}
        col = out[column]
        text = col.astype("string").str.strip()
        hit = text.isin(list(lookup)).fillna(False).astype(bool)
        if hit.any():
            new = col.astype(object).copy()
            new[hit] = text[hit].map(lookup).astype(object)
            out[column] = new
    if problems:
        raise ConfigError("the cohort's recode map does not fit the file:\n  - "
                          + "\n  - ".join(problems))
    return out


def read_cohort(cohort: Mapping, *, root: Path = Path(".")) -> pd.DataFrame:
    """Read a cohort's session file and map it onto the contract.

    Parameters
    ----------
    cohort : mapping
        One entry of ``cohorts:`` in the workflow config: ``input`` (required), ``format``,
        ``sheet``, ``excel_limits``, ``redcap_dictionary``, ``columns``, ``recode``,
        ``encoding`` (optional, default UTF-8); ``safe_columns`` is used by the validator,
        not here.
    root : pathlib.Path, default Path(".")
        Project root; relative paths in ``cohort`` are relative to it.

    Returns
    -------
    pandas.DataFrame
        All columns of the file (contract columns renamed, extra columns kept) plus
        ``_source_row``, the 1-based line number of each row in the file (header = line 1;
        for Excel the sheet row, for REDCap the export line). ``df.attrs`` carries
        ``source`` (path), ``format``, ``column_mapping`` (contract name -> file column, for
        messages) and, for REDCap, ``identifier_columns``.

    Raises
    ------
    ConfigError
        If ``input`` is missing or the mapping/recode does not fit the file.
    DataValidationError
        If the file cannot be read.

    Examples
    --------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> _ = (root / "export.csv").write_text("subject,session,day,madrs\\nP01,1,0,31\\nP01,2,3,24\\n")
    >>> cohort = {"input": "export.csv", "columns": {"patient_id": "subject"}}
    >>> read_cohort(cohort, root=root)
      patient_id session day madrs  _source_row
    0        P01       1   0    31            2
    1        P01       2   3    24            3
    """
    if not isinstance(cohort, Mapping) or not cohort.get("input"):
        raise ConfigError("the cohort config needs 'input': the path of its session file, "
                          "relative to the project root.")
    path = resolve_input(cohort["input"], root)
    fmt = cohort.get("format")
    if fmt is None and cohort.get("redcap_dictionary"):
        fmt = "redcap"
    fmt = detect_format(path, fmt)
    encoding = cohort.get("encoding") or "utf-8-sig"
    if fmt == "redcap":
        if not cohort.get("redcap_dictionary"):
            raise ConfigError(f"cohort input {path} has format 'redcap' but no "
                              "'redcap_dictionary': give the path of the project's data "
                              "dictionary CSV.")
        df = read_redcap(path, resolve_input(cohort["redcap_dictionary"], root),
                         session_forms=cohort.get("redcap_session_forms"), encoding=encoding)
    else:
        df = read_table(path, format=fmt, sheet=cohort.get("sheet"), encoding=encoding,
                        excel_limits=cohort.get("excel_limits"))
        df[SOURCE_ROW] = df.index + 2
    attrs = dict(df.attrs)
    mapping = dict(cohort.get("columns") or {})
    if attrs.get("derived_session") and mapping.get("session", "session") != "session":
        df = df.drop(columns="session")
    df = apply_mapping(df, mapping)
    df = apply_recode(df, cohort.get("recode"))
    rename = {v: k for k, v in mapping.items() if isinstance(v, str)}
    attrs["identifier_columns"] = [rename.get(c, c) for c in attrs.get("identifier_columns", [])]
    attrs.update(source=str(path), format=fmt,
                 column_mapping={k: v for k, v in mapping.items()
                                 if isinstance(v, str) and k != v})
    df.attrs = attrs
    return df
