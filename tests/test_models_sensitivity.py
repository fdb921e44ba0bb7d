"""Sensitivity analyses on simulated cohorts with a known answer (issue 6): the marginal
GEE with an unstructured working correlation (MMRM analogue), complete-case analysis,
leaving out sessions near an illness onset, the non-detect flag, and the censored
likelihood against substitution for a log-normal's mean."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import patsy
import pytest
from models_sim import prepared_cohort

from ketastats.models import fit_mixed, resolve_estimands, resolve_spec, run_model
from ketastats.models.engines.tobit import fit_tobit_lmm

EST = resolve_estimands(None)


def _fit(name: str, project: dict, df: pd.DataFrame) -> dict:
    out = run_model(name, resolve_spec(name, project), df, EST)
    json.dumps(out, allow_nan=False)  # the model JSON stays valid JSON
    return out


def _covers(eff: dict, truth: float) -> bool:
    return eff["ci_low"] <= truth <= eff["ci_high"]


# --------------------------------------------------------------- marginal GEE (MMRM analogue)
@pytest.fixture(scope="module")
def gee_cohort():
    return prepared_cohort(400, seed=21, gamma_between=2.0)


def test_gee_unstructured_recovers_the_within_person_effect(gee_cohort):
    df, truth = gee_cohort
    out = _fit("mmrm_gee", {"kind": "gee"}, df)
    assert out["status"] == "ok" and out["converged"]
    eff = out["illness_effect"]
    assert eff["term"] == "ill_within" and eff["scale"] == "points"
    assert _covers(eff, truth["ill_within"])
    # the between-person term carries the confounding; the within-person one does not
    between = next(c for c in out["coefficients"] if c["term"] == "ill_between")
    assert abs(between["estimate"] - truth["ill_within"]) > abs(eff["estimate"] - truth["ill_within"])
    wc = out["working_correlation"]
    mat = np.array(wc["matrix"])
    assert wc["structure"] == "unstructured" and wc["sessions"] == [2, 3, 4, 5, 6]
    assert mat.shape == (5, 5)
    np.testing.assert_allclose(np.diag(mat), 1.0)
    np.testing.assert_allclose(mat, mat.T)
    assert out["se_type"] == "robust (sandwich)"


def _gls_sandwich(d: pd.DataFrame, formula: str, R: np.ndarray, phi: float, sessions, beta=None):
    """GEE's estimating equations by hand at a given working correlation R and scale phi:
    the GLS solution beta, its score at ``beta`` (if given), and the robust sandwich SEs."""
    y, X = patsy.dmatrices(formula, d, return_type="dataframe")
    A = np.zeros((X.shape[1], X.shape[1]))
    b = np.zeros(X.shape[1])
    blocks = []
    for rows in d.groupby("patient_id").groups.values():
        rows = [r for r in rows if r in X.index]
        Xi, yi = X.loc[rows].to_numpy(), y.loc[rows].to_numpy().ravel()
        t = [list(sessions).index(s) for s in d.loc[rows, "session"]]
        Vinv = np.linalg.inv(phi * R[np.ix_(t, t)])
        A += Xi.T @ Vinv @ Xi
        b += Xi.T @ Vinv @ yi
        blocks.append((Xi, yi, Vinv))
    gls = np.linalg.solve(A, b)
    at = gls if beta is None else beta
    B = sum(np.outer(u, u) for u in (Xi.T @ Vinv @ (yi - Xi @ at) for Xi, yi, Vinv in blocks))
    Ainv = np.linalg.inv(A)
    return list(X.columns), gls, np.sqrt(np.diag(Ainv @ B @ Ainv))


def test_gee_is_the_gls_fixed_point_with_its_sandwich(gee_cohort):
    """Independent check of what GEE reports: with the reported working correlation R and
    scale, beta is the GLS solution of sum X_i' V_i^-1 (y_i - X_i beta) = 0, and the robust
    SE is the sandwich A^-1 B A^-1, both computed here by hand."""
    df, _ = gee_cohort
    out = _fit("mmrm_gee", {"kind": "gee"}, df)
    d = df[df["session"] > 1].dropna(subset=["madrs"]).copy()
    d["ill_between"] = d.groupby("patient_id")["ill"].transform("mean")
    d["ill_within"] = d["ill"] - d["ill_between"]
    wc = out["working_correlation"]
    beta = np.array([c["estimate"] for c in out["coefficients"]])
    names, gls, se = _gls_sandwich(
        d, out["formula"], np.array(wc["matrix"]), out["residual_variance"], wc["sessions"], beta
    )
    assert names == [c["term"] for c in out["coefficients"]]
    np.testing.assert_allclose(beta, gls, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([c["se"] for c in out["coefficients"]], se, rtol=1e-4)


@pytest.fixture(scope="module")
def btheb(data_dir):
    bt = pd.read_csv(data_dir / "btheb_long.csv").dropna(subset=["bdi"])
    bt = bt.rename(columns={"id": "patient_id", "time": "session"})
    bt["patient_id"] = bt["patient_id"].astype(str)
    ref = pd.read_csv(data_dir / "gee_unstructured_reference.csv")
    return bt, ref


BT_FIXED = ["bdi_pre", "C(session)", "C(treatment, Treatment('TAU'))", "drug", "C(length, Treatment('<6m'))"]
R_NAMES = {
    "Intercept": "(Intercept)",
    "C(session)[T.3]": "factor(time)3",
    "C(session)[T.5]": "factor(time)5",
    "C(session)[T.8]": "factor(time)8",
    "C(treatment, Treatment('TAU'))[T.BtheB]": "treatmentBtheB",
    "drug[T.Yes]": "drugYes",
    "C(length, Treatment('<6m'))[T.>6m]": "length>6m",
    "bdi_pre": "bdi_pre",
}


def test_gee_unstructured_agrees_with_geepack_on_beat_the_blues(btheb):
    """Real data (Beat the Blues, 4 visits with dropout) against R geepack's geeglm
    (gaussian, corstr = "unstructured"; tests/data/gee_unstructured_reference.R).
    At geepack's working correlation and scale, the estimating equations and sandwich give
    geepack's estimates and robust SEs to 1e-4; ketastats' own fit differs from geepack only
    through the moment estimator of the correlations (geepack's and statsmodels' differ in
    how they normalise pairs of visits), by less than 0.15 SE."""
    bt, ref = btheb
    spec = {"kind": "gee", "outcome": "bdi", "sessions": "all", "centre": [], "fixed": BT_FIXED}
    out = _fit("bt", spec, bt)
    assert out["status"] == "ok" and out["working_correlation"]["sessions"] == [2, 3, 5, 8]
    fixed = ref[ref.kind == "fixed"].set_index("term")
    corr = ref[ref.kind == "corr"].set_index("term")["estimate"]
    R = np.eye(4)
    for key, v in corr.items():
        i, j = (int(x) - 1 for x in key.removeprefix("alpha.").split(":"))
        R[i, j] = R[j, i] = v
    phi = float(ref.loc[ref.kind == "scale", "estimate"].iloc[0])
    names, gls, se = _gls_sandwich(bt, out["formula"], R, phi, [2, 3, 5, 8])
    want = fixed.loc[[R_NAMES[n] for n in names]]
    np.testing.assert_allclose(gls, want["estimate"], rtol=1e-4)
    np.testing.assert_allclose(se, want["se"], rtol=1e-4)
    ours = {c["term"]: c for c in out["coefficients"]}
    for n in names:
        diff = abs(ours[n]["estimate"] - fixed.loc[R_NAMES[n], "estimate"])
        assert diff < 0.15 * fixed.loc[R_NAMES[n], "se"], n


def test_gee_refuses_an_unstructured_correlation_over_too_many_sessions(gee_cohort):
    df, _ = gee_cohort
    out = _fit("mmrm_gee", {"kind": "gee", "max_times": 3}, df)
    assert out["status"] == "skipped"
    assert "unstructured" in out["reason"] and "exchangeable or ar1" in out["reason"]
    ex = _fit("gee_ex", {"kind": "gee", "correlation": "exchangeable", "max_times": 3}, df)
    assert ex["status"] == "ok" and ex["working_correlation"]["structure"] == "exchangeable"


# --------------------------------------------------------------- complete-case analysis
def _dropout_after_bad_illness(df: pd.DataFrame, rise: float, seed: int) -> pd.DataFrame:
    """MAR dropout: a patient whose rating rose by more than ``rise`` points at an ill
    session (an observed value) leaves after it, with probability 0.9."""
    rng = np.random.default_rng(seed)
    keep = []
    for _, g in df.groupby("patient_id", sort=False):
        g = g.sort_values("session")
        jump = g["madrs"].diff()
        bad = g.index[(g["ill"] == 1) & (jump > rise) & (g["session"] < g["session"].max())]
        if len(bad) and rng.random() < 0.9:
            g = g.loc[g["session"] <= g.loc[bad[0], "session"]]
        keep.append(g)
    return pd.concat(keep).reset_index(drop=True)


def test_complete_case_is_biased_under_mar_dropout_where_the_mixed_model_is_not():
    """Patients hit hardest by illness (a large personal illness effect) leave after an ill
    session: completers under-represent them, so complete-case analysis underestimates the
    mean illness effect; the likelihood analysis of all observed ratings (random slope on
    illness, valid under MAR) recovers it."""
    full, truth = prepared_cohort(700, seed=5, p_ill_patient=0.6, beta_ill=3.0, slope_sd=3.0, sd_u1=0.5)
    df = _dropout_after_bad_illness(full, rise=1.0, seed=5)
    dropped = full["patient_id"].nunique() - df.groupby("patient_id")["session"].max().eq(6).sum()
    assert dropped > 60
    spec = {"kind": "lmm", "random": ["progress", "ill_within"]}
    mar = _fit("all", spec, df)
    cc = _fit("cc", {**spec, "complete_case": True}, df)
    assert mar["status"] == cc["status"] == "ok"
    assert _covers(mar["illness_effect"], truth["ill_within"])
    e = cc["illness_effect"]
    assert e["ci_high"] < truth["ill_within"]  # biased toward smaller effects
    rec = cc["row_filters"]["complete_case"]
    assert rec["planned_sessions"] == [2, 3, 4, 5, 6]
    assert rec["patients_kept"] == cc["ngroups"] and rec["patients_removed"] >= dropped
    assert cc["ngroups"] + rec["patients_removed"] == df["patient_id"].nunique()


def test_complete_case_keeps_only_patients_with_every_planned_session():
    df, _ = prepared_cohort(60, seed=2)
    df = df.copy()
    df.loc[(df["patient_id"] == "P0001") & (df["session"] == 3), "madrs"] = np.nan
    df = df[~((df["patient_id"] == "P0002") & (df["session"] == 6))]
    out = _fit("cc", {"kind": "lmm", "complete_case": True}, df)
    assert out["row_filters"]["complete_case"]["patients_removed"] == 2
    assert out["ngroups"] == 58 and out["nobs"] == 58 * 5


# --------------------------------------------------------------- sessions near an illness onset
def _with_onset(df: pd.DataFrame, acute: float, later: float, seed: int) -> pd.DataFrame:
    """Add days_since_onset (0-9 days, uniform) to ill sessions and an illness effect of
    ``acute`` points within 3 days of the onset and ``later`` points after."""
    rng = np.random.default_rng(seed)
    df = df.copy()
    ill = df["ill"] == 1
    onset = pd.Series(pd.NA, index=df.index, dtype="Int64")
    onset[ill] = rng.integers(0, 10, int(ill.sum()))
    df["days_since_onset"] = onset
    recent = ill & (onset.fillna(99) <= 3)
    post = df["session"] > 1
    df.loc[post & recent, "madrs"] += acute
    df.loc[post & ill & ~recent, "madrs"] += later
    return df


def test_leaving_out_the_acute_phase_finds_no_effect_when_there_is_none_after_it():
    base, _ = prepared_cohort(500, seed=9, beta_ill=0.0, gamma_between=0.0, p_ill_patient=0.6)
    df = _with_onset(base, acute=5.0, later=0.0, seed=9)
    primary = _fit("p", {"kind": "lmm"}, df)
    excl = _fit("x", {"kind": "lmm", "exclude_onset_within_days": 3}, df)
    assert primary["illness_effect"]["ci_low"] > 0  # the acute effect shows in the primary model
    assert _covers(excl["illness_effect"], 0.0)
    rec = excl["row_filters"]["exclude_onset_within_days"]
    n_recent = int(((df["ill"] == 1) & (df["session"] > 1) & (df["days_since_onset"] <= 3)).sum())
    assert rec["sessions_removed"] == int(((df["ill"] == 1) & (df["days_since_onset"] <= 3)).sum())
    assert excl["nobs"] == primary["nobs"] - n_recent


def test_leaving_out_the_acute_phase_keeps_a_lasting_effect():
    base, _ = prepared_cohort(500, seed=10, beta_ill=0.0, gamma_between=0.0, p_ill_patient=0.6)
    df = _with_onset(base, acute=3.0, later=3.0, seed=10)
    excl = _fit("x", {"kind": "lmm", "exclude_onset_within_days": 3}, df)
    assert _covers(excl["illness_effect"], 3.0) and excl["illness_effect"]["ci_low"] > 0


def test_unknown_onset_is_left_out_and_missing_column_skips_plainly():
    base, _ = prepared_cohort(80, seed=3)
    df = _with_onset(base, acute=0.0, later=0.0, seed=3)
    first_ill = df.index[df["ill"] == 1][0]
    df.loc[first_ill, "days_since_onset"] = pd.NA
    out = _fit("x", {"kind": "lmm", "exclude_onset_within_days": 3}, df)
    assert out["row_filters"]["exclude_onset_within_days"]["onset_unknown_removed"] == 1
    skipped = _fit("x", {"kind": "lmm", "exclude_onset_within_days": 3}, base)
    assert skipped["status"] == "skipped" and "days_since_onset" in skipped["reason"]


# --------------------------------------------------------------- non-detects
def test_markers_over_30_percent_below_the_limit_are_flagged_with_their_handling():
    df, _ = prepared_cohort(150, seed=4)
    df = df.copy()
    # raise CRP's limit so that about half of its draws are non-detects
    drawn = df["crp_mg_l"].notna() | df["crp_mg_l_censored"]
    lod = float(df.loc[df["crp_mg_l"].notna(), "crp_mg_l"].median())
    below = drawn & (df["crp_mg_l"].isna() | (df["crp_mg_l"] < lod))
    df["crp_mg_l_lod"] = lod
    df["crp_mg_l_censored"] = below
    df.loc[below, "crp_mg_l"] = np.nan
    est = resolve_estimands({"illness_medication": "treatment_policy"})
    spec = resolve_spec("cyt", {"kind": "cytokine_illness", "markers": ["il6_pg_ml", "crp_mg_l"]})
    out = run_model("cyt", spec, df, est)
    frac = float(below.sum() / drawn.sum())
    assert 0.3 < frac < 0.8
    flags = out["censoring_flags"]
    assert set(flags) == {"crp_mg_l"}  # IL-6 (few non-detects) is not flagged
    assert flags["crp_mg_l"]["censored_fraction"] == pytest.approx(frac)
    assert flags["crp_mg_l"]["handling"] == "censored (tobit) likelihood"
    assert out["fits"]["crp_mg_l"]["draws"]["flagged"] is True
    assert any("crp_mg_l" in m and "30%" in m for m in out["messages"])
    sub = run_model("cyt", {**spec, "censoring": "lod_sqrt2", "max_censored_fraction": 0.3}, df, est)
    assert sub["censoring_flags"]["crp_mg_l"]["handling"].startswith("skipped")
    assert "crp_mg_l" in sub["skipped_parts"] and "il6_pg_ml" in sub["fits"]


def test_censored_likelihood_recovers_a_log_normal_mean_where_substitution_is_biased():
    """A log-normal marker with 60% of values below the LOD: the censored model recovers the
    mean of the log concentration (mu, the log geometric mean) and its total SD; LOD/sqrt(2)
    substitution biases mu upward and shrinks the SD (Hornung & Reed 1990)."""
    rng = np.random.default_rng(12)
    n, k, mu, tau, sigma = 400, 3, 0.4, 0.6, 0.5
    g = np.repeat(np.arange(n), k)
    logy = mu + rng.normal(0, tau, n)[g] + rng.normal(0, sigma, n * k)
    lod = float(np.quantile(logy, 0.6))
    cens = logy < lod
    r = fit_tobit_lmm(np.where(cens, lod, logy), cens, np.ones((n * k, 1)), g)
    assert r.converged and r.ncensored == int(cens.sum())
    sub = pd.DataFrame({"y": np.where(cens, lod - np.log(np.sqrt(2)), logy), "g": g})
    s = fit_mixed(sub, "y ~ 1", "g", None, reml=False, engine="statsmodels")
    mu_sub = float(s.fixed["estimate"].iloc[0])
    se = float(r.se[0])
    assert abs(r.beta[0] - mu) < 3 * se
    assert mu_sub - mu > 4 * se
    sd_true = np.hypot(tau, sigma)
    sd_tobit = np.hypot(r.tau, r.sigma)
    sd_sub = np.sqrt(float(s.re_cov[0, 0]) + s.residual_variance)
    assert sd_true - sd_sub > 3 * abs(sd_tobit - sd_true)
