"""ketastats: does acute illness during an IV ketamine course change the outcome?

The public API, for notebooks, scripts and the Snakemake rules. Names are imported on
first use, so ``import ketastats`` stays fast.

Examples
--------
>>> import ketastats as ks
>>> cohort = ks.simulate_cohort(50, seed=1)
>>> data = ks.prepare_sessions(ks.coerce_sessions(cohort.sessions))
>>> fit = ks.fit_mixed(data, "madrs ~ progress + ill_within + ill_between", "patient_id", "~progress")
>>> fit.converged, fit.ngroups, fit.fixed["term"].tolist()
(True, 50, ['Intercept', 'progress', 'ill_within', 'ill_between'])
"""

from __future__ import annotations

import importlib
from typing import Any

from .exceptions import (
    ConfigError,
    ConvergenceWarning,
    DataValidationError,
    IdentifierError,
    KetastatsError,
    KetastatsWarning,
    ModelError,
)

_LAZY = {
    # config
    "load_config": "config",
    "check_config": "config",
    # reading and checking data
    "read_cohort": "io",
    "read_table": "io",
    "read_redcap": "io",
    "sha256_file": "io",
    "validate_file": "validate",
    "validate_sessions": "validate",
    "coerce_sessions": "validate",
    "ValidationReport": "validate",
    "scan_identifiers": "identifiers",
    "COLUMNS": "contract",
    "INSTRUMENTS": "contract",
    # derived variables
    "prepare_sessions": "prepare",
    # simulation
    "simulate_cohort": "simulate",
    "write_cohort": "simulate",
    "load_params": "simulate",
    "default_params": "simulate",
    "resolve_params": "simulate",
    "SCENARIOS": "simulate",
    "SimulatedCohort": "simulate",
    "calibration_summary": "simulate",
    # models
    "fit_mixed": "models",
    "MixedModelResult": "models",
    # simulation studies
    "run_recovery": "recovery",
    "summarize_replicates": "recovery",
    "run_power": "power",
    # report
    "build_results": "report",
    "render_html": "report",
    "suppress_count": "report",
}

__all__ = [
    "ConfigError",
    "ConvergenceWarning",
    "DataValidationError",
    "IdentifierError",
    "KetastatsError",
    "KetastatsWarning",
    "ModelError",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ketastats' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
