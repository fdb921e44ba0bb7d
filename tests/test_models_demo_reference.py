"""Every model kind of the shipped config against R, on the rows ketastats analyses (issue 27).

The demo cohort is frozen in ``tests/data/demo_sessions.csv``; ``tests/data/demo_rows.py`` ran each
model by its own kind with the fitter replaced by a recorder and wrote the rows it received
(``tests/data/demo_rows/``); ``tests/data/demo_reference.R`` refitted them in R (lme4/lmerTest,
glmer, geepack, a likelihood written out for the censored model, Rubin's rules by hand) into
``tests/data/demo_reference.csv``. Here the same models run again, the rows they get are checked to
be the recorded ones, and their JSON is compared with R. Tests never call R.

Tolerances are what the two programs' optimizers support: LMM estimates and SEs 1e-5 relative
(plus 1e-5 SE absolute for estimates near zero), Satterthwaite df 1e-4, variances 1e-4; the
censored model 1e-6 (both sides are exact likelihood maximisations); glmer at the same nodes
1e-4; geeglm 1e-4 at its working correlation; pooled MI 1e-5 (df 1e-4).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from demo_cohort import DATA, MODELS, recorded, shipped_models, shipped_spec, spec_for

from ketastats.models.engines import logistic_glmm as glmm
from ketastats.models.engines import tobit as censored
from ketastats.models.engines.derivatives import central_hessian
from ketastats.models.kinds import gee_binary as binary


@pytest.fixture(scope="module")
def demo():
    """Each referenced model run on the demo (its JSON) and the rows its fitters received."""
    return recorded()


@pytest.fixture(scope="module")
def ref():
    return pd.read_csv(DATA / "demo_reference.csv")


@pytest.fixture(scope="module")
def manifest():
    return pd.read_csv(DATA / "demo_rows" / "manifest.csv")


def _block(man_row) -> pd.DataFrame:
    b = pd.read_csv(DATA / "demo_rows" / man_row.file)
    return b[b.part == man_row.part].reset_index(drop=True)


def _ref(ref, model, fit, source, kind=None):
    r = ref[(ref.model == model) & (ref.fit == fit) & (ref.source == source)]
    return r if kind is None else r[r.kind == kind].set_index("term")


def _coefs(block, prefix=""):
    return {c["term"].removeprefix(prefix): c for c in block["coefficients"]}


def _check_fixed(ours, want, *, rel=1e-5, se_rel=1e-5, df_rel=None):
    assert sorted(ours) == sorted(want.index)
    for term, row in want.iterrows():
        c = ours[term]
        assert c["estimate"] == pytest.approx(row.estimate, rel=rel, abs=1e-5 * row.se), term
        assert c["se"] == pytest.approx(row.se, rel=se_rel), term
        if df_rel is not None:
            assert c["df"] == pytest.approx(row.df, rel=df_rel), term


def _check_lmm(block, ref, model, fit, prefix=""):
    """An LMM's fixed effects (with Satterthwaite df), variances and log-likelihood against lmerTest.

    A model with CR2 standard errors (``se: cr2``, the kind lmm default) has lmerTest's estimates and
    clubSandwich's CR2 SEs and Satterthwaite df (``lmm_sandwich_reference.csv``, same rows).
    """
    want = _ref(ref, model, fit, "lmerTest", "fixed")
    if str(block.get("se_type", "")).startswith("small-sample cluster-robust sandwich (CR2"):
        cr2 = pd.read_csv(DATA / "lmm_sandwich_reference.csv")
        cr2 = cr2[(cr2.data == model) & (cr2.type == "CR2")].set_index("term")
        assert sorted(cr2.index) == sorted(want.index)
        want = want.assign(se=cr2.loc[want.index, "se"], df=cr2.loc[want.index, "df"])
        assert block["df_method"] == "bell_mccaffrey"
    else:
        assert block["df_method"] == "satterthwaite"
    _check_fixed(_coefs(block, prefix), want, df_rel=1e-4)
    vc = _ref(ref, model, fit, "lmerTest", "varcomp")["estimate"]
    names, cov = block["random"]["names"], np.array(block["random"]["cov"])
    assert block["residual_variance"] == pytest.approx(vc["residual"], rel=1e-4)
    for i, a in enumerate(names):
        assert cov[i, i] == pytest.approx(vc[f"var({a})"], rel=1e-4), a
        for j in range(i):
            key = f"cov({names[j]},{a})" if f"cov({names[j]},{a})" in vc else f"cov({a},{names[j]})"
            assert cov[i, j] == pytest.approx(vc[key], rel=1e-4, abs=1e-6 * np.sqrt(cov[i, i] * cov[j, j]))
    fitrow = _ref(ref, model, fit, "lmerTest", "fit")["estimate"]
    assert block["loglik"] == pytest.approx(fitrow["logLik"], abs=1e-6)
    assert block["nobs"] == int(fitrow["nobs"])


# ------------------------------------------------------------------------------------- the rows
def test_the_rows_are_the_ones_r_refitted(demo, manifest):
    """Rebuilt now by the package's own row functions, every fit's response, design, patients,
    censoring flags, sessions and delta masks equal the recorded rows R read (nothing drifted)."""
    fits, _ = demo
    assert len(fits) == len(manifest)
    for f, m in zip(fits, manifest.itertuples()):
        assert (f["model"], f["engine"]) == (m.model, m.engine)
        assert ";".join(f["xnames"]) == m.terms
        b = _block(m)
        np.testing.assert_array_equal(f["group"], b["group"].astype(str))
        np.testing.assert_array_equal(f["y"], b["y"])
        np.testing.assert_array_equal(f["X"], b[[f"x{j}" for j in range(f["X"].shape[1])]].to_numpy())
        if "cens" in f:
            np.testing.assert_array_equal(f["cens"], b["cens"])
        if "wave" in f:
            np.testing.assert_array_equal(f["wave"], b["wave"])
        if m.delta:
            np.testing.assert_array_equal(f["shift"], m.delta * b["mask"].to_numpy())


def test_every_kind_of_the_shipped_config_has_a_reference(demo, ref):
    _, outputs = demo
    referenced = {spec_for(name)["kind"] for name in outputs}
    shipped = {shipped_spec(name)["kind"] for name in shipped_models()}
    assert (
        referenced | OWN_REFERENCE.keys()
        == shipped
        == {
            "lmm",
            "illness_slopes",
            "gee",
            "gee_binary",
            "glmm_binary",
            "cytokine_illness",
            "cytokine_moderation",
            "mediation",
            "lmm_mi",
            "tipping_point",
            "mmrm",
            "illness_by",
        }
        | OWN_REFERENCE.keys()
    )
    assert set(ref.model) == set(MODELS)
    for kind, (data, test) in OWN_REFERENCE.items():
        assert (DATA / data).is_file() and (Path(__file__).parent / test).is_file(), kind


#: kinds checked against R by their own reference (not a refit of the demo's rows)
OWN_REFERENCE = {"decision": ("decision_reference.csv", "test_decisions_reference.py")}


# ----------------------------------------------------------------------------------- LMM kinds
@pytest.mark.parametrize("model", ["primary", "complete_case"])
def test_lmm_equals_lmertest(demo, ref, model):
    assert demo[1][model]["se_type"].startswith("small-sample cluster-robust sandwich (CR2")  # as shipped
    _check_lmm(demo[1][model], ref, model, 0)


def test_illness_by_equals_lmertest_for_each_grouping(demo, ref):
    out = demo[1]["illness_by"]
    assert list(out["fits"]) == ["illness_type", "illness_severity", "febrile"]
    for i, (by, block) in enumerate(out["fits"].items()):
        _check_lmm(block, ref, "illness_by", i, prefix=f"{by}: ")
        shown = [r for r in out["by_illness"][by]["levels"] if r["status"] == "ok"]
        for r in shown:  # the reported level effects are the fit's own coefficients
            coef = next(c for c in block["coefficients"] if c["term"] == f"{by}: {r['term']}")
            assert r["estimate"] == coef["estimate"] and r["se"] == coef["se"]


def test_illness_slopes_equal_lmertest_with_the_lrt(demo, ref):
    out = demo[1]["illness_slopes"]
    _check_lmm(out, ref, "illness_slopes", 0)
    full = _ref(ref, "illness_slopes", 0, "lmerTest", "fit")["estimate"]["logLik"]
    reduced = _ref(ref, "illness_slopes", 1, "lmerTest", "fit")["estimate"]["logLik"]
    assert out["illness_slopes"]["lrt"]["statistic"] == pytest.approx(2 * (full - reduced), abs=1e-5)
    var = _ref(ref, "illness_slopes", 0, "lmerTest", "varcomp")["estimate"]["var(ill_within)"]
    assert out["illness_slopes"]["variance"] == pytest.approx(var, rel=1e-4)


def test_cytokine_substitution_models_equal_lmertest(demo, ref):
    out = demo[1]["cytokine_illness_lod"]
    assert list(out["fits"]) == ["il6_pg_ml", "tnfa_pg_ml", "crp_mg_l"]  # il1b: > 30% non-detects
    for i, (marker, block) in enumerate(out["fits"].items()):
        _check_lmm(block, ref, "cytokine_illness_lod", i, prefix=f"{marker}: ")


def test_illness_by_type_severity_and_fever_equals_lmertest(demo, ref):
    """Kind illness_by: the primary model refitted with the illness term split by level, once per grouping."""
    out = demo[1]["illness_by"]
    assert list(out["fits"]) == ["illness_type", "illness_severity", "febrile"]
    for i, by in enumerate(out["fits"]):
        ours = {c["term"].removeprefix(f"{by}: "): c for c in out["coefficients"] if c["term"].startswith(f"{by}: ")}
        _check_fixed(ours, _ref(ref, "illness_by", i, "lmerTest", "fixed"), df_rel=1e-4)


def test_cytokine_moderation_equals_lmertest(demo, ref):
    out = demo[1]["cytokine_moderation"]
    for i, (marker, block) in enumerate(out["fits"].items()):
        _check_lmm(block, ref, "cytokine_moderation", i, prefix=f"{marker}: ")


def test_mediation_paths_equal_lmertest(demo, ref):
    out = demo[1]["mediation_il6"]
    _check_lmm(out["fits"]["a_path"], ref, "mediation_il6", 0, prefix="a path: ")
    _check_lmm(out["fits"]["b_path"], ref, "mediation_il6", 1, prefix="b path: ")
    a = _ref(ref, "mediation_il6", 0, "lmerTest", "fixed").estimate["ill_within"]
    b = _ref(ref, "mediation_il6", 1, "lmerTest", "fixed").estimate["log_il6_pg_ml_within"]
    assert out["indirect_effect"]["estimate"] == pytest.approx(a * b, rel=1e-5)


@pytest.mark.parametrize("model", ["primary_mi", "tipping_point"])
def test_multiple_imputation_pooling_equals_rubin_in_r(demo, ref, model):
    """lmer on each completed data set, pooled in R by Rubin's rules with Barnard-Rubin df: the shipped
    models pool each fit's CR2 sandwich (clubSandwich), complete-data df the mean of its df."""
    out = demo[1][model]
    assert out["se_type"].startswith("small-sample cluster-robust sandwich (CR2")
    if model == "primary_mi":
        rows = {0.0: _coefs(out)}
    else:
        rows = {r["delta"]: r for r in out["tipping"]["rows"]}
    for delta in (0.0, 6.0) if model == "tipping_point" else (0.0,):
        want = _ref(ref, model, delta, "rubin_cr2", "pooled")
        if model == "primary_mi":
            _check_fixed(rows[delta], want, df_rel=1e-4)
        else:  # the tipping point's rows give the illness term at each delta
            r, w = rows[delta], want.loc["ill_within"]
            assert r["estimate"] == pytest.approx(w.estimate, rel=1e-5)
            assert r["se"] == pytest.approx(w.se, rel=1e-5)
            assert r["df"] == pytest.approx(w.df, rel=1e-4)


