"""A corpus of identifiers where they hide (issue 21) and of legitimate columns the guard
must accept.

Every case is one small session table (two patients, two sessions each, all valid) with one
column added or replaced. A refused case must give an ``identifier:<kind>`` error of the
expected kind, and the offending value must not appear anywhere in what validation writes
or says: the problems table (as CSV), the report text and the exception. An accepted case
must give no identifier error at all and pass validation.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from ketastats.exceptions import KetastatsError
from ketastats.validate import validate_sessions

IDS = ["P3A9F0C", "P3A9F0C", "P0B41E7", "P0B41E7"]


def base_table() -> pd.DataFrame:
    """Two patients with two valid sessions each, all values text (as read from a CSV)."""
    return pd.DataFrame({
        "patient_id": IDS,
        "session": ["1", "2", "1", "2"],
        "day": ["0", "3", "0", "4"],
        "madrs": ["31", "22", "27", "12"],
        "ill": ["0", "1", "0", "0"],
        "sex": ["female", "female", "male", "male"],
        "il6_pg_ml": ["1.20", "<0.15", "3.4", "2.25"],
        "dose_mg_kg": ["0.5", "0.5", "0.75", "0.75"],
    })


def pair(a, b) -> list:
    """``a`` for the first patient's two rows, ``b`` for the second's."""
    return [a, a, b, b]


# (case, column, values, verdict, kind, cohort options). verdict "refuse" needs an
# identifier error of rule identifier:<kind>; "accept" needs none.
CASES = [
    # --- patient_id must look like an opaque token -------------------------------------
    ("id_name_and_number", "patient_id", pair("Ann Lee 42", "P0B41E7"), "refuse", "name", {}),
    ("id_initials_and_birth_date", "patient_id", pair("JS19620306", "P0B41E7"), "refuse",
     "date", {}),
    ("id_letter_and_date", "patient_id", pair("P19620301", "P0B41E7"), "refuse", "date", {}),
    ("id_dashed_date", "patient_id", pair("JS-1962-03-06", "P0B41E7"), "refuse", "date", {}),
    ("id_six_digit_mrn", "patient_id", pair("482913", "517204"), "refuse", "medical_record",
     {}),
    ("id_letter_prefixed_mrn", "patient_id", pair("E4829131", "E5172046"), "refuse",
     "medical_record", {}),
    ("id_word_prefixed_mrn", "patient_id", pair("MRN0048291", "MRN0051720"), "refuse",
     "medical_record", {}),
    ("id_letter_six_digits", "patient_id", pair("H482913", "H517204"), "refuse",
     "medical_record", {}),
    ("id_mrn_among_tokens", "patient_id", pair("A4829131", "P0B41E7"), "refuse",
     "medical_record", {}),
    ("id_parquet_integers", "patient_id", pd.Series(pair(48291307, 51720468), dtype="int64"),
     "refuse", "medical_record", {}),
    ("id_parquet_float_integers", "patient_id",
     pd.Series(pair(48291307.0, 51720468.0), dtype="float64"), "refuse", "medical_record", {}),
    ("id_camel_case_name", "patient_id", pair("AnnLee42", "P0B41E7"), "refuse", "name", {}),
    ("id_dotted_lowercase_name", "patient_id", pair("ann.lee", "P0B41E7"), "refuse", "name",
     {}),
    ("id_upper_case_name", "patient_id", pair("LEE_ANN", "P0B41E7"), "refuse", "name", {}),
    ("id_email", "patient_id", pair("ann.lee@example.org", "P0B41E7"), "refuse", "email", {}),
    ("id_outside_declared_scheme", "patient_id", pair("S000123", "X99"), "refuse",
     "id_scheme", {"id_pattern": r"S\d{6}"}),
    ("id_declared_scheme_with_date", "patient_id", pair("S19620306", "S00000002"), "refuse",
     "date", {"id_pattern": r"S\d{6,8}"}),
    # legitimate ids
    ("id_hex_tokens", "patient_id", pair("P3A9F0C", "P0B41E7"), "accept", None, {}),
    ("id_hex_token_all_digits", "patient_id", pair("P3A9F0C", "P221195"), "accept", None, {}),
    ("id_short_study_numbers", "patient_id", pair("P001", "P002"), "accept", None, {}),
    ("id_small_integers", "patient_id", pd.Series(pair(1, 2), dtype="int64"), "accept", None,
     {}),
    ("id_uuid", "patient_id", pair("3f2a9c1e-4bce-4d0a-9e7f-0a1b2c3d4e5f",
                                   "9b8e7d6c-5a4f-4e3d-8c2b-1a0f9e8d7c6b"), "accept", None,
     {}),
    ("id_declared_scheme", "patient_id", pair("S000123", "S000124"), "accept", None,
     {"id_pattern": r"S\d{6}"}),
    # --- site is a code --------------------------------------------------------------
    ("site_hospital", "site", pair("Mercy Hospital", "B"), "refuse", "site", {}),
    ("site_city", "site", pair("Springfield", "B"), "refuse", "site", {}),
    ("site_short_city", "site", pair("Bonn", "B"), "refuse", "site", {}),
    ("site_lowercase_name", "site", pair("ann lee", "B"), "refuse", "site", {}),
    ("site_phone", "site", pair("617-555-0100", "B"), "refuse", "phone", {}),
    ("site_zip", "site", pair("02115", "B"), "refuse", "site", {}),
    ("site_not_declared", "site", pair("north", "C"), "refuse", "site",
     {"sites": ["north", "south"]}),
    ("site_codes", "site", pair("A", "07"), "accept", None, {}),
    ("site_acronym", "site", pair("MGH", "S-01"), "accept", None, {}),
    ("site_declared", "site", pair("north", "south"), "accept", None,
     {"sites": ["north", "south"]}),
    # --- dates in any common format, in columns that would be dropped ------------------
    ("iso_datetime", "visit_time", pair("2024-03-05T14:30:00", "2024-03-07T09:00:00"),
     "refuse", "date", {}),
    ("datetime_with_space", "visit_time", pair("2024-03-05 14:30", "2024-03-07 09:00"),
     "refuse", "date", {}),
    ("compact_date_text", "visit", pair("20240305", "20240307"), "refuse", "date", {}),
    ("compact_date_number", "visit", pd.Series(pair(20240305, 20240307), dtype="int64"),
     "refuse", "date", {}),
    ("year_month", "onset", pair("2024-03", "2024-04"), "refuse", "date", {}),
    ("month_slash_year", "onset", pair("03/2024", "04/2024"), "refuse", "date", {}),
    ("month_name_year", "onset", pair("March 2024", "April 2024"), "refuse", "date", {}),
    ("month_name_day", "onset", pair("March 5", "5th of April"), "refuse", "date", {}),
    ("excel_serial_in_date_column", "date_offset", pd.Series(pair(45356, 45358),
                                                             dtype="int64"),
     "refuse", "date", {}),
    ("excel_serial_text", "infusion_date_shift", pair("45356", "45358.5"), "refuse", "date",
     {}),
    # --- other shapes in dropped columns ---------------------------------------------
    ("zip_text", "home", pair("02115", "10027"), "refuse", "zip", {}),
    ("zip_numbers", "area", pd.Series(pair(90210, 10027), dtype="int64"), "refuse", "zip",
     {}),
    ("phone_ten_digits", "callback", pd.Series(pair(6175550100, 2125550199), dtype="int64"),
     "refuse", "phone", {}),
    ("phone_ten_digit_text", "callback", pair("6175550100", "2125550199"), "refuse", "phone",
     {}),
    ("lowercase_names", "referrer", pair("ann lee", "john smith"), "refuse", "name", {}),
    ("upper_case_names", "referrer", pair("ANN LEE", "JOHN SMITH"), "refuse", "name", {}),
    ("obfuscated_email_words", "contact", pair("ann at example dot com", "x"), "refuse",
     "email", {}),
    ("obfuscated_email_brackets", "contact", pair("ann [at] example [dot] org", "x"),
     "refuse", "email", {}),
    ("obfuscated_email_parens", "contact", pair("ann(at)example.org", "x"), "refuse",
     "email", {}),
    ("record_number_column", "hosp_no", pd.Series(pair(4829131, 5172046), dtype="int64"),
     "refuse", "medical_record", {}),
    # --- identifiers in contract columns: refused, and never echoed by other rules -------
    ("name_in_score", "madrs", ["Ann Lee", "22", "27", "12"], "refuse", "name", {}),
    ("email_in_category", "sex", pair("ann.lee@example.org", "male"), "refuse", "email", {}),
    ("name_in_category", "sex", pair("Ann Lee", "male"), "refuse", "name", {}),
    ("place_varies_within_patient", "site", ["Mercy Hospital", "B", "B", "B"], "refuse",
     "site", {}),
    ("duplicate_session_of_named_id", "patient_id", ["Ann Lee 42", "Ann Lee 42", "Ann Lee 42",
                                                     "P0B41E7"], "refuse", "name", {}),
    # --- legitimate columns that look like identifiers by name ---------------------------
    ("date_offset", "date_offset", pair("-2", "0"), "accept", None, {}),
    ("date_offset_numbers", "date_offset", pd.Series([0, 3, 0, 4], dtype="int64"), "accept",
     None, {}),
    ("dose_season", "dose_season", pair("winter", "summer"), "accept", None, {}),
    ("chart_reviewed", "chart_reviewed", pair("yes", "no"), "accept", None, {}),
    ("ip_dose", "ip_dose", pair("0.5", "1.0"), "accept", None, {}),
    ("mac_score", "mac_score", pair("1.2", "0.8"), "accept", None, {}),
    ("policy_arm", "policy_arm", pair("A", "B"), "accept", None, {}),
    ("illness_name", "illness_name", pair("common cold", "Influenza"), "accept", None, {}),
    ("assay_version", "assay_version", pair("1.2.3.4", "1.2.3.4"), "accept", None, {}),
    ("platelets", "platelets", pd.Series(pair(250000, 180000), dtype="int64"), "accept", None,
     {}),
    ("cell_counts", "wbc_per_ul", pair("7400", "10250"), "accept", None, {}),
    ("blood_pressure", "bp", pair("120/80", "135/85"), "accept", None, {}),
    ("year_only", "year", pair("2023", "2024"), "accept", None, {}),
    ("lab_flags", "lab_flag", pair("H", "N"), "accept", None, {}),
    ("two_word_levels", "response_class", pair("not ill", "partial response"), "accept",
     None, {}),
]


def build(column: str, values) -> pd.DataFrame:
    df = base_table()
    if isinstance(values, pd.Series):
        values = values.reset_index(drop=True)
    df[column] = values
    return df


def secrets(values) -> list[str]:
    """The strings of a case's values that must never be echoed (not the base table's)."""
    base = set(base_table().astype(str).to_numpy().ravel())
    out = set()
    for v in (values.tolist() if isinstance(values, pd.Series) else values):
        text = str(int(v)) if isinstance(v, (int, float, np.integer, np.floating)) and \
            float(v).is_integer() else str(v)
        if text not in base and len(text) > 2:
            out.add(text)
    return sorted(out)


def everything_said(report) -> str:
    """All that validation writes or says: the problems CSV, the text, the exception."""
    buf = io.StringIO()
    report.problems.to_csv(buf, index=False)
    said = [buf.getvalue(), report.format_text()]
    try:
        report.raise_for_errors()
    except KetastatsError as exc:
        said.append(str(exc))
    return "\n".join(said)


def verdict(case):
    """(identifier rules found, report, leaked secrets) for one case."""
    _, column, values, _, _, options = case
    report = validate_sessions(build(column, values), **options)
    rules = set(report.errors["rule"].astype(str))
    ident = {r for r in rules if r.startswith("identifier:")}
    said = everything_said(report)
    leaked = [s for s in secrets(values) if s in said]
    return ident, report, leaked


def test_the_base_table_is_valid():
    report = validate_sessions(base_table())
    assert report.problems.empty, report.format_text()


def test_the_corpus_covers_the_issue():
    refused = [c for c in CASES if c[3] == "refuse"]
    accepted = [c for c in CASES if c[3] == "accept"]
    assert len(refused) >= 45 and len(accepted) >= 20
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", [c for c in CASES if c[3] == "refuse"], ids=lambda c: c[0])
def test_identifiers_are_refused_and_never_echoed(case):
    ident, report, leaked = verdict(case)
    assert f"identifier:{case[4]}" in ident, report.format_text()
    assert secrets(case[2]), "a refused case needs a value to look for"
    assert leaked == [], report.format_text()


@pytest.mark.parametrize("case", [c for c in CASES if c[3] == "accept"], ids=lambda c: c[0])
def test_legitimate_columns_are_accepted(case):
    ident, report, _ = verdict(case)
    assert ident == set(), report.format_text()
    assert report.ok, report.format_text()


# --- config text published in provenance ------------------------------------------------
def test_config_text_in_provenance_passes_the_guard(tmp_path):
    import json

    import yaml

    from ketastats.identifiers import redact_provenance
    from ketastats.pipeline import provenance

    cohort = {
        "input": "data/raw/Ann Lee 1962-03-06.csv",
        "recode": {"sex": {"Ann Lee 555-0100": "female", "F": "female"},
                   "site": {"Mercy Hospital": "A", "Springfield": "B", "07": "C"}},
        "safe_columns": ["ann_lee_contact", "clinic_code"],
        "columns": {"patient_id": "StudyID"},
    }
    config = {"cohort": {"site_a": cohort}, "models": {"primary": {"label": "Primary"}},
              "report": {"small_cell_threshold": 10}}
    info = {"file": "data/raw/jsmith_19620306.csv", "sha256": "ab" * 32}
    prov = provenance(config, info, tmp_path)
    prov["command"] = "ketastats run --config /home/ann.lee/config.yaml --cores 2"
    shown = json.dumps(redact_provenance(prov))
    for secret in ("Ann Lee", "555-0100", "1962-03-06", "ann_lee", "ann.lee", "jsmith",
                   "19620306", "Mercy Hospital", "Springfield"):
        assert secret not in shown, secret
    # what is not an identifier stays readable, and the checksum is kept
    kept = yaml.safe_load(prov["config_yaml"])["cohort"]["site_a"]
    assert kept["recode"]["sex"]["F"] == "female" and kept["recode"]["site"]["07"] == "C"
    assert kept["safe_columns"] == ["[redacted]", "clinic_code"]
    assert kept["columns"] == {"patient_id": "StudyID"}
    assert prov["input"]["sha256"] == "ab" * 32
    assert "--cores 2" in redact_provenance(prov)["command"]
    assert redact_provenance(redact_provenance(prov)) == redact_provenance(prov)


def test_the_shipped_config_is_published_unchanged(tmp_path):
    from pathlib import Path

    from ketastats.config import load_config
    from ketastats.identifiers import redact_config, redact_provenance
    from ketastats.pipeline import provenance

    config = load_config(Path(__file__).resolve().parents[1] / "config" / "config.yaml")
    assert redact_config(config) == config
    info = {"file": config["cohorts"]["demo"]["input"], "sha256": "0" * 64}
    prov = provenance(config, info, tmp_path)
    assert prov["input"]["file"] == "data/raw/demo/sessions.csv"
    assert redact_provenance(prov) == prov
