"""Model specifications: the kinds of model, their defaults, and per-cohort resolution.

A model specification is a plain mapping read from ``config/config.yaml`` (``models:``).
Each names a ``kind`` (what is fitted) and the fields that kind reads; every field not
given takes the kind's default from :data:`KIND_DEFAULTS`. A cohort may override any field
of a named specification, or switch it off, under ``cohorts.<name>.models.<model>``;
:func:`resolve_spec` applies project defaults, then the project's spec, then the cohort's
overrides, so that the Snakemake workflow and the command line see the same model.

The kinds, their defaults, checks and code are declared together in
:mod:`ketastats.models.registry` (one file per kind in ``ketastats/models/kinds/``).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from ..contract import INSTRUMENTS
from ..exceptions import ConfigError
from .registry import REGISTRY

__all__ = [
    "KINDS",
    "KIND_DEFAULTS",
    "COMMON_DEFAULTS",
    "ESTIMAND_EVENTS",
    "STRATEGIES",
    "DEFAULT_ESTIMANDS",
    "resolve_spec",
    "resolve_estimands",
    "spec_problems",
]

#: every kind of model the statistics module can fit (:data:`ketastats.models.registry.REGISTRY`)
KINDS = tuple(REGISTRY)

#: intercurrent events (ICH E9(R1)) and the strategies that may be chosen for each
ESTIMAND_EVENTS = ("postponement", "dose_change", "discontinuation", "illness_medication")
STRATEGIES = ("treatment_policy", "hypothetical", "composite", "while_on_treatment", "principal_stratum")

#: project defaults (docs/statistics.md, "Intercurrent events and estimands"): treatment policy for the
#: course, while-on-treatment (draws before illness medication) for cytokine outcomes
DEFAULT_ESTIMANDS = {
    "postponement": "treatment_policy",
    "dose_change": "treatment_policy",
    "discontinuation": "treatment_policy",
    "illness_medication": "while_on_treatment",
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
    # row filters for sensitivity analyses (ketastats.models.rows)
    "complete_case": False,
    "exclude_onset_within_days": None,
    "planned_sessions": None,
}

#: defaults per kind (on top of COMMON_DEFAULTS), as the registry declares them
KIND_DEFAULTS: dict[str, dict[str, Any]] = {name: dict(k.defaults) for name, k in REGISTRY.items()}


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
    """Cross-field problems of a resolved spec that the JSON schema cannot express: those of
    every kind, then the kind's own (:attr:`ketastats.models.registry.Kind.checks`)."""
    problems = []
    kind = REGISTRY[spec["kind"]]
    formula = spec.get("formula")
    if formula is not None and "~" not in str(formula):
        problems.append(f"{where}.formula: {formula!r} has no '~'; write it as 'outcome ~ term + term'.")
    re_f = spec.get("re_formula")
    if re_f is not None and not str(re_f).strip().startswith("~"):
        problems.append(f"{where}.re_formula: {re_f!r} must start with '~' (e.g. '~session').")
    if kind.name != "lmm" and (formula is not None or re_f is not None):
        problems.append(
            f"{where}: formula/re_formula are only for kind lmm; use outcome, fixed and random for {kind.name}."
        )
    if kind.needs_outcome and formula is None:
        if not spec.get("outcome"):
            problems.append(f"{where}.outcome: required for kind {kind.name} (e.g. madrs).")
        if not spec.get("fixed"):
            problems.append(f"{where}.fixed: give at least one fixed-effect term.")
    if spec.get("censoring") == "tobit" and kind.name != "cytokine_illness":
        problems.append(
            f"{where}.censoring: tobit (a censored outcome model) is for kind cytokine_illness; the marker is "
            f"a covariate in {kind.name}: use lod_sqrt2, lod_half or exclude."
        )
    if spec.get("df_method") == "kenward_roger" and kind.name != "mmrm":
        problems.append(f"{where}.df_method: kenward_roger is for kind mmrm; use satterthwaite or normal.")
    filtering = " and ".join(k.name for k in REGISTRY.values() if k.row_filters)
    if spec.get("complete_case") and not kind.row_filters:
        problems.append(f"{where}.complete_case: supported for kinds {filtering}.")
    if spec.get("exclude_onset_within_days") is not None and not kind.row_filters:
        problems.append(f"{where}.exclude_onset_within_days: supported for kinds {filtering}.")
    if spec.get("se") == "cr2" and kind.name not in ("lmm", "lmm_mi", "tipping_point"):
        problems.append(f"{where}.se: cr2 is an option of kinds lmm, lmm_mi and tipping_point, not {kind.name}.")
    if spec.get("se") in ("robust", "bias_reduced") and kind.name not in ("lmm", "gee"):
        problems.append(f"{where}.se: cluster-robust SEs are an option of kinds lmm and gee, not {kind.name}.")
    return problems + kind.problems(where, spec)
