"""One result type: ModelResult's JSON is the same for the workflow and ``ketastats fit``,
round-trips byte for byte, and its fitted values and predictions are the model's own."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from demo_cohort import demo_sessions, shipped_estimands, shipped_spec

from ketastats.cli import main
from ketastats.exceptions import ModelError
from ketastats.models import ModelResult, fit_model, run_model
from ketastats.models.result import SCHEMA_VERSION
from ketastats.outputs import write_json


@pytest.fixture(scope="module")
def primary():
    return fit_model("primary", shipped_spec("primary"), demo_sessions(), shipped_estimands())


def test_the_workflow_and_ketastats_fit_write_one_schema(primary, data_dir, tmp_path):
    out = tmp_path / "fit.json"
    argv = ["fit", str(data_dir / "btheb_long.csv"), "--formula", "bdi ~ bdi_pre + time + treatment + drug",
            "--group", "id", "--engine", "fast", "--json", str(out),
            "--reference", "treatment=TAU", "--reference", "drug=No"]
    assert main(argv) == 0
    cli = json.loads(out.read_text())
    workflow = primary.to_json()
    assert cli["schema_version"] == workflow["schema_version"] == SCHEMA_VERSION
    # every key of the envelope is in both; the CLI adds only its timings
    assert set(workflow) - {"estimands", "row_filters"} - set(cli) <= {"counted_text"}
    assert set(cli) - set(workflow) == {"seconds"}
    for c in cli["coefficients"]:
        assert set(c) >= {"term", "estimate", "se", "df", "ci_low", "ci_high", "p_value", "df_method"}
    # the CLI's design keeps the reference levels: its fitted values need no refit and no guess
    res = ModelResult.from_json(out)
    assert list(res.design.rows["treatment"].cat.categories)[0] == "TAU"
    f = res.fitted()
    data = pd.read_csv(data_dir / "btheb_long.csv").dropna(subset=["bdi", "bdi_pre", "time", "treatment", "drug"])
    data["treatment"] = pd.Categorical(data["treatment"], categories=["TAU", "BtheB"])
    data["drug"] = pd.Categorical(data["drug"], categories=["No", "Yes"])
    ref = smf.mixedlm("bdi ~ bdi_pre + time + treatment + drug", data, groups=data["id"]).fit(reml=True)
    assert len(f) == res.nobs == len(data)
    # statsmodels' optimum is close to, not equal to, the fast engine's (lme4's): 1e-3 points
    np.testing.assert_allclose(np.sort(f["fitted_marginal"]), np.sort(ref.model.exog @ ref.fe_params), atol=1e-3)


def test_the_json_round_trips_byte_for_byte(primary, tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    write_json(a, primary.to_json())
    write_json(b, ModelResult.from_json(a).to_json())
    assert a.read_bytes() == b.read_bytes()
    back = ModelResult.from_json(a)
    np.testing.assert_array_equal(back.fitted()["fitted"], primary.fitted()["fitted"])
    assert back.coefficient("ill_within") == primary.coefficient("ill_within")


def test_run_model_writes_what_fit_model_returns(primary):
    again = run_model("primary", shipped_spec("primary"), demo_sessions(), shipped_estimands())
    assert again == primary.to_json()


def test_predict_centres_as_the_model_did(primary):
    """New rows of the analysed patients are centred on the means of the rows the model analysed:
    predicting the analysed rows from their raw columns gives the model's fitted values."""
    design = primary.design
    raw = design.rows.drop(columns=["ill_within", "ill_between"])
    np.testing.assert_allclose(primary.predict(raw), primary.fitted()["fitted"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(
        primary.predict(raw, conditional=False), primary.fitted(conditional=False)["fitted"], rtol=0, atol=1e-10
    )
    # a patient the model never saw: centred on their own rows, BLUPs zero
    new = raw[raw["patient_id"] == raw["patient_id"].iloc[0]].assign(patient_id="NEW")
    assert np.isfinite(primary.predict(new)).all()
    np.testing.assert_allclose(primary.predict(new), primary.predict(new, conditional=False))


def test_a_result_is_refused_when_newer_or_without_design():
    with pytest.raises(ModelError, match="schema 99"):
        ModelResult.from_json({"name": "m", "kind": "lmm", "schema_version": 99})
    skipped = ModelResult.from_json({"name": "m", "kind": "cytokine_illness", "status": "skipped"})
    with pytest.raises(ModelError, match="no single design"):
        skipped.fitted()


@pytest.mark.parametrize("name", ["response_gee", "response_glmm", "mmrm_gee"])
def test_other_kinds_carry_their_rows(name):
    spec = shipped_spec(name)
    res = fit_model(name, spec, demo_sessions(), shipped_estimands())
    assert res.design is not None and len(res.design.rows) == res.nobs
    f = res.fitted()
    if spec["kind"] in ("gee_binary", "glmm_binary"):
        assert f["fitted"].between(0, 1).all()
    assert np.isfinite(f["residual"]).all()
