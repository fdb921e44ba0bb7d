"""Model diagnostics from a model's JSON and the processed data: the report never refits.

The fitted values of a two-level linear mixed model are ``X beta + Z b_i`` (conditional on
the patient's BLUP ``b_i``); the residuals are ``y`` minus them. The design matrices are
rebuilt from the model's formulas with patsy on the same rows the fit used (complete cases
of the outcome, predictors, random-effect covariates and group). The conditional variance
of a BLUP, for the caterpillar plot, is ``(G^-1 + Z_i' Z_i / sigma^2)^-1`` (given the
variance parameters), as lme4's ``ranef(condVar = TRUE)`` reports it for a single grouping
factor; ``G`` may be singular, so the equivalent form ``G - G Z_i' V_i^-1 Z_i G`` is used.

References
----------
Bates, D., Maechler, M., Bolker, B., & Walker, S. (2015). Fitting linear mixed-effects
models using lme4. *Journal of Statistical Software*, 67(1), 1-48.

Robinson, G. K. (1991). That BLUP is a good thing: the estimation of random effects.
*Statistical Science*, 6(1), 15-32.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import patsy

from ..exceptions import ModelError

__all__ = ["ModelDiagnostics", "model_diagnostics"]


@dataclass
class ModelDiagnostics:
    """Residuals, fitted values and BLUPs with conditional SDs of one model.

    Attributes
    ----------
    frame : pandas.DataFrame
        One row per observation used: ``group``, ``observed``, ``fitted`` (conditional),
        ``fitted_marginal`` (``X beta``) and ``residual``.
    blups : pandas.DataFrame
        One row per group and random effect: ``group``, ``effect``, ``blup``, ``cond_sd``.
    """

    frame: pd.DataFrame
    blups: pd.DataFrame


def _formulas(model: Mapping[str, Any]) -> tuple[str, str | None, str]:
    spec = model.get("spec") or {}
    formula = spec.get("formula") or model.get("formula")
    if not formula:
        raise ModelError(
            f"model {model.get('name', '?')!r} has no formula in its JSON; cannot rebuild its design"
        )
    re_formula = spec.get("re_formula") or model.get("re_formula")
    group = (model.get("random") or {}).get("group") or spec.get("group") or "patient_id"
    return formula, re_formula, group


def model_diagnostics(model: Mapping[str, Any], sessions: pd.DataFrame) -> ModelDiagnostics:
    """Fitted values, residuals and BLUP intervals of a fitted model, without refitting.

    Parameters
    ----------
    model : mapping
        The model's JSON (``coefficients``, ``random``, ``residual_variance``, ``blups``,
        ``spec``).
    sessions : pandas.DataFrame
        The processed session table the model was fitted to.

    Returns
    -------
    ModelDiagnostics

    Raises
    ------
    ModelError
        When the JSON lacks what is needed (formula, coefficients, BLUPs), a coefficient
        name does not match the rebuilt design, or the rows selected are not as many as the
        model used (``nobs``): diagnostics on other rows would mislead.

    Notes
    -----
    The rows are those the model used: complete cases of its formulas and, with the stats
    spec ``sessions: post_baseline``, the ratings after each patient's first session.
    """
    formula, re_formula, group = _formulas(model)
    if (model.get("spec") or {}).get("sessions") == "post_baseline":
        # the model's own selection: ratings after the first session (baseline is a covariate)
        first = sessions["session"] == sessions.groupby(group)["session"].transform("min")
        sessions = sessions.loc[~first]
    coefs = {c["term"]: c["estimate"] for c in model.get("coefficients") or []}
    if not coefs and model.get("fixed"):
        coefs = {t: v["estimate"] for t, v in model["fixed"].items()}
    blups = model.get("blups")
    random = model.get("random") or {}
    if not coefs or not blups or not random.get("names"):
        raise ModelError(
            f"model {model.get('name', '?')!r}: the JSON has no coefficients, BLUPs or random effects"
        )
    y_df, x_df = patsy.dmatrices(formula, sessions, return_type="dataframe", NA_action="drop")
    z_df = patsy.dmatrix(
        re_formula or "~1", sessions.loc[x_df.index], return_type="dataframe", NA_action="drop"
    )
    keep = z_df.index[sessions.loc[z_df.index, group].notna()]
    missing = [t for t in x_df.columns if t not in coefs]
    if missing:
        raise ModelError(
            f"model {model.get('name', '?')!r}: design columns {missing} have no coefficient in the JSON "
            f"(terms: {sorted(coefs)}); was the model fitted to this data?"
        )
    names = list(random["names"])
    if list(z_df.columns) != names:
        raise ModelError(f"random-effect design {list(z_df.columns)} does not match the JSON's {names}")
    X = x_df.loc[keep].to_numpy(float)
    Z = z_df.loc[keep].to_numpy(float)
    y = y_df.loc[keep].to_numpy(float).ravel()
    beta = np.array([coefs[t] for t in x_df.columns], dtype=float)
    groups = sessions.loc[keep, group].astype(str).to_numpy()
    b_table = pd.DataFrame(
        {n: np.asarray(blups[n], dtype=float) for n in names}, index=[str(g) for g in blups["group"]]
    )
    B = b_table.reindex(groups).to_numpy(float)
    marginal = X @ beta
    fitted = marginal + np.sum(Z * B, axis=1)
    frame = pd.DataFrame(
        {
            "group": groups,
            "observed": y,
            "fitted": fitted,
            "fitted_marginal": marginal,
            "residual": y - fitted,
        },
        index=keep,
    )
    if model.get("nobs") is not None and len(frame) != int(model["nobs"]):
        raise ModelError(
            f"model {model.get('name', '?')!r} used {model['nobs']} rows, but its formulas select {len(frame)} "
            "rows of the data (a selection the report cannot repeat, e.g. an estimand strategy)"
        )

    G = np.atleast_2d(np.asarray(random["cov"], dtype=float))
    sigma2 = float(model["residual_variance"])
    rows = []
    order = pd.Index(groups)
    for g in b_table.index:
        idx = np.flatnonzero(order == g)
        Zi = Z[idx]
        Vi = Zi @ G @ Zi.T + sigma2 * np.eye(len(idx))
        GZt = G @ Zi.T
        cvar = G - GZt @ np.linalg.solve(Vi, GZt.T) if len(idx) else G
        for j, n in enumerate(names):
            rows.append(
                {
                    "group": g,
                    "effect": n,
                    "blup": float(b_table.loc[g, n]),
                    "cond_sd": float(np.sqrt(max(cvar[j, j], 0.0))),
                }
            )
    return ModelDiagnostics(frame=frame, blups=pd.DataFrame(rows))
