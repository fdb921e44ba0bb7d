"""The kinds of model: one entry per config ``kind:``, with its defaults, checks and code.

A model in ``config/config.yaml`` names a ``kind``; :data:`REGISTRY` maps it to a
:class:`Kind`, which declares together

* the fields the kind reads and their defaults (on top of
  :data:`ketastats.models.specs.COMMON_DEFAULTS`),
* the cross-field checks of a spec of that kind that the JSON schema cannot express,
* whether its standard errors come from a Hessian that each fitting attempt checks,
* its code: ``ketastats/models/kinds/<kind>.py``, whose ``fit(data, spec, estimands, alpha)``
  returns the kind's result fields (imported on first use: a workflow job fits one model,
  and importing every kind, statsmodels.api with it, cost each job about a second).

This module is plain Python (no numpy, pandas or statsmodels): the config check imports it
on every Snakefile parse.

Examples
--------
>>> REGISTRY["glmm_binary"].defaults["n_agq"]
'auto'
>>> REGISTRY["lmm"].module
'ketastats.models.kinds.lmm'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Kind", "REGISTRY", "kind_of"]

Check = Callable[[str, Mapping[str, Any]], list[str]]

#: kind -> its fit function, once imported
_FITS: dict[str, Callable[..., dict[str, Any]]] = {}


@dataclass(frozen=True)
class Kind:
    """One kind of model.

    Attributes
    ----------
    name : str
        The config's ``kind:``; also the name of its module in ``ketastats.models.kinds``.
    summary : str
        What is fitted, in one line.
    defaults : mapping
        The kind's fields and their defaults (on top of the fields every kind has).
    checks : tuple of callables
        ``check(where, spec) -> list of problems`` of a resolved spec of this kind.
    hessian_se : bool
        Its standard errors come from the Hessian (or robust covariance) that every fitting
        attempt checks: a failed check in every attempt makes the fit ``unreliable``.
    needs_outcome : bool
        The spec must name an outcome and fixed terms (unless it gives a formula).
    row_filters : bool
        The kind applies the sensitivity row filters ``complete_case`` and
        ``exclude_onset_within_days``.
    """

    name: str
    summary: str
    defaults: Mapping[str, Any]
    checks: tuple[Check, ...] = ()
    hessian_se: bool = False
    needs_outcome: bool = True
    row_filters: bool = False

    @property
    def module(self) -> str:
        """The module that fits this kind."""
        return f"ketastats.models.kinds.{self.name}"

    @property
    def fit(self) -> Callable[..., dict[str, Any]]:
        """``fit(data, spec, estimands, alpha)`` of this kind (its module imported on first use)."""
        if self.name not in _FITS:
            _FITS[self.name] = importlib.import_module(self.module).fit
        return _FITS[self.name]

    def problems(self, where: str, spec: Mapping[str, Any]) -> list[str]:
        """Every problem the kind's checks find in ``spec``."""
        return [p for check in self.checks for p in check(where, spec)]


_PRIMARY_FIXED = ["progress", "progress_log", "days_since_prev", "score_baseline", "ill_within", "ill_between", "ill_lag1"]

#: multiple-imputation fields of kinds lmm_mi and tipping_point (same fields -> same imputations)
_MI_DEFAULTS: dict[str, Any] = {
    "imputations": 20,
    "iterations": 10,
    "donors": 5,
    "seed": 20261125,
    "auxiliary": ["qids_sr16", "phq9"],
    "auxiliary_patient": ["age", "sex", "bmi", "il6_pg_ml", "tnfa_pg_ml", "il1b_pg_ml", "crp_mg_l"],
    "planned_sessions": None,
}

_MARKER_COVARIATE = {"censoring": "lod_sqrt2", "max_censored_fraction": 0.3, "flag_censored_fraction": 0.3}


# ------------------------------------------------------------------ checks
def _random_slope_on_illness(why: str) -> Check:
    def check(where: str, spec: Mapping[str, Any]) -> list[str]:
        if spec["illness_term"] in spec.get("random", []):
            return []
        return [f"{where}.random: {why.format(kind=spec['kind'], term=repr(spec['illness_term']))}; add it to random."]

    return check


