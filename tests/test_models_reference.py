"""Model estimators against R on real data (tests/data/models_reference.csv, made by
tests/data/models_reference.R with lme4 1.1-31, lmerTest 3.1-3 and geepack).

Tolerances: Satterthwaite df 1e-5 relative (analytic derivatives at the fast engine's optimum,
which equals lme4's; lmerTest differentiates numerically); glmer estimates, SEs and variance 1e-4
relative at the same number of nodes (log-likelihood 1e-5 absolute); geeglm estimates and SEs 1e-4
relative.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import patsy
import pytest

from ketastats.models import design_matrices, fit_logistic_glmm, fit_mixed, lmm_loglik, satterthwaite
from ketastats.models.engines.lmm import apply_references
from ketastats.models.engines.satterthwaite import LMMCrossProducts
from ketastats.models.kinds.gee_binary import gee_logistic

BTHEB_REFS = {"treatment": "TAU", "drug": "No", "length": "<6m"}
BTHEB_FORMULA = "bdi ~ bdi_pre + time + treatment + drug + length"


def _r_name(patsy_name: str) -> str:
    """patsy term names -> R's ((Intercept), treatmentBtheB, factor(period)2 ...)."""
    if patsy_name == "Intercept":
        return "(Intercept)"
    if patsy_name.startswith("C(period)[T."):
        return "period" + patsy_name[len("C(period)[T.") : -1]
    return patsy_name.replace("[T.", "").replace("]", "")


@pytest.fixture(scope="module")
def ref(data_dir):
    return pd.read_csv(data_dir / "models_reference.csv")


@pytest.fixture(scope="module")
def btheb(data_dir):
    bt = pd.read_csv(data_dir / "btheb_long.csv").dropna(subset=["bdi"])
    bt["remit"] = (bt["bdi"] <= 10).astype(float)
    return apply_references(bt, BTHEB_REFS).sort_values("id", kind="stable")


@pytest.fixture(scope="module")
def cbpp(data_dir):
    return pd.read_csv(data_dir / "cbpp_binary.csv").sort_values("herd", kind="stable")


