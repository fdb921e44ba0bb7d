"""Mixed model for repeated measures (MMRM) by (RE)ML, as SAS PROC MIXED's REPEATED statement.

Model: for patient ``i`` with observed visits ``s_i`` (a subset of the ``T`` visit levels),

    y_i = X_i beta + e_i,    e_i ~ N(0, Sigma_g[s_i, s_i])

where ``Sigma_g`` is the ``T x T`` covariance of one patient's complete visits, of a chosen
structure (``engines/covariance.py``), optionally one per level ``g`` of a group column. A
patient's covariance is the sub-matrix of the visits he has.

How it is fast
--------------
Every patient with the same visit pattern (and group) shares ``W = Sigma[s, s]^-1``, so the
likelihood needs per pattern only the sums ``S_XX[a,b] = sum_i X_i[a]' X_i[b]``,
``S_Xy[a,b] = sum_i X_i[a]' y_i[b]`` and ``S_yy[a,b]`` over the pattern's patients (``a, b``
visits of the pattern). They are computed once, by one BLAS product per pattern; afterwards a
likelihood evaluation, its gradient and its Hessian cost per pattern ``k^2 p^2`` operations
(``k`` visits, ``p`` fixed effects) whatever the number of patients: ``X'V^-1X = sum_P
sum_ab W[a,b] S_XX[a,b]``, and every derivative of ``V^-1`` is a ``k x k`` matrix per pattern.

Criterion (SAS's "-2 Res Log Likelihood" and "-2 Log Likelihood")::

    REML: (n - p) log(2 pi) + sum_i log|Sigma_i| + log|X'V^-1X| + r'V^-1 r
    ML:    n      log(2 pi) + sum_i log|Sigma_i|                 + r'V^-1 r

with ``r = y - X beta_hat``, ``beta_hat`` the GLS estimate. Its gradient and Hessian in the
covariance parameters ``theta`` (SAS's parametrization) are exact; the fit is a Newton iteration
on unconstrained transforms of ``theta`` (log variances, tanh correlations) with a line search,
started from moment estimates of OLS residuals, and falls back to BFGS if Newton stalls.

Inference
---------
- model-based ``Var(beta) = Phi = (X'V^-1X)^-1``;
- Satterthwaite df for any contrast ``l``: ``2 (l'Phi l)^2 / (g' W g)`` with
  ``g_r = l' dPhi/dtheta_r l = -l'Phi P_r Phi l``, ``P_r = X' dV^-1/dtheta_r X`` and ``W`` the
  inverse of the observed information (half the Hessian of the criterion above), as SAS
  (``ddfm=satterthwaite``) and R's mmrm;
- Kenward-Roger (1997): ``Phi_A = Phi + 2 Phi [sum_rs W_rs (Q_rs - P_r Phi P_s - R_rs / 4)] Phi``
  and its df (pbkrtest's formulas), with ``W`` from the expected (pbkrtest, KR's paper) or
  observed (SAS's default, mmrm) information;
- empirical (sandwich, CR0) ``Phi (sum_i X_i'W_i r_i r_i'W_i X_i) Phi``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import linalg as sla
from scipy import optimize, stats

from ketastats.exceptions import ModelError
from ketastats.models.engines.covariance import STRUCTURES, Structure, make_structure

__all__ = [
    "MMRMResult",
    "STRUCTURES",
    "fit_mmrm",
    "mmrm_design",
]

_LOG_2PI = math.log(2.0 * math.pi)
_DEBUG = False


# ---------------------------------------------------------------------------------------------
# data reduced to visit patterns
# ---------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Pattern:
    group: int
    visits: np.ndarray  # (k,) visit indices, ascending
    n: int  # patients
    X: np.ndarray  # (n, k, p)
    Y: np.ndarray  # (n, k)
    SXX: np.ndarray  # (k, k, p, p)
    SXy: np.ndarray  # (k, k, p)
    Syy: np.ndarray  # (k, k)


def _patterns(y, X, subj_codes, visit, group_of_subject, n_visits) -> list[_Pattern]:
    n_subj = group_of_subject.size
    bits = np.left_shift(np.int64(1), visit.astype(np.int64)) if n_visits < 63 else None
    if bits is None:
        raise ModelError("at most 62 visit levels are supported")
    mask = np.zeros(n_subj, dtype=np.int64)
    np.bitwise_or.at(mask, subj_codes, bits)
    counts = np.bincount(subj_codes, minlength=n_subj)
    # a duplicated (patient, visit) leaves fewer bits than rows
    if np.any(_popcount(mask) != counts):
        raise ModelError("a patient has more than one row at the same visit; an MMRM needs one row per patient and visit")
    row_mask = mask[subj_codes]
    row_group = group_of_subject[subj_codes]
    order = np.lexsort((visit, subj_codes, row_mask, row_group))
    g_sorted = row_group[order]
    m_sorted = row_mask[order]
    change = np.flatnonzero((np.diff(g_sorted) != 0) | (np.diff(m_sorted) != 0)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [order.size]])
    out = []
    p = X.shape[1]
    for s, e in zip(starts, ends, strict=True):
        rows = order[s:e]
        m = int(m_sorted[s])
        vis = np.array([v for v in range(n_visits) if (m >> v) & 1], dtype=int)
        k = vis.size
        npat = rows.size // k
        Xp = X[rows].reshape(npat, k, p)
        Yp = y[rows].reshape(npat, k)
        Xf = Xp.reshape(npat, k * p)
        SXX = (Xf.T @ Xf).reshape(k, p, k, p).transpose(0, 2, 1, 3).copy()
        SXy = (Xf.T @ Yp).reshape(k, p, k).transpose(0, 2, 1).copy()
        Syy = Yp.T @ Yp
        out.append(_Pattern(int(g_sorted[s]), vis, npat, Xp, Yp, SXX, SXy, Syy))
    return out


def _popcount(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    c = np.zeros(a.shape, dtype=np.int64)
    while np.any(a):
        c += a & 1
        a >>= 1
    return c


# ---------------------------------------------------------------------------------------------
# the criterion and its derivatives
# ---------------------------------------------------------------------------------------------


class _NotPD(Exception):
    pass


@dataclass(eq=False)
class _Eval:
    f: float
    beta: np.ndarray
    A: np.ndarray  # X'V^-1X
    Phi: np.ndarray
    logdetA: float
    W: list  # per pattern
    grad: np.ndarray | None = None
    hess: np.ndarray | None = None
    # for inference
    P: np.ndarray | None = None  # (q, p, p)   X' dV^-1/dtheta_r X
    Q: np.ndarray | None = None  # (q, q, p, p) X'V^-1 V_r V^-1 V_s V^-1 X
    R: np.ndarray | None = None  # (q, q, p, p) X'V^-1 V_rs V^-1 X
    trace_rs: np.ndarray | None = None  # sum_i tr(W V_r W V_s)


class _Problem:
    def __init__(self, patterns, structure: Structure, n_groups: int, n: int, p: int, reml: bool):
        self.patterns = patterns
        self.structure = structure
        self.G = n_groups
        self.qg = structure.q
        self.q = structure.q * n_groups
        self.n = n
        self.p = p
        self.reml = reml
        self.const = (n - p if reml else n) * _LOG_2PI

    def _sigmas(self, theta, order):
        qg = self.qg
        out = []
        for g in range(self.G):
            out.append(self.structure.derivatives(theta[g * qg : (g + 1) * qg], order=order))
        return out

    def evaluate(self, theta, order: int = 0, inference: bool = False) -> _Eval:
        """Criterion at ``theta``; with ``order`` 1/2 its gradient/Hessian. Raises _NotPD."""
        p, qg = self.p, self.qg
        sig = self._sigmas(theta, order)
        A = np.zeros((p, p))
        b = np.zeros(p)
        c = 0.0
        ld = 0.0
        Ws = []
        for P in self.patterns:
            S = sig[P.group][0][np.ix_(P.visits, P.visits)]
            try:
                L = np.linalg.cholesky(S)
            except np.linalg.LinAlgError as exc:
                raise _NotPD from exc
            Li = np.linalg.inv(L)
            W = Li.T @ Li
            Ws.append(W)
            ld += P.n * 2.0 * float(np.sum(np.log(np.diag(L))))
            A += np.tensordot(W, P.SXX, axes=([0, 1], [0, 1]))
            b += np.tensordot(W, P.SXy, axes=([0, 1], [0, 1]))
            c += float(np.sum(W * P.Syy))
        try:
            cA = sla.cho_factor(A, lower=True)
        except np.linalg.LinAlgError as exc:
            raise _NotPD from exc
        beta = sla.cho_solve(cA, b)
        Phi = sla.cho_solve(cA, np.eye(p))
        logdetA = 2.0 * float(np.sum(np.log(np.diag(cA[0]))))
        rss = c - float(b @ beta)
        f = self.const + ld + rss + (logdetA if self.reml else 0.0)
        ev = _Eval(f, beta, A, Phi, logdetA, Ws)
        if order == 0:
            return ev
        q = self.q
        grad = np.zeros(q)
        Pm = np.zeros((q, p, p))
        U = np.zeros((q, p))  # b_r - A_r beta
        hess = np.zeros((q, q)) if order > 1 else None
        Qm = np.zeros((q, q, p, p)) if order > 1 and inference else None
        Rm = np.zeros((q, q, p, p)) if order > 1 and inference else None
        trace_rs = np.zeros((q, q)) if order > 1 else None
        hess_direct = np.zeros((q, q)) if order > 1 else None
        trPhiArs = np.zeros((q, q)) if order > 1 else None
        for P, W in zip(self.patterns, Ws, strict=True):
            sl = slice(P.group * qg, (P.group + 1) * qg)
            vis = P.visits
            _, d1, d2 = sig[P.group]
            D1 = d1[:, vis][:, :, vis]  # (qg, k, k)
            WD = np.einsum("ab,rbc->rac", W, D1)  # W Sigma_r
            Wr = -np.einsum("rab,bc->rac", WD, W)  # d W / d theta_r
            # residual cross products at beta
            SXb = np.tensordot(P.SXX, beta, axes=([3], [0]))  # (k,k,p): S_XX[a,b] beta
            SXR = P.SXy - SXb  # sum X[a]' r[b]
            bSXy = np.tensordot(P.SXy, beta, axes=([2], [0]))  # (k,k): beta' S_Xy[a,b]
            SRR = P.Syy - bSXy - bSXy.T + np.tensordot(SXb, beta, axes=([2], [0]))
            trWD = np.einsum("raa->r", WD)
            Ar = np.tensordot(Wr, P.SXX, axes=([1, 2], [0, 1]))  # (qg,p,p)
            Pm[sl] += Ar
            U[sl] += np.tensordot(Wr, SXR, axes=([1, 2], [0, 1]))
            grad[sl] += P.n * trWD + np.tensordot(Wr, SRR, axes=([1, 2], [0, 1]))
            if order > 1:
                D2 = d2[:, :, vis][:, :, :, vis]
                M = np.einsum("rab,sbc->rsac", WD, Wr) * -1.0  # W S_r W S_s W
                WD2W = np.einsum("ab,rsbc,cd->rsad", W, D2, W)
                Wrs = M + M.transpose(1, 0, 2, 3) - WD2W
                tr_rs = np.einsum("rab,sba->rs", WD, WD)
                trWD2 = np.einsum("rsaa->rs", np.einsum("ab,rsbc->rsac", W, D2))
                if inference:
                    Qm[sl, sl] += np.tensordot(M, P.SXX, axes=([2, 3], [0, 1]))
                    Rm[sl, sl] += np.tensordot(WD2W, P.SXX, axes=([2, 3], [0, 1]))
                if self.reml:  # tr(Phi A_rs) = sum_ab W_rs[a,b] tr(Phi S_XX[a,b])
                    TPhi = np.einsum("pq,abqp->ab", Phi, P.SXX)
                    trPhiArs[sl, sl] += np.tensordot(Wrs, TPhi, axes=([2, 3], [0, 1]))
                trace_rs[sl, sl] += P.n * tr_rs
                hess_direct[sl, sl] += P.n * (trWD2 - tr_rs) + np.tensordot(Wrs, SRR, axes=([2, 3], [0, 1]))
        if self.reml:
            grad += np.einsum("pq,rqp->r", Phi, Pm)
        ev.grad = grad
        ev.P = Pm
        if order > 1:
            PhiU = U @ Phi
            hess = hess_direct - 2.0 * PhiU @ U.T
            if self.reml:
                PhiP = np.einsum("ab,rbc->rac", Phi, Pm)
                hess += trPhiArs - np.einsum("rab,sba->rs", PhiP, PhiP)
            ev.hess = 0.5 * (hess + hess.T)
            ev.trace_rs = trace_rs
            if inference:
                ev.Q, ev.R = Qm, Rm
        return ev


# ---------------------------------------------------------------------------------------------
# transforms and the optimiser
# ---------------------------------------------------------------------------------------------


def _to_natural(kinds, phi):
    th = phi.copy()
    v = kinds == "var"
    c = kinds == "corr"
    th[v] = np.exp(phi[v])
    th[c] = np.tanh(phi[c])
    return th


def _to_free(kinds, theta):
    phi = np.asarray(theta, dtype=float).copy()
    v = kinds == "var"
    c = kinds == "corr"
    phi[v] = np.log(np.maximum(theta[v], 1e-300))
    phi[c] = np.arctanh(np.clip(theta[c], -1 + 1e-12, 1 - 1e-12))
    return phi


def _jac(kinds, phi):
    """First and second derivatives of theta_j with respect to phi_j (elementwise)."""
    d1 = np.ones_like(phi)
    d2 = np.zeros_like(phi)
    v = kinds == "var"
    c = kinds == "corr"
    d1[v] = d2[v] = np.exp(phi[v])
    t = np.tanh(phi[c])
    d1[c] = 1.0 - t * t
    d2[c] = -2.0 * t * (1.0 - t * t)
    return d1, d2


def _newton(prob: _Problem, kinds, phi0, max_iter=200):
    """Damped Newton on the unconstrained parameters; returns (phi, eval, iterations, ok)."""

    def value(phi):
        try:
            return prob.evaluate(_to_natural(kinds, phi)).f
        except _NotPD:
            return np.inf

    phi = phi0.copy()
    ev = prob.evaluate(_to_natural(kinds, phi), order=2)
    it = 0
    ok = False
    for it in range(1, max_iter + 1):  # noqa: B007
        j1, j2 = _jac(kinds, phi)
        g = ev.grad * j1
        H = ev.hess * np.outer(j1, j1) + np.diag(ev.grad * j2)
        lam, V = np.linalg.eigh(H)
        floor = 1e-8 * max(1.0, float(np.max(np.abs(lam))))
        lam_mod = np.maximum(np.abs(lam), floor)
        step = -(V @ ((V.T @ g) / lam_mod))
        decrement = float(-g @ step)
        if _DEBUG:
            print(it, ev.f, decrement, lam.min(), np.abs(g).max())
        if decrement < 1e-10 and np.all(lam > floor):
            ok = True
            break
        # keep steps moderate on the log/tanh scale
        big = float(np.max(np.abs(step)))
        if big > 2.0:
            step *= 2.0 / big
        alpha = 1.0
        f0 = ev.f
        moved = False
        for _ in range(40):
            cand = phi + alpha * step
            fc = value(cand)
            if fc <= f0 - 1e-4 * alpha * max(decrement, 0.0):
                moved = True
                break
            alpha *= 0.5
        if not moved:
            # no decrease found: at the criterion's rounding floor if the decrement is tiny
            ok = bool(decrement < 1e-6 and np.all(lam > floor))
            break
        phi = cand
        ev = prob.evaluate(_to_natural(kinds, phi), order=2)
    return phi, ev, it, ok


def _bfgs(prob: _Problem, kinds, phi0):
    def fun(phi):
        try:
            ev = prob.evaluate(_to_natural(kinds, phi), order=1)
        except _NotPD:
            return 1e300, np.zeros_like(phi)
        j1, _ = _jac(kinds, phi)
        return ev.f, ev.grad * j1

    res = optimize.minimize(fun, phi0, jac=True, method="BFGS", options={"gtol": 1e-6, "maxiter": 2000})
    return res.x


# ---------------------------------------------------------------------------------------------
# result
# ---------------------------------------------------------------------------------------------


@dataclass(eq=False)
class MMRMResult:
    """Result of :func:`fit_mmrm`. ``theta`` in SAS's parametrization (``theta_labels``)."""

    names: list[str]
    beta: np.ndarray
    vcov: np.ndarray  # model-based
    df: np.ndarray  # Satterthwaite, per coefficient
    aliased: list[str]
    structure: str
    groups: list[str]
    visits: list[str]
    theta: np.ndarray
    theta_labels: list[str]
    theta_groups: list[str]
    cov_theta: np.ndarray  # inverse observed information (2 H^-1)
    sigma: dict  # group -> T x T covariance
    m2loglik: float  # -2 (restricted) log-likelihood, SAS's
    reml: bool
    n_obs: int
    n_subjects: int
    n_patterns: int
    converged: bool
    iterations: int
    message: str
    hessian_pd: bool
    _prob: _Problem = field(repr=False)
    _ev: _Eval = field(repr=False)

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(np.diag(self.vcov))

    @property
    def loglik(self) -> float:
        return -0.5 * self.m2loglik

    @property
    def n_theta(self) -> int:
        return self.theta.size

    def to_dict(self, *, df_method: str = "satterthwaite", se: str = "model", formula: str | None = None) -> dict:
        """The fit as plain JSON types, in the shape of ``ketastats fit --json`` for the LMMs, plus the
        covariance matrix and its parameters. ``df_method``: satterthwaite | kenward_roger | normal;
        ``se``: model | empirical."""
        p = self.beta.size
        if df_method == "kenward_roger":
            vcov, dfs = self.kenward_roger("expected")["vcov"], self.kenward_roger_df("expected")
        elif se == "empirical":
            vcov, dfs = self.empirical_vcov(), np.full(p, float(self.n_subjects - p))
        else:
            vcov, dfs = self.vcov, self.df
        method = df_method if se != "empirical" or df_method == "normal" else "residual"
        if df_method == "normal":
            dfs = np.full(p, np.nan)

        def num(x):
            x = float(x)
            return x if math.isfinite(x) else None

        sd = {g: np.sqrt(np.diag(S)) for g, S in self.sigma.items()}
        return {
            "fixed": {
                n: {"estimate": num(b), "se": num(math.sqrt(vcov[j, j])), "df": num(dfs[j]), "df_method": method}
                for j, (n, b) in enumerate(zip(self.names, self.beta, strict=True))
            },
            "df_method": method,
            "se_type": se,
            "random": None,
            "residual_variance": None,
            "covariance": {
                "structure": self.structure,
                "visits": self.visits,
                "groups": self.groups,
                "parameters": [
                    {"group": g, "label": lab, "estimate": num(v)}
                    for g, lab, v in zip(self.theta_groups, self.theta_labels, self.theta, strict=True)
                ],
                "matrix": {g: [[num(v) for v in row] for row in S] for g, S in self.sigma.items()},
                "correlation": {
                    g: [[num(v) for v in row] for row in S / np.outer(sd[g], sd[g])] for g, S in self.sigma.items()
                },
            },
            "loglik": num(self.loglik),
            "m2loglik": num(self.m2loglik),
            "aic": num(self.aic()),
            "nobs": int(self.n_obs),
            "ngroups": int(self.n_subjects),
            "method": "REML" if self.reml else "ML",
            "converged": bool(self.converged),
            "singular": not self.hessian_pd,
            "engine": "ketastats mmrm",
            "optimizer": f"Newton ({self.iterations} iterations)",
            "formula": formula,
            "re_formula": None,
            "aliased": list(self.aliased),
            "messages": [] if self.converged else [self.message],
        }

    def aic(self) -> float:
        """SAS's AIC: -2 l + 2 (covariance parameters) under REML, + fixed effects too under ML."""
        k = self.n_theta + (0 if self.reml else self.beta.size)
        return self.m2loglik + 2.0 * k

    # -- Satterthwaite ------------------------------------------------------------------------

    def _grad_var(self, L: np.ndarray, Phi: np.ndarray | None = None) -> np.ndarray:
        """d(L Phi L')/dtheta_r for a (m, p) contrast matrix: (q, m, m)."""
        Phi = self.vcov if Phi is None else Phi
        LP = L @ Phi
        return -np.einsum("ia,rab,jb->rij", LP, self._ev.P, LP)

    def satterthwaite_df(self, L) -> float:
        """Satterthwaite df of one contrast ``l'beta`` (``L`` a length-p vector)."""
        L = np.atleast_2d(np.asarray(L, dtype=float))
        v = float((L @ self.vcov @ L.T)[0, 0])
        g = self._grad_var(L)[:, 0, 0]
        denom = float(g @ self.cov_theta @ g)
        if not np.isfinite(denom) or denom <= 0:
            return math.inf
        return 2.0 * v * v / denom

    def contrast(self, L, *, method: str = "satterthwaite", alpha: float = 0.05) -> dict:
        """Estimate, SE, df, t, p and CI of ``l'beta`` (``method``: satterthwaite, kenward_roger,
        kenward_roger_observed, empirical, normal)."""
        L = np.asarray(L, dtype=float).ravel()
        est = float(L @ self.beta)
        if method == "satterthwaite":
            se = math.sqrt(float(L @ self.vcov @ L))
            df = self.satterthwaite_df(L)
        elif method in ("kenward_roger", "kenward_roger_observed"):
            kr = self.kenward_roger("expected" if method == "kenward_roger" else "observed")
            se = math.sqrt(float(L @ kr["vcov"] @ L))
            df = kr_df(kr, L[None, :])
        elif method == "empirical":
            V = self.empirical_vcov()
            se = math.sqrt(float(L @ V @ L))
            df = float(self.n_subjects - self.beta.size)
        elif method == "normal":
            se = math.sqrt(float(L @ self.vcov @ L))
            df = math.inf
        else:
            raise ValueError(f"unknown method {method!r}")
        t = est / se if se > 0 else math.nan
        dist = stats.norm if not np.isfinite(df) else stats.t(df)
        p = float(2.0 * dist.sf(abs(t)))
        crit = float(dist.ppf(1.0 - alpha / 2.0))
        return {"estimate": est, "se": se, "df": df, "t": t, "p": p,
                "ci_low": est - crit * se, "ci_high": est + crit * se}

    def f_test(self, L, *, method: str = "satterthwaite") -> dict:
        """Multi-row contrast F test (SAS's Type 3 style): Satterthwaite by the eigenvalue method
        (Fai & Cornelius 1996, as SAS and mmrm), or Kenward-Roger's scaled F."""
        L = np.atleast_2d(np.asarray(L, dtype=float))
        m = L.shape[0]
        if method in ("kenward_roger", "kenward_roger_observed"):
            kr = self.kenward_roger("expected" if method == "kenward_roger" else "observed")
            return kr_f_test(kr, L, self.beta)
        V = L @ self.vcov @ L.T
        Lb = L @ self.beta
        F = float(Lb @ np.linalg.solve(V, Lb)) / m
        lam, E = np.linalg.eigh(V)
        Ls = E.T @ L
        nus = np.array([self.satterthwaite_df(row) for row in Ls])
        big = nus > 2
        Esum = float(np.sum(nus[big] / (nus[big] - 2.0))) + 0.0
        if np.all(big) and Esum > m:
            ddf = 2.0 * Esum / (Esum - m)
        else:
            ddf = math.inf if not np.any(nus <= 2) else float(np.min(nus))
        p = float(stats.f.sf(F, m, ddf)) if np.isfinite(ddf) else float(stats.chi2.sf(F * m, m))
        return {"F": F, "num_df": m, "den_df": ddf, "p": p}

    # -- Kenward-Roger ------------------------------------------------------------------------

    def kenward_roger(self, information: str = "expected") -> dict:
        """Kenward-Roger adjusted covariance of beta (``vcov``) and what its df need.

        ``information="expected"``: ``W`` the inverse expected information (Kenward & Roger 1997,
        pbkrtest); ``"observed"``: the inverse observed information (SAS's default after its
        first iterations, R mmrm's ``Kenward-Roger``). The second-derivative term ``R_rs`` is
        included (zero for the linear structures ``us`` and ``cs``)."""
        ev = self._ev
        if ev.Q is None:
            ev = self._ev = self._prob.evaluate(self.theta, order=2, inference=True)
        Phi = self.vcov
        Pm, Qm, Rm = ev.P, ev.Q, ev.R
        if information == "expected":
            PhiP = np.einsum("ab,rbc->rac", Phi, Pm)
            info = ev.trace_rs - 2.0 * np.einsum("pq,rsqp->rs", Phi, Qm) if self.reml else ev.trace_rs.copy()
            if self.reml:
                info = info + np.einsum("rab,sba->rs", PhiP, PhiP)
            info = 0.5 * (info + info.T)
            W = 2.0 * np.linalg.inv(info)
        elif information == "observed":
            W = self.cov_theta
        else:
            raise ValueError("information is 'expected' or 'observed'")
        PPhiP = np.einsum("rab,bc,scd->rsad", Pm, Phi, Pm)
        inner = np.einsum("rs,rsab->ab", W, Qm - PPhiP - 0.25 * Rm)
        Lam = Phi @ inner @ Phi
        PhiA = Phi + 2.0 * Lam
        PhiA = 0.5 * (PhiA + PhiA.T)
        return {"vcov": PhiA, "Phi": Phi, "P": Pm, "W": W, "information": information}

    def kenward_roger_df(self, information: str = "expected") -> np.ndarray:
        kr = self.kenward_roger(information)
        p = self.beta.size
        return np.array([kr_df(kr, np.eye(p)[j][None, :]) for j in range(p)])

    # -- empirical ----------------------------------------------------------------------------

    def empirical_vcov(self) -> np.ndarray:
        """Sandwich ``Phi (sum_i X_i'W_i r_i r_i'W_i X_i) Phi`` (CR0, R mmrm's "Empirical")."""
        p = self.beta.size
        meat = np.zeros((p, p))
        for P, W in zip(self._prob.patterns, self._ev.W, strict=True):
            Rr = P.Y - P.X @ self.beta  # (n, k)
            WR = Rr @ W
            Uu = np.einsum("nkp,nk->np", P.X, WR)
            meat += Uu.T @ Uu
        Phi = self.vcov
        return Phi @ meat @ Phi


