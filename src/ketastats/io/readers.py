"""Read session tables as they come: CSV, TSV, Parquet and Excel.

Readers return the raw table with every cell as text where the format leaves the type open
(CSV, TSV), so that nothing is guessed before validation: ``"<0.15"`` stays a string, ``"007"``
keeps its zeros and ``"90+"`` is not lost. Parquet and Excel keep the types the file stores.
Anything that cannot be read raises :class:`~ketastats.exceptions.DataValidationError` with a
message that says what to do; it never surfaces as a bare ``UnicodeDecodeError`` or parser
traceback.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from ..contract import INPUT_EXTENSIONS, INPUT_FORMATS
from ..exceptions import DataValidationError
from .excel import read_excel

__all__ = ["FORMATS", "detect_format", "input_checksum", "read_table", "sha256_file", "verify_checksum"]

log = logging.getLogger(__name__)

#: Supported ``format`` values.
FORMATS: tuple[str, ...] = INPUT_FORMATS

#: Cell strings read as missing in text formats (besides the empty string).
NA_STRINGS: list[str] = ["", "NA", "N/A", "n/a", "NaN", "nan", "NULL", "null", "None"]


def _fail(path: str | os.PathLike, message: str, rule: str = "read",
          column: str = "") -> DataValidationError:
    problems = pd.DataFrame(
        [{"file": str(path), "row": pd.NA, "column": column, "value": "", "rule": rule,
          "severity": "error", "message": message}]
    )
    return DataValidationError(f"{path}: {message}", problems)


def sha256_file(path: str | os.PathLike) -> str:
    """Return the SHA-256 hex digest of a file's bytes.

    Parameters
    ----------
    path : str or os.PathLike
        File to hash.

    Returns
    -------
    str
        64 lowercase hex digits.

    Raises
    ------
    DataValidationError
        If the file cannot be opened.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.csv"
    >>> _ = p.write_bytes(b"")
    >>> sha256_file(p)[:12]
    'e3b0c44298fc'
    """
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise _fail(path, f"cannot open the file to checksum it ({exc.strerror or exc}).") from exc
    return digest.hexdigest()


def input_checksum(path: str | os.PathLike) -> str:
    """The SHA-256 of a raw input file for Snakemake's rerun check, ``"absent"`` if there is none.

    The Snakefile gives it as a param of the rule that reads the file, so that a file whose
    bytes changed reruns the rule even if its time stamp went back (``cp -p``, unzip). The
    digest is remembered per process for as long as the file's size, inode and change time
    (which no copy can set back) stay the same: Snakemake asks once per job and DAG build.

    Parameters
    ----------
    path : str or os.PathLike
        The raw file.

    Returns
    -------
    str
        64 lowercase hex digits, or ``"absent"`` when ``path`` is not a file (yet).
    """
    try:
        st = os.stat(path)
    except OSError:
        return "absent"
    if not stat.S_ISREG(st.st_mode):
        return "absent"
    return _cached_checksum(os.path.abspath(path), st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)


@functools.lru_cache(maxsize=64)
def _cached_checksum(path: str, size: int, inode: int, mtime_ns: int, ctime_ns: int) -> str:
    return sha256_file(path)


def verify_checksum(path: str | os.PathLike, expected: str) -> None:
    """Check that a raw file still has the checksum recorded when it was read.

    Raises
    ------
    DataValidationError
        With rule ``"checksum"`` if the file changed; raw files must never be modified.
    """
    actual = sha256_file(path)
    if actual != expected:
        raise _fail(
            path,
            f"the raw file changed while ketastats was using it (sha256 {expected[:12]}... "
            f"became {actual[:12]}...). Raw files are read-only inputs: restore the original "
            "and rerun.",
            rule="checksum",
        )


def detect_format(path: str | os.PathLike, format: str | None = None) -> str:
    """Return the reader format for ``path``: ``format`` if given, else from the extension.

    Raises
    ------
    DataValidationError
        If ``format`` is unknown or the extension is not recognised.
    """
    if format is not None:
        fmt = str(format).lower()
        if fmt in ("xlsx", "xls"):
            fmt = "excel"
        if fmt not in FORMATS:
            raise _fail(path, f"unknown format {format!r}; use one of {', '.join(FORMATS)}.")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix == ".xls":
        raise _fail(path, "old binary Excel (.xls) files are not supported; open the file in "
                    "Excel or LibreOffice and save it as .xlsx or .csv.")
    if suffix not in INPUT_EXTENSIONS:
        raise _fail(path, f"cannot tell the format from the extension {suffix!r}; set "
                    f"'format' in the cohort config to one of {', '.join(FORMATS)}.")
    return INPUT_EXTENSIONS[suffix]


def _sniff_separator(path: Path, default: str, encoding: str) -> str:
    with open(path, encoding=encoding, newline="") as fh:
        first = fh.readline()
    if default not in first:
        for sep in (";", "\t", ","):
            if sep != default and sep in first:
                log.info("%s: header has no %r; using separator %r", path, default, sep)
                return sep
    return default


def _check_header(path: Path, sep: str, encoding: str) -> None:
    """Refuse a header that names a column twice (pandas would rename the second ``x.1``)."""
    with open(path, encoding=encoding, newline="") as fh:
        header = next(csv.reader(fh, delimiter=sep), [])
    positions: dict[str, list[int]] = {}
    for i, name in enumerate(header):
        name = name.strip().lstrip("\ufeff")
        if name:
            positions.setdefault(name, []).append(i + 1)
    twice = {name: cols for name, cols in positions.items() if len(cols) > 1}
    if twice:
        name, cols = next(iter(twice.items()))
        more = f" ({len(twice) - 1} more name(s) given twice)" if len(twice) > 1 else ""
        raise _fail(path, f"the header names the column '{name}' more than once (columns "
                    f"{', '.join(map(str, cols))}){more}; each column needs its own name. Rename "
                    "or delete the extra column(s).", rule="duplicate_column", column=name)


def _read_text(path: Path, sep: str, encoding: str) -> pd.DataFrame:
    sep = _sniff_separator(path, sep, encoding)
    _check_header(path, sep, encoding)
    df = pd.read_csv(
        path, sep=sep, dtype=str, keep_default_na=False, na_values=NA_STRINGS,
        encoding=encoding, skip_blank_lines=False,
    )
    return df


def _clean_header(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    names = [str(c).strip().lstrip("\ufeff") for c in df.columns]
    unnamed = [n for n in names if n.startswith("Unnamed: ")]
    df.columns = names
    if unnamed:
        empty = [n for n in unnamed if df[n].isna().all()]
        df = df.drop(columns=empty)
    return df


def read_table(
    path: str | os.PathLike,
    *,
    format: str | None = None,
    sheet: str | int | None = None,
    encoding: str = "utf-8-sig",
    excel_limits: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Read a session table file without interpreting its values.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    format : {"csv", "tsv", "parquet", "excel"}, optional
        Defaults from the extension (``.csv``; ``.tsv``/``.tab``/``.txt``; ``.parquet``/``.pq``;
        ``.xlsx``/``.xlsm``). For REDCap exports use :func:`ketastats.io.read_redcap`.
    sheet : str or int, optional
        Excel sheet name or 0-based index (default: the first sheet).
    encoding : str, default "utf-8-sig"
        Text encoding of CSV/TSV files (a UTF-8 byte-order mark is accepted).
    excel_limits : mapping, optional
        Bounds of an Excel file, ``unzipped_mb`` and ``cells`` (defaults
        :data:`ketastats.io.excel.EXCEL_LIMITS`), checked before it is parsed.

    Returns
    -------
    pandas.DataFrame
        CSV/TSV: every column as strings, missing cells (empty, ``NA``, ``NULL`` ...) as
        missing. Parquet/Excel: the stored types. Header names are stripped of surrounding
        white space; entirely empty unnamed columns (trailing separators) are dropped.
        A CSV whose header has no comma but semicolons (European spreadsheet exports) is
        read with ``;``.

    Raises
    ------
    DataValidationError
        If the file is missing, empty, not in the stated format, or not decodable; if its
        header names a column twice (rule ``duplicate_column``); if an Excel file exceeds
        ``excel_limits`` (``excel_limit``) or holds formulas without saved results
        (``excel_formula``). The message says how to fix it.
    """
    p = Path(path)
    fmt = detect_format(p, format)
    if fmt == "redcap":
        raise _fail(p, "REDCap exports need their data dictionary; read them with "
                    "read_redcap(export_csv, dictionary_csv) or set 'redcap_dictionary' in "
                    "the cohort config.")
    if not p.exists():
        raise _fail(p, "file not found; check the path (relative paths are relative to the "
                    "project root) and that the file was copied into data/raw/.")
    if p.is_dir():
        raise _fail(p, "this is a directory, not a file; give the path of the session table.")
    try:
        if fmt == "csv":
            df = _read_text(p, ",", encoding)
        elif fmt == "tsv":
            df = _read_text(p, "\t", encoding)
        elif fmt == "parquet":
            df = pd.read_parquet(p)
        else:
            df = read_excel(p, sheet, excel_limits)
    except DataValidationError:
        raise
    except UnicodeDecodeError as exc:
        enc = "UTF-8" if encoding.lower().replace("_", "-") in ("utf-8", "utf-8-sig") else encoding
        raise _fail(p, f"the file is not valid {enc} text (byte {exc.start}: "
                    f"{exc.reason}). Save it as UTF-8 (Excel: 'CSV UTF-8'), or set "
                    "'encoding' in the cohort config (e.g. cp1252).") from exc
    except pd.errors.EmptyDataError as exc:
        raise _fail(p, "the file is empty; it needs a header line and one line per "
                    "session.") from exc
    except pd.errors.ParserError as exc:
        raise _fail(p, f"cannot parse the file as {fmt.upper()} ({exc}). Check the separator "
                    "and quoting, or set 'format' in the cohort config.") from exc
    except ValueError as exc:  # bad sheet name, not an xlsx zip, ...
        raise _fail(p, f"cannot read the file as {fmt} ({exc}). Check 'format' and 'sheet' "
                    "in the cohort config.") from exc
    except Exception as exc:  # pyarrow / openpyxl / zipfile errors on corrupt files
        raise _fail(p, f"cannot read the file as {fmt} ({type(exc).__name__}: {exc}). Is it "
                    "really a {fmt} file? Set 'format' in the cohort config if the extension "
                    "is misleading.".replace("{fmt}", fmt)) from exc
    df = _clean_header(df, p).reset_index(drop=True)
    # Drop blank lines but keep the index, so that index + 2 is the line in the file.
    df = df[~df.isna().all(axis=1)] if df.shape[1] else df
    log.info("read %s (%s): %d rows, %d columns", p, fmt, len(df), df.shape[1])
    return df
