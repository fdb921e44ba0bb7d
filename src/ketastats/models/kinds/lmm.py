"""Kind ``lmm``: a linear mixed model of a score (the primary model and its variants).

The primary model (docs/statistics.md, "Primary model") is

    score_ij = b0 + f(progress_ij) + b_gap days_since_prev_ij + b_base score_baseline_i
               + b_W ill_within_ij + b_B ill_between_i + b_lag ill_lag1_ij
               + u_0i + u_1i progress_ij + e_ij

on the post-baseline ratings (session >= 2; the baseline rating is a covariate), with a
random intercept and a random slope on treatment progress (infusions received) per patient,
fitted by REML. ``b_W`` (the within-person illness effect, each patient their own control)
is the estimand of interest; it is reported in scale points with its 95% CI against the
instrument's minimal clinically important difference.

The fit itself (engines, retries, Satterthwaite df, the JSON block) is
:mod:`ketastats.models.fitting`; the rows are :func:`ketastats.models.rows.model_rows`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from ..common import illness_effect, mcid_for, require_illness
from ..fitting import fit_spec_lmm, formulas_for, lmm_block, lmm_design
from ..rows import model_rows

__all__ = ["fit"]


def fit(data: pd.DataFrame, spec: Mapping[str, Any], estimands: Mapping[str, str], alpha: float):
    """Kind ``lmm``: one linear mixed model of a score; returns the model JSON fields."""
    formula, re_formula = formulas_for(spec)
    outcome = formula.split("~", 1)[0].strip()
    terms = [formula.split("~", 1)[1], re_formula or ""]
    df, record = model_rows(data, spec, estimands, outcome=outcome, terms=terms, what=spec["label"])
    ill_term = spec["illness_term"]
    if ill_term and ill_term in formula:
        require_illness(df, spec["label"])
    fit = fit_spec_lmm(df, formula, re_formula, spec, alpha)
    out = lmm_block(fit)
    out["design"] = lmm_design(df, fit, spec)
    out["estimands"] = record
    if df.attrs.get("row_filters"):
        out["row_filters"] = df.attrs["row_filters"]
    out["illness_effect"] = illness_effect(fit.coefficients, ill_term, scale="points", mcid=mcid_for(outcome))
    if out["illness_effect"] is not None:
        out["illness_effect"]["outcome"] = outcome
    return out