def kr_df(kr: dict, L: np.ndarray) -> float:
    """Kenward-Roger denominator df for the contrast rows ``L`` (pbkrtest's ``.KR_adjust``)."""
    return kr_f_test(kr, L, None)["den_df"]


def kr_f_test(kr: dict, L: np.ndarray, beta) -> dict:
    L = np.atleast_2d(L)
    Phi, PhiA, Pm, W = kr["Phi"], kr["vcov"], kr["P"], kr["W"]
    q = np.linalg.matrix_rank(L)
    Theta = L.T @ np.linalg.solve(L @ Phi @ L.T, L)
    TP = Theta @ Phi
    U = np.einsum("ab,rbc,cd->rad", TP, Pm, Phi)
    tr = np.einsum("raa->r", U)
    A1 = float(np.einsum("rs,r,s->", W, tr, tr))
    A2 = float(np.einsum("rs,rab,sba->", W, U, U))
    B = (A1 + 6.0 * A2) / (2.0 * q)
    g = ((q + 1.0) * A1 - (q + 4.0) * A2) / ((q + 2.0) * A2)
    den = 3.0 * q + 2.0 * (1.0 - g)
    c1, c2, c3 = g / den, (q - g) / den, (q + 2.0 - g) / den
    V0, V1, V2 = 1.0 + c1 * B, 1.0 - c2 * B, 1.0 - c3 * B
    V0 = 0.0 if abs(V0) < 1e-10 else V0
    rho = ((1.0 - A2 / q) / V1) ** 2 * V0 / V2 / q if V1 != 0 else 0.0
    df2 = 4.0 + (q + 2.0) / (q * rho - 1.0)
    out = {"den_df": df2, "num_df": q}
    if beta is not None:
        Lb = L @ beta
        Fstat = float(Lb @ np.linalg.solve(L @ PhiA @ L.T, Lb)) / q
        scale = 1.0 if abs(df2 - 2.0) < 1e-2 else df2 * (1.0 - A2 / q) / (df2 - 2.0)
        out.update(F=Fstat * scale, F_unscaled=Fstat, scale=scale, p=float(stats.f.sf(Fstat * scale, q, df2)))
    return out


