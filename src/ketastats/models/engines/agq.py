"""Adaptive Gauss-Hermite quadrature for random-intercept models, with exact derivatives.

The models of :mod:`ketastats.models.engines.logistic_glmm` (logistic) and :mod:`ketastats.models.engines.tobit`
(left-censored normal) share one structure: patient ``i`` contributes

    L_i(theta) = int f_i(b; theta) db,   log f_i(b) = sum_j l(eta_ij + b; psi) + log phi(b; 0, tau^2),

with ``eta = X beta``, row parameters ``psi`` (the log residual SD of the censored model; none
for the logistic model) and ``theta = (beta, psi, log tau)``. Adaptive Gauss-Hermite
quadrature (Liu & Pierce 1994; Pinheiro & Bates 1995) centres the nodes at the mode ``b_i``
of ``log f_i`` and scales them by ``s_i = (-h_i)^(-1/2)``, ``h_i`` the curvature there:

    log L_i ~ log(sqrt(2) s_i) + logsumexp_k [log w_k + x_k^2 + log f_i(b_i + sqrt(2) s_i x_k)].

One node is the Laplace approximation; more nodes converge to the exact integral, and how many
are enough depends on the patient: a near-Gaussian integrand (all values observed) is exact
with one node, a skewed one (several values below a detection limit, or a patient who never
responds, with a wide random-intercept distribution) can need a hundred. The nodes are
therefore chosen by accuracy, per patient (:func:`choose_nodes`): starting at 10, a patient's
nodes are raised along :data:`AGQ_LADDER` until that patient's log-likelihood at the optimum
moves by less than :func:`agq_tolerance` (1e-8 shared out over the patients, 1e-10 each above
100 patients) from one rung to the next; the model is refitted with them and the check is
repeated at the new optimum. The whole log-likelihood then moves by less than 1e-8 (1e-10 per
patient) when every patient gets more nodes. The nodes used and the move measured are recorded
(:func:`quadrature_record`). A fixed number of nodes (``n_agq`` a number) is used as given, as
``glmer(nAGQ = n)`` does, and its accuracy is recorded all the same.

Derivatives. The gradient is that of the quadrature formula itself, nodes included: with
``pi_ik`` the normalised node weights, ``q(b) = d log f / db``, ``A_i = d^2 log f/(d theta db)``,
``C_i = d^3 log f/(d theta db^2)`` and ``D_i = d^3 log f/db^3`` at the mode, the mode moves by
``db_i = -A_i / h_i`` and the curvature by ``dh_i = C_i + D_i db_i`` (implicit function
theorem), so that

    d log L_i = kappa_i dh_i + S0_i db_i + sum_k pi_ik d_theta log f_i(b_ik),
    kappa_i = s_i^2/2 + S1_i s_i^3/2,  S0_i = sum_k pi_ik q(b_ik),  S1_i = sum_k pi_ik q(b_ik) sqrt(2) x_k.

It is exact for every number of nodes (Laplace included), so optimizers get the true gradient
and the Hessian, taken by central differences of this gradient (:func:`central_hessian`), is
accurate to about 1e-8 relative: standard errors and the positive-definiteness check do not
depend on the step size.

References
----------
Liu, Q., & Pierce, D. A. (1994). A note on Gauss-Hermite quadrature. *Biometrika*, 81(3),
624-629.

Pinheiro, J. C., & Bates, D. M. (1995). Approximations to the log-likelihood function in the
nonlinear mixed-effects model. *Journal of Computational and Graphical Statistics*, 4(1),
12-35.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, special

from .derivatives import central_hessian, newton_polish

__all__ = [
    "AGQ_LADDER",
    "AGQ_START",
    "AGQ_TOL",
    "RandomInterceptAGQ",
    "RowFunction",
    "AGQFit",
    "agq_tolerance",
    "beta_covariance",
    "choose_nodes",
    "fit_agq",
    "next_rung",
    "quadrature_record",
    "quadrature_words",
    "log_ndtr_ratio",
    "node_moves",
]

_LOG_2PI = float(np.log(2 * np.pi))
_SQRT2 = float(np.sqrt(2.0))

#: numbers of nodes tried in turn when the points are chosen by accuracy
AGQ_LADDER: tuple[int, ...] = (10, 15, 20, 25, 30, 40, 50, 60, 80, 100, 120, 150, 200, 250, 300)
#: the first rung: the fit starts here
AGQ_START: int = AGQ_LADDER[0]
#: largest move of the log-likelihood at the optimum, from one rung to the next, that is accepted
AGQ_TOL: float = 1e-8

#: ``rows(u, psi, what, idx)`` -> dict of per-row derivatives of ``l(u; psi)`` (see RandomInterceptAGQ)
RowFunction = Callable[[np.ndarray, np.ndarray, str, "np.ndarray | None"], dict[str, np.ndarray]]


@dataclass
class _Quad:
    """Quadrature at one parameter value: log-likelihood, gradient (or None), modes, per patient."""

    loglik: float
    grad: np.ndarray | None
    modes: np.ndarray
    per: np.ndarray


@functools.lru_cache(maxsize=64)
def _gauss_hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and log weights of the ``n``-point Gauss-Hermite rule (nodes with weight 0 dropped)."""
    x, w = np.polynomial.hermite.hermgauss(n)
    keep = w > 0
    return x[keep], np.log(w[keep])


