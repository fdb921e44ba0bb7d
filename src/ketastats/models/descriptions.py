"""What each model kind is, in words: model, estimation, standard errors, degrees of freedom.

The report's Methods paragraph for a model is assembled from the :class:`MethodDescription`
of its kind, built here from the model's own JSON (what was fitted, with which engine, which
SE and df method), so that a GEE is never described with a random intercept and a Tobit fit
never with lme4's SE formula. Every kind in :data:`ketastats.models.specs.KINDS` has an entry
in :data:`DESCRIBERS`; a test checks each kind's SE method and formula.

Texts are HTML: fixed wording plus values from the model escaped with :func:`markupsafe.escape`.

Examples
--------
>>> d = describe_method({"kind": "gee_binary", "formula": "y ~ ill", "level": "session",
...                      "working_correlation": {"structure": "exchangeable"},
...                      "se_type": "robust (sandwich)", "df_method": "normal"})
>>> d.se_method
'robust (sandwich) standard errors (Liang-Zeger), which stay valid when the working correlation is wrong'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from markupsafe import escape

__all__ = ["MethodDescription", "DESCRIBERS", "describe_method", "DF_METHODS"]

#: df_method -> how p-values and intervals are computed, in words
DF_METHODS: dict[str, str] = {
    "normal": "large-sample Wald tests and intervals (standard normal reference distribution)",
    "satterthwaite": "t tests and intervals with Satterthwaite degrees of freedom",
    "kenward-roger": "t tests and intervals with Kenward-Roger degrees of freedom",
    "kenward_roger": "t tests and intervals with the Kenward-Roger adjusted covariance and degrees of freedom "
    "[kenward1997]",
    "residual": "t tests and intervals with the residual degrees of freedom",
    "barnard_rubin": "t tests and intervals with Barnard-Rubin degrees of freedom [barnard1999]",
    "bell_mccaffrey": "t tests and intervals with the Satterthwaite degrees of freedom of the CR2 sandwich "
    "[bell2002; pustejovsky2018]",
    "mixed": "Satterthwaite degrees of freedom for the linear mixed fits and standard normal Wald "
    "tests for the censored (Tobit) fits",
}

_MODEL_BASED_SE = (
    "model-based standard errors from σ²(X'V⁻¹X)⁻¹ at the variance estimates, as lme4 reports them "
    "[bates2015]"
)


@dataclass(frozen=True)
class MethodDescription:
    """One model's Methods text, part by part (HTML; values escaped).

    Attributes
    ----------
    model : str
        What the model is ("a linear mixed model [laird1982]").
    formula : str
        The fitted fixed-effects formula as ``<code>`` (escaped); for a model fitted in parts
        (per marker, per mediation path) each part's formula with the part's name.
    random : str
        The random part in words ("" for marginal and one-row-per-patient models).
    estimation : str
        How it was estimated (REML, ML with quadrature, GEE, ...), with the engine.
    se_method : str
        Where its standard errors come from.
    inference : str
        How p-values and confidence intervals are computed (the df method).
    extra : str
        Anything else the kind needs said (imputation, delta adjustment, mediation draws).
    """

    model: str
    formula: str
    random: str
    estimation: str
    se_method: str
    inference: str
    extra: str = ""
    references: tuple[str, ...] = field(default=())


def _e(x: Any) -> str:
    return str(escape(x))


def _formula(m: Mapping[str, Any]) -> str:
    """The fitted formula as HTML code; a model fitted in parts (per marker, per path) lists each."""
    spec = m.get("spec") or {}
    if m.get("formula") or spec.get("formula"):
        return f"<code>{_e(m.get('formula') or spec.get('formula'))}</code>"
    parts = [(k, (v or {}).get("formula")) for k, v in (m.get("fits") or {}).items()]
    return "; ".join(f"<code>{_e(f)}</code> ({_e(k)})" for k, f in parts if f)


def _random(m: Mapping[str, Any]) -> str:
    spec = m.get("spec") or {}
    parts = {(v or {}).get("re_formula") for v in (m.get("fits") or {}).values()}
    re_f = m.get("re_formula") or spec.get("re_formula") or (parts.pop() if len(parts) == 1 else None)
    if re_f and str(re_f).strip() not in ("~1", "1"):
        return f"correlated random effects <code>{_e(re_f)}</code> (intercept and slopes) per patient"
    return "a random intercept per patient"


def _reml(m: Mapping[str, Any]) -> str:
    method = str(m.get("method") or (m.get("spec") or {}).get("method") or "")
    return {"REML": "restricted maximum likelihood (REML)", "ML": "maximum likelihood (ML)"}.get(
        method, _e(method) or "maximum likelihood"
    )


def _engine(m: Mapping[str, Any]) -> str:
    opt = f", optimizer {_e(m['optimizer'])}" if m.get("optimizer") else ""
    return f"the {_e(m.get('engine') or 'ketastats')} engine{opt}"


def _df(m: Mapping[str, Any]) -> str:
    method = str(m.get("df_method") or "normal")
    return DF_METHODS.get(method, f"the {_e(method)} method")


def _lmm(m: Mapping[str, Any]) -> MethodDescription:
    se_type = str(m.get("se_type") or "model-based")
    se_method = _MODEL_BASED_SE
    if se_type.startswith("small-sample"):
        se_method = (
            f"{_e(se_type)} standard errors over patients [liang1986; bell2002]: the patients' residuals "
            "adjusted so that the estimator is unbiased when the model's covariance is right, and valid when "
            "it is wrong"
        )
    elif se_type != "model-based":
        se_method = (
            f"{_e(se_type)} standard errors over patients (Liang-Zeger), which stay valid when the "
            "model's covariance of the sessions is wrong"
        )
    return MethodDescription(
        model="a linear mixed model [laird1982]",
        formula=_formula(m),
        random=_random(m),
        estimation=f"{_reml(m)} with {_engine(m)}",
        se_method=se_method,
        inference=_df(m),
    )


def _gee(m: Mapping[str, Any]) -> MethodDescription:
    wc = _e((m.get("working_correlation") or {}).get("structure", "unstructured"))
    return MethodDescription(
        model=(
            "a marginal (population-averaged) linear model with one mean per session [liang1986]"
        ),
        formula=_formula(m),
        random="",
        estimation=(
            f"generalized estimating equations [liang1986] with an {wc} working correlation across "
            f"sessions ({_engine(m)}); valid when dropout is completely at random, where the likelihood-"
            "based mixed models need it only at random"
        ),
        se_method=f"{_e(m.get('se_type') or 'robust (sandwich)')} standard errors (Liang-Zeger)",
        inference=_df(m),
    )


_STRUCTURE_WORDS = {
    "us": "an unstructured covariance",
    "cs": "a compound-symmetry covariance",
    "csh": "a heterogeneous compound-symmetry covariance",
    "ar1": "a first-order autoregressive covariance",
    "ar1h": "a heterogeneous first-order autoregressive covariance",
    "toeph": "a heterogeneous Toeplitz covariance",
    "adh": "a first-order ante-dependence covariance",
}


def _mmrm(m: Mapping[str, Any]) -> MethodDescription:
    cov = m.get("covariance") or {}
    words = _STRUCTURE_WORDS.get(str(cov.get("structure")), "a covariance")
    per_group = ""
    if (cov.get("groups") or ["all"]) != ["all"]:
        per_group = f", one per level of <code>{_e((m.get('spec') or {}).get('covariance_group'))}</code>"
    fallback = ""
    if cov.get("requested") and cov.get("requested") != cov.get("structure"):
        fallback = (
            f" ({_STRUCTURE_WORDS.get(str(cov['requested']), _e(cov['requested']))} was requested but the data "
            f"could not support it: {_e('; '.join(cov.get('passed_over') or []))})"
        )
    empirical = "empirical" in str(m.get("se_type") or "")
    kr = m.get("df_method") == "kenward_roger"
    if empirical:
        se = "empirical (sandwich) standard errors from the patients' score contributions"
    elif kr:
        se = "model-based standard errors (X'V⁻¹X)⁻¹ with the Kenward-Roger small-sample adjustment [kenward1997]"
    else:
        se = "model-based standard errors (X'V⁻¹X)⁻¹ at the covariance estimates"
    return MethodDescription(
        model=(
            "a mixed model for repeated measures (MMRM) [mallinckrodt2008]: one mean per session, with "
            f"{words} across the sessions of a patient{per_group}{fallback}, each patient contributing the "
            "sessions attended; valid when dropout is at random given the observed ratings (MAR), where the "
            "marginal GEE needs it completely at random (MCAR)"
        ),
        formula=_formula(m),
        random="",
        estimation=f"{_reml(m)} with {_engine(m)}, as SAS PROC MIXED's REPEATED statement",
        se_method=se,
        inference=_df(m),
    )


def _gee_binary(m: Mapping[str, Any]) -> MethodDescription:
    se = f"{_e(m.get('se_type') or 'robust (sandwich)')} standard errors (Liang-Zeger)"
    if (m.get("level") or (m.get("spec") or {}).get("level")) == "end":
        return MethodDescription(
            model=(
                "a logistic regression with one row per patient (the last rated session; the exposure is "
                "any ill session during the course)"
            ),
            formula=_formula(m),
            random="",
            estimation=f"maximum likelihood (estimating equations with independent patients; {_engine(m)})",
            se_method=se + ", here the heteroskedasticity-consistent (HC0) sandwich",
            inference=_df(m),
        )
    wc = _e((m.get("working_correlation") or {}).get("structure", "exchangeable"))
    return MethodDescription(
        model="a marginal (population-averaged) logistic model of the per-session outcome",
        formula=_formula(m),
        random="",
        estimation=(
            f"generalized estimating equations [liang1986] with an {wc} working correlation within "
            f"patients ({_engine(m)})"
        ),
        se_method=se + ", which stay valid when the working correlation is wrong",
        inference=_df(m),
    )


def _glmm_binary(m: Mapping[str, Any]) -> MethodDescription:
    return MethodDescription(
        model="a mixed (subject-specific) logistic model",
        formula=_formula(m),
        random=_random(m),
        estimation=f"{_e(m.get('method') or 'maximum likelihood')} with {_engine(m)}",
        se_method=(
            "standard errors from the inverse of the observed information (the Hessian of the "
            "integrated log-likelihood at the optimum), as glmer reports them"
        ),
        inference=_df(m),
    )


def _cytokine_illness(m: Mapping[str, Any]) -> MethodDescription:
    tobit = (m.get("censoring") or (m.get("spec") or {}).get("censoring")) == "tobit"
    return MethodDescription(
        model=(
            "per cytokine, a mixed model of the natural log of the marker"
            + (" left-censored at the assay's limit of detection (a Tobit mixed model)" if tobit else "")
        ),
        formula=_formula(m),
        random=_random(m),
        estimation=(
            f"{_e(m.get('method') or 'maximum likelihood')} with {_engine(m)}"
            if tobit
            else f"{_reml(m)} with {_engine(m)}, non-detects substituted "
            f"({_e((m.get('spec') or {}).get('censoring', ''))})"
        ),
        se_method=(
            "standard errors from the inverse of the full observed information (fixed effects and variance "
            "parameters together)"
            if tobit
            else _MODEL_BASED_SE
        ),
        inference=_df(m),
    )


def _cytokine_moderation(m: Mapping[str, Any]) -> MethodDescription:
    return MethodDescription(
        model=(
            "per baseline marker, the primary linear mixed model [laird1982] with the marker (centred) and "
            "its interaction with within-patient illness added"
        ),
        formula=_formula(m),
        random=_random(m),
        estimation=f"{_reml(m)} with {_engine(m)}",
        se_method=_MODEL_BASED_SE,
        inference=_df(m),
    )


def _mediation(m: Mapping[str, Any]) -> MethodDescription:
    return MethodDescription(
        model=(
            "a within-person (1-1-1) mediation model: two linear mixed models [laird1982], illness to the log "
            "marker (a path) and marker and illness to the outcome (b and direct paths)"
        ),
        formula=_formula(m),
        random=_random(m) + " in each equation",
        estimation=f"{_reml(m)} with {_engine(m)}",
        se_method=(
            _MODEL_BASED_SE + " for the paths; the indirect effect a·b by the Monte Carlo interval of "
            "Preacher and Selig (a and b drawn from their sampling distributions)"
        ),
        inference=_df(m),
    )


def _illness_slopes(m: Mapping[str, Any]) -> MethodDescription:
    return MethodDescription(
        model="the primary linear mixed model [laird1982] with a random slope for within-patient illness",
        formula=_formula(m),
        random=_random(m),
        estimation=f"{_reml(m)} with {_engine(m)}",
        se_method=_MODEL_BASED_SE + "; the slope's variance tested by a boundary likelihood-ratio test",
        inference=_df(m),
    )


def _lmm_mi(m: Mapping[str, Any]) -> MethodDescription:
    imp = m.get("imputation") or {}
    return MethodDescription(
        model="a linear mixed model [laird1982] fitted to multiply imputed data",
        formula=_formula(m),
        random=_random(m),
        estimation=(
            f"{_reml(m)} on each of m = {_e(imp.get('m', '?'))} data sets completed by multiple imputation by "
            "chained equations with predictive mean matching [vanbuuren2018] in wide format (one column per "
            "variable and session, keeping each patient's correlation across sessions), including the "
            "sessions after dropout (the hypothetical strategy under MAR)"
        ),
        se_method=(
            "standard errors pooled by Rubin's rules [rubin1987] from the small-sample cluster-robust (CR2) "
            "sandwich standard errors over patients of each completed data set [bell2002], the complete-data "
            "degrees of freedom being the mean of their Satterthwaite degrees of freedom [pustejovsky2018]"
            if str(m.get("se_type") or "").startswith("small-sample")
            else "standard errors pooled by Rubin's rules [rubin1987] from the model-based standard errors of "
            "each completed data set"
        ),
        inference=_df(m),
        extra="The imputation model's variables are listed under Sensitivity analyses.",
    )


def _tipping_point(m: Mapping[str, Any]) -> MethodDescription:
    return replace(
        _lmm_mi(m),
        extra=(
            "Delta adjustment [permutt2016]: every imputed rating at an ill session was shifted by delta "
            "points of the outcome scale (ratings missed during illness worse, or better, than MAR predicts) "
            "over a grid of deltas; the tipping point is the delta at which the conclusion about the illness "
            "effect changes (linear interpolation of the confidence bound between grid points)."
        ),
    )


def _decision(m: Mapping[str, Any]) -> MethodDescription:
    spec = m.get("spec") or {}
    est = str(m.get("estimator") or spec.get("estimator") or "aipw")
    conf = spec.get("confounders") or []
    ps = spec.get("propensity_terms") or conf
    om = spec.get("outcome_terms") or conf
    truncate = spec.get("truncate")
    trunc = (
        f", truncated at the {100 * float(truncate[0]):g}th and {100 * float(truncate[1]):g}th percentiles"
        if truncate else ""
    )
    model = {
        "ipw": "inverse-probability weighting [hernan2020] with stabilized weights [cole2008]" + trunc,
        "gformula": "the parametric g-formula [hernan2020]: an outcome regression in each arm, each decision "
        "point's predictions under both decisions averaged over all points",
        "aipw": "the doubly robust augmented inverse-probability-weighted estimator [bang2005], consistent when "
        "either the propensity or the outcome model is right",
    }.get(est, _e(est))
    se = {
        "ipw": "cluster-robust sandwich standard errors (patients as clusters) of the weighted regression of the "
        "outcome on the decision, the weights treated as known (conservative)",
        "gformula": "cluster-robust sandwich standard errors (patients as clusters) by the delta method on the "
        "stacked estimating equations of the outcome regressions and the standardized mean",
        "aipw": "cluster-robust sandwich standard errors (patients as clusters) of the mean of the AIPW "
        "pseudo-outcomes (the influence function)",
    }.get(est, "")
    if spec.get("se") == "bootstrap" and est in ("ipw", "gformula", "aipw"):
        se = (f"standard errors from a patient-level cluster bootstrap ({int(spec.get('bootstrap') or 200)} "
              f"resamples of the patients, seed {spec.get('seed')}) that refits the propensity and outcome models "
              "in each resample, so that their estimation is accounted for")
    return MethodDescription(
        model=(
            "a sequential target-trial emulation [hernan2016]: each scheduled infusion (from the second) at "
            "which the patient was acutely ill is one trial of the decision taken there (postpone versus give "
            "as planned; a reduced versus the usual dose), analysed by " + model
        ),
        formula=(
            f"<code>decision ~ {_e(' + '.join(ps))}</code> (propensity, logistic); "
            f"<code>outcome ~ {_e(' + '.join(om))}</code> (outcome, per arm; linear, logistic for response)"
        ),
        random="",
        estimation="maximum likelihood with statsmodels GLM [seabold2010]",
        se_method=se,
        inference=_df(m),
        extra=(
            "Diagnostics: propensity overlap, standardized mean differences before and after weighting "
            "[austin2015], effective sample sizes and the largest weights; a decision is skipped, with the "
            "reason, when positivity fails."
        ),
    )


def _illness_by(m: Mapping[str, Any]) -> MethodDescription:
    spec = m.get("spec") or {}
    by = ", ".join(_e(b).replace("_", " ") for b in spec.get("by") or [])
    return MethodDescription(
        model=(
            "the primary linear mixed model [laird1982] refitted once per grouping (" + by + ") with the "
            "within-person illness term split into one person-mean-centred indicator per level [curran2011]"
        ),
        formula=_formula(m),
        random=_random(m),
        estimation=f"{_reml(m)} with {_engine(m)}",
        se_method=_MODEL_BASED_SE + "; the global test that every level's effect is equal is a Wald "
        "chi-squared test from the fixed effects' covariance",
        inference=_df(m),
    )


#: kind -> function(model JSON) -> MethodDescription
DESCRIBERS: dict[str, Callable[[Mapping[str, Any]], MethodDescription]] = {
    "lmm": _lmm,
    "gee": _gee,
    "gee_binary": _gee_binary,
    "glmm_binary": _glmm_binary,
    "cytokine_illness": _cytokine_illness,
    "cytokine_moderation": _cytokine_moderation,
    "mediation": _mediation,
    "illness_slopes": _illness_slopes,
    "lmm_mi": _lmm_mi,
    "tipping_point": _tipping_point,
    "mmrm": _mmrm,
    "decision": _decision,
    "illness_by": _illness_by,
}


def describe_method(m: Mapping[str, Any]) -> MethodDescription:
    """The :class:`MethodDescription` of a fitted model (its JSON, as the workflow writes it).

    Raises
    ------
    KeyError
        If the model's ``kind`` has no description (every kind in the registry has one).
    """
    return DESCRIBERS[str(m.get("kind") or "lmm")](m)
