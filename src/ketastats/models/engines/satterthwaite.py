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
    """Per fixed effect: Satterthwaite df; plus the variance-parameter covariance.

    ``vcov_theta`` and ``hessian`` are in the parameters ``theta = (vech(G), sigma^2)``
    (lower triangle of ``G`` row by row, then the residual variance); ``jacobian`` holds
    ``d Var(beta_j) / d theta`` (one row per parameter, one column per fixed effect).
    """

    df: np.ndarray
    vcov_theta: np.ndarray
    hessian: np.ndarray
    hessian_pd: bool
    jacobian: np.ndarray | None = None


def _group_sums(codes: np.ndarray, m: int, values: np.ndarray) -> np.ndarray:
    """Per-group sums of the rows of ``values`` (n, ...) -> (m, ...)."""
    flat = values.reshape(len(values), -1)
    out = np.empty((m, flat.shape[1]))
    for j in range(flat.shape[1]):
        out[:, j] = np.bincount(codes, flat[:, j], m)
    return out.reshape((m, *values.shape[1:]))


def _basis(q: int) -> list[np.ndarray]:
    """``dG / d theta_r`` for each element of ``vech(G)`` (lower triangle, row by row)."""
    out = []
    for a, b in zip(*np.tril_indices(q)):
        E = np.zeros((q, q))
        E[a, b] = E[b, a] = 1.0
        out.append(E)
    return out


def _mT(A: np.ndarray) -> np.ndarray:
    return np.swapaxes(A, -1, -2)


