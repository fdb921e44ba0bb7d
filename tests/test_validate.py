"""The validator: a corpus of bad inputs (one defect each, plus a few with many), the report,
file validation and the typed canonical table."""

from __future__ import annotations

import datetime
import hashlib

import numpy as np
import pandas as pd
import pytest

from ketastats.exceptions import DataValidationError, IdentifierError, KetastatsError
from ketastats.validate import (
    ValidationReport,
    coerce_sessions,
    validate_file,
    validate_sessions,
)

ITEMS = [f"madrs_{i}" for i in range(1, 11)]


def valid_table() -> pd.DataFrame:
    """A small, fully valid session table, all values as text (as read from a CSV)."""
    rows = []
    item_rows = [
        [4, 4, 3, 4, 3, 3, 4, 3, 3, 2],
        [3, 3, 3, 4, 3, 3, 3, 3, 2, 1],
        [2, 2, 2, 5, 4, 4, 4, 3, 2, 1],
        [1, 1, 1, 2, 1, 1, 1, 1, 1, 0],
    ]
    patients = [("P3A9F0C", "45", "female"), ("P00A1B2", "90+", "male"),
                ("PFFE012", "18", "other")]
    days = ["0", "2", "4", "7"]
    for p, (pid, age, sex) in enumerate(patients):
        for s in range(4):
            items = item_rows[(s + p) % 4]
            ill = "1" if (p == 0 and s == 2) else "0"
            rows.append({
                "patient_id": pid, "session": str(s + 1), "day": days[s],
                **{name: str(v) for name, v in zip(ITEMS, items, strict=True)},
                "madrs": str(sum(items)),
                "qids_sr16": str(12 - s),
                "ill": ill,
                "illness_type": "respiratory" if ill == "1" else "",
                "illness_severity": "mild" if ill == "1" else "",
                "days_since_onset": "2" if ill == "1" else "",
                "il6_pg_ml": "<0.15" if (p == 1 and s == 0) else f"{1.5 + s + p:.2f}",
                "tnfa_pg_ml": f"{2.0 + s:.1f}",
                "tnfa_pg_ml_lod": "0.2",
                "crp_mg_l": f"{1.1 + p:.1f}",
                "dose_mg_kg": "0.5" if s < 3 else "0.75",
                "infusion_minutes": "40",
                "postponed": "1" if (p == 2 and s == 3) else "0",
                "delay_days": "3" if (p == 2 and s == 3) else "",
                "dose_changed": "1" if s == 3 else "0",
                "benzodiazepine": "1" if p == 0 else "0",
                "nsaid": "1" if ill == "1" else "0",
                "age": age, "sex": sex, "bmi": f"{27 + p}.5",
            })
    df = pd.DataFrame(rows)
    return df.replace("", np.nan)


def rows_of(df: pd.DataFrame, pid: str, session: int | None = None) -> pd.Series:
    mask = df["patient_id"] == pid
    if session is not None:
        mask &= df["session"] == str(session)
    return mask


def setcell(pid: str, session: int, column: str, value):
    def mutate(df):
        df = df.copy()
        if column not in df.columns:
            df[column] = np.nan
            df[column] = df[column].astype(object)
        df.loc[rows_of(df, pid, session), column] = value
        return df
    return mutate


def setpatient(pid: str, column: str, value):
    def mutate(df):
        df = df.copy()
        if column not in df.columns:
            df[column] = np.nan
            df[column] = df[column].astype(object)
        df.loc[rows_of(df, pid), column] = value
        return df
    return mutate


def drop(*columns):
    return lambda df: df.drop(columns=list(columns))


def add_column(name, values_fn):
    def mutate(df):
        df = df.copy()
        df[name] = values_fn(len(df))
        return df
    return mutate


def chain(*fns):
    def mutate(df):
        for f in fns:
            df = f(df)
        return df
    return mutate


def duplicate_row(df):
    return pd.concat([df, df.iloc[[5]]], ignore_index=True)


def duplicate_column(df):
    out = df.copy()
    cols = list(out.columns)
    out = pd.concat([out, out[["madrs"]]], axis=1)
    out.columns = [*cols, "madrs"]
    return out


def shift_first_day(df):
    df = df.copy()
    pid = "P3A9F0C"
    df.loc[rows_of(df, pid), "day"] = ["1", "3", "5", "8"]
    return df


