"""Read one sheet of an Excel (.xlsx) workbook, within bounds and without guessing.

An .xlsx file is a zip archive of XML files. Before anything is parsed,
:func:`read_excel` checks what the archive declares it unpacks to (its members' sizes; the
zip reader never unpacks more than declared) and, streaming through the sheet's XML, how
many cells the sheet holds: a "zip bomb" (a 1 MB file that unpacks to gigabytes) is
refused with a message naming the limit, instead of taking the machine's memory. The same
pass finds formula cells without a saved result (files written by programs that do not
compute formulas): read as values they would be empty, so they are an error naming the
sheet and the column. Header names given twice are an error too (pandas would silently
rename the second ``madrs`` to ``madrs.1``).
"""

from __future__ import annotations

import os
import posixpath
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pandas as pd

from ..exceptions import DataValidationError

__all__ = ["EXCEL_LIMITS", "read_excel"]

#: Default bounds of an Excel input (cohort config ``excel_limits``): megabytes the
#: archive may unpack to, and cells the sheet may hold.
EXCEL_LIMITS: dict[str, float] = {"unzipped_mb": 100, "cells": 2_000_000}

_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_REL = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_PKG_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}"
_LETTERS = re.compile(r"[A-Z]+")


def _problem(path: Path, message: str, rule: str, column: str = "") -> DataValidationError:
    problems = pd.DataFrame(
        [{"file": str(path), "row": pd.NA, "column": column, "value": "", "rule": rule,
          "severity": "error", "message": message}]
    )
    return DataValidationError(f"{path}: {message}", problems)


@dataclass
class _Scan:
    """What the streaming pass over a sheet found."""

    name: str
    cells: int = 0
    #: column index (0-based) -> [cells with an unsaved formula, first row (1-based)]
    unsaved: dict[int, list[int]] = field(default_factory=dict)


def _column_index(ref: str) -> int:
    letters = _LETTERS.match(ref or "")
    if not letters:
        return -1
    index = 0
    for ch in letters.group(0):
        index = index * 26 + ord(ch) - 64
    return index - 1


def _column_letters(index: int) -> str:
    out = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        out = chr(65 + rem) + out
    return out


def _sheet_part(zf: zipfile.ZipFile, sheet: str | int | None) -> tuple[str, str] | None:
    """The archive member and name of the chosen sheet (None if it cannot be found)."""
    try:
        book = ElementTree.fromstring(zf.read("xl/workbook.xml"))
        rels = ElementTree.fromstring(zf.read("xl/_rels/workbook.xml.rels"))
    except (KeyError, ElementTree.ParseError):
        return None
    sheets = [(s.get("name", ""), s.get(f"{_REL}id")) for s in book.iter(f"{_MAIN}sheet")]
    if isinstance(sheet, str):
        chosen = next((s for s in sheets if s[0] == sheet), None)
    else:
        index = 0 if sheet is None else int(sheet)
        chosen = sheets[index] if 0 <= index < len(sheets) else None
    if chosen is None:
        return None
    targets = {r.get("Id"): r.get("Target", "") for r in rels.iter(f"{_PKG_REL}Relationship")}
    target = targets.get(chosen[1])
    if not target:
        return None
    member = target.lstrip("/") if target.startswith("/") else posixpath.normpath(posixpath.join("xl", target))
    return member, chosen[0]


def _scan(path: Path, sheet: str | int | None, limits: Mapping[str, float]) -> _Scan | None:
    """Check the archive's unpacked size and the sheet's cell count; find unsaved formulas."""
    max_bytes = float(limits["unzipped_mb"]) * 1e6
    max_cells = int(limits["cells"])
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        return None  # not a zip: the reader says what is wrong with it
    with zf:
        unpacked = sum(info.file_size for info in zf.infolist())
        if unpacked > max_bytes:
            raise _problem(
                path,
                f"this Excel file unpacks to {unpacked / 1e6:,.0f} MB, more than the limit of "
                f"{limits['unzipped_mb']:g} MB, so it was not read (a file that small on disk "
                "and that large unpacked may be a 'zip bomb'). If the file is genuine, export the "
                "sheet as CSV, or raise cohorts.<name>.excel_limits.unzipped_mb in the config.",
                "excel_limit",
            )
        found = _sheet_part(zf, sheet)
        if found is None:
            return None  # the reader names the missing sheet
        member, name = found
        scan = _Scan(name)
        try:
            with zf.open(member) as fh:
                for _event, elem in ElementTree.iterparse(fh, events=("end",)):
                    if elem.tag == f"{_MAIN}c":
                        scan.cells += 1
                        if scan.cells > max_cells:
                            raise _problem(
                                path,
                                f"sheet '{name}' holds more than {max_cells:,} cells, the limit, so "
                                "it was not read. If the sheet is genuine, export it as CSV, or "
                                "raise cohorts.<name>.excel_limits.cells in the config.",
                                "excel_limit",
                            )
                        _note_formula(elem, scan)
                        elem.clear()
                    elif elem.tag == f"{_MAIN}row":
                        elem.clear()
        except (KeyError, ElementTree.ParseError, zipfile.BadZipFile, EOFError):
            return None  # a damaged archive: the reader reports it
    return scan