# ---------------------------------------------------------------------------------------------
# the fit
# ---------------------------------------------------------------------------------------------


def _factorize(values) -> tuple[np.ndarray, list]:
    codes, uniques = _pd_factorize(values)
    return codes, list(uniques)


def _pd_factorize(values):
    import pandas as pd

    codes, uniques = pd.factorize(pd.Series(values), sort=True)
    if np.any(codes < 0):
        raise ModelError("missing values in a grouping column (subject, visit or group)")
    return codes, uniques


def _full_rank_columns(X: np.ndarray, tol: float = 1e-7) -> np.ndarray:
    """Columns kept, in order, dropping each one that earlier columns span (as lm's pivoting): column j is
    aliased when |R_jj| of the QR decomposition is below ``tol`` times its norm."""
    scale = np.sqrt(np.sum(X * X, axis=0))
    R = np.linalg.qr(X / np.where(scale > 0, scale, 1.0), mode="r")
    d = np.abs(np.diag(R))
    keep = [j for j in range(X.shape[1]) if scale[j] > 0 and d[j] > tol]
    if len(keep) < X.shape[1]:  # re-check the kept set: a dropped column changes nothing before it
        Xk = X[:, keep] / scale[keep]
        dk = np.abs(np.diag(np.linalg.qr(Xk, mode="r")))
        keep = [c for c, v in zip(keep, dk, strict=True) if v > tol]
    return np.array(keep, dtype=int)


