"""Readers on real-format fixtures: CSV, TSV, semicolon CSV, Excel (.xlsx), Parquet and
REDCap raw exports with their data dictionaries; the cohort mapping; checksums."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pandas as pd
import pytest

from ketastats.exceptions import ConfigError, DataValidationError
from ketastats.identifiers import scan_identifiers
from ketastats.io import (
    parse_choices,
    read_cohort,
    read_redcap,
    read_table,
    sha256_file,
    verify_checksum,
)
from ketastats.validate import coerce_sessions, validate_sessions

DATA = Path(__file__).parent / "data" / "io"


def test_csv_is_read_as_text_without_guessing():
    df = read_table(DATA / "sessions.csv")
    assert list(df.columns)[:3] == ["patient_id", "session", "day"]
    assert df["il6_pg_ml"].tolist()[1] == "<0.15"
    assert df["site"].iloc[0] == "007"  # leading zeros survive
    assert df["age"].tolist()[-1] == "90+"
    assert pd.isna(df["il6_pg_ml"].iloc[-1])  # "NA" is missing
    # the blank line is dropped but the index keeps file lines: index + 2 == line
    assert df.index.tolist() == [0, 1, 3, 4, 5]


def test_cohort_rows_are_file_lines():
    df = read_cohort({"input": str(DATA / "sessions.csv")})
    lines = (DATA / "sessions.csv").read_text().splitlines()
    for pid, session, line in zip(df["patient_id"], df["session"], df["_source_row"],
                                  strict=True):
        assert lines[line - 1].startswith(f"{pid},{session},")


def test_tsv_and_semicolon_csv():
    tsv = read_table(DATA / "sessions.tsv")
    assert tsv.shape == (2, 4) and tsv["madrs"].tolist() == ["32", "27"]
    semi = read_table(DATA / "sessions_semicolon.csv")
    assert list(semi.columns) == ["patient_id", "session", "day", "madrs"]
    assert semi["madrs"].tolist() == ["32", "27,5"]


def test_excel_fixture_sheets_and_rows():
    df = read_table(DATA / "sessions.xlsx")
    assert df.shape[0] == 4
    assert df["crp_mg_l"].tolist()[1] == "<0.15"
    assert df.index.tolist() == [0, 1, 3, 4]  # sheet row 4 is blank
    assert df["age"].tolist()[-1] == "90+"
    same = read_table(DATA / "sessions.xlsx", sheet="sessions")
    pd.testing.assert_frame_equal(df, same)
    dated = read_table(DATA / "sessions.xlsx", sheet=1)
    problems = scan_identifiers(dated)
    assert set(problems["rule"]) == {"identifier:date"}
    assert set(problems["column"]) == {"infusion_on"}


def test_excel_through_the_cohort_config_validates_and_coerces():
    cohort = {"input": str(DATA / "sessions.xlsx"), "sheet": "sessions",
              "recode": {"sex": {"F": "female", "M": "male"}}}
    df = read_cohort(cohort)
    assert df["_source_row"].tolist() == [2, 3, 5, 6]
    report = validate_sessions(df)
    assert report.ok, report.format_text()
    out = coerce_sessions(df)
    assert out["crp_mg_l_censored"].tolist() == [False, False, True, False]  # sorted by id
    assert out["sex"].astype(str).tolist() == ["male", "female", "female", "female"]


def test_parquet_round_trip(tmp_path):
    src = read_table(DATA / "sessions.csv").reset_index(drop=True)
    path = tmp_path / "sessions.parquet"
    src.to_parquet(path)
    back = read_table(path)
    assert back.shape == src.shape
    assert back["il6_pg_ml"].tolist()[1] == "<0.15"
    assert read_table(path, format="parquet").shape == src.shape


def test_redcap_repeating_instruments_become_sessions():
    df = read_redcap(DATA / "redcap_repeating_export.csv",
                     DATA / "redcap_repeating_dictionary.csv")
    assert len(df) == 5
    assert df["record_id"].tolist() == ["1", "1", "1", "2", "2"]
    assert df["session"].tolist() == ["1", "2", "3", "1", "2"]
    # baseline (non-repeating) fields copied to every session of the record
    assert df["age"].tolist() == ["45", "45", "45", "90+", "90+"]
    # radio/dropdown codes become labels; checkboxes stay 0/1 columns
    assert df["sex"].tolist() == ["Female"] * 3 + ["Male"] * 2
    assert df["illness_type"].tolist()[1] == "Respiratory"
    assert df["meds___2"].tolist() == ["0", "1", "1", "0", "0"]
    assert df["_source_row"].tolist() == [3, 4, 5, 7, 8]
    assert not any(c.endswith("_complete") for c in df.columns)


def test_redcap_longitudinal_events_become_sessions():
    df = read_redcap(DATA / "redcap_longitudinal_export.csv",
                     DATA / "redcap_longitudinal_dictionary.csv")
    assert df["study_id"].tolist() == ["K-101"] * 3 + ["K-102"] * 2
    assert df["session"].tolist() == ["1", "2", "3", "1", "2"]  # numbered: no session field
    assert df["redcap_event_name"].tolist()[0] == "infusion_1_arm_1"
    assert df["sex"].tolist() == ["Female"] * 3 + ["Male"] * 2
    assert df["madrs_4"].tolist() == ["4", "4", "5", "3", "3"]


def test_redcap_missed_event_stays_a_missing_session(tmp_path, caplog):
    # K-102 missed infusion_2: its infusion_3 is session 3, not a renumbered session 2
    lines = (DATA / "redcap_longitudinal_export.csv").read_text().splitlines()
    kept = [ln for ln in lines if not ln.startswith("K-102,infusion_2_arm_1")]
    assert len(kept) == len(lines) - 1
    k102_third = next(ln for ln in lines if ln.startswith("K-101,infusion_3_arm_1"))
    kept.append(k102_third.replace("K-101", "K-102", 1))
    (tmp_path / "export.csv").write_text("\n".join(kept) + "\n")
    with caplog.at_level("INFO", logger="ketastats.io.redcap"):
        df = read_redcap(tmp_path / "export.csv", DATA / "redcap_longitudinal_dictionary.csv")
    k102 = df[df["study_id"] == "K-102"]
    assert k102["redcap_event_name"].tolist() == ["infusion_1_arm_1", "infusion_3_arm_1"]
    assert k102["session"].tolist() == ["1", "3"]
    assert df.loc[df["study_id"] == "K-101", "session"].tolist() == ["1", "2", "3"]
    assert "1 missed visit(s)" in caplog.text
    cohort = {"input": str(tmp_path / "export.csv"),
              "redcap_dictionary": str(DATA / "redcap_longitudinal_dictionary.csv"),
              "columns": {"patient_id": "study_id", "day": "visit_day", "ill": "sick"}}
    report = validate_sessions(read_cohort(cohort))
    assert report.ok, report.format_text()  # a gap in the sessions is a missing session


def test_redcap_event_order_is_merged_across_records(tmp_path):
    # the first record lacks infusion_1, so event order must come from the others too
    dd = (DATA / "redcap_longitudinal_dictionary.csv").read_text().splitlines()
    (tmp_path / "dd.csv").write_text("\n".join(dd[:5]) + "\n")
    export = (
        "study_id,redcap_event_name,age,sex,enrolment_complete,visit_day,madrs_complete\n"
        "K-1,enrolment_arm_1,50,1,2,,\n"
        "K-1,infusion_2_arm_1,,,,3,2\n"
        "K-1,infusion_3_arm_1,,,,7,2\n"
        "K-2,enrolment_arm_1,40,0,2,,\n"
        "K-2,infusion_1_arm_1,,,,0,2\n"
        "K-2,infusion_2_arm_1,,,,3,2\n"
    )
    (tmp_path / "export.csv").write_text(export)
    df = read_redcap(tmp_path / "export.csv", tmp_path / "dd.csv")
    assert df["session"].tolist() == ["2", "3", "1", "2"]


def test_redcap_repeating_events_become_sessions(tmp_path):
    # a longitudinal project whose "infusion" event repeats (instrument column empty)
    dd = (DATA / "redcap_longitudinal_dictionary.csv").read_text().splitlines()
    (tmp_path / "dd.csv").write_text("\n".join(dd[:5]) + "\n")  # study_id, age, sex, visit_day
    export = (
        "study_id,redcap_event_name,redcap_repeat_instrument,redcap_repeat_instance,age,sex,"
        "enrolment_complete,visit_day,madrs_complete\n"
        "K-7,enrolment_arm_1,,,61,0,2,,\n"
        "K-7,infusion_arm_1,,1,,,,0,2\n"
        "K-7,infusion_arm_1,,2,,,,3,2\n"
        "K-7,infusion_arm_1,,3,,,,7,2\n"
    )
    (tmp_path / "export.csv").write_text(export)
    df = read_redcap(tmp_path / "export.csv", tmp_path / "dd.csv")
    assert df["visit_day"].tolist() == ["0", "3", "7"]
    assert df["session"].tolist() == ["1", "2", "3"]
    assert df["age"].tolist() == ["61"] * 3 and df["sex"].tolist() == ["Male"] * 3
    assert df["_source_row"].tolist() == [3, 4, 5]


def test_redcap_cohort_validates_and_coerces():
    cohort = {"input": str(DATA / "redcap_longitudinal_export.csv"),
              "redcap_dictionary": str(DATA / "redcap_longitudinal_dictionary.csv"),
              "columns": {"patient_id": "study_id", "day": "visit_day", "ill": "sick"}}
    df = read_cohort(cohort)
    assert df.attrs["format"] == "redcap"
    report = validate_sessions(df)
    assert report.ok, report.format_text()
    out = coerce_sessions(df)
    assert out["madrs"].tolist() == [33, 28, 29, 39, 30]  # derived from the items


def test_redcap_repeating_cohort_with_checkbox_mapping():
    cohort = {"input": str(DATA / "redcap_repeating_export.csv"), "format": "redcap",
              "redcap_dictionary": str(DATA / "redcap_repeating_dictionary.csv"),
              "columns": {"patient_id": "record_id", "il6_pg_ml": "il6",
                          "benzodiazepine": "meds___1", "nsaid": "meds___2"}}
    df = read_cohort(cohort)
    report = validate_sessions(df)
    assert report.ok, report.format_text()
    out = coerce_sessions(df)
    assert out["nsaid"].tolist() == [0, 1, 1, 0, 0]
    assert out["il6_pg_ml_censored"].tolist() == [False, True, False, False, False]
    assert out["illness_severity"].astype(str).tolist()[1:3] == ["mild", "moderate"]


def test_redcap_identifier_fields_are_refused(tmp_path):
    dd = pd.read_csv(DATA / "redcap_repeating_dictionary.csv", dtype=str)
    dd.loc[dd["Variable / Field Name"] == "bmi", "Identifier?"] = "y"
    dd.to_csv(tmp_path / "dd.csv", index=False)
    shutil.copy(DATA / "redcap_repeating_export.csv", tmp_path / "export.csv")
    df = read_cohort({"input": str(tmp_path / "export.csv"),
                      "redcap_dictionary": str(tmp_path / "dd.csv"),
                      "columns": {"patient_id": "record_id", "il6_pg_ml": "il6"}})
    report = validate_sessions(df)
    assert ("identifier:declared", "bmi") in set(zip(report.errors["rule"],
                                                     report.errors["column"], strict=True))


def test_redcap_needs_a_real_dictionary():
    with pytest.raises(DataValidationError, match="REDCap data dictionary"):
        read_redcap(DATA / "redcap_repeating_export.csv", DATA / "sessions.csv")
    with pytest.raises(ConfigError, match="redcap_dictionary"):
        read_cohort({"input": str(DATA / "redcap_repeating_export.csv"), "format": "redcap"})


def test_parse_choices():
    assert parse_choices("1, Mild | 2, Moderate | 3, Severe") == {
        "1": "Mild", "2": "Moderate", "3": "Severe"}
    assert parse_choices(None) == {}


def test_mapping_problems_are_listed_together():
    with pytest.raises(ConfigError) as info:
        read_cohort({"input": str(DATA / "sessions.csv"),
                     "columns": {"patient_id": "subject", "day": "Day", "madrs": "madrs"}})
    text = str(info.value)
    assert "columns.patient_id" in text and "columns.day" in text
    assert "did you mean 'day'" in text


def test_mapping_keeps_unmapped_columns_and_recodes():
    df = read_cohort({"input": str(DATA / "sessions.csv"),
                      "columns": {"madrs": "madrs"},
                      "recode": {"sex": {"female": "F"}, "ill": {1: "yes"}}})
    assert "site" in df.columns  # extras kept for the guard
    assert df["sex"].tolist()[:2] == ["F", "F"]
    assert df["ill"].tolist()[1] == "yes"  # integer keys match text values


def test_mapping_collision_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="already has"):
        read_cohort({"input": str(DATA / "sessions.csv"), "columns": {"madrs": "age"}})


def test_relative_paths_are_relative_to_root():
    df = read_cohort({"input": "io/sessions.csv"}, root=DATA.parent)
    assert len(df) == 5
    assert df.attrs["source"].endswith("sessions.csv")


@pytest.mark.parametrize(("name", "content", "match"), [
    ("missing.csv", None, "not found"),
    ("old.xls", b"x", "xlsx"),
    ("data.json", b"{}", "extension"),
    ("latin.csv", b"a,b\n\xe9,1\n", "UTF-8"),
    ("empty.csv", b"", "empty"),
    ("fake.xlsx", b"plain text", "excel"),
])
def test_unreadable_files_raise_our_error(tmp_path, name, content, match):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataValidationError, match=match) as info:
        read_table(path)
    assert info.value.problems["rule"].tolist() == ["read"]


def test_encoding_can_be_set(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("patient_id,notes\nP3A9F0C,caf\xe9\n".encode("cp1252"))
    df = read_cohort({"input": str(path), "encoding": "cp1252"})
    assert df["notes"].iloc[0] == "caf\u00e9"


def test_checksum(tmp_path):
    path = DATA / "sessions.csv"
    assert sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    copy = tmp_path / "s.csv"
    shutil.copy(path, copy)
    digest = sha256_file(copy)
    verify_checksum(copy, digest)
    with copy.open("a") as fh:
        fh.write("P1,9,9,9\n")
    with pytest.raises(DataValidationError, match="changed") as info:
        verify_checksum(copy, digest)
    assert info.value.problems["rule"].tolist() == ["checksum"]
    with pytest.raises(DataValidationError):
        sha256_file(tmp_path / "nope.csv")