class RandomInterceptAGQ:
    """Marginal log-likelihood of a random-intercept model and its exact gradient.

    Parameters
    ----------
    X : numpy.ndarray
        Fixed-effects design (n x p).
    groups : array
        Patient of each row.
    rows : callable
        ``rows(u, psi, what, idx)`` with ``u`` the linear predictor including the random
        intercept for the rows ``idx`` (None: all rows) and ``psi`` the row parameters; returns
        a dict holding, per row, for ``what``: ``"mode"``: ``l1, l2`` (first and second
        derivative in ``u``); ``"node"``: ``l``; ``"node_grad"``: ``l, l1, lp`` (``lp``: the
        derivative in each row parameter, shape (r, rows)); ``"mode_grad"``: ``l2, l3, lp1,
        lp2`` (``lp1``, ``lp2``: the derivative in each row parameter of ``l1`` and ``l2``).
    n_row_params : int
        Number of row parameters ``r``.

    Notes
    -----
    The parameter vector is ``theta = (beta, psi, log tau)``. The nodes may differ between
    patients (``nodes`` an array, one number per patient in the order of ``labels``). Below
    ``tau = 1e-8`` the random intercept is taken as absent (the boundary of the parameter
    space).
    """

    def __init__(self, X: np.ndarray, groups: np.ndarray, rows: RowFunction, n_row_params: int = 0):
        self.X = np.asarray(X, float)
        self.labels, g = np.unique(np.asarray(groups), return_inverse=True)
        self.g = g.astype(np.intp)
        self.m = len(self.labels)
        self.p = self.X.shape[1]
        self.r = int(n_row_params)
        self.rows = rows
        self._b: np.ndarray | None = None  # warm start of the modes (last value found)
        self._levels_cache: dict[bytes, list] = {}

    @property
    def k(self) -> int:
        """Number of parameters."""
        return self.p + self.r + 1

    def _sum(self, v: np.ndarray) -> np.ndarray:
        return np.bincount(self.g, v, self.m)

    def modes(self, eta: np.ndarray, psi: np.ndarray, tau: float) -> np.ndarray:
        """Mode of each patient's integrand (damped Newton; the integrands are log-concave)."""
        b = np.zeros(self.m) if self._b is None else self._b.copy()
        t2 = tau**2
        for _ in range(200):
            d = self.rows(eta + b[self.g], psi, "mode", None)
            grad = self._sum(d["l1"]) - b / t2
            hess = self._sum(d["l2"]) - 1 / t2
            step = np.clip(grad / hess, -1.0, 1.0)
            b = b - step
            if np.max(np.abs(step)) < 1e-11:
                break
        self._b = b
        return b

    def _levels(self, nodes: np.ndarray) -> list:
        """``(n, rows, patients, local group)`` per distinct number of nodes (0 = left out)."""
        key = nodes.tobytes()
        if key not in self._levels_cache:
            levels = []
            if nodes.min() == nodes.max() and nodes[0] > 0:
                levels.append((int(nodes[0]), None, None, self.g))
            else:
                for n in np.unique(nodes[nodes > 0]):
                    pats = np.flatnonzero(nodes == n)
                    rows = np.flatnonzero(nodes[self.g] == n)
                    levels.append((int(n), rows, pats, np.searchsorted(pats, self.g[rows])))
            if len(self._levels_cache) > 32:
                self._levels_cache.clear()
            self._levels_cache[key] = levels
        return self._levels_cache[key]

    def nodes_vector(self, nodes: int | np.ndarray) -> np.ndarray:
        """Nodes per patient from a number or an array."""
        if np.ndim(nodes) == 0:
            return np.full(self.m, int(nodes), dtype=np.intp)
        return np.asarray(nodes, dtype=np.intp)

    def evaluate(self, theta: np.ndarray, nodes: int | np.ndarray, *, grad: bool = False) -> _Quad:
        """Log-likelihood by adaptive Gauss-Hermite quadrature (and its exact gradient).

        ``nodes``: one number for every patient, or one per patient (0 leaves the patient out
        of the sum; ``per`` is then NaN there).
        """
        theta = np.asarray(theta, float)
        p, r, g, m = self.p, self.r, self.g, self.m
        beta, psi, tau = theta[:p], theta[p : p + r], float(np.exp(theta[-1]))
        nvec = self.nodes_vector(nodes)
        eta = self.X @ beta
        if tau <= 1e-8:  # boundary: no random intercept
            d = self.rows(eta, psi, "node_grad", None)
            per = np.where(nvec > 0, self._sum(d["l"]), np.nan)
            gr = None
            if grad:
                gr = np.r_[self.X.T @ d["l1"], np.sum(d["lp"], axis=1), 0.0]
            return _Quad(float(np.nansum(per)), gr, np.zeros(m), per)
        b = self.modes(eta, psi, tau)
        t2 = tau**2
        dm = self.rows(eta + b[g], psi, "mode_grad", None)
        h = self._sum(dm["l2"]) - 1 / t2
        s = 1 / np.sqrt(-h)
        per = np.full(m, np.nan)
        if grad:
            e_l1, e_lp = np.empty(len(g)), np.empty((r, len(g)))
            s0, s1, e_nu = np.empty(m), np.empty(m), np.empty(m)
        for n, rows, pats, gl in self._levels(nvec):
            if rows is None:
                out = self._nodes(n, eta, b, s, tau, psi, gl, None, grad)
                per[:] = out[0]
                if grad:
                    e_l1[:], e_lp[:], s0[:], s1[:], e_nu[:] = out[1:]
            else:
                out = self._nodes(n, eta[rows], b[pats], s[pats], tau, psi, gl, rows, grad)
                per[pats] = out[0]
                if grad:
                    e_l1[rows], e_lp[:, rows], s0[pats], s1[pats], e_nu[pats] = out[1:]
        ll = float(np.nansum(per))
        if not grad:
            return _Quad(ll, None, b, per)
        if np.any(nvec <= 0):
            raise ValueError("the gradient needs nodes for every patient")
        d3 = self._sum(dm["l3"])
        kappa = s**2 / 2 + s1 * s**3 / 2
        alpha = -(kappa * d3 + s0) / h
        v = e_l1 + alpha[g] * dm["l2"] + kappa[g] * dm["l3"]
        g_beta = self.X.T @ v
        g_psi = np.sum(e_lp + alpha[g] * dm["lp1"] + kappa[g] * dm["lp2"], axis=1)
        g_nu = float(np.sum(e_nu + alpha * 2 * b / t2 + kappa * 2 / t2))
        return _Quad(ll, np.r_[g_beta, g_psi, g_nu], b, per)

    def _nodes(self, n, eta, b, s, tau, psi, g, idx, grad):
        """The quadrature over ``n`` nodes for some patients (``idx``: their rows, None = all).

        The node terms are combined as they come (a streaming log-sum-exp), so no array of
        nodes x rows is held.
        """
        m = len(b)
        t2 = tau**2
        x, logw = _gauss_hermite(n)
        M = np.full(m, -np.inf)
        S = np.zeros(m)
        if grad:
            a_l1 = np.zeros(len(g))
            a_lp = np.zeros((self.r, len(g)))
            q0, q1, qn = np.zeros(m), np.zeros(m), np.zeros(m)
        for xk, lwk in zip(x, logw):
            bk = b + _SQRT2 * s * xk
            d = self.rows(eta + bk[g], psi, "node_grad" if grad else "node", idx)
            logf = np.bincount(g, d["l"], m) - 0.5 * bk**2 / t2 - np.log(tau) - 0.5 * _LOG_2PI
            t = lwk + xk**2 + logf
            new_m = np.maximum(M, t)
            old = np.exp(M - new_m)  # rescales what was accumulated (0 at the first node)
            now = np.exp(t - new_m)
            S = S * old + now
            if grad:
                old_r, now_r = old[g], now[g]
                a_l1 = a_l1 * old_r + now_r * d["l1"]
                a_lp = a_lp * old_r + now_r * d["lp"]
                q = np.bincount(g, d["l1"], m) - bk / t2  # d log f / db at the node
                q0 = q0 * old + now * q
                q1 = q1 * old + now * q * _SQRT2 * xk
                qn = qn * old + now * (bk**2 / t2 - 1)
            M = new_m
        per = np.log(_SQRT2 * s) + M + np.log(S)
        if not grad:
            return (per,)
        return per, a_l1 / S[g], a_lp / S[g], q0 / S, q1 / S, qn / S

    def loglik(self, theta: np.ndarray, nodes: int | np.ndarray) -> float:
        """The log-likelihood alone (``-inf`` where it cannot be evaluated)."""
        with np.errstate(all="ignore"):
            ll = self.evaluate(theta, nodes).loglik
        return ll if np.isfinite(ll) else -np.inf

    def gradient(self, theta: np.ndarray, nodes: int | np.ndarray) -> np.ndarray:
        """Exact gradient of the quadrature log-likelihood."""
        with np.errstate(all="ignore"):
            out = self.evaluate(theta, nodes, grad=True).grad
        assert out is not None
        return out