def _ols(patterns, p):
    """Ordinary least squares from the pattern sums."""
    A = np.zeros((p, p))
    b = np.zeros(p)
    for P in patterns:
        A += np.einsum("aapq->pq", P.SXX)
        b += np.einsum("aap->p", P.SXy)
    return np.linalg.solve(A, b)


def _start_covariance(patterns, beta, T, n_groups, pd_floor=1e-6):
    """Per group, pairwise-available covariance of OLS residuals, made positive definite."""
    out = []
    for g in range(n_groups):
        S = np.zeros((T, T))
        N = np.zeros((T, T))
        for P in patterns:
            if P.group != g:
                continue
            Rr = P.Y - P.X @ beta
            ix = np.ix_(P.visits, P.visits)
            S[ix] += Rr.T @ Rr
            N[ix] += P.n
        with np.errstate(invalid="ignore", divide="ignore"):
            S = np.where(N > 0, S / np.maximum(N, 1), 0.0)
        d = np.diag(S).copy()
        d[d <= 0] = max(float(np.mean(d[d > 0])) if np.any(d > 0) else 1.0, 1e-8)
        np.fill_diagonal(S, d)
        lam, V = np.linalg.eigh(S)
        lam = np.maximum(lam, pd_floor * float(np.max(lam)) + 0.05 * float(np.mean(d)) * (lam < 0))
        out.append((V * lam) @ V.T)
    return out


