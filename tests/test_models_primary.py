"""The model kinds on synthetic cohorts with known truth (tests/models_sim.py): recovery of
the true effects, the model JSON, estimands, and skipped/failed models said plainly."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from models_sim import prepared_cohort

from ketastats.exceptions import KetastatsError
from ketastats.models import resolve_estimands, resolve_spec, run_model
from ketastats.pipeline import step_fit

ENVELOPE = {
    "name", "kind", "label", "role", "spec", "estimands", "status", "reason", "converged", "singular",
    "attempts", "engine", "method", "nobs", "ngroups", "df_method", "coefficients", "illness_effect",
    "random", "residual_variance", "loglik", "blups", "messages",
}  # fmt: skip
COEF_KEYS = {"term", "estimate", "se", "ci_low", "ci_high", "p_value", "df", "df_method"}
DEFAULT_EST = resolve_estimands(None)


def _within(est: dict, truth: float, k: float = 3.0) -> bool:
    return abs(est["estimate"] - truth) < k * est["se"]


@pytest.fixture(scope="module")
def cohort():
    return prepared_cohort(200, seed=11, b_il6=1.5)


@pytest.fixture(scope="module")
def primary(cohort):
    df, _ = cohort
    spec = resolve_spec("primary", {"kind": "lmm", "role": "primary"})
    return run_model("primary", spec, df, DEFAULT_EST)


def test_primary_model_recovers_the_true_effects(primary, cohort):
    _, truth = cohort
    assert primary["status"] == "ok" and primary["converged"] and not primary["singular"]
    terms = {c["term"]: c for c in primary["coefficients"]}
    # (ill_between is not checked: few patients inform it, see the module's notes in the report)
    for term in ("ill_within", "days_since_prev", "madrs_baseline"):
        assert _within(terms[term], truth[term]), (term, terms[term]["estimate"], truth[term])
    assert _within(terms["ill_lag1"], 0.0)


def test_primary_model_json_has_every_key(primary):
    assert ENVELOPE <= set(primary)
    assert primary["random"]["names"] == ["Intercept", "progress"]
    assert primary["method"] == "REML" and primary["df_method"] == "bell_mccaffrey"  # se: cr2, the default
    for c in primary["coefficients"]:
        assert COEF_KEYS <= set(c)
        assert c["df_method"] == "bell_mccaffrey" and c["df"] > 0
        assert c["ci_low"] < c["estimate"] < c["ci_high"]
    # the analysed sessions are the post-baseline ones (5 of 6 per patient)
    assert primary["nobs"] == 200 * 5 and primary["ngroups"] == 200
    assert (
        set(primary["blups"]) == {"group", "Intercept", "progress"} and len(primary["blups"]["group"]) == 200
    )
    assert primary["attempts"] and primary["attempts"][-1]["ok"] is True


def test_illness_effect_is_in_points_against_the_mcid(primary):
    eff = primary["illness_effect"]
    row = next(c for c in primary["coefficients"] if c["term"] == "ill_within")
    assert eff["estimate"] == row["estimate"] and eff["ci_low"] == row["ci_low"]
    assert eff["mcid"] == 2.0 and eff["scale"] == "points"
    lo, hi = eff["ci_low"], eff["ci_high"]
    expected = (
        "the CI excludes effects as large as the MCID"
        if -2 < lo and hi < 2
        else "the whole CI is at or beyond the MCID"
        if lo >= 2 or hi <= -2
        else "the CI includes effects as large as the MCID"
    )
    assert eff["versus_mcid"] == expected


def test_step_fit_writes_identical_bytes_twice(cohort, tmp_path):
    df, _ = cohort
    small = df[df["patient_id"] < "P0060"]
    spec = {"kind": "gee_binary", "outcome": "madrs_remission"}
    step_fit(small, spec, tmp_path / "a.json", name="rem", estimands=DEFAULT_EST)
    step_fit(small, spec, tmp_path / "b.json", name="rem", estimands=DEFAULT_EST)
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    out = json.loads((tmp_path / "a.json").read_text())
    assert out["name"] == "rem" and out["estimands"]["postponement"]["strategy"] == "treatment_policy"


def test_hypothetical_postponement_removes_postponed_ratings(cohort):
    df, _ = cohort
    spec = resolve_spec("p", {"kind": "lmm", "random": [], "df_method": "normal"})
    est = resolve_estimands({"postponement": "hypothetical"})
    out = run_model("p", spec, df, est)
    n_post = int((df["postponed"] & (df["session"] > 1)).sum())
    assert n_post > 0
    assert out["estimands"]["postponement"]["strategy"] == "hypothetical"
    assert out["estimands"]["postponement"]["rows_removed"] == int(df["postponed"].sum())
    assert out["nobs"] == 200 * 5 - n_post
    assert all(c["df_method"] == "normal" and c["df"] is None for c in out["coefficients"])


@pytest.mark.parametrize(
    ("estimands", "reason"),
    [
        ({"discontinuation": "principal_stratum"}, "principal-stratum"),
        ({"postponement": "composite"}, "composite is defined for binary outcomes only"),
    ],
)
def test_undefined_estimand_skips_the_model_with_the_reason(cohort, estimands, reason):
    df, _ = cohort
    out = run_model("p", resolve_spec("p", {"kind": "lmm"}), df, resolve_estimands(estimands))
    assert out["status"] == "skipped" and reason in out["reason"]


def test_composite_postponement_makes_postponed_sessions_failures(cohort):
    df, _ = cohort
    spec = resolve_spec("r", {"kind": "gee_binary", "outcome": "madrs_response"})
    base = run_model("r", spec, df, DEFAULT_EST)
    comp = run_model("r", spec, df, resolve_estimands({"postponement": "composite"}))
    post = df[(df["session"] > 1) & df["postponed"]]
    assert comp["estimands"]["postponement"]["rows_changed"] == int(df["postponed"].sum())
    assert comp["events"] == base["events"] - int(post["madrs_response"].sum())


def test_cohort_without_illness_skips_illness_models(cohort):
    df, _ = cohort
    healthy = df.assign(ill=0.0, ill_within=0.0, ill_between=0.0, ill_lag1=0.0, ever_ill=0)
    for kind in ("lmm", "gee_binary", "glmm_binary", "illness_slopes", "mediation", "cytokine_illness"):
        out = run_model(kind, resolve_spec(kind, {"kind": kind}), healthy, DEFAULT_EST)
        assert out["status"] == "skipped", kind
        assert "ill session" in out["reason"] or "not estimable" in out["reason"], (kind, out["reason"])
        assert out["coefficients"] == [] and ENVELOPE <= set(out)


def test_cohort_without_cytokines_skips_cytokine_models(cohort):
    df, _ = cohort
    no_cyt = df.drop(columns=[c for c in df.columns if c.startswith(("il6", "crp"))])
    for kind in ("cytokine_illness", "cytokine_moderation", "mediation"):
        out = run_model(kind, resolve_spec(kind, {"kind": kind}), no_cyt, DEFAULT_EST)
        assert out["status"] == "skipped", kind
        assert "il6_pg_ml" in out["reason"] and "not in the data" in out["reason"]


def test_switched_off_model_is_skipped(cohort):
    df, _ = cohort
    out = run_model("x", resolve_spec("x", {"kind": "lmm", "enabled": False}), df, DEFAULT_EST)
    assert out["status"] == "skipped" and "switched off" in out["reason"]


def test_unexpected_failure_is_reported_unless_required(cohort):
    df, _ = cohort
    bad = {"kind": "lmm", "fixed": ["progress", "I(2 * progress)"], "random": []}
    out = run_model("bad", resolve_spec("bad", bad), df, DEFAULT_EST)
    assert out["status"] == "failed" and "rank deficient" in out["reason"]
    with pytest.raises(KetastatsError, match="rank deficient"):
        run_model("bad", resolve_spec("bad", {**bad, "required": True}), df, DEFAULT_EST)


def test_cytokine_illness_recovers_the_marker_pulses(cohort):
    df, truth = cohort
    spec = resolve_spec("cyt", {"kind": "cytokine_illness", "df_method": "normal"})
    out = run_model("cyt", spec, df, DEFAULT_EST)
    assert out["status"] == "ok"
    assert set(out["skipped_parts"]) == {"tnfa_pg_ml", "il1b_pg_ml"}
    effects = {m: f["illness_effect"] for m, f in out["fits"].items()}
    assert _within(effects["il6_pg_ml"], truth["a_il6"]) and _within(effects["crp_mg_l"], 1.5)
    assert effects["il6_pg_ml"]["ratio"] == pytest.approx(np.exp(effects["il6_pg_ml"]["estimate"]))
    assert [t["id"] for t in out["bh_adjusted"]] == ["il6_pg_ml:illness", "crp_mg_l:illness"]
    # while-on-treatment (default) drops the draws from the first NSAID on: fewer than treatment policy
    tp = run_model("cyt", spec, df, resolve_estimands({"illness_medication": "treatment_policy"}))
    assert tp["fits"]["il6_pg_ml"]["nobs"] > out["fits"]["il6_pg_ml"]["nobs"]
    assert out["estimands"]["illness_medication"]["rows_changed"] > 0


def test_mediation_recovers_the_indirect_effect(cohort):
    df, truth = cohort
    spec = resolve_spec("med", {"kind": "mediation", "df_method": "normal", "n_draws": 20000})
    out = run_model("med", spec, df, resolve_estimands({"illness_medication": "treatment_policy"}))
    assert out["status"] == "ok"
    assert _within(out["paths"]["a"], truth["a_il6"]) and _within(out["paths"]["b"], truth["b_il6"])
    ind = out["indirect_effect"]
    assert ind["ci_low"] < truth["a_il6"] * truth["b_il6"] < ind["ci_high"]
    assert ind["estimate"] == pytest.approx(out["paths"]["a"]["estimate"] * out["paths"]["b"]["estimate"])
    assert _within(out["paths"]["c_prime"], truth["direct"])


def test_moderation_has_the_random_illness_slope_and_one_test_per_moderator(cohort):
    df, _ = cohort
    spec = resolve_spec(
        "mod", {"kind": "cytokine_moderation", "random": ["ill_within"], "df_method": "normal"}
    )
    out = run_model("mod", spec, df, DEFAULT_EST)
    assert out["status"] == "ok"
    for marker in ("il6_pg_ml", "crp_mg_l"):
        fit = out["fits"][marker]
        assert fit["random"]["names"] == ["Intercept", "ill_within"]
        assert fit["interaction"]["term"] == f"{marker}: ill_within:{marker}_base_c"
        # no true moderation in the simulation
        assert _within(fit["interaction"], 0.0)
    assert [t["id"] for t in out["tests"]] == ["il6_pg_ml:moderation", "crp_mg_l:moderation"]


def test_illness_slopes_detect_true_spread():
    df, truth = prepared_cohort(150, seed=5, slope_sd=4.0, p_ill_patient=0.9)
    spec = resolve_spec("sl", {"kind": "illness_slopes", "random": ["ill_within"], "df_method": "normal"})
    out = run_model("sl", spec, df, DEFAULT_EST)
    assert out["status"] == "ok"
    sl = out["illness_slopes"]
    assert sl["lrt"]["p_value"] < 0.05
    assert sl["sd"] == pytest.approx(truth["slope_sd"], rel=0.5)
    assert len(sl["predicted_effects"]) == int(df.loc[df["ill"] > 0, "patient_id"].nunique())
    assert sl["expected_range_95"][0] < sl["mean_effect"] < sl["expected_range_95"][1]


def test_mixed_logistic_odds_ratio_is_larger_than_the_marginal_one(cohort):
    """Subject-specific (GLMM) log odds ratios exceed population-averaged (GEE) ones in
    magnitude, by about sqrt(1 + 0.346 sigma^2) (Zeger, Liang & Albert 1988)."""
    df, _ = cohort
    gee = run_model(
        "g", resolve_spec("g", {"kind": "gee_binary", "outcome": "madrs_remission"}), df, DEFAULT_EST
    )
    glmm = run_model(
        "m",
        resolve_spec("m", {"kind": "glmm_binary", "outcome": "madrs_remission", "n_agq": 5}),
        df,
        DEFAULT_EST,
    )
    assert gee["status"] == glmm["status"] == "ok" and glmm["converged"]
    assert glmm["estimand_scale"].startswith("subject-specific") and gee["estimand_scale"].startswith(
        "population"
    )
    sigma2 = glmm["random"]["cov"][0][0]
    ratio = np.sqrt(1 + 0.346 * sigma2)
    b_gee = {c["term"]: c for c in gee["coefficients"]}
    b_glmm = {c["term"]: c for c in glmm["coefficients"]}
    for term in ("madrs_baseline", "ill_within"):
        assert abs(b_glmm[term]["estimate"]) > abs(b_gee[term]["estimate"])
        assert b_glmm[term]["estimate"] / b_gee[term]["estimate"] == pytest.approx(ratio, rel=0.15)
    assert glmm["method"] == "ML (adaptive Gauss-Hermite, 5 nodes)"
    assert len(glmm["blups"]["group"]) == glmm["ngroups"]


def test_estimands_read_nullable_boolean_flags(cohort):
    """The contract may type flags as nullable booleans: a missing flag counts as not postponed."""
    df, _ = cohort
    flagged = df.copy()
    flagged["postponed"] = flagged["postponed"].astype("boolean")
    flagged.loc[flagged.index[:3], "postponed"] = pd.NA
    spec = resolve_spec("p", {"kind": "gee_binary", "outcome": "madrs_remission"})
    out = run_model("p", spec, flagged, resolve_estimands({"postponement": "hypothetical"}))
    assert out["status"] == "ok", out["reason"]
    assert out["estimands"]["postponement"]["rows_removed"] == int(flagged["postponed"].fillna(False).sum())