# --------------------------------------------------------------------------- censored (Tobit)
def test_censored_model_equals_an_independent_likelihood_fit_in_r(demo, ref):
    """R maximised the censored likelihood written out independently (trapezoidal integration per
    patient, optim + Newton steps, numDeriv's Richardson Hessian): estimates, full-Hessian SEs,
    variances and the log-likelihood agree to 1e-6 on every marker, censored or not."""
    out = demo[1]["cytokine_illness"]
    for i, (marker, block) in enumerate(out["fits"].items()):
        _check_fixed(
            _coefs(block, f"{marker}: "),
            _ref(ref, "cytokine_illness", i, "likelihood", "fixed"),
            rel=1e-6,
            se_rel=1e-6,
        )
        vc = _ref(ref, "cytokine_illness", i, "likelihood", "varcomp")["estimate"]
        assert block["residual_variance"] == pytest.approx(vc["residual"], rel=1e-6)
        assert block["random"]["cov"][0][0] == pytest.approx(vc["var(Intercept)"], rel=1e-6)
        fit = _ref(ref, "cytokine_illness", i, "likelihood", "fit")["estimate"]
        assert block["loglik"] == pytest.approx(fit["logLik"], abs=1e-6)
        assert block["ncensored"] == int(fit["ncensored"])


