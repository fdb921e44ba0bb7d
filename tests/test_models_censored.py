"""The left-censored (Tobit) mixed model for cytokines below the limit of detection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from models_sim import prepared_cohort

from ketastats.models import design_matrices, fit_mixed, resolve_estimands, resolve_spec, run_model
from ketastats.models.engines.tobit import fit_tobit_lmm


def test_without_censoring_it_is_the_ml_mixed_model(data_dir):
    """No value censored: the likelihood is the ordinary ML random-intercept LMM's, whose
    lme4 numbers (sleepstudy, ML, model RI) the statsmodels engine reproduces."""
    ss = pd.read_csv(data_dir / "sleepstudy.csv")
    ref = pd.read_csv(data_dir / "sleepstudy_reference.csv")
    ref = ref[(ref.model == "RI") & (ref.method == "ML")].set_index("term")
    y, X, _, g, *_ = design_matrices(ss, "Reaction ~ Days", "Subject", None)
    r = fit_tobit_lmm(y, np.zeros(len(y), bool), X, g, n_agq=1)
    assert r.converged and r.ncensored == 0
    np.testing.assert_allclose(r.beta, ref.loc[["(Intercept)", "Days"], "estimate"], rtol=1e-4)
    np.testing.assert_allclose(r.se, ref.loc[["(Intercept)", "Days"], "se"], rtol=1e-4)
    assert r.sigma**2 == pytest.approx(ref.loc["residual_var", "estimate"], rel=1e-3)
    assert r.tau**2 == pytest.approx(ref.loc["var((Intercept))", "estimate"], rel=1e-3)
    assert r.loglik == pytest.approx(ref.loc["logLik", "estimate"], abs=1e-3)


def test_recovers_the_truth_where_substitution_is_biased():
    """42% of values below the LOD: the censored likelihood recovers the effect; LOD/sqrt(2)
    substitution shrinks it (Hornung & Reed 1990)."""
    rng = np.random.default_rng(0)
    n, k = 300, 4
    g = np.repeat(np.arange(n), k)
    x = rng.binomial(1, 0.3, n * k).astype(float)
    ystar = 0.5 + 1.0 * x + rng.normal(0, 0.8, n)[g] + rng.normal(0, 0.5, n * k)
    lod = 0.6
    cens = ystar < lod
    assert 0.35 < cens.mean() < 0.5
    r = fit_tobit_lmm(np.where(cens, lod, ystar), cens, np.c_[np.ones(n * k), x], g)
    assert r.converged and r.ncensored == int(cens.sum())
    for est, se, truth in zip(r.beta, r.se, (0.5, 1.0)):
        assert abs(est - truth) < 3 * se
    assert abs(r.sigma - 0.5) < 0.05 and abs(r.tau - 0.8) < 0.1
    sub = pd.DataFrame({"y": np.where(cens, lod - np.log(np.sqrt(2)), ystar), "x": x, "g": g})
    biased = fit_mixed(sub, "y ~ x", "g", None, engine="statsmodels").fixed.set_index("term").estimate["x"]
    assert abs(biased - 1.0) > 4 * r.se[1]  # bias of substitution: about 0.21 here


def test_cytokine_illness_uses_the_censored_model_by_default():
    df, truth = prepared_cohort(120, seed=8)
    spec = resolve_spec("cyt", {"kind": "cytokine_illness", "markers": ["il6_pg_ml"]})
    assert spec["censoring"] == "tobit"
    out = run_model("cyt", spec, df, resolve_estimands({"illness_medication": "treatment_policy"}))
    assert out["status"] == "ok"
    fit = out["fits"]["il6_pg_ml"]
    assert fit["method"].startswith("ML, left-censored")
    assert fit["ncensored"] == int(df["il6_pg_ml_censored"].sum())
    eff = fit["illness_effect"]
    assert abs(eff["estimate"] - truth["a_il6"]) < 3 * eff["se"]
    assert out["tests"][0]["id"] == "il6_pg_ml:illness"
