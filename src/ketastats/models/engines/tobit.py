"""Left-censored (Tobit) linear mixed model with a random intercept, by maximum likelihood.

For a log cytokine value ``y_ij`` with limit of detection ``c_ij`` (log scale):

    y*_ij = x_ij' beta + b_i + e_ij,   b_i ~ N(0, tau^2),   e_ij ~ N(0, sigma^2)
    y_ij = y*_ij if y*_ij > c_ij, else only "y*_ij <= c_ij" is known.

A patient's likelihood ``int prod_obs phi(.)/sigma prod_cens Phi((c - x'beta - b)/sigma)
phi(b; 0, tau^2) db`` is computed by adaptive Gauss-Hermite quadrature centred at the mode
of the (log-concave) integrand, as in :mod:`ketastats.models.engines.logistic_glmm`, with the nodes chosen by
accuracy per patient (:mod:`ketastats.models.engines.agq`). Without censored values the integrand is
Gaussian, quadrature with one node is exact, and the estimates and log-likelihood equal the
ordinary ML linear mixed model's (checked in the tests against lme4). The standard errors are
the fixed-effect block of the inverse of the full observed information (the variances estimated
too), the usual ML standard errors; lme4 reports for the LMM the SEs conditional on the
variances, which for an uncensored marker are 0-0.4% smaller (docs/statistics.md, "Conventions
that differ from R's").

This is the censored mixed model recommended for cytokines below the LOD (Hornung & Reed
1990 show substitution is biased when many values are censored; Thiebaut & Jacqmin-Gadda
2004 give the mixed-model likelihood).

References
----------
Thiebaut, R., & Jacqmin-Gadda, H. (2004). Mixed models for longitudinal left-censored
repeated measures. *Computer Methods and Programs in Biomedicine*, 74(3), 255-260.

Hornung, R. W., & Reed, L. D. (1990). Estimation of average concentration in the presence
of nondetectable values. *Applied Occupational and Environmental Hygiene*, 5(1), 46-51.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special

from ..retries import Attempt
from .agq import RandomInterceptAGQ, RowFunction, beta_covariance, fit_agq, log_ndtr_ratio

__all__ = ["TobitResult", "fit_tobit_lmm", "tobit_loglik"]

_LOG_2PI = np.log(2 * np.pi)


@dataclass
class TobitResult:
    """A fitted left-censored random-intercept model (log scale)."""

    beta: np.ndarray
    se: np.ndarray
    sigma: float
    tau: float
    loglik: float
    nobs: int
    ncensored: int
    ngroups: int
    converged: bool
    singular: bool
    hessian_pd: bool
    optimizer: str
    modes: np.ndarray
    group_labels: np.ndarray
    n_agq: int = 0
    quadrature: dict[str, Any] = field(default_factory=dict)
    cov_beta: np.ndarray | None = None
    attempts: list[Attempt] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


def _tobit_rows(y: np.ndarray, cens_all: np.ndarray) -> RowFunction:
    """Per-row derivatives of the censored normal log-density in ``u`` and ``omega = log sigma``.

    Observed: ``l = -z^2/2 - omega - log(2 pi)/2`` with ``z = (y - u)/sigma``; censored at ``y``:
    ``l = log Phi(z)``. With ``lam = phi(z)/Phi(z)``, ``lam' = -lam (z + lam)`` and
    ``lam'' = lam ((z + lam)(z + 2 lam) - 1)`` the derivatives in ``u`` are ``-lam/sigma``,
    ``lam'/sigma^2``, ``-lam''/sigma^3`` and in ``omega`` ``-z lam``, ``(z lam' + lam)/sigma``,
    ``-(z lam'' + 2 lam')/sigma^2``.
    """

    def rows(u: np.ndarray, psi: np.ndarray, what: str, idx: np.ndarray | None) -> dict[str, np.ndarray]:
        cens = cens_all if idx is None else cens_all[idx]
        sigma = float(np.exp(psi[0]))
        z = ((y if idx is None else y[idx]) - u) / sigma
        if what == "node":
            return {"l": np.where(cens, special.log_ndtr(z), -0.5 * z**2 - psi[0] - 0.5 * _LOG_2PI)}
        lam = np.where(cens, log_ndtr_ratio(z), 0.0)
        lam1 = -lam * (z + lam)
        if what == "mode":
            return {"l1": np.where(cens, -lam, z) / sigma, "l2": np.where(cens, lam1, -1.0) / sigma**2}
        if what == "node_grad":
            return {
                "l": np.where(cens, special.log_ndtr(z), -0.5 * z**2 - psi[0] - 0.5 * _LOG_2PI),
                "l1": np.where(cens, -lam, z) / sigma,
                "lp": np.where(cens, -z * lam, z**2 - 1)[None, :],
            }
        lam2 = lam * ((z + lam) * (z + 2 * lam) - 1)
        return {
            "l2": np.where(cens, lam1, -1.0) / sigma**2,
            "l3": np.where(cens, -lam2 / sigma**3, 0.0),
            "lp1": (np.where(cens, z * lam1 + lam, -2 * z) / sigma)[None, :],
            "lp2": (np.where(cens, -(z * lam2 + 2 * lam1), 2.0) / sigma**2)[None, :],
        }

    return rows


class _Data(RandomInterceptAGQ):
    """The censored model's data and likelihood (``theta = (beta, log sigma, log tau)``)."""

    def __init__(self, y, censored, X, groups):
        self.y = np.asarray(y, float)
        self.cens = np.asarray(censored, bool)
        super().__init__(X, groups, _tobit_rows(self.y, self.cens), 1)


def tobit_loglik(beta, sigma, tau, d: _Data, n_agq: int = 10) -> tuple[float, np.ndarray]:
    """Marginal log-likelihood by adaptive Gauss-Hermite quadrature; also the modes of b."""
    q = d.evaluate(np.r_[beta, np.log(sigma), np.log(tau)], n_agq)
    return q.loglik, q.modes


def fit_tobit_lmm(
    y: np.ndarray,
    censored: np.ndarray,
    X: np.ndarray,
    groups: np.ndarray,
    *,
    n_agq: int | str = "auto",
    optimizers: tuple[str, ...] = ("BFGS", "Nelder-Mead", "Powell"),
) -> TobitResult:
    """Maximum-likelihood left-censored random-intercept model.

    Parameters
    ----------
    y : array
        Observed value, or the (log) limit of detection where ``censored``.
    censored : array of bool
        True where the value is below the limit of detection ``y``.
    X : numpy.ndarray
        Fixed-effects design with an intercept.
    groups : array
        Patient of each row.
    n_agq : "auto" or int, default "auto"
        Quadrature nodes per patient: ``"auto"`` raises them from 10 until the log-likelihood
        at the optimum moves by less than 1e-8 (:func:`ketastats.models.engines.agq.agq_points`); a
        number fixes them.

    Returns
    -------
    TobitResult
    """
    d = _Data(y, censored, X, groups)
    p = d.X.shape[1]
    beta0 = np.linalg.lstsq(d.X, d.y, rcond=None)[0]
    resid_sd = float(np.std(d.y - d.X @ beta0)) or 1.0
    start = np.r_[beta0, np.log(resid_sd * 0.7), np.log(resid_sd * 0.7)]
    fit = fit_agq(d, start, n_agq=n_agq, optimizers=optimizers)
    out = fit.outcome
    cov = beta_covariance(fit.hessian, p)
    return TobitResult(
        beta=fit.theta[:p],
        se=np.sqrt(np.clip(np.diag(cov), 0, None)),
        sigma=float(np.exp(fit.theta[p])),
        tau=float(np.exp(fit.theta[p + 1])),
        loglik=fit.loglik,
        nobs=len(d.y),
        ncensored=int(d.cens.sum()),
        ngroups=d.m,
        converged=out.converged,
        singular=out.singular,
        hessian_pd=fit.hessian_pd,
        optimizer=out.chosen.label.split("=", 1)[1],
        modes=fit.modes,
        group_labels=d.labels,
        n_agq=fit.n_agq,
        quadrature=fit.quadrature,
        cov_beta=cov,
        attempts=out.attempts,
        messages=[out.chosen.message] if out.chosen.message else [],
    )
