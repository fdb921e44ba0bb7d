"""Fast exact engine for two-level linear mixed models (``engine="fast"``).

Model, for group ``i`` with ``n_i`` rows::

    y_i = X_i beta + Z_i b_i + e_i,   b_i ~ N(0, sigma^2 Lambda Lambda'),   e_i ~ N(0, sigma^2 I)

with up to :data:`MAX_Q` correlated random effects per group. ``Lambda`` is the lower-triangular
relative covariance factor of lme4 (Bates, Maechler, Bolker & Walker 2015, "Fitting linear
mixed-effects models using lme4", J. Stat. Softw. 67(1)); ``theta`` holds its lower triangle in
lme4's (column-major) order, with the diagonal bounded below by 0.

How it is fast and exact
------------------------
1. One pass over the rows reduces the data to per-group sufficient statistics: ``Z_i'Z_i`` and
   ``Z_i'[X_i, e_i]``, where ``X`` is first replaced by an orthonormalised copy and ``y`` by its
   OLS residual ``e`` (both exact reparametrisations that keep the cross-products well
   conditioned; the estimates are mapped back at the end).
2. The profiled (RE)ML deviance of lme4 (paper, eqs. 34 and 41) is evaluated from these
   statistics alone. Every per-group matrix is at most 3 x 3, so inverses and determinants are
   closed-form array expressions over all groups at once, and the group sums are BLAS products.
3. The gradient with respect to ``theta`` is analytic (below), so L-BFGS-B needs few
   evaluations. It starts from a moment estimate (per-group OLS fits of the OLS residuals) or
   lme4's default; with few groups, or when the optimum is on the boundary, from several more
   starts, since the profiled criterion can then have local optima; a run that stops on the
   boundary is restarted just inside it when that is lower (as lme4's ``restart_edge``).
4. A projected Newton polish, with a Hessian from differences of the analytic gradient, takes
   the best run to full precision. ``converged`` is set only when the Newton decrement is ~0 at a
   positive-definite Hessian (on the coordinates not held at the boundary) and no point just
   inside the boundary is lower.

BLAS runs single-threaded during a fit when ``threadpoolctl`` is installed: the products here are
skinny (a few rows times the number of groups), and a multi-threaded OpenBLAS made them 2 to 6
times slower, and erratic, on a 2-core machine.

Gradient. With ``H_i = I + Z_i D Z_i'``, ``D = Lambda Lambda'``, ``M_i = I + Lambda'Z_i'Z_i Lambda``,
``F_i = Z_i' H_i^{-1} [X_i, e_i]`` (q x (p+1)) and ``b = [-beta_e; 1]``, the derivative of the
profiled deviance ``d = sum_i log|M_i| (+ log|X'H^{-1}X|) + nu log r^2 + const`` (``nu = n`` for ML,
``n - p`` for REML) is ``dd/dLambda = 2 sum_i Z_i'Z_i Lambda M_i^{-1} - 2 (sum_i F_i B F_i') Lambda``
with ``B = (nu / r^2) b b'`` plus, under REML, ``(X'H^{-1}X)^{-1}`` in its leading block.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass

import numpy as np
from scipy import linalg as sla
from scipy import optimize

from ...exceptions import ModelError
from .derivatives import gradient_hessian

__all__ = ["FastLMMResult", "MAX_Q", "fit_lmm_fast"]

log = logging.getLogger(__name__)

#: Largest number of random effects per group the fast engine supports.
MAX_Q: int = 3

#: lme4's ``isSingular`` tolerance on the diagonal of ``theta``.
_SINGULAR_TOL = 1e-4
_LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True, eq=False)
class FastLMMResult:
    """Result of :func:`fit_lmm_fast` (estimates on the scale of the data, lme4 conventions)."""

    beta: np.ndarray  # (p,) fixed effects
    cov_beta: np.ndarray  # (p, p) sigma^2 (X'V^-1 X)^-1 at the estimate, as lme4's vcov()
    re_cov: np.ndarray  # (q, q) random-effect covariance in variance units
    resid_var: float  # sigma^2
    loglik: float  # ML log-likelihood, or under REML the REML log-likelihood as lme4's logLik()
    reml: bool
    converged: bool  # True only if the optimum was verified (projected gradient, Hessian)
    singular: bool  # a diagonal element of theta below 1e-4 (lme4's isSingular)
    n_iter: int
    n_obs: int
    n_groups: int
    theta: np.ndarray  # lower triangle of the relative covariance factor, lme4 order
    blups: np.ndarray  # (n_groups, q) conditional modes of the random effects
    group_labels: np.ndarray  # labels in the row order of ``blups``
    message: str

    @property
    def se_beta(self) -> np.ndarray:
        """Standard errors of the fixed effects, ``sqrt(diag(cov_beta))``."""
        return np.sqrt(np.diag(self.cov_beta))


# --------------------------------------------------------------------------------------------
# input checks and sufficient statistics
# --------------------------------------------------------------------------------------------


def _as_matrix(a, name: str, n: int | None) -> np.ndarray:
    try:
        arr = np.asarray(a, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{name} must be numeric; could not convert it to floats ({exc}).") from None
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ModelError(f"{name} must be a 2-D array (rows x columns); got {arr.ndim} dimensions.")
    if n is not None and arr.shape[0] != n:
        raise ModelError(f"{name} has {arr.shape[0]} rows but y has {n}; they must match row for row.")
    return arr


def _check_finite(arr: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        shown = ", ".join(str(r) for r in rows[:5]) + (", ..." if rows.size > 5 else "")
        raise ModelError(
            f"{name} has {rows.size} row(s) with missing or non-finite values (rows {shown}); "
            "drop incomplete rows before fitting."
        )


def _factorize(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes 0..G-1 and the labels (sorted when the labels are orderable)."""
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency of ketastats
        pd = None
    if pd is not None:
        try:
            codes, uniques = pd.factorize(groups, sort=True)
        except TypeError:  # unorderable mixed labels: keep order of first appearance
            codes, uniques = pd.factorize(groups, sort=False)
        if (codes < 0).any():
            raise ModelError("groups has missing labels; drop those rows or give them a group.")
        return codes.astype(np.intp, copy=False), np.asarray(uniques)
    if groups.dtype.kind == "f" and np.isnan(groups).any():
        raise ModelError("groups has missing labels; drop those rows or give them a group.")
    labels, codes = np.unique(groups, return_inverse=True)
    return codes.astype(np.intp, copy=False), labels


