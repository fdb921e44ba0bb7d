"""A HAM-D 17 cohort without illness or cytokine data gets a report by config alone."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import copy_project, run_snakemake

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def hamd_run(demo_run, tmp_path_factory):
    """The demo's patients rated on the HAM-D 17 (MADRS rescaled), weekly, with no illness,
    cytokine or MADRS item columns, added as a second cohort by a config edit only."""
    work = copy_project(Path(demo_run), tmp_path_factory.mktemp("hamd") / "p")
    src = pd.read_csv(demo_run / "data/raw/demo/sessions.csv", dtype=str, keep_default_na=False)
    keep = [c for c in ("patient_id", "session", "day", "age", "sex") if c in src.columns]
    raw = src[keep].copy()
    madrs = pd.to_numeric(src["madrs"], errors="coerce")
    raw["hamd17"] = np.clip(np.round(madrs * 52 / 60), 0, 52).map(lambda v: "" if np.isnan(v) else str(int(v)))
    (work / "data/raw/hamd").mkdir(parents=True)
    raw.to_csv(work / "data/raw/hamd/sessions.csv", index=False)
    cfg = yaml.safe_load((work / "config/config.yaml").read_text())
    cfg["cohorts"]["hamd"] = {"input": "data/raw/hamd/sessions.csv", "outcome": "hamd17", "schedule_unit": "week"}
    cfg.pop("recovery", None)
    (work / "config/config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    notebooks = [f"reports/hamd/notebooks/{nb}.ipynb" for nb in ("01_cohort", "02_models", "03_cytokines", "04_trajectories")]
    proc = run_snakemake(work, "reports/hamd/results.json", "reports/hamd/report.html", *notebooks)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    res = json.loads((work / "reports/hamd/results.json").read_text())
    html = (work / "reports/hamd/report.html").read_text()
    return res, html


def test_the_report_says_first_that_there_is_no_illness_data(hamd_run):
    res, html = hamd_run
    assert res["summary"][0].startswith("This cohort has no illness data")
    assert "HAM-D 17" in res["summary"][0]
    assert res["settings"]["illness_data"] is False
    missing = {m["column"]: m["adds"] for m in res["settings"]["missing_columns"]}
    assert "ill" in missing and "illness effect" in missing["ill"]
    assert any("il6_pg_ml" in k for k in missing)
    assert "Columns this cohort does not have, and what each would add" in html
    needs = [line for line in res["summary"] if line.startswith("Not estimated, as they need illness data: ")]
    assert len(needs) == 1 and "Response per session (GEE, exchangeable)" in needs[0]
    assert "needs column" not in needs[0]  # labels only, not one reason each


def test_words_thresholds_and_models_follow_the_instrument(hamd_run):
    res, html = hamd_run
    ins = res["settings"]["instrument"]
    assert (ins["name"], ins["short"], ins["max"], ins["remission_max"], ins["mcid"], ins["unit"]) == (
        "hamd17", "HAM-D 17", 52, 7, 3.0, "week"
    )
    assert res["settings"]["mcid"] == 3.0
    outcome = res["methods"]["paragraphs"][0]
    assert "Hamilton Depression Rating Scale, 17 items (HAM-D 17, 0-52" in outcome
    assert "remission a score at most 7" in outcome and "rated at each week" in outcome
    text = re.sub(r"<[^>]+>", " ", html)
    for madrs_words in ("MADRS points", "MADRS scores", "MADRS total", "Montgomery"):
        assert madrs_words not in text, madrs_words
    primary = res["models"]["primary"]
    assert primary["status"] == "ok" and primary["label"] == "Primary: HAM-D 17 by illness (linear mixed model)"
    assert "hamd17_baseline" in primary["terms"] and not any(t.startswith("ill") for t in primary["terms"])
    assert {m["status"] for m in res["models"].values()} <= {"ok", "skipped"}
    # Table 1 describes all patients: no never-ill / ever-ill split of a cohort without illness data
    assert [c["key"] for c in res["table1"]["columns"]] == ["overall"]
    assert "Never ill" not in text and "Ever ill" not in text
