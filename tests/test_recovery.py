"""Recovery and power studies against the simulator's known truth.

Tolerances are Monte Carlo tolerances: three Monte Carlo standard errors of the quantity
(Morris, White & Crowther 2019), computed from the number of replicates.
"""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from ketastats.cli import main
from ketastats.recovery import replicate_seed, run_recovery, summarize_replicates

pytestmark = pytest.mark.slow

REPS, N = 60, 120


@pytest.fixture(scope="module")
def null_study():
    return run_recovery("null", REPS, N, seed=101, progress=False)


@pytest.fixture(scope="module")
def sickness_study():
    return run_recovery("sickness", REPS, N, seed=202, progress=False)


def test_null_scenario_rejects_about_five_percent(null_study):
    table, s = null_study
    assert s["truth"] == 0.0
    assert s["replicates_with_estimate"] == REPS
    mc = math.sqrt(0.05 * 0.95 / REPS)
    assert abs(s["rejection_rate"] - 0.05) <= 3 * mc, s
    assert abs(s["coverage"] - 0.95) <= 3 * mc, s


def test_sickness_effect_is_recovered_without_bias(sickness_study):
    table, s = sickness_study
    assert s["truth"] > 1.0  # the scenario has a real effect
    # scored against what ill_within estimates, not the mean shift at flagged sessions
    assert s["truth_definition"] == "model_projection" and s["truth"] < s["truth_reported_mean"]
    assert abs(s["bias"]) <= 3 * s["bias_mcse"], s
    assert abs(s["bias"]) < 0.25 * s["emp_se"], s  # small next to the SE
    mc = math.sqrt(0.05 * 0.95 / REPS)
    assert abs(s["coverage"] - 0.95) <= 3 * mc, s
    # model SEs agree with the replicates' spread (within Monte Carlo error)
    assert abs(s["mean_se"] - s["emp_se"]) <= 3 * s["emp_se_mcse"], s


def test_summary_matches_its_definitions(sickness_study):
    table, s = sickness_study
    assert s["bias"] == pytest.approx((table["estimate"] - table["truth"]).mean())
    assert s["emp_se"] == pytest.approx(table["estimate"].std(ddof=1))
    assert s["coverage"] == pytest.approx(
        ((table["ci_low"] <= table["truth"]) & (table["truth"] <= table["ci_high"])).mean()
    )


def test_replicate_seeds_are_distinct_and_reproducible():
    seeds = [replicate_seed(7, r) for r in range(1000)]
    assert len(set(seeds)) == 1000
    assert seeds == [replicate_seed(7, r) for r in range(1000)]


def test_summary_needs_two_estimates():
    from ketastats.exceptions import KetastatsError

    rows = pd.DataFrame(
        [
            {
                "scenario": "null",
                "n_patients": 10,
                "estimate": 1.0,
                "se": 1.0,
                "truth": 0.0,
                "covers": True,
                "rejects": False,
                "converged": True,
            }
        ]
    )
    with pytest.raises(KetastatsError, match="at least 2"):
        summarize_replicates(rows)


def test_recovery_cli_writes_json_and_csv(tmp_path):
    def run(out):
        argv = "recovery --scenario sickness --replicates 3 --patients 60 --seed 5 --out".split()
        return main([*argv, str(out)])

    assert run(tmp_path) == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    reps = pd.read_csv(tmp_path / "replicates.csv")
    assert s["replicates"] == 3 == len(reps)
    assert pd.read_csv(tmp_path / "summary.csv")["bias"].iloc[0] == pytest.approx(s["bias"])
    # same seed, same bytes
    assert run(tmp_path / "again") == 0
    assert (tmp_path / "again/replicates.csv").read_bytes() == (tmp_path / "replicates.csv").read_bytes()


def test_power_grows_with_cohort_size(tmp_path):
    assert (
        main(
            [
                "power",
                "--effect",
                "3",
                "--sizes",
                "40",
                "160",
                "--replicates",
                "20",
                "--seed",
                "3",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    t = pd.read_csv(tmp_path / "power.csv")
    assert list(t["n_patients"]) == [40, 160]
    assert t["true_effect"].tolist() == pytest.approx([3.0, 3.0], abs=0.3)
    assert t["power"].iloc[1] > t["power"].iloc[0]
    assert (tmp_path / "power.png").stat().st_size > 0 and (tmp_path / "power.svg").stat().st_size > 0