def fit_mmrm(
    y,
    X,
    subject,
    visit,
    *,
    covariance: str = "us",
    group=None,
    reml: bool = True,
    names=None,
    visit_levels=None,
    start=None,
) -> MMRMResult:
    """Fit an MMRM by REML (default) or ML.

    Parameters
    ----------
    y : (n,) response, finite (drop missing rows first).
    X : (n, p) fixed-effect design (an intercept column included by you); aliased columns are
        dropped (listed in ``aliased``), as SAS and R do.
    subject : (n,) patient labels.
    visit : (n,) visit labels; the visit levels in order are ``visit_levels`` if given, else the
        sorted unique values. At most one row per patient and visit.
    covariance : one of :data:`STRUCTURES`.
    group : optional (n,) labels, constant within patient: one covariance per level.
    reml : REML or ML.
    names : column names of ``X``.
    start : optional start for ``theta`` (SAS parametrization, all groups concatenated).
    """
    y = np.asarray(y, dtype=float).ravel()
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[0] != y.size:
        raise ModelError("X must be an (n, p) matrix with one row per response value")
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(X))):
        raise ModelError("missing or non-finite values in the response or the design")
    names = list(names) if names is not None else [f"x{j}" for j in range(X.shape[1])]
    subj_codes, subj_levels = _factorize(subject)
    if visit_levels is not None:
        lv = list(visit_levels)
        lookup = {v: k for k, v in enumerate(lv)}
        try:
            vis_codes = np.array([lookup[v] for v in np.asarray(visit, dtype=object)], dtype=int)
        except KeyError as exc:
            raise ModelError(f"visit value {exc.args[0]!r} is not among the visit levels") from None
        vis_levels = lv
    else:
        vis_codes, vis_levels = _factorize(visit)
    T = len(vis_levels)
    n_subj = len(subj_levels)
    if group is None:
        group_subj = np.zeros(n_subj, dtype=int)
        group_levels = ["all"]
    else:
        gcodes, group_levels = _factorize(group)
        group_subj = np.full(n_subj, -1)
        group_subj[subj_codes] = gcodes
        if np.any(group_subj[subj_codes] != gcodes):
            raise ModelError("the covariance group must be constant within a patient")
        group_levels = [str(g) for g in group_levels]
    keep = _full_rank_columns(X)
    aliased = [names[j] for j in range(X.shape[1]) if j not in set(keep)]
    X = X[:, keep]
    names = [names[j] for j in keep]
    n, p = X.shape
    if n <= p:
        raise ModelError("fewer observations than fixed effects")
    structure = make_structure(covariance, T)
    patterns = _patterns(y, X, subj_codes, vis_codes, group_subj, T)
    G = len(group_levels)
    prob = _Problem(patterns, structure, G, n, p, reml)
    if prob.q >= n - (p if reml else 0):
        raise ModelError(f"{prob.q} covariance parameters need more than {n} observations")
    kinds = np.array(structure.kinds * G)
    # start
    beta_ols = _ols(patterns, p)
    if start is None:
        S0 = _start_covariance(patterns, beta_ols, T, G)
        theta0 = np.concatenate([structure.start(S) for S in S0])
    else:
        theta0 = np.asarray(start, dtype=float)
    phi0 = _to_free(kinds, theta0)
    try:
        prob.evaluate(_to_natural(kinds, phi0))
    except _NotPD:
        # a diagonal start is always positive definite
        S0 = [np.diag(np.diag(S)) for S in _start_covariance(patterns, beta_ols, T, G)]
        theta0 = np.concatenate([structure.start(S) for S in S0])
        phi0 = _to_free(kinds, theta0)
    phi, ev, iters, ok = _newton(prob, kinds, phi0)
    message = "Newton converged" if ok else "Newton stalled"
    if not ok:
        phi_b = _bfgs(prob, kinds, phi)
        phi2, ev2, it2, ok2 = _newton(prob, kinds, phi_b)
        if ev2.f <= ev.f + 1e-9 or ok2:
            phi, ev, ok = phi2, ev2, ok2
            iters += it2
            message = "BFGS then Newton " + ("converged" if ok2 else "stalled")
    theta = _to_natural(kinds, phi)
    H = ev.hess
    try:
        np.linalg.cholesky(H)
        hess_pd = True
        cov_theta = 2.0 * np.linalg.inv(H)
    except np.linalg.LinAlgError:
        hess_pd = False
        cov_theta = 2.0 * np.linalg.pinv(H)
    res = MMRMResult(
        names=names,
        beta=ev.beta,
        vcov=ev.Phi,
        df=np.zeros(p),
        aliased=aliased,
        structure=covariance,
        groups=group_levels,
        visits=[str(v) for v in vis_levels],
        theta=theta,
        theta_labels=list(structure.labels) * G,
        theta_groups=[g for g in group_levels for _ in range(structure.q)],
        cov_theta=cov_theta,
        sigma={g: structure.sigma(theta[i * structure.q : (i + 1) * structure.q]) for i, g in enumerate(group_levels)},
        m2loglik=ev.f,
        reml=reml,
        n_obs=n,
        n_subjects=n_subj,
        n_patterns=len(patterns),
        converged=bool(ok and hess_pd),
        iterations=iters,
        message=message if hess_pd else message + "; Hessian of the covariance parameters not positive definite",
        hessian_pd=hess_pd,
        _prob=prob,
        _ev=ev,
    )
    res.df = np.array([res.satterthwaite_df(np.eye(p)[j]) for j in range(p)])
    return res


