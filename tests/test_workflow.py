"""The Snakemake workflow end to end, in a throw-away copy of the project."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import copy_project, run_snakemake, tiny_config

pytestmark = pytest.mark.workflow


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_demo_run_produces_every_output(demo_run):
    w = demo_run
    assert (w / "data/raw/demo/sessions.csv").exists()
    for rel in [
        "data/processed/demo/validated.parquet",
        "data/processed/demo/sessions.parquet",
        "data/processed/demo/input.json",
        "data/processed/demo/models/primary.json",
        "reports/demo/results.json",
        "reports/demo/report.html",
    ]:
        assert (w / rel).stat().st_size > 0, rel


def test_primary_model_is_random_slope_reml(demo_run):
    m = json.loads((demo_run / "data/processed/demo/models/primary.json").read_text())
    assert m["status"] == "ok"
    assert m["method"] == "REML"
    assert m["random"]["names"] == ["Intercept", "progress"]
    assert len(m["random"]["cov"]) == 2
    assert {"Intercept", "progress", "ill_within", "ill_between", "ill_lag1", "madrs_baseline"} <= set(
        m["fixed"]
    )
    assert m["converged"] is True
    assert m["illness_effect"]["term"] == "ill_within" and m["illness_effect"]["mcid"] == 2.0


def test_every_model_writes_its_json_and_results_are_keyed_by_term(demo_run):
    res = json.loads((demo_run / "reports/demo/results.json").read_text())
    for name, m in res["models"].items():
        assert m["status"] in ("ok", "unreliable", "skipped", "failed"), name
        if m["status"] == "ok":
            assert set(m["terms"]) == {c["term"] for c in m["coefficients"]}, name
        else:
            assert m["reason"], name
    assert "multiplicity" in res


def test_every_sensitivity_analysis_is_its_own_job_and_beside_the_primary(demo_run):
    """Issue 6: each sensitivity analysis in the shipped config is a fit_model job with its own
    JSON and log, fitted on the demo, listed in results.json's sensitivity block and forest plot."""
    cfg = yaml.safe_load((demo_run / "config/config.yaml").read_text())
    sens = [n for n, m in cfg["models"].items() if m.get("role") == "sensitivity"]
    kinds = {cfg["models"][n].get("kind") for n in sens}
    assert {"gee", "lmm_mi", "tipping_point", "lmm"} <= kinds
    res = json.loads((demo_run / "reports/demo/results.json").read_text())
    rows = {r["model"]: r for r in res["sensitivity"]["rows"]}
    forest = {e["model"] for e in res["illness_effects"]}
    for name in sens:
        m = json.loads((demo_run / f"data/processed/demo/models/{name}.json").read_text())
        assert m["status"] == "ok", (name, m["reason"])
        assert (demo_run / f"logs/demo/fit_{name}.log").exists(), name
        assert name in rows, name
        if m["illness_effect"] and m["illness_effect"]["scale"] == "points":
            assert name in forest, name
            assert rows[name]["estimate"] == m["illness_effect"]["estimate"], name
    mi = json.loads((demo_run / "data/processed/demo/models/primary_mi.json").read_text())
    assert mi["imputation"]["m"] == cfg["models"]["primary_mi"]["imputations"] and mi["df_method"] == "barnard_rubin"
    assert {v["name"] for v in mi["imputation"]["variables"]} >= {"madrs", "ill", "qids_sr16"}
    assert res["sensitivity"]["primary"]["estimate"] == res["models"]["primary"]["illness_effect"]["estimate"]


def test_results_json_holds_every_estimate_the_report_shows(demo_run):
    res = json.loads((demo_run / "reports/demo/results.json").read_text())
    html = (demo_run / "reports/demo/report.html").read_text()
    coefs = res["models"]["primary"]["coefficients"]
    assert {c["term"] for c in coefs} >= {"Intercept", "progress", "ill_within"}
    for c in coefs:
        for key in ("estimate", "se", "ci_low", "ci_high"):
            assert f"{c[key]:.2f}" in html, (c["term"], key)
    for sentence in res["summary"]:
        assert sentence.replace("<", "&lt;").replace(">", "&gt;") in html
    assert res["provenance"]["input"]["sha256"] == sha256(demo_run / "data/raw/demo/sessions.csv")


def test_report_is_self_contained(demo_run):
    html = (demo_run / "reports/demo/report.html").read_text()
    assert "<img" in html
    # every src/href is embedded data or an in-page anchor: nothing to fetch
    for url in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert url.startswith(("data:", "#")), url
    assert "http://" not in html.split("<body>")[0] and "https://" not in html.split("<body>")[0]


