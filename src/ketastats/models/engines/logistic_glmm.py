"""Random-intercept logistic regression by maximum likelihood (adaptive Gauss-Hermite).

The model is ``logit P(y_ij = 1 | b_i) = x_ij' beta + b_i`` with ``b_i ~ N(0, sigma^2)``.
Each patient's likelihood contribution ``int prod_j p(y_ij | b) phi(b; 0, sigma^2) db`` is
computed by adaptive Gauss-Hermite quadrature (Pinheiro & Bates 1995; Liu & Pierce 1994):
the integrand is centred at its mode ``b_i*`` (found by Newton's method) and scaled by its
curvature, so that ``n_agq = 1`` is the Laplace approximation and more nodes converge to
the exact integral. This is what lme4's ``glmer(..., nAGQ = k)`` computes, and the tests
check the estimates, SEs, variance and log-likelihood against glmer on real data. By default
the number of nodes is chosen by accuracy (:mod:`ketastats.models.engines.agq`): raised from 10 until
the log-likelihood at the optimum moves by less than 1e-8; the nodes used are recorded.

The parameters ``(beta, log sigma)`` are found by a quasi-Newton optimizer with the exact
gradient of the quadrature formula (several optimizers in turn, under
:func:`ketastats.models.retries.fit_with_retries`) and polished by Newton steps; SEs come from
the inverse of the Hessian of the log-likelihood at the optimum (as lme4's default ``vcov``),
taken by Richardson-extrapolated differences of the exact gradient.
statsmodels' ``BinomialBayesMixedGLM`` is not used: it is a variational/Laplace
*Bayesian* approximation with independent Gaussian posteriors, not a likelihood fit.

References
----------
Pinheiro, J. C., & Bates, D. M. (1995). Approximations to the log-likelihood function in the
nonlinear mixed-effects model. *Journal of Computational and Graphical Statistics*, 4(1),
12-35.

Liu, Q., & Pierce, D. A. (1994). A note on Gauss-Hermite quadrature. *Biometrika*, 81(3),
624-629.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special

from ..retries import Attempt
from .agq import RandomInterceptAGQ, RowFunction, beta_covariance, fit_agq

__all__ = ["GLMMResult", "fit_logistic_glmm", "marginal_loglik"]


@dataclass
class GLMMResult:
    """A fitted random-intercept logistic model."""

    beta: np.ndarray
    se: np.ndarray
    cov_beta: np.ndarray
    sigma: float
    loglik: float
    n_agq: int
    nobs: int
    ngroups: int
    converged: bool
    singular: bool
    hessian_pd: bool
    optimizer: str
    blups: np.ndarray
    group_labels: np.ndarray
    quadrature: dict[str, Any] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


def _logistic_rows(y: np.ndarray) -> RowFunction:
    """Per-row derivatives of ``l(u) = y u - log(1 + e^u)`` in the linear predictor ``u``."""

    def rows(u: np.ndarray, psi: np.ndarray, what: str, idx: np.ndarray | None) -> dict[str, np.ndarray]:
        yy = y if idx is None else y[idx]
        if what == "node":
            return {"l": yy * u - np.logaddexp(0, u)}
        p = special.expit(u)
        if what == "node_grad":
            return {"l": yy * u - np.logaddexp(0, u), "l1": yy - p, "lp": np.empty((0, len(u)))}
        pq = p * (1 - p)
        if what == "mode":
            return {"l1": yy - p, "l2": -pq}
        empty = np.empty((0, len(u)))
        return {"l2": -pq, "l3": -pq * (1 - 2 * p), "lp1": empty, "lp2": empty}

    return rows


class _Data(RandomInterceptAGQ):
    """The logistic model's data and likelihood (``theta = (beta, log sigma)``)."""

    def __init__(self, y, X, groups):
        self.y = np.asarray(y, float)
        super().__init__(X, groups, _logistic_rows(self.y), 0)


def marginal_loglik(
    beta: np.ndarray, sigma: float, d: _Data, n_agq: int = 10, b0: np.ndarray | None = None
) -> tuple[float, np.ndarray]:
    """Log-likelihood by adaptive Gauss-Hermite quadrature; also returns the modes (BLUP-like)."""
    if b0 is not None:
        d._b = np.asarray(b0, float).copy()
    q = d.evaluate(np.r_[beta, np.log(max(sigma, 1e-300))], n_agq)
    return q.loglik, q.modes


def fit_logistic_glmm(
    y: np.ndarray,
    X: np.ndarray,
    groups: np.ndarray,
    *,
    n_agq: int | str = "auto",
    optimizers: tuple[str, ...] = ("BFGS", "L-BFGS-B", "Nelder-Mead", "Powell"),
) -> GLMMResult:
    """Maximum-likelihood random-intercept logistic regression.

    Parameters
    ----------
    y : array of 0/1
        Binary outcome.
    X : numpy.ndarray
        Fixed-effects design (with an intercept column).
    groups : array
        Patient of each row.
    n_agq : "auto" or int, default "auto"
        Quadrature nodes per patient: ``"auto"`` raises them from 10 until the log-likelihood
        at the optimum moves by less than 1e-8 (:func:`ketastats.models.engines.agq.agq_points`); a
        number fixes them (1 is the Laplace approximation).
    optimizers : tuple of str
        scipy.optimize methods tried in turn until one converges to a proper maximum.

    Returns
    -------
    GLMMResult

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> g = np.repeat(np.arange(200), 5); x = rng.normal(size=1000)
    >>> y = (rng.random(1000) < 1 / (1 + np.exp(-(-0.5 + x + rng.normal(0, 1, 200)[g])))).astype(float)
    >>> r = fit_logistic_glmm(y, np.c_[np.ones(1000), x], g)
    >>> bool(abs(r.beta[1] - 1) < 0.3), r.converged, r.quadrature["accurate"]
    (True, True, True)
    """
    d = _Data(y, X, groups)
    p = d.X.shape[1]
    # start: ordinary logistic regression (Newton), sigma = 1
    beta0 = np.zeros(p)
    for _ in range(50):
        mu = special.expit(d.X @ beta0)
        W = mu * (1 - mu)
        step = np.linalg.lstsq(
            d.X.T @ (d.X * W[:, None]) + 1e-10 * np.eye(p), d.X.T @ (d.y - mu), rcond=None
        )[0]
        beta0 = beta0 + step
        if np.max(np.abs(step)) < 1e-10:
            break
    fit = fit_agq(d, np.r_[beta0, 0.0], n_agq=n_agq, optimizers=optimizers)
    out = fit.outcome
    cov = beta_covariance(fit.hessian, p)
    return GLMMResult(
        beta=fit.theta[:p],
        se=np.sqrt(np.clip(np.diag(cov), 0, None)),
        cov_beta=cov,
        sigma=float(np.exp(fit.theta[p])),
        loglik=fit.loglik,
        n_agq=fit.n_agq,
        nobs=len(d.y),
        ngroups=d.m,
        converged=out.converged,
        singular=out.singular,
        hessian_pd=fit.hessian_pd,
        optimizer=out.chosen.label.split("=", 1)[1],
        blups=fit.modes,
        group_labels=d.labels,
        quadrature=fit.quadrature,
        attempts=out.attempts,
        messages=[out.chosen.message] if out.chosen.message else [],
    )
