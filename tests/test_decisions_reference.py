"""The decision estimators against an independent computation in R (geepack, sandwich).

``tests/data/decision_rows.py`` wrote the eligible decision points of a simulated cohort;
``tests/data/decision_reference.R`` fitted the propensity and outcome models itself and took the
IPW and AIPW estimates and sandwich SEs from ``geepack::geeglm`` (and ``sandwich::vcovCL``).
The tests never call R.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ketastats.decisions.estimators import analysis_set, estimate

DATA = Path(__file__).resolve().parent / "data"
TERMS = ["severity", "illness_type", "febrile", "days_since_onset", "previous_score", "baseline_score",
         "progress", "days_since_previous", "illness_medication"]
REFERENCE = pd.read_csv(DATA / "decision_reference.csv")
CASES = sorted({(r.decision, r.outcome) for r in REFERENCE.itertuples()})


@pytest.fixture(scope="module")
def points():
    return pd.read_csv(DATA / "decision_points.csv", dtype={"patient_id": str})


def test_the_points_are_those_the_package_writes(tmp_path):
    # decision_points.csv is what tests/data/decision_rows.py writes with today's package
    import sys

    from ketastats.tablecsv import write_csv

    sys.path.insert(0, str(DATA))
    try:
        from decision_rows import points as fresh
    finally:
        sys.path.remove(str(DATA))
    write_csv(fresh(), tmp_path / "now.csv", float_format="%.10g")
    assert (tmp_path / "now.csv").read_bytes() == (DATA / "decision_points.csv").read_bytes()


@pytest.mark.parametrize(("decision", "outcome"), CASES)
@pytest.mark.parametrize("estimator", ["ipw", "aipw", "gformula"])
def test_estimates_and_sandwich_ses_equal_geepack(points, decision, outcome, estimator):
    ref = REFERENCE[(REFERENCE.decision == decision) & (REFERENCE.outcome == outcome)].set_index("estimator")
    data, counts = analysis_set(points, decision, outcome, TERMS)
    assert counts["analysed"] == ref.loc[estimator, "n"]
    got = estimate(estimator, data, decision=decision, outcome=outcome, binary=outcome.startswith("response"),
                   propensity_terms=TERMS, outcome_terms=TERMS, truncate=(0.01, 0.99))
    assert got.estimate == pytest.approx(ref.loc[estimator, "estimate"], rel=1e-6, abs=1e-8)
    if estimator != "gformula":  # R gives no g-formula SE; tests/test_decisions.py checks it another way
        assert got.se == pytest.approx(ref.loc[estimator, "se"], rel=1e-6)
    if estimator == "ipw":  # a second sandwich: sandwich::vcovCL(HC0) of the weighted glm
        assert got.se == pytest.approx(ref.loc["ipw_vcovCL", "se"], rel=1e-6)