def _no_random(what: str) -> Check:
    def check(where: str, spec: Mapping[str, Any]) -> list[str]:
        if spec.get("random") and (what != "tobit" or spec.get("censoring") == "tobit"):
            if what == "tobit":
                return [f"{where}.random: the censored (tobit) model has a random intercept only; remove random."]
            return [f"{where}.random: kind {spec['kind']} fits a random intercept only; remove random."]
        return []

    return check


def _binary_correlation(where: str, spec: Mapping[str, Any]) -> list[str]:
    if spec.get("correlation") in (None, "exchangeable", "independence"):
        return []
    return [
        f"{where}.correlation: kind gee_binary supports exchangeable or independence; "
        "unstructured and ar1 are for kind gee."
    ]


def _multiple_imputation(where: str, spec: Mapping[str, Any]) -> list[str]:
    problems = []
    if spec.get("df_method") not in ("barnard_rubin", None):
        problems.append(
            f"{where}.df_method: kind {spec['kind']} pools by Rubin's rules with Barnard-Rubin df; "
            "use barnard_rubin (or leave it out)."
        )
    if spec.get("donors") is not None and int(spec["donors"]) < 1:
        problems.append(f"{where}.donors: at least 1 donor is needed.")
    return problems


def _deltas_include_zero(where: str, spec: Mapping[str, Any]) -> list[str]:
    if 0 in [float(d) for d in spec.get("deltas") or []]:
        return []
    return [f"{where}.deltas: include 0 (the MAR analysis the tipping point is measured from)."]


def _gee_se(where: str, spec: Mapping[str, Any]) -> list[str]:
    if spec.get("se") in (None, "robust", "bias_reduced"):
        return []
    return [f"{where}.se: kind gee has sandwich SEs only; use robust or bias_reduced."]


def _mmrm_inference(where: str, spec: Mapping[str, Any]) -> list[str]:
    problems = []
    if spec.get("se") not in (None, "model", "empirical"):
        problems.append(f"{where}.se: kind mmrm has model-based (model) or sandwich (empirical) SEs.")
    if spec.get("df_method") not in (None, "satterthwaite", "kenward_roger", "normal"):
        problems.append(f"{where}.df_method: kind mmrm takes satterthwaite, kenward_roger or normal.")
    if spec.get("df_method") == "kenward_roger" and spec.get("se") == "empirical":
        problems.append(f"{where}.se: Kenward-Roger adjusts the model-based covariance; use se: model with it.")
    return problems


def _se_choice(allowed: tuple[str, ...]) -> Check:
    def check(where: str, spec: Mapping[str, Any]) -> list[str]:
        se = spec.get("se")
        if se is None or se in allowed:
            return []
        return [f"{where}.se: kind {spec['kind']} takes {', '.join(allowed[:-1])} or {allowed[-1]}; got {se!r}."]

    return check