LMM_CASES = {
    ("sleepstudy", "RI"): ("sleepstudy", "Reaction ~ Days", "Subject", None),
    ("sleepstudy", "RS"): ("sleepstudy", "Reaction ~ Days", "Subject", "~Days"),
    ("BtheB", "lmer1_RI"): ("btheb", BTHEB_FORMULA, "id", None),
    ("BtheB", "lmer2_RI_slope"): ("btheb", BTHEB_FORMULA, "id", "~time"),
}


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
@pytest.mark.parametrize("case", list(LMM_CASES), ids=lambda c: f"{c[0]}-{c[1]}")
def test_satterthwaite_df_match_lmertest(case, reml, ref, btheb, data_dir):
    """Analytic derivatives at the fast engine's (lme4-exact) optimum: lmerTest's df to 1e-5."""
    data_name, formula, group, re_f = LMM_CASES[case]
    data = btheb if data_name == "btheb" else pd.read_csv(data_dir / "sleepstudy.csv")
    res = fit_mixed(data, formula, group, re_f, engine="fast", reml=reml)
    y, X, Z, g, xnames, _, _ = design_matrices(data, formula, group, re_f)
    sat = satterthwaite(y, X, Z, g, res.re_cov, res.residual_variance, reml=reml)
    assert sat.hessian_pd
    kind = "satterthwaite" if reml else "satterthwaite_ML"
    want = ref[(ref.dataset == case[0]) & (ref.model == case[1]) & (ref.kind == kind)]
    want = want.set_index("term")
    assert len(want) == len(xnames)
    for name, df in zip(xnames, sat.df):
        assert df == pytest.approx(want.loc[_r_name(name), "df"], rel=1e-5), name


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
@pytest.mark.parametrize(
    "case", [("sleepstudy", "RS"), ("BtheB", "lmer2_RI_slope")], ids=lambda c: f"{c[0]}-{c[1]}"
)
def test_satterthwaite_derivatives_are_exact(case, reml, btheb, data_dir):
    """The analytic Hessian of the (RE)ML log-likelihood in (vech G, sigma^2) and the analytic
    d Var(beta)/d theta equal Richardson-extrapolated differences of lmm_loglik and of the GLS
    covariance (steps 1e-2 and 1e-3 relative)."""
    from ketastats.models.engines.satterthwaite import _gls, _unvech, _vech

    data_name, formula, group, re_f = LMM_CASES[case]
    data = btheb if data_name == "btheb" else pd.read_csv(data_dir / "sleepstudy.csv")
    res = fit_mixed(data, formula, group, re_f, engine="fast", reml=reml)
    y, X, Z, g, *_ = design_matrices(data, formula, group, re_f)
    sat = satterthwaite(y, X, Z, g, res.re_cov, res.residual_variance, reml=reml)
    cp = LMMCrossProducts.build(y, X, Z, g)
    q = Z.shape[1]
    theta = np.r_[_vech(res.re_cov), res.residual_variance]
    k = len(theta)

    def ll(th):
        return lmm_loglik(cp, _unvech(th[:-1], q), th[-1], reml=reml)

    def var_beta(th):
        return np.diag(np.linalg.inv(_gls(cp, _unvech(th[:-1], q), th[-1])[0]))

    scale = np.sqrt(np.abs(np.r_[np.diag(res.re_cov)[np.tril_indices(q)[0]], res.residual_variance]))
    scale = scale * np.sqrt(np.abs(np.r_[np.diag(res.re_cov)[np.tril_indices(q)[1]], res.residual_variance]))
    for rel in (1e-2, 1e-3):
        h = rel * scale

        def d2(i, j, hh):
            ei, ej = np.eye(k)[i] * hh[i], np.eye(k)[j] * hh[j]
            return (ll(theta + ei + ej) - ll(theta + ei - ej) - ll(theta - ei + ej) + ll(theta - ei - ej)) / (
                4 * hh[i] * hh[j]
            )

        H = np.array([[(4 * d2(i, j, h / 2) - d2(i, j, h)) / 3 for j in range(k)] for i in range(k)])
        np.testing.assert_allclose(sat.hessian, H, rtol=1e-4, atol=1e-6 * np.abs(H).max())
        jac = np.array([(var_beta(theta + e) - var_beta(theta - e)) / (2 * e.sum()) for e in np.diag(h)])
        np.testing.assert_allclose(sat.jacobian, jac, rtol=1e-4, atol=1e-8 * np.abs(jac).max())


def test_satterthwaite_balanced_design_gives_classical_df(data_dir):
    """Balanced sleepstudy: random intercept -> Days has the within-subject error df
    N - n - 1 = 161; random slope -> both effects have n - 1 = 17 (split-plot ANOVA)."""
    ss = pd.read_csv(data_dir / "sleepstudy.csv")
    for re_f, expected in ((None, {"Days": 161}), ("~Days", {"Intercept": 17, "Days": 17})):
        res = fit_mixed(ss, "Reaction ~ Days", "Subject", re_f, engine="statsmodels")
        y, X, Z, g, xnames, _, _ = design_matrices(ss, "Reaction ~ Days", "Subject", re_f)
        df = dict(zip(xnames, satterthwaite(y, X, Z, g, res.re_cov, res.residual_variance).df))
        for term, value in expected.items():
            assert df[term] == pytest.approx(value, rel=1e-3)


def test_lmm_loglik_equals_lme4_at_the_estimates(data_dir):
    ss = pd.read_csv(data_dir / "sleepstudy.csv")
    ref = pd.read_csv(data_dir / "sleepstudy_reference.csv")
    for model, re_f in (("RI", None), ("RS", "~Days")):
        for method in ("REML", "ML"):
            r = ref[(ref.model == model) & (ref.method == method)]
            vc = r[r.kind == "varcomp"].set_index("term").estimate
            if re_f is None:
                G = np.array([[vc["var((Intercept))"]]])
            else:
                c = vc["cov((Intercept),Days)"]
                G = np.array([[vc["var((Intercept))"], c], [c, vc["var(Days)"]]])
            y, X, Z, g, *_ = design_matrices(ss, "Reaction ~ Days", "Subject", re_f)
            ll = lmm_loglik(LMMCrossProducts.build(y, X, Z, g), G, vc["residual_var"], reml=method == "REML")
            assert ll == pytest.approx(r[r.term == "logLik"].estimate.iloc[0], abs=1e-3)