def mmrm_design(
    data,
    formula: str,
    *,
    subject: str,
    visit: str,
    group: str | None = None,
    visit_levels=None,
    references=None,
    return_rows: bool = False,
):
    """Rows with a response and every model variable, and the patsy design of ``formula``.

    ``references`` maps a categorical column to its reference level (treatment coding).
    Returns ``(y, X, names, subject values, visit values, group values or None)``, and with ``return_rows``
    the rows of ``data`` used as a seventh item.
    """
    import pandas as pd
    import patsy

    df = pd.DataFrame(data)
    for col, level in (references or {}).items():
        if col not in df.columns:
            raise ModelError(f"reference column {col!r} is not in the data")
        levels = [v for v in pd.unique(df[col].dropna())]
        match = [v for v in levels if str(v) == str(level)]
        if not match:
            raise ModelError(f"{col}: reference level {level!r} not found (levels: {', '.join(map(str, levels))})")
        rest = sorted((v for v in levels if v is not match[0]), key=str)
        df[col] = pd.Categorical(df[col], categories=[match[0], *rest])
    missing = [c for c in [subject, visit] + ([group] if group else []) if c not in df.columns]
    if missing:
        raise ModelError(f"column {missing[0]!r} is not in the data; columns are: {', '.join(map(str, df.columns))}")
    try:
        y_df, X_df = patsy.dmatrices(formula, df, return_type="dataframe", NA_action="drop")
    except patsy.PatsyError as exc:
        raise ModelError(f"formula {formula!r}: {str(exc).splitlines()[0]}") from None
    rows = y_df.index
    sub = df.loc[rows]
    need = [subject, visit] + ([group] if group else [])
    ok = sub[need].notna().all(axis=1).to_numpy()
    rows = rows[ok]
    sub = sub.loc[rows]
    out = (
        y_df.loc[rows].iloc[:, 0].to_numpy(float),
        X_df.loc[rows].to_numpy(float),
        list(X_df.columns),
        sub[subject].to_numpy(),
        sub[visit].to_numpy(),
        sub[group].to_numpy() if group else None,
    )
    return (*out, sub) if return_rows else out
