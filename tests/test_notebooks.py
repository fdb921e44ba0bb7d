"""Analyst notebooks: stored clean and paired, run on the demo cohort, run by the workflow.

Also the helpers they call (``ketastats.explore``), on small frames with hand-counted
answers and against statsmodels' own fitted values, and the papermill runner
(``ketastats.notebooks``): a failing cell fails with that cell's error.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import jupytext
import nbformat
import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, package_env, run_snakemake

from ketastats.exceptions import KetastatsError
from ketastats.explore import (
    CohortView,
    blup_table,
    cohort_overview,
    cytokine_by_illness,
    cytokine_summary,
    default_mixed_model,
    episode_summary,
    example_patients,
    find_root,
    illness_effects,
    illness_episodes,
    load_cohort,
    missingness_table,
    model_table,
    predict_trajectories,
    try_model,
)
from ketastats.notebooks import NotebookError, normalize_notebook, notebook_to_html, run_notebook

NB_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(p.stem for p in NB_DIR.glob("[0-9]*.ipynb"))
JOBS = {"01_cohort", "02_models", "03_cytokines", "04_trajectories"}  # issue 8: one job each


def _code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def _text_outputs(nb) -> str:
    """Everything a notebook displayed as text or HTML, concatenated."""
    parts = []
    for cell in _code_cells(nb):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out.get("text", ""))
            data = out.get("data", {})
            parts.append(data.get("text/plain", ""))
            parts.append(data.get("text/html", ""))
    return "\n".join(parts)


def _n_images(nb) -> int:
    return sum("image/png" in o.get("data", {}) for c in _code_cells(nb) for o in c.get("outputs", []))


def _errors(nb) -> list[str]:
    return [
        f"{o.get('ename')}: {o.get('evalue')}"
        for c in _code_cells(nb)
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]


# ------------------------------------------------------------ stored notebooks
def test_one_notebook_per_job():
    assert set(NOTEBOOKS) == JOBS


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stored_without_outputs(name):
    nb = nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    for cell in _code_cells(nb):
        assert cell.outputs == [], (name, cell.source[:60])
        assert cell.execution_count is None, (name, cell.source[:60])
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert nb.metadata["kernelspec"]["language"] == "python"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_matches_its_py_percent_pair(name):
    ipynb = NB_DIR / f"{name}.ipynb"
    py = NB_DIR / f"{name}.py"
    assert py.is_file(), f"{py} missing: pair it with `jupytext --set-formats ipynb,py:percent {ipynb}`"
    assert py.read_text().splitlines()[0:1] == ["# ---"] and "format_name: percent" in py.read_text()
    a, b = jupytext.read(ipynb), jupytext.read(py)
    assert a.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    cells_a = [(c.cell_type, c.source.strip()) for c in a.cells]
    cells_b = [(c.cell_type, c.source.strip()) for c in b.cells]
    assert cells_a == cells_b, f"{name}: run `jupytext --sync notebooks/{name}.ipynb`"


def test_every_py_source_has_its_notebook():
    assert sorted(p.stem for p in NB_DIR.glob("[0-9]*.py")) == NOTEBOOKS


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_takes_cohort_as_papermill_parameter_and_holds_no_logic(name):
    nb = nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)
    code = _code_cells(nb)
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    assert re.search(r'^cohort = "demo"', params[0].source, re.M)
    assert re.search(r"^root = None", params[0].source, re.M)
    assert code.index(params[0]) == 0, "the parameters cell comes before any code"
    body = "\n".join(c.source for c in code[1:])
    assert "from ketastats.explore import" in body
    # no logic copied into cells: no functions, classes, loops, lambdas or file reading
    for pattern in (
        r"^\s*def ",
        r"^\s*class ",
        r"^\s*for ",
        r"^\s*while ",
        r"lambda",
        r"read_parquet",
        r"open\(",
    ):
        assert not re.search(pattern, body, re.M), (name, pattern)


# ------------------------------------------------------------ explore helpers
def _sessions() -> pd.DataFrame:
    """Three patients; episodes by hand: A: s2-3 and s5, B: s1 (right after A's s5), C: none."""
    rows = []
    ill = {"A": [0, 1, 1, 0, 1], "B": [1, 0, 0], "C": [0, 0, 0, 0]}
    kinds = {("A", 2): "respiratory", ("A", 3): "respiratory", ("A", 5): "gastrointestinal", ("B", 1): None}
    sev = {("A", 2): "mild", ("A", 3): "severe", ("A", 5): "mild", ("B", 1): "moderate"}
    for pid, flags in ill.items():
        for s, f in enumerate(flags, start=1):
            rows.append(
                {
                    "patient_id": pid,
                    "session": s,
                    "ill": float(f),
                    "illness_type": kinds.get((pid, s)) if f else None,
                    "illness_severity": sev.get((pid, s)) if f else None,
                    "madrs": 30.0 - 3 * s + 2 * f,
                }
            )
    df = pd.DataFrame(rows)
    n = len(df)
    # IL-6: measured at 6 sessions, 2 of them below the LOD (value NaN, flag True)
    df["il6_pg_ml"] = np.nan
    df["il6_pg_ml_censored"] = False
    df.loc[[0, 1, 2, 5], "il6_pg_ml"] = [1.0, 4.0, 6.0, 2.0]
    df.loc[[3, 8], "il6_pg_ml_censored"] = True
    df["bmi"] = [np.nan] * 3 + [25.0] * (n - 3)
    return df


def test_illness_episodes_are_runs_of_ill_sessions_within_patient():
    ep = illness_episodes(_sessions())
    got = ep[["patient_id", "episode", "first_session", "last_session", "n_sessions"]].to_numpy().tolist()
    assert got == [["A", 1, 2, 3, 2], ["A", 2, 5, 5, 1], ["B", 1, 1, 1, 1]]
    assert ep["illness_type"].iloc[:2].tolist() == ["respiratory", "gastrointestinal"]
    assert pd.isna(ep["illness_type"].iloc[2])  # B's episode has no type recorded
    assert ep["max_severity"].tolist() == ["severe", "mild", "moderate"]
    summary = episode_summary(ep)
    assert summary.loc["respiratory", "severe"] == 1 and summary.loc["unknown", "moderate"] == 1
    assert summary["total"].sum() == 3


def test_cohort_overview_counts():
    ov = dict(cohort_overview(_sessions()).to_numpy().tolist())
    assert ov["patients"] == 3 and ov["sessions"] == 12
    assert ov["sessions with illness"] == 4 and ov["patients ever ill"] == 2
    assert ov["illness episodes"] == 3
    assert ov["sessions per patient, min"] == 3 and ov["sessions per patient, max"] == 5


def test_missingness_does_not_count_censored_values_as_missing():
    tab = missingness_table(_sessions()).set_index("column")
    # 12 sessions: 4 detected + 2 censored -> 6 missing
    assert tab.loc["il6_pg_ml", "n_missing"] == 6
    assert tab.loc["il6_pg_ml", "pct_missing"] == pytest.approx(50.0)
    assert tab.loc["bmi", "n_missing"] == 3
    assert "patient_id" not in tab.index  # complete columns are left out


def test_cytokine_summary_counts_censored_values_without_substituting_them():
    s = cytokine_summary(_sessions()).set_index("marker").loc["il6_pg_ml"]
    assert (s["n_measured"], s["n_detected"], s["n_censored"]) == (6, 4, 2)
    assert s["pct_censored"] == pytest.approx(100 * 2 / 6)
    assert s["median"] == pytest.approx(3.0)  # detected 1, 2, 4, 6
    assert s["unit"] == "pg/mL" and s["patients_measured"] == 3
    by = cytokine_by_illness(_sessions()).set_index(["marker", "status"])
    # ill sessions detected: rows 1, 2 (A s2, s3: 4, 6) and 5 (B s1: 2); none censored.
    # well sessions: row 0 detected (1), rows 3 and 8 censored.
    assert by.loc[("il6_pg_ml", "ill"), ["n_measured", "median", "pct_censored"]].tolist() == [3, 4.0, 0.0]
    assert by.loc[("il6_pg_ml", "well"), ["n_measured", "median"]].tolist() == [3, 1.0]
    assert by.loc[("il6_pg_ml", "well"), "pct_censored"] == pytest.approx(100 * 2 / 3)


SKELETON_JSON = {
    "fixed": {"Intercept": {"estimate": 30.0, "se": 0.5}, "session": {"estimate": -2.0, "se": 0.1}},
    "coefficients": [
        {"term": "Intercept", "estimate": 30.0, "se": 0.5, "ci_low": 29.0, "ci_high": 31.0, "p_value": 0.0},
        {"term": "session", "estimate": -2.0, "se": 0.1, "ci_low": -2.2, "ci_high": -1.8, "p_value": 0.0},
        {"term": "ill", "estimate": 1.5, "se": 0.8, "ci_low": -0.1, "ci_high": 3.1, "p_value": 0.06},
    ],
    "method": "REML",
    "converged": False,
    "nobs": 100,
    "ngroups": 20,
    "spec": {"formula": "madrs ~ session + ill", "re_formula": "~session"},
    "random": {"group": "patient_id", "names": ["Intercept"], "cov": [[1.0]]},
}


def test_model_comparison_reads_skeleton_and_richer_model_json():
    models = {
        "primary": SKELETON_JSON,
        # richer JSON (issue 5): status, label, kind, illness_effect given explicitly
        "gee": {
            "kind": "gee",
            "label": "GEE, exchangeable",
            "status": "ok",
            "fixed": {"Intercept": {"estimate": 29.0, "se": 0.6}, "ill_within": {"estimate": 9.0, "se": 9.0}},
            "illness_effect": {
                "term": "ill_within",
                "estimate": 1.2,
                "se": 0.7,
                "ci_low": -0.2,
                "ci_high": 2.6,
            },
        },
        # only fixed effects, illness as a within-person term, no CIs
        "within": {
            "fixed": {"Intercept": 1.0, "ill_between": 3.0, "ill_within": 2.0, "ill_within:session": 9.0}
        },
        # no illness term at all
        "null": {"fixed": {"Intercept": {"estimate": 30.0, "se": 1.0}}},
    }
    eff = illness_effects(models).set_index("model")
    assert list(eff.index) == ["primary", "gee", "within"]
    assert eff.loc["primary", ["term", "estimate", "ci_low", "ci_high"]].tolist() == ["ill", 1.5, -0.1, 3.1]
    assert eff.loc["gee", ["label", "term", "estimate"]].tolist() == ["GEE, exchangeable", "ill_within", 1.2]
    assert eff.loc["within", "term"] == "ill_within" and eff.loc["within", "estimate"] == 2.0
    assert np.isnan(eff.loc["within", "ci_low"])
    tab = model_table(models).set_index("model")
    assert tab.loc["primary", "status"] == "not converged"
    assert tab.loc["primary", "outcome"] == "madrs" and tab.loc["primary", "kind"] == "lmm"
    assert tab.loc["gee", "kind"] == "gee" and tab.loc["gee", "illness_estimate"] == 1.2
    assert np.isnan(tab.loc["null", "illness_estimate"]) and tab.loc["null", "status"] == "ok"


def _fit_to_json(tmp_path: Path, df: pd.DataFrame) -> dict:
    from ketastats.pipeline import step_fit

    spec = {
        "formula": "madrs ~ session + ill",
        "re_formula": "~session",
        "method": "REML",
        "engine": "statsmodels",
        "sessions": "all",
    }
    return step_fit(df, spec, tmp_path / "m.json")


def _simulated(n_patients: int = 40, n_sessions: int = 6, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_patients):
        b0, b1 = rng.normal(0, 4), rng.normal(0, 1)
        for s in range(1, n_sessions + 1):
            ill = float(rng.random() < 0.15)
            y = 30 + b0 + (-2.5 + b1) * s + 2.0 * ill + rng.normal(0, 3)
            rows.append({"patient_id": f"P{i:03d}", "session": s, "ill": ill, "madrs": y})
    return pd.DataFrame(rows)


def test_trajectories_reproduce_statsmodels_fitted_values(tmp_path):
    """X beta + Z b rebuilt from the model JSON equals statsmodels' own fittedvalues."""
    import statsmodels.formula.api as smf

    df = _simulated()
    m = _fit_to_json(tmp_path, df)
    view = CohortView(
        cohort="t",
        root=tmp_path,
        sessions=df,
        models={"primary": json.loads((tmp_path / "m.json").read_text())},
    )
    traj = predict_trajectories(view, "primary")
    ref = smf.mixedlm("madrs ~ session + ill", df, groups="patient_id", re_formula="~session").fit(
        reml=True, method=[m["optimizer"]]
    )
    expected = df.assign(fit=ref.fittedvalues, pop=ref.model.exog @ ref.fe_params.to_numpy())
    merged = traj.merge(expected, on=["patient_id", "session"])
    assert len(merged) == len(df)
    np.testing.assert_allclose(merged["fitted_patient"], merged["fit"], rtol=1e-6)
    np.testing.assert_allclose(merged["fitted_population"], merged["pop"], rtol=1e-6)
    np.testing.assert_array_equal(merged["observed"], merged["madrs"])
    b = blup_table(view, "primary").set_index("patient_id")
    re_ref = pd.DataFrame(ref.random_effects).T  # columns: intercept, session
    np.testing.assert_allclose(b.loc[re_ref.index, ["Intercept", "session"]], re_ref.to_numpy(), rtol=1e-6)
    # a subset of patients gives the same rows
    one = predict_trajectories(view, "primary", ["P007"])
    pd.testing.assert_frame_equal(one, traj[traj["patient_id"] == "P007"].reset_index(drop=True))


def test_try_model_fits_like_the_workflow_and_joins_the_comparison(tmp_path):
    import statsmodels.formula.api as smf

    df = _simulated()
    view = CohortView(cohort="t", root=tmp_path, sessions=df, models={"primary": SKELETON_JSON})
    assert try_model(view, "") is view and try_model(view, None) is view
    tried = try_model(view, "madrs ~ session + ill", "~session", engine="statsmodels", se="model")
    assert list(view.models) == ["primary"], "the original view is not changed"
    assert list(tried.models) == ["primary", "trial"]
    m = tried.models["trial"]
    # like every workflow model, the trial model uses the post-baseline ratings by default
    used = df[df["session"] > 1]
    assert m["nobs"] == len(used)
    ref = smf.mixedlm("madrs ~ session + ill", used, groups="patient_id", re_formula="~session").fit(
        reml=True, method=[m["optimizer"]]
    )
    row = model_table(tried).set_index("model").loc["trial"]
    assert row["label"] == "trial (fitted in the notebook)" and row["illness_term"] == "ill"
    assert row["illness_estimate"] == pytest.approx(ref.fe_params["ill"], rel=1e-6)
    # SE as lme4 reports it, by hand: (X' V^-1 X)^-1 with V_i = Z_i G Z_i' + sigma^2 I at the estimates
    G, sigma2 = np.asarray(ref.cov_re), ref.scale
    xtvx = np.zeros((3, 3))
    for _, g in used.groupby("patient_id"):
        X = np.column_stack([np.ones(len(g)), g["session"], g["ill"]])
        Z = X[:, :2]
        xtvx += X.T @ np.linalg.solve(Z @ G @ Z.T + sigma2 * np.eye(len(g)), X)
    se = np.sqrt(np.linalg.inv(xtvx)[2, 2])
    # the interval uses the model's Satterthwaite df (checked against lmerTest in test_models_reference)
    from scipy import stats

    ill = next(c for c in m["coefficients"] if c["term"] == "ill")
    assert ill["df_method"] == "satterthwaite"
    q = stats.t.ppf(0.975, ill["df"])
    assert row["illness_ci_low"] == pytest.approx(ref.fe_params["ill"] - q * se, rel=1e-6)
    assert row["illness_ci_high"] == pytest.approx(ref.fe_params["ill"] + q * se, rel=1e-6)
    assert row["nobs"] == len(used) and row["ngroups"] == 40
    with pytest.raises(KetastatsError, match="named 'trial' exists already"):
        try_model(tried, "madrs ~ session")
    with pytest.raises(KetastatsError, match="sesion"):
        try_model(view, "madrs ~ sesion + ill")


def test_trajectories_refuse_a_model_without_blups(tmp_path):
    view = CohortView(
        cohort="t", root=tmp_path, sessions=_sessions(), models={"gee": {"fixed": {"ill": 1.0}}}
    )
    with pytest.raises(KetastatsError, match="no BLUPs"):
        predict_trajectories(view, "gee")
    with pytest.raises(KetastatsError, match="has no model 'nope'; models: gee"):
        blup_table(view, "nope")


def test_default_mixed_model_is_primary_else_the_first_linear_mixed_model(tmp_path):
    blups = {"group": ["A"], "Intercept": [0.1]}
    lmm = {"fixed": {"ill": 1.0}, "blups": blups, "residual_variance": 2.0}
    models = {"a_gee": {"fixed": {"ill": 1.0}}, "b_logit": {"fixed": {}, "blups": blups}, "c_lmm": lmm}
    view = CohortView(cohort="t", root=tmp_path, sessions=_sessions(), models=models)
    assert default_mixed_model(view) == "c_lmm"
    view.models["primary"] = lmm
    assert default_mixed_model(view) == "primary"
    assert blup_table(view).columns.tolist() == ["patient_id", "Intercept"]  # primary's BLUPs
    with pytest.raises(KetastatsError, match="no linear mixed model with BLUPs among its models \\(a_gee\\)"):
        default_mixed_model(CohortView(cohort="t", root=tmp_path, sessions=_sessions(), models={"a_gee": {}}))


def test_example_patients_are_reproducible_and_half_ever_ill(tmp_path):
    df = _simulated(n_patients=30)
    view = CohortView(cohort="t", root=tmp_path, sessions=df)
    a = example_patients(view, 6, seed=1)
    assert a == example_patients(view, 6, seed=1) and len(set(a)) == 6
    assert a != example_patients(view, 6, seed=2)
    ever = df.groupby("patient_id")["ill"].max()
    assert int(ever[a].sum()) == 3


def test_load_cohort_finds_the_project_from_a_subfolder_and_names_cohorts_run(tmp_path):
    (tmp_path / "Snakefile").write_text("")
    (tmp_path / "notebooks").mkdir()
    proc = tmp_path / "data/processed/site_a"
    (proc / "models").mkdir(parents=True)
    _sessions().to_parquet(proc / "sessions.parquet")
    (proc / "models/primary.json").write_text(json.dumps(SKELETON_JSON))
    (proc / "models/broken.json").write_text("{not json")
    assert find_root(tmp_path / "notebooks") == tmp_path.resolve()
    view = load_cohort("site_a", tmp_path / "notebooks")
    assert list(view.models) == ["primary"] and len(view.sessions) == 12 and view.results is None
    with pytest.raises(KetastatsError, match=r"cohort 'demo' has no processed data.*already run: site_a"):
        load_cohort("demo", tmp_path)
    with pytest.raises(KetastatsError, match="no ketastats project"):
        find_root(tmp_path.parent)


# ------------------------------------------------------------------- the runner
def _tiny_notebook(path: Path, body: str) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('cohort = "demo"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        params,
        nbformat.v4.new_code_cell("x = 2\nprint('cohort', cohort)"),
        nbformat.v4.new_code_cell(body),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    nbformat.write(nb, path)
    return path


def test_failing_cell_is_named_and_its_notebook_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", package_env()["PYTHONPATH"])
    src = _tiny_notebook(tmp_path / "broken.ipynb", "y = x / 0")
    out, html, failed = (
        tmp_path / "out/broken.ipynb",
        tmp_path / "out/broken.html",
        tmp_path / "logs/broken.failed.ipynb",
    )
    with pytest.raises(NotebookError) as info:
        run_notebook(src, out, html, parameters={"cohort": "site_a"}, failed_copy=failed, cwd=tmp_path)
    msg = str(info.value)
    assert "notebook broken failed in cell 3" in msg
    assert "ZeroDivisionError: division by zero" in msg
    assert "y = x / 0" in msg and str(failed) in msg
    assert not out.exists() and not html.exists()
    kept = nbformat.read(failed, as_version=4)
    assert _errors(kept) == ["ZeroDivisionError: division by zero"]
    assert "cohort site_a" in _text_outputs(kept)  # the injected parameter was used


def test_without_the_notebooks_extra_the_runner_says_what_to_install(tmp_path, monkeypatch):
    """papermill & co. are the 'notebooks' extra: missing, the job fails naming the install."""
    import ketastats.notebooks as notebooks

    monkeypatch.setattr(notebooks, "NOTEBOOK_PACKAGES", ("nbformat", "ketastats_no_such_papermill"))
    src = _tiny_notebook(tmp_path / "nb.ipynb", "y = 1")
    out, html = tmp_path / "out/nb.ipynb", tmp_path / "out/nb.html"
    with pytest.raises(NotebookError) as info:
        run_notebook(src, out, html, parameters={"cohort": "site_a"})
    msg = str(info.value)
    assert "needs ketastats_no_such_papermill, which is not installed" in msg
    assert 'pip install -e ".[notebooks]"' in msg
    assert not out.exists() and not html.exists()


def test_normalize_notebook_drops_run_dependent_metadata():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("1")
    cell.metadata["execution"] = {"iopub.execute_input": "2026-11-25T09:00:00Z"}
    cell.metadata["papermill"] = {"start_time": "a", "end_time": "b", "duration": 1.0, "status": "completed"}
    inj = nbformat.v4.new_code_cell('cohort = "x"')
    inj.metadata["tags"] = ["injected-parameters"]
    nb.cells = [cell, inj]
    nb.metadata["papermill"] = {
        "start_time": "a",
        "end_time": "b",
        "duration": 2.0,
        "parameters": {"cohort": "x"},
    }
    normalize_notebook(nb, output_path="reports/x/notebooks/n.ipynb")
    assert "execution" not in cell.metadata and cell.metadata["papermill"] == {"status": "completed"}
    assert inj["id"] == "injected-parameters"
    assert nb.metadata["papermill"] == {
        "parameters": {"cohort": "x"},
        "output_path": "reports/x/notebooks/n.ipynb",
    }


def test_html_export_is_self_contained():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("fig")
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"})
    ]
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), cell]
    html = notebook_to_html(nb)
    assert 'src="data:image/png;base64,iVBORw0KGgo="' in html
    for url in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert url.startswith(("data:", "#")), url
    assert "<script src=" not in html
    assert "fig" not in notebook_to_html(nb, exclude_input=True).split("<body")[1].replace("Figure", "")