def test_uncensored_tobit_is_the_ml_lmm_with_the_full_hessian_se(demo, ref, manifest):
    """Without non-detects the censored model is lmer(REML = FALSE): same estimates and
    log-likelihood. Its SEs are the beta block of the inverse of the full Hessian (variances
    estimated too); lme4's are conditional on the variances, the inverse of the beta block alone,
    which is what ketastats' own Hessian gives when conditioned the same way (docs/statistics.md)."""
    fits, outputs = demo
    out = outputs["cytokine_illness"]
    rows = [f for f in fits if f["model"] == "cytokine_illness"]
    for i, (marker, block) in enumerate(out["fits"].items()):
        if block["ncensored"]:
            continue
        lme4 = _ref(ref, "cytokine_illness", i, "lme4_ML", "fixed")
        ours = _coefs(block, f"{marker}: ")
        for term, row in lme4.iterrows():
            assert ours[term]["estimate"] == pytest.approx(row.estimate, rel=1e-5, abs=1e-5 * row.se)
        ll = _ref(ref, "cytokine_illness", i, "lme4_ML", "fit")["estimate"]["logLik"]
        assert block["loglik"] == pytest.approx(ll, abs=1e-6)
        f = rows[i]
        d = censored._Data(f["y"], f["cens"].astype(bool), f["X"], f["group"])
        p = f["X"].shape[1]
        theta = np.r_[
            [ours[t]["estimate"] for t in lme4.index],
            0.5 * np.log(block["residual_variance"]),
            0.5 * np.log(block["random"]["cov"][0][0]),
        ]
        H = central_hessian(lambda z, d=d: d.gradient(z, 1), theta)
        conditional = np.sqrt(np.diag(np.linalg.inv(-H[:p, :p])))
        np.testing.assert_allclose(conditional, lme4["se"].to_numpy(), rtol=1e-4)
        full = np.array([ours[t]["se"] for t in lme4.index])
        assert np.all(full >= conditional * (1 - 1e-9))  # accounting for the variances never shrinks an SE
        assert np.max(full / conditional) > 1.001  # and the conventions differ visibly


