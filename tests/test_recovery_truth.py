"""The recovery study's truth: the model-weighted projection of the generator's illness shift.

``ketastats.recovery.target_effect`` is checked against a hand computation with dense matrices,
against the descriptive truth of ``truth.json`` where the two must agree, and against the fitted
model through the exact linear identity estimate = truth + projection of the illness-free outcome.
All fast (no study); the recovery studies themselves are in ``tests/test_recovery.py``.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from ketastats.models import resolve_estimands
from ketastats.prepare import prepare_sessions
from ketastats.recovery import (
    TRUTH_KEY,
    default_fit,
    default_spec,
    gls_projection,
    run_replicate,
    summarize_replicates,
    target_effect,
)
from ketastats.simulate import simulate_cohort
from ketastats.validate import coerce_sessions

#: arbitrary but plausible variance components (random intercept, slope on progress; residual)
G = np.array([[20.0, -2.0], [-2.0, 1.5]])
SIGMA2 = 9.0
#: every mechanism that separates the flag from the true shift switched off: exact flags, one
#: shift for every severity, no carry-over, no mediation or efficacy change (defaults), and no
#: postponement, dropout or missing ratings
MECHANISMS_OFF = {
    "illness": {
        "report_sensitivity": 1.0,
        "false_positive_rate": 0.0,
        "postpone_prob": {"mild": 0.0, "moderate": 0.0, "severe": 0.0, "febrile": 0.0},
    },
    "effects": {"sickness_shift": {"mild": 2.5, "moderate": 2.5, "severe": 2.5}, "carryover_fraction": 0.0},
    "missingness": {"dropout_share": 0.0, "intermittent_missing": 0.0},
}


def _merged(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = _merged(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def _prepared(cohort) -> pd.DataFrame:
    return prepare_sessions(coerce_sessions(cohort.sessions))


def _hand_truth(cohort, data: pd.DataFrame) -> tuple[float, int]:
    """The primary model's rows, design and V written out by hand; dense GLS of the true shift."""
    rows = data[(data["session"] >= 2) & data["madrs"].notna()].copy()
    ill = rows["ill"].astype(float)
    between = ill.groupby(rows["patient_id"]).transform("mean")
    progress = rows["progress"].astype(float).to_numpy()
    X = np.column_stack(
        [
            np.ones(len(rows)),
            progress,
            np.log1p(progress),
            rows["days_since_prev"].astype(float),
            rows["madrs_baseline"].astype(float),
            (ill - between).to_numpy(),  # ill_within over the analysed rows
            between.to_numpy(),
            rows["ill_lag1"].astype(float),
        ]
    )
    Z = np.column_stack([np.ones(len(rows)), progress])
    pid = rows["patient_id"].to_numpy()
    V = np.zeros((len(rows), len(rows)))
    for p in np.unique(pid):
        i = np.flatnonzero(pid == p)
        V[np.ix_(i, i)] = Z[i] @ G @ Z[i].T + SIGMA2 * np.eye(len(i))
    by_id = {p["patient_id"]: p for p in cohort.truth["patients"]}
    parts = ("direct_shift", "carryover_shift", "mediated_shift", "efficacy_shift")
    s = np.array(
        [sum(by_id[p][k][v - 1] for k in parts) for p, v in zip(pid, rows["session"], strict=True)]
    )
    W = np.linalg.inv(V)
    beta = np.linalg.solve(X.T @ W @ X, X.T @ W @ s)
    return float(beta[5]), len(rows)


def test_illness_shift_holds_the_truth_arrays():
    c = simulate_cohort(30, seed=5)
    s = c.illness_shift()
    p = c.truth["patients"][7]
    mine = s[s["patient_id"] == p["patient_id"]]
    assert mine["session"].tolist() == list(range(1, len(p["direct_shift"]) + 1))
    assert mine["carryover"].tolist() == p["carryover_shift"]
    total = np.add.reduce([np.array(p[k]) for k in ("direct_shift", "carryover_shift", "mediated_shift",
                                                     "efficacy_shift")])
    assert mine["total"].to_numpy() == pytest.approx(total)
    assert len(s) == 30 * len(p["direct_shift"])


def test_truth_equals_a_hand_computation_on_a_tiny_cohort():
    c = simulate_cohort(25, seed=3)
    data = _prepared(c)
    spec, est = default_spec(), resolve_estimands(None)
    hand, nobs = _hand_truth(c, data)
    assert (data["ill"] == 1).sum() >= 3 and hand != 0.0  # a cohort with illness to project
    got = target_effect(c, data, spec, est, G, SIGMA2, nobs=nobs)
    assert got == pytest.approx(hand, rel=1e-9, abs=1e-12)