# ---------------------------------------------------- executed on the demo cohort
def _independent_demo_facts(project: Path) -> dict:
    s = pd.read_parquet(project / "data/processed/demo/sessions.parquet")
    primary = json.loads((project / "data/processed/demo/models/primary.json").read_text())
    ill = s.sort_values(["patient_id", "session"])
    starts = (ill["ill"] == 1) & (
        (ill["patient_id"] != ill["patient_id"].shift()) | (ill["ill"].shift() != 1)
    )
    il1b_cens = int(s["il1b_pg_ml_censored"].sum())
    return {
        "patients": s["patient_id"].nunique(),
        "ill_sessions": int((s["ill"] == 1).sum()),
        "episodes": int(starts.sum()),
        "ill_estimate": primary["illness_effect"]["estimate"],
        "il1b_censored": il1b_cens,
        "primary": primary,
        "sessions": s,
    }


def _check_key_outputs(name: str, nb, facts: dict) -> None:
    assert _errors(nb) == [], (name, _errors(nb))
    text = _text_outputs(nb)
    assert "CohortView(cohort='demo'" in text
    if name == "01_cohort":
        assert f"<td>patients</td>\n      <td>{facts['patients']}</td>" in text
        assert f"<td>sessions with illness</td>\n      <td>{facts['ill_sessions']}</td>" in text
        assert f"<td>illness episodes</td>\n      <td>{facts['episodes']}</td>" in text
        assert _n_images(nb) == 3
    elif name == "02_models":
        assert f"{facts['ill_estimate']:.3f}" in text and "primary" in text
        assert _n_images(nb) == 1
    elif name == "03_cytokines":
        for marker in ("il6_pg_ml", "tnfa_pg_ml", "il1b_pg_ml", "crp_mg_l"):
            assert marker in text
        assert re.search(rf"il1b_pg_ml\s+pg/mL\s+\d+\s+\d+\s+{facts['il1b_censored']}\s", text)
        assert _n_images(nb) == 1
    elif name == "04_trajectories":
        # first shown patient, first session: X beta + Z b by hand from the model JSON
        m = facts["primary"]
        traj = re.search(
            r"<td>(P[0-9A-F]+)</td>\s*<td>(\d+)</td>\s*<td>[-\d.]+</td>\s*<td>([-\d.]+)</td>", text
        )
        assert traj, "trajectory table missing"
        pid, session = traj.group(1), int(traj.group(2))
        # X beta + Z b_i by hand: every fixed term but the intercept is a column of the table
        row = facts["sessions"].set_index(["patient_id", "session"]).loc[(pid, session)]
        i = m["blups"]["group"].index(pid)
        expected = m["fixed"]["Intercept"]["estimate"] + m["blups"]["Intercept"][i]
        for term, v in m["fixed"].items():
            if term != "Intercept":
                expected += v["estimate"] * float(row[term])
        for term in m["random"]["names"][1:]:
            expected += m["blups"][term][i] * float(row[term])
        assert f"<td>{expected:.2f}</td>" in text
        assert _n_images(nb) == 2