# ---------------------------------------------------------------- registry
_KINDS = (
    Kind(
        "lmm",
        "Linear mixed model of a score (the primary model, and sensitivity variants).",
        {
            "outcome": "score", "fixed": list(_PRIMARY_FIXED), "random": ["progress"], "formula": None,
            "re_formula": None,
            # cr2 (default): the CR2 sandwich over patients with Bell-McCaffrey df, which covers where
            # the model's covariance is wrong; model: lme4's sigma^2 (X'V^-1X)^-1; robust /
            # bias_reduced: the plain or Mancl-DeRouen sandwich, normal reference (docs/statistics.md)
            "se": "cr2",
        },
        checks=(_se_choice(("model", "robust", "bias_reduced", "cr2")),),
        row_filters=True,
    ),
    Kind(
        "gee",
        "Linear GEE of a score with one mean per session and an unstructured working correlation "
        "across sessions, robust SEs: the marginal model (valid under MCAR dropout).",
        {
            "outcome": "score",
            "fixed": ["C(session)", "days_since_prev", "score_baseline", "ill_within", "ill_between", "ill_lag1"],
            "correlation": "unstructured",
            "se": "robust",
            "max_times": 12,
            "df_method": "normal",
        },
        checks=(_gee_se,),
        hessian_se=True,
        row_filters=True,
    ),
    Kind(
        "mmrm",
        "Mixed model for repeated measures by REML (SAS PROC MIXED's REPEATED statement): one mean per "
        "session, a covariance across the sessions of a patient (unstructured by default, falling back along "
        "covariance_fallback), Satterthwaite or Kenward-Roger df; valid under MAR dropout.",
        {
            "outcome": "score",
            "fixed": ["C(session)", "days_since_prev", "score_baseline", "ill_within", "ill_between", "ill_lag1"],
            "visit": "session",
            "covariance": "us",
            "covariance_fallback": ["us", "toeph", "ar1h"],
            "covariance_group": None,
            "max_visits": 12,
            "se": "model",
        },
        checks=(_mmrm_inference,),
        row_filters=True,
    ),
    Kind(
        "gee_binary",
        "Logistic GEE with an exchangeable working correlation (response/remission per session, "
        "or at the end of the course with one row per patient).",
        {
            "outcome": "score_response",
            "fixed": ["progress", "progress_log", "score_baseline", "ill_within", "ill_between", "ill_lag1"],
            "level": "session",
            "correlation": "exchangeable",
            "df_method": "normal",
            "min_events": 10,
        },
        checks=(_binary_correlation,),
        hessian_se=True,
    ),
    Kind(
        "glmm_binary",
        "Random-intercept logistic model by maximum likelihood (adaptive Gauss-Hermite).",
        {
            "outcome": "score_response",
            "fixed": ["progress", "progress_log", "score_baseline", "ill_within", "ill_between", "ill_lag1"],
            "n_agq": "auto",
            "df_method": "normal",
            "min_events": 10,
        },
        checks=(_no_random("random intercept"),),
        hessian_se=True,
    ),
    Kind(
        "cytokine_illness",
        "Effect of illness on each cytokine marker, log scale, one mixed model per marker "
        "(censored at the limit of detection by default).",
        {
            "markers": ["il6_pg_ml", "tnfa_pg_ml", "il1b_pg_ml", "crp_mg_l"],
            "fixed": ["ill_within", "ill_between", "progress"],
            "random": [],
            "sessions": "all",
            "censoring": "tobit",
            "n_agq": "auto",
            "max_censored_fraction": 0.8,
            "flag_censored_fraction": 0.3,
            "min_draws": 20,
            "family": "cytokine",
        },
        checks=(_no_random("tobit"),),
        needs_outcome=False,
    ),
    Kind(
        "cytokine_moderation",
        "Illness x baseline log marker (grand-mean centred) on the score, with a random slope for illness.",
        {
            "outcome": "score",
            "moderators": ["il6_pg_ml", "crp_mg_l"],
            "fixed": list(_PRIMARY_FIXED),
            "random": ["progress", "ill_within"],
            **_MARKER_COVARIATE,
            "family": "cytokine",
        },
        checks=(
            _random_slope_on_illness(
                "a cross-level interaction needs a random slope for {term} (Heisig & Schaeffer 2019)"
            ),
        ),
        needs_outcome=False,
    ),
    Kind(
        "mediation",
        "Within-person 1-1-1 mediation illness -> log marker -> score, Monte Carlo CI of the indirect effect.",
        {
            "outcome": "score",
            "mediator": "il6_pg_ml",
            "fixed": ["progress", "progress_log", "days_since_prev", "score_baseline", "ill_between"],
            "random": [],
            **_MARKER_COVARIATE,
            "min_draws": 20,
            "n_draws": 100000,
            "seed": 20261125,
            "family": "cytokine",
        },
        needs_outcome=False,
    ),
    Kind(
        "illness_slopes",
        "Spread of patient-level illness effects (random slope on within-person illness) with the patients' BLUPs.",
        {"outcome": "score", "fixed": list(_PRIMARY_FIXED), "random": ["progress", "ill_within"]},
        checks=(_random_slope_on_illness("kind {kind} needs a random slope on the illness term {term}"),),
    ),
    Kind(
        "lmm_mi",
        "The lmm model on data sets completed by chained equations (wide format, predictive mean matching), "
        "pooled by Rubin's rules with Barnard-Rubin df (hypothetical strategy for dropout, under MAR).",
        {
            "outcome": "score",
            "fixed": list(_PRIMARY_FIXED),
            "random": ["progress"],
            "df_method": "barnard_rubin",
            # cr2: each imputation's CR2 sandwich, as kind lmm (docs/statistics.md); model: lme4's
            "se": "cr2",
            **_MI_DEFAULTS,
        },
        checks=(_multiple_imputation, _se_choice(("cr2", "model"))),
    ),
    Kind(
        "tipping_point",
        "Delta-adjusted multiple imputation: imputed ratings at ill sessions shifted by each delta (MNAR), "
        "refitted and pooled; the delta at which the conclusion about the illness effect changes.",
        {
            "outcome": "score",
            "fixed": list(_PRIMARY_FIXED),
            "random": ["progress"],
            "df_method": "barnard_rubin",
            # cr2: each imputation's CR2 sandwich, as kind lmm (docs/statistics.md); model: lme4's
            "se": "cr2",
            **_MI_DEFAULTS,
            "deltas": [-12, -10, -8, -6, -4, -2, 0, 2, 4, 6, 8, 10, 12],
        },
        checks=(_multiple_imputation, _deltas_include_zero, _se_choice(("cr2", "model"))),
    ),
)