def _orthonormalize(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Return ``Xt' = (X @ T)'`` (p x n, orthonormal rows), ``T`` and ``log|det T|``.

    A well-conditioned X is orthonormalised by the Cholesky factor of its cross-product
    (computed without BLAS, see :func:`_ein`; exact orthonormality is not needed, only good
    conditioning, since the cross-products of ``Xt`` are formed anyway); otherwise by a QR
    decomposition, which also tells the rank. Raises ModelError when X is not of full column
    rank (naming the collinear columns).
    """
    n, p = X.shape
    XtX = _ein("ni,nj->ij", X, X)
    norms = np.sqrt(np.diag(XtX))
    zero = np.nonzero(~(norms > 0))[0]
    if zero.size:
        raise ModelError(
            f"The fixed-effect design X is not of full column rank: column(s) {zero.tolist()} "
            "(0-based) are all zero."
        )
    C = XtX / np.outer(norms, norms)
    w = np.linalg.eigvalsh(C)
    R = None
    if w[0] > 1e-8 * w[-1]:  # condition number of the scaled X below 1e4: Cholesky is accurate
        try:
            R = sla.cholesky(XtX, lower=False, check_finite=False)
        except np.linalg.LinAlgError:
            R = None
    if R is None:
        R = sla.qr(X, mode="r", check_finite=False)[0][:p, :p]
        Rs = R / norms  # the R factor of X with unit-norm columns
        _, sv, vt = sla.svd(Rs, check_finite=False)
        rtol = max(1e-10, max(n, p) * np.finfo(float).eps)
        if sv[-1] <= rtol * sv[0]:
            rank = int(np.sum(sv > rtol * sv[0]))
            null = np.abs(vt[-1])
            involved = np.nonzero(null > 1e-3 * null.max())[0].tolist()
            raise ModelError(
                f"The fixed-effect design X is not of full column rank (rank {rank} < {p} columns): "
                f"columns {involved} (0-based) are (nearly) collinear, e.g. a dummy for every level of "
                "a factor together with an intercept, or a covariate that is constant or a linear "
                "combination of others. Drop or recode one of them."
            )
    T = _inv_upper(R)
    logdet_T = -float(np.sum(np.log(np.abs(np.diag(R)))))
    return _ein("ji,nj->in", T, X), T, logdet_T


def _group_sums(codes: np.ndarray, G: int, v: np.ndarray, starts: np.ndarray | None) -> np.ndarray:
    """Per-group sums of the row vector ``v``; ``starts`` are group starts when codes are sorted."""
    if starts is not None:
        return np.add.reduceat(v, starts)
    return np.bincount(codes, weights=v, minlength=G)


# --------------------------------------------------------------------------------------------
# closed-form small-matrix algebra over arrays of groups; a q x q symmetric matrix per group is
# stored as a (q*q, G) array (row-major entries), so that linear maps are tiny BLAS products.
# --------------------------------------------------------------------------------------------


def _inv_det_sym(M: np.ndarray, q: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse and determinant of symmetric positive-definite q x q matrices, q <= 3."""
    if q == 1:
        det = M[0]
        return (1.0 / det)[None, :], det
    if q == 2:
        a, b, d = M[0], M[1], M[3]
        det = a * d - b * b
        r = 1.0 / det
        nb = -b * r
        return np.stack([d * r, nb, nb, a * r]), det
    a, b, c, d, e, f = M[0], M[1], M[2], M[4], M[5], M[8]
    c00 = d * f - e * e
    c01 = c * e - b * f
    c02 = b * e - c * d
    c11 = a * f - c * c
    c12 = b * c - a * e
    c22 = a * d - b * b
    det = a * c00 + b * c01 + c * c02
    r = 1.0 / det
    c00, c01, c02, c11, c12, c22 = (x * r for x in (c00, c01, c02, c11, c12, c22))
    return np.stack([c00, c01, c02, c01, c11, c12, c02, c12, c22]), det


def _tril_index(q: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the lower triangle in lme4's column-major order."""
    rows, cols = [], []
    for j in range(q):
        for i in range(j, q):
            rows.append(i)
            cols.append(j)
    return np.array(rows), np.array(cols)


def _inv_upper(R: np.ndarray) -> np.ndarray:
    """Inverse of a small upper-triangular matrix by back substitution.

    Not LAPACK's trtri/trsm: OpenBLAS runs those multi-threaded even for a 5 x 5 matrix, and its
    spinning worker thread then halved the speed of everything else on a 2-core machine.
    """
    k = R.shape[0]
    X = np.zeros((k, k))
    for i in range(k - 1, -1, -1):
        row = -_ein("j,jk->k", R[i, i + 1 :], X[i + 1 :]) if i + 1 < k else np.zeros(k)
        row[i] += 1.0
        X[i] = row / R[i, i]
    return X


def _ein(subscripts, *operands):
    """numpy's own einsum loops, not BLAS: the products over groups are skinny, and a
    multi-threaded BLAS made them up to 20 times slower, and erratic, on a 2-core machine."""
    return np.einsum(subscripts, *operands, optimize=False)


class _Profiled:
    """The profiled (RE)ML deviance of lme4 and its analytic gradient, from group statistics."""

    def __init__(self, S, W, cross, n, p, q, reml, logdet_T):
        self.S = S  # (q*q, G) per-group Z'Z, full symmetric
        self.W = W  # (q, p+1, G) per-group Z'[Xt, e]
        self.cross = cross  # (p+1, p+1) [Xt, e]'[Xt, e]
        self.n, self.p, self.q = n, p, q
        self.reml = reml
        self.nu = n - p if reml else n
        self.logdet_T = logdet_T
        self.rows, self.cols = _tril_index(q)
        self.diag = self.rows == self.cols
        self.n_eval = 0
        self._cache_key = None
        self._cache_val = None

    def lam(self, theta: np.ndarray) -> np.ndarray:
        L = np.zeros((self.q, self.q))
        L[self.rows, self.cols] = theta
        return L

    def evaluate(self, theta, grad: bool = False, full: bool = False):
        """Deviance; with ``grad`` also its gradient; with ``full`` a dict with the solution."""
        theta = np.asarray(theta, dtype=float)
        if grad and not full and self._cache_key == theta.tobytes():
            dev, g = self._cache_val
            return (dev, g.copy())
        out = self._evaluate(theta, grad, full)
        if grad and not full:
            self._cache_key, self._cache_val = theta.tobytes(), (out[0], out[1].copy())
        return out

    def _evaluate(self, theta, grad, full):
        self.n_eval += 1
        q, p = self.q, self.p
        L = self.lam(theta)
        LL = np.kron(L, L)
        M = _ein("ij,ig->jg", LL, self.S)  # M_i = Lambda' S_i Lambda ...
        M[:: q + 1] += 1.0  # ... + I
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            Minv, det = _inv_det_sym(M, q)
        if not np.all(det > 0) or not np.all(np.isfinite(Minv)):
            return self._fail(theta, grad, full)
        K = _ein("ij,jg->ig", LL, Minv)  # K_i = Lambda M_i^-1 Lambda'
        W = self.W
        V = np.empty_like(W)  # V_i = K_i W_i
        for a in range(q):
            np.multiply(K[a * q], W[0], out=V[a])
            for j in range(1, q):
                V[a] += K[a * q + j] * W[j]
        A = self.cross.copy()  # [Xt, e]' H^-1 [Xt, e]
        for a in range(q):
            A -= _ein("kg,lg->kl", W[a], V[a])
        P = A[:p, :p]  # Xt' H^-1 Xt
        c = A[:p, p]  # Xt' H^-1 e
        try:
            cP = sla.cho_factor(P, lower=True, check_finite=False)
        except (np.linalg.LinAlgError, ValueError):
            return self._fail(theta, grad, full)
        beta_e = sla.cho_solve(cP, c, check_finite=False)
        r2 = float(A[p, p] - c @ beta_e)
        if not r2 > 0:
            return self._fail(theta, grad, full)
        nu = self.nu
        dev = float(np.sum(np.log(det))) + nu * (1.0 + _LOG_2PI + math.log(r2 / nu))
        if self.reml:
            dev += 2.0 * float(np.sum(np.log(np.diag(cP[0])))) - 2.0 * self.logdet_T
        if not (grad or full):
            return dev
        S = self.S
        b = np.append(-beta_e, 1.0)
        wb = _ein("k,akg->ag", b, W)  # Z_i'(e_i - Xt_i beta_e), (q, G)
        kw = np.stack([sum(K[a * q + j] * wb[j] for j in range(q)) for a in range(q)])  # K_i wb_i
        if not grad:
            return dict(dev=dev, beta_e=beta_e, r2=r2, cP=cP, L=L, blups=kw)
        # E_i = I - S_i K_i, so that Z_i' H_i^-1 = E_i Z_i' (for the group's block)
        E = [
            [(1.0 if a == j else 0.0) - sum(S[a * q + c] * K[c * q + j] for c in range(q)) for j in range(q)]
            for a in range(q)
        ]
        # u_i = Z_i' H_i^-1 (e_i - Xt_i beta_e) = E_i wb_i
        u = np.stack([sum(E[a][j] * wb[j] for j in range(q)) for a in range(q)])
        G2 = (nu / r2) * _ein("ag,bg->ab", u, u)
        if self.reml:
            # + sum_i F_i P^-1 F_i' with F_i = Z_i' H_i^-1 Xt_i = E_i W_i[:, :p]; with P = Lp Lp',
            # F_i P^-1 F_i' = E_i T_i E_i' where T_i[a, b] = (Lp^-1 W_ia)'(Lp^-1 W_ib)
            Linv = _inv_upper(cP[0].T).T  # cP[0] is lower triangular
            WR = [_ein("ij,jg->ig", Linv, W[a, :p]) for a in range(q)]
            Tm = [[None] * q for _ in range(q)]
            for a in range(q):
                for j in range(a, q):
                    Tm[a][j] = Tm[j][a] = np.einsum("kg,kg->g", WR[a], WR[j])
            ET = [[sum(E[a][c] * Tm[c][j] for c in range(q)) for j in range(q)] for a in range(q)]
            for a in range(q):
                for j in range(a, q):
                    v = float(sum(_ein("g,g->", ET[a][c], E[j][c]) for c in range(q)))
                    G2[a, j] += v
                    if j != a:
                        G2[j, a] += v
        Y = _ein("ag,bg->ab", S, Minv).reshape(q, q, q, q)  # Y[a,c,d,b] = sum_i S_i[a,c] Minv_i[d,b]
        G1 = np.einsum("cd,acdb->ab", L, Y)  # sum_i S_i Lambda M_i^-1
        g = (2.0 * (G1 - _ein("ab,bc->ac", G2, L)))[self.rows, self.cols]
        if not full:
            return dev, g
        return dict(dev=dev, grad=g, beta_e=beta_e, r2=r2, cP=cP, L=L, blups=kw)

    def _fail(self, theta, grad, full):
        if full:
            raise ModelError("The mixed-model criterion could not be evaluated at the estimate.")
        return (np.inf, np.full(theta.shape, np.nan)) if grad else np.inf


# --------------------------------------------------------------------------------------------
# start, optimisation, polish
# --------------------------------------------------------------------------------------------


def _moment_start(S, W, ee, counts, q, p):
    """Start theta from per-group OLS fits of the OLS residuals on Z (a method-of-moments guess)."""
    zte = W[:, p, :]  # (q, G) Z_i' e_i
    good = counts > q
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # singular S_i: not "good"
        Sinv, detS = _inv_det_sym(S, q)
    if q > 1:
        diag = np.prod(np.stack([S[a * q + a] for a in range(q)]), axis=0)
        good &= detS > 1e-8 * diag
    else:
        good &= detS > 0
    if good.sum() < q + 2:
        return None
    Sinv, zte, S_g = Sinv[:, good], zte[:, good], S[:, good]
    bhat = np.stack([sum(Sinv[a * q + j] * zte[j] for j in range(q)) for a in range(q)])
    rss = ee[good] - np.sum(bhat * zte, axis=0)
    sigma2 = rss.sum() / (counts[good] - q).sum()
    if not sigma2 > 0:
        return None
    dev_b = bhat - bhat.mean(axis=1, keepdims=True)
    cov_b = _ein("ag,bg->ab", dev_b, dev_b) / max(bhat.shape[1] - 1, 1)
    mean_Sinv = Sinv.mean(axis=1).reshape(q, q)
    D = (cov_b - sigma2 * mean_Sinv) / sigma2
    w, U = np.linalg.eigh((D + D.T) / 2)
    if not w.max() > 0:
        # no between-group variance visible: a small positive start (relative to the design)
        scale = 1.0 / np.maximum(S_g[:: q + 1].mean(axis=1) / np.maximum(counts[good].mean(), 1), 1e-300)
        D = np.diag(0.01 * scale)
    else:
        D = (U * np.maximum(w, 1e-3 * w.max())) @ U.T
    try:
        L = np.linalg.cholesky(D)
    except np.linalg.LinAlgError:
        return None
    rows, cols = _tril_index(q)
    theta = L[rows, cols]
    return theta if np.all(np.isfinite(theta)) else None


#: Up to this many groups all start variants are optimised; above it only when needed.
_ALL_STARTS_MAX_GROUPS = 300


def _start_candidates(bases, diag):
    """Distinct start points derived from the base starts."""
    out = []
    for base in bases:
        variants = [base, base * 0.2, base * 5.0]
        if (~diag).any() and np.any(base[~diag] != 0):
            flip = base.copy()
            flip[~diag] *= -1.0
            variants.append(flip)
        for j in np.nonzero(diag)[0]:
            near = base.copy()
            near[j] *= 0.01
            variants.append(near)
        for v in variants:
            if not any(np.allclose(v, o, rtol=1e-6, atol=1e-12) for o in out):
                out.append(v)
    return out


def _edge_escape(prob: _Profiled, theta, f):
    """A point just inside the boundary with a lower criterion, or None."""
    at_edge = np.nonzero(prob.diag & (theta <= 0))[0]
    if at_edge.size == 0:
        return None
    scale = max(1.0, float(np.max(np.abs(theta))))
    for j in at_edge:
        for h in (1e-4, 1e-3, 1e-2, 1e-1):
            trial = theta.copy()
            trial[j] = h * scale
            if prob.evaluate(trial) < f - 1e-12 * abs(f):
                return trial
    return None


def _fd_hessian(prob: _Profiled, theta, free, g0):
    """Hessian on the free coordinates by forward differences of the analytic gradient."""
    idx = np.nonzero(free)[0]
    step = 1e-5 * np.maximum(np.abs(theta), 1e-2)
    H = gradient_hessian(lambda t: prob.evaluate(t, grad=True)[1], theta, step, coords=idx, scheme="forward", g0=g0)
    return H, idx


def _free_mask(prob: _Profiled, theta, g):
    at_bound = prob.diag & (theta <= 0)
    return ~(at_bound & (g >= 0))


def _polish(prob: _Profiled, theta, lower, max_iter=25):
    """Projected Newton steps; returns theta, f, g, steps taken, free mask, decrement, Hessian PD."""
    f, g = prob.evaluate(theta, grad=True)
    steps = 0
    decrement = np.inf
    pd_ok = False
    free = _free_mask(prob, theta, g)
    for _ in range(max_iter):
        free = _free_mask(prob, theta, g)
        if not free.any():
            decrement, pd_ok = 0.0, True
            break
        H, idx = _fd_hessian(prob, theta, free, g)
        try:
            cH = sla.cho_factor(H, lower=True, check_finite=False)
            step_free = -sla.cho_solve(cH, g[idx], check_finite=False)
            pd_ok = True
        except (np.linalg.LinAlgError, ValueError):
            pd_ok = False
            w, U = np.linalg.eigh(H)
            w = np.maximum(np.abs(w), 1e-8 * max(np.abs(w).max(), 1e-300))
            step_free = -_ein("ij,j->i", U / w, _ein("ji,j->i", U, g[idx]))
        decrement = float(-g[idx] @ step_free)
        if pd_ok and decrement < 1e-14 * max(1.0, abs(f)):
            break
        step = np.zeros_like(theta)
        step[idx] = step_free
        alpha, improved = 1.0, False
        for _ in range(30):
            cand = np.maximum(theta + alpha * step, lower)
            fc = prob.evaluate(cand)
            if fc < f - 1e-4 * alpha * decrement:  # Armijo
                improved = True
                break
            alpha *= 0.5
        if not improved:
            break
        theta = cand
        steps += 1
        f, g = prob.evaluate(theta, grad=True)
    free = _free_mask(prob, theta, g)
    return theta, f, g, steps, free, decrement, pd_ok


def _single_threaded_blas():
    """Limit BLAS to one thread while fitting, when threadpoolctl is installed.

    The engine's BLAS calls are skinny products (a few rows times the number of groups) for which
    a multi-threaded BLAS only adds synchronisation: measured on a 2-core machine, OpenBLAS's
    threads made an evaluation 2 to 6 times slower and its timing erratic.
    """
    global _THREADPOOLS
    if _THREADPOOLS is None:
        try:
            from threadpoolctl import ThreadpoolController

            _THREADPOOLS = ThreadpoolController()  # scans the loaded libraries once
        except ImportError:  # pragma: no cover - optional
            _THREADPOOLS = False
    if _THREADPOOLS is False:
        return contextlib.nullcontext()
    return _THREADPOOLS.limit(limits=1, user_api="blas")


_THREADPOOLS = None


def fit_lmm_fast(y, X, Z, groups, *, reml: bool = True, start_theta=None) -> FastLMMResult:
    """Fit a two-level linear mixed model exactly, by the profiled (RE)ML criterion of lme4.

    Parameters
    ----------
    y : (n,) response.
    X : (n, p) fixed-effect design, of full column rank (include the intercept column yourself).
    Z : (n, q) random-effect design, ``q <= MAX_Q`` (e.g. ``[1, time]`` for a random intercept
        and slope).
    groups : (n,) group labels of any hashable type; need not be sorted or contiguous.
    reml : REML (default, as lme4) or ML.
    start_theta : optional start for ``theta`` (lme4 order); default from moment estimates.

    Raises
    ------
    ModelError
        Missing or non-finite values, mismatched lengths, ``q > MAX_Q``, a rank-deficient ``X``,
        too few rows, or a response that X fits exactly.
    """
    with _single_threaded_blas():
        return _fit(y, X, Z, groups, reml=reml, start_theta=start_theta)


def _validate(y, X, Z, groups, reml):
    """Checked float arrays, group codes and labels; ModelError with a clear message otherwise."""
    try:
        y = np.asarray(y, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"y must be numeric; could not convert it to floats ({exc}).") from None
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ModelError(f"y must be a 1-D array; got shape {y.shape}.")
    n = y.shape[0]
    X = _as_matrix(X, "X", n)
    Z = _as_matrix(Z, "Z", n)
    groups = np.asarray(groups)
    if groups.ndim != 1 or groups.shape[0] != n:
        raise ModelError(f"groups must be 1-D with one label per row ({n}); got shape {groups.shape}.")
    p, q = X.shape[1], Z.shape[1]
    if q < 1:
        raise ModelError("Z has no columns: the model needs at least one random effect per group.")
    if q > MAX_Q:
        raise ModelError(
            f"The fast engine supports at most {MAX_Q} random effects per group; Z has {q} columns. "
            "Use another engine (e.g. statsmodels) for this model."
        )
    if p < 1:
        raise ModelError("X has no columns: the model needs at least one fixed effect (the intercept).")
    if n <= p + (1 if reml else 0):
        raise ModelError(f"Too few rows ({n}) for {p} fixed effects.")
    _check_finite(y[:, None], "y")
    _check_finite(X, "X")
    _check_finite(Z, "Z")
    codes, labels = _factorize(groups)
    G = labels.shape[0]
    # lme4's default identifiability checks (lmerControl: check.nlev.gtr.1, check.nobs.vs.nlev,
    # check.nobs.vs.nRE, all "stop")
    if G < 2:
        raise ModelError(f"groups has {G} level; a random effect needs at least 2 groups.")
    if n <= G:
        raise ModelError(
            f"{n} rows for {G} groups: with no group of more than one row the random-effect and "
            "residual variances are not identifiable (lme4 stops here too)."
        )
    if n <= q * G:
        raise ModelError(
            f"{n} rows for {G} groups x {q} random effects: there are no more observations than "
            "random effects, so the random-effect and residual variances are not identifiable "
            "(lme4 stops here too). Use fewer random effects or more rows per group."
        )
    return y, X, Z, codes, labels


def _build(y, X, Z, codes, G, reml, *, condition_z=True):
    """The profiled criterion of these data, from one pass over the rows.

    With ``condition_z`` the random-effect design is first replaced by ``Zc = Z A`` with
    ``Zc'Zc = n I`` (``A`` from a QR of ``Z``): an exact reparametrisation (``D = A Dc A'``) that
    keeps the criterion well conditioned when a random slope's covariate has a large offset or
    scale (e.g. calendar time). Returns the criterion and what is needed to map back.
    """
    n, p = X.shape
    q = Z.shape[1]
    A = np.eye(q)
    if condition_z:
        ZtZ = _ein("ni,nj->ij", Z, Z)
        zn = np.sqrt(np.diag(ZtZ))
        w = np.linalg.eigvalsh(ZtZ / np.outer(np.maximum(zn, 1e-300), np.maximum(zn, 1e-300)))
        Rz = None
        if w[0] > 1e-8 * w[-1]:
            try:
                Rz = sla.cholesky(ZtZ, lower=False, check_finite=False)
            except np.linalg.LinAlgError:
                Rz = None
        if Rz is None:  # ill-conditioned: QR, which also tells the rank
            Rz = sla.qr(Z, mode="r", check_finite=False)[0][:q, :q]
            sv = sla.svdvals(Rz / np.maximum(np.sqrt(np.sum(Rz * Rz, axis=0)), 1e-300), check_finite=False)
            if not sv[-1] > max(1e-10, n * np.finfo(float).eps) * sv[0]:
                raise ModelError(
                    "The random-effect design Z is not of full column rank (a column is zero, "
                    "constant where another is, or a combination of others); drop the redundant "
                    "random effect."
                )
        A = _inv_upper(Rz) * math.sqrt(n)
        Z = _ein("nj,jk->nk", Z, A)
    XEt = np.empty((p + 1, n))  # rows: orthonormalised X columns, then the OLS residual
    XEt[:p], T, logdet_T = _orthonormalize(X)
    beta_ols = _ein("kn,n->k", XEt[:p], y)
    np.subtract(y, _ein("k,kn->n", beta_ols, XEt[:p]), out=XEt[p])
    cross = _ein("kn,ln->kl", XEt, XEt)
    if not cross[p, p] > 1e-24 * max(float(_ein("n,n->", y, y)), 1e-300):
        raise ModelError("X fits y exactly (zero residual variance); the mixed model is not estimable.")

    # per-group sufficient statistics in one pass over the rows
    starts = None
    if n > 1 and np.all(codes[1:] >= codes[:-1]):  # rows sorted by group: contiguous sums
        starts = np.flatnonzero(np.diff(codes)) if G > 1 else np.empty(0, dtype=np.intp)
        starts = np.concatenate([[0], starts + 1])
    Zt = np.ascontiguousarray(Z.T)
    tmp = np.empty(n)
    S = np.empty((q * q, G))
    for a in range(q):
        for j in range(a, q):
            S[a * q + j] = _group_sums(codes, G, np.multiply(Zt[a], Zt[j], out=tmp), starts)
            S[j * q + a] = S[a * q + j]
    W = np.empty((q, p + 1, G))
    for a in range(q):
        for k in range(p + 1):
            W[a, k] = _group_sums(codes, G, np.multiply(Zt[a], XEt[k], out=tmp), starts)
    ee = _group_sums(codes, G, np.multiply(XEt[p], XEt[p], out=tmp), starts)
    counts = np.bincount(codes, minlength=G)
    del tmp, Zt

    prob = _Profiled(S, W, cross, n, p, q, reml, logdet_T)
    return prob, {"A": A, "T": T, "beta_ols": beta_ols, "ee": ee, "counts": counts}


def _profiled_criterion(y, X, Z, groups, reml=True):
    """The engine's profiled criterion in the parametrisation of the given Z (for tests)."""
    y, X, Z, codes, labels = _validate(y, X, Z, groups, reml)
    return _build(y, X, Z, codes, labels.shape[0], reml, condition_z=False)[0]


def _psd_chol(D: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of a positive semi-definite matrix (zero columns where singular)."""
    q = D.shape[0]
    L = np.zeros((q, q))
    for j in range(q):
        s = D[j, j] - L[j, :j] @ L[j, :j]
        if s <= 1e-12 * max(D[j, j], 0.0):
            continue  # zero up to rounding: this column stays 0 (a boundary / singular direction)
        L[j, j] = math.sqrt(s)
        for i in range(j + 1, q):
            L[i, j] = (D[i, j] - L[i, :j] @ L[j, :j]) / L[j, j]
    return L


def _fit(y, X, Z, groups, *, reml, start_theta) -> FastLMMResult:
    t0 = time.perf_counter()
    y, X, Z, codes, labels = _validate(y, X, Z, groups, reml)
    n, p = X.shape
    q = Z.shape[1]
    G = labels.shape[0]
    prob, aux = _build(y, X, Z, codes, G, reml)
    A, T, beta_ols, ee, counts = aux["A"], aux["T"], aux["beta_ols"], aux["ee"], aux["counts"]
    S, W = prob.S, prob.W
    log.debug(
        "fast LMM: n=%d p=%d q=%d groups=%d reml=%s; statistics in %.3fs",
        n,
        p,
        q,
        G,
        reml,
        time.perf_counter() - t0,
    )
    rows, cols_ = prob.rows, prob.cols
    lower = np.where(prob.diag, 0.0, -np.inf)
    bounds = [(0.0, None) if d else (None, None) for d in prob.diag]

    # starts: the user's, the moment guess and lme4's default (Lambda = I). The profiled criterion
    # can have local optima (few or tiny groups, boundary optima), so with few groups, or when the
    # best run ends on the boundary, more starts follow: each base scaled, with the correlations'
    # signs flipped and with one random effect near the boundary. The best run is kept. With many
    # groups the criterion is close to quadratic around its optimum and one start suffices.
    bases = []
    if start_theta is not None:
        st = np.asarray(start_theta, dtype=float).ravel()
        if st.shape[0] != rows.size or not np.all(np.isfinite(st)):
            raise ModelError(
                f"start_theta must hold {rows.size} finite values (lme4 order); got {st.tolist()}."
            )
        L0 = np.zeros((q, q))
        L0[rows, cols_] = st
        Ainv = _inv_upper(A)
        bases.append(np.maximum(_psd_chol(Ainv @ (L0 @ L0.T) @ Ainv.T)[rows, cols_], lower))
    ms = _moment_start(S, W, ee, counts, q, p)
    if ms is not None:
        bases.append(ms)
    bases.append(np.eye(q)[rows, cols_])

    runs = []

    def lbfgs(start):
        return optimize.minimize(
            lambda th: prob.evaluate(th, grad=True),
            start,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            # to ~1e-12 relative; the Newton polish below takes the best run to full precision
            options={"maxiter": 2000, "ftol": 1e-12, "gtol": 1e-9, "maxcor": 20},
        )

    def optimise_from(starts):
        devs = np.array([prob.evaluate(c) for c in starts])
        for k in np.argsort(devs, kind="stable"):
            if not np.isfinite(devs[k]):
                continue
            run = lbfgs(starts[k])
            # restart from the edge (as lme4's restart_edge): the criterion is even in the last
            # diagonal entry of Lambda, so its gradient vanishes on that boundary, where a run
            # can stop at a saddle; step inside while that lowers the criterion
            for _ in range(5):
                inside = _edge_escape(prob, np.maximum(run.x, lower), run.fun)
                if inside is None:
                    break
                again = lbfgs(inside)
                if not again.fun < run.fun:
                    break
                run = again
            if np.isfinite(run.fun):
                runs.append(run)

    variants = [
        c
        for c in _start_candidates(bases, prob.diag)
        if not any(np.allclose(c, b, rtol=1e-6, atol=1e-12) for b in bases)
    ]
    if G <= _ALL_STARTS_MAX_GROUPS:  # small data: cheap, and where local optima occur
        optimise_from(bases)
        optimise_from(variants)
    else:  # the user's start and the better of the moment and default starts
        first = bases[:1] if start_theta is not None else []
        rest = bases[len(first) :]
        devs = [prob.evaluate(b) for b in rest]
        optimise_from(first + [rest[int(np.argmin(devs))]])
        if runs and np.any(min(runs, key=lambda r: r.fun).x[prob.diag] < _SINGULAR_TOL):
            optimise_from(rest + variants)  # a boundary optimum: look wider
    if not runs:
        raise ModelError(
            "The mixed-model criterion is not finite at any start; check the data for extreme values."
        )
    best = min(runs, key=lambda r: r.fun)
    n_runs = len(runs)
    theta = np.maximum(best.x, lower)
    n_lbfgs = int(best.nit)
    log.debug(
        "fast LMM: %d L-BFGS-B runs; best %d iterations, deviance %.10f (%s); %d evaluations so far",
        n_runs,
        best.nit,
        best.fun,
        best.message,
        prob.n_eval,
    )
    theta, f, g, n_newton, free, decrement, pd_ok = _polish(prob, theta, lower)
    # snap diagonal entries that are numerically zero onto the boundary when that is no worse
    tiny = prob.diag & (theta > 0) & (theta < 1e-7)
    if tiny.any():
        cand = np.where(tiny, 0.0, theta)
        fc = prob.evaluate(cand)
        if fc <= f:
            theta = cand
            f, g = prob.evaluate(theta, grad=True)
            free = _free_mask(prob, theta, g)

    pg = np.where(free, g, 0.0)
    gmax = float(np.max(np.abs(pg))) if pg.size else 0.0
    # verified optimum: positive-definite Hessian on the free coordinates and a Newton decrement
    # (twice the deviance still to gain by a Newton step) below 1e-6, up to rounding in the deviance
    # and, for variances on the boundary, no lower criterion just inside it
    edge_ok = _edge_escape(prob, theta, f) is None
    converged = bool(np.isfinite(f) and pd_ok and edge_ok and decrement < 1e-6 + 1e-13 * abs(f))

    sol = prob.evaluate(theta, full=True)
    beta_e, r2, cP, Lc = sol["beta_e"], sol["r2"], sol["cP"], sol["L"]
    sigma2 = r2 / prob.nu
    beta = T @ (beta_ols + beta_e)
    Pinv = sla.cho_solve(cP, np.eye(p), check_finite=False)
    cov_beta = sigma2 * (T @ Pinv @ T.T)
    cov_beta = (cov_beta + cov_beta.T) / 2
    # back to the parametrisation of the caller's Z: b = A b_c, D = A D_c A'
    D = A @ (Lc @ Lc.T) @ A.T
    D = (D + D.T) / 2
    theta_out = _psd_chol(D)[rows, cols_]
    re_cov = sigma2 * D
    blups = sol["blups"].T @ A.T  # conditional modes K_i Z_i'(e_i - Xt_i beta_e), mapped back
    singular = bool(np.any(theta_out[prob.diag] < _SINGULAR_TOL))
    loglik = -0.5 * f
    n_iter = n_lbfgs + n_newton
    if converged:
        verdict = "optimum verified"
    elif not edge_ok:
        verdict = "optimum NOT verified (the criterion is lower just inside the boundary)"
    elif not pd_ok:
        verdict = "optimum NOT verified (Hessian not positive definite: a flat or non-identified direction)"
    else:
        verdict = "optimum NOT verified (Newton decrement too large)"
    msg = (
        f"{'REML' if reml else 'ML'} fit, {n} rows, {G} groups; L-BFGS-B from {n_runs} start(s), best "
        f"{n_lbfgs} iterations, then {n_newton} Newton step(s); {prob.n_eval} evaluations; "
        f"max |projected gradient| {gmax:.2e}, Newton decrement {decrement:.2e}; {verdict}"
        + ("; singular fit (a random-effect variance at the boundary)" if singular else "")
    )
    log.debug("fast LMM: %s; total %.3fs", msg, time.perf_counter() - t0)
    return FastLMMResult(
        beta=beta,
        cov_beta=cov_beta,
        re_cov=re_cov,
        resid_var=float(sigma2),
        loglik=float(loglik),
        reml=bool(reml),
        converged=converged,
        singular=singular,
        n_iter=n_iter,
        n_obs=n,
        n_groups=G,
        theta=theta_out,
        blups=np.ascontiguousarray(blups),
        group_labels=labels,
        message=msg,
    )