@pytest.mark.workflow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_on_the_demo_cohort_from_the_notebooks_folder(name, demo_run, monkeypatch):
    """As an analyst in JupyterLab: kernel in notebooks/, root found upwards, nbclient."""
    from nbclient import NotebookClient

    monkeypatch.setenv("PYTHONPATH", package_env()["PYTHONPATH"])
    nb = nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)
    client = NotebookClient(
        nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(demo_run / "notebooks")}}
    )
    client.execute()
    _check_key_outputs(name, nb, _independent_demo_facts(demo_run))


@pytest.mark.workflow
def test_models_notebook_tries_a_model_given_as_parameter(demo_run, tmp_path):
    out = tmp_path / "02_models.ipynb"
    formula = "madrs ~ session + ill_within + ill_between"
    run_notebook(
        NB_DIR / "02_models.ipynb",
        out,
        parameters={"cohort": "demo", "root": str(demo_run), "trial_formula": formula},
    )
    nb = nbformat.read(out, as_version=4)
    text = _text_outputs(nb)
    assert _errors(nb) == []
    assert "'trial']" in text  # the tried model joins the workflow's models, last
    assert "trial (fitted in the notebook)" in text and "ill_between" in text


@pytest.mark.workflow
def test_workflow_keeps_executed_notebooks_and_html_per_cohort(demo_run):
    facts = _independent_demo_facts(demo_run)
    for name in NOTEBOOKS:
        ipynb = demo_run / f"reports/demo/notebooks/{name}.ipynb"
        nb = nbformat.read(ipynb, as_version=4)
        assert nb.metadata["papermill"]["parameters"] == {"cohort": "demo", "root": "."}
        assert "start_time" not in nb.metadata["papermill"]
        _check_key_outputs(name, nb, facts)
        html = (demo_run / f"reports/demo/notebooks/{name}.html").read_text()
        assert html.count("<img") == _n_images(nb) > 0
        for url in re.findall(r'(?:src|href)="([^"]*)"', html):
            assert url.startswith(("data:", "#")), (name, url)


