"""Estimators with closed forms or textbook answers: BH, Woolf's log odds ratio, the
Monte Carlo indirect-effect interval, the boundary LRT mixture, Gauss-Hermite integrals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, special, stats
from statsmodels.stats.multitest import multipletests

from ketastats.models import (
    adjust_families,
    bh_adjust,
    mixture_lrt_pvalue,
    monte_carlo_indirect,
    resolve_estimands,
    resolve_spec,
    run_model,
)
from ketastats.models.engines.logistic_glmm import _Data, marginal_loglik

BH_1995 = [0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344, 0.0459, 0.3240, 0.4262]
BH_1995 += [0.5719, 0.6528, 0.7590, 1.000]


def test_bh_rejects_four_of_the_textbook_fifteen():
    """Benjamini & Hochberg (1995), section 4.1: BH at q = 0.05 rejects the 4 smallest
    (Bonferroni rejects 3)."""
    adj = bh_adjust(BH_1995)
    assert (adj <= 0.05).sum() == 4
    assert set(np.flatnonzero(adj <= 0.05)) == {0, 1, 2, 3}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bh_adjusted_p_values_equal_statsmodels(seed):
    p = np.random.default_rng(seed).uniform(0, 0.2, 12) ** 2
    p = np.r_[p, np.nan]
    ours = bh_adjust(p)
    theirs = multipletests(p[:-1], method="fdr_bh")[1]
    np.testing.assert_allclose(ours[:-1], theirs, rtol=1e-12)
    assert np.isnan(ours[-1])


def test_family_adjustment_spans_models_and_ignores_skipped():
    models = {
        "a": {"status": "ok", "family": "cytokine", "tests": [{"id": "x", "p_value": 0.01}]},
        "b": {"status": "ok", "family": "cytokine", "tests": [{"id": "y", "p_value": 0.04}]},
        "c": {"status": "skipped", "family": "cytokine", "tests": [{"id": "z", "p_value": 0.001}]},
        "d": {"status": "ok", "tests": [{"id": "w", "p_value": 0.5}]},
    }
    fam = adjust_families(models)["cytokine"]
    assert fam["n_tests"] == 2
    assert [t["p_adjusted"] for t in fam["tests"]] == pytest.approx([0.02, 0.04])
    assert all(t["rejected"] for t in fam["tests"])


def test_monte_carlo_indirect_is_normal_when_one_path_is_known():
    r = monte_carlo_indirect(0.8, 0.2, 1.5, 0.0, n_draws=400000, seed=3)
    z = stats.norm.ppf(0.975)
    assert r["ci_low"] == pytest.approx(1.5 * (0.8 - z * 0.2), abs=5e-3)
    assert r["ci_high"] == pytest.approx(1.5 * (0.8 + z * 0.2), abs=5e-3)
    assert r["sobel_se"] == pytest.approx(1.5 * 0.2)
    # two-sided p of ab = 0 equals that of a = 0 when b is known
    assert r["p_value"] == pytest.approx(2 * stats.norm.sf(0.8 / 0.2), abs=2e-4)


def test_monte_carlo_indirect_is_reproducible():
    assert monte_carlo_indirect(1, 0.5, 1, 0.5, seed=7) == monte_carlo_indirect(1, 0.5, 1, 0.5, seed=7)


def test_boundary_lrt_mixture():
    """Stram & Lee (1994): 0.5 chi2_q + 0.5 chi2_(q+1)."""
    assert mixture_lrt_pvalue(2.7055, 0) == pytest.approx(0.05, abs=1e-4)
    stat = 7.0
    assert mixture_lrt_pvalue(stat, 2) == pytest.approx(
        0.5 * stats.chi2.sf(stat, 2) + 0.5 * stats.chi2.sf(stat, 3)
    )
    assert mixture_lrt_pvalue(0.0, 1) == pytest.approx(1.0)


@pytest.mark.parametrize("sigma", [0.5, 2.0])
def test_adaptive_quadrature_equals_the_exact_integral(sigma):
    """One patient's marginal likelihood by AGQ against numerical integration: exact with 40
    nodes, and closer with every node added (Laplace = 1 node is the crudest)."""
    y = np.array([1.0, 0.0, 1.0, 1.0])
    X = np.c_[np.ones(4), [0.0, 1.0, 2.0, 3.0]]
    beta = np.array([-0.3, 0.4])
    eta = X @ beta

    def integrand(b):
        p = special.expit(eta + b)
        return np.prod(p**y * (1 - p) ** (1 - y)) * stats.norm.pdf(b, 0, sigma)

    exact = np.log(integrate.quad(integrand, -40, 40, epsabs=1e-15, epsrel=1e-13, limit=500, points=[0])[0])
    d = _Data(y, X, np.zeros(4))
    errors = [abs(marginal_loglik(beta, sigma, d, n_agq=k)[0] - exact) for k in (1, 3, 10, 40)]
    assert errors[-1] < 1e-10
    assert errors[0] > errors[1] > errors[2] > errors[3]  # Laplace, then more nodes: closer


def _end_of_course_table(a, b, c, d):
    """Patients: ever ill (a responders, b not) and never ill (c responders, d not)."""
    rows = []
    k = 0
    for ill, resp, n in ((1, 1, a), (1, 0, b), (0, 1, c), (0, 0, d)):
        for _ in range(n):
            pid = f"P{k:03d}"
            k += 1
            for s in (1, 2, 3):
                rows.append(
                    {
                        "patient_id": pid,
                        "session": s,
                        "ill": float(ill and s == 2),
                        "madrs_response": float(resp) if s == 3 else 0.0,
                        "madrs_baseline": 30.0,
                    }
                )
    return pd.DataFrame(rows)


def test_end_of_course_logistic_is_woolfs_log_odds_ratio():
    """One row per patient, exposure only: log OR = log(ad/bc), SE^2 = 1/a+1/b+1/c+1/d
    (the robust SE of a saturated logistic model equals the model-based one)."""
    a, b, c, d = 18, 22, 70, 40
    df = _end_of_course_table(a, b, c, d)
    spec = resolve_spec(
        "end", {"kind": "gee_binary", "level": "end", "fixed": ["ever_ill"], "illness_term": "ever_ill"}
    )
    out = run_model("end", spec, df, resolve_estimands(None))
    assert out["status"] == "ok", out["reason"]
    eff = out["illness_effect"]
    assert eff["estimate"] == pytest.approx(np.log(a * d / (b * c)), rel=1e-6)
    assert eff["se"] == pytest.approx(np.sqrt(1 / a + 1 / b + 1 / c + 1 / d), rel=1e-4)
    assert eff["odds_ratio"] == pytest.approx(a * d / (b * c), rel=1e-6)
    assert out["nobs"] == a + b + c + d and out["level"] == "end"


def test_composite_discontinuation_counts_dropouts_as_non_response():
    a, b, c, d = 18, 22, 70, 40
    df = _end_of_course_table(a, b, c, d)
    # 5 ill responders stop after session 2: under the composite strategy they count as failures
    drop = df["patient_id"].isin([f"P{k:03d}" for k in range(5)]) & (df["session"] == 3)
    df = df.loc[~drop].copy()
    df.loc[df["patient_id"].isin([f"P{k:03d}" for k in range(5)]), "madrs_response"] = 1.0
    spec = resolve_spec(
        "end", {"kind": "gee_binary", "level": "end", "fixed": ["ever_ill"], "illness_term": "ever_ill"}
    )
    est = resolve_estimands({"discontinuation": "composite"})
    out = run_model("end", spec, df, est)
    assert out["status"] == "ok", out["reason"]
    assert out["estimands"]["discontinuation"]["strategy"] == "composite"
    a2, b2 = a - 5, b + 5
    assert out["illness_effect"]["estimate"] == pytest.approx(np.log(a2 * d / (b2 * c)), rel=1e-6)
