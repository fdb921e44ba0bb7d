"""`ketastats fit` against R's lme4 on real data (tests/data; where the data and the reference
fits come from: docs/testing.md, "Reference data").

Tolerances are the ones the reference itself supports (docs/testing.md, "Tolerances"): fixed
effects and SEs 1e-4 relative, variance components 1e-3 relative, log-likelihood 1e-3 absolute.
"""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from ketastats.cli import main

FIT_CASES = {
    # (dataset, model) -> (data file, formula, group, re formula, references)
    ("sleepstudy", "RI"): ("sleepstudy.csv", "Reaction ~ Days", "Subject", None, []),
    ("sleepstudy", "RS"): ("sleepstudy.csv", "Reaction ~ Days", "Subject", "~Days", []),
    ("BtheB", "lmer1_RI"): (
        "btheb_long.csv",
        "bdi ~ bdi_pre + time + treatment + drug + length",
        "id",
        None,
        ["treatment=TAU", "drug=No", "length=<6m"],
    ),
    ("BtheB", "lmer2_RI_slope"): (
        "btheb_long.csv",
        "bdi ~ bdi_pre + time + treatment + drug + length",
        "id",
        "~time",
        ["treatment=TAU", "drug=No", "length=<6m"],
    ),
}


def _patsy_name(r_term: str) -> str:
    """lme4 term names -> patsy's (Intercept, treatment[T.BtheB], length[T.>6m])."""
    if r_term == "(Intercept)":
        return "Intercept"
    for factor in ("treatment", "drug", "length"):
        if r_term.startswith(factor) and r_term != factor:
            return f"{factor}[T.{r_term[len(factor) :]}]"
    return r_term


def _reference(data_dir, dataset, model, method):
    fname = "sleepstudy_reference.csv" if dataset == "sleepstudy" else "btheb_reference.csv"
    ref = pd.read_csv(data_dir / fname)
    return ref[(ref.dataset == dataset) & (ref.model == model) & (ref.method == method)]


def _varcomp(out: dict, term: str) -> float:
    if term == "residual_var":
        return out["residual_variance"]
    names = [("Intercept" if n == "(Intercept)" else n) for n in out["random"]["names"]]
    cov = out["random"]["cov"]
    m = re.fullmatch(r"var\((.+)\)", term)
    if m:
        i = names.index("Intercept" if m.group(1) == "(Intercept)" else m.group(1))
        return cov[i][i]
    m = re.fullmatch(r"(cov|corr)\((.+),(.+)\)", term)
    a, b = (names.index("Intercept" if x == "(Intercept)" else x) for x in m.groups()[1:])
    if m.group(1) == "cov":
        return cov[a][b]
    return cov[a][b] / (cov[a][a] * cov[b][b]) ** 0.5


ENGINES = ["statsmodels", "fast"]
#: Satterthwaite df: the fast engine's optimum equals lme4's (df to 1e-5 of lmerTest's); statsmodels'
#: optimizers stop short in the variance parameters, which moves the df by up to ~2e-5 here
DF_TOL = {"fast": 1e-5, "statsmodels": 1e-4}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("method", ["REML", "ML"])
@pytest.mark.parametrize("case", list(FIT_CASES), ids=lambda c: f"{c[0]}-{c[1]}")
def test_fit_matches_lme4(case, method, engine, data_dir, tmp_path):
    fname, formula, group, re_f, refs = FIT_CASES[case]
    out_json = tmp_path / "fit.json"
    argv = ["fit", str(data_dir / fname), "--formula", formula, "--group", group, "--json", str(out_json)]
    argv += ["--engine", engine]
    if re_f:
        argv += ["--re", re_f]
    if method == "ML":
        argv.append("--ml")
    for r in refs:
        argv += ["--reference", r]
    assert main(argv) == 0
    out = json.loads(out_json.read_text())
    assert out["engine"] == engine
    assert out["method"] == method
    assert set(out) >= {
        "fixed",
        "random",
        "residual_variance",
        "loglik",
        "nobs",
        "ngroups",
        "method",
        "converged",
        "engine",
        "seconds",
    }
    assert set(out["seconds"]) == {"read", "fit"}
    ref = _reference(data_dir, *case, method)
    assert len(ref) > 0
    fixed = ref[ref.kind == "fixed"]
    assert sorted(out["fixed"]) == sorted(_patsy_name(t) for t in fixed.term)
    for row in fixed.itertuples():
        got = out["fixed"][_patsy_name(row.term)]
        assert got["estimate"] == pytest.approx(row.estimate, rel=1e-4), row.term
        assert got["se"] == pytest.approx(row.se, rel=1e-4), row.term
    for row in ref[ref.kind == "varcomp"].itertuples():
        assert _varcomp(out, row.term) == pytest.approx(row.estimate, rel=1e-3), row.term
    loglik = ref[(ref.kind == "fit") & (ref.term == "logLik")].estimate.iloc[0]
    assert out["loglik"] == pytest.approx(loglik, abs=1e-3)
    nobs = ref[(ref.kind == "fit") & (ref.term == "nobs")]
    if len(nobs):
        assert out["nobs"] == int(nobs.estimate.iloc[0])
        ngroups = ref[(ref.kind == "fit") & (ref.term == "ngroups")].estimate.iloc[0]
        assert out["ngroups"] == int(ngroups)
    assert out["converged"] is True
    # Satterthwaite df per coefficient, as lmerTest computes them (tests/data/models_reference.csv)
    assert out["df_method"] == "satterthwaite"
    lmertest = pd.read_csv(data_dir / "models_reference.csv")
    kind = "satterthwaite" if method == "REML" else "satterthwaite_ML"
    df_ref = lmertest[(lmertest.dataset == case[0]) & (lmertest.model == case[1]) & (lmertest.kind == kind)]
    assert len(df_ref) == len(out["fixed"])
    for row in df_ref.itertuples():
        got = out["fixed"][_patsy_name(row.term)]
        assert got["df_method"] == "satterthwaite"
        assert got["df"] == pytest.approx(row.df, rel=DF_TOL[engine]), row.term
