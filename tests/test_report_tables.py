"""Table 1: counts, summaries and SMDs against direct computation and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from report_cohort import conceals

from ketastats.report.suppression import SuppressionLog, is_small, is_suppressed
from ketastats.report.tables import patient_level, smd_categorical, smd_continuous, table_one, table_one_frame


def cohort(n_never: int, n_ever: int, seed: int = 0) -> pd.DataFrame:
    """Three sessions per patient; ever-ill patients are ill at session 2."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_never + n_ever):
        ever = i >= n_never
        age = float(rng.normal(50 if ever else 40, 10))
        sex = ["female", "male", "other"][int(rng.choice(3, p=[0.5, 0.4, 0.1]))]
        crp = float(rng.lognormal(0, 1.5))  # strongly skewed: median [IQR]
        for s in (1, 2, 3):
            rows.append(
                {
                    "patient_id": f"P{i:03d}",
                    "session": s,
                    "day": 3 * (s - 1),
                    "age": age if i % 17 else np.nan,
                    "sex": sex,
                    "crp_mg_l": crp,
                    "madrs": 30.0 - 3 * s,
                    "ill": int(ever and s == 2),
                    "antidepressant": int(rng.random() < 0.6),
                }
            )
    return pd.DataFrame(rows)


def test_smd_closed_forms():
    a, b = [2.0, 4.0, 6.0], [1.0, 2.0, 3.0]  # means 4 and 2, variances 4 and 1
    assert smd_continuous(a, b) == pytest.approx(2 / math.sqrt(2.5), rel=1e-12)
    # two levels: |p1 - p0| / sqrt((p1 q1 + p0 q0) / 2)
    x1 = ["y"] * 30 + ["n"] * 70
    x0 = ["y"] * 50 + ["n"] * 50
    expect = abs(0.3 - 0.5) / math.sqrt((0.3 * 0.7 + 0.5 * 0.5) / 2)
    assert smd_categorical(x1, x0) == pytest.approx(expect, rel=1e-12)


def test_smd_three_levels_matches_yang_dalton_by_hand():
    # levels a, b, c; proportions of b and c: treated (0.3, 0.2), control (0.5, 0.1)
    x1 = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    x0 = ["a"] * 40 + ["b"] * 50 + ["c"] * 10
    t, c = np.array([0.3, 0.2]), np.array([0.5, 0.1])
    s11 = (0.3 * 0.7 + 0.5 * 0.5) / 2
    s22 = (0.2 * 0.8 + 0.1 * 0.9) / 2
    s12 = (-0.3 * 0.2 - 0.5 * 0.1) / 2
    det = s11 * s22 - s12**2
    d = t - c
    quad = (s22 * d[0] ** 2 - 2 * s12 * d[0] * d[1] + s11 * d[1] ** 2) / det
    assert smd_categorical(x1, x0) == pytest.approx(math.sqrt(quad), rel=1e-12)


def test_patient_level_takes_the_first_session_even_when_missing():
    df = cohort(3, 2)
    df.loc[(df["patient_id"] == "P000") & (df["session"] == 1), "madrs"] = np.nan
    pts = patient_level(df)
    assert math.isnan(pts.loc["P000", "madrs"])  # not the session-2 value
    assert pts["n_sessions"].tolist() == [3.0] * 5
    assert pts["ever_ill"].tolist() == [0, 0, 0, 1, 1]
    assert pts["course_days"].tolist() == [6.0] * 5


def test_table_one_counts_and_statistics_match_direct_computation():
    df = cohort(60, 40)
    log = SuppressionLog(10)
    t1 = table_one(df, log)
    pts = patient_level(df)
    assert t1["n"] == {"never_ill": 60, "ever_ill": 40, "overall": 100}
    age = next(r for r in t1["rows"] if r["variable"] == "age")
    ever_age = pts.loc[pts["ever_ill"] == 1, "age"].dropna()
    assert age["kind"] == "mean_sd"
    assert age["cells"]["ever_ill"]["mean"] == pytest.approx(ever_age.mean())
    assert age["cells"]["ever_ill"]["sd"] == pytest.approx(ever_age.std(ddof=1))
    never_age = pts.loc[pts["ever_ill"] == 0, "age"].dropna()
    assert age["smd"] == pytest.approx(smd_continuous(ever_age, never_age))
    crp = (
        next(r for r in t1["rows"] if r["variable"] == "crp_mg_l")
        if any(r["variable"] == "crp_mg_l" for r in t1["rows"])
        else None
    )
    assert crp is None  # only the documented Table 1 variables are shown
    for row in (r for r in t1["rows"] if r["variable"] == "sex"):
        for key, flag in (("never_ill", 0), ("ever_ill", 1)):
            cell = row["cells"][key]
            true = int((pts.loc[pts["ever_ill"] == flag, "sex"] == row["level"]).sum())
            if is_suppressed(cell["n"]):
                assert is_small(true, 10) or conceals(cell["n"], true)
            else:
                assert cell["n"] == true
                assert cell["pct"] == pytest.approx(100 * true / (pts["ever_ill"] == flag).sum())


def test_table_one_shows_no_small_count_and_no_statistic_of_a_small_group():
    df = cohort(50, 7, seed=3)  # only 7 ever-ill patients
    log = SuppressionLog(10)
    t1 = table_one(df, log)
    assert t1["n"]["ever_ill"] == "<11"
    # 57 - 50 = 7 would give the small cell away: the other group is hidden too
    assert conceals(t1["n"]["never_ill"], 50) and t1["n"]["overall"] == 57
    for row in t1["rows"]:
        assert row["smd"] is None  # no comparison with a group of 1-10 patients
        assert row["cells"]["ever_ill"].get("mean") is None and row["cells"]["ever_ill"].get("pct") is None
        for k in ("never_ill", "ever_ill", "overall"):
            for value in (row["cells"][k].get("n"), row["missing"][k]):
                assert not (isinstance(value, int) and is_small(value, 10)), (row["label"], k, value)
    assert log.to_dict()["applied"]
    frame = table_one_frame(t1)
    assert frame.loc[0, "Ever ill"] == "<11"


def test_skewed_variable_gets_median_and_iqr():
    df = cohort(60, 40)
    df["bmi"] = df.groupby("patient_id")["crp_mg_l"].transform("first")  # a skewed Table 1 variable
    t1 = table_one(df, SuppressionLog(10))
    bmi = next(r for r in t1["rows"] if r["variable"] == "bmi")
    assert bmi["kind"] == "median_iqr"
    pts = patient_level(df)
    q1, med, q3 = np.percentile(pts["bmi"], [25, 50, 75])
    assert bmi["cells"]["overall"]["median"] == pytest.approx(med)
    assert (bmi["cells"]["overall"]["q1"], bmi["cells"]["overall"]["q3"]) == pytest.approx((q1, q3))
