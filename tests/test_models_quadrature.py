"""Adaptive Gauss-Hermite quadrature (ketastats.models.engines.agq): exact derivatives, nodes chosen by
accuracy, and the censored and logistic mixed models of the demo against an independent
likelihood (each patient's integral by the trapezoidal rule on a fine grid)."""

from __future__ import annotations

import numpy as np
import pytest
from demo_cohort import recorded, shipped_spec
from scipy import special, stats

from ketastats.models.engines import logistic_glmm as glmm
from ketastats.models.engines import tobit as censored
from ketastats.models.engines.derivatives import central_hessian, richardson_hessian


def _logistic_problem(seed=1, m=40, k=6):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(m), k)
    x = rng.normal(size=m * k)
    y = (rng.random(m * k) < special.expit(-0.5 + x + rng.normal(0, 2.0, m)[g])).astype(float)
    return glmm._Data(y, np.c_[np.ones(m * k), x], g), np.array([-0.3, 0.8, np.log(1.7)])


def _tobit_problem(seed=2, m=40, k=5):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(m), k)
    x = rng.binomial(1, 0.4, m * k).astype(float)
    ystar = 0.2 + 0.8 * x + rng.normal(0, 0.9, m)[g] + rng.normal(0, 0.5, m * k)
    cens = ystar < 0.3
    d = censored._Data(np.where(cens, 0.3, ystar), cens, np.c_[np.ones(m * k), x], g)
    return d, np.array([0.1, 0.7, np.log(0.6), np.log(1.1)])


