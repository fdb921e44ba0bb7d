"""Response and remission: GEE logistic (primary) and mixed logistic (sensitivity).

Which is primary, and why
    The binary outcomes are analysed primarily by **GEE** (logistic link, exchangeable
    working correlation, robust sandwich SEs; Liang & Zeger 1986). The question for
    response and remission is population-averaged ("how does being ill change the share of
    sessions at which patients respond?"); GEE targets exactly that odds ratio and its SEs
    stay valid if the working correlation is wrong. The **random-intercept logistic model**
    (:mod:`ketastats.models.glmm`, maximum likelihood by adaptive Gauss-Hermite) is the
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

from ..exceptions import ModelError
from .agq import quadrature_words
from .common import as_float, coefficient_rows, illness_effect, num, require_illness
from .counted import escape
from .glmm import fit_logistic_glmm
from .identification import runaway_reasons, separation_reasons
from .lmm import model_rows
from .robust import Diagnosis, SkipModel, fit_with_retries, hessian_is_pd

__all__ = ["fit_gee_kind", "fit_glmm_kind", "binary_rows", "gee_logistic"]

log = logging.getLogger(__name__)


def binary_rows(data: pd.DataFrame, spec: Mapping[str, Any], estimands: Mapping[str, str], what: str):
    """Rows, formula and record for a binary model (session or end-of-course level)."""
    level = spec.get("level", "session")
    outcome = spec["outcome"]
    fixed = list(spec["fixed"])
    df, record = model_rows(
        data.sort_values([spec["group"], "session"], kind="stable"),
        spec,
        estimands,
        outcome=outcome,
        terms=[t for t in fixed if t != "ever_ill"] + (["ill"] if "ever_ill" in fixed else []),
        outcome_type="binary",
        what=what,
        level=level,
    )
    if level == "end":
        ever = (as_float(df["ill"]) > 0).groupby(df[spec["group"]]).transform("max")
        df = df.assign(ever_ill=ever.astype(float))
        df = df.groupby(spec["group"], sort=True).tail(1)
    y = pd.to_numeric(df[outcome], errors="coerce")
    bad = ~y.isin([0, 1])
    if bad.any():
        raise ModelError(f"{what}: outcome {outcome!r} must be 0/1; found {sorted(y[bad].unique())[:5]}")
    events, non = int((y == 1).sum()), int((y == 0).sum())
    if min(events, non) < int(spec.get("min_events", 10)):
        raise SkipModel(
            escape(what) + ": {events} event(s) and {non_events} non-event(s) of " + escape(outcome) + "; at least "
            f"{spec.get('min_events', 10)} of each are needed",
            events=events,
            non_events=non,
        )
    ill_term = spec["illness_term"]
    if ill_term and any(ill_term in t for t in fixed):
        col = "ever_ill" if ill_term == "ever_ill" else "ill"
        require_illness(df, what, column=col)
    formula = f"{outcome} ~ " + " + ".join(fixed)
    return df, formula, record, events, non


def _odds(log_odds: float | None) -> float | None:
    """exp of a log odds (ratio), None when the estimate is missing (a fit without that estimate).

    Examples
    --------
    >>> _odds(None) is None, _odds(0.0)
    (True, 1.0)
    """
    return None if log_odds is None else num(np.exp(log_odds))


def _identification(
    df: pd.DataFrame, y_df: pd.DataFrame, x_df: pd.DataFrame, beta: np.ndarray, spec, sigma2: float = 0.0
) -> list[str]:
    """Separation checks of a binary model (:mod:`ketastats.models.identification`): its
    binary regressors and, behind a centred illness term, the session's illness indicator.

    A mixed model's subject-specific log odds are larger than population-averaged ones by
    about sqrt(1 + 0.346 sigma^2) (Zeger, Liang & Albert 1988); its predicted log odds are
    divided by that factor before the runaway check, so that a large random-intercept
    variance is not taken for separation.
    """
    unit = "patients" if spec.get("level", "session") == "end" else "sessions"
    regressors = {c: x_df[c].to_numpy() for c in x_df.columns if c != "Intercept"}
    if "ill" in df.columns and unit == "sessions" and any(c.startswith("ill") for c in x_df.columns):
        regressors.setdefault("ill", as_float(df.loc[y_df.index, "ill"]).to_numpy())
    y = y_df.iloc[:, 0].to_numpy()
    eta = (x_df.to_numpy() @ beta) / np.sqrt(1.0 + 0.346 * sigma2)
    return separation_reasons(y, regressors, unit) + runaway_reasons(eta, unit)


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


def fit_gee_kind(data: pd.DataFrame, spec: Mapping[str, Any], estimands: Mapping[str, str], alpha: float):
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
        c["odds_ratio"] = _odds(c["estimate"])
        c["or_ci_low"] = _odds(c["ci_low"])
        c["or_ci_high"] = _odds(c["ci_high"])
    dep = r.model.cov_struct.dep_params if corr == "exchangeable" else 0.0
    eff = illness_effect(coefs, spec["illness_term"], scale="log odds ratio")
    if eff is not None:
        eff["odds_ratio"] = _odds(eff["estimate"])
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
        "identification": _identification(df, y_df, x_df, np.asarray(r.params), spec),
        "events": events,
        "non_events": non,
        "level": spec.get("level", "session"),
        "estimands": record,
        "estimand_scale": "population-averaged (marginal) odds ratio",
        "analysis_role": "primary analysis of the binary outcomes: the question is population-averaged and the "
        "robust SEs stay valid if the working correlation is wrong (assumes MCAR dropout)",
        "messages": [out.chosen.message] if out.chosen.message else [],
    }


def fit_glmm_kind(data: pd.DataFrame, spec: Mapping[str, Any], estimands: Mapping[str, str], alpha: float):
    """Kind ``glmm_binary``: random-intercept logistic model, ML by adaptive Gauss-Hermite."""
    what = spec["label"]
    if spec.get("level", "session") != "session":
        raise SkipModel(f"{what}: a mixed model needs repeated sessions; use level session")
    df, formula, record, events, non = binary_rows(data, spec, estimands, what)
    y_df, x_df = patsy.dmatrices(formula, df, return_type="dataframe")
    groups = df.loc[y_df.index, spec["group"]].astype(str).to_numpy()
    n_agq = spec.get("n_agq", "auto")
    r = fit_logistic_glmm(
        y_df.iloc[:, 0].to_numpy(), x_df.to_numpy(), groups, n_agq=n_agq if n_agq == "auto" else int(n_agq)
    )
    coefs = coefficient_rows(list(x_df.columns), r.beta, r.se, alpha=alpha)
    for c in coefs:
        c["odds_ratio"] = _odds(c["estimate"])
    eff = illness_effect(coefs, spec["illness_term"], scale="log odds ratio")
    if eff is not None:
        eff["odds_ratio"] = _odds(eff["estimate"])
        eff["outcome"] = spec["outcome"]
    return {
        "converged": bool(r.converged),
        "singular": bool(r.singular),
        "attempts": [a.to_dict() for a in r.attempts],
        "engine": "ketastats AGQ",
        "optimizer": r.optimizer,
        "method": "ML (Laplace)" if r.n_agq == 1 else f"ML ({quadrature_words(r.quadrature)})",
        "quadrature": r.quadrature,
        "formula": formula,
        "nobs": int(r.nobs),
        "ngroups": int(r.ngroups),
        "df_method": "normal",
        "coefficients": coefs,
        "illness_effect": eff,
        "random": {
            "group": spec["group"],
            "names": ["Intercept"],
            "cov": [[num(r.sigma**2)]],
            "sd": [num(r.sigma)],
        },
        "loglik": num(r.loglik),
        "blups": {"group": [str(g) for g in r.group_labels], "Intercept": [num(v) for v in r.blups]},
        "identification": _identification(
            df, y_df, x_df, np.asarray(r.beta), spec, sigma2=float(r.sigma) ** 2
        ),
        "events": events,
        "non_events": non,
        "level": "session",
        "estimands": record,
        "estimand_scale": "subject-specific (conditional) odds ratio",
        "analysis_role": "sensitivity analysis of the binary outcomes: a subject-specific odds ratio (larger in "
        "magnitude than the GEE's), likelihood-based and so valid under MAR dropout",
        "messages": list(r.messages),
    }
