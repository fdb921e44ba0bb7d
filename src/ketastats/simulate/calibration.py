"""Calibration summary of a simulated cohort against the literature targets.

Targets and tolerances, with their literature sources, are in ``docs/simulation.md``
("Calibration": ketamine response and illness). Conventions as in
:mod:`ketastats.simulate.generator`: the session-1 MADRS is the pre-treatment baseline,
"after *n* infusions" is the rating at session *n + 1*, response is a >= 50% reduction from
the session-1 rating and remission is MADRS <= 10. Response metrics use the *observed*
cohort (patients with both ratings), as an analyst would; illness metrics use the truth
(true illness at attended sessions).

Examples
--------
>>> from ketastats.simulate import simulate_cohort
>>> summary = calibration_summary(simulate_cohort(300, seed=4))
>>> sorted(summary)[:3]
['change_after_6_mean', 'change_after_6_sd', 'dropout_share']
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ketastats.simulate.generator import SimulatedCohort

__all__ = ["CALIBRATION_TARGETS", "calibration_summary", "check_calibration"]

#: metric -> (low, high, basis). Ranges are the literature ranges of docs/simulation.md,
#: "Calibration", widened only where stated there (and in tests/test_calibration.py).
CALIBRATION_TARGETS: dict[str, tuple[float, float, str]] = {
    "response_after_1": (
        0.07,
        0.20,
        "13.0% after one infusion (Zheng 2019, n=77, 95% CI ~6-22%); research calibration 9.8%",
    ),
    "remission_after_1": (
        0.01,
        0.10,
        "7.8% (Zheng 2019, n=77, 95% CI ~3-16%); the research calibration gives 2.7%",
    ),
    "response_after_6": (0.55, 0.71, "55-71% after six infusions (Zheng, Murrough, Phillips)"),
    "remission_after_6": (0.38, 0.48, "38-48% remission (MADRS <= 10) after six infusions"),
    "change_after_6_mean": (
        -20.0,
        -16.0,
        "-17.7 to -18.4 (Singh 2016, n=67); +-2 points ~ one trial standard error",
    ),
    "change_after_6_sd": (7.3, 12.0, "between-patient SD of change 7.3-12.0 (Singh 2016)"),
    "median_infusions_to_response": (3.0, 3.0, "median 3 infusions to response (Phillips 2019)"),
    "ill_session_share": (
        0.03,
        0.07,
        "~5% of sessions ill (illness Monte Carlo: 5.1% ARI + 0.6% AGE), +-2 points",
    ),
    "ever_ill_share": (0.12, 0.23, "12-23% of patients with >= 1 ill session (illness Monte Carlo)"),
}


def calibration_summary(cohort: SimulatedCohort) -> dict[str, float]:
    """Compute the calibration metrics of a cohort.

    Parameters
    ----------
    cohort : SimulatedCohort

    Returns
    -------
    dict of str to float
        ``response_after_n`` / ``remission_after_n`` (n = 1 and the planned number of
        infusions, labelled 6 by default), ``change_after_6_mean`` and ``_sd`` (MADRS
        after the course minus session 1), ``median_infusions_to_response`` (median over
        patients who respond at some rating of the first *n* with a response after *n*
        infusions), ``ill_session_share`` (truly ill attended sessions),
        ``ever_ill_share``, ``reported_ill_share`` and ``dropout_share``.
    """
    s = cohort.sessions
    n_inf = int(cohort.params["schedule"]["planned_infusions"])
    madrs = (
        s.pivot(index="patient_id", columns="session", values="madrs")
        .astype("Float64")
        .to_numpy(dtype=float, na_value=np.nan)
    )
    base = madrs[:, 0]
    out: dict[str, float] = {}
    for n, label in ((1, "1"), (n_inf, "6" if n_inf == 6 else str(n_inf))):
        if madrs.shape[1] <= n:
            continue
        y = madrs[:, n]
        ok = ~np.isnan(y) & ~np.isnan(base) & (base > 0)
        rel = (base[ok] - y[ok]) / base[ok]
        out[f"response_after_{label}"] = float(np.mean(rel >= 0.5))
        out[f"remission_after_{label}"] = float(np.mean(y[ok] <= 10))
        if n == n_inf:
            change = y[ok] - base[ok]
            out[f"change_after_{label}_mean"] = float(np.mean(change))
            out[f"change_after_{label}_sd"] = float(np.std(change, ddof=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        resp = (base[:, None] - madrs[:, 1:]) / base[:, None] >= 0.5
    any_resp = resp.any(axis=1)
    if any_resp.any():
        first = resp.argmax(axis=1) + 1
        out["median_infusions_to_response"] = float(np.median(first[any_resp]))
    else:
        out["median_infusions_to_response"] = float("nan")
    patients = cohort.truth["patients"]
    n_ill = sum(len(p["true_ill_sessions"]) for p in patients)
    out["ill_session_share"] = n_ill / len(s)
    out["ever_ill_share"] = float(np.mean([len(p["true_ill_sessions"]) > 0 for p in patients]))
    out["reported_ill_share"] = float(pd.to_numeric(s["ill"]).mean())
    out["dropout_share"] = float(np.mean([p["dropped_out"] for p in patients]))
    return out


def check_calibration(summary: dict[str, float]) -> dict[str, str]:
    """Return ``{metric: message}`` for each metric outside its target range (empty: all pass)."""
    problems = {}
    for metric, (lo, hi, basis) in CALIBRATION_TARGETS.items():
        value = summary.get(metric)
        if value is None or not lo <= value <= hi:
            problems[metric] = f"{metric} = {value!r}, target [{lo}, {hi}] ({basis})"
    return problems
