"""Diagnostics from a model's result reproduce statsmodels' own fitted values; BLUP variances
match the closed form of the random-intercept model; the report's residuals of the demo's
primary model are the model's own."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from ketastats.models.result import design_of
from ketastats.report.diagnostics import model_diagnostics


@pytest.fixture(scope="module")
def sleep(data_dir):
    return pd.read_csv(data_dir / "sleepstudy.csv")


def json_from_statsmodels(res, formula, re_formula, group, rows):
    """A model JSON in ketastats' format, written from statsmodels' own fit to ``rows``."""
    sm_names = list(res.cov_re.columns)  # statsmodels calls the random intercept "Group"
    names = ["Intercept" if n == "Group" else n for n in sm_names]
    re = res.random_effects
    labels = sorted(re)
    return {
        "name": "sm",
        "spec": {"formula": formula, "re_formula": re_formula, "group": group},
        "coefficients": [{"term": t, "estimate": float(v)} for t, v in res.fe_params.items()],
        "random": {"group": group, "names": names, "cov": res.cov_re.to_numpy().tolist()},
        "residual_variance": float(res.scale),
        "blups": {
            "group": [str(g) for g in labels],
            **{n: [float(re[g][m]) for g in labels] for n, m in zip(names, sm_names)},
        },
        "nobs": len(rows),
        "design": design_of(
            rows, formula, re_formula, group, list(res.fe_params.index), names
        ).to_json(),
    }


@pytest.mark.parametrize("re_formula", ["~Days", "~1"])
def test_fitted_values_match_statsmodels(sleep, re_formula):
    res = smf.mixedlm("Reaction ~ Days", sleep, groups=sleep["Subject"], re_formula=re_formula).fit(reml=True)
    model = json_from_statsmodels(res, "Reaction ~ Days", re_formula, "Subject", sleep)
    diag = model_diagnostics(model, sleep)
    np.testing.assert_allclose(diag.frame["fitted"].to_numpy(), res.fittedvalues.to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(diag.frame["residual"].to_numpy(), res.resid.to_numpy(), rtol=1e-8, atol=1e-8)
    assert len(diag.blups) == sleep["Subject"].nunique() * (2 if re_formula == "~Days" else 1)


def test_blup_conditional_sd_closed_form_random_intercept(sleep):
    part = sleep.iloc[5:]  # unequal group sizes: one patient has 5 rows
    res = smf.mixedlm("Reaction ~ Days", part, groups=part["Subject"]).fit(reml=True)
    model = json_from_statsmodels(res, "Reaction ~ Days", "~1", "Subject", part)
    diag = model_diagnostics(model)
    tau2, sigma2 = float(res.cov_re.iloc[0, 0]), float(res.scale)
    n = sleep.iloc[5:].groupby(sleep["Subject"].astype(str)).size()
    expect = np.sqrt(1 / (1 / tau2 + n / sigma2))
    got = diag.blups.set_index("group")["cond_sd"]
    np.testing.assert_allclose(got.loc[expect.index].to_numpy(), expect.to_numpy(), rtol=1e-10)


def test_missing_outcome_rows_are_left_out_as_in_the_fit(sleep):
    gappy = sleep.copy()
    gappy.loc[[0, 7, 33], "Reaction"] = np.nan
    used = gappy.dropna()
    res = smf.mixedlm("Reaction ~ Days", used, groups=used["Subject"]).fit(reml=True)
    model = json_from_statsmodels(res, "Reaction ~ Days", None, "Subject", used)
    diag = model_diagnostics(model, gappy)
    assert len(diag.frame) == len(sleep) - 3
    dropped = set(zip(sleep.loc[[0, 7, 33], "Subject"].astype(str), sleep.loc[[0, 7, 33], "Days"]))
    kept = set(zip(diag.frame["group"], used["Days"]))
    assert not dropped & kept


def test_a_model_json_that_does_not_match_the_data_is_refused(sleep):
    from ketastats.exceptions import ModelError

    res = smf.mixedlm("Reaction ~ Days", sleep, groups=sleep["Subject"]).fit(reml=True)
    model = json_from_statsmodels(res, "Reaction ~ Days", None, "Subject", sleep)
    model["coefficients"] = [c for c in model["coefficients"] if c["term"] != "Days"]
    with pytest.raises(ModelError, match="no coefficient"):
        model_diagnostics(model, sleep)


def test_post_baseline_models_are_diagnosed_on_their_own_rows(sleep):
    sleep = sleep.rename(columns={"Days": "session"}).assign(session=lambda d: d["session"] + 1)
    post = sleep[sleep["session"] > 1]
    res = smf.mixedlm("Reaction ~ session", post, groups=post["Subject"], re_formula="~session").fit(
        reml=True
    )
    model = json_from_statsmodels(res, "Reaction ~ session", "~session", "Subject", post)
    model["spec"]["sessions"] = "post_baseline"
    model["nobs"] = len(post)
    diag = model_diagnostics(model, sleep)  # the full table, baseline rows included: not used
    assert list(zip(diag.frame["group"], diag.frame["session"])) == list(
        zip(post["Subject"].astype(str), post["session"])
    )
    np.testing.assert_allclose(diag.frame["fitted"].to_numpy(), res.fittedvalues.to_numpy(), rtol=1e-10)


def test_rows_the_report_cannot_reselect_are_refused(sleep):
    from ketastats.exceptions import ModelError

    res = smf.mixedlm("Reaction ~ Days", sleep, groups=sleep["Subject"]).fit(reml=True)
    model = json_from_statsmodels(res, "Reaction ~ Days", None, "Subject", sleep)
    model["nobs"] = len(sleep) - 12  # a result whose design does not hold the rows it counts
    with pytest.raises(ModelError, match="used 168 rows, but its formulas select 180"):
        model_diagnostics(model, sleep)


def test_the_report_residuals_of_the_demo_primary_model_are_the_models_own():
    """The report's residuals (and the notebooks' fitted values) come from the model's own
    rows and centring. Rebuilding the design from the processed table re-centred
    ``ill_within`` over every session, baseline included, and moved fitted values by up to
    half a MADRS point; this test compares with the engine's own residuals to 1e-10."""
    from demo_cohort import demo_sessions, shipped_estimands, shipped_spec

    from ketastats.models import fit_model
    from ketastats.models.engines.lmm import design_matrices
    from ketastats.models.fitting import fit_spec_lmm, formulas_for
    from ketastats.models.rows import model_rows

    data, spec, estimands = demo_sessions(), shipped_spec("primary"), shipped_estimands()
    result = fit_model("primary", spec, data, estimands)
    diag = model_diagnostics(result.to_json())
    # the model's own: the engine's fit on the rows model_rows gave it, y - X beta - Z b
    formula, re_formula = formulas_for(spec)
    outcome = formula.split("~", 1)[0].strip()
    rows, _ = model_rows(data, spec, estimands, outcome=outcome,
                         terms=[formula.split("~", 1)[1], re_formula or ""], what="primary")
    fit = fit_spec_lmm(rows, formula, re_formula, spec, 0.05)
    y, X, Z, groups, _, znames, _ = design_matrices(rows, formula, spec["group"], re_formula)
    beta = fit.result.fixed["estimate"].to_numpy(float)
    b = fit.result.blups.assign(group=lambda d: d["group"].astype(str)).set_index("group")
    own = y - X @ beta - np.sum(Z * b.loc[np.asarray(groups).astype(str), znames].to_numpy(float), axis=1)
    got = diag.frame.set_index(["group", "session"])["residual"]
    key = pd.MultiIndex.from_arrays([np.asarray(groups).astype(str), rows["session"].to_numpy()])
    assert len(got) == len(own) == result.nobs
    np.testing.assert_allclose(got.loc[key].to_numpy(), own, rtol=0, atol=1e-10)
    # what the report did before: the design rebuilt from the processed table, centred over all sessions
    allc = data.assign(ill_within=data["ill"] - data.groupby("patient_id")["ill"].transform("mean"))
    moved = allc.set_index(["patient_id", "session"]).loc[key, "ill_within"].to_numpy() - rows["ill_within"].to_numpy()
    assert np.abs(moved).max() > 0.05  # the old way would have been off on these rows
