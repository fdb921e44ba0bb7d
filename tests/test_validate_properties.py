"""Property-based tests: the validator never fails with anything but its own error, whatever
the table; what it accepts can always be coerced; valid tables pass untouched."""

from __future__ import annotations

import contextlib
import datetime

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ketastats.contract import COLUMNS, MADRS_ITEMS
from ketastats.exceptions import KetastatsError
from ketastats.validate import ValidationReport, coerce_sessions, validate_file, validate_sessions

PROBLEM_COLUMNS = ["file", "row", "column", "value", "rule", "severity", "message"]
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

TRICKY = ["", " ", "NA", "nan", "None", "<0.15", "< 0.2", "<LOD", "<", "<-1", ">5", "90+",
          "1e400", "-0", "0x1A", "1_000", " 7 ", "٣", "true", "False", "2024-01-05",
          "a@b.org", "P3A9F0C", "respiratory", "Mild", "1.0", "6", "0", "1", "-1", "60",
          "\x00", "\u200b", "inf", "-inf", "9" * 40]

cell = st.one_of(
    st.none(),
    st.sampled_from(TRICKY),
    st.text(max_size=10),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.dates(min_value=datetime.date(1900, 1, 1)),
)
names = st.one_of(st.sampled_from([*COLUMNS, "_source_row", "email", "redcap_event_name"]),
                  st.text(max_size=8), st.integers(min_value=-3, max_value=3))


@st.composite
def arbitrary_tables(draw):
    n_rows = draw(st.integers(min_value=0, max_value=7))
    n_cols = draw(st.integers(min_value=0, max_value=8))
    columns = draw(st.lists(names, min_size=n_cols, max_size=n_cols))
    data = []
    for _ in columns:
        kind = draw(st.sampled_from(["mixed", "float", "int", "bool", "str"]))
        if kind == "mixed":
            col = pd.Series(draw(st.lists(cell, min_size=n_rows, max_size=n_rows)), dtype=object)
        elif kind == "float":
            col = pd.Series(draw(st.lists(st.floats(allow_nan=True, allow_infinity=True),
                                          min_size=n_rows, max_size=n_rows)), dtype="float64")
        elif kind == "int":
            col = pd.Series(draw(st.lists(st.integers(-10**12, 10**12), min_size=n_rows,
                                          max_size=n_rows)), dtype="int64")
        elif kind == "bool":
            col = pd.Series(draw(st.lists(st.booleans(), min_size=n_rows, max_size=n_rows)),
                            dtype=bool)
        else:
            col = pd.Series(draw(st.lists(st.sampled_from(TRICKY), min_size=n_rows,
                                          max_size=n_rows)), dtype="string")
        data.append(col)
    df = pd.concat(data, axis=1) if data else pd.DataFrame(index=range(n_rows))
    df.columns = columns
    return df


@SETTINGS
@given(arbitrary_tables())
def test_validator_only_ever_raises_its_own_errors(df):
    try:
        report = validate_sessions(df, source="x.csv")
    except KetastatsError:
        return
    assert isinstance(report, ValidationReport)
    assert list(report.problems.columns) == PROBLEM_COLUMNS
    assert set(report.problems["severity"]) <= {"error", "warning"}
    assert report.ok == report.errors.empty
    assert isinstance(report.format_text(), str)
    if report.ok:
        # whatever validation accepts can be coerced
        out = coerce_sessions(df)
        assert list(out.columns)[:3] == ["patient_id", "session", "day"]
        assert len(out) == len(df)


@SETTINGS
@given(arbitrary_tables())
def test_coerce_only_ever_raises_its_own_errors(df):
    with contextlib.suppress(KetastatsError):
        out = coerce_sessions(df)
        assert len(out) == len(df)


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(["csv", "tsv", "xlsx", "parquet"]))
def test_validate_file_turns_any_bytes_into_a_report(tmp_path_factory, content, ext):
    path = tmp_path_factory.mktemp("raw") / f"sessions.{ext}"
    path.write_bytes(content)
    report = validate_file(path)
    assert isinstance(report, ValidationReport)
    assert path.read_bytes() == content


@st.composite
def valid_tables(draw):
    n_patients = draw(st.integers(min_value=1, max_value=5))
    # opaque random tokens hold a hexadecimal letter; all-digit ones (P000000) have the shape
    # of record numbers, which the guard refuses unless the cohort declares its id scheme
    token = st.integers(0, 16**6 - 1).filter(lambda x: not f"{x:06X}".isdigit())
    ids = draw(st.lists(token, min_size=n_patients, max_size=n_patients, unique=True))
    rows = []
    for pid in ids:
        n_sessions = draw(st.integers(min_value=1, max_value=6))
        gaps = draw(st.lists(st.integers(1, 9), min_size=n_sessions - 1,
                             max_size=n_sessions - 1))
        days = np.concatenate([[0], np.cumsum(gaps)]).astype(int)
        age = draw(st.one_of(st.integers(18, 89).map(str), st.just("90+")))
        for s in range(n_sessions):
            items = draw(st.lists(st.integers(0, 6), min_size=10, max_size=10))
            ill = draw(st.booleans())
            il6 = draw(st.one_of(st.none(), st.just("<0.15"),
                                 st.floats(0.15, 500).map(lambda v: f"{v:.3f}")))
            rows.append({
                "patient_id": f"P{pid:06X}", "session": str(s + 1), "day": str(days[s]),
                **{k: str(v) for k, v in zip(MADRS_ITEMS, items, strict=True)},
                "madrs": str(sum(items)), "ill": str(int(ill)),
                "illness_type": draw(st.sampled_from(["respiratory", "Influenza-like",
                                                      "gastrointestinal"])) if ill else None,
                "il6_pg_ml": il6, "age": age,
            })
    df = pd.DataFrame(rows)
    return df.sample(frac=1, random_state=draw(st.integers(0, 1000)))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_tables())
def test_valid_tables_pass_and_coerce(df):
    report = validate_sessions(df)
    assert report.errors.empty, report.format_text()
    assert not report.problems["rule"].str.startswith("identifier").any()
    out = coerce_sessions(df)
    assert len(out) == len(df)
    keys = list(zip(out["patient_id"], out["session"], strict=True))
    assert keys == sorted(keys)
    assert (out["madrs"] == out[list(MADRS_ITEMS)].sum(axis=1)).all()
    assert out["day"].dtype == "int64"
    assert set(out["illness_type"].dropna().astype(str)) <= {
        "respiratory", "influenza_like", "gastrointestinal"}
    censored = df["il6_pg_ml"].eq("<0.15").sum()
    assert int(out["il6_pg_ml_censored"].sum()) == int(censored)
