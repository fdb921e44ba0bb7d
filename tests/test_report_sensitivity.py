"""The report's Sensitivity analyses section and results.json's ``sensitivity`` block, from
models fitted to a simulated cohort: every sensitivity analysis beside the primary
estimate, its details, and small counts in the models' blocks suppressed."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from models_sim import prepared_cohort
from report_cohort import conceals

from ketastats.models import resolve_estimands, resolve_spec, run_model
from ketastats.report import build_results
from ketastats.report.render import render_html
from ketastats.report.suppression import is_small

SPECS = {
    "primary": {"kind": "lmm", "role": "primary", "label": "Primary"},
    "mmrm_gee": {"kind": "gee", "role": "sensitivity", "label": "Marginal GEE"},
    "complete_case": {"kind": "lmm", "role": "sensitivity", "label": "Complete cases", "complete_case": True},
    "exclude_acute": {
        "kind": "lmm",
        "role": "sensitivity",
        "label": "Acute phase left out",
        "exclude_onset_within_days": 3,
    },
    "primary_mi": {"kind": "lmm_mi", "role": "sensitivity", "label": "Multiple imputation", "imputations": 5},
    "tipping_point": {
        "kind": "tipping_point",
        "role": "sensitivity",
        "label": "Tipping point",
        "imputations": 5,
        "deltas": [-6, 0, 6],
    },
    "cytokine_illness": {"kind": "cytokine_illness", "markers": ["il6_pg_ml", "crp_mg_l"], "label": "Cytokines"},
}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    df, _ = prepared_cohort(150, seed=31)
    rng = np.random.default_rng(31)
    df = df.copy()
    ill = df["ill"] == 1
    onset = pd.Series(pd.NA, index=df.index, dtype="Int64")
    onset[ill] = rng.integers(0, 10, int(ill.sum()))
    df["days_since_onset"] = onset
    # three patients miss one rating each: complete-case leaves out a small number (3)
    for pid in ("P0003", "P0007", "P0011"):
        df.loc[(df["patient_id"] == pid) & (df["session"] == 4), "madrs"] = np.nan
    # CRP with about half of its draws below a raised detection limit: flagged
    drawn = df["crp_mg_l"].notna() | df["crp_mg_l_censored"]
    lod = float(df.loc[df["crp_mg_l"].notna(), "crp_mg_l"].median())
    below = drawn & (df["crp_mg_l"].isna() | (df["crp_mg_l"] < lod))
    df["crp_mg_l_lod"], df["crp_mg_l_censored"] = lod, below
    df.loc[below, "crp_mg_l"] = np.nan
    est = resolve_estimands({"illness_medication": "treatment_policy"})
    models = {n: run_model(n, resolve_spec(n, s), df, est) for n, s in SPECS.items()}
    assert all(m["status"] == "ok" for m in models.values()), {n: m["reason"] for n, m in models.items()}
    info = {"records": len(df), "patients": int(df["patient_id"].nunique()), "file": "x.csv", "sha256": "0"}
    prov = {
        "input": {"file": "x.csv", "sha256": "0"},
        "packages": {"ketastats": "test"},
        "git_commit": "x",
        "config_yaml": "",
    }
    res = build_results("sim", df, info, models, prov, {"small_cell_threshold": 10, "confidence_level": 0.95})
    res = json.loads(json.dumps(res, allow_nan=False))
    out = tmp_path_factory.mktemp("rep") / "report.html"
    render_html({**res, "provenance": {**prov, "command": "pytest"}}, df, out, models=models, run_date="x")
    return {"models": models, "results": res, "html": out.read_text()}


def test_every_sensitivity_analysis_sits_beside_the_primary_estimate(report):
    res, models = report["results"], report["models"]
    sv = res["sensitivity"]
    assert sv["primary"]["estimate"] == models["primary"]["illness_effect"]["estimate"]
    rows = {r["model"]: r for r in sv["rows"]}
    assert set(rows) == {"mmrm_gee", "complete_case", "exclude_acute", "primary_mi", "tipping_point"}
    for name, row in rows.items():
        eff = models[name]["illness_effect"]
        assert (row["estimate"], row["ci_low"], row["ci_high"]) == (eff["estimate"], eff["ci_low"], eff["ci_high"])
    assert "unstructured" in rows["mmrm_gee"]["changes"]
    assert "complete cases" in rows["complete_case"]["changes"]
    assert "within 3 days" in rows["exclude_acute"]["changes"]
    assert "m = 5" in rows["primary_mi"]["changes"] and "delta" in rows["tipping_point"]["changes"]
    assert rows["tipping_point"]["delta"] == models["tipping_point"]["tipping"]["reported_delta"]
    # all of them in the forest plot's list, on the primary's scale
    assert [e["model"] for e in res["illness_effects"]][0] == "primary"
    forest = {e["model"]: e for e in res["illness_effects"]}
    assert set(rows) <= set(forest)
    assert forest["tipping_point"]["label"].startswith("Tipping point, delta = ")
    # the tipping point reuses the MI model's imputations: its variables are listed once
    assert list(sv["imputation"]) == ["primary_mi"] and list(sv["tipping"]) == ["tipping_point"]


def test_small_counts_in_model_blocks_are_suppressed(report):
    res = report["results"]
    cc = res["models"]["complete_case"]["row_filters"]["complete_case"]
    assert report["models"]["complete_case"]["row_filters"]["complete_case"]["patients_removed"] == 3
    kept = report["models"]["complete_case"]["row_filters"]["complete_case"]["patients_kept"]
    assert cc["patients_removed"] == "<11" and conceals(cc["patients_kept"], kept)

    def ints(obj, path=""):
        if isinstance(obj, dict):
            for k, v in obj.items():
                yield from ints(v, f"{path}.{k}")
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                yield from ints(v, f"{path}[{i}]")
        elif isinstance(obj, int) and not isinstance(obj, bool):
            yield path, obj

    count_keys = ("patients_removed", "patients_kept", "sessions_removed", "draws", "censored", "rows_removed")
    for path, v in ints(res["models"]):
        if path.rsplit(".", 1)[-1] in count_keys:
            assert not is_small(v, 10), path
    assert any(e["where"] == "Model Complete cases" for e in res["suppression"]["entries"])


def test_report_section_shows_the_analyses_and_their_details(report):
    html = report["html"]
    assert '<a href="#sensitivity">' in html
    sec = html.split('<section id="sensitivity">')[1].split("</section>")[0]
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", sec))
    for label in ("Marginal GEE", "Complete cases", "Acute phase left out"):
        assert label in text
    est = report["models"]["mmrm_gee"]["illness_effect"]["estimate"]
    assert f"{est:.2f}" in text
    assert "Working correlation (Marginal GEE)" in text
    assert "Imputation model (Multiple imputation)" in text and "(the imputations listed above)" in text
    for v in report["models"]["primary_mi"]["imputation"]["variables"]:
        assert v["name"] in text
    tp = report["models"]["tipping_point"]["tipping"]
    assert f"conclusion without a shift: {tp['conclusion_at_zero']}" in text
    assert len(re.findall(r"<tr><td>-?\d+\.\d</td>", sec)) == len(tp["rows"])
    flags = text.split("Markers with many non-detects")[1]
    assert "crp_mg_l" in flags and "censored (tobit) likelihood" in flags and "il6_pg_ml" not in flags
    methods = html.split('<section id="methods">')[1].split("</section>")[0]
    assert "generalized estimating equations" in methods and "Liang" in methods
    assert "Complete-case analysis" in methods
    assert "Rubin" in methods and "Barnard" in methods and "Permutt" in methods
