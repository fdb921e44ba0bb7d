"""Kind ``mmrm``: mixed model for repeated measures by REML, as SAS PROC MIXED's REPEATED statement.

The score at each visit (by default: each session) is modelled with fixed effects from ``fixed`` (by
default one mean per session, the illness terms as time-varying covariates) and a covariance across the
visits of one patient, of structure ``covariance`` (``us`` unstructured by default; ``cs``, ``csh``,
``ar1``, ``ar1h``, ``toeph``, ``adh``), optionally one per level of ``covariance_group``. A patient's
covariance is the sub-matrix of the visits he attended, so the likelihood uses every rating and the
analysis is valid under MAR dropout (the GEE of kind ``gee`` needs MCAR). Fixed-effect tests use
Satterthwaite df (``df_method: satterthwaite``, SAS's ``ddfm=satterthwaite``), Kenward-Roger
(``kenward_roger``: adjusted covariance and df) or the normal reference; ``se: empirical`` gives
sandwich SEs. The engine is :mod:`ketastats.models.engines.mmrm`.

An unstructured covariance over many visits has more parameters than a cohort supports. The structures
are tried in ``covariance_fallback`` order from the requested one (default ``us``, ``toeph``, ``ar1h``):
a structure is passed over when it has more than ``max_visits`` visits (``us`` only), when it has at
least as many parameters as patients, when two visits are never rated in the same patient (``us``), or
when its fit fails to converge; the JSON says which structure was used and why the others were not.

Examples
--------
>>> from ketastats.models import resolve_spec
>>> spec = resolve_spec("mmrm", {"kind": "mmrm"})
>>> spec["covariance"], spec["visit"], spec["fixed"][0]
('us', 'session', 'C(session)')
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ...exceptions import ModelError
from ..common import coefficient_rows, illness_effect, mcid_for, num, require_illness
from ..engines.covariance import STRUCTURES, n_parameters
from ..engines.mmrm import MMRMResult, fit_mmrm, mmrm_design
from ..result import design_of
from ..retries import SkipModel
from ..rows import model_rows

__all__ = ["fit", "result_fields", "structure_order", "unsupported_reason"]

_DF_METHODS = ("satterthwaite", "kenward_roger", "normal")


def structure_order(requested: str, fallback) -> list[str]:
    """The requested structure, then those after it in the fallback order."""
    order = [s for s in (fallback or []) if s in STRUCTURES]
    if requested in order:
        return order[order.index(requested) :]
    return [requested, *order]


def unsupported_reason(structure: str, visits: list, subjects, visit_values, max_visits: int) -> str | None:
    """Why the data cannot support ``structure`` (None when they can)."""
    T = len(visits)
    n_pat = len(pd.unique(subjects))
    q = n_parameters(structure, T)
    if structure == "us" and T > max_visits:
        return f"{T} visits, more than max_visits = {max_visits} for an unstructured covariance ({q} parameters)"
    if q >= n_pat:
        return f"{q} covariance parameters for {n_pat} patients"
    if structure == "us" and T > 1:
        wide = pd.crosstab(pd.Series(subjects, name="s"), pd.Series(visit_values, name="v")).clip(upper=1)
        together = wide.T.to_numpy() @ wide.to_numpy()
        if together.min() < 1:
            return "two visits are never rated in the same patient (their covariance is not identified)"
    return None


def _covariance_block(res: MMRMResult) -> dict[str, Any]:
    params = [
        {"group": g, "label": lab, "estimate": num(v), "se": num(math.sqrt(max(s, 0.0)))}
        for g, lab, v, s in zip(res.theta_groups, res.theta_labels, res.theta, np.diag(res.cov_theta), strict=True)
    ]
    mats, corrs = {}, {}
    for g, S in res.sigma.items():
        sd = np.sqrt(np.diag(S))
        mats[g] = [[num(v) for v in row] for row in S]
        corrs[g] = [[num(v) for v in row] for row in S / np.outer(sd, sd)]
    return {
        "structure": res.structure,
        "visits": res.visits,
        "groups": res.groups,
        "parameters": params,
        "matrix": mats,
        "correlation": corrs,
        "patterns": res.n_patterns,
    }


def fit(data: pd.DataFrame, spec: Mapping[str, Any], estimands: Mapping[str, str], alpha: float) -> dict[str, Any]:
    """Kind ``mmrm``: the model JSON fields (same shape as the LMM kinds, plus ``covariance``)."""
    what = spec["label"]
    outcome = spec["outcome"]
    terms = list(spec["fixed"])
    visit = spec.get("visit") or "session"
    cgroup = spec.get("covariance_group")
    df_method = spec.get("df_method") or "satterthwaite"
    if df_method not in _DF_METHODS:
        raise SkipModel(f"{what}: df_method {df_method!r} is not one of {', '.join(_DF_METHODS)} for kind mmrm")
    se_type = spec.get("se") or "model"
    extra = [visit] + ([cgroup] if cgroup else [])
    df, record = model_rows(data, spec, estimands, outcome=outcome, terms=[*terms, *extra], what=what)
    if spec["illness_term"] in " ".join(terms):
        require_illness(df, what)
    group = spec["group"]
    formula = f"{outcome} ~ " + " + ".join(terms)
    visit_levels = sorted(pd.unique(df[visit].dropna()))
    y, X, names, subj, vis, grp, used = mmrm_design(
        df, formula, subject=group, visit=visit, group=cgroup, return_rows=True
    )
    n_pat = len(pd.unique(subj))
    if n_pat < int(spec.get("min_patients", 10)):
        raise SkipModel(f"{what}: {n_pat} patients with usable sessions, fewer than min_patients")
    requested = spec.get("covariance") or "us"
    max_visits = int(spec.get("max_visits", 12))
    used_levels = [v for v in visit_levels if v in set(vis)]
    passed_over: list[str] = []
    res: MMRMResult | None = None
    for structure in structure_order(requested, spec.get("covariance_fallback")):
        why = unsupported_reason(structure, used_levels, subj, vis, max_visits)
        if why is None:
            try:
                cand = fit_mmrm(y, X, subj, vis, covariance=structure, group=grp, reml=spec["method"] == "REML",
                                names=names, visit_levels=used_levels)
            except ModelError as exc:
                why = f"fit failed: {exc}"
            else:
                if cand.converged:
                    res = cand
                    break
                why = f"did not converge ({cand.message})"
        passed_over.append(f"{structure}: {why}")
    if res is None:
        raise SkipModel(f"{what}: no covariance structure could be fitted ({'; '.join(passed_over)})")
    out = result_fields(
        res, formula=formula, rows=used, group=group, df_method=df_method, se_type=se_type, alpha=alpha,
        centre=spec.get("centre") or (), outcome=outcome, illness_term=spec["illness_term"],
    )
    out["covariance"].update(requested=requested, passed_over=passed_over)
    out["covariance"]["visits"] = [_jsonable(v) for v in used_levels]
    if passed_over:
        out["messages"].insert(0, f"covariance {res.structure} used instead of {requested}: " + "; ".join(passed_over))
    out["estimands"] = record
    if df.attrs.get("row_filters"):
        out["row_filters"] = df.attrs["row_filters"]
    return out


def result_fields(
    res: MMRMResult,
    *,
    formula: str,
    rows: pd.DataFrame,
    group: str,
    df_method: str = "satterthwaite",
    se_type: str = "model",
    alpha: float = 0.05,
    centre=(),
    outcome: str | None = None,
    illness_term: str | None = None,
) -> dict[str, Any]:
    """The model-result fields of a fitted MMRM (those of the LMM kinds, plus ``covariance``, ``m2loglik``
    and ``aic``); used by the kind and by ``ketastats fit --mmrm``."""
    p = len(res.names)
    if df_method == "kenward_roger":
        if se_type == "empirical":
            raise ModelError("Kenward-Roger adjusts the model-based covariance; use model-based SEs with it")
        vcov, dfs = res.kenward_roger("expected")["vcov"], res.kenward_roger_df("expected")
    elif se_type == "empirical":
        vcov, dfs = res.empirical_vcov(), np.full(p, float(res.n_subjects - p))
    else:
        vcov, dfs = res.vcov, res.df
    se = np.sqrt(np.diag(vcov))
    method = df_method if se_type != "empirical" or df_method == "normal" else "residual"
    coefs = coefficient_rows(
        res.names, res.beta, se, alpha=alpha, df=None if df_method == "normal" else dfs, df_method=method
    )
    eff = None
    if illness_term:
        eff = illness_effect(coefs, illness_term, scale="points", mcid=mcid_for(outcome) if outcome else None)
        if eff is not None:
            eff["outcome"] = outcome
    messages = []
    if res.aliased:
        messages.append("aliased terms dropped: " + ", ".join(res.aliased))
    if not res.converged:
        messages.append(res.message)
    return {
        "converged": bool(res.converged),
        "singular": not res.hessian_pd,
        "attempts": [],
        "engine": "ketastats mmrm",
        "optimizer": f"Newton ({res.iterations} iterations): {res.message}",
        "method": "REML" if res.reml else "ML",
        "formula": formula,
        "re_formula": None,
        "nobs": int(res.n_obs),
        "ngroups": int(res.n_subjects),
        "df_method": method,
        "coefficients": coefs,
        "fixed": {t: {"estimate": num(b), "se": num(s)} for t, b, s in zip(res.names, res.beta, se, strict=True)},
        "illness_effect": eff,
        "random": None,
        "residual_variance": None,
        "loglik": num(res.loglik),
        "m2loglik": num(res.m2loglik),
        "aic": num(res.aic()),
        "blups": None,
        "covariance": {**_covariance_block(res), "requested": res.structure, "passed_over": []},
        "se_type": {"model": "model-based", "empirical": "empirical (sandwich, CR0)"}[se_type]
        + (" with the Kenward-Roger adjustment" if df_method == "kenward_roger" else ""),
        "estimand_scale": "difference in score points (conditional on the covariates, marginal over patients)",
        "analysis_role": "MMRM: one mean per visit, covariance across visits, likelihood-based; valid under MAR "
        "dropout (GEE under MCAR)",
        "messages": messages,
        "design": design_of(rows, formula, None, group, res.names, centre=centre),
    }


def _jsonable(v):
    if isinstance(v, np.integer | int):
        return int(v)
    if isinstance(v, np.floating | float):
        f = float(v)
        return int(f) if f.is_integer() else f
    return str(v)