GLMM_CASES = [(d, n) for d in ("cbpp", "BtheB") for n in (1, 10, 25)]


@pytest.mark.parametrize(("dataset", "n_agq"), GLMM_CASES)
def test_logistic_glmm_matches_glmer(dataset, n_agq, ref, btheb, cbpp):
    """The same number of nodes as glmer(nAGQ = n) (tolPwrss = 1e-12, see models_reference.R):
    estimates, SEs and the variance to 1e-4 relative, the log-likelihood to 1e-5 (bobyqa's stop)."""
    if dataset == "cbpp":
        data, formula, group = cbpp, "y ~ C(period)", "herd"
    else:
        data, formula, group = btheb, "remit ~ bdi_pre + time + treatment + drug + length", "id"
    y, X = patsy.dmatrices(formula, data, return_type="dataframe")
    r = fit_logistic_glmm(y.to_numpy().ravel(), X.to_numpy(), data[group].to_numpy(), n_agq=n_agq)
    want = ref[(ref.dataset == dataset) & (ref.model == f"glmer_nAGQ{n_agq}")]
    fixed = want[want.kind == "fixed"].set_index("term")
    assert r.converged and not r.singular
    assert r.quadrature["rule"] == "fixed" and r.n_agq == n_agq
    for name, est, se in zip(X.columns, r.beta, r.se):
        assert est == pytest.approx(fixed.loc[_r_name(name), "estimate"], rel=1e-4), name
        assert se == pytest.approx(fixed.loc[_r_name(name), "se"], rel=1e-4), name
    assert r.sigma**2 == pytest.approx(want[want.kind == "varcomp"].estimate.iloc[0], rel=1e-4)
    assert r.loglik == pytest.approx(want[want.kind == "fit"].estimate.iloc[0], abs=1e-5)


@pytest.mark.parametrize("dataset", ["cbpp", "BtheB"])
def test_gee_estimating_equations_match_geepack(dataset, ref, btheb, cbpp):
    """With geepack's exchangeable correlation held fixed, estimates and robust SEs agree."""
    if dataset == "cbpp":
        data, formula, group = cbpp, "y ~ C(period)", "herd"
    else:
        data, formula, group = btheb, "remit ~ bdi_pre + time + treatment + drug + length", "id"
    want = ref[(ref.dataset == dataset) & (ref.model == "geeglm_exch")]
    alpha = want[want.kind == "corr"].estimate.iloc[0]
    fixed = want[want.kind == "fixed"].copy()
    fixed["term"] = fixed.term.str.replace("factor(period)", "period", regex=False)
    fixed = fixed.set_index("term")
    y, X = patsy.dmatrices(formula, data, return_type="dataframe")
    out = gee_logistic(y.to_numpy().ravel(), X.to_numpy(), data[group].to_numpy(), fixed_alpha=alpha)
    r = out.result
    assert out.converged
    for name, est, se in zip(X.columns, np.asarray(r.params), np.asarray(r.bse)):
        assert est == pytest.approx(fixed.loc[_r_name(name), "estimate"], rel=1e-4), name
        assert se == pytest.approx(fixed.loc[_r_name(name), "se"], rel=1e-4), name
    # the moment estimator of alpha itself: statsmodels and geepack differ only in the
    # degrees-of-freedom correction of the denominator (< 1% here)
    free = gee_logistic(y.to_numpy().ravel(), X.to_numpy(), data[group].to_numpy()).result
    assert float(free.model.cov_struct.dep_params) == pytest.approx(alpha, rel=1e-2)
