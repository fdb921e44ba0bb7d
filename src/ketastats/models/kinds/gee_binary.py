"""Kind ``gee_binary``: response and remission by logistic GEE (primary; ``glmm_binary`` is the sensitivity analysis).

Which is primary, and why
    The binary outcomes are analysed primarily by **GEE** (logistic link, exchangeable
    working correlation, robust sandwich SEs; Liang & Zeger 1986). The question for
    response and remission is population-averaged ("how does being ill change the share of
    sessions at which patients respond?"); GEE targets exactly that odds ratio and its SEs
    stay valid if the working correlation is wrong. The **random-intercept logistic model**
    (kind ``glmm_binary``, :mod:`ketastats.models.kinds.glmm_binary`; maximum likelihood by adaptive Gauss-Hermite) is the
    sensitivity analysis: it estimates a subject-specific odds ratio (larger in magnitude,
    by about ``sqrt(1 + 0.346 sigma^2)``; Zeger, Liang & Albert 1988) and is valid under
    MAR dropout, whereas GEE assumes MCAR. Both are reported.

Levels
    ``level: session`` analyses every post-baseline session (illness split within/between
    as in the primary model). ``level: end`` takes one row per patient, the last rated
    session of the course (end-of-course response/remission), with ``ever_ill`` (any ill
    session among the analysed ones) as exposure; clusters are then single patients and the
    GEE reduces to logistic regression with sandwich SEs.

References
----------
Liang, K.-Y., & Zeger, S. L. (1986). Longitudinal data analysis using generalized linear
models. *Biometrika*, 73(1), 13-22.

Zeger, S. L., Liang, K.-Y., & Albert, P. S. (1988). Models for longitudinal data: a
generalized estimating equation approach. *Biometrics*, 44(4), 1049-1060.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import patsy

from ..common import coefficient_rows, illness_effect, num, odds
from ..identification import binary_identification
from ..result import design_of
from ..retries import Diagnosis, fit_with_retries, hessian_is_pd
from ..rows import binary_rows

__all__ = ["fit", "gee_logistic"]

log = logging.getLogger(__name__)


class _FixedExchangeable:
    """An exchangeable working correlation held at a given value (not re-estimated)."""

    @staticmethod
    def make(alpha: float):
        from statsmodels.genmod import cov_struct

        class Fixed(cov_struct.Exchangeable):
            def __init__(self):
                super().__init__()
                self.dep_params = alpha

            def update(self, params):  # noqa: D102 - held fixed
                return None

        return Fixed()


def gee_logistic(
    y: np.ndarray,
    X: np.ndarray,
    groups: np.ndarray,
    *,
    correlation: str = "exchangeable",
    fixed_alpha: float | None = None,
):
    """Logistic GEE with robust (sandwich) SEs, retried with more iterations from a GLM start.

    Parameters
    ----------
    y, X, groups : numpy.ndarray
        0/1 outcome, design with intercept, cluster of each row (rows of a cluster together).
    correlation : {"exchangeable", "independence"}
        Working correlation; the exchangeable parameter is the moment estimator of
        statsmodels unless ``fixed_alpha`` holds it at a given value.

    Returns
    -------
    RetryOutcome
        ``.result`` is the statsmodels GEE result; ``.attempts`` every try.
    """
    from statsmodels.genmod import cov_struct, families
    from statsmodels.genmod.generalized_estimating_equations import GEE
    from statsmodels.genmod.generalized_linear_model import GLM

    def working_correlation():
        if correlation == "independence":
            return cov_struct.Independence()
        if fixed_alpha is not None:
            return _FixedExchangeable.make(fixed_alpha)
        return cov_struct.Exchangeable()

    def attempt(maxiter, glm_start):
        def run():
            model = GEE(y, X, groups=groups, family=families.Binomial(), cov_struct=working_correlation())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                start = None
                if glm_start:
                    start = GLM(y, X, family=families.Binomial()).fit().params
                return model.fit(maxiter=maxiter, start_params=start)

        return run

    def assess(r):
        cov = np.asarray(r.cov_params())
        ok_cov = hessian_is_pd(cov)
        msgs = [] if ok_cov else ["the robust covariance of the estimates is not positive definite"]
        return Diagnosis(bool(getattr(r, "converged", True)), False, ok_cov, None, msgs)

    return fit_with_retries(
        [("gee maxiter=60", attempt(60, False)), ("gee maxiter=500, GLM start", attempt(500, True))], assess
    )


def fit(data: pd.DataFrame, spec: Mapping[str, Any], estimands: Mapping[str, str], alpha: float):
    """Kind ``gee_binary``: logistic GEE with exchangeable working correlation."""
    what = spec["label"]
    df, formula, record, events, non = binary_rows(data, spec, estimands, what)
    y_df, x_df = patsy.dmatrices(formula, df, return_type="dataframe")
    groups = df.loc[y_df.index, spec["group"]].astype(str).to_numpy()
    corr = spec.get("correlation", "exchangeable")
    out = gee_logistic(y_df.iloc[:, 0].to_numpy(), x_df.to_numpy(), groups, correlation=corr)
    r = out.result
    coefs = coefficient_rows(list(x_df.columns), np.asarray(r.params), np.asarray(r.bse), alpha=alpha)
    for c in coefs:
        c["odds_ratio"] = odds(c["estimate"])
        c["or_ci_low"] = odds(c["ci_low"])
        c["or_ci_high"] = odds(c["ci_high"])
    dep = r.model.cov_struct.dep_params if corr == "exchangeable" else 0.0
    eff = illness_effect(coefs, spec["illness_term"], scale="log odds ratio")
    if eff is not None:
        eff["odds_ratio"] = odds(eff["estimate"])
        eff["outcome"] = spec["outcome"]
    return {
        "converged": bool(out.converged),
        "singular": bool(out.singular),
        "attempts": out.attempts_dicts(),
        "engine": "statsmodels GEE",
        "optimizer": out.chosen.label,
        "method": "GEE",
        "formula": formula,
        "nobs": int(len(y_df)),
        "ngroups": int(len(np.unique(groups))),
        "df_method": "normal",
        "coefficients": coefs,
        "illness_effect": eff,
        "random": None,
        "working_correlation": {"structure": corr, "alpha": num(float(np.atleast_1d(dep)[0]))},
        "se_type": "robust (sandwich)",
        "identification": binary_identification(df, y_df, x_df, np.asarray(r.params), spec),
        "events": events,
        "non_events": non,
        "level": spec.get("level", "session"),
        "estimands": record,
        "estimand_scale": "population-averaged (marginal) odds ratio",
        "analysis_role": "primary analysis of the binary outcomes: the question is population-averaged and the "
        "robust SEs stay valid if the working correlation is wrong (assumes MCAR dropout)",
        "messages": [out.chosen.message] if out.chosen.message else [],
        "design": design_of(
            df.loc[y_df.index], formula, None, spec["group"], list(x_df.columns),
            centre=spec.get("centre") or (), link="logit",
        ),
    }