# ------------------------------------------------------------------------------ mixed logistic
def test_mixed_logistic_equals_glmer_at_the_same_nodes(demo, ref):
    """Fixed 25 and 100 nodes (ketastats' n_agq as a number) against glmer(nAGQ = 25, 100) on the
    demo's rows: estimates and the variance to 1e-4 relative; SEs to 1e-5 against glmer's
    deviance differentiated by Richardson extrapolation, and to 2e-4 against its own vcov(), whose
    fixed-step Hessian (lme4's deriv12, step 1e-4) is the less accurate of the two."""
    fits, outputs = demo
    f = next(f for f in fits if f["model"] == "response_glmm")
    for n in (25, 100):
        r = glmm.fit_logistic_glmm(f["y"], f["X"], f["group"], n_agq=n)
        want = _ref(ref, "response_glmm", 0, f"glmer_nAGQ{n}", "fixed")
        exact = _ref(ref, "response_glmm", 0, f"glmer_nAGQ{n}_hessian", "fixed")
        for name, est, se in zip(f["xnames"], r.beta, r.se):
            assert est == pytest.approx(want.estimate[name], rel=1e-4), (n, name)
            assert se == pytest.approx(exact.se[name], rel=1e-5), (n, name)
            assert se == pytest.approx(want.se[name], rel=2e-4), (n, name)
        var = _ref(ref, "response_glmm", 0, f"glmer_nAGQ{n}", "varcomp").estimate["var(Intercept)"]
        assert r.sigma**2 == pytest.approx(var, rel=1e-4)
    # the model as configured (nodes by accuracy) sits where glmer's most accurate fit is
    auto = _coefs(outputs["response_glmm"])
    for term, row in _ref(ref, "response_glmm", 0, "glmer_nAGQ100", "fixed").iterrows():
        assert auto[term]["estimate"] == pytest.approx(row.estimate, rel=1e-4), term


