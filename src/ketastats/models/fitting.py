"""Fit a spec's linear mixed model: engines under retries, Satterthwaite df, the JSON block.

Shared by every kind built on a linear mixed model (``lmm``, ``cytokine_illness``,
``cytokine_moderation``, ``mediation``, ``illness_slopes``, ``lmm_mi``). Fitting goes
through :func:`ketastats.models.engines.lmm.fit_mixed` under
:func:`ketastats.models.retries.fit_with_retries` (the configured engine first, then the
others); fixed-effect tests use Satterthwaite degrees of freedom
(:mod:`ketastats.models.engines.satterthwaite`) unless the spec asks for the normal
approximation or the variance-parameter Hessian is not positive definite, and every
coefficient records which (``df_method``). ``se: robust`` (kind ``lmm``) replaces the
model-based SEs by the cluster-robust sandwich over patients and ``se: bias_reduced`` by its
Mancl-DeRouen correction, both with normal-reference tests and intervals; ``se: cr2`` by the
CR2 sandwich with Bell-McCaffrey degrees of freedom (:mod:`ketastats.models.engines.sandwich`,
as R's clubSandwich); ``se: model`` keeps lme4's SEs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import ModelError
from .common import (
    coefficient_rows,
    num,
)
from .engines.lmm import MixedModelResult, apply_references, design_matrices, fit_mixed
from .engines.sandwich import cluster_robust
from .engines.satterthwaite import SatterthwaiteResult, satterthwaite
from .result import Design, design_of
from .retries import Diagnosis, RetryOutcome, fit_with_retries

__all__ = ["LMM_SE_TYPES", "LMMFit", "fit_lmm_robust", "fit_spec_lmm", "lmm_block", "lmm_design", "formulas_for"]

log = logging.getLogger(__name__)


@dataclass
class LMMFit:
    """A robustly fitted LMM with its inference."""

    result: MixedModelResult
    satt: SatterthwaiteResult | None
    outcome: RetryOutcome
    coefficients: list[dict[str, Any]]
    df_method: str
    se_type: str = "model"


#: ``se`` of kind lmm -> the ``se_type`` written to the model JSON
LMM_SE_TYPES = {
    "model": "model-based",
    "robust": "cluster-robust (sandwich)",
    "bias_reduced": "bias-reduced cluster-robust sandwich (Mancl-DeRouen)",
    "cr2": "small-sample cluster-robust sandwich (CR2, Bell-McCaffrey)",
}

#: ``se`` of kind lmm -> the residual adjustment of :func:`~ketastats.models.engines.sandwich.cluster_robust`
_SANDWICH_ADJUST = {"robust": "none", "bias_reduced": "mancl_derouen", "cr2": "cr2"}


def formulas_for(spec: Mapping[str, Any], *, outcome: str | None = None, extra_fixed: Sequence[str] = ()):
    """``(formula, re_formula)`` from a spec's outcome/fixed/random (or its formula/re_formula)."""
    if spec.get("formula"):
        return str(spec["formula"]), spec.get("re_formula")
    fixed = [*spec["fixed"], *extra_fixed]
    formula = f"{outcome or spec['outcome']} ~ " + " + ".join(fixed)
    random = list(spec.get("random") or [])
    re_formula = ("~" + " + ".join(random)) if random else None
    return formula, re_formula


