"""Random-intercept logistic regression by maximum likelihood (adaptive Gauss-Hermite).

The model is ``logit P(y_ij = 1 | b_i) = x_ij' beta + b_i`` with ``b_i ~ N(0, sigma^2)``.
Each patient's likelihood contribution ``int prod_j p(y_ij | b) phi(b; 0, sigma^2) db`` is
computed by adaptive Gauss-Hermite quadrature (Pinheiro & Bates 1995; Liu & Pierce 1994):
the integrand is centred at its mode ``b_i*`` (found by Newton's method) and scaled by its
curvature, so that ``n_agq = 1`` is the Laplace approximation and more nodes converge to
the exact integral. This is what lme4's ``glmer(..., nAGQ = k)`` computes, and the tests
check the estimates, SEs, variance and log-likelihood against glmer on real data.

The parameters ``(beta, sigma)`` are found by a quasi-Newton optimizer (several in turn,
under :func:`ketastats.models.robust.fit_with_retries`); SEs come from the inverse of the
numerical Hessian of the log-likelihood at the optimum (as lme4's default ``vcov``).
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

import numpy as np
from scipy import optimize, special

from .robust import Attempt, Diagnosis, fit_with_retries, hessian_is_pd

__all__ = ["GLMMResult", "fit_logistic_glmm", "marginal_loglik"]

_LOG_2PI = np.log(2 * np.pi)


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
    attempts: list[Attempt] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


class _Data:
    def __init__(self, y, X, groups):
        self.y = np.asarray(y, float)
        self.X = np.asarray(X, float)
        self.labels, self.g = np.unique(np.asarray(groups), return_inverse=True)
        self.m = len(self.labels)


def _modes(d: _Data, eta: np.ndarray, sigma: float, b0: np.ndarray | None = None):
    """Mode of each patient's integrand in b and the curvature there (Newton, vectorized)."""
    b = np.zeros(d.m) if b0 is None else b0.copy()
    s2 = sigma**2
    for _ in range(200):
        p = special.expit(eta + b[d.g])
        grad = np.bincount(d.g, d.y - p, d.m) - b / s2
        hess = -np.bincount(d.g, p * (1 - p), d.m) - 1 / s2
        # damped Newton: the integrand is log-concave, a bounded step cannot overshoot for ever
        step = np.clip(grad / hess, -1.0, 1.0)
        b = b - step
        if np.max(np.abs(step)) < 1e-11:
            break
    p = special.expit(eta + b[d.g])
    hess = -np.bincount(d.g, p * (1 - p), d.m) - 1 / s2
    return b, hess


def _cluster_logh(d: _Data, eta: np.ndarray, b: np.ndarray, sigma: float) -> np.ndarray:
    """log of prod_j p(y_ij | b_i) phi(b_i; 0, sigma^2), per patient, at b (length m)."""
    lin = eta + b[d.g]
    # log p(y | lin) = y lin - log(1 + e^lin)
    ll = d.y * lin - np.logaddexp(0, lin)
    return np.bincount(d.g, ll, d.m) - 0.5 * (b / sigma) ** 2 - np.log(sigma) - 0.5 * _LOG_2PI


def marginal_loglik(
    beta: np.ndarray, sigma: float, d: _Data, n_agq: int = 10, b0: np.ndarray | None = None
) -> tuple[float, np.ndarray]:
    """Log-likelihood by adaptive Gauss-Hermite quadrature; also returns the modes (BLUP-like)."""
    eta = d.X @ beta
    if sigma <= 1e-8:
        lin = eta
        ll = float(np.sum(d.y * lin - np.logaddexp(0, lin)))
        return ll, np.zeros(d.m)
    b, hess = _modes(d, eta, sigma, b0)
    scale = 1 / np.sqrt(-hess)
    x, w = np.polynomial.hermite.hermgauss(n_agq)
    terms = np.empty((n_agq, d.m))
    for k in range(n_agq):
        bk = b + np.sqrt(2) * scale * x[k]
        terms[k] = np.log(w[k]) + x[k] ** 2 + _cluster_logh(d, eta, bk, sigma)
    per = np.log(np.sqrt(2) * scale) + special.logsumexp(terms, axis=0)
    return float(per.sum()), b


def _num_hessian(f, x0: np.ndarray, h: np.ndarray) -> np.ndarray:
    k = len(x0)
    H = np.empty((k, k))
    f0 = f(x0)
    for i in range(k):
        ei = np.zeros(k)
        ei[i] = h[i]
        H[i, i] = (f(x0 + ei) - 2 * f0 + f(x0 - ei)) / h[i] ** 2
        for j in range(i):
            ej = np.zeros(k)
            ej[j] = h[j]
            H[i, j] = H[j, i] = (f(x0 + ei + ej) - f(x0 + ei - ej) - f(x0 - ei + ej) + f(x0 - ei - ej)) / (
                4 * h[i] * h[j]
            )
    return H


