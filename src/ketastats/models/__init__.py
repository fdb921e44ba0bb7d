"""Statistical models of ketastats.

:func:`run_model` fits one model specification (a ``kind`` from config) to a cohort's
prepared table and returns its JSON-ready result; the kinds are described in
:mod:`ketastats.models.specs`. The building blocks are public too: :func:`fit_mixed` (linear
mixed models behind one interface), :func:`satterthwaite` (lmerTest-style df),
:func:`fit_logistic_glmm` (ML random-intercept logistic model), :func:`bh_adjust`,
:func:`monte_carlo_indirect`, :func:`fit_with_retries`, :func:`apply_estimands`.
"""

from .estimands import apply_estimands
from .glmm import GLMMResult, fit_logistic_glmm
from .inference import SatterthwaiteResult, lmm_loglik, satterthwaite
from .mediation import monte_carlo_indirect
from .mixed import ENGINES, MixedModelResult, design_matrices, fit_mixed
from .multiplicity import adjust_families, adjust_tests, bh_adjust
from .robust import Attempt, RetryOutcome, SkipModel, fit_with_retries
from .run import run_model
from .slopes import mixture_lrt_pvalue
from .specs import (
    DEFAULT_ESTIMANDS,
    ESTIMAND_EVENTS,
    KIND_DEFAULTS,
    KINDS,
    MCID,
    STRATEGIES,
    resolve_estimands,
    resolve_spec,
)

__all__ = [
    "ENGINES",
    "MixedModelResult",
    "design_matrices",
    "fit_mixed",
    "run_model",
    "resolve_spec",
    "resolve_estimands",
    "KINDS",
    "KIND_DEFAULTS",
    "ESTIMAND_EVENTS",
    "STRATEGIES",
    "DEFAULT_ESTIMANDS",
    "MCID",
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
