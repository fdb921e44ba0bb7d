"""Individual variability of the illness effect (kind ``illness_slopes``).

The primary model with a random slope on within-person illness: its SD is the spread of
patient-level illness effects around the average effect, and ``b_W + u_ill,i`` (the BLUP)
is each patient's predicted effect. Whether the spread is distinguishable from zero is
tested by a REML likelihood-ratio test against the same model without the illness slope;
the variance is on the boundary under the null, so the p-value is from the 50:50 mixture
of chi-square distributions with q and q + 1 degrees of freedom, q being the number of
random effects of the smaller model (Stram & Lee 1994).

The slope is identifiable only from patients with both ill and non-ill sessions; with
fewer than ``min_patients`` such patients the model is skipped.

References
----------
Stram, D. O., & Lee, J. W. (1994). Variance components testing in the longitudinal mixed
effects model. *Biometrics*, 50(4), 1171-1177.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..common import as_float, illness_effect, mcid_for, num, require_illness
from ..counted import escape
from ..fitting import fit_lmm_robust, formulas_for, lmm_block, lmm_design
from ..retries import SkipModel
from ..rows import model_rows

__all__ = ["mixture_lrt_pvalue", "fit"]


def mixture_lrt_pvalue(stat: float, q: int) -> float:
    """p-value of a boundary LRT for one added random effect: 0.5 chi2_q + 0.5 chi2_(q+1).

    Examples
    --------
    With q = 0 (adding the only random effect) the 5% critical value is 2.71.

    >>> round(mixture_lrt_pvalue(2.7055, 0), 3)
    0.05
    """
    stat = max(float(stat), 0.0)
    p_q = 1.0 if q == 0 else stats.chi2.sf(stat, q)
    if q == 0 and stat > 0:
        p_q = 0.0
    return float(0.5 * p_q + 0.5 * stats.chi2.sf(stat, q + 1))


def fit(data: pd.DataFrame, spec: Mapping[str, Any], estimands: Mapping[str, str], alpha):
    """Kind ``illness_slopes``: spread of patient-level illness effects, with BLUPs."""
    what = spec["label"]
    ill = spec["illness_term"]
    formula, re_formula = formulas_for(spec)
    df, record = model_rows(
        data,
        spec,
        estimands,
        outcome=spec["outcome"],
        terms=[formula.split("~", 1)[1], re_formula],
        what=what,
    )
    require_illness(df, what)
    flag = as_float(df["ill"]) > 0
    both = flag.groupby(df[spec["group"]]).agg(["any", "all"])
    n_info = int((both["any"] & ~both["all"]).sum())
    if n_info < int(spec["min_patients"]):
        raise SkipModel(
            escape(what) + ": {patients} patient(s) have both ill and non-ill sessions; at least "
            f"{spec['min_patients']} are needed to estimate the spread of illness effects",
            patients=n_info,
        )
    reml = spec["method"] == "REML"
    common = dict(reml=reml, engine=spec["engine"], df_method=spec["df_method"], alpha=alpha)
    full = fit_lmm_robust(df, formula, spec["group"], re_formula, **common)
    reduced_random = [r for r in spec["random"] if r != ill]
    re_reduced = ("~" + " + ".join(reduced_random)) if reduced_random else None
    reduced = fit_lmm_robust(df, formula, spec["group"], re_reduced, **common)
    out = lmm_block(full)
    out["design"] = lmm_design(df, full, spec)
    out["estimands"] = record
    eff = illness_effect(full.coefficients, ill, scale="points", mcid=mcid_for(spec["outcome"]))
    out["illness_effect"] = eff
    names = list(full.result.random_names)
    k = names.index(ill)
    var = float(np.atleast_2d(full.result.re_cov)[k, k])
    sd = float(np.sqrt(max(var, 0.0)))
    mean = eff["estimate"] if eff else float("nan")
    stat = 2 * (full.result.loglik - reduced.result.loglik)
    q = len(reduced_random) + 1
    blups = full.result.blups
    patients = sorted(df.loc[flag, spec["group"]].astype(str).unique())
    b = blups.assign(group=blups["group"].astype(str)).set_index("group")
    pred = {p: num(mean + float(b.loc[p, ill])) for p in patients if p in b.index}
    mcid = mcid_for(spec["outcome"])
    vals = np.array([v for v in pred.values() if v is not None])
    out["illness_slopes"] = {
        "term": ill,
        "mean_effect": num(mean),
        "sd": num(sd),
        "variance": num(var),
        "expected_range_95": [num(mean - 1.96 * sd), num(mean + 1.96 * sd)],
        "lrt": {
            "statistic": num(stat),
            "p_value": num(mixture_lrt_pvalue(stat, q)),
            "null": f"no random slope on {ill} (REML, same fixed effects)",
            "reference": f"0.5 chi2({q}) + 0.5 chi2({q + 1}) (Stram & Lee 1994)",
        },
        "patients_with_both": n_info,
        # the share below is of these patients: both counts go through small-cell suppression
        "patients_predicted": int(len(vals)),
        "patients_at_or_above_mcid": int((vals >= mcid).sum()) if mcid is not None else None,
        "identifiable": bool(not full.outcome.singular),
        "predicted_effects": pred,
        "share_at_or_above_mcid": num(float((vals >= mcid).mean()))
        if mcid is not None and len(vals)
        else None,
        "mcid": mcid,
    }
    if full.outcome.singular:
        out["messages"].append(
            "the random slope on illness is at its boundary (singular fit): the spread of patient-level "
            "illness effects is not identifiable from these data"
        )
    return out