def central_gradient(nll, par: np.ndarray) -> np.ndarray:
    """Central-difference gradient of ``nll`` at ``par`` (step 1e-6, relative above 1)."""
    h = 1e-6 * np.maximum(np.abs(par), 1.0)
    out = np.empty_like(par)
    for i in range(len(par)):
        e = np.zeros_like(par)
        e[i] = h[i]
        out[i] = (nll(par + e) - nll(par - e)) / (2 * h[i])
    return out


def newton_polish(nll, grad, r):
    """Newton steps with a numerical Hessian and step halving: a quasi-Newton answer to full precision.

    Updates ``r.x`` and ``r.fun`` (never to a worse value) and sets ``r.grad_max``.
    """
    x, fx = r.x, r.fun
    for _ in range(20):
        H = _num_hessian(nll, x, np.maximum(1e-4 * np.abs(x), 1e-4))
        try:
            step = np.linalg.solve(H, grad(x))
        except np.linalg.LinAlgError:
            break
        t, improved = 1.0, False
        while t > 1e-4:
            cand = x - t * step
            fc = nll(cand)
            if fc <= fx:
                x, fx, improved = cand, fc, True
                break
            t /= 2
        if not improved or np.max(np.abs(t * step)) < 1e-9:
            break
    r.x, r.fun = x, fx
    r.grad_max = float(np.max(np.abs(grad(x))))
    return r


def fit_logistic_glmm(
    y: np.ndarray,
    X: np.ndarray,
    groups: np.ndarray,
    *,
    n_agq: int = 10,
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
    n_agq : int, default 10
        Quadrature nodes per patient; 1 is the Laplace approximation.
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
    >>> bool(abs(r.beta[1] - 1) < 0.3), r.converged
    (True, True)
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
    start = np.r_[beta0, np.log(1.0)]
    cache = {"b": None}

    def nll(par):
        beta, sigma = par[:p], float(np.exp(par[p]))
        try:
            ll, b = marginal_loglik(beta, sigma, d, n_agq, cache["b"])
        except FloatingPointError:
            return np.inf
        if not np.isfinite(ll):
            return np.inf
        return -ll

    def grad(par):
        return central_gradient(nll, par)

    def polish(r):
        return newton_polish(nll, grad, r)

    def attempt(method):
        def run():
            opts: dict = {"maxiter": 5000}
            if method == "Nelder-Mead":
                opts.update(xatol=1e-8, fatol=1e-10, maxiter=20000)
            jac = grad if method in ("BFGS", "L-BFGS-B") else None
            r = optimize.minimize(nll, start, method=method, jac=jac, options=opts)
            if not np.isfinite(r.fun):
                raise ArithmeticError(f"{method}: the log-likelihood is not finite at the answer")
            return polish(r)

        return run

    def assess(r):
        sigma = float(np.exp(r.x[p]))
        msgs = [] if r.success else [str(r.message)]
        singular = sigma < 1e-4
        H = _num_hessian(lambda z: -nll(z), r.x, np.maximum(1e-4 * np.abs(r.x), 1e-4))
        pd_ok = hessian_is_pd(-H)
        if not pd_ok:
            msgs.append("the Hessian of the log-likelihood is not negative definite")
        r.hess_ll = H
        # converged: the gradient of the log-likelihood vanishes at the answer (after polishing)
        converged = bool(r.grad_max < 1e-3)
        if converged and not r.success:
            msgs = [f"{msgs[0]} (then polished by Newton steps to gradient {r.grad_max:.1e})"]
        return Diagnosis(converged, singular, pd_ok, -float(r.fun), msgs)

    out = fit_with_retries([(f"optimizer={m}", attempt(m)) for m in optimizers], assess)
    r = out.result
    beta, sigma = r.x[:p], float(np.exp(r.x[p]))
    # covariance of beta: invert the Hessian in (beta, sigma); the beta block does not depend on
    # how sigma is parameterized at an interior optimum
    J = np.ones(p + 1)
    J[p] = sigma  # d sigma / d log sigma
    H_sigma = r.hess_ll / np.outer(J, J)
    try:
        cov = np.linalg.inv(-H_sigma)[:p, :p]
    except np.linalg.LinAlgError:
        cov = np.full((p, p), np.nan)
    ll, b = marginal_loglik(beta, sigma, d, n_agq)
    return GLMMResult(
        beta=beta,
        se=np.sqrt(np.clip(np.diag(cov), 0, None)),
        cov_beta=cov,
        sigma=sigma,
        loglik=ll,
        n_agq=n_agq,
        nobs=len(d.y),
        ngroups=d.m,
        converged=out.converged,
        singular=out.singular,
        hessian_pd=bool(out.chosen.hessian_pd),
        optimizer=out.chosen.label.split("=", 1)[1],
        blups=b,
        group_labels=d.labels,
        attempts=out.attempts,
        messages=[out.chosen.message] if out.chosen.message else [],
    )
