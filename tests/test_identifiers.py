"""The Safe Harbor identifier guard: what it refuses, what it lets through, the override."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ketastats.identifiers import IDENTIFIER_KINDS, scan_identifiers


def legit_table(n_patients: int = 400, seed: int = 7) -> pd.DataFrame:
    """Contract data as the simulator and clinics produce it (no identifiers)."""
    rng = np.random.default_rng(seed)
    ids = [f"P{x:06X}" for x in rng.choice(16**6, n_patients, replace=False)]
    rows = []
    for pid in ids:
        age = "90+" if rng.random() < 0.05 else str(int(rng.integers(18, 90)))
        for s in range(6):
            val = rng.lognormal(0.3, 1.0)
            rows.append({
                "patient_id": pid, "session": s + 1, "day": [0, 2, 4, 7, 9, 11][s],
                "madrs": int(rng.integers(0, 61)), "age": age,
                "sex": rng.choice(["female", "male"]),
                "il6_pg_ml": "<0.15" if val < 0.4 else f"{val:.2f}",
                "crp_mg_l": round(float(val) * 3, 3),
                "illness_type": rng.choice(["respiratory", "influenza_like", "other_febrile",
                                            "Gastrointestinal", ""]),
                "dose_mg_kg": rng.choice([0.5, 0.75]), "year": 2023,
                "redcap_event_name": f"infusion_{s + 1}_arm_1",
                "site": rng.choice(["A", "B", "07"]),
                "bp": f"{int(rng.integers(100, 160))}/{int(rng.integers(60, 100))}",
            })
    return pd.DataFrame(rows)


def test_no_false_positives_on_legitimate_data():
    df = legit_table()
    problems = scan_identifiers(df)
    assert problems.empty, problems.to_string()
    # the same as text, as read from a CSV
    assert scan_identifiers(df.astype(str)).empty


@pytest.mark.parametrize(("column", "values", "kind"), [
    ("first_name", ["Ann", "Bo"], "name"),
    ("Surname", ["Smith", "Lee"], "name"),
    ("e_mail", ["x", "y"], "email"),
    ("phone_number", ["5551234567"], "phone"),
    ("fax", ["5551234567"], "fax"),
    ("ssn", ["123456789"], "ssn"),
    ("mrn", ["00012345"], "medical_record"),
    ("insurance_member_id", ["A1234"], "health_plan"),
    ("account_no", ["77812"], "account"),
    ("street_address", ["x"], "address"),
    ("zip_code", ["02115"], "zip"),
    ("DateOfBirth", ["1970"], "date"),
    ("onset_month", ["March"], "date"),
    ("website", ["x"], "url"),
    ("ip_address", ["x"], "ip"),
    ("pump_serial", ["x"], "device"),
    ("driver_license", ["x"], "license"),
    ("vehicle_plate", ["x"], "vehicle"),
    ("photo", ["x.jpg"], "biometric"),
    ("comments", ["fine"], "free_text"),
])
def test_columns_named_like_identifiers(column, values, kind):
    df = pd.DataFrame({"patient_id": "P3A9F0C", column: values})
    problems = scan_identifiers(df, source="f.csv")
    assert problems["rule"].tolist() == [f"identifier:{kind}"]
    assert problems["column"].tolist() == [column]
    message = problems["message"].iloc[0]
    assert column in message and "safe_columns" in message
    assert IDENTIFIER_KINDS[kind] in message


@pytest.mark.parametrize(("value", "kind"), [
    ("ann.lee@example.org", "email"),
    ("see https://example.org/x", "url"),
    ("www.example.org", "url"),
    ("192.168.10.4", "ip"),
    ("2001:0db8:85a3:0000:0000:8a2e:0370:7334", "ip"),
    ("078-05-1120", "ssn"),
    ("2024-03-05", "date"),
    ("05/03/2024", "date"),
    ("3/5/24", "date"),
    ("5 March 2024", "date"),
    ("March 5, 2024", "date"),
    ("(617) 555-0100", "phone"),
    ("+44 20 7946 0958", "phone"),
    ("221B Baker Street", "address"),
    ("P.O. Box 1200", "address"),
    ("02115-1234", "zip"),
    ("MRN: 00123456", "medical_record"),
    ("Member ID 9981-22", "health_plan"),
    ("acct #556677", "account"),
    ("S/N 77AX1290", "device"),
])
def test_values_that_look_like_identifiers(value, kind):
    df = pd.DataFrame({"patient_id": ["P3A9F0C", "P3A9F0C"], "info": ["ok", value]})
    problems = scan_identifiers(df)
    assert problems["rule"].tolist() == [f"identifier:{kind}"]
    assert problems["row"].tolist() == [3]
    assert problems["value"].tolist() == ["[redacted]"]


def test_names_and_free_text_in_extra_columns():
    df = pd.DataFrame({"referred_by": ["John Smith", "Dr. Jones", "Lee, Ann"],
                       "remarks_x": ["ok", "had a cold and the nurse said to come back later",
                                     "ok"]})
    rules = dict(zip(scan_identifiers(df)["column"], scan_identifiers(df)["rule"],
                     strict=False))
    assert rules == {"referred_by": "identifier:name", "remarks_x": "identifier:free_text"}


def test_category_levels_are_not_names():
    df = pd.DataFrame({"illness_type": ["Other Febrile", "Influenza Like"],
                       "sex": ["Female", "Male"]})
    assert scan_identifiers(df).empty


def test_ages_over_89_must_be_top_coded():
    df = pd.DataFrame({"age": ["45", "90+", "89", "92", None],
                       "age_at_onset": [30, 40, 95, 20, 10]})
    problems = scan_identifiers(df)
    assert problems[["column", "row"]].values.tolist() == [["age", 5], ["age_at_onset", 4]]
    assert set(problems["rule"]) == {"identifier:age"}


def test_patient_ids_that_look_like_record_numbers():
    df = pd.DataFrame({"patient_id": ["1", "17", "1234567", "P3A9F0C"]})
    problems = scan_identifiers(df)
    assert problems["row"].tolist() == [4]
    assert problems["rule"].tolist() == ["identifier:medical_record"]


def test_patient_ids_that_look_like_names():
    df = pd.DataFrame({"patient_id": ["Smith, John", "P3A9F0C", "P00A1B2", "Ann Lee", "P1"]})
    problems = scan_identifiers(df)
    assert problems["row"].tolist() == [2, 5]
    assert set(problems["rule"]) == {"identifier:name"}


def test_datetime_columns_are_dates_whatever_their_name():
    df = pd.DataFrame({"t": pd.to_datetime(["2024-01-01", "2024-01-03"])})
    assert scan_identifiers(df)["rule"].tolist() == ["identifier:date"]


def test_safe_columns_are_skipped_entirely():
    df = pd.DataFrame({"clinic_name": ["North Clinic", "South Clinic"],
                       "contact": ["a@b.org", "c@d.org"]})
    assert set(scan_identifiers(df)["column"]) == {"clinic_name", "contact"}
    assert scan_identifiers(df, safe_columns=["clinic_name"])["column"].tolist() == [
        "contact", "contact"]
    assert scan_identifiers(df, safe_columns=["clinic_name", "contact"]).empty
    # a single name is one column, not its letters
    assert set(scan_identifiers(df, safe_columns="contact")["column"]) == {"clinic_name"}


def test_empty_identifier_columns_are_harmless():
    df = pd.DataFrame({"patient_id": ["P3A9F0C"], "email": [None]})
    assert scan_identifiers(df).empty


def test_findings_are_capped_with_a_total():
    df = pd.DataFrame({"contact": [f"user{i}@example.org" for i in range(120)]})
    problems = scan_identifiers(df)
    assert len(problems) == 51
    assert "120 in total" in problems["message"].iloc[-1]
    assert problems["row"].iloc[:50].tolist() == list(range(2, 52))


def test_source_rows_are_used():
    df = pd.DataFrame({"contact": ["x", "a@b.org"], "_source_row": [7, 9]})
    assert scan_identifiers(df)["row"].tolist() == [9]


def hex_tokens(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [f"P{x:06X}" for x in rng.choice(16**6, n, replace=False)]


def test_random_hex_tokens_that_are_all_digits_pass():
    ids = hex_tokens(300, 3)
    assert sum(i[1:].isdigit() for i in ids) >= 10  # about 6% of six-digit hex tokens
    assert scan_identifiers(pd.DataFrame({"patient_id": ids})).empty


def test_the_demo_cohort_validates_with_its_all_digit_tokens():
    from ketastats.simulate import simulate_cohort
    from ketastats.validate import validate_sessions

    sessions = simulate_cohort(200, seed=20261125).sessions  # the demo config's cohort
    assert sessions["patient_id"].str[1:].str.isdigit().any()
    report = validate_sessions(sessions)
    assert report.ok, report.format_text()


@pytest.mark.parametrize(("ids", "refused"), [
    # a numbering: letter + six digits throughout
    ([f"H{x:06d}" for x in np.random.default_rng(1).choice(10**6, 30, replace=False)], 30),
    # record numbers with one hex token among them: far too many all-digit ids for chance
    ([f"P{x:06d}" for x in range(100, 140)] + ["P3A9F0C"], 40),
    # a different shape among hex tokens: nothing of its shape has letters
    (hex_tokens(40, 2) + ["A4829131"], 1),
    # sequential numbers of six or more digits, alone
    ([str(x) for x in range(482913, 482923)], 10),
])
def test_record_number_shapes_are_refused(ids, refused):
    problems = scan_identifiers(pd.DataFrame({"patient_id": ids}))
    assert problems["rule"].eq("identifier:medical_record").all()
    assert len(problems) == refused


def test_a_declared_id_scheme_accepts_study_numbers_and_nothing_else():
    ids = [f"S{x:06d}" for x in range(1, 21)]
    assert not scan_identifiers(pd.DataFrame({"patient_id": ids})).empty
    assert scan_identifiers(pd.DataFrame({"patient_id": ids}), id_pattern=r"S\d{6}").empty
    odd = scan_identifiers(pd.DataFrame({"patient_id": [*ids, "T000001", "Ann Lee 1"]}),
                           id_pattern=r"S\d{6}")
    assert odd[["row", "rule"]].values.tolist() == [
        [23, "identifier:name"], [22, "identifier:id_scheme"], [23, "identifier:id_scheme"]]


def test_an_invalid_id_pattern_is_a_config_error():
    from ketastats.exceptions import ConfigError

    with pytest.raises(ConfigError, match="id_pattern is not a valid regular expression"):
        scan_identifiers(pd.DataFrame({"patient_id": ["P001"]}), id_pattern="S(\\d")


def test_an_invalid_id_pattern_is_caught_by_the_config_check():
    from ketastats.config import check_config
    from ketastats.exceptions import ConfigError

    config = {"cohorts": {"a": {"input": "x.csv", "id_pattern": "S(\\d"}},
              "models": {"primary": {"kind": "lmm", "outcome": "madrs", "fixed": ["ill"]}}}
    with pytest.raises(ConfigError, match="cohorts.a.id_pattern: not a valid regular"):
        check_config(config)


def test_sites_are_codes_declared_or_short():
    df = pd.DataFrame({"site": ["A", "07", "MGH", "north", "Bonn", "St Mary's Hospital"]})
    undeclared = scan_identifiers(df)
    assert undeclared["row"].tolist() == [5, 6, 7]
    assert set(undeclared["rule"]) == {"identifier:site"}
    declared = scan_identifiers(df, sites=["A", "07", "mgh", "North", "bonn"])
    assert declared["row"].tolist() == [7]
    assert "sites" in declared["message"].iloc[0]


def test_messages_about_keys_name_rows_not_patients():
    from ketastats.validate import validate_sessions

    df = pd.DataFrame({
        "patient_id": ["P3A9F0C", "P3A9F0C", "P3A9F0C", "P0B41E7", "P0B41E7"],
        "session": ["1", "2", "2", "1", "2"], "day": ["0", "3", "4", "0", "0"],
        "madrs": ["30", "20", "21", "25", "22"], "sex": ["female", "female", "female",
                                                        "male", "female"],
    })
    report = validate_sessions(df)
    rules = report.errors.set_index("rule")["message"]
    assert "row 3" in rules["duplicate"]
    assert "row 5" in rules["day_order"]
    assert "row 5" in rules["cross_field:baseline_varies"]
    for text in (report.format_text(), report.problems.to_csv()):
        assert "P3A9F0C" not in text and "P0B41E7" not in text
