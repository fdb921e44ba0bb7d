"""Synthetic IV-ketamine cohorts with acute illness and known truth (issue 4, points 1-3).

See :mod:`ketastats.simulate.generator` for the conventions (sessions, "after n
infusions", the true within-person illness effect) and :mod:`ketastats.simulate.params`
for the parameters and scenarios; their sources and the calibration are in ``docs/simulation.md``.
"""

from ketastats.simulate.calibration import (
    CALIBRATION_TARGETS,
    calibration_summary,
    check_calibration,
)
from ketastats.simulate.generator import SESSION_COLUMNS, SimulatedCohort, simulate_cohort
from ketastats.simulate.output import (
    format_sessions_csv,
    simulate_to_dir,
    truth_json,
    write_cohort,
)
from ketastats.simulate.params import (
    PARAM_DOCS,
    SCENARIOS,
    default_params,
    load_params,
    resolve_params,
)

__all__ = [
    "CALIBRATION_TARGETS",
    "PARAM_DOCS",
    "SCENARIOS",
    "SESSION_COLUMNS",
    "SimulatedCohort",
    "calibration_summary",
    "check_calibration",
    "default_params",
    "format_sessions_csv",
    "load_params",
    "resolve_params",
    "simulate_cohort",
    "simulate_to_dir",
    "truth_json",
    "write_cohort",
]