def cycle(values):
    return lambda n: [values[i % len(values)] for i in range(n)]


#: the illness on the planned day of the one postponed infusion (PFFE012, session 4): valid
with_planned = chain(
    setcell("PFFE012", 4, "planned_ill", "1"),
    setcell("PFFE012", 4, "planned_illness_type", "influenza_like"),
    setcell("PFFE012", 4, "planned_illness_severity", "moderate"),
    setcell("PFFE012", 4, "planned_days_since_onset", "1"),
    setcell("PFFE012", 4, "planned_illness_medication", "0"),
)


# (id, mutation, rule, column). Each case has exactly one defect.
CORPUS = [
    ("no_patient_id_column", drop("patient_id"), "required", "patient_id"),
    ("no_session_column", drop("session"), "required", "session"),
    ("no_day_column", drop("day"), "required", "day"),
    ("no_score_at_all", drop("madrs", "qids_sr16", *ITEMS), "required", "madrs"),
    ("madrs_items_incomplete", drop("madrs_3"), "required", "madrs_3"),
    ("empty_patient_id", setcell("P00A1B2", 2, "patient_id", np.nan), "required", "patient_id"),
    ("empty_session", setcell("P00A1B2", 4, "session", np.nan), "required", "session"),
    ("empty_day", setcell("P00A1B2", 4, "day", " "), "required", "day"),
    ("session_not_a_number", setcell("P00A1B2", 4, "session", "four"), "type", "session"),
    ("session_fraction", setcell("P00A1B2", 4, "session", "4.5"), "type", "session"),
    ("session_zero", setcell("P00A1B2", 4, "session", "0"), "range", "session"),
    ("day_negative", setcell("P00A1B2", 1, "day", "-1"), "range", "day"),
    ("day_fraction", setcell("P00A1B2", 3, "day", "4.5"), "type", "day"),
    ("madrs_above_60", setcell("P3A9F0C", 1, "madrs", "75"), "range", "madrs"),
    ("madrs_text", setcell("P3A9F0C", 1, "madrs", "severe"), "type", "madrs"),
    ("madrs_item_above_6", setcell("P3A9F0C", 2, "madrs_4", "7"), "range", "madrs_4"),
    ("madrs_item_negative", setcell("P3A9F0C", 2, "madrs_9", "-1"), "range", "madrs_9"),
    ("items_do_not_add_up", setcell("P3A9F0C", 2, "madrs", "31"), "items_total", "madrs"),
    ("qids_above_27", setcell("PFFE012", 1, "qids_sr16", "28"), "range", "qids_sr16"),
    ("hamd_above_52", chain(add_column("hamd17", cycle(["20"])),
                            setcell("PFFE012", 1, "hamd17", "53")), "range", "hamd17"),
    ("phq9_above_27", chain(add_column("phq9", cycle(["12"])),
                            setcell("PFFE012", 2, "phq9", "30")), "range", "phq9"),
    ("bdi2_above_63", chain(add_column("bdi2", cycle(["30"])),
                            setcell("PFFE012", 2, "bdi2", "64")), "range", "bdi2"),
    ("ill_is_2", setcell("P00A1B2", 2, "ill", "2"), "range", "ill"),
    ("ill_is_text", setcell("P00A1B2", 2, "ill", "maybe"), "type", "ill"),
    ("unknown_illness_type", setcell("P3A9F0C", 3, "illness_type", "covid"), "level",
     "illness_type"),
    ("unknown_severity", setcell("P3A9F0C", 3, "illness_severity", "critical"), "level",
     "illness_severity"),
    ("unknown_sex", setpatient("PFFE012", "sex", "unknown"), "level", "sex"),
    ("type_while_not_ill", setcell("P00A1B2", 2, "illness_type", "respiratory"),
     "cross_field:not_ill_details", "illness_type"),
    ("onset_while_not_ill", setcell("P00A1B2", 2, "days_since_onset", "1"),
     "cross_field:not_ill_details", "days_since_onset"),
    ("days_since_onset_negative", setcell("P3A9F0C", 3, "days_since_onset", "-2"), "range",
     "days_since_onset"),
    ("postponed_without_delay", setcell("PFFE012", 4, "delay_days", np.nan),
     "cross_field:postponed_delay", "delay_days"),
    ("delay_without_postponed", setcell("PFFE012", 2, "delay_days", "4"),
     "cross_field:delay_not_postponed", "delay_days"),
    ("planned_ill_on_an_infusion_given_as_planned", chain(with_planned, setcell("P00A1B2", 2, "planned_ill", "1")),
     "cross_field:planned_not_postponed", "planned_ill"),
    ("planned_severity_on_an_infusion_given_as_planned",
     chain(with_planned, setcell("P3A9F0C", 3, "planned_illness_severity", "mild")),
     "cross_field:planned_not_postponed", "planned_illness_severity"),
    ("planned_columns_without_a_postponed_column", chain(with_planned, drop("postponed")),
     "cross_field:planned_not_postponed", "planned_ill"),
    ("planned_details_while_not_ill_on_the_planned_day", chain(with_planned, setcell("PFFE012", 4, "planned_ill", "0")),
     "cross_field:planned_not_ill_details", "planned_illness_type"),
    ("planned_details_without_planned_ill", chain(with_planned, drop("planned_ill")),
     "cross_field:planned_not_ill_details", "planned_illness_severity"),
    ("planned_ill_is_2", chain(with_planned, setcell("PFFE012", 4, "planned_ill", "2")), "range", "planned_ill"),
    ("planned_medication_is_text", chain(with_planned, setcell("PFFE012", 4, "planned_illness_medication", "maybe")),
     "type", "planned_illness_medication"),
    ("duplicate_patient_session", duplicate_row, "duplicate", "session"),
    ("day_not_increasing", setcell("P00A1B2", 3, "day", "2"), "day_order", "day"),
    ("session_1_not_day_0", shift_first_day, "cross_field:first_day", "day"),
    ("lod_string_malformed", setcell("P3A9F0C", 2, "il6_pg_ml", "<abc"), "lod_string",
     "il6_pg_ml"),
    ("lod_string_nd", setcell("P3A9F0C", 2, "il6_pg_ml", "ND"), "lod_string", "il6_pg_ml"),
    ("above_upper_limit", setcell("P3A9F0C", 2, "il6_pg_ml", ">100"), "lod_string",
     "il6_pg_ml"),
    ("lod_word_without_limit", setcell("P3A9F0C", 2, "il6_pg_ml", "<LOD"), "lod_string",
     "il6_pg_ml"),
    ("cytokine_negative", setcell("P3A9F0C", 2, "crp_mg_l", "-0.5"), "range", "crp_mg_l"),
    ("lod_mismatch", setcell("P3A9F0C", 2, "tnfa_pg_ml", "<0.3"), "cross_field:lod_mismatch",
     "tnfa_pg_ml"),
    ("lod_column_text", setcell("P3A9F0C", 2, "tnfa_pg_ml_lod", "low"), "type",
     "tnfa_pg_ml_lod"),
    ("age_over_89_not_top_coded", setpatient("P3A9F0C", "age", "93"), "identifier:age", "age"),
    ("age_text", setpatient("P3A9F0C", "age", "forty"), "type", "age"),
    ("age_fraction", setpatient("P3A9F0C", "age", "45.5"), "type", "age"),
    ("age_varies", setcell("P3A9F0C", 3, "age", "46"), "cross_field:baseline_varies", "age"),
    ("sex_varies", setcell("P3A9F0C", 3, "sex", "male"), "cross_field:baseline_varies", "sex"),
    ("dose_above_3", setcell("P3A9F0C", 1, "dose_mg_kg", "5"), "range", "dose_mg_kg"),
    ("infusion_minutes_text", setcell("P3A9F0C", 1, "infusion_minutes", "forty"), "type",
     "infusion_minutes"),
    ("medication_not_binary", setcell("P3A9F0C", 1, "benzodiazepine", "3"), "range",
     "benzodiazepine"),
    ("bmi_implausible", setpatient("P3A9F0C", "bmi", "5"), "range", "bmi"),
    ("year_implausible", add_column("year", cycle(["1850"])), "range", "year"),
    ("email_column", add_column("email", cycle(["ann@example.org", "bo@example.com"])),
     "identifier:email", "email"),
    ("email_value", add_column("contact", cycle(["call clinic", "j.doe@clinic.org"])),
     "identifier:email", "contact"),
    ("date_column_name", add_column("visit_date", cycle(["5", "7"])), "identifier:date",
     "visit_date"),
    ("date_values", add_column("visit", cycle(["2024-03-05", "2024-03-07"])), "identifier:date",
     "visit"),
    ("date_objects", add_column("when", cycle([datetime.date(2024, 3, 5)])), "identifier:date",
     "when"),
    ("phone_values", add_column("contact_info", cycle(["(555) 123-4567", "none"])),
     "identifier:phone", "contact_info"),
    ("mrn_like_patient_id", setpatient("PFFE012", "patient_id", "12345678"),
     "identifier:medical_record", "patient_id"),
    ("name_column", add_column("patient_name", cycle(["A", "B"])), "identifier:name",
     "patient_name"),
    ("name_values", add_column("referrer", cycle(["John Smith", "Jane Doe", "Smith, Ann"])),
     "identifier:name", "referrer"),
    ("ssn_values", add_column("extra", cycle(["123-45-6789", "x"])), "identifier:ssn", "extra"),
    ("zip_column", add_column("zip", cycle(["02115"])), "identifier:zip", "zip"),
    ("url_values", add_column("link_to", cycle(["https://clinic.example.org/p/1"])),
     "identifier:url", "link_to"),
    ("ip_values", add_column("source_host", cycle(["10.0.12.7"])), "identifier:ip",
     "source_host"),
    ("address_values", add_column("home", cycle(["12 Main Street", "4 Elm Rd"])),
     "identifier:address", "home"),
    ("device_serial_column", add_column("pump_serial", cycle(["AX-99812"])),
     "identifier:device", "pump_serial"),
    ("free_text_notes", add_column("notes", cycle(["felt unwell"])), "identifier:free_text",
     "notes"),
    ("duplicate_column_name", duplicate_column, "duplicate_column", "madrs"),
]