def next_rung(nodes: np.ndarray) -> np.ndarray:
    """Per patient, the next number of nodes on :data:`AGQ_LADDER` (0 at the top).

    >>> next_rung(np.array([1, 10, 150, 300])).tolist()
    [10, 15, 200, 0]
    """
    ladder = np.asarray(AGQ_LADDER)
    pos = np.searchsorted(ladder, nodes, side="right")
    return np.where(pos < len(ladder), ladder[np.minimum(pos, len(ladder) - 1)], 0)


def agq_tolerance(n_groups: int) -> float:
    """Accepted move per patient: :data:`AGQ_TOL` shared out over the patients, at least 1e-10.

    The move of the whole log-likelihood is then below 1e-8, or 1e-10 per patient above 100
    patients.
    """
    return AGQ_TOL / max(n_groups, 1) if n_groups < 100 else AGQ_TOL / 100


def node_moves(problem: RandomInterceptAGQ, theta: np.ndarray, nodes: np.ndarray, which: np.ndarray):
    """Per patient (where ``which``): log-likelihood with one rung more nodes minus with ``nodes``.

    Returns the moves (NaN elsewhere and at the top rung) and the next rung.
    """
    up = next_rung(nodes)
    test = which & (up > 0)
    move = np.full(problem.m, np.nan)
    if test.any():
        with np.errstate(all="ignore"):
            cur = problem.evaluate(theta, np.where(test, nodes, 0)).per
            nxt = problem.evaluate(theta, np.where(test, up, 0)).per
        move[test] = (nxt - cur)[test]
    return move, up