def test_bad_config_key_is_named_before_any_job(project_root, tmp_path):
    work = copy_project(project_root, tmp_path / "p")
    cfg = yaml.safe_load((work / "config/config.yaml").read_text())
    cfg["cohorts"]["demo"]["columnz"] = {}
    (work / "config/config.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(work)
    assert proc.returncode != 0
    assert "cohorts.demo.columnz: unknown key 'columnz'. Did you mean 'columns'?" in proc.stdout + proc.stderr
    assert not (work / "data").exists() and not (work / "reports").exists()


def test_adding_a_cohort_is_a_config_edit(demo_run, tmp_path):
    """A second cohort with renamed columns runs from config alone; bad data stop it cleanly."""
    work = copy_project(Path(demo_run), tmp_path / "p")
    src = pd.read_csv(demo_run / "data/raw/demo/sessions.csv", dtype=str, keep_default_na=False)
    (work / "data/raw/site_a").mkdir(parents=True)
    renamed = src.rename(columns={"patient_id": "StudyID", "session": "InfusionNo"})
    renamed.to_csv(work / "data/raw/site_a/export.tsv", sep="\t", index=False)
    bad = src.copy()
    bad.loc[3, "day"] = "-4"
    (work / "data/raw/site_b").mkdir(parents=True)
    bad.to_csv(work / "data/raw/site_b/sessions.csv", index=False)
    raw_sum = sha256(work / "data/raw/site_b/sessions.csv")
    cfg = yaml.safe_load((work / "config/config.yaml").read_text())
    # only the primary model for the extra cohorts: the others are the demo's business
    others = {name: {"enabled": False} for name in cfg["models"] if name != "primary"}
    cfg["cohorts"]["site_a"] = {
        "input": "data/raw/site_a/export.tsv",
        "columns": {"patient_id": "StudyID", "session": "InfusionNo"},
        "models": others,
    }
    cfg["cohorts"]["site_b"] = {"input": "data/raw/site_b/sessions.csv", "models": others}
    cfg.pop("recovery", None)
    (work / "config/config.yaml").write_text(yaml.safe_dump(cfg))
    targets = ["reports/site_a/results.json", "reports/site_b/results.json"]
    # no --keep-going: the workflow's default profile (profiles/default) arranges it
    proc = run_snakemake(work, *targets)
    assert proc.returncode != 0  # site_b is invalid
    said = proc.stdout + proc.stderr
    assert "run the workflow again" in said and "run 'ketastats validate' again" not in said
    assert "  site_a: report written: reports/site_a/report.html" in said
    assert (
        "  site_b: input refused by validation (1 error(s)); every problem, with file, row, "
        "column and fix, is in logs/site_b/validation_problems.csv"
    ) in said
    a = json.loads((work / "reports/site_a/results.json").read_text())
    d = json.loads((demo_run / "reports/demo/results.json").read_text())
    assert a["models"]["primary"]["coefficients"] == d["models"]["primary"]["coefficients"]
    # the invalid cohort: nothing processed or reported, raw data untouched, problem named
    assert not list((work / "data/processed").glob("site_b/**/*.*"))
    assert not (work / "reports/site_b").exists()
    assert sha256(work / "data/raw/site_b/sessions.csv") == raw_sum
    problems = pd.read_csv(work / "logs/site_b/validation_problems.csv")
    hit = problems[(problems["column"] == "day") & (problems["severity"] == "error")]
    assert len(hit) >= 1 and int(hit["row"].iloc[0]) == 5  # data row 3 = line 5 (header is line 1)


def test_the_tiny_test_config_keeps_every_model_and_only_shrinks_sizes(project_root):
    """Every workflow test but one runs tests/config/tiny.yaml: it may make the run smaller,
    never leave a model, cohort or estimand of the shipped config out."""
    shipped = yaml.safe_load((project_root / "config/config.yaml").read_text())
    tiny = tiny_config(project_root)
    assert tiny["cohorts"].keys() == shipped["cohorts"].keys()
    assert tiny["models"].keys() == shipped["models"].keys()
    assert tiny["estimands"] == shipped["estimands"]
    for name, spec in shipped["models"].items():
        assert tiny["models"][name]["kind"] == spec["kind"], name
        assert tiny["models"][name].get("enabled", True) == spec.get("enabled", True), name
    assert tiny["recovery"].keys() == shipped["recovery"].keys()


@pytest.mark.slow
def test_shipped_config_end_to_end(project_root, tmp_path):
    """The one workflow test on config/config.yaml as it ships (200 patients, m = 20, 13 tipping
    deltas, 20 recovery replicates, the PDF when Chromium is installed)."""
    from ketastats.exceptions import KetastatsError
    from ketastats.report import find_chromium

    work = copy_project(project_root, tmp_path / "p")
    proc = run_snakemake(work, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    cfg = yaml.safe_load((work / "config/config.yaml").read_text())
    res = json.loads((work / "reports/demo/results.json").read_text())
    for name in cfg["models"]:
        m = json.loads((work / f"data/processed/demo/models/{name}.json").read_text())
        if m["kind"] == "decision":  # the demo: 18 ill infusions postponed, none at a reduced dose: skipped, said so
            assert m["status"] == "skipped", name
            assert m["reason"] == (
                "postponed versus given as planned: too few to compare: 18 of the ill infusions analysed were "
                "postponed; comparing the two choices needs at least 20 of each (min_per_arm), so no effect is "
                "estimated; reduced dose versus usual dose: too few to compare: none of the ill infusions analysed "
                "were given at a reduced dose; comparing the two choices needs at least 20 of each (min_per_arm), so "
                "no effect is estimated"), name
            assert res["models"][name]["status"] == "skipped", name
            continue
        assert m["status"] == "ok", (name, m.get("reason"))
        assert res["models"][name]["status"] == "ok", name
    mi = json.loads((work / "data/processed/demo/models/primary_mi.json").read_text())
    assert mi["imputation"]["m"] == cfg["models"]["primary_mi"]["imputations"] >= 20
    tp = json.loads((work / "data/processed/demo/models/tipping_point.json").read_text())
    assert len(tp["tipping"]["rows"]) == len(cfg["models"]["tipping_point"]["deltas"]) == 13
    summary = json.loads((work / "reports/demo/recovery/summary.json").read_text())
    assert summary["replicates"] == cfg["recovery"]["demo"]["replicates"] == 20
    for nb in sorted((work / "notebooks").glob("[0-9]*.ipynb")):
        assert (work / f"reports/demo/notebooks/{nb.stem}.html").stat().st_size > 0, nb.stem
    try:
        find_chromium()
    except KetastatsError:
        assert "skipping report.pdf" in proc.stderr
    else:
        assert (work / "reports/demo/report.pdf").read_bytes()[:5] == b"%PDF-"