def _cross(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``sum_i A_i' B_i`` over the patients of two (m, q, .) arrays, as one matrix product."""
    return A.reshape(-1, A.shape[2]).T @ B.reshape(-1, B.shape[2])


def satterthwaite(
    y: np.ndarray,
    X: np.ndarray,
    Z: np.ndarray,
    groups: np.ndarray,
    G: np.ndarray,
    sigma2: float,
    *,
    reml: bool = True,
) -> SatterthwaiteResult:
    """Satterthwaite degrees of freedom for each fixed effect of a fitted LMM.

    Every derivative is analytic (no step size): with ``V = Z G Z' + sigma^2 I`` linear in
    ``theta = (vech(G), sigma^2)``, ``V_r = dV/dtheta_r``, ``W = V^-1``,
    ``C = (X'WX)^-1`` and ``P = W - W X C X' W``,

    * ``dC/dtheta_r = C X'W V_r W X C`` (the gradient ``g`` of ``Var(beta_j) = C_jj``);
    * the Hessian of the REML log-likelihood is
      ``H_rs = tr(P V_r P V_s)/2 - y'P V_r P V_s P y``; of the ML log-likelihood with the
      fixed effects profiled out (as lmerTest differentiates it) the trace term is
      ``tr(W V_r W V_s)/2``;
    * ``A = (-H)^-1`` and ``df_j = 2 C_jj^2 / (g_j' A g_j)``.

    Per patient everything reduces to ``q x q`` matrices through ``M_i = (sigma^2 I +
    Z_i'Z_i G)^-1`` (``W_i Z_i = Z_i M_i'``), computed for all patients at once; the
    response enters as its GLS residual, so no large numbers cancel. lmerTest computes
    the same quantities by numerical differentiation (Richardson extrapolation) in its own
    parameters ``(theta, sigma)``; the df do not depend on the parameterization at an
    interior optimum.

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
    >>> from ketastats.models.engines.fast_lmm import fit_lmm_fast
    >>> rng = np.random.default_rng(0)
    >>> g = np.repeat(np.arange(8), 5)  # 8 patients, 5 sessions each
    >>> t = np.tile(np.arange(5.0), 8)
    >>> X = np.column_stack([np.ones(40), t])  # Z = X
    >>> y = 10 + t + rng.normal(0, 3, 8)[g] + rng.normal(0, 1, 8)[g] * t + rng.normal(size=40)
    >>> fit = fit_lmm_fast(y, X, X, g)
    >>> res = satterthwaite(y, X, X, g, fit.re_cov, fit.resid_var)
    >>> bool(res.hessian_pd), res.df.round(6)
    (True, array([7., 7.]))
    """
    from ..retries import hessian_is_pd

    y = np.asarray(y, float)
    X = np.asarray(X, float)
    Z = np.asarray(Z, float)
    G = np.atleast_2d(np.asarray(G, float))
    s2 = float(sigma2)
    _, codes = np.unique(np.asarray(groups), return_inverse=True)
    m = int(codes.max()) + 1
    n, p = X.shape
    q = Z.shape[1]
    I_q = np.eye(q)
    # per patient: S = Z'Z, Z'X, Z'y; M = (s2 I + S G)^-1, B = G M, so that W = (I - Z B Z')/s2
    S = _group_sums(codes, m, Z[:, :, None] * Z[:, None, :])
    NX = _group_sums(codes, m, Z[:, :, None] * X[:, None, :])
    Ny = _group_sums(codes, m, Z * y[:, None])
    M = np.linalg.inv(s2 * I_q + S @ G)
    B = G @ M
    XWX = (X.T @ X - _cross(NX, B @ NX)) / s2
    XWy = (X.T @ y - _cross(NX, (B @ Ny[:, :, None]))[:, 0]) / s2
    beta = np.linalg.solve(XWX, XWy)
    r = y - X @ beta  # GLS residual: the response from here on
    Nr = _group_sums(codes, m, Z * r[:, None])
    T = np.column_stack([X, r])
    N = np.concatenate([NX, Nr[:, :, None]], axis=2)
    TT = T.T @ T
    # T'W^k T = (T'T - sum_i N_i' P_k N_i) / s2^k with (I - Z B Z')^k = I - Z P_k Z'
    SB = S @ B
    P_k, Om = B, []
    for k in (1, 2, 3):
        if k > 1:
            P_k = B + P_k - P_k @ SB
        Om.append((TT - _cross(N, P_k @ N)) / s2**k)
    C = np.linalg.inv(Om[0][:p, :p])
    C = (C + C.T) / 2
    XW2X, XW3X = Om[1][:p, :p], Om[2][:p, :p]
    XW2r, rW3r = Om[1][:p, p], Om[2][p, p]
    K = M @ S  # Z'WZ
    K2 = K @ _mT(M)  # Z'W^2 Z
    F = M @ NX  # Z'WX
    F2 = M @ F  # Z'W^2 X
    v = (M @ Nr[:, :, None])[:, :, 0]  # Z'W r
    t = (M @ v[:, :, None])[:, :, 0]  # Z'W^2 r
    tr_W2 = (n - m * q) / s2**2 + float(np.sum(M * _mT(M)))

    E = _basis(q)
    kg = len(E)
    k = kg + 1
    EF = [Er @ F for Er in E]  # E_r F_i
    KEF = [K @ ef for ef in EF]  # K_i E_r F_i
    EFC = [ef @ C for ef in EF]
    KE = [K @ Er for Er in E]
    Q = [_cross(F, ef) for ef in EF] + [XW2X]  # X'W V_r W X
    Ev = [v @ Er.T for Er in E]  # rows: E_r v_i
    XWa = [np.einsum("mqp,mq->p", F, ev) for ev in Ev] + [XW2r]  # X'W V_r u, u = W r
    trWW = np.empty((k, k))  # tr(W V_r W V_s)
    trCR = np.empty((k, k))  # tr(C X'W V_r W V_s W X)
    aWa = np.empty((k, k))  # u'V_r W V_s u
    for i, Ei in enumerate(E):
        trWW[i, kg] = trWW[kg, i] = float(np.sum(Ei * K2.sum(axis=0)))
        trCR[i, kg] = trCR[kg, i] = float(np.sum(EFC[i] * F2))
        aWa[i, kg] = aWa[kg, i] = float(np.sum(Ev[i] * t))
        for j in range(i + 1):
            trWW[i, j] = trWW[j, i] = float(np.sum(KE[i] * _mT(KE[j])))
            trCR[i, j] = trCR[j, i] = float(np.sum(EFC[i] * KEF[j]))
            aWa[i, j] = aWa[j, i] = float(np.sum(Ev[i] * (K @ Ev[j][:, :, None])[:, :, 0]))
    trWW[kg, kg] = tr_W2
    trCR[kg, kg] = float(np.sum(C * XW3X))
    aWa[kg, kg] = rW3r
    aPa = aWa - np.array([[XWa[i] @ C @ XWa[j] for j in range(k)] for i in range(k)])
    if reml:
        CQ = [C @ Qr for Qr in Q]
        trCQCQ = np.array([[np.sum(CQ[i] * CQ[j].T) for j in range(k)] for i in range(k)])
        H = 0.5 * (trWW - 2 * trCR + trCQCQ) - aPa
    else:
        H = 0.5 * trWW - aPa
    H = (H + H.T) / 2
    info = -H
    pd_ok = hessian_is_pd(info)
    jac = np.array([np.einsum("pi,ij,jp->p", C, Qr, C) for Qr in Q])  # d C_jj / d theta_r
    if not pd_ok:
        return SatterthwaiteResult(np.full(p, np.nan), np.full((k, k), np.nan), H, False, jac)
    A = np.linalg.inv(info)
    var_of_var = np.einsum("kp,kl,lp->p", jac, A, jac)
    df = 2 * np.diag(C) ** 2 / var_of_var
    return SatterthwaiteResult(df, A, H, True, jac)