def choose_nodes(problem: RandomInterceptAGQ, theta: np.ndarray, nodes: np.ndarray, tol: float) -> np.ndarray:
    """Raise each patient's nodes rung by rung until its log-likelihood moves by less than ``tol``.

    The moves are measured at ``theta`` (the optimum found with ``nodes``); a patient whose
    contribution moves by ``tol`` or more gets the next rung and is measured again there.

    Examples
    --------
    A patient whose quadrature error halves with every rung needs 40 nodes for 1e-9; one whose
    integrand is Gaussian needs no more than the first rung:

    >>> class P:
    ...     m = 2
    ...     def evaluate(self, theta, nodes):
    ...         err = np.where(np.arange(2) == 0, 2.0 ** -nodes.astype(float), 0.0)
    ...         return _Quad(0.0, None, np.zeros(2), np.where(nodes > 0, -1.0 - err, np.nan))
    >>> choose_nodes(P(), np.zeros(1), np.array([10, 10]), 1e-9).tolist()
    [30, 10]
    """
    nodes = nodes.copy()
    active = np.ones(problem.m, bool)
    while active.any():
        move, up = node_moves(problem, theta, nodes, active)
        active = np.isfinite(move) & ~(np.abs(move) < tol)
        nodes = np.where(active, up, nodes)
    return nodes