def test_the_base_table_is_valid():
    report = validate_sessions(valid_table())
    assert report.problems.empty, report.format_text()
    assert report.ok


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 40
    assert len({c[0] for c in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize(("case", "mutate", "rule", "column"), CORPUS,
                         ids=[c[0] for c in CORPUS])
def test_each_defect_is_reported_with_its_rule_and_column(case, mutate, rule, column):
    report = validate_sessions(mutate(valid_table()), source=f"{case}.csv")
    errors = report.errors
    assert not report.ok
    hits = errors[(errors["rule"] == rule) & (errors["column"] == column)]
    assert len(hits) >= 1, report.format_text()
    # one defect -> one kind of error
    assert set(errors["rule"]) == {rule}, report.format_text()
    assert (errors["file"] == f"{case}.csv").all()
    assert hits["message"].str.len().min() > 20


def test_the_planned_illness_of_a_postponed_infusion_is_valid_and_every_mix_up_listed():
    assert validate_sessions(with_planned(valid_table())).problems.empty
    # every planned detail on a wrong row at once, each with its file, row, column, value and fix
    bad = chain(with_planned, setcell("PFFE012", 4, "planned_ill", "0"),
                setcell("P00A1B2", 2, "planned_days_since_onset", "3"))(valid_table())
    errors = validate_sessions(bad, source="export.csv").errors
    details = errors[errors["rule"] == "cross_field:planned_not_ill_details"]
    assert details["column"].tolist() == ["planned_illness_type", "planned_illness_severity",
                                          "planned_days_since_onset", "planned_illness_medication"]
    assert details["value"].tolist() == ["influenza_like", "moderate", "1", "0"]
    assert (details["row"] == 13).all() and (details["file"] == "export.csv").all()
    assert details["message"].str.contains("but planned_ill = 0; clear it, or set planned_ill = 1").all()
    wrong_row = errors[errors["rule"] == "cross_field:planned_not_postponed"]
    assert wrong_row[["column", "row", "value"]].values.tolist() == [["planned_days_since_onset", 7, "3"]]
    assert "but postponed = 0" in wrong_row["message"].iloc[0]


def test_a_postponement_without_its_planned_illness_is_a_warning():
    # the column is kept, but this postponement's cell (or the severity) is empty: the decision
    # analysis leaves the point out, the rest of the data is fine
    report = validate_sessions(chain(with_planned, setcell("PFFE012", 4, "planned_illness_severity", np.nan))(
        valid_table()))
    assert report.ok
    assert report.warnings["rule"].tolist() == ["cross_field:planned_severity_missing"]
    assert report.warnings["row"].tolist() == [13]
    report = validate_sessions(setcell("P00A1B2", 2, "planned_ill", np.nan)(valid_table()))  # column, all empty
    assert report.ok
    assert report.warnings["rule"].tolist() == ["cross_field:planned_ill_missing"]
    assert report.warnings[["column", "row"]].values.tolist() == [["planned_ill", 13]]
    assert "leaves this postponement out" in report.warnings["message"].iloc[0]


def test_the_generator_writes_planned_illness_the_validator_accepts(tmp_path):
    from ketastats.simulate import simulate_cohort, write_cohort

    for scenario in ("decisions", "sickness"):
        path = write_cohort(simulate_cohort(150, seed=8, scenario=scenario), tmp_path / scenario)["sessions"]
        df = pd.read_csv(path, dtype=str, keep_default_na=False).replace("", np.nan)
        assert df["planned_ill"].notna().sum() > 5
        assert validate_sessions(df).errors.empty, scenario


def test_the_row_is_the_line_in_the_file():
    df = valid_table()
    df["_source_row"] = np.arange(len(df)) + 10
    bad = setcell("P3A9F0C", 2, "madrs", "75")(df)
    report = validate_sessions(bad)
    hit = report.errors[report.errors["rule"] == "range"]
    assert hit["row"].tolist() == [11]
    assert hit["value"].tolist() == ["75"]
    # without _source_row: position + 2 (header = line 1)
    report = validate_sessions(bad.drop(columns="_source_row"))
    assert report.errors.loc[report.errors["rule"] == "range", "row"].tolist() == [3]


def test_type_messages_hint_at_decimal_commas():
    report = validate_sessions(setpatient("P3A9F0C", "bmi", "27,5")(valid_table()))
    assert report.errors["rule"].unique().tolist() == ["type"]
    assert report.errors["message"].str.contains("decimal point").all()


def test_many_defects_are_all_collected():
    df = chain(
        setcell("P3A9F0C", 1, "madrs", "75"),
        setcell("P00A1B2", 2, "ill", "7"),
        setcell("P3A9F0C", 3, "illness_type", "covid"),
        setcell("PFFE012", 4, "delay_days", np.nan),
        add_column("email", cycle(["a@b.org"])),
        setcell("P3A9F0C", 2, "il6_pg_ml", "n.d."),
    )(valid_table())
    report = validate_sessions(df)
    found = set(zip(report.errors["rule"], report.errors["column"], strict=True))
    assert {("range", "madrs"), ("range", "ill"), ("level", "illness_type"),
            ("cross_field:postponed_delay", "delay_days"), ("identifier:email", "email"),
            ("lod_string", "il6_pg_ml")} <= found


def test_many_rows_with_one_problem_are_capped_with_a_count():
    big = pd.concat([valid_table()] * 30, ignore_index=True)
    big["patient_id"] = [f"P{i // 4:06X}" for i in range(len(big))]
    big["madrs"] = "99"
    report = validate_sessions(big)
    ranges = report.errors[report.errors["rule"] == "range"]
    assert len(ranges) == 51
    summary = ranges[ranges["row"].isna()]
    assert len(summary) == 1
    assert f"{len(big)} in total" in summary["message"].iloc[0]


@pytest.mark.parametrize(("mutate", "rule", "column"), [
    (setpatient("P3A9F0C", "il6_pg_ml", "<0.15"), "lod_fraction", "il6_pg_ml"),
    (add_column("clinic_visit_kind", cycle(["a", "b"])), "unknown_column",
     "clinic_visit_kind"),
    (setcell("P3A9F0C", 1, "madrs_2", np.nan), "items_incomplete", "madrs_1"),
    (setcell("P3A9F0C", 1, "tnfa_pg_ml", "0.1"), "cross_field:below_lod", "tnfa_pg_ml"),
    (setcell("P3A9F0C", 3, "illness_type", np.nan), "cross_field:ill_type_missing",
     "illness_type"),
])
def test_warnings_do_not_fail(mutate, rule, column):
    report = validate_sessions(mutate(valid_table()))
    assert report.ok, report.format_text()
    hits = report.warnings[(report.warnings["rule"] == rule)
                           & (report.warnings["column"] == column)]
    assert len(hits) >= 1, report.format_text()


def test_lod_fraction_threshold_is_per_marker_and_configurable():
    df = valid_table()
    df.loc[:3, "il6_pg_ml"] = "<0.15"  # 5 of 12 censored (42%)
    assert "lod_fraction" in set(validate_sessions(df).warnings["rule"])
    quiet = validate_sessions(df, lod_warn_fraction=0.5)
    assert "lod_fraction" not in set(quiet.warnings["rule"])


def test_safe_columns_override_the_guard():
    df = add_column("clinic_name", cycle(["North Clinic", "South Clinic"]))(valid_table())
    assert "identifier:name" in set(validate_sessions(df).errors["rule"])
    report = validate_sessions(df, safe_columns=["clinic_name"])
    assert report.ok


def test_age_stays_top_coded_even_when_declared_safe():
    df = setpatient("P3A9F0C", "age", "93")(valid_table())
    report = validate_sessions(df, safe_columns=["age"])
    assert set(zip(report.errors["rule"], report.errors["column"], strict=True)) == {
        ("range", "age")}


def test_a_non_unique_index_does_not_confuse_rows():
    df = valid_table()
    df.index = [0] * len(df)
    bad = df.copy()
    bad.iloc[6, bad.columns.get_loc("madrs")] = "75"
    report = validate_sessions(bad)
    assert report.errors[["row", "rule"]].values.tolist() == [[8, "range"]]
    assert report.errors["value"].tolist() == ["75"]
    out = coerce_sessions(df)
    assert len(out) == len(df) and out.index.is_unique


def test_identifier_values_are_never_echoed():
    df = add_column("contact", cycle(["ann.smith@example.org"]))(valid_table())
    report = validate_sessions(df)
    assert not report.problems["value"].astype(str).str.contains("ann.smith").any()
    assert "ann.smith" not in report.format_text()


def test_report_text_csv_and_raise(tmp_path):
    df = setcell("P3A9F0C", 1, "madrs", "75")(valid_table())
    report = validate_sessions(df, source="sessions.csv")
    text = report.format_text()
    assert "sessions.csv" in text and "madrs" in text and "[range]" in text
    out = tmp_path / "problems.csv"
    report.to_csv(out)
    back = pd.read_csv(out)
    assert list(back.columns) == ["file", "row", "column", "value", "rule", "severity",
                                  "message"]
    assert back["rule"].tolist() == ["range"]
    with pytest.raises(DataValidationError) as info:
        report.raise_for_errors()
    assert not isinstance(info.value, IdentifierError)
    assert len(info.value.problems) == 1
    ident = validate_sessions(add_column("email", cycle(["a@b.org"]))(valid_table()))
    with pytest.raises(IdentifierError):
        ident.raise_for_errors()
    validate_sessions(valid_table()).raise_for_errors()  # no error: no exception


def test_empty_and_non_tables_are_reported_not_raised():
    assert validate_sessions(valid_table().iloc[0:0]).errors["rule"].tolist() == ["empty"]
    assert validate_sessions(pd.DataFrame()).errors["rule"].tolist() == ["empty"]
    report = validate_sessions(42)
    assert isinstance(report, ValidationReport)
    assert not report.ok


def write_csv(path, df):
    df.to_csv(path, index=False)
    return path


def test_validate_file_reads_maps_and_records_the_checksum(tmp_path):
    df = valid_table().rename(columns={"patient_id": "subject", "sex": "gender"})
    df["gender"] = df["gender"].map({"female": "F", "male": "M", "other": "O"})
    path = write_csv(tmp_path / "sessions.csv", df)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    cohort = {"input": "ignored.csv", "columns": {"patient_id": "subject", "sex": "gender"},
              "recode": {"sex": {"F": "female", "M": "male", "O": "other"}}}
    problems = tmp_path / "logs" / "problems.csv"
    report = validate_file(path, cohort, problems_csv=problems)
    assert report.ok, report.format_text()
    assert report.sha256 == digest
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest  # raw file untouched
    assert problems.exists() and pd.read_csv(problems).empty
    # problems name the file's own column too
    bad = df.copy()
    bad.loc[0, "subject"] = np.nan
    write_csv(path, bad)
    report = validate_file(path, cohort)
    assert report.errors["column"].tolist() == ["patient_id"]
    assert "[file column 'subject']" in report.errors["message"].iloc[0]
    # without the mapping the same file fails on the required column
    report = validate_file(path)
    assert ("required", "patient_id") in set(zip(report.errors["rule"],
                                                 report.errors["column"], strict=True))


def test_validate_file_rows_are_file_lines(tmp_path):
    df = setcell("P00A1B2", 2, "madrs", "88")(valid_table())
    path = write_csv(tmp_path / "s.csv", df)
    report = validate_file(path)
    hit = report.errors[report.errors["rule"] == "range"]
    line = path.read_text().splitlines().index(
        next(x for x in path.read_text().splitlines() if ",88," in x)) + 1
    assert hit["row"].tolist() == [line]


@pytest.mark.parametrize(("content", "name", "rule"), [
    (None, "missing.csv", "read"),
    (b"patient_id,session\n\xff\xfe\xfa,1\n", "latin.csv", "read"),
    (b"not really a spreadsheet", "fake.xlsx", "read"),
    (b"", "empty.csv", "read"),
    (b"PAR1 broken", "broken.parquet", "read"),
    (b"a,b\n1,2\n", "table.json", "read"),
])
def test_unreadable_files_become_problem_rows(tmp_path, content, name, rule):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    problems = tmp_path / "problems.csv"
    report = validate_file(path, problems_csv=problems)
    assert not report.ok
    assert report.errors["rule"].tolist() == [rule]
    assert report.errors["message"].iloc[0]
    assert pd.read_csv(problems)["rule"].tolist() == [rule]


def test_a_failed_validation_writes_only_the_problems_csv(tmp_path):
    raw = tmp_path / "data" / "raw" / "demo"
    raw.mkdir(parents=True)
    path = write_csv(raw / "sessions.csv", add_column("email", cycle(["a@b.org"]))(
        valid_table()))
    before = path.read_bytes()
    report = validate_file(path, problems_csv=tmp_path / "logs" / "validate" / "demo.csv")
    assert not report.ok
    with pytest.raises(IdentifierError):
        report.raise_for_errors()
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["data/raw/demo/sessions.csv", "logs/validate/demo.csv"]
    assert path.read_bytes() == before


def test_mapping_that_does_not_fit_is_a_problem_row(tmp_path):
    path = write_csv(tmp_path / "s.csv", valid_table())
    report = validate_file(path, {"input": "x", "columns": {"patient_id": "subject_id",
                                                             "day": "study_day"}})
    assert set(report.errors["rule"]) == {"mapping"}
    assert set(report.errors["column"]) == {"patient_id", "day"}


def test_safe_columns_from_the_cohort(tmp_path):
    df = add_column("clinic_name", cycle(["North Clinic"]))(valid_table())
    path = write_csv(tmp_path / "s.csv", df)
    assert not validate_file(path, {"input": "x"}).ok
    assert validate_file(path, {"input": "x", "safe_columns": ["clinic_name"]}).ok


# --- coerce_sessions ---------------------------------------------------------------------

def test_coerce_gives_typed_contract_columns():
    df = add_column("unrelated", cycle(["x"]))(valid_table())
    df = df.iloc[::-1]  # order must not matter
    out = coerce_sessions(df)
    assert "unrelated" not in out.columns
    assert out["session"].dtype == "int64" and out["day"].dtype == "int64"
    assert str(out["madrs"].dtype) == "Int64"
    assert isinstance(out["illness_type"].dtype, pd.CategoricalDtype)
    assert out["illness_severity"].cat.ordered
    assert out["age"].max() == 90  # "90+"
    assert list(out[["patient_id", "session"]].itertuples(index=False, name=None)) == sorted(
        out[["patient_id", "session"]].itertuples(index=False, name=None))
    cens = out[out["il6_pg_ml_censored"]]
    assert len(cens) == 1 and np.isnan(cens["il6_pg_ml"].iloc[0])
    assert cens["il6_pg_ml_lod"].iloc[0] == pytest.approx(0.15)
    assert out["tnfa_pg_ml_lod"].eq(0.2).all()
    assert out["il6_pg_ml_censored"].dtype == bool


def test_coerce_derives_the_madrs_total_from_items():
    df = valid_table().drop(columns="madrs")
    out = coerce_sessions(df)
    items = out[ITEMS].sum(axis=1)
    assert (out["madrs"] == items).all()


def test_coerce_refuses_unvalidated_data():
    with pytest.raises(DataValidationError):
        coerce_sessions(setcell("P3A9F0C", 1, "madrs", "many")(valid_table()))
    with pytest.raises(KetastatsError):
        coerce_sessions(valid_table().drop(columns="day"))


def test_validation_of_a_large_table_takes_seconds():
    import time

    big = pd.concat([valid_table()] * 2500, ignore_index=True)  # 30k rows
    # random opaque tokens: sequential ones (P000000, P000001, ...) have the shape of record
    # numbers, which the identifier guard refuses unless the cohort declares its id scheme
    tokens = np.random.default_rng(0).choice(16**6, len(big) // 4, replace=False)
    big["patient_id"] = [f"P{tokens[i // 4]:06X}" for i in range(len(big))]
    start = time.perf_counter()
    report = validate_sessions(big)
    elapsed = time.perf_counter() - start
    assert report.ok, report.format_text()
    assert elapsed < 10


def test_typed_numbers_coerce_exactly_as_their_text(tmp_path):
    """coerce_sessions takes numbers as they are when a column holds numbers already (the
    simulator, Parquet): the result equals that of the same table read back from CSV text."""
    from ketastats.simulate import simulate_cohort

    typed = simulate_cohort(30, seed=3).sessions
    # awkward floats too: their shortest text must parse back to the same double
    typed["bmi"] = typed["bmi"].astype("float64") + np.random.default_rng(1).normal(0, 1e-7, len(typed))
    typed.loc[typed.index[::7], "bmi"] = np.nan
    path = tmp_path / "sessions.csv"
    typed.to_csv(path, index=False)
    text = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert any(pd.api.types.is_numeric_dtype(typed[c]) for c in typed.columns)
    pd.testing.assert_frame_equal(coerce_sessions(typed), coerce_sessions(text))


@pytest.mark.parametrize(
    ("column", "value"),
    [("session", "1e1"), ("session", "+3"), ("madrs_3", "2e0"), ("ill", "+1"), ("age", "1.8e1"), ("day", "+7")],
)
def test_whole_numbers_are_written_in_plain_digits(column, value):
    """`1e1` and `+3` parse as 10 and 3; in a whole-number column they are refused, while
    `12`, `12.0` and (for 0/1) `yes` still pass."""
    df = valid_table()
    row = rows_of(df, "PFFE012", 4)
    df.loc[row, column] = value
    errors = validate_sessions(df).errors
    assert errors[["column", "rule", "value"]].to_dict("records") == [
        {"column": column, "rule": "type", "value": value}
    ]
    assert "plain digits" in errors["message"].iloc[0]
    ok = valid_table()
    ok.loc[rows_of(ok, "PFFE012", 4), ["session", "madrs_3", "ill"]] = ["4.0", "3", "no"]
    assert validate_sessions(ok).ok


def test_a_cohort_without_any_session_1_is_an_error():
    df = valid_table()
    df["session"] = (df["session"].astype(int) + 1).astype(str)
    df["day"] = df.groupby("patient_id")["day"].transform(lambda d: d)  # days stay 0, 2, 4, 7
    report = validate_sessions(df)
    assert report.errors[["column", "rule"]].to_dict("records") == [
        {"column": "session", "rule": "cross_field:no_session_1"}
    ]
    assert "no patient has session 1 (the lowest session is 2)" in report.errors["message"].iloc[0]


def test_a_patient_without_session_1_is_a_warning_at_their_first_row():
    df = valid_table()
    df = df[~rows_of(df, "P00A1B2", 1)].reset_index(drop=True)
    df["_source_row"] = df.index + 2
    report = validate_sessions(df)
    assert report.ok
    warned = report.warnings[report.warnings["rule"] == "cross_field:first_session_missing"]
    first_row = int(df.loc[rows_of(df, "P00A1B2"), "_source_row"].min())
    assert warned[["row", "column", "value"]].to_dict("records") == [
        {"row": first_row, "column": "session", "value": "2"}
    ]
    assert "P00A1B2" not in warned["message"].iloc[0]  # messages never echo a patient id