def test_truth_checks_the_rows_against_the_fit():
    c = simulate_cohort(25, seed=3)
    data = _prepared(c)
    from ketastats.exceptions import KetastatsError

    with pytest.raises(KetastatsError, match="analysed 3 rows"):
        target_effect(c, data, default_spec(), resolve_estimands(None), G, SIGMA2, nobs=3)
    gee = {**default_spec(), "kind": "gee"}
    with pytest.raises(KetastatsError, match="kind lmm"):
        target_effect(c, data, gee, resolve_estimands(None), G, SIGMA2)


@pytest.mark.parametrize("extra", [{}, {"illness": {"postpone_prob": {"mild": 0.5}}, "missingness":
                                       {"dropout_share": 0.3, "intermittent_missing": 0.1}}])
def test_with_the_mechanisms_off_the_new_truth_is_the_old_one(extra):
    """The shift is then 2.5 exactly at the flagged sessions and 0 elsewhere: in the span of
    ill_within + ill_between, so the projection gives 2.5, as the mean over flagged sessions does
    (also with postponement, dropout and missing ratings back on: the design does not matter)."""
    overrides = _merged(MECHANISMS_OFF, extra)
    c = simulate_cohort(120, seed=9, overrides=overrides)
    old = c.truth["effects"][TRUTH_KEY]["value"]
    new = target_effect(c, _prepared(c), default_spec(), resolve_estimands(None), G, SIGMA2)
    assert old == pytest.approx(2.5, abs=1e-12)
    assert new == pytest.approx(old, abs=1e-9)


def test_with_the_default_mechanisms_the_truths_differ():
    """The descriptive mean is not the estimand: missed illness and false flags dilute the
    projection, carry-over at flagged sessions raises it."""
    c = simulate_cohort(300, seed=4)
    new = target_effect(c, _prepared(c), default_spec(), resolve_estimands(None), G, SIGMA2)
    old = c.truth["effects"][TRUTH_KEY]["value"]
    assert 0.5 < new < old


def test_null_scenario_truth_is_zero():
    c = simulate_cohort(80, seed=2, scenario="null")
    assert target_effect(c, _prepared(c), default_spec(), resolve_estimands(None), G, SIGMA2) == 0.0


def test_estimate_is_truth_plus_the_projection_of_the_illness_free_outcome():
    """GLS is linear in the outcome: at the fitted weights the model's estimate splits exactly into
    the projection of the true illness shift (the truth) and that of the rest of the MADRS."""
    from ketastats.models import design_matrices
    from ketastats.models.fitting import formulas_for
    from ketastats.models.rows import model_rows

    c = simulate_cohort(60, seed=12)
    data = _prepared(c)
    spec, est = default_spec(), resolve_estimands(None)
    got = default_fit(data, spec, est, 0.05)
    G_hat = np.array(got["_re_cov"], dtype=float)
    truth = target_effect(c, data, spec, est, G_hat, got["_residual_variance"], nobs=got["_nobs"])
    formula, re_formula = formulas_for(spec)
    rows, _ = model_rows(data, spec, est, outcome="madrs", terms=[formula.split("~")[1], re_formula],
                         what="primary")
    y, X, Z, g, names, _, used = design_matrices(rows, formula, "patient_id", re_formula)
    shift = c.illness_shift().set_index(["patient_id", "session"])["total"]
    s = shift.loc[list(zip(used["patient_id"], used["session"], strict=True))].to_numpy()
    rest = gls_projection(y - s, X, Z, g, G_hat, got["_residual_variance"])[names.index("ill_within")]
    assert got["estimate"] == pytest.approx(truth + rest, rel=1e-6)


def test_replicate_row_says_which_truth_it_scores():
    row = run_replicate("sickness", 60, 3, 0)
    assert row["truth_definition"] == "model_projection"
    assert np.isfinite(row["truth"]) and row["truth"] != row["truth_reported_mean"]
    assert not any(k.startswith("_") for k in row)
    assert row["covers"] == (row["ci_low"] <= row["truth"] <= row["ci_high"])


def test_summary_bias_mcse_is_that_of_the_differences():
    rows = pd.DataFrame(
        {
            "scenario": "sickness",
            "n_patients": 10,
            "truth_definition": "model_projection",
            "estimate": [1.0, 2.0, 3.0, 6.0],
            "truth": [1.5, 1.0, 2.5, 5.0],
            "truth_reported_mean": [2.0, 2.0, 2.0, 2.0],
            "se": 1.0,
            "covers": [True, True, False, True],
            "rejects": False,
            "converged": True,
        }
    )
    s = summarize_replicates(rows)
    diff = rows["estimate"] - rows["truth"]
    assert s["bias"] == pytest.approx(diff.mean())
    assert s["error_sd"] == pytest.approx(diff.std(ddof=1))
    assert s["bias_mcse"] == pytest.approx(diff.std(ddof=1) / 2)
    assert s["bias_over_emp_se"] == pytest.approx(diff.mean() / rows["estimate"].std(ddof=1))
    assert s["truth_reported_mean"] == 2.0 and s["truth_definition"] == "model_projection"