@pytest.mark.parametrize("make", [_logistic_problem, _tobit_problem], ids=["logistic", "tobit"])
@pytest.mark.parametrize("nodes", [1, 4, 10, "mixed"])
def test_gradient_is_the_derivative_of_the_quadrature_formula(make, nodes):
    """The analytic gradient (nodes moving with the mode and curvature) equals central
    differences of the quadrature log-likelihood itself, for Laplace, few or many nodes, and
    nodes that differ between patients."""
    d, theta = make()
    if nodes == "mixed":
        nodes = np.where(np.arange(d.m) % 3 == 0, 20, 5)
    exact = d.gradient(theta, nodes)
    h = 1e-5
    numeric = np.array(
        [(d.loglik(theta + e, nodes) - d.loglik(theta - e, nodes)) / (2 * h) for e in np.eye(len(theta)) * h]
    )
    np.testing.assert_allclose(exact, numeric, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("make", [_logistic_problem, _tobit_problem], ids=["logistic", "tobit"])
def test_hessian_does_not_depend_on_the_step(make):
    """Differences of the exact gradient: the central Hessian equals Richardson extrapolation
    at two other steps to 1e-7, so SEs and the positive-definiteness verdict do not hinge on a step."""
    d, theta = make()
    grad = lambda z: d.gradient(z, 10)  # noqa: E731
    H = central_hessian(grad, theta)
    for step in (1e-2, 1e-3):
        R = richardson_hessian(grad, theta, np.full(len(theta), step))
        np.testing.assert_allclose(H, R, rtol=1e-7, atol=1e-7 * np.abs(H).max())


def _independent_loglik(row_logf, groups, tau):
    """Sum over patients of ``log int prod_j f_j(b) phi(b; 0, tau^2) db`` by the trapezoidal rule.

    ``row_logf(rows, b)`` gives each row's log-density at the (rows x grid) random intercepts
    ``b``. A coarse grid over +-(20 tau + 20) finds each patient's mode; a fine grid (step
    tau/200) over +-12 tau around it integrates. The log-integrand is at least as concave as the
    prior, so the mass beyond 12 tau is below exp(-72) of the total, and the trapezoidal rule
    converges geometrically for such smooth, decaying integrands. Nothing here is shared with
    the package's quadrature.
    """
    order = np.argsort(groups, kind="stable")
    g = groups[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    pat = np.cumsum(np.r_[True, g[1:] != g[:-1]]) - 1  # patient index of each sorted row

    def patient_logf(b):  # b: (patients, grid)
        per_row = row_logf(order, b[pat])
        return np.add.reduceat(per_row, starts, axis=0) + stats.norm.logpdf(b, 0.0, tau)

    coarse = np.linspace(-20 * tau - 20, 20 * tau + 20, 2001)
    lf = patient_logf(np.broadcast_to(coarse, (len(starts), coarse.size)))
    centre = coarse[np.argmax(lf, axis=1)]
    offsets = np.linspace(-12 * tau, 12 * tau, 4801)
    lf = patient_logf(centre[:, None] + offsets[None, :])
    return float(np.sum(special.logsumexp(lf, axis=1) + np.log(offsets[1] - offsets[0])))


@pytest.fixture(scope="module")
def tobit_demo():
    """The cytokine_illness model of the shipped config on the demo, with the rows of each marker."""
    fits, outputs = recorded()
    out = outputs["cytokine_illness"]
    assert out["status"] == "ok" and list(out["fits"]) == shipped_spec("cytokine_illness")["markers"]
    rows = [f for f in fits if f["model"] == "cytokine_illness"]
    return out, {m: (f["y"], f["cens"].astype(bool), f["X"], f["group"]) for m, f in zip(out["fits"], rows)}


def test_tobit_nodes_are_chosen_by_accuracy_and_recorded(tobit_demo):
    out, rows = tobit_demo
    for marker, fit in out["fits"].items():
        q = fit["quadrature"]
        assert q["rule"] == "accuracy" and q["accurate"], marker
        assert abs(q["loglik_change"]) < 1e-8 and q["largest_patient_change"] < q["tolerance_per_patient"]
        assert f"{q['min_points']}" in fit["method"] and "chosen by accuracy" in fit["method"]
        censored_draws = int(rows[marker][1].sum())
        # without censored draws every integrand is Gaussian: the first rung is exact
        assert (q["max_points"] == 10) == (censored_draws == 0), marker
    # IL-1beta (143 of 299 draws censored) needs far more than the 10 nodes once fixed
    assert out["fits"]["il1b_pg_ml"]["quadrature"]["max_points"] >= 30


def test_tobit_loglik_equals_an_independent_integration_on_every_demo_marker(tobit_demo):
    out, rows = tobit_demo
    for marker, (y, cens, X, g) in rows.items():
        fit = out["fits"][marker]
        beta = np.array([fit["fixed"][t]["estimate"] for t in fit["fixed"]])
        sigma, tau = np.sqrt(fit["residual_variance"]), np.sqrt(fit["random"]["cov"][0][0])
        eta = X @ beta

        def logf_rows(r, b, eta=eta, y=y, cens=cens, sigma=sigma):
            z = (y[r, None] - eta[r, None] - b) / sigma
            return np.where(cens[r, None], special.log_ndtr(z), stats.norm.logpdf(z) - np.log(sigma))

        exact = _independent_loglik(logf_rows, g, tau)
        assert fit["loglik"] == pytest.approx(exact, abs=1e-6), marker
        # the old fixed rule (10 nodes) was off by more than 1e-3 where draws are censored
        ten = censored.tobit_loglik(beta, sigma, tau, censored._Data(y, cens, X, g), 10)[0]
        assert (abs(ten - exact) > 1e-3) == bool(cens.sum() > 0), marker


def test_mixed_logistic_demo_loglik_equals_an_independent_integration():
    """The demo's response model: a wide random intercept (SD about 4.5) and 80 of 194 patients
    who never or always respond make skewed integrands; 10 nodes were off by 0.08."""
    fits, outputs = recorded()
    out = outputs["response_glmm"]
    f = next(f for f in fits if f["model"] == "response_glmm")
    rows = {"data": (f["y"], f["X"], f["group"])}
    assert out["status"] == "ok"
    q = out["quadrature"]
    assert q["rule"] == "accuracy" and q["accurate"] and q["max_points"] > 100
    y, X, g = rows["data"]
    beta = np.array([c["estimate"] for c in out["coefficients"]])
    tau = out["random"]["sd"][0]
    eta = X @ beta

    def logf_rows(r, b):
        u = eta[r, None] + b
        return y[r, None] * u - np.logaddexp(0, u)

    exact = _independent_loglik(logf_rows, g, tau)
    assert out["loglik"] == pytest.approx(exact, abs=1e-6)
    ten = glmm.marginal_loglik(beta, tau, glmm._Data(y, X, g), 10)[0]
    assert abs(ten - exact) > 1e-2