def _decision_fields(where: str, spec: Mapping[str, Any]) -> list[str]:
    problems = []
    truncate = spec.get("truncate")
    if truncate is not None and not (0 <= float(truncate[0]) < float(truncate[1]) <= 1):
        problems.append(f"{where}.truncate: two percentiles (fractions) lo < hi in [0, 1], e.g. [0.01, 0.99]; "
                        "null = no truncation.")
    lo, hi = (float(x) for x in spec["propensity_range"])
    if not 0 <= lo < hi <= 1:
        problems.append(f"{where}.propensity_range: lo < hi in [0, 1], e.g. [0.025, 0.975].")
    known = set(_DECISION_CONFOUNDERS)
    for key in ("confounders", "propensity_terms", "outcome_terms"):
        unknown = [t for t in spec.get(key) or [] if t not in known]
        if unknown:
            problems.append(f"{where}.{key}: {', '.join(map(repr, unknown))} not a confounder; use "
                            f"{', '.join(_DECISION_CONFOUNDERS)}.")
    return problems


#: confounders of kind decision (ketastats.decisions.points.CONFOUNDERS; plain Python here)
_DECISION_CONFOUNDERS = (
    "severity", "illness_type", "febrile", "days_since_onset", "previous_score", "baseline_score", "progress",
    "days_since_previous", "illness_medication", "baseline_log_il6", "baseline_log_crp",
)  # fmt: skip

_KINDS = (
    *_KINDS,
    Kind(
        "decision",
        "When a patient is ill at a scheduled infusion: the effect of postponing it, and of a reduced dose, "
        "on the next rating (sequential target-trial emulation; IPW, g-formula or AIPW).",
        {
            "estimator": "aipw",
            "decisions": ["postpone", "reduced_dose"],
            "outcomes": ["next", "end", "response_next", "response_end"],
            "confounders": list(_DECISION_CONFOUNDERS),
            "propensity_terms": None,
            "outcome_terms": None,
            "truncate": [0.01, 0.99],
            "min_per_arm": 20,
            "min_per_stratum": 20,
            "propensity_range": [0.025, 0.975],
            "max_share_outside": 0.5,
            "illness_term": None,
            "df_method": "normal",
            # sandwich: the analytic SEs (docs/statistics.md); bootstrap: the patient-level cluster bootstrap
            "se": "sandwich",
            "bootstrap": 200,
            "seed": 17,
        },
        checks=(_decision_fields, _se_choice(("sandwich", "bootstrap"))),
        needs_outcome=False,
    ),
    Kind(
        "illness_by",
        "The primary model with the within-person illness term split by illness type, severity and febrile "
        "status (one refit per grouping), with a global test of equal effects.",
        {
            "outcome": "score",
            "fixed": list(_PRIMARY_FIXED),
            "random": ["progress"],
            "by": ["illness_type", "illness_severity", "febrile"],
            "split_term": "ill_within",
            "min_sessions": 20,
            "illness_term": None,
        },
    ),
)

#: every kind of model, by its config name
REGISTRY: dict[str, Kind] = {k.name: k for k in _KINDS}


def kind_of(spec: Mapping[str, Any]) -> Kind:
    """The :class:`Kind` of a resolved spec."""
    return REGISTRY[spec["kind"]]
