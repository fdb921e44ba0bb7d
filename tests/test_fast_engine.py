"""Tests of the fast mixed-model engine (ketastats.models.engines.fast_lmm, issue 10).

Three independent yardsticks:
- lme4's fits of real data (tests/data/*_reference.csv), at the tolerances those references support
  (fixed effects and SEs 1e-4 relative, variance components 1e-3 relative, log-likelihood 1e-3
  absolute);
- statsmodels' MixedLM at the issue's tolerances (log-likelihood 1e-6 relative, fixed effects 1e-5
  relative), after making sure statsmodels itself reached its optimum (several optimizers, tight
  gradient tolerance, best llf; its own log-likelihood function evaluated at our estimate);
- a direct dense implementation of the (RE)ML criterion (below), property-based over random
  designs with unbalanced groups, groups of size one and boundary fits.
"""

from __future__ import annotations

import logging
import math
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from ketastats.exceptions import ModelError
from ketastats.models.engines.fast_lmm import MAX_Q, FastLMMResult, fit_lmm_fast

DATA = Path(__file__).parent / "data"
pd = pytest.importorskip("pandas")


# ---------------------------------------------------------------------------------------------
# helpers: a dense reference implementation and data generators
# ---------------------------------------------------------------------------------------------


def _lam(theta, q):
    L = np.zeros((q, q))
    k = 0
    for j in range(q):
        for i in range(j, q):
            L[i, j] = theta[k]
            k += 1
    return L


def exact_product(A, B):
    """A @ B with every entry rounded once from its exact value (computed in Fractions).

    For small matrices whose product cancels: no intermediate rounding is amplified.
    """
    A = [[Fraction(float(v)) for v in row] for row in np.atleast_2d(A)]
    B = [[Fraction(float(v)) for v in row] for row in np.atleast_2d(B)]
    return np.array(
        [[float(sum(a * b for a, b in zip(row, col, strict=True))) for col in zip(*B)] for row in A]
    )


def dense_fit_at(y, X, Z, groups, theta, reml):
    """Profiled (RE)ML criterion of lme4 at theta, computed directly with per-group dense V.

    theta is lme4's lower-triangle vector, or a (q, q) factor Lambda itself (D = Lambda Lambda'
    in sigma^2 units; it need not be triangular). Returns (deviance, beta, sigma2, cov_beta,
    blups dict).
    """
    q = Z.shape[1]
    n, p = X.shape
    L = np.asarray(theta, float) if np.ndim(theta) == 2 else _lam(theta, q)
    D = L @ L.T
    XtHX = np.zeros((p, p))
    XtHy = np.zeros(p)
    yHy = 0.0
    logdet = 0.0
    blocks = {}
    for gl in pd.unique(groups):
        m = groups == gl
        Xi, Zi, yi = X[m], Z[m], y[m]
        Hi = np.eye(m.sum()) + Zi @ D @ Zi.T
        Hinv = np.linalg.inv(Hi)
        logdet += np.linalg.slogdet(Hi)[1]
        XtHX += Xi.T @ Hinv @ Xi
        XtHy += Xi.T @ Hinv @ yi
        yHy += yi @ Hinv @ yi
        blocks[gl] = (Xi, Zi, yi, Hinv)
    beta = np.linalg.solve(XtHX, XtHy)
    r2 = yHy - XtHy @ beta
    nu = n - p if reml else n
    dev = logdet + nu * (1 + math.log(2 * math.pi * r2 / nu))
    if reml:
        dev += np.linalg.slogdet(XtHX)[1]
    sigma2 = r2 / nu
    cov_beta = sigma2 * np.linalg.inv(XtHX)
    blups = {gl: D @ Zi.T @ Hinv @ (yi - Xi @ beta) for gl, (Xi, Zi, yi, Hinv) in blocks.items()}
    return dev, beta, sigma2, cov_beta, blups


def dense_grad(y, X, Z, groups, theta, reml, h=1e-6):
    g = np.zeros_like(theta)
    for j in range(theta.size):
        tp, tm = theta.copy(), theta.copy()
        step = h * max(1.0, abs(theta[j]))
        tp[j] += step
        tm[j] -= step
        g[j] = (dense_fit_at(y, X, Z, groups, tp, reml)[0] - dense_fit_at(y, X, Z, groups, tm, reml)[0]) / (
            2 * step
        )
    return g


