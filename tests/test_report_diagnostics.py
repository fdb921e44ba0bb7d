"""Diagnostics from a model's JSON reproduce statsmodels' own fitted values; BLUP variances
match the closed form of the random-intercept model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from ketastats.report.diagnostics import model_diagnostics


@pytest.fixture(scope="module")
def sleep(data_dir):
    return pd.read_csv(data_dir / "sleepstudy.csv")


def json_from_statsmodels(res, formula, re_formula, group):
    """A model JSON in ketastats' format, written from statsmodels' own fit."""
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
    }


@pytest.mark.parametrize("re_formula", ["~Days", "~1"])
def test_fitted_values_match_statsmodels(sleep, re_formula):
    res = smf.mixedlm("Reaction ~ Days", sleep, groups=sleep["Subject"], re_formula=re_formula).fit(reml=True)
    model = json_from_statsmodels(res, "Reaction ~ Days", re_formula, "Subject")
    diag = model_diagnostics(model, sleep)
    np.testing.assert_allclose(diag.frame["fitted"].to_numpy(), res.fittedvalues.to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(diag.frame["residual"].to_numpy(), res.resid.to_numpy(), rtol=1e-8, atol=1e-8)
    assert len(diag.blups) == sleep["Subject"].nunique() * (2 if re_formula == "~Days" else 1)


def test_blup_conditional_sd_closed_form_random_intercept(sleep):
    res = smf.mixedlm("Reaction ~ Days", sleep, groups=sleep["Subject"]).fit(reml=True)
    model = json_from_statsmodels(res, "Reaction ~ Days", "~1", "Subject")
    diag = model_diagnostics(model, sleep.iloc[5:])  # unequal group sizes: one patient has 5 rows
    tau2, sigma2 = float(res.cov_re.iloc[0, 0]), float(res.scale)
    n = sleep.iloc[5:].groupby(sleep["Subject"].astype(str)).size()
    expect = np.sqrt(1 / (1 / tau2 + n / sigma2))
    got = diag.blups.set_index("group")["cond_sd"]
    np.testing.assert_allclose(got.loc[expect.index].to_numpy(), expect.to_numpy(), rtol=1e-10)


def test_missing_outcome_rows_are_left_out_as_in_the_fit(sleep):
    res = smf.mixedlm("Reaction ~ Days", sleep, groups=sleep["Subject"]).fit(reml=True)
    model = json_from_statsmodels(res, "Reaction ~ Days", None, "Subject")
    gappy = sleep.copy()
    gappy.loc[[0, 7, 33], "Reaction"] = np.nan
    diag = model_diagnostics(model, gappy)
    assert len(diag.frame) == len(sleep) - 3
    assert not diag.frame.index.isin([0, 7, 33]).any()


def test_a_model_json_that_does_not_match_the_data_is_refused(sleep):
    from ketastats.exceptions import ModelError

    res = smf.mixedlm("Reaction ~ Days", sleep, groups=sleep["Subject"]).fit(reml=True)
    model = json_from_statsmodels(res, "Reaction ~ Days", None, "Subject")
    model["coefficients"] = [c for c in model["coefficients"] if c["term"] != "Days"]
    with pytest.raises(ModelError, match="no coefficient"):
        model_diagnostics(model, sleep)


def test_post_baseline_models_are_diagnosed_on_their_own_rows(sleep):
    sleep = sleep.rename(columns={"Days": "session"}).assign(session=lambda d: d["session"] + 1)
    post = sleep[sleep["session"] > 1]
    res = smf.mixedlm("Reaction ~ session", post, groups=post["Subject"], re_formula="~session").fit(
        reml=True
    )
    model = json_from_statsmodels(res, "Reaction ~ session", "~session", "Subject")
    model["spec"]["sessions"] = "post_baseline"
    model["nobs"] = len(post)
    diag = model_diagnostics(model, sleep)  # the full table, baseline rows included
    assert list(diag.frame.index) == list(post.index)
    np.testing.assert_allclose(diag.frame["fitted"].to_numpy(), res.fittedvalues.to_numpy(), rtol=1e-10)


def test_rows_the_report_cannot_reselect_are_refused(sleep):
    from ketastats.exceptions import ModelError

    res = smf.mixedlm("Reaction ~ Days", sleep, groups=sleep["Subject"]).fit(reml=True)
    model = json_from_statsmodels(res, "Reaction ~ Days", None, "Subject")
    model["nobs"] = len(sleep) - 12  # e.g. rows removed by an estimand strategy
    with pytest.raises(ModelError, match="used 168 rows, but its formulas select 180"):
        model_diagnostics(model, sleep)
