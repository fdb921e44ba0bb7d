"""The fev_data models of the SAS listings in tests/data/mmrm/ (their README gives the PROC MIXED
statements), fitted by the MMRM engine; shared by tests/test_mmrm*.py."""

from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd

from ketastats.models.engines.mmrm import fit_mmrm, mmrm_design

DATA = Path(__file__).parent / "data"
MMRM_DATA = DATA / "mmrm"

FULL = "FEV1 ~ ARMCD * AVISIT + RACE + C(SEX, Treatment('Male'))"
COEF = "FEV1 ~ ARMCD + C(SEX, Treatment('Male'))"
INT = "FEV1 ~ 1"
VIS = ("VIS1", "VIS2", "VIS3", "VIS4")
SAS_UN_ORDER = ("VIS2", "VIS3", "VIS4", "VIS1")  # the level order of AVISIT in sas_log*.txt

# name -> (SAS listing, formula, covariance, REML, group column, SAS's visit order)
MODELS: dict[str, tuple[str, str, str, bool, str | None, tuple[str, ...]]] = {
    "un_reml": ("sas_log_reml.txt", FULL, "us", True, None, SAS_UN_ORDER),
    "un_ml": ("sas_log.txt", FULL, "us", False, None, SAS_UN_ORDER),
    "un_coef_reml": ("sas_coef_ci_reml_un.txt", COEF, "us", True, None, VIS),
    "un_coef_ml": ("sas_coef_ci_ml_un.txt", COEF, "us", False, None, VIS),
    "cs_reml": ("sas_cs_reml.txt", INT, "cs", True, None, VIS),
    "cs_ml": ("sas_cs_ml.txt", INT, "cs", False, None, VIS),
    "csh_reml": ("sas_csh_reml.txt", INT, "csh", True, None, VIS),
    "ar1_reml": ("sas_ar1_reml.txt", INT, "ar1", True, None, VIS),
    "ar1h_reml": ("sas_ar1h_reml.txt", INT, "ar1h", True, None, VIS),
    "toeph_reml": ("sas_toeph_reml.txt", INT, "toeph", True, None, VIS),
    "adh_reml": ("sas_adh_reml.txt", INT, "adh", True, None, VIS),
    "group_cs_reml": ("sas_group_cs_reml.txt", INT, "cs", True, "ARMCD", VIS),
}


def sas_term(label: str) -> str:
    """Our (patsy) coefficient name of a SAS "Solution for Fixed Effects" row."""
    if label == "Intercept":
        return "Intercept"
    effect, *levels = label.split(" ", 1)
    level = levels[0]
    if effect == "AVISIT*ARMCD":
        visit, arm = level.split()
        return f"ARMCD[T.{arm}]:AVISIT[T.{visit}]"
    if effect == "SEX":
        return f"C(SEX, Treatment('Male'))[T.{level}]"
    return f"{effect}[T.{level}]"


def r_term(name: str) -> str:
    """R's model.matrix name of one of our coefficients."""
    if name == "Intercept":
        return "(Intercept)"
    parts = []
    for part in name.split(":"):
        var, level = part.split("[T.")
        var = "SEX" if var.startswith("C(SEX") else var
        parts.append(var + level.rstrip("]"))
    return ":".join(parts)


@functools.cache
def fev() -> pd.DataFrame:
    return pd.read_csv(MMRM_DATA / "fev_data.csv")


@functools.cache
def fit(model: str, visit_order: tuple[str, ...] | None = None, covariance: str | None = None):
    """The engine's fit of ``model``; visits in SAS's order unless ``visit_order`` is given."""
    _, formula, cov, reml, group, order = MODELS[model]
    y, X, names, subj, visit, grp = mmrm_design(fev(), formula, subject="USUBJID", visit="AVISIT", group=group)
    return fit_mmrm(y, X, subj, visit, covariance=covariance or cov, group=grp, reml=reml, names=names,
                    visit_levels=list(visit_order or order))