@pytest.mark.workflow
def test_workflow_reruns_a_notebook_byte_identically_and_fails_on_a_broken_one(demo_run, tmp_path):
    work = tmp_path / "p"
    shutil.copytree(demo_run, work, symlinks=True)
    target = "reports/demo/notebooks/02_models.html"
    proc = run_snakemake(work, "--force", target)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for ext in ("ipynb", "html"):
        rel = f"reports/demo/notebooks/02_models.{ext}"
        assert (work / rel).read_bytes() == (demo_run / rel).read_bytes(), rel

    # a deliberately broken copy: the job fails and says which cell and why
    nb = nbformat.read(work / "notebooks/02_models.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell('view.models["no_such_model"]'))
    nbformat.write(nb, work / "notebooks/05_broken.ipynb")
    proc = run_snakemake(work, "reports/demo/notebooks/05_broken.html")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "notebook 05_broken failed in cell" in out
    assert "KeyError: 'no_such_model'" in out
    assert not (work / "reports/demo/notebooks/05_broken.html").exists()
    assert not (work / "reports/demo/notebooks/05_broken.ipynb").exists()
    failed = nbformat.read(work / "logs/demo/notebooks/05_broken.failed.ipynb", as_version=4)
    assert _errors(failed) == ["KeyError: 'no_such_model'"]
    assert "KeyError" in (work / "logs/demo/notebook_05_broken.log").read_text()


def _kernel_socket(path: str) -> str:
    """Run a one-cell notebook with run_notebook; return the transport and socket its kernel used."""
    import nbformat

    from ketastats.notebooks import run_notebook

    out = path.replace(".ipynb", "_out.ipynb")
    run_notebook(path, out, None)
    return nbformat.read(out, 4).cells[0].outputs[0]["text"].strip()


def test_kernels_started_side_by_side_never_share_a_socket(tmp_path):
    """Notebook jobs start kernels at the same moment (in parallel, on a cluster node): with
    TCP two could pick the same free port; with jupyter_client's default IPC prefix they
    would share sockets in the working directory. Each kernel gets sockets of its own."""
    from concurrent.futures import ProcessPoolExecutor

    import nbformat

    cell = "from ipykernel.connect import get_connection_info\ni = get_connection_info(unpack=True)\n"
    cell += "print(i['transport'], i['ip'])"
    paths = []
    for k in range(3):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(cell)]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        paths.append(str(tmp_path / f"nb{k}.ipynb"))
        nbformat.write(nb, paths[-1])
    with ProcessPoolExecutor(3) as pool:
        used = list(pool.map(_kernel_socket, paths))
    assert all(u.split()[0] == "ipc" for u in used), used
    assert len({u.split()[1] for u in used}) == 3, used
