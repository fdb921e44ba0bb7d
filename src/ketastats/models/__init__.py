"""Statistical models of ketastats.

:func:`run_model` fits one model specification (a ``kind`` from config) to a cohort's
prepared table and returns its JSON-ready result. Each kind's code is
``ketastats/models/kinds/<kind>.py`` (declared, with its defaults and checks, in
:mod:`ketastats.models.registry`); the numerical engines they share are in
``ketastats/models/engines/``. The building blocks are public too: :func:`fit_mixed` (linear
mixed models behind one interface), :func:`satterthwaite` (lmerTest-style df),
:func:`fit_logistic_glmm` (ML random-intercept logistic model), :func:`bh_adjust`,
:func:`monte_carlo_indirect`, :func:`fit_with_retries`, :func:`apply_estimands`.
"""

from __future__ import annotations

from .._lazy import attach

# The specs (kinds, defaults, estimand strategies) are plain Python: the config check imports
# them on every Snakefile parse. Everything else needs statsmodels/scipy/pandas and is
# imported on first use.
from .specs import (
    DEFAULT_ESTIMANDS,
    ESTIMAND_EVENTS,
    KIND_DEFAULTS,
    KINDS,
    STRATEGIES,
    resolve_estimands,
    resolve_spec,
)

_LAZY = {
    "apply_estimands": "estimands",
    "GLMMResult": "engines.logistic_glmm",
    "fit_logistic_glmm": "engines.logistic_glmm",
    "SatterthwaiteResult": "engines.satterthwaite",
    "lmm_loglik": "engines.satterthwaite",
    "satterthwaite": "engines.satterthwaite",
    "monte_carlo_indirect": "kinds.mediation",
    "ENGINES": "engines.lmm",
    "MixedModelResult": "engines.lmm",
    "design_matrices": "engines.lmm",
    "fit_mixed": "engines.lmm",
    "adjust_families": "multiplicity",
    "adjust_tests": "multiplicity",
    "bh_adjust": "multiplicity",
    "Attempt": "retries",
    "RetryOutcome": "retries",
    "SkipModel": "retries",
    "fit_with_retries": "retries",
    "run_model": "run",
    "fit_model": "run",
    "ModelResult": "result",
    "Coefficient": "result",
    "Design": "result",
    "mixture_lrt_pvalue": "kinds.illness_slopes",
}

__all__ = [
    "ENGINES",
    "MixedModelResult",
    "design_matrices",
    "fit_mixed",
    "run_model",
    "fit_model",
    "ModelResult",
    "Coefficient",
    "Design",
    "resolve_spec",
    "resolve_estimands",
    "KINDS",
    "KIND_DEFAULTS",
    "ESTIMAND_EVENTS",
    "STRATEGIES",
    "DEFAULT_ESTIMANDS",
    "apply_estimands",
    "satterthwaite",
    "SatterthwaiteResult",
    "lmm_loglik",
    "fit_logistic_glmm",
    "GLMMResult",
    "bh_adjust",
    "adjust_tests",
    "adjust_families",
    "monte_carlo_indirect",
    "mixture_lrt_pvalue",
    "fit_with_retries",
    "Attempt",
    "RetryOutcome",
    "SkipModel",
]


__getattr__, __dir__ = attach(__name__, _LAZY)
