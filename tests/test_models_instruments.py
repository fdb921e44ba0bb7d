"""Any instrument, with or without illness data: every shipped model follows the cohort's score."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import yaml
from models_sim import prepared_cohort

from ketastats.config import check_config, cohort_estimands, model_spec
from ketastats.models import run_model
from ketastats.prepare import prepare_sessions


@pytest.fixture(scope="module")
def hamd_cohort():
    """A HAM-D 17 cohort with no illness and no cytokine data (weekly ratings, as an older trial)."""
    df, _ = prepared_cohort(80, seed=3)
    raw = df[["patient_id", "session", "day"]].copy()
    raw["hamd17"] = np.clip(np.round(df["madrs"] * 52 / 60), 0, 52)
    return prepare_sessions(raw)


@pytest.fixture(scope="module")
def config(project_root):
    cfg = yaml.safe_load((project_root / "config/config.yaml").read_text())
    cfg = copy.deepcopy(cfg)
    cfg["cohorts"]["demo"]["outcome"] = "hamd17"
    cfg["cohorts"]["demo"]["schedule_unit"] = "week"
    return check_config(cfg)


def test_without_illness_data_the_outcome_model_runs_and_nothing_fails(hamd_cohort, config):
    assert "ill" not in hamd_cohort.columns and "hamd17_response" in hamd_cohort.columns
    est = cohort_estimands(config, "demo")
    statuses = {}
    for name in config["models"]:
        spec = model_spec(config, "demo", name)
        if spec["kind"] in ("lmm_mi", "tipping_point"):
            spec = {**spec, "imputations": 2, "iterations": 2, "deltas": [0]}
        out = run_model(name, spec, hamd_cohort, est)
        statuses[name] = out["status"]
        assert out["status"] != "failed", (name, out["reason"])
        if out["status"] == "skipped":
            assert re.search(r"needs (column|the illness)|not in the data", out["reason"]), (name, out["reason"])
    primary = run_model("primary", model_spec(config, "demo", "primary"), hamd_cohort, est)
    assert statuses["primary"] == "ok"
    assert primary["formula"].startswith("hamd17 ~ ") and "hamd17_baseline" in primary["formula"]
    assert "ill" not in primary["formula"] and primary["illness_effect"] is None
    assert primary["messages"][0].startswith("no illness data in this cohort")
    assert primary["label"] == "Primary: HAM-D 17 by illness (linear mixed model)"
