"""Small-sample inference for the fixed effects of a linear mixed model: Satterthwaite df.

For a contrast ``l'beta`` the Satterthwaite approximation gives the denominator degrees of
freedom

    df = 2 (l' C l)^2 / (g' A g),

where ``C = (X' V^-1 X)^-1`` is the covariance of the fixed effects at the estimated
variance parameters ``theta`` (the elements of the random-effects covariance ``G`` and the
residual variance), ``g`` is the gradient of ``l' C(theta) l`` with respect to ``theta``,
and ``A`` is the asymptotic covariance of ``theta``: the inverse of the negative Hessian of
the (REML) log-likelihood. Derivatives are central finite differences. The same Hessian
tells whether the optimum is a proper maximum (positive definite) or a boundary/saddle.

This is the method of lmerTest (Kuznetsova, Brockhoff & Christensen 2017); the result does
not depend on how ``theta`` is parameterized at an interior optimum, so it matches
lmerTest's numbers (checked in the tests against lmerTest on sleepstudy and Beat the Blues).

References
----------
Satterthwaite, F. E. (1946). An approximate distribution of estimates of variance
components. *Biometrics Bulletin*, 2(6), 110-114.

Kuznetsova, A., Brockhoff, P. B., & Christensen, R. H. B. (2017). lmerTest package: tests in
linear mixed effects models. *Journal of Statistical Software*, 82(13), 1-26.
https://doi.org/10.18637/jss.v082.i13

Giesbrecht, F. G., & Burns, J. C. (1985). Two-stage analysis based on a mixed model:
large-sample asymptotic theory and small-sample simulation results. *Biometrics*, 41(2),
477-486.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LMMCrossProducts", "lmm_loglik", "satterthwaite", "SatterthwaiteResult"]


@dataclass
class LMMCrossProducts:
    """Per-group cross products ``Z'Z, Z'X, Z'y, X'X, X'y, y'y`` (all a likelihood needs)."""

    ZtZ: np.ndarray  # (m, q, q)
    ZtX: np.ndarray  # (m, q, p)
    Zty: np.ndarray  # (m, q)
    XtX: np.ndarray  # (p, p)
    Xty: np.ndarray  # (p,)
    yty: float
    n: int
    p: int
    q: int

    @classmethod
    def build(cls, y: np.ndarray, X: np.ndarray, Z: np.ndarray, groups: np.ndarray) -> LMMCrossProducts:
        _, inv = np.unique(groups, return_inverse=True)
        m = int(inv.max()) + 1
        q, p = Z.shape[1], X.shape[1]
        ZtZ = np.zeros((m, q, q))
        ZtX = np.zeros((m, q, p))
        Zty = np.zeros((m, q))
        np.add.at(ZtZ, inv, Z[:, :, None] * Z[:, None, :])
        np.add.at(ZtX, inv, Z[:, :, None] * X[:, None, :])
        np.add.at(Zty, inv, Z * y[:, None])
        return cls(ZtZ, ZtX, Zty, X.T @ X, X.T @ y, float(y @ y), len(y), p, q)


def _vech(G: np.ndarray) -> np.ndarray:
    return G[np.tril_indices(G.shape[0])]


def _unvech(v: np.ndarray, q: int) -> np.ndarray:
    G = np.zeros((q, q))
    G[np.tril_indices(q)] = v
    return G + np.tril(G, -1).T


def _gls(cp: LMMCrossProducts, G: np.ndarray, sigma2: float):
    """``X'V^-1X, X'V^-1y, y'V^-1y, log|V|`` by the Woodbury identity, all groups at once."""
    q = cp.q
    # M_i = (sigma2 I + Z_i'Z_i G)^-1; V_i^-1 = (I - Z_i G M_i Z_i') / sigma2
    A = sigma2 * np.eye(q)[None] + cp.ZtZ @ G[None]
    sign, logdet_a = np.linalg.slogdet(A)
    if np.any(sign <= 0):
        raise np.linalg.LinAlgError("V is not positive definite at these variance parameters")
    M = np.linalg.inv(A)
    GM = G[None] @ M  # (m, q, q)
    XtVX = (cp.XtX - np.einsum("mqp,mqr,mrs->ps", cp.ZtX, GM, cp.ZtX)) / sigma2
    XtVy = (cp.Xty - np.einsum("mqp,mqr,mr->p", cp.ZtX, GM, cp.Zty)) / sigma2
    ytVy = (cp.yty - np.einsum("mq,mqr,mr->", cp.Zty, GM, cp.Zty)) / sigma2
    # log|V_i| = n_i log sigma2 + log|sigma2 I + Z'Z G| - q log sigma2
    logdetV = cp.n * np.log(sigma2) + float(logdet_a.sum()) - q * cp.ZtZ.shape[0] * np.log(sigma2)
    return XtVX, XtVy, ytVy, logdetV