def _note_formula(cell: ElementTree.Element, scan: _Scan) -> None:
    """Record ``cell`` if it holds a formula whose result was never saved."""
    if cell.find(f"{_MAIN}f") is None:
        return
    value = cell.find(f"{_MAIN}v")
    if value is not None and (value.text or cell.get("t") == "str"):
        return  # a saved result (possibly an empty text)
    ref = cell.get("r", "")
    col = _column_index(ref)
    row = int(ref[len(_column_letters(col)):] or 0) if col >= 0 else 0
    entry = scan.unsaved.setdefault(col, [0, row])
    entry[0] += 1


def _header(raw: pd.DataFrame, path: Path, sheet_name: str) -> list[Any]:
    """Column names from the sheet's first row as pandas gives them; a name twice is an error."""
    names = [f"Unnamed: {i}" if pd.isna(v) else v for i, v in enumerate(raw.iloc[0])]
    positions: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        if not (isinstance(name, str) and name.startswith("Unnamed: ")):
            positions.setdefault(str(name).strip().lstrip("\ufeff"), []).append(i)
    twice = {name: cols for name, cols in positions.items() if len(cols) > 1}
    if twice:
        name, cols = next(iter(twice.items()))
        where = ", ".join(_column_letters(i) for i in cols)
        more = f" ({len(twice) - 1} more name(s) given twice)" if len(twice) > 1 else ""
        raise _problem(
            path,
            f"sheet '{sheet_name}' has the column name '{name}' more than once (columns {where}){more}; "
            "each column needs its own name. Rename or delete the extra column(s).",
            "duplicate_column",
            column=name,
        )
    return names


def read_excel(path: str | os.PathLike, sheet: str | int | None = None,
               limits: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Read one sheet of an .xlsx file as stored (cell types kept, nothing guessed).

    Parameters
    ----------
    path : str or os.PathLike
        The workbook.
    sheet : str or int, optional
        Sheet name or 0-based index (default: the first sheet).
    limits : mapping, optional
        ``unzipped_mb`` and ``cells`` (defaults :data:`EXCEL_LIMITS`).

    Returns
    -------
    pandas.DataFrame
        The first row as column names (empty ones ``Unnamed: <i>``), one row per further
        sheet row, every cell as stored (``dtype=object``).

    Raises
    ------
    DataValidationError
        With rule ``excel_limit`` if the archive unpacks to more than ``unzipped_mb`` or the
        sheet has more than ``cells`` cells; ``excel_formula`` if formula cells have no
        saved result (naming the sheet and columns); ``duplicate_column`` if a name is given
        twice in the header row. Other reading errors propagate to the caller
        (:func:`ketastats.io.read_table` turns them into messages).
    """
    p = Path(path)
    lim = {**EXCEL_LIMITS, **(limits or {})}
    scan = _scan(p, sheet, lim)
    raw = pd.read_excel(p, sheet_name=0 if sheet is None else sheet, dtype=object, engine="openpyxl",
                        header=None)
    if raw.empty:
        return pd.DataFrame()
    name = scan.name if scan else str(sheet if sheet is not None else 0)
    names = _header(raw, p, name)
    if scan and scan.unsaved:
        cols = []
        for col, (count, first_row) in sorted(scan.unsaved.items()):
            label = names[col] if 0 <= col < len(names) else ""
            head = f"'{label}' ({_column_letters(col)})" if label and not str(label).startswith("Unnamed") \
                else f"{_column_letters(col)}"
            cols.append(f"{head}: {count} cell(s), first in row {first_row}")
        first_col = sorted(scan.unsaved)[0]
        raise _problem(
            p,
            f"sheet '{name}' has formulas without a saved result, which would read as empty cells: "
            f"{'; '.join(cols)}. The file was written by a program that does not calculate "
            "formulas. Open it in Excel or LibreOffice and save it (which stores the results), or "
            "export the sheet as CSV.",
            "excel_formula",
            column=str(names[first_col]) if 0 <= first_col < len(names) else "",
        )
    body = raw.iloc[1:].reset_index(drop=True)
    body.columns = names
    return body