# -------------------------------------------------------------------------------- GEE kinds
def test_binary_gee_equals_geeglm_at_its_working_correlation(demo, ref):
    """geepack and statsmodels (ketastats' engine) solve the same estimating equations but
    estimate the exchangeable correlation with different denominators (docs/statistics.md): held
    at geepack's alpha, estimates and robust SEs agree to 1e-4; geepack's alpha and scale are its
    moment estimators at its solution (sum of pair products / N_pairs over sum of squares / N);
    ketastats' alpha (N_pairs - p and N - p) differs from it by about 0.4%."""
    fits, outputs = demo
    f = next(f for f in fits if f["model"] == "response_gee")
    want = _ref(ref, "response_gee", 0, "geeglm", "fixed")
    alpha = _ref(ref, "response_gee", 0, "geeglm", "corr").estimate["alpha"]
    phi = _ref(ref, "response_gee", 0, "geeglm", "scale").estimate["phi"]
    r = binary.gee_logistic(f["y"], f["X"], f["group"], fixed_alpha=alpha).result
    for name, est, se in zip(f["xnames"], np.asarray(r.params), np.asarray(r.bse)):
        assert est == pytest.approx(want.estimate[name], rel=1e-4, abs=1e-4 * want.se[name]), name
        assert se == pytest.approx(want.se[name], rel=1e-4), name

    def moments(beta):
        """Sum of squared Pearson residuals, of products within patients, and N_pairs, at beta."""
        mu = 1 / (1 + np.exp(-(f["X"] @ beta)))
        res = (f["y"] - mu) / np.sqrt(mu * (1 - mu))
        pairs = cross = 0.0
        for g in np.unique(f["group"]):
            e = res[f["group"] == g]
            pairs += len(e) * (len(e) - 1) / 2
            cross += (e.sum() ** 2 - (e**2).sum()) / 2
        return (res**2).sum(), cross, pairs

    n, p = f["X"].shape
    ss, cross, pairs = moments(want.estimate[f["xnames"]].to_numpy())  # geepack: N and N_pairs
    assert phi == pytest.approx(ss / n, rel=1e-6)
    assert alpha == pytest.approx(cross / pairs / phi, rel=1e-6)
    ours = outputs["response_gee"]
    ss, cross, pairs = moments(np.array([c["estimate"] for c in ours["coefficients"]]))  # N - p, N_pairs - p
    assert ours["working_correlation"]["alpha"] == pytest.approx(
        cross / (pairs - p) / (ss / (n - p)), rel=1e-5
    )
    assert ours["working_correlation"]["alpha"] != pytest.approx(alpha, rel=1e-3)


def test_end_of_course_logistic_equals_geeglm(demo, ref):
    """One row per patient: GEE is logistic regression with sandwich SEs; no convention to differ."""
    _check_fixed(
        _coefs(demo[1]["response_end"]),
        _ref(ref, "response_end", 0, "geeglm", "fixed"),
        rel=1e-6,
        se_rel=1e-6,
    )


def test_unstructured_gee_reference_is_beat_the_blues(ref):
    """geepack 1.3.9 crashes (segfault in geese.fit) on an unstructured correlation when a
    patient misses a session between two rated ones, as demo patients do; the R script records
    that, and the kind's reference is Beat the Blues (tests/test_models_sensitivity.py)."""
    row = ref[ref.model == "mmrm_gee"]
    assert list(row.kind) == ["skipped"] and row.term.iloc[0] == "intermittent missing sessions"


# ----------------------------------------------------------------------------------- MMRM
def test_mmrm_equals_nlme_gls_on_the_demo(demo, ref):
    """Kind mmrm (unstructured covariance across sessions, REML) against nlme::gls (corSymm + varIdent) on
    the rows the kind analyses: the demo's patients miss sessions between rated ones, which gls handles.
    gls stops a little short of the optimum (its -2 log-likelihood is above ours), so estimates agree to
    2e-4 SE and SEs to 5e-5 relative; the tight checks of the engine are tests/test_mmrm.py's."""
    out = demo[1]["mmrm"]
    assert out["covariance"]["structure"] == "us" and out["method"] == "REML"
    want = _ref(ref, "mmrm", 0, "gls", "fixed")
    fit = _ref(ref, "mmrm", 0, "gls", "fit")
    ours = _coefs(out)
    assert sorted(ours) == sorted(want.index)
    for term, row in want.iterrows():
        c = ours[term]
        assert abs(c["estimate"] - row.estimate) <= 2e-4 * row.se, term
        assert c["se"] == pytest.approx(row.se, rel=5e-5), term
    assert out["loglik"] == pytest.approx(fit.loc["logLik", "estimate"], rel=1e-6)
    assert out["loglik"] >= fit.loc["logLik", "estimate"] - 1e-9
    assert out["nobs"] == fit.loc["nobs", "estimate"]