@dataclass
class AGQFit:
    """The outcome of :func:`fit_agq`."""

    theta: np.ndarray  # (beta, psi, log tau) at the optimum
    hessian: np.ndarray  # Hessian of the log-likelihood in theta there
    hessian_pd: bool  # negative Hessian positive definite
    loglik: float
    modes: np.ndarray  # modes of the random intercepts (BLUP-like), in problem.labels order
    nodes: np.ndarray  # nodes per patient
    quadrature: dict[str, Any]
    grad_max: float
    outcome: Any  # robust.RetryOutcome

    @property
    def n_agq(self) -> int:
        """The largest number of nodes any patient had."""
        return int(self.nodes.max())


def quadrature_record(
    problem: RandomInterceptAGQ, theta: np.ndarray, nodes: np.ndarray, *, auto: bool, tol: float
) -> dict[str, Any]:
    """What the model JSON says about the quadrature: points, rule and the accuracy reached.

    ``loglik_change`` is the move of the log-likelihood at the optimum when every patient gets
    one rung more nodes; ``largest_patient_change`` the largest move of one patient's
    contribution; ``accurate`` whether every patient's move is below ``tolerance_per_patient``
    (a patient at the top rung counts as not settled).
    """
    move, _ = node_moves(problem, theta, nodes, np.ones(problem.m, bool))
    finite = np.isfinite(move)
    return {
        "method": "adaptive Gauss-Hermite",
        "rule": "accuracy" if auto else "fixed",
        "min_points": int(nodes.min()),
        "max_points": int(nodes.max()),
        "tolerance_per_patient": float(tol),
        "loglik_change": float(np.sum(move[finite])) if finite.any() else None,
        "largest_patient_change": float(np.max(np.abs(move[finite]))) if finite.any() else None,
        "accurate": bool(finite.all() and np.all(np.abs(move) < tol)),
    }


def quadrature_words(record: dict[str, Any]) -> str:
    """The quadrature in words, for a model's ``method``.

    >>> quadrature_words({"rule": "accuracy", "min_points": 10, "max_points": 40})
    'adaptive Gauss-Hermite, 10 to 40 nodes per patient, chosen by accuracy'
    >>> quadrature_words({"rule": "fixed", "min_points": 10, "max_points": 10})
    'adaptive Gauss-Hermite, 10 nodes'
    """
    lo, hi = record["min_points"], record["max_points"]
    nodes = f"{lo} nodes" if lo == hi else f"{lo} to {hi} nodes"
    if record["rule"] == "accuracy":
        return f"adaptive Gauss-Hermite, {nodes} per patient, chosen by accuracy"
    return f"adaptive Gauss-Hermite, {nodes}"


