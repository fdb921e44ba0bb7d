#!/usr/bin/env python
"""Write the decision points the R reference for issue 17 re-analyses.

    PYTHONPATH=src python tests/data/decision_rows.py     # then: cd tests/data && Rscript decision_reference.R

A cohort of the ``decisions`` scenario (1500 patients, seed 17) is simulated, typed and prepared by
the package's own steps, and its eligible decision points (:func:`ketastats.decisions.decision_points`)
are written to ``decision_points.csv``: the patient, the two decisions, the outcomes and the
confounders. ``decision_reference.R`` fits the propensity and outcome models itself (glm, lm),
forms the stabilized truncated weights and the AIPW pseudo-outcomes, and takes the estimates and
the cluster-robust sandwich SEs from ``geepack::geeglm`` (independence working correlation,
patients as clusters); ``tests/test_decisions_reference.py`` compares them with
``ketastats.decisions.estimators``.
"""

from __future__ import annotations

from pathlib import Path

from ketastats.decisions import decision_points
from ketastats.prepare import prepare_sessions
from ketastats.simulate import simulate_cohort
from ketastats.tablecsv import write_csv
from ketastats.validate import coerce_sessions

HERE = Path(__file__).resolve().parent
COLUMNS = [
    "patient_id", "session", "postpone", "reduced_dose", "y_next", "response_next",
    "severity", "illness_type", "febrile", "days_since_onset", "previous_score", "baseline_score",
    "progress", "days_since_previous", "illness_medication",
]


def points():
    cohort = simulate_cohort(1500, seed=17, scenario="decisions")
    data = prepare_sessions(coerce_sessions(cohort.sessions))
    table, _ = decision_points(data)
    return table[COLUMNS]


if __name__ == "__main__":
    write_csv(points(), HERE / "decision_points.csv", float_format="%.10g")
