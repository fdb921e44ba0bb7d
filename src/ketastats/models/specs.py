"""Model specifications: the kinds of model, their defaults, and per-cohort resolution.

A model specification is a plain mapping read from ``config/config.yaml`` (``models:``).
Each names a ``kind`` (what is fitted) and the fields that kind reads; every field not
given takes the kind's default from :data:`KIND_DEFAULTS`. A cohort may override any field
of a named specification, or switch it off, under ``cohorts.<name>.models.<model>``;
:func:`resolve_spec` applies project defaults, then the project's spec, then the cohort's
overrides, so that the Snakemake workflow and the command line see the same model.

Kinds
-----
``lmm``
    Linear mixed model of a score (the primary model, and sensitivity variants).
``gee``
    Linear GEE of a score with one mean per session and an unstructured working correlation
    across sessions, robust SEs: the MMRM analogue (sensitivity analysis).
``gee_binary``
    Logistic GEE with an exchangeable working correlation (response/remission per session,
    or at the end of the course with one row per patient).
``glmm_binary``
    Random-intercept logistic model by maximum likelihood (adaptive Gauss-Hermite).
``cytokine_illness``
    Effect of illness on each cytokine marker, log scale, one mixed model per marker.
``cytokine_moderation``
    Illness x baseline log marker (grand-mean centred) on the score, with a random slope
    for illness.
``mediation``
    Within-person 1-1-1 mediation illness -> log marker -> score, Monte Carlo CI of the
    indirect effect.
``illness_slopes``
    Spread of patient-level illness effects (random slope on within-person illness) with
    the patients' BLUPs.
``lmm_mi``
    The ``lmm`` model on ``imputations`` data sets completed by chained equations (wide format,
    predictive mean matching), pooled by Rubin's rules with Barnard-Rubin df; sessions after
    dropout are imputed (hypothetical strategy under MAR). :mod:`ketastats.models.imputation`.
``tipping_point``
    Delta-adjusted multiple imputation: imputed ratings at ill sessions shifted by each
    ``deltas`` value (MNAR), refitted and pooled; the delta at which the conclusion about the
    illness effect changes. :mod:`ketastats.models.tipping`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from ..contract import INSTRUMENTS
from ..exceptions import ConfigError

__all__ = [
    "KINDS",
    "KIND_DEFAULTS",
    "COMMON_DEFAULTS",
    "ESTIMAND_EVENTS",
    "STRATEGIES",
    "DEFAULT_ESTIMANDS",
    "MCID",
    "resolve_spec",
    "resolve_estimands",
    "spec_problems",
]

#: every kind of model the statistics module can fit
KINDS = (
    "lmm",
    "gee",
    "gee_binary",
    "glmm_binary",
    "cytokine_illness",
    "cytokine_moderation",
    "mediation",
    "illness_slopes",
    "lmm_mi",
    "tipping_point",
)

#: intercurrent events (ICH E9(R1)) and the strategies that may be chosen for each
ESTIMAND_EVENTS = ("postponement", "dose_change", "discontinuation", "illness_medication")
STRATEGIES = ("treatment_policy", "hypothetical", "composite", "while_on_treatment", "principal_stratum")

#: project defaults (domain.md 4.3): treatment policy for the course, while-on-treatment
#: (draws before illness medication) for cytokine outcomes
DEFAULT_ESTIMANDS = {
    "postponement": "treatment_policy",
    "dose_change": "treatment_policy",
    "discontinuation": "treatment_policy",
    "illness_medication": "while_on_treatment",
}

#: minimal clinically important differences, points (used when ketastats.contract has none;
#: none is established for the MADRS subscale without items 4-8, so it has none here).
#: MADRS: distribution-based MCID 1.6-1.9, "about 2 points" (Duru & Fantino 2008, Curr Med
#: Res Opin 24:1329-35; domain.md 1.6); anchor-based MID 3-6 (Hengartner & Ploderl 2021).
MCID = {"madrs": 2.0}

_PRIMARY_FIXED = [
    "progress",
    "progress_log",
    "days_since_prev",
    "score_baseline",
    "ill_within",
    "ill_between",
    "ill_lag1",
]

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

#: fields every kind accepts, with their defaults
COMMON_DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "required": False,
    "label": None,
    "role": "secondary",
    "group": "patient_id",
    "sessions": "post_baseline",
    "centre": ["ill"],
    "method": "REML",
    "engine": "auto",
    "df_method": "satterthwaite",
    "illness_term": "ill_within",
    "min_patients": 10,
    # row filters for sensitivity analyses (ketastats.models.common)
    "complete_case": False,
    "exclude_onset_within_days": None,
    "planned_sessions": None,
}

#: defaults per kind (on top of COMMON_DEFAULTS)
KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "lmm": {
        "outcome": "score",
        "fixed": list(_PRIMARY_FIXED),
        "random": ["progress"],
        "formula": None,
        "re_formula": None,
        # model: lme4's sigma^2 (X'V^-1X)^-1; robust / bias_reduced: cluster-robust sandwich over
        # patients (plain, or Mancl-DeRouen), normal reference (docs/statistics.md)
        "se": "model",
    },
    "gee": {
        "outcome": "score",
        "fixed": ["C(session)", "days_since_prev", "score_baseline", "ill_within", "ill_between", "ill_lag1"],
        "correlation": "unstructured",
        "se": "robust",
        "max_times": 12,
        "df_method": "normal",
    },
    "gee_binary": {
        "outcome": "score_response",
        "fixed": ["progress", "progress_log", "score_baseline", "ill_within", "ill_between", "ill_lag1"],
        "level": "session",
        "correlation": "exchangeable",
        "df_method": "normal",
        "min_events": 10,
    },
    "glmm_binary": {
        "outcome": "score_response",
        "fixed": ["progress", "progress_log", "score_baseline", "ill_within", "ill_between", "ill_lag1"],
        "n_agq": "auto",
        "df_method": "normal",
        "min_events": 10,
    },
    "cytokine_illness": {
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
    "cytokine_moderation": {
        "outcome": "score",
        "moderators": ["il6_pg_ml", "crp_mg_l"],
        "fixed": list(_PRIMARY_FIXED),
        "random": ["progress", "ill_within"],
        "censoring": "lod_sqrt2",
        "max_censored_fraction": 0.3,
        "flag_censored_fraction": 0.3,
        "family": "cytokine",
    },
    "mediation": {
        "outcome": "score",
        "mediator": "il6_pg_ml",
        "fixed": ["progress", "progress_log", "days_since_prev", "score_baseline", "ill_between"],
        "random": [],
        "censoring": "lod_sqrt2",
        "max_censored_fraction": 0.3,
        "flag_censored_fraction": 0.3,
        "min_draws": 20,
        "n_draws": 100000,
        "seed": 20261125,
        "family": "cytokine",
    },
    "illness_slopes": {
        "outcome": "score",
        "fixed": list(_PRIMARY_FIXED),
        "random": ["progress", "ill_within"],
    },
    "lmm_mi": {
        "outcome": "score",
        "fixed": list(_PRIMARY_FIXED),
        "random": ["progress"],
        "df_method": "barnard_rubin",
        **_MI_DEFAULTS,
    },
    "tipping_point": {
        "outcome": "score",
        "fixed": list(_PRIMARY_FIXED),
        "random": ["progress"],
        "df_method": "barnard_rubin",
        **_MI_DEFAULTS,
        "deltas": [-12, -10, -8, -6, -4, -2, 0, 2, 4, 6, 8, 10, 12],
    },
}


#: the placeholder for the cohort's primary instrument in model specs: ``score``,
#: ``score_baseline``, ``score_change``, ``score_response``, ``score_remission``
_SCORE_TOKEN = re.compile(r"(?<![A-Za-z0-9_.])score(?=(?:_baseline|_change|_response|_remission)?(?![A-Za-z0-9_]))")


def score_terms(value: Any, instrument: str) -> Any:
    """``value`` (a string, or lists/dicts of them) with the ``score`` placeholder replaced
    by the instrument's column name.

    Examples
    --------
    >>> score_terms(["score_baseline", "ill_within", "scores"], "hamd17")
    ['hamd17_baseline', 'ill_within', 'scores']
    >>> score_terms("score ~ progress + score_baseline", "phq9")
    'phq9 ~ progress + phq9_baseline'
    """
    if isinstance(value, str):
        return _SCORE_TOKEN.sub(instrument, value)
    if isinstance(value, list):
        return [score_terms(v, instrument) for v in value]
    if isinstance(value, dict):
        return {k: score_terms(v, instrument) for k, v in value.items()}
    return value


def resolve_spec(
    name: str,
    project_spec: Mapping[str, Any],
    override: Mapping[str, Any] | None = None,
    *,
    instrument: str | None = "",
) -> dict[str, Any]:
    """The full specification of model ``name``: defaults <- project spec <- cohort override.

    The placeholder ``score`` (``score``, ``score_baseline``, ``score_change``,
    ``score_response``, ``score_remission``) in any field stands for the cohort's primary
    instrument and is replaced by its column (``hamd17``, ``hamd17_baseline``, ...); ``{score}``
    in the label by its abbreviation ("HAM-D 17"). A spec that names an instrument itself
    (``outcome: madrs_nonsick``) keeps it.

    Parameters
    ----------
    name : str
        The model's name (key under ``models:``).
    project_spec : mapping
        ``models.<name>`` from the config.
    override : mapping, optional
        ``cohorts.<cohort>.models.<name>``: any field to replace, or ``enabled: false``.
    instrument : str or None
        The cohort's primary instrument (``cohorts.<cohort>.outcome``), a key of
        :data:`ketastats.contract.INSTRUMENTS`; None keeps the placeholders (a project-level
        spec, before it is given to a cohort); by default the spec's own ``instrument`` (a spec
        resolved before keeps its cohort's), else ``madrs``.

    Returns
    -------
    dict
        Every field of the kind, with ``kind`` and ``label`` filled in.

    Examples
    --------
    >>> s = resolve_spec("primary", {"kind": "lmm", "role": "primary"}, {"method": "ML"})
    >>> s["method"], s["random"], s["outcome"]
    ('ML', ['progress'], 'madrs')
    """
    kind = (override or {}).get("kind") or project_spec.get("kind") or "lmm"
    if kind not in KIND_DEFAULTS:
        raise ConfigError(
            f"models.{name}.kind: {kind!r} is not a model kind; use one of: {', '.join(KINDS)}."
        )
    spec: dict[str, Any] = copy.deepcopy(COMMON_DEFAULTS)
    spec.update(copy.deepcopy(KIND_DEFAULTS[kind]))
    spec.update(copy.deepcopy(dict(project_spec)))
    spec.update(copy.deepcopy(dict(override or {})))
    spec["kind"] = kind
    if not spec.get("label"):
        spec["label"] = name.replace("_", " ")
    if instrument is None:
        return spec
    if instrument == "":
        instrument = str(spec.get("instrument") or "madrs")
    if instrument not in INSTRUMENTS:
        raise ConfigError(f"outcome {instrument!r} is not an instrument; use one of: {', '.join(INSTRUMENTS)}.")
    label = str(spec["label"]).replace("{score}", INSTRUMENTS[instrument].short)
    spec = {k: (v if k == "label" else score_terms(v, instrument)) for k, v in spec.items()}
    spec["label"] = label
    spec["instrument"] = instrument
    return spec


#: terms that carry the illness flag (dropped when a cohort has no illness data)
ILLNESS_TERMS = ("ill", "ill_within", "ill_between", "ill_lag1", "ever_ill")


def without_illness(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec with every illness term removed: the outcome model of a cohort without illness data.

    Examples
    --------
    >>> s = without_illness(resolve_spec("primary", {"kind": "lmm", "role": "primary"}))
    >>> s["fixed"], s["illness_term"]
    (['progress', 'progress_log', 'days_since_prev', 'madrs_baseline'], None)
    """
    out = copy.deepcopy(dict(spec))
    for key in ("fixed", "random"):
        out[key] = [t for t in out.get(key) or [] if not any(
            re.fullmatch(rf"{ill}(?::.*)?|.*:{ill}", str(t)) for ill in ILLNESS_TERMS)]
    out["centre"] = [c for c in out.get("centre") or [] if c not in ILLNESS_TERMS]
    out["illness_term"] = None
    return out


