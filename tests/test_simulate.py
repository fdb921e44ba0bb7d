"""Tests of the synthetic cohort generator: determinism, scenarios, overrides, structure."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from ketastats.exceptions import ConfigError
from ketastats.simulate import (
    SCENARIOS,
    SESSION_COLUMNS,
    default_params,
    load_params,
    resolve_params,
    simulate_cohort,
    simulate_to_dir,
    write_cohort,
)
from ketastats.simulate.decisions import DECISION_COLUMNS
from ketastats.simulate.items import allocate_items, fill_overflow, stochastic_round
from ketastats.simulate.params import PARAM_DOCS

ITEMS = [f"madrs_{j}" for j in range(1, 11)]
NUMBER = re.compile(r"^\d+\.\d{3}$")
CENSORED = re.compile(r"^<\d+(\.\d+)?$")


@pytest.fixture(scope="module")
def cohort():
    return simulate_cohort(1500, seed=11)


def _read_csv(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


# ---------------------------------------------------------------- determinism and files


def test_same_seed_gives_byte_identical_files_and_other_seed_differs(tmp_path):
    a = write_cohort(simulate_cohort(120, seed=5, scenario="attenuation"), tmp_path / "a")
    b = write_cohort(simulate_cohort(120, seed=5, scenario="attenuation"), tmp_path / "b")
    c = write_cohort(simulate_cohort(120, seed=6, scenario="attenuation"), tmp_path / "c")
    for key in ("sessions", "truth"):
        assert a[key].read_bytes() == b[key].read_bytes()
        assert a[key].read_bytes() != c[key].read_bytes()
    assert set(a) == {"sessions", "truth"}
    assert a["sessions"].name == "sessions.csv" and a["truth"].name == "truth.json"


def test_simulate_to_dir_matches_simulate_then_write(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("effects:\n  efficacy_multiplier_when_ill: 0.5\n")
    a = simulate_to_dir(tmp_path / "a", n_patients=80, seed=3, scenario="mnar", params_path=params)
    cohort = simulate_cohort(
        80, seed=3, scenario="mnar", overrides={"effects": {"efficacy_multiplier_when_ill": 0.5}}
    )
    b = write_cohort(cohort, tmp_path / "b")
    assert a["sessions"].read_bytes() == b["sessions"].read_bytes()
    assert a["truth"].read_bytes() == b["truth"].read_bytes()
    assert json.loads(a["truth"].read_text())["effects"]["efficacy_multiplier_when_ill"] == 0.5
    with pytest.raises(ConfigError):
        simulate_to_dir(tmp_path / "c", n_patients=5, scenario="nope")
    assert not (tmp_path / "c").exists()


def test_csv_uses_newline_endings_contract_columns_and_round_trips(tmp_path, cohort):
    paths = write_cohort(cohort, tmp_path)
    raw = paths["sessions"].read_bytes()
    assert b"\r" not in raw and raw.endswith(b"\n")
    df = _read_csv(paths["sessions"])
    assert tuple(df.columns) == SESSION_COLUMNS + DECISION_COLUMNS  # every scenario records the planned day
    assert len(df) == len(cohort.sessions)
    # what was written is what the in-memory table holds
    assert (df["madrs"] == cohort.sessions["madrs"].astype(str).fillna("").to_numpy()).all()
    assert (df["il6_pg_ml"] == cohort.sessions["il6_pg_ml"].fillna("").to_numpy()).all()
    truth = json.loads(paths["truth"].read_text())
    assert truth["n_patients"] == 1500 and truth["seed"] == 11
    assert truth["scenario"] == "sickness"
    assert truth["params"] == cohort.params
    assert [p["patient_id"] for p in truth["patients"]] == list(
        dict.fromkeys(cohort.sessions["patient_id"])
    )


def test_fixed_number_formats(tmp_path, cohort):
    df = _read_csv(write_cohort(cohort, tmp_path)["sessions"])
    assert df["bmi"].str.fullmatch(r"\d+\.\d").all()
    dose = df["dose_mg_kg"][df["dose_mg_kg"] != ""]
    assert dose.str.fullmatch(r"\d\.\d\d").all()
    assert (df["dose_mg_kg"][df["session"] == "7"] == "").all()  # rating-only visit


def test_patient_ids_are_random_hex_tokens_from_the_seed(cohort):
    ids = cohort.sessions["patient_id"].drop_duplicates()
    assert len(ids) == 1500
    assert ids.str.fullmatch(r"P[0-9A-F]{6}").all()
    other = simulate_cohort(1500, seed=12).sessions["patient_id"].drop_duplicates()
    assert len(set(ids) & set(other)) < 10  # ~0.13 expected by chance


# ---------------------------------------------------------------- scenarios and truth


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_scenario_runs_and_records_itself(scenario):
    c = simulate_cohort(150, seed=3, scenario=scenario)
    assert c.scenario == scenario and c.truth["scenario"] == scenario
    extra = DECISION_COLUMNS if c.params["decisions"]["record_planned_illness"] else ()
    assert tuple(c.sessions.columns) == SESSION_COLUMNS + extra
    assert c.params == resolve_params(scenario)
    assert len(c.truth["patients"]) == 150


def test_null_scenario_has_exactly_zero_true_effects():
    c = simulate_cohort(800, seed=2, scenario="null")
    eff = c.truth["effects"]
    assert eff["within_person_effect_reported_illness"]["value"] == 0.0
    assert eff["within_person_effect_reported_illness"]["n_sessions"] > 0
    assert eff["within_person_effect_true_illness"]["value"] == 0.0
    assert eff["lagged_effect_after_reported_illness"]["value"] == 0.0
    assert eff["mean_efficacy_change_per_ill_infusion"]["value"] == 0.0
    for p in c.truth["patients"]:
        assert not any(p["direct_shift"]) and not any(p["carryover_shift"])
        assert not any(p["efficacy_shift"]) and not any(p["mediated_shift"])


def test_scenarios_differ_in_the_direction_of_the_efficacy_effect():
    eff = {
        s: simulate_cohort(800, seed=4, scenario=s).truth["effects"]
        for s in ("sickness", "attenuation", "amplification")
    }
    key = "mean_efficacy_change_per_ill_infusion"
    assert eff["sickness"][key]["value"] == 0.0
    assert eff["attenuation"][key]["value"] > 0.0  # drug effect lost at later ratings
    assert eff["amplification"][key]["value"] < 0.0
    # the same-session shift is the sickness effect in all three (attenuation acts later)
    same = {s: e["within_person_effect_reported_illness"]["value"] for s, e in eff.items()}
    assert same["sickness"] > 1.0
    assert same["attenuation"] == pytest.approx(same["sickness"], abs=0.3)


def test_true_same_session_effect_is_what_the_data_show():
    """With common random numbers, MADRS(sickness) - MADRS(null) at reported-ill sessions
    averages to the truth's within-person effect (up to stochastic rounding and the rare
    escalation / dropout decisions that the shift changes)."""
    n = 3000
    sick = simulate_cohort(n, seed=21, scenario="sickness")
    null = simulate_cohort(n, seed=21, scenario="null")
    key = ["patient_id", "session"]
    both = sick.sessions.merge(null.sessions, on=key, suffixes=("_s", "_n"))
    both = both[both["madrs_s"].notna() & both["madrs_n"].notna() & (both["ill_s"] == 1)]
    diff = (both["madrs_s"] - both["madrs_n"]).astype(float)
    truth = sick.truth["effects"]["within_person_effect_reported_illness"]
    by_id = {p["patient_id"]: p for p in sick.truth["patients"]}
    rows = list(zip(both["patient_id"], both["session"] - 1, strict=True))
    same = np.mean([by_id[i]["direct_shift"][v] + by_id[i]["mediated_shift"][v] for i, v in rows])
    carry = np.mean([by_id[i]["carryover_shift"][v] for i, v in rows])
    assert truth["value"] > 1.0 and carry > 0.05
    assert same == pytest.approx(truth["value"], abs=0.05)  # same sessions up to missingness
    # the data carry the same-session shift plus carry-over from an ill previous session
    assert diff.mean() == pytest.approx(same + carry, abs=0.15)
    # the shift sits on items 2 and 4-8; the other items are untouched
    sick_items = ["madrs_2", "madrs_4", "madrs_5", "madrs_6", "madrs_7", "madrs_8"]
    core_items = ["madrs_1", "madrs_3", "madrs_9", "madrs_10"]
    d_sick = sum((both[f"{c}_s"] - both[f"{c}_n"]).astype(float).mean() for c in sick_items)
    d_core = sum((both[f"{c}_s"] - both[f"{c}_n"]).astype(float).mean() for c in core_items)
    assert d_sick > 0.8 * truth["value"]
    assert abs(d_core) < 0.25


def test_truth_value_matches_its_definition(cohort):
    """Recompute the within-person effect from the per-patient truth and the table."""
    by_id = {p["patient_id"]: p for p in cohort.truth["patients"]}
    s = cohort.sessions
    rated = s[s["madrs"].notna() & (s["ill"] == 1)]
    shifts = [
        by_id[pid]["direct_shift"][ses - 1] + by_id[pid]["mediated_shift"][ses - 1]
        for pid, ses in zip(rated["patient_id"], rated["session"], strict=True)
    ]
    eff = cohort.truth["effects"]["within_person_effect_reported_illness"]
    assert eff["n_sessions"] == len(rated)
    assert eff["value"] == pytest.approx(float(np.mean(shifts)), abs=1e-3)
    shift = cohort.params["effects"]["sickness_shift"]
    assert shift["mild"] < eff["value"] < shift["severe"]  # a severity mix, mostly mild


def test_mediation_scenario_puts_part_of_the_effect_through_il6():
    c = simulate_cohort(1000, seed=8, scenario="mediation")
    mediated = [x for p in c.truth["patients"] for x in p["mediated_shift"]]
    assert max(mediated) > 1.0
    assert c.truth["effects"]["il6_to_madrs_per_log"] == 1.5


# ---------------------------------------------------------------- overrides


def test_yaml_overrides_apply(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(
        "illness:\n"
        "  respiratory_rate_per_year: 0.0\n"
        "  gastrointestinal_rate_per_year: 0.0\n"
        "  other_febrile_rate_per_year: 0.0\n"
        "  false_positive_rate: 0.0\n"
        "schedule:\n"
        "  planned_infusions: 4\n"
        "missingness:\n"
        "  dropout_share: 0.0\n"
    )
    overrides = load_params(path)
    c = simulate_cohort(200, seed=1, overrides=overrides)
    assert c.params["schedule"]["planned_infusions"] == 4
    assert (c.sessions["ill"] == 0).all()
    assert c.sessions["postponed"].sum() == 0
    assert c.sessions.groupby("patient_id")["session"].max().eq(5).all()  # 4 + rating visit
    assert c.truth["params"]["illness"]["respiratory_rate_per_year"] == 0.0


def test_unknown_yaml_key_is_refused_with_the_valid_keys(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("illness:\n  respiratory_rate: 3.0\n")
    with pytest.raises(ConfigError) as err:
        load_params(path)
    msg = str(err.value)
    assert "illness.respiratory_rate" in msg
    assert "respiratory_rate_per_year" in msg and str(path) in msg


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"nonsense": 1}, "Valid keys: biomarkers, cohort"),
        ({"effects": 3}, "is a section"),
        ({"response": {"residual_sd": "big"}}, "expects a value like"),
        ({"illness": {"report_sensitivity": 1.5}}, "probability"),
        ({"missingness": {"dropout_mechanism": "random"}}, "mar, mnar"),
        ({"illness": {"severity_probs": {"mild": 0.5}}}, "sum to 1"),
    ],
)
def test_bad_overrides_are_refused(overrides, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        simulate_cohort(10, seed=0, overrides=overrides)


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="Known scenarios: null"):
        simulate_cohort(10, scenario="nope")
    with pytest.raises(ConfigError, match="at least 1"):
        simulate_cohort(0)
    with pytest.raises(ConfigError, match="non-negative"):
        simulate_cohort(10, seed=-1)
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "missing.yaml")
    (tmp_path / "empty.yaml").write_text("")
    assert load_params(tmp_path / "empty.yaml") == {}


def test_default_params_are_documented_and_fresh():
    p = default_params()
    p["response"]["residual_sd"] = 99.0
    assert default_params()["response"]["residual_sd"] == 3.5

    def leaves(node, prefix=""):
        for key, value in node.items():
            path = f"{prefix}{key}"
            if path in PARAM_DOCS:
                yield path
            elif isinstance(value, dict):
                yield from leaves(value, f"{path}.")
            else:
                yield path

    missing = [path for path in leaves(p) if path not in PARAM_DOCS]
    assert missing == []


# ---------------------------------------------------------------- structure of the table


def test_session_structure(cohort):
    s = cohort.sessions
    g = s.groupby("patient_id", sort=False)
    # sessions 1..k without gaps, day 0 at session 1 and increasing days
    assert g["session"].apply(lambda x: list(x) == list(range(1, len(x) + 1))).all()
    assert (s.loc[s["session"] == 1, "day"] == 0).all()
    assert g["day"].apply(lambda x: bool(np.all(np.diff(x.to_numpy()) > 0))).all()
    assert s["session"].max() == 7
    # constant per patient
    for col in ("age", "sex", "bmi", "benzodiazepine", "antidepressant"):
        assert g[col].nunique().eq(1).all(), col
    assert set(s["sex"]) == {"female", "male"}
    age = pd.to_numeric(s["age"])
    assert age.between(18, 80).all()
    assert s["ill"].isin([0, 1]).all()


def test_items_are_in_range_and_sum_to_the_total(cohort):
    s = cohort.sessions
    rated = s["madrs"].notna()
    items = s.loc[rated, ITEMS].astype(int)
    assert items.ge(0).all().all() and items.le(6).all().all()
    assert (items.sum(axis=1) == s.loc[rated, "madrs"]).all()
    # missing ratings are missing as a whole (all items empty), never at baseline
    assert s.loc[~rated, ITEMS].isna().all().all()
    assert 0 < (~rated).mean() < 0.1
    assert rated[s["session"] == 1].all()
    for col in ("phq9", "qids_sr16"):
        v = s[col].dropna()
        assert v.between(0, 27).all()
    assert s.loc[rated, "madrs"].corr(s.loc[rated, "qids_sr16"].astype(float)) > 0.7


def test_illness_columns_are_filled_only_when_ill(cohort):
    s = cohort.sessions
    ill = s["ill"] == 1
    for col in ("illness_type", "illness_severity", "days_since_onset"):
        assert s.loc[ill, col].notna().all() and s.loc[~ill, col].isna().all(), col
    assert set(s.loc[ill, "illness_type"]) <= {
        "respiratory",
        "influenza_like",
        "gastrointestinal",
        "other_febrile",
    }
    assert set(s.loc[ill, "illness_severity"]) <= {"mild", "moderate", "severe"}
    assert (s.loc[ill, "days_since_onset"] >= 0).all()
    # postponement: delay 3-7 days only when postponed
    post = s["postponed"] == 1
    assert s.loc[post, "delay_days"].between(3, 7).all()
    assert (s.loc[~post, "delay_days"] == 0).all()
    assert post.any()
    # illness medication only at ill-looking sessions is not required (unreported illness),
    # but every medicated session must be truly ill
    by_id = {p["patient_id"]: set(p["true_ill_sessions"]) for p in cohort.truth["patients"]}
    meds = s[(s[["nsaid", "antibiotic", "steroid", "antipyretic"]] == 1).any(axis=1)]
    assert len(meds) > 0
    assert all(
        ses in by_id[pid] for pid, ses in zip(meds["patient_id"], meds["session"], strict=True)
    )


def test_cytokines_are_numbers_or_censored_strings(cohort):
    s = cohort.sessions
    lod = cohort.params["biomarkers"]["lod"]["hs"]
    sampled = s["il6_pg_ml"].notna()
    for col in ("tnfa_pg_ml", "il1b_pg_ml", "crp_mg_l"):
        assert (s[col].notna() == sampled).all()  # one draw gives all four markers
    for key, col in (
        ("il6", "il6_pg_ml"),
        ("tnfa", "tnfa_pg_ml"),
        ("il1b", "il1b_pg_ml"),
        ("crp", "crp_mg_l"),
    ):
        v = s.loc[sampled, col]
        censored = v.str.startswith("<")
        assert v[censored].eq(f"<{lod[key]:g}").all()
        assert v[~censored].str.fullmatch(NUMBER.pattern).all()
        assert (v[~censored].astype(float) >= lod[key] - 0.0005).all()
    # IL-1b is mostly near the LOD (docs/simulation.md, "Biomarkers"), IL-6 rarely censored on
    # the hs platform
    assert s.loc[sampled, "il1b_pg_ml"].str.startswith("<").mean() > 0.3
    assert s.loc[sampled, "il6_pg_ml"].str.startswith("<").mean() < 0.05
    # sampling: more at baseline than at ordinary sessions
    assert sampled[s["session"] == 1].mean() > 2 * sampled[s["session"].between(2, 6)].mean()


def test_standard_multiplex_censors_about_a_third_of_il6():
    # Thompson 2012: 35% of IL-6 values out of range on a standard multiplex; with ~1000
    # draws the binomial SD is 1.5 points, so +-10 points is the platform's own spread
    c = simulate_cohort(600, seed=9, scenario="standard_multiplex")
    v = c.sessions["il6_pg_ml"].dropna()
    assert len(v) > 800
    assert v[v.str.startswith("<")].str.fullmatch(CENSORED.pattern).all()
    assert 0.25 <= (v == "<1.4").mean() <= 0.45


def test_illness_raises_il6_and_crp_but_not_il1b():
    c = simulate_cohort(4000, seed=10)
    s = c.sessions[c.sessions["crp_mg_l"].notna()]
    true_ill = {p["patient_id"]: set(p["true_ill_sessions"]) for p in c.truth["patients"]}
    ill = np.array(
        [ses in true_ill[pid] for pid, ses in zip(s["patient_id"], s["session"], strict=True)]
    )
    assert ill.sum() > 50

    def median(col, mask):
        v = s.loc[mask, col]
        # censored values are below every observed value, so the median is well defined
        return float(np.median(np.where(v.str.startswith("<"), "0", v).astype(float)))

    assert median("il6_pg_ml", ill) > 1.5 * median("il6_pg_ml", ~ill)
    assert median("crp_mg_l", ill) > 2.0 * median("crp_mg_l", ~ill)
    assert median("tnfa_pg_ml", ill) < 1.6 * median("tnfa_pg_ml", ~ill)
    il1b_ill = s.loc[ill, "il1b_pg_ml"].str.startswith("<").mean()
    il1b_not = s.loc[~ill, "il1b_pg_ml"].str.startswith("<").mean()
    assert abs(il1b_ill - il1b_not) < 0.12  # negative control: no pulse


def test_age_is_top_coded_at_90():
    c = simulate_cohort(200, seed=1, overrides={"cohort": {"age_mean": 92.0, "age_max": 99.0}})
    ages = c.sessions["age"]
    assert (ages == "90+").any()
    assert pd.to_numeric(ages[ages != "90+"]).lt(90).all()


def test_dose_escalation_and_changes(cohort):
    s = cohort.sessions
    dose = s["dose_mg_kg"].dropna()
    assert dose.between(0.3, 0.75).all()
    assert (dose == 0.75).any()
    changed = s[s["dose_changed"] == 1]
    assert len(changed) > 0 and (changed["session"] > 1).all()
    assert s.loc[s["session"] == 7, "infusion_minutes"].isna().all()
    assert set(s["infusion_minutes"].dropna()) <= {40, 60}


# ---------------------------------------------------------------- missingness


def test_dropout_leaves_fewer_sessions():
    full = simulate_cohort(2000, seed=13, overrides={"missingness": {"dropout_share": 0.0}})
    drop = simulate_cohort(2000, seed=13)
    n_full = full.sessions.groupby("patient_id").size()
    n_drop = drop.sessions.groupby("patient_id").size()
    assert n_full.eq(7).all()
    assert len(drop.sessions) < len(full.sessions)
    share = (n_drop < 7).mean()
    assert 0.05 < share < 0.11  # target 8%, binomial SD 0.6 points at n=2000
    dropped = {p["patient_id"] for p in drop.truth["patients"] if p["dropped_out"]}
    assert dropped == set(n_drop.index[n_drop < 7])


def _first_missing_vs_last_observed(c) -> float:
    diffs = []
    for p in c.truth["patients"]:
        if p["dropped_out"]:
            last = p["last_session"]  # 1-based; the next session is the first missing one
            diffs.append(p["complete_madrs"][last] - p["complete_madrs"][last - 1])
    return float(np.mean(diffs))


def test_mnar_dropout_differs_from_mar():
    n = 20000
    mar = simulate_cohort(n, seed=14, scenario="sickness")
    mnar = simulate_cohort(n, seed=14, scenario="mnar")
    ids_mar = {p["patient_id"] for p in mar.truth["patients"] if p["dropped_out"]}
    ids_mnar = {p["patient_id"] for p in mnar.truth["patients"] if p["dropped_out"]}
    assert ids_mar != ids_mnar
    # MNAR drops out patients whose unobserved next rating got worse
    assert _first_missing_vs_last_observed(mnar) > _first_missing_vs_last_observed(mar) + 0.7


# ---------------------------------------------------------------- item allocation helpers


def test_stochastic_round_keeps_the_mean():
    rng = np.random.default_rng(0)
    x = np.full(20000, 1.5)
    r = stochastic_round(x, rng)
    assert set(np.unique(r)) == {1, 2}
    assert r.mean() == pytest.approx(1.5, abs=0.02)


def test_fill_overflow_caps_items_and_keeps_sums():
    items = np.array([[9, 6, 0, 0, 0, 0, 0, 0, 0, 0], [6, 6, 6, 6, 6, 6, 6, 6, 6, 6]])
    out = fill_overflow(items, np.arange(10))
    assert out.max() <= 6
    assert (out.sum(axis=1) == items.sum(axis=1)).all()
    assert out[0].tolist() == [6, 6, 3, 0, 0, 0, 0, 0, 0, 0]


def test_allocate_items_sums_to_totals_with_sickness_on_its_items():
    data = np.random.default_rng(1)
    core = data.integers(0, 50, size=(500, 3))
    sick = np.minimum(data.integers(0, 8, size=(500, 3)), 60 - core)
    profile = np.full(10, 0.1)
    weights = np.zeros(10)
    weights[[3, 4, 5, 6, 7]] = 0.2
    items = allocate_items(core, sick, profile, weights, np.random.default_rng(2))
    assert (items.sum(axis=-1) == core + sick).all()
    assert items.min() >= 0 and items.max() <= 6
    base = allocate_items(core, np.zeros_like(sick), profile, weights, np.random.default_rng(2))
    extra = (items - base).sum(axis=(0, 1))
    assert extra[[3, 4, 5, 6, 7]].sum() > 0.9 * extra.sum()
