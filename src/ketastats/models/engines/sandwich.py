"""Cluster-robust (sandwich) covariance of the fixed effects of a linear mixed model, with small-sample corrections.

For the GLS fixed effects ``beta = M X'W y`` of an LMM, ``W_i = V_i^-1`` at the estimated
variances (``V_i = Z_i G Z_i' + sigma^2 I``), ``M = (X'WX)^-1`` and the residuals
``r_i = y_i - X_i beta`` of each patient (cluster) ``i``,

    Cov(beta) = M [sum_i X_i' W_i A_i r_i r_i' A_i' W_i X_i] M,

with the adjustment ``A_i``:

- ``none`` (CR0): ``A_i = I`` (Liang & Zeger 1986; the model's ``V`` as GEE's working
  correlation). Valid when ``V`` is wrong as long as patients are independent, but too small
  with few patients.
- ``mancl_derouen`` (CR3): ``A_i = (I - H_ii)^-1``, ``H_ii = X_i M X_i' W_i`` (Mancl & DeRouen
  2001; statsmodels GEE's ``cov_type="bias_reduced"``; clubSandwich's ``CR3``). Somewhat too
  large.
- ``cr2`` (bias-reduced linearization, Bell & McCaffrey 2002; McCaffrey, Bell & Botts 2001):
  ``A_i = D_i' B_i^-1/2 D_i`` with ``V_i = D_i' D_i`` (Cholesky) and
  ``B_i = D_i (V_i - X_i M X_i') D_i'``, so that the estimator is exactly unbiased when the
  model's ``V`` is right. With it come Satterthwaite degrees of freedom for each coefficient
  (Bell & McCaffrey 2002; Pustejovsky & Tipton 2018): writing ``c'Cov c = sum_i (p_i' e)^2`` as
  a quadratic form in the errors ``e ~ N(0, V)``,

      df = (sum_i p_i'V p_i)^2 / sum_ij (p_i'V p_j)^2,

  and with ``u_i = A_i W_i X_i M c``, ``q_i = X_i' u_i`` the Gram matrix is
  ``p_i'V p_j = [i = j] u_i'V_i u_i - q_i'M q_j``, so the df need only ``p x p`` sums, whatever
  the number of patients. This is clubSandwich's ``vcovCR(type = "CR2")`` with
  ``coef_test(test = "Satterthwaite")`` (checked against it in the tests).

Patients are processed in chunks of equal size (all sizes at once would need an ``n x n`` ``V``).

References
----------
Liang, K.-Y., & Zeger, S. L. (1986). Longitudinal data analysis using generalized linear models.
*Biometrika*, 73(1), 13-22.

Mancl, L. A., & DeRouen, T. A. (2001). A covariance estimator for GEE with improved small-sample
properties. *Biometrics*, 57(1), 126-134.

Bell, R. M., & McCaffrey, D. F. (2002). Bias reduction in standard errors for linear regression
with multi-stage samples. *Survey Methodology*, 28(2), 169-181.

Pustejovsky, J. E., & Tipton, E. (2018). Small-sample methods for cluster-robust variance
estimation and hypothesis testing in fixed effects models. *Journal of Business & Economic
Statistics*, 36(4), 672-683. https://doi.org/10.1080/07350015.2016.1247004

Examples
--------
Without random effects and one row per patient, CR0 is White's (HC0) estimator:

>>> import numpy as np
>>> X = np.column_stack([np.ones(4), [0.0, 1.0, 2.0, 3.0]]); y = np.array([1.0, 0.0, 3.0, 2.0])
>>> b = np.linalg.lstsq(X, y, rcond=None)[0]; r = y - X @ b; A = np.linalg.inv(X.T @ X)
>>> hc0 = A @ (X.T * r**2) @ X @ A
>>> bool(np.allclose(cluster_robust_cov(y, X, np.ones((4, 1)), np.arange(4), np.zeros((1, 1)), 1.0), hc0))
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .satterthwaite import LMMCrossProducts, _gls

__all__ = ["ADJUSTMENTS", "SandwichResult", "cluster_robust", "cluster_robust_cov"]

#: the adjustments ``A_i`` of the residuals (see the module docstring)
ADJUSTMENTS = ("none", "mancl_derouen", "cr2")


@dataclass(frozen=True)
class SandwichResult:
    """A cluster-robust covariance: ``cov`` (p, p) and, for ``cr2``, Satterthwaite ``df`` (p,)."""

    cov: np.ndarray
    df: np.ndarray | None
    adjust: str


def _sym_inv_sqrt(B: np.ndarray) -> np.ndarray:
    """``B^-1/2`` of a stack of symmetric PSD matrices; eigenvalues <= 1e-12 count as 0 (as clubSandwich)."""
    val, vec = np.linalg.eigh((B + np.swapaxes(B, 1, 2)) / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(val > 1e-12, 1.0 / np.sqrt(np.where(val > 1e-12, val, 1.0)), 0.0)
    return (vec * inv[:, None, :]) @ np.swapaxes(vec, 1, 2)


def cluster_robust(
    y: np.ndarray,
    X: np.ndarray,
    Z: np.ndarray,
    groups: np.ndarray,
    G: np.ndarray,
    sigma2: float,
    *,
    adjust: str = "none",
    chunk: int = 4096,
) -> SandwichResult:
    """Cluster-robust covariance of the GLS fixed effects of an LMM (module docstring for the formulas).

    Parameters
    ----------
    y, X, Z, groups : array_like
        Outcome (n,), fixed-effects design (n, p), random-effects design (n, q), patient of each row.
    G, sigma2 : array_like, float
        The estimated random-effects covariance (q, q) and residual variance.
    adjust : {"none", "mancl_derouen", "cr2"}
        The residual adjustment; ``cr2`` also returns Satterthwaite degrees of freedom.
    chunk : int
        Patients processed at a time (per number of rows).

    Returns
    -------
    SandwichResult
    """
    if adjust not in ADJUSTMENTS:
        raise ValueError(f"adjust must be one of {ADJUSTMENTS}; got {adjust!r}")
    y = np.asarray(y, float)
    X = np.asarray(X, float)
    Z = np.asarray(Z, float)
    G = np.atleast_2d(np.asarray(G, float))
    s2 = float(sigma2)
    _, codes = np.unique(np.asarray(groups), return_inverse=True)
    m = int(codes.max()) + 1
    p, q = X.shape[1], Z.shape[1]
    # GLS at (G, sigma2) by Woodbury, all patients at once (as the likelihood): W_i = (I - Z_i B_i Z_i') / s2
    cp = LMMCrossProducts.build(y, X, Z, codes)
    XWX, XWy = _gls(cp, G, s2)[:2]
    B = G @ np.linalg.inv(s2 * np.eye(q) + cp.ZtZ @ G)
    M = np.linalg.inv((XWX + XWX.T) / 2)
    beta = M @ XWy
    r = y - X @ beta
    order = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes, minlength=m)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    meat = np.zeros((p, p))
    cr2 = adjust == "cr2"
    # Satterthwaite df of CR2, per coefficient k: sums of d_i, d_i^2, d_i q_i'Mq_i and q_i q_i'
    sum_d = np.zeros(p)
    sum_d2 = np.zeros(p)
    sum_dqq = np.zeros(p)
    QQ = np.zeros((p, p, p))  # [k] = sum_i q_i q_i' for coefficient k
    for k in np.unique(sizes):
        pats = np.flatnonzero(sizes == k)
        eye = np.eye(k)[None]
        for c0 in range(0, len(pats), chunk):
            pc = pats[c0 : c0 + chunk]
            rows = order[(starts[pc][:, None] + np.arange(k)[None, :])]  # (c, k) rows of each patient
            Xi, Zi, ri = X[rows], Z[rows], r[rows]
            ZBZ = Zi @ B[pc] @ np.swapaxes(Zi, 1, 2)
            W = (eye - ZBZ) / s2  # (c, k, k)
            WX = W @ Xi  # (c, k, p)
            if adjust == "mancl_derouen":
                H = Xi @ M @ np.swapaxes(WX, 1, 2)  # X_i M X_i' W_i (W symmetric)
                ri = np.linalg.solve(eye - H, ri[:, :, None])[:, :, 0]
            elif cr2:
                V = Zi @ G @ np.swapaxes(Zi, 1, 2) + s2 * eye
                D = np.swapaxes(np.linalg.cholesky(V), 1, 2)  # V = D'D, D upper triangular
                Bi = D @ (V - Xi @ M @ np.swapaxes(Xi, 1, 2)) @ np.swapaxes(D, 1, 2)
                Ai = np.swapaxes(D, 1, 2) @ _sym_inv_sqrt(Bi) @ D  # symmetric
                ri = (Ai @ ri[:, :, None])[:, :, 0]
                U = Ai @ WX @ M  # (c, k, p): column j is u_i for coefficient j
                d = np.einsum("ckj,ckl,clj->cj", U, V, U)
                Q = np.swapaxes(Xi, 1, 2) @ U  # (c, p, p): column j is q_i for coefficient j
                qMq = np.einsum("caj,ab,cbj->cj", Q, M, Q)
                sum_d += d.sum(0)
                sum_d2 += (d**2).sum(0)
                sum_dqq += (d * qMq).sum(0)
                QQ += np.einsum("caj,cbj->jab", Q, Q)
            u = np.einsum("ckp,ck->cp", WX, ri)
            meat += u.T @ u
    cov = M @ meat @ M
    cov = (cov + cov.T) / 2
    df = None
    if cr2:
        trace = sum_d - np.einsum("ab,jba->j", M, QQ)
        MQ = M[None] @ QQ
        frob = sum_d2 - 2 * sum_dqq + np.einsum("jab,jba->j", MQ, MQ)
        with np.errstate(divide="ignore", invalid="ignore"):
            df = trace**2 / frob
    return SandwichResult(cov, df, adjust)


def cluster_robust_cov(
    y: np.ndarray,
    X: np.ndarray,
    Z: np.ndarray,
    groups: np.ndarray,
    G: np.ndarray,
    sigma2: float,
    *,
    bias_reduced: bool = False,
    chunk: int = 4096,
) -> np.ndarray:
    """The sandwich covariance alone: CR0, or Mancl-DeRouen with ``bias_reduced`` (see :func:`cluster_robust`)."""
    adjust = "mancl_derouen" if bias_reduced else "none"
    return cluster_robust(y, X, Z, groups, G, sigma2, adjust=adjust, chunk=chunk).cov