def fit_agq(
    problem: RandomInterceptAGQ,
    start: np.ndarray,
    *,
    n_agq: int | str = "auto",
    optimizers: tuple[str, ...] = ("BFGS", "L-BFGS-B", "Nelder-Mead", "Powell"),
    singular_tau: float = 1e-4,
) -> AGQFit:
    """Maximum likelihood by adaptive Gauss-Hermite quadrature, nodes chosen by accuracy.

    Each optimizer in turn (under :func:`ketastats.models.retries.fit_with_retries`) runs from
    ``start`` with :data:`AGQ_START` nodes per patient (or the fixed ``n_agq``), with the exact
    gradient where it uses one; Newton steps (:func:`newton_polish`) take its answer to full
    precision. With ``n_agq="auto"`` :func:`choose_nodes` then raises each patient's nodes
    until its contribution at the optimum moves by less than :func:`agq_tolerance`, the model
    is refitted from there, and the check is repeated at the new optimum (up to three
    times). A fit is good when the gradient vanishes, ``tau`` is not at its boundary and the
    negative Hessian is positive definite.
    """
    from ..retries import Diagnosis, fit_with_retries, hessian_is_pd

    auto = n_agq == "auto"
    if not auto and (isinstance(n_agq, bool) or not isinstance(n_agq, (int, np.integer)) or int(n_agq) < 1):
        raise ValueError(f"n_agq must be 'auto' or a whole number of at least 1; got {n_agq!r}")
    n0 = problem.nodes_vector(AGQ_START if auto else int(n_agq))
    tol = agq_tolerance(problem.m)

    def nll_at(nodes):
        def f(z):
            v = -problem.loglik(z, nodes)
            return v if np.isfinite(v) else np.inf

        return f

    def grad_at(nodes):
        return lambda z: -problem.gradient(z, nodes)

    def attempt(method):
        def run():
            nodes = n0
            f, gr = nll_at(nodes), grad_at(nodes)
            opts: dict = {"maxiter": 5000}
            if method == "Nelder-Mead":
                opts.update(xatol=1e-8, fatol=1e-10, maxiter=20000)
            jac = gr if method in ("BFGS", "L-BFGS-B") else None
            problem._b = None
            with np.errstate(all="ignore"):
                r = optimize.minimize(f, start, method=method, jac=jac, options=opts)
            if not np.isfinite(r.fun):
                raise ArithmeticError(f"{method}: the log-likelihood is not finite at the answer")
            x, _, H = newton_polish(f, gr, r.x)
            for _ in range(3 if auto else 0):
                more = choose_nodes(problem, x, nodes, tol)
                if np.array_equal(more, nodes):
                    break
                nodes = more  # refit from the optimum with fewer nodes; its Hessian is the chord
                x, _, _ = newton_polish(nll_at(nodes), grad_at(nodes), x, hessian=H)
            H = -central_hessian(grad_at(nodes), x)  # Hessian of the log-likelihood
            with np.errstate(all="ignore"):
                q = problem.evaluate(x, nodes, grad=True)
            quad = quadrature_record(problem, x, nodes, auto=auto, tol=tol)
            return {
                "x": x,
                "nodes": nodes,
                "quad": quad,
                "H": H,
                "q": q,
                "success": bool(r.success),
                "message": str(r.message),
            }

        return run

    def assess(res):
        x, q = res["x"], res["q"]
        grad_max = float(np.max(np.abs(q.grad)))
        pd_ok = hessian_is_pd(-res["H"])
        msgs = [] if pd_ok else ["the Hessian of the log-likelihood is not negative definite"]
        quad = res["quad"]
        if quad["rule"] == "accuracy" and not quad["accurate"]:
            msgs.append(
                f"the quadrature did not settle: with {quad['max_points']} nodes (at most) one patient's "
                f"log-likelihood still moves by {quad['largest_patient_change'] or float('nan'):.1e}"
            )
        res["grad_max"] = grad_max
        converged = bool(grad_max < 1e-3)
        if converged and not res["success"]:
            msgs.insert(0, f"{res['message']} (then polished by Newton steps to gradient {grad_max:.1e})")
        singular = float(np.exp(x[-1])) < singular_tau
        return Diagnosis(converged, singular, pd_ok, q.loglik, msgs)

    out = fit_with_retries([(f"optimizer={m}", attempt(m)) for m in optimizers], assess)
    res = out.result
    return AGQFit(
        theta=res["x"],
        hessian=res["H"],
        hessian_pd=bool(out.chosen.hessian_pd),
        loglik=float(res["q"].loglik),
        modes=res["q"].modes,
        nodes=res["nodes"],
        quadrature=res["quad"],
        grad_max=float(res["grad_max"]),
        outcome=out,
    )


def beta_covariance(hessian: np.ndarray, p: int) -> np.ndarray:
    """Covariance of the fixed effects: the beta block of the inverse negative Hessian.

    The block does not depend on how the variance parameters are parameterized (here on the log
    scale) at an interior optimum. NaN when the Hessian cannot be inverted.
    """
    try:
        cov = np.linalg.inv(-hessian)[:p, :p]
    except np.linalg.LinAlgError:
        return np.full((p, p), np.nan)
    return (cov + cov.T) / 2


def log_ndtr_ratio(z: np.ndarray) -> np.ndarray:
    """``phi(z) / Phi(z)`` (the inverse Mills ratio of a left-censored value), stable for any z."""
    return np.exp(-0.5 * z**2 - 0.5 * _LOG_2PI - special.log_ndtr(z))