def simulate(rng, sizes, p, q, theta=None, sigma=1.0):
    """A random design: intercept + p-1 covariates; Z = [1, t, t^2][:q] with unbalanced times."""
    sizes = np.asarray(sizes)
    G = sizes.size
    n = int(sizes.sum())
    groups = np.repeat(np.arange(G), sizes)
    t = rng.uniform(0, 3, n)
    cols = [np.ones(n), t, rng.normal(size=G)[groups], rng.normal(size=n), rng.binomial(1, 0.4, n)]
    X = np.column_stack(cols[:p])
    Z = np.column_stack([np.ones(n), t, t * t - 3])[:, :q]
    if theta is None:
        theta = rng.normal(size=q * (q + 1) // 2) * 0.8
    L = _lam(theta, q)
    b = rng.normal(size=(G, q)) @ L.T
    y = X @ rng.normal(size=p) * 2 + np.sum(Z * b[groups], axis=1) + sigma * rng.normal(size=n)
    return y, X, Z, groups


def _sm_fit(y, X, Z, groups, reml, start=None):
    """statsmodels' MixedLM at its optimum: the best llf over several optimizers and starts.

    From its default start (bfgs with a tight gradient tolerance, powell then bfgs, lbfgs: the
    reference README's "known traps"), and, when ``start`` is given, from there (bfgs and lbfgs):
    statsmodels moves away from a point that is not its optimum.
    """
    sm = pytest.importorskip("statsmodels.api")
    attempts = [
        dict(method=["bfgs"], gtol=1e-10),
        dict(method=["powell", "bfgs"]),
        dict(method=["lbfgs"]),
    ]
    if start is not None:
        attempts += [
            dict(start_params=start, method=["bfgs"], gtol=1e-10),
            dict(start_params=start, method=["lbfgs"]),
        ]
    best = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for kw in attempts:
            try:
                fit = sm.MixedLM(y, X, groups, exog_re=Z).fit(reml=reml, **kw)
            except (np.linalg.LinAlgError, ValueError):
                continue
            if np.isfinite(fit.llf) and (best is None or fit.llf > best.llf):
                best = fit
    return best


def _sm_loglike_at(res: FastLMMResult, y, X, Z, groups):
    """statsmodels' own (RE)ML log-likelihood function evaluated at our estimate."""
    sm = pytest.importorskip("statsmodels.api")
    from statsmodels.regression.mixed_linear_model import MixedLMParams

    model = sm.MixedLM(y, X, groups, exog_re=Z)
    model.reml, model.fe_pen, model.cov_pen = res.reml, None, None
    cov_re = res.re_cov / res.resid_var
    if np.linalg.eigvalsh(cov_re)[0] <= 1e-12 * np.trace(cov_re):
        # statsmodels inverts cov_re, which loses digits when it is nearly singular (a ridge of
        # 1e-12 moved its log-likelihood by 5e-5, one of 1e-8 by 1e-8): nudge a boundary estimate
        cov_re = cov_re + np.eye(cov_re.shape[0]) * 1e-8 * max(np.trace(cov_re), 1e-6)
    params = MixedLMParams.from_components(fe_params=res.beta, cov_re=cov_re)
    return model.loglike(params, profile_fe=False)


def _start_for_sm(res: FastLMMResult):
    from statsmodels.regression.mixed_linear_model import MixedLMParams

    cov_re = res.re_cov / res.resid_var
    # statsmodels starts from the Cholesky factor of cov_re: nudge a boundary estimate inside
    cov_re = cov_re + np.eye(cov_re.shape[0]) * 1e-10 * max(np.trace(cov_re), 1e-6)
    return MixedLMParams.from_components(fe_params=res.beta, cov_re=cov_re)


def assert_statsmodels_not_better(res: FastLMMResult, sm_fit, y, X, Z, groups):
    """statsmodels' best optimum is not better than ours.

    Exactly, by the dense criterion at statsmodels' variance parameters; and by statsmodels' own
    llf where its cov_re is well conditioned (near a singular cov_re its llf loses digits: on one
    design it reported -65.25173 where its parameters give -65.25202, below our -65.25193).
    """
    q = Z.shape[1]
    D_sm = np.atleast_2d(np.asarray(sm_fit.cov_re)) / sm_fit.scale
    L_sm = np.linalg.cholesky(D_sm + np.eye(q) * 1e-13 * max(np.trace(D_sm), 1e-12))
    theta_sm = L_sm.T[np.triu_indices(q)]  # column-major lower triangle (lme4 order)
    dev_sm = dense_fit_at(y, X, Z, groups, theta_sm, res.reml)[0]
    assert -2 * res.loglik <= dev_sm + 1e-9 * abs(dev_sm)
    eig = np.linalg.eigvalsh(D_sm)
    if eig[0] > 1e-6 * max(eig[-1], 1e-300):
        rounding = 1e-7 if res.singular else 1e-9
        assert sm_fit.llf <= res.loglik + rounding * abs(res.loglik) + 1e-9


def assert_matches_statsmodels(res: FastLMMResult, y, X, Z, groups):
    """The issue's tolerances: log-likelihood 1e-6 relative, fixed effects 1e-5 relative."""
    pytest.importorskip("statsmodels")
    # our log-likelihood is statsmodels' criterion at our estimate (an independent evaluation)
    ll_sm_at_ours = _sm_loglike_at(res, y, X, Z, groups)
    if res.singular:  # statsmodels inverts a nudged singular cov_re: rounding
        assert res.loglik == pytest.approx(ll_sm_at_ours, rel=1e-7)
    else:
        assert res.loglik == pytest.approx(ll_sm_at_ours, rel=1e-9, abs=1e-9)
    sm_fit = _sm_fit(y, X, Z, groups, res.reml, start=_start_for_sm(res))
    assert sm_fit is not None
    assert_statsmodels_not_better(res, sm_fit, y, X, Z, groups)
    # and statsmodels at its optimum agrees with ours
    assert res.loglik == pytest.approx(sm_fit.llf, rel=1e-6)
    fe = np.asarray(sm_fit.fe_params)
    scale = np.maximum(np.abs(fe), np.sqrt(np.diag(res.cov_beta)))
    assert np.all(np.abs(res.beta - fe) <= 1e-5 * scale), (res.beta, fe)


# ---------------------------------------------------------------------------------------------
# lme4 references
# ---------------------------------------------------------------------------------------------


def _sleepstudy():
    d = pd.read_csv(DATA / "sleepstudy.csv")
    X = np.column_stack([np.ones(len(d)), d["Days"].to_numpy(float)])
    return d["Reaction"].to_numpy(float), X, d["Subject"].to_numpy()


def _btheb():
    d = pd.read_csv(DATA / "btheb_long.csv").dropna(subset=["bdi"])
    X = np.column_stack(
        [
            np.ones(len(d)),
            d["bdi_pre"].to_numpy(float),
            d["time"].to_numpy(float),
            (d["treatment"] == "BtheB").to_numpy(float),  # reference level TAU, as the reference
            (d["drug"] == "Yes").to_numpy(float),
            (d["length"] == ">6m").to_numpy(float),
        ]
    )
    return d["bdi"].to_numpy(float), X, d["id"].to_numpy()


REFERENCE_CASES = [
    # (dataset, model, method, Z columns of X)
    ("sleepstudy", "RI", "REML", [0]),
    ("sleepstudy", "RI", "ML", [0]),
    ("sleepstudy", "RS", "REML", [0, 1]),
    ("sleepstudy", "RS", "ML", [0, 1]),
    ("BtheB", "lmer1_RI", "REML", [0]),
    ("BtheB", "lmer1_RI", "ML", [0]),
    ("BtheB", "lmer2_RI_slope", "REML", [0, 2]),
    ("BtheB", "lmer2_RI_slope", "ML", [0, 2]),
]


def _reference_case(dataset, model, method, zcols):
    if dataset == "sleepstudy":
        y, X, g = _sleepstudy()
        ref = pd.read_csv(DATA / "sleepstudy_reference.csv")
    else:
        y, X, g = _btheb()
        ref = pd.read_csv(DATA / "btheb_reference.csv")
    ref = ref[(ref["model"] == model) & (ref["method"] == method)]
    return y, X, X[:, zcols], g, ref


@pytest.mark.parametrize("case", REFERENCE_CASES, ids=lambda c: "-".join(c[:3]))
def test_matches_lme4_reference(case):
    dataset, model, method, zcols = case
    y, X, Z, g, ref = _reference_case(*case)
    res = fit_lmm_fast(y, X, Z, g, reml=(method == "REML"))
    assert res.converged, res.message
    assert not res.singular
    assert res.n_obs == len(y)
    assert res.n_groups == len(np.unique(g))
    fixed = ref[ref["kind"] == "fixed"]
    np.testing.assert_allclose(res.beta, fixed["estimate"].to_numpy(), rtol=1e-4)
    np.testing.assert_allclose(np.sqrt(np.diag(res.cov_beta)), fixed["se"].to_numpy(), rtol=1e-4)
    np.testing.assert_allclose(res.se_beta, fixed["se"].to_numpy(), rtol=1e-4)
    vc = dict(zip(ref.loc[ref["kind"] == "varcomp", "term"], ref.loc[ref["kind"] == "varcomp", "estimate"]))
    names = ["(Intercept)", "Days" if dataset == "sleepstudy" else "time"]
    assert res.resid_var == pytest.approx(vc["residual_var"], rel=1e-3)
    for a in range(Z.shape[1]):
        assert res.re_cov[a, a] == pytest.approx(vc[f"var({names[a]})"], rel=1e-3)
    if Z.shape[1] == 2:
        assert res.re_cov[0, 1] == pytest.approx(vc[f"cov({names[0]},{names[1]})"], rel=1e-3)
        assert res.re_cov[1, 0] == res.re_cov[0, 1]
    loglik = ref.loc[ref["term"] == "logLik", "estimate"].item()
    assert res.loglik == pytest.approx(loglik, abs=1e-3)
    # lme4 stops at most slightly short of the optimum; we are never below it
    assert res.loglik >= loglik - 1e-8
    if "singular" in set(ref["term"]):
        assert res.singular == bool(ref.loc[ref["term"] == "singular", "estimate"].item())


@pytest.mark.parametrize("case", REFERENCE_CASES, ids=lambda c: "-".join(c[:3]))
def test_reference_data_match_statsmodels(case):
    y, X, Z, g, _ = _reference_case(*case)
    res = fit_lmm_fast(y, X, Z, g, reml=(case[2] == "REML"))
    assert_matches_statsmodels(res, y, X, Z, g)


@pytest.mark.parametrize("case", REFERENCE_CASES[:4] + REFERENCE_CASES[6:7], ids=lambda c: "-".join(c[:3]))
def test_reference_estimates_equal_dense_formulas(case):
    """SEs are sigma^2 (X'V^-1X)^-1, BLUPs D Z'V^-1(y - X beta), loglik the criterion, at theta."""
    y, X, Z, g, _ = _reference_case(*case)
    reml = case[2] == "REML"
    res = fit_lmm_fast(y, X, Z, g, reml=reml)
    dev, beta, sigma2, cov_beta, blups = dense_fit_at(y, X, Z, g, res.theta, reml)
    assert res.loglik == pytest.approx(-dev / 2, rel=1e-11)
    np.testing.assert_allclose(res.beta, beta, rtol=1e-9)
    assert res.resid_var == pytest.approx(sigma2, rel=1e-9)
    np.testing.assert_allclose(res.cov_beta, cov_beta, rtol=1e-8)
    L = _lam(res.theta, Z.shape[1])
    np.testing.assert_allclose(res.re_cov, sigma2 * L @ L.T, rtol=1e-9)
    expected = np.stack([blups[lab] for lab in res.group_labels])
    np.testing.assert_allclose(res.blups, expected, rtol=1e-7, atol=1e-9 * np.abs(expected).max())


def test_blups_match_statsmodels_random_effects():
    y, X, Z, g, _ = _reference_case(*REFERENCE_CASES[2])
    res = fit_lmm_fast(y, X, Z, g, reml=True)
    sm_fit = _sm_fit(y, X, Z, g, True, start=_start_for_sm(res))
    re = sm_fit.random_effects
    expected = np.stack([np.asarray(re[lab]) for lab in res.group_labels])
    np.testing.assert_allclose(res.blups, expected, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# the criterion and its analytic gradient, property-based against the dense implementation
# ---------------------------------------------------------------------------------------------


@st.composite
def designs(draw, max_groups=12, max_size=6, qs=(1, 2, 3)):
    q = draw(st.sampled_from(qs))
    p = draw(st.integers(1, 5))
    sizes = draw(st.lists(st.integers(1, max_size), min_size=2, max_size=max_groups))
    seed = draw(st.integers(0, 2**32 - 1))
    assume(sum(sizes) >= p + 4 and sum(sizes) > q * len(sizes))  # identifiable, as lme4 requires
    rng = np.random.default_rng(seed)
    y, X, Z, g = simulate(rng, sizes, p, q)
    assume(np.linalg.matrix_rank(X) == p)
    theta = np.abs(rng.normal(size=q * (q + 1) // 2)) + 0.05
    return y, X, Z, g, theta


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
@given(designs(), st.booleans())
def test_criterion_and_gradient_equal_dense(design, reml):
    from ketastats.models.engines import fast_lmm as fast

    y, X, Z, g, theta = design
    q = Z.shape[1]
    res = fit_lmm_fast(y, X, Z, g, reml=reml, start_theta=theta)  # a fit started at theta
    # the engine's criterion, in the parametrisation of this Z, at an arbitrary theta
    prob = fast._profiled_criterion(y, X, Z, g, reml)
    dev, grad = prob.evaluate(theta, grad=True)
    dense_dev = dense_fit_at(y, X, Z, g, theta, reml)[0]
    assert dev == pytest.approx(dense_dev, rel=1e-10, abs=1e-8)
    num = dense_grad(y, X, Z, g, theta, reml)
    np.testing.assert_allclose(grad, num, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(num).max()))
    # and the fit is at least as good as the dense criterion anywhere we looked
    assert -2 * res.loglik <= dense_dev + 1e-9 * abs(dense_dev)
    assert res.theta.shape == (q * (q + 1) // 2,)


# ---------------------------------------------------------------------------------------------
# fits against statsmodels: property-based and on simulated cohorts
# ---------------------------------------------------------------------------------------------


# derandomized: statsmodels is a moving target on odd tiny designs; the examples stay fixed in CI
@pytest.mark.slow
@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(
    sizes=st.lists(st.integers(1, 7), min_size=10, max_size=25),
    p=st.integers(1, 4),
    q=st.sampled_from([1, 2]),
    reml=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_designs_match_statsmodels(sizes, p, q, reml, seed):
    """Unbalanced groups, many of size one; interior optima (boundary ones: the next test)."""
    assume(sum(sizes) > q * len(sizes))  # identifiable, as lme4 requires
    rng = np.random.default_rng(seed)
    theta = np.array([1.0]) if q == 1 else np.array([1.0, 0.3, 0.5])
    y, X, Z, g = simulate(rng, sizes, p, q, theta=theta * rng.uniform(0.3, 2))
    assume(np.linalg.matrix_rank(X) == p)
    res = fit_lmm_fast(y, X, Z, g, reml=reml)
    assert res.converged, res.message
    # at a boundary optimum statsmodels, whose variance parameters cannot reach it, stops up to
    # ~2e-6 (relative log-likelihood) short on tiny designs; those are checked below
    assume(not res.singular)
    assert_matches_statsmodels(res, y, X, Z, g)


# derandomized: statsmodels is a moving target on odd tiny designs; the examples stay fixed in CI
@pytest.mark.slow
@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(
    sizes=st.lists(st.integers(1, 7), min_size=6, max_size=20),
    p=st.integers(1, 3),
    q=st.sampled_from([1, 2, 3]),
    zero=st.integers(0, 2),
    reml=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_designs_reach_the_optimum_including_the_boundary(sizes, p, q, zero, reml, seed):
    """Optimality against the dense criterion (also at singular fits, made likely by a zero
    variance in the simulation), and statsmodels never finds a better point."""
    assume(sum(sizes) > q * len(sizes) and sum(sizes) >= p + 4)
    rng = np.random.default_rng(seed)
    theta_true = np.abs(rng.normal(size=q * (q + 1) // 2)) + 0.2
    diag_idx = np.cumsum([0] + [q - j for j in range(q - 1)])
    theta_true[diag_idx[min(zero, q - 1)]] = 0.0  # one random effect without variance
    y, X, Z, g = simulate(rng, sizes, p, q, theta=theta_true)
    assume(np.linalg.matrix_rank(X) == p)
    res = fit_lmm_fast(y, X, Z, g, reml=reml)
    event("singular fit" if res.singular else "interior optimum")
    event("has groups of size one" if min(sizes) == 1 else "no group of size one")
    assert res.converged, res.message
    dev = -2 * res.loglik
    assert dev == pytest.approx(dense_fit_at(y, X, Z, g, res.theta, reml)[0], rel=1e-10)
    # first-order optimality, checked on the exact criterion: no feasible nudge improves it
    lower = np.full(res.theta.shape, -np.inf)
    lower[diag_idx] = 0.0
    for j in range(res.theta.size):
        for sign in (1.0, -1.0):
            th = res.theta.copy()
            th[j] += sign * 1e-4 * max(1.0, abs(th[j]))
            th = np.maximum(th, lower)
            assert dense_fit_at(y, X, Z, g, th, reml)[0] >= dev - 1e-9 * abs(dev)
    assert res.singular == bool(np.any(res.theta[diag_idx] < 1e-4))
    if q < 3:  # statsmodels is slow and fragile with three random effects on tiny data
        sm_fit = _sm_fit(y, X, Z, g, reml, start=_start_for_sm(res))
        assert_statsmodels_not_better(res, sm_fit, y, X, Z, g)


@pytest.mark.slow
@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("q", [1, 2, 3])
def test_simulated_cohort_matches_statsmodels(q, reml):
    """A cohort like the project's: 120 patients x 7 sessions, 15% of sessions missing."""
    rng = np.random.default_rng(10 + q)
    P, T = 120, 7
    pid = np.repeat(np.arange(P), T)
    t = np.tile(np.arange(T, dtype=float), P) / 2
    arm = rng.integers(0, 2, P)[pid].astype(float)
    base = rng.normal(30, 6, P)[pid]
    Zfull = np.column_stack([np.ones(P * T), t, (t - 1.5) ** 2])
    L = np.array([[5.0, 0, 0], [-0.8, 1.2, 0], [0.1, 0.2, 1.5]])
    b = rng.normal(size=(P, 3)) @ L.T
    y = 20 - t - 0.8 * arm * t + 0.3 * (base - 30) + np.sum(Zfull * b[pid], axis=1) + rng.normal(0, 3, P * T)
    keep = rng.random(P * T) > 0.15
    X = np.column_stack([np.ones(P * T), t, arm, arm * t, base])[keep]
    labels = np.array([f"KT-{i:04d}" for i in pid])[keep]
    Z = Zfull[keep][:, :q]
    res = fit_lmm_fast(y[keep], X, Z, labels, reml=reml)
    assert res.converged and not res.singular, res.message
    assert res.n_groups == P and res.blups.shape == (P, q)
    assert_matches_statsmodels(res, y[keep], X, Z, labels)


# ---------------------------------------------------------------------------------------------
# groups of size one, unbalanced groups, label types and row order
# ---------------------------------------------------------------------------------------------


def test_groups_of_size_one_and_invariance_to_row_order_and_labels():
    rng = np.random.default_rng(3)
    sizes = [1] * 30 + list(rng.integers(2, 9, 40))
    y, X, Z, g = simulate(rng, sizes, 3, 2, theta=np.array([1.2, 0.2, 0.6]))
    res = fit_lmm_fast(y, X, Z, g, reml=True)
    assert res.converged
    assert res.n_groups == 70
    perm = rng.permutation(len(y))
    labels = np.array([f"g{v}" for v in g], dtype=object)
    res2 = fit_lmm_fast(y[perm], X[perm], Z[perm], labels[perm], reml=True)
    assert res2.loglik == pytest.approx(res.loglik, rel=1e-12)
    np.testing.assert_allclose(res2.beta, res.beta, rtol=1e-7)
    np.testing.assert_allclose(res2.re_cov, res.re_cov, rtol=1e-6, atol=1e-7 * np.abs(res.re_cov).max())
    # blups follow group_labels (equal up to the optimizer's precision)
    order = {lab: i for i, lab in enumerate(res.group_labels)}
    atol = 1e-6 * np.abs(res.blups).max()
    for i, lab in enumerate(res2.group_labels):
        np.testing.assert_allclose(res2.blups[i], res.blups[order[int(lab[1:])]], rtol=1e-6, atol=atol)
    assert_matches_statsmodels(res, y, X, Z, g)


def test_unidentifiable_designs_are_refused_as_lme4_does():
    rng = np.random.default_rng(4)
    n = 50
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = X @ [1.0, 2.0] + rng.normal(size=n)
    with pytest.raises(ModelError, match="not identifiable"):  # all groups of size one
        fit_lmm_fast(y, X, np.ones((n, 1)), np.arange(n))
    with pytest.raises(ModelError, match="no more observations than random effects"):
        fit_lmm_fast(y, X, X, np.arange(n) // 2)  # 25 groups of 2 rows, 2 random effects each
    with pytest.raises(ModelError, match="at least 2 groups"):
        fit_lmm_fast(y, X, X[:, :1], np.zeros(n))
    res = fit_lmm_fast(y, X, X, np.r_[np.arange(20), np.arange(30) // 10 + 20])  # 20 singletons
    assert res.n_groups == 23


@pytest.mark.parametrize("reml", [True, False])
def test_invariant_to_a_large_offset_in_the_slope_covariate(reml):
    """Days + 1e5 (think calendar time): the same model, reparametrised. The (RE)ML optimum is
    invariant (the transform of X has determinant 1); the engine conditions X and Z internally."""
    y, X, g = _sleepstudy()
    res = fit_lmm_fast(y, X, X, g, reml=reml)
    X2 = X.copy()
    X2[:, 1] += 1e5
    res2 = fit_lmm_fast(y, X2, X2, g, reml=reml)
    assert res2.converged, res2.message
    assert res2.loglik == pytest.approx(res.loglik, rel=1e-10)
    assert res2.beta[1] == pytest.approx(res.beta[1], rel=1e-7)
    assert res2.beta[0] + 1e5 * res2.beta[1] == pytest.approx(res.beta[0], rel=1e-6)
    # random-effect covariance: Z2 = Z B with B = [[1, 1e5], [0, 1]], so b = B b2, D = B D2 B'
    B = np.array([[1.0, 1e5], [0.0, 1.0]])
    np.testing.assert_allclose(B @ res2.re_cov @ B.T, res.re_cov, rtol=1e-5, atol=1e-6 * res.re_cov.max())
    # theta is lme4's factor for the caller's Z: the dense criterion there is the log-likelihood.
    # The reference is evaluated on the unshifted design, where it is well conditioned, and it is
    # the same criterion: X2 = X B exactly, so H = I + X2 L2 L2' X2' = I + X (B L2)(B L2)' X' is
    # the same matrix, the column space of X2 is that of X (the same profiled residual), and
    # det(X2' H^-1 X2) = det(B)^2 det(X' H^-1 X) with det(B) = 1. Evaluated on X2 directly, it
    # formed H from terms 3e8 times larger than H and solved with X2' H^-1 X2 of condition 5e18:
    # about 1e-8 relative error, depending on the BLAS kernel.
    assert np.array_equal(X2, X @ B)
    lam = exact_product(B, _lam(res2.theta, 2))
    assert -2 * res2.loglik == pytest.approx(dense_fit_at(y, X, X, g, lam, reml)[0], rel=1e-8)


def test_non_contiguous_numeric_labels_keep_sorted_order():
    rng = np.random.default_rng(5)
    y, X, Z, g = simulate(rng, [4, 3, 5, 2, 6, 3], 2, 1)
    labels = np.array([103, 7, 55, 1000, 2, 31])[g]
    res = fit_lmm_fast(y, X, Z, labels)
    np.testing.assert_array_equal(res.group_labels, [2, 7, 31, 55, 103, 1000])


# ---------------------------------------------------------------------------------------------
# singular (boundary) fits
# ---------------------------------------------------------------------------------------------


def test_singular_random_intercept_at_zero():
    rng = np.random.default_rng(6)
    G, m = 40, 4
    g = np.repeat(np.arange(G), m)
    X = np.column_stack([np.ones(G * m), rng.normal(size=G * m)])
    # within-group negative correlation: the between-group variance estimate is at the boundary
    e = rng.normal(size=(G, m))
    e -= 0.9 * e.mean(axis=1, keepdims=True)
    y = X @ [2.0, 1.0] + e.ravel()
    for reml in (True, False):
        res = fit_lmm_fast(y, X, X[:, :1], g, reml=reml)
        assert res.singular and res.converged, res.message
        assert res.theta[0] == 0.0
        assert res.re_cov[0, 0] == 0.0
        # at theta = 0 the model is OLS with sigma^2 = RSS / nu
        ols = np.linalg.lstsq(X, y, rcond=None)[0]
        np.testing.assert_allclose(res.beta, ols, rtol=1e-10)
        for th in (1e-3, 0.05, 0.3):  # the criterion is larger inside
            assert -2 * res.loglik < dense_fit_at(y, X, X[:, :1], g, np.array([th]), reml)[0]
        assert_matches_statsmodels(res, y, X, X[:, :1], g)


@pytest.mark.parametrize("reml", [True, False])
def test_singular_random_slope(reml):
    """Data with a random intercept only: the slope's variance ends on the boundary."""
    rng = np.random.default_rng(7)
    G, m = 60, 5
    g = np.repeat(np.arange(G), m)
    t = np.tile(np.arange(m, dtype=float), G)
    X = np.column_stack([np.ones(G * m), t])
    y = 1 + 0.5 * t + rng.normal(0, 2, G)[g] + rng.normal(size=G * m)
    # make the within-group slopes less variable than the noise implies
    y -= 0.35 * (np.bincount(g, weights=(y - y.mean()) * (t - 2)) / 10)[g] * (t - 2)
    res = fit_lmm_fast(y, X, X, g, reml=reml)
    assert res.converged, res.message
    assert res.singular
    assert res.theta[2] < 1e-4
    # the boundary optimum is a genuine optimum of the criterion: nudging inward makes it worse
    dev = -2 * res.loglik
    for d in ([0, 0, 1e-3], [0, 1e-3, 0], [1e-3, 0, 0], [-1e-3, 0, 0], [0, -1e-3, 0]):
        th = np.maximum(res.theta + np.array(d), [0, -np.inf, 0])
        assert dense_fit_at(y, X, X, g, th, reml)[0] >= dev - 1e-9
    assert_matches_statsmodels(res, y, X, X, g)


# ---------------------------------------------------------------------------------------------
# interface and errors
# ---------------------------------------------------------------------------------------------


def test_result_fields_and_start_theta():
    y, X, g = _sleepstudy()
    res = fit_lmm_fast(y, X, X, g)
    assert isinstance(res, FastLMMResult)
    assert res.reml is True and res.beta.shape == (2,) and res.cov_beta.shape == (2, 2)
    assert res.re_cov.shape == (2, 2) and res.theta.shape == (3,) and res.blups.shape == (18, 2)
    assert res.group_labels.shape == (18,) and res.n_iter >= 0 and isinstance(res.message, str)
    assert MAX_Q == 3
    with pytest.raises(AttributeError):
        res.loglik = 0.0  # frozen
    res2 = fit_lmm_fast(y, X, X, g, start_theta=[0.2, 0.0, 0.2])
    assert res2.loglik == pytest.approx(res.loglik, rel=1e-12)
    np.testing.assert_allclose(res2.theta, res.theta, rtol=1e-6)
    with pytest.raises(ModelError, match="start_theta"):
        fit_lmm_fast(y, X, X, g, start_theta=[1.0, 0.0])


def test_logs_at_debug(caplog):
    y, X, g = _sleepstudy()
    with caplog.at_level(logging.DEBUG, logger="ketastats.models.engines.fast_lmm"):
        fit_lmm_fast(y, X, X[:, :1], g)
    assert any("fast LMM" in r.getMessage() for r in caplog.records)


def test_errors():
    y, X, g = _sleepstudy()
    Z = X[:, :1]
    with pytest.raises(ModelError, match="at most 3"):
        fit_lmm_fast(y, X, np.column_stack([X, X[:, 1] ** 2, X[:, 1] ** 3]), g)
    y_nan = y.copy()
    y_nan[5] = np.nan
    with pytest.raises(ModelError, match="missing or non-finite"):
        fit_lmm_fast(y_nan, X, Z, g)
    X_inf = X.copy()
    X_inf[3, 1] = np.inf
    with pytest.raises(ModelError, match="X has 1 row"):
        fit_lmm_fast(y, X_inf, Z, g)
    Z_nan = Z.copy()
    Z_nan[0, 0] = np.nan
    with pytest.raises(ModelError, match="Z has"):
        fit_lmm_fast(y, X, Z_nan, g)
    with pytest.raises(ModelError, match="not of full column rank"):
        fit_lmm_fast(y, np.column_stack([X, 2 * X[:, 1]]), Z, g)
    with pytest.raises(ModelError, match="all zero"):
        fit_lmm_fast(y, np.column_stack([X, np.zeros(len(y))]), Z, g)
    dummies = np.column_stack([X, (X[:, 1] < 5).astype(float), (X[:, 1] >= 5).astype(float)])
    with pytest.raises(ModelError, match=r"columns \[0, 2, 3\]"):
        fit_lmm_fast(y, dummies, Z, g)
    with pytest.raises(ModelError, match="rows"):
        fit_lmm_fast(y[:-1], X, Z, g)
    with pytest.raises(ModelError, match="groups"):
        fit_lmm_fast(y, X, Z, g[:-1])
    g_missing = g.astype(object)
    g_missing[0] = None
    with pytest.raises(ModelError, match="missing labels"):
        fit_lmm_fast(y, X, Z, g_missing)
    with pytest.raises(ModelError, match="exactly"):
        fit_lmm_fast(X @ [1.0, 2.0], X, Z, g)
    with pytest.raises(ModelError, match="Too few rows"):
        fit_lmm_fast(y[:2], X[:2], Z[:2], g[:2])
