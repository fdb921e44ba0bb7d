"""Marginal model of a score by GEE (kind ``gee``): valid under MCAR dropout; kind ``mmrm`` is the likelihood MMRM.

The mixed-model repeated-measures analysis (MMRM) of visit-based trials models the mean
of the score at each visit (session as a categorical fixed effect) with an unstructured
covariance across visits (docs/statistics.md, "Primary model"). Its population-averaged counterpart here is a
linear **GEE** (Liang & Zeger 1986) with an **unstructured working correlation** across
sessions, an identity link and robust (sandwich) standard errors:

    E[madrs_ij] = b_session(j) + b_gap days_since_prev_ij + b_base madrs_baseline_i
                  + b_W ill_within_ij + b_B ill_between_i + b_lag ill_lag1_ij,
    Corr(e_ij, e_ik) = R_jk (unrestricted, session by session)

As in the primary model, ``b_W`` (within-person illness effect) is the estimand; unlike
it, nothing is assumed about the shape of the course (one mean per session) or the
random-effect distribution, and the sandwich SEs stay valid if the working correlation is
wrong. The price: GEE is valid under MCAR dropout (the likelihood-based mixed model under
MAR), so a difference between the two points at informative dropout.

The unstructured correlation needs enough patients per pair of sessions; with more than
``max_times`` distinct sessions the model is skipped (use ``correlation: exchangeable`` or
``ar1`` for long, irregular courses). ``se: bias_reduced`` gives the Mancl & DeRouen (2001)
small-sample correction of the sandwich.

References
----------
Liang, K.-Y., & Zeger, S. L. (1986). Longitudinal data analysis using generalized linear
models. *Biometrika*, 73(1), 13-22.

Mallinckrodt, C. H., Lane, P. W., Schnell, D., Peng, Y., & Mancuso, J. P. (2008).
Recommendations for the primary analysis of continuous endpoints in longitudinal clinical
trials. *Drug Information Journal*, 42(4), 303-319.

Mancl, L. A., & DeRouen, T. A. (2001). A covariance estimator for GEE with improved
small-sample properties. *Biometrics*, 57(1), 126-134.

Examples
--------
>>> from ketastats.models import resolve_spec, resolve_estimands, run_model
>>> spec = resolve_spec("mmrm_gee", {"kind": "gee"})
>>> spec["correlation"], spec["fixed"][0]
('unstructured', 'C(session)')
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import patsy
from statsmodels.genmod import cov_struct, families
from statsmodels.genmod.generalized_estimating_equations import GEE

from ..common import coefficient_rows, illness_effect, mcid_for, num, require_illness
from ..result import design_of
from ..retries import SkipModel
from ..rows import model_rows

__all__ = ["fit", "gee_working_correlation"]

log = logging.getLogger(__name__)

_STRUCTURES = {
    "unstructured": cov_struct.Unstructured,
    "exchangeable": cov_struct.Exchangeable,
    "ar1": cov_struct.Autoregressive,
    "independence": cov_struct.Independence,
}


def gee_working_correlation(model: Any, structure: str, times: list[int]) -> dict[str, Any]:
    """The fitted working correlation in JSON form: a matrix over ``times`` or one parameter."""
    dep = model.cov_struct.dep_params
    out: dict[str, Any] = {"structure": structure}
    if structure == "unstructured":
        mat = np.asarray(dep, dtype=float)
        out["sessions"] = [int(t) for t in times]
        out["matrix"] = [[num(v) for v in row] for row in mat]
    elif structure == "independence":
        out["alpha"] = 0.0
    else:
        out["alpha"] = num(float(np.atleast_1d(dep)[0]))
    return out


def fit(
    data: pd.DataFrame, spec: Mapping[str, Any], estimands: Mapping[str, str], alpha: float
) -> dict[str, Any]:
    """Kind ``gee``: linear GEE of a score, unstructured working correlation across sessions.

    Parameters
    ----------
    data : pandas.DataFrame
        The cohort's prepared session table.
    spec : mapping
        The resolved spec: ``outcome``, ``fixed`` (patsy terms; ``C(session)`` for one mean
        per session), ``correlation`` (unstructured | exchangeable | ar1 | independence),
        ``se`` (robust | bias_reduced), ``max_times``, ``sessions``, ``centre``, ...
    estimands : mapping
        Strategy per intercurrent event.
    alpha : float
        1 - confidence level.

    Returns
    -------
    dict
        Model JSON fields: coefficients (Wald, normal reference), the illness effect in
        score points, the working correlation, and the SE type.
    """
    what = spec["label"]
    outcome = spec["outcome"]
    terms = list(spec["fixed"])
    structure = spec.get("correlation", "unstructured")
    if structure not in _STRUCTURES:
        raise SkipModel(f"{what}: unknown working correlation {structure!r} (use {', '.join(_STRUCTURES)})")
    df, record = model_rows(data, spec, estimands, outcome=outcome, terms=[*terms, "session"], what=what)
    if spec["illness_term"] in " ".join(terms):
        require_illness(df, what)
    group = spec["group"]
    df = df.sort_values([group, "session"], kind="stable")
    times = sorted(int(t) for t in pd.unique(df["session"]))
    if structure == "unstructured" and len(times) > int(spec.get("max_times", 12)):
        raise SkipModel(
            f"{what}: {len(times)} distinct sessions: an unstructured working correlation would have "
            f"{len(times) * (len(times) - 1) // 2} parameters (at most max_times = {spec.get('max_times', 12)} "
            "sessions); use correlation: exchangeable or ar1"
        )
    formula = f"{outcome} ~ " + " + ".join(terms)
    y_df, x_df = patsy.dmatrices(formula, df, return_type="dataframe")
    rows = df.loc[y_df.index]
    groups = rows[group].astype(str).to_numpy()
    time_index = rows["session"].map({t: i for i, t in enumerate(times)}).to_numpy(dtype=int)
    cov_struct = _STRUCTURES[structure]()
    kwargs = {"time": time_index} if structure in ("unstructured", "ar1") else {}
    model = GEE(
        y_df.iloc[:, 0].to_numpy(),
        x_df,
        groups=groups,
        family=families.Gaussian(),
        cov_struct=cov_struct,
        **kwargs,
    )
    se_type = spec.get("se", "robust")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = model.fit(maxiter=int(spec.get("maxiter", 100)), cov_type=se_type)
    msgs = sorted({str(w.message).splitlines()[0] for w in caught if "converge" in str(w.message).lower()})
    converged = bool(getattr(res, "converged", True)) and not msgs
    coefs = coefficient_rows(list(x_df.columns), np.asarray(res.params), np.asarray(res.bse), alpha=alpha)
    eff = illness_effect(coefs, spec["illness_term"], scale="points", mcid=mcid_for(outcome))
    if eff is not None:
        eff["outcome"] = outcome
    out: dict[str, Any] = {
        "converged": converged,
        "singular": False,
        "attempts": [],
        "engine": "statsmodels GEE",
        "optimizer": "GEE iterations",
        "method": "GEE",
        "formula": formula,
        "re_formula": None,
        "nobs": int(len(y_df)),
        "ngroups": int(len(np.unique(groups))),
        "df_method": "normal",
        "coefficients": coefs,
        "illness_effect": eff,
        "random": None,
        "residual_variance": num(float(res.scale)),
        "working_correlation": gee_working_correlation(model, structure, times),
        "se_type": {"robust": "robust (sandwich)", "bias_reduced": "bias-reduced sandwich (Mancl-DeRouen)"}.get(
            se_type, se_type
        ),
        "estimands": record,
        "estimand_scale": "population-averaged (marginal) difference in score points",
        "analysis_role": "marginal model: one mean per session, working correlation across sessions, "
        "robust SEs; valid under MCAR dropout (the likelihood MMRM under MAR)",
        "messages": msgs,
        "design": design_of(rows, formula, None, group, list(x_df.columns), centre=spec.get("centre") or ()),
    }
    if df.attrs.get("row_filters"):
        out["row_filters"] = df.attrs["row_filters"]
    return out