def fit_lmm_robust(
    data: pd.DataFrame,
    formula: str,
    group: str,
    re_formula: str | None,
    *,
    reml: bool = True,
    engine: str = "auto",
    df_method: str = "satterthwaite",
    alpha: float = 0.05,
    prefix: str = "",
    se: str = "model",
) -> LMMFit:
    """Fit an LMM with retries across engines; Satterthwaite (or normal) inference.

    The attempts are the configured engine, then ``statsmodels`` (which itself starts from
    several optimizers and keeps the best optimum), then ``fast``. An
    attempt is good when it converged, is not singular, and the negative Hessian of the
    (REML) log-likelihood in the variance parameters is positive definite.

    ``se`` is ``model`` (``sigma^2 (X'V^-1X)^-1``), ``robust`` or ``bias_reduced`` (the
    cluster-robust sandwich over groups, plain or Mancl-DeRouen, :func:`~ketastats.models.engines.sandwich.cluster_robust`;
    their tests and intervals use the normal reference, so ``df_method`` is then ``normal``) or ``cr2``
    (the CR2 sandwich with Bell-McCaffrey Satterthwaite df per coefficient, ``df_method`` ``bell_mccaffrey``,
    unless ``df_method`` is ``normal``).
    """
    if se not in LMM_SE_TYPES:
        raise ModelError(f"se must be one of {', '.join(LMM_SE_TYPES)}; got {se!r}")
    if engine == "auto":
        # auto = fast when the model is in its class, else statsmodels
        engines = ["auto", "statsmodels"]
    else:
        engines = [engine] + [e for e in ("statsmodels", "fast") if e != engine]
    y, X, Z, groups, xnames, _, _ = design_matrices(apply_references(data, {}), formula, group, re_formula)

    def attempt(eng):
        def run():
            res = fit_mixed(data, formula, group, re_formula, reml=reml, engine=eng)
            sat = satterthwaite(y, X, Z, groups, res.re_cov, res.residual_variance, reml=reml)
            return res, sat

        return run

    def assess(pair):
        res, sat = pair
        msgs = list(res.messages)
        if not sat.hessian_pd:
            msgs.append(
                "the Hessian of the log-likelihood in the variance parameters is not positive definite"
            )
        return Diagnosis(res.converged, res.singular, sat.hessian_pd, res.loglik, msgs)

    out = fit_with_retries([(f"engine={e}", attempt(e)) for e in engines], assess)
    res, sat = out.result
    df, method = (sat.df, "satterthwaite") if df_method == "satterthwaite" and sat.hessian_pd else (None, "normal")
    if se == "model" and df_method == "satterthwaite" and not sat.hessian_pd:
        log.warning("Satterthwaite df unavailable (Hessian not positive definite): normal approximation used")
    if se != "model":
        if list(res.fixed["term"]) != list(xnames):
            raise ModelError(f"fixed effects {list(res.fixed['term'])} differ from the design's {xnames}")
        sw = cluster_robust(y, X, Z, groups, res.re_cov, res.residual_variance, adjust=_SANDWICH_ADJUST[se])
        res.cov_beta = sw.cov
        res.fixed = res.fixed.assign(se=np.sqrt(np.diag(sw.cov)))
        # CR2 comes with its own Satterthwaite df (Bell-McCaffrey); the other sandwiches use the normal
        use_cr2_df = sw.df is not None and df_method != "normal"
        df, method = (sw.df, "bell_mccaffrey") if use_cr2_df else (None, "normal")
    coefs = coefficient_rows(
        list(res.fixed["term"]),
        res.fixed["estimate"].to_numpy(),
        res.fixed["se"].to_numpy(),
        alpha=alpha,
        df=df,
        df_method=method,
        prefix=prefix,
    )
    return LMMFit(res, sat, out, coefs, method, se)


def fit_spec_lmm(
    df: pd.DataFrame,
    formula: str,
    re_formula: str | None,
    spec: Mapping[str, Any],
    alpha: float,
    prefix: str = "",
) -> LMMFit:
    """:func:`fit_lmm_robust` with the spec's group, method, engine and df method (kind lmm: and se)."""
    return fit_lmm_robust(
        df,
        formula,
        spec["group"],
        re_formula,
        reml=spec["method"] == "REML",
        engine=spec["engine"],
        df_method=spec["df_method"],
        alpha=alpha,
        prefix=prefix,
        se=str(spec.get("se") or "model") if spec.get("kind") == "lmm" else "model",
    )


def _random_block(res: MixedModelResult) -> dict[str, Any]:
    cov = np.atleast_2d(res.re_cov)
    sd = np.sqrt(np.clip(np.diag(cov), 0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(sd, sd)
    return {
        "group": res.group,
        "names": list(res.random_names),
        "cov": [[num(v) for v in row] for row in cov],
        "sd": [num(v) for v in sd],
        "corr": [[num(v) for v in row] for row in corr],
    }


def _blups(res: MixedModelResult) -> dict[str, list] | None:
    if res.blups is None:
        return None
    b = res.blups.sort_values("group", key=lambda s: s.astype(str), kind="stable")
    out: dict[str, list] = {"group": [str(g) for g in b["group"]]}
    for c in res.random_names:
        out[str(c)] = [num(v) for v in b[c]]
    return out


def lmm_block(fit: LMMFit) -> dict[str, Any]:
    """The JSON fields of one fitted LMM (model JSON format)."""
    res = fit.result
    return {
        "converged": bool(fit.outcome.converged),
        "singular": bool(fit.outcome.singular),
        "attempts": fit.outcome.attempts_dicts(),
        "engine": res.engine,
        "optimizer": res.optimizer,
        "method": res.method,
        "formula": res.formula,
        "re_formula": res.re_formula,
        "nobs": int(res.nobs),
        "ngroups": int(res.ngroups),
        "df_method": fit.df_method,
        "se_type": LMM_SE_TYPES[fit.se_type],
        "coefficients": fit.coefficients,
        "fixed": {
            str(t): {"estimate": num(e), "se": num(s)}
            for t, e, s in zip(res.fixed["term"], res.fixed["estimate"], res.fixed["se"])
        },
        "random": _random_block(res),
        "residual_variance": num(res.residual_variance),
        "loglik": num(res.loglik),
        "blups": _blups(res),
        "messages": list(res.messages)
        + (
            []
            if fit.outcome.chosen.ok
            else [f"best attempt: {fit.outcome.chosen.message or 'not a clean fit'}"]
        ),
    }


def lmm_design(rows: pd.DataFrame, fit: LMMFit, spec: Mapping[str, Any]) -> Design:
    """The :class:`~ketastats.models.result.Design` of an LMM fitted to ``rows`` (the rows as analysed)."""
    res = fit.result
    return design_of(
        rows,
        res.formula,
        res.re_formula,
        res.group,
        [str(t) for t in res.fixed["term"]],
        [str(n) for n in res.random_names],
        centre=spec.get("centre") or (),
    )