def lmm_loglik(cp: LMMCrossProducts, G: np.ndarray, sigma2: float, *, reml: bool = True) -> float:
    """(REML) log-likelihood at variance parameters ``G``, ``sigma2`` (fixed effects by GLS).

    Equal to lme4's ``logLik`` at the same parameters.
    """
    XtVX, XtVy, ytVy, logdetV = _gls(cp, G, sigma2)
    beta = np.linalg.solve(XtVX, XtVy)
    rss = ytVy - beta @ XtVy
    if reml:
        _, logdet_x = np.linalg.slogdet(XtVX)
        return float(-0.5 * (logdetV + logdet_x + rss + (cp.n - cp.p) * np.log(2 * np.pi)))
    return float(-0.5 * (logdetV + rss + cp.n * np.log(2 * np.pi)))


@dataclass
class SatterthwaiteResult:
    """Per fixed effect: Satterthwaite df; plus the variance-parameter covariance."""

    df: np.ndarray
    vcov_theta: np.ndarray
    hessian: np.ndarray
    hessian_pd: bool


def satterthwaite(
    y: np.ndarray,
    X: np.ndarray,
    Z: np.ndarray,
    groups: np.ndarray,
    G: np.ndarray,
    sigma2: float,
    *,
    reml: bool = True,
    rel_step: float = 1e-4,
) -> SatterthwaiteResult:
    """Satterthwaite degrees of freedom for each fixed effect of a fitted LMM.

    Parameters
    ----------
    y, X, Z, groups : numpy.ndarray
        The model's data (as from :func:`ketastats.models.design_matrices`).
    G, sigma2 : numpy.ndarray, float
        Estimated random-effects covariance and residual variance.
    reml : bool
        Whether the fit was REML (the Hessian is of the same criterion).

    Returns
    -------
    SatterthwaiteResult
        ``df`` per column of ``X``; ``hessian_pd`` False when the negative Hessian of the
        log-likelihood in the variance parameters is not positive definite (boundary or
        saddle): then ``df`` is NaN and callers fall back to the normal approximation.

    Examples
    --------
    A balanced design with a random intercept and slope: the df of both fixed effects is the
    number of patients less one (lmerTest gives 17 on sleepstudy's 18 subjects).

    >>> import numpy as np
    >>> from ketastats.models.fast import fit_lmm_fast
    >>> rng = np.random.default_rng(0)
    >>> g = np.repeat(np.arange(8), 5)  # 8 patients, 5 sessions each
    >>> t = np.tile(np.arange(5.0), 8)
    >>> X = np.column_stack([np.ones(40), t])  # Z = X
    >>> y = 10 + t + rng.normal(0, 3, 8)[g] + rng.normal(0, 1, 8)[g] * t + rng.normal(size=40)
    >>> fit = fit_lmm_fast(y, X, X, g)
    >>> res = satterthwaite(y, X, X, g, fit.re_cov, fit.resid_var)
    >>> bool(res.hessian_pd), res.df.round(2)
    (True, array([7., 7.]))
    """
    from .robust import hessian_is_pd

    cp = LMMCrossProducts.build(np.asarray(y, float), np.asarray(X, float), np.asarray(Z, float), groups)
    q = cp.q
    theta0 = np.r_[_vech(np.atleast_2d(G)), sigma2]
    k = len(theta0)
    # step sizes: relative to each parameter's scale (covariances: to sqrt(var_i var_j))
    scale = np.empty(k)
    tri = np.tril_indices(q)
    Gd = np.diag(np.atleast_2d(G))
    for j, (a, b) in enumerate(zip(*tri)):
        scale[j] = np.sqrt(max(Gd[a], 0) * max(Gd[b], 0))
    scale[-1] = sigma2
    scale = np.where(scale > 1e-12 * sigma2, scale, 1e-6 * sigma2)
    h = rel_step * scale

    def ll(theta):
        return lmm_loglik(cp, _unvech(theta[:-1], q), theta[-1], reml=reml)

    def cov_beta(theta):
        XtVX, *_ = _gls(cp, _unvech(theta[:-1], q), theta[-1])
        return np.linalg.inv(XtVX)

    f0 = ll(theta0)
    H = np.empty((k, k))
    for i in range(k):
        ei = np.zeros(k)
        ei[i] = h[i]
        H[i, i] = (ll(theta0 + ei) - 2 * f0 + ll(theta0 - ei)) / h[i] ** 2
        for j in range(i):
            ej = np.zeros(k)
            ej[j] = h[j]
            H[i, j] = H[j, i] = (
                ll(theta0 + ei + ej) - ll(theta0 + ei - ej) - ll(theta0 - ei + ej) + ll(theta0 - ei - ej)
            ) / (4 * h[i] * h[j])
    info = -H
    pd_ok = hessian_is_pd(info)
    C0 = cov_beta(theta0)
    p = C0.shape[0]
    if not pd_ok:
        return SatterthwaiteResult(np.full(p, np.nan), np.full((k, k), np.nan), H, False)
    A = np.linalg.inv(info)
    grads = np.empty((k, p))
    for i in range(k):
        ei = np.zeros(k)
        ei[i] = h[i]
        grads[i] = (np.diag(cov_beta(theta0 + ei)) - np.diag(cov_beta(theta0 - ei))) / (2 * h[i])
    var_of_var = np.einsum("kp,kl,lp->p", grads, A, grads)
    df = 2 * np.diag(C0) ** 2 / var_of_var
    return SatterthwaiteResult(df, A, H, True)