def resolve_estimands(
    project: Mapping[str, str] | None, override: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Strategy per intercurrent event: :data:`DEFAULT_ESTIMANDS` <- project <- cohort."""
    out = dict(DEFAULT_ESTIMANDS)
    out.update(dict(project or {}))
    out.update(dict(override or {}))
    return out


def spec_problems(where: str, spec: Mapping[str, Any]) -> list[str]:
    """Cross-field problems of a resolved spec that the JSON schema cannot express."""
    problems = []
    kind = spec["kind"]
    formula = spec.get("formula")
    if formula is not None and "~" not in str(formula):
        problems.append(f"{where}.formula: {formula!r} has no '~'; write it as 'outcome ~ term + term'.")
    re_f = spec.get("re_formula")
    if re_f is not None and not str(re_f).strip().startswith("~"):
        problems.append(f"{where}.re_formula: {re_f!r} must start with '~' (e.g. '~session').")
    if kind != "lmm" and (formula is not None or re_f is not None):
        problems.append(
            f"{where}: formula/re_formula are only for kind lmm; use outcome, fixed and random for {kind}."
        )
    if kind in ("lmm", "gee", "gee_binary", "glmm_binary", "illness_slopes", "lmm_mi", "tipping_point") and (
        formula is None
    ):
        if not spec.get("outcome"):
            problems.append(f"{where}.outcome: required for kind {kind} (e.g. madrs).")
        if not spec.get("fixed"):
            problems.append(f"{where}.fixed: give at least one fixed-effect term.")
    if kind == "illness_slopes" and spec["illness_term"] not in spec.get("random", []):
        problems.append(
            f"{where}.random: kind illness_slopes needs a random slope on the illness term "
            f"{spec['illness_term']!r}; add it to random."
        )
    if kind == "cytokine_moderation" and spec["illness_term"] not in spec.get("random", []):
        problems.append(
            f"{where}.random: a cross-level interaction needs a random slope for {spec['illness_term']!r} "
            "(Heisig & Schaeffer 2019); add it to random."
        )
    if spec.get("censoring") == "tobit" and kind != "cytokine_illness":
        problems.append(
            f"{where}.censoring: tobit (a censored outcome model) is for kind cytokine_illness; the marker is "
            f"a covariate in {kind}: use lod_sqrt2, lod_half or exclude."
        )
    if kind == "cytokine_illness" and spec.get("censoring") == "tobit" and spec.get("random"):
        problems.append(
            f"{where}.random: the censored (tobit) model has a random intercept only; remove random."
        )
    if kind == "gee_binary" and spec.get("correlation") not in (None, "exchangeable", "independence"):
        problems.append(
            f"{where}.correlation: kind gee_binary supports exchangeable or independence; "
            "unstructured and ar1 are for kind gee."
        )
    if spec.get("complete_case") and kind not in ("lmm", "gee"):
        problems.append(f"{where}.complete_case: supported for kinds lmm and gee.")
    if spec.get("exclude_onset_within_days") is not None and kind not in ("lmm", "gee"):
        problems.append(f"{where}.exclude_onset_within_days: supported for kinds lmm and gee.")
    if kind in ("lmm_mi", "tipping_point"):
        if spec.get("df_method") not in ("barnard_rubin", None):
            problems.append(
                f"{where}.df_method: kind {kind} pools by Rubin's rules with Barnard-Rubin df; "
                "use barnard_rubin (or leave it out)."
            )
        if kind == "tipping_point" and 0 not in [float(d) for d in spec.get("deltas") or []]:
            problems.append(
                f"{where}.deltas: include 0 (the MAR analysis the tipping point is measured from)."
            )
        if spec.get("donors") is not None and int(spec["donors"]) < 1:
            problems.append(f"{where}.donors: at least 1 donor is needed.")
    se = spec.get("se")
    if kind == "lmm" and se not in (None, "model", "robust", "bias_reduced"):
        problems.append(f"{where}.se: kind lmm takes model, robust or bias_reduced; got {se!r}.")
    if kind == "gee" and se == "model":
        problems.append(f"{where}.se: kind gee has sandwich SEs only; use robust or bias_reduced.")
    if se in ("robust", "bias_reduced") and kind not in ("lmm", "gee"):
        problems.append(f"{where}.se: cluster-robust SEs are an option of kinds lmm and gee, not {kind}.")
    if kind == "glmm_binary" and spec.get("random"):
        problems.append(f"{where}.random: kind glmm_binary fits a random intercept only; remove random.")
    return problems
