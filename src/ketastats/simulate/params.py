"""Parameters of the synthetic cohort generator: defaults, documentation and scenarios.

Every default, with its unit, source and plausible range, is documented in
``docs/simulation.md`` ("Parameters") and carries its evidence tag: **[S]** read in a public
source, **[D]** derived from such numbers by arithmetic or calibration, **[A]** an assumption
(a tunable knob). :data:`PARAM_DOCS` holds one line per parameter; ``default_params()``
returns a fresh nested copy of the defaults.

Scenarios (:data:`SCENARIOS`) are sparse overrides applied on top of the defaults; a YAML
file (``load_params``) may override any parameter on top of a scenario. Unknown keys are
refused with a :class:`~ketastats.exceptions.ConfigError` naming the key and listing the
valid ones, so a typo never silently falls back to a default.

Examples
--------
>>> p = default_params()
>>> p["response"]["responder_share"]
0.75
>>> resolve_params("null")["effects"]["sickness_shift"]["moderate"]
0.0
"""

from __future__ import annotations

import copy
import os
from typing import Any

from ketastats.exceptions import ConfigError

__all__ = [
    "CYTOKINES",
    "DEFAULTS",
    "ILLNESS_TYPES",
    "PARAM_DOCS",
    "SCENARIOS",
    "SEVERITIES",
    "default_params",
    "load_params",
    "merge_params",
    "resolve_params",
]

#: Severity levels, mildest first (their order is used as a rank).
SEVERITIES: tuple[str, ...] = ("mild", "moderate", "severe")
#: Illness types written to ``illness_type``.
ILLNESS_TYPES: tuple[str, ...] = (
    "respiratory",
    "influenza_like",
    "gastrointestinal",
    "other_febrile",
)
#: Cytokine keys (parameter names) in output-column order.
CYTOKINES: tuple[str, ...] = ("il6", "tnfa", "il1b", "crp")

DEFAULTS: dict[str, Any] = {
    "cohort": {
        "baseline_profile": "trial",
        "age_mean": 42.0,
        "age_sd": 13.0,
        "age_min": 18.0,
        "age_max": 80.0,
        "female_share": 0.60,
        "bmi_mean": 29.5,
        "bmi_sd": 5.0,
        "bmi_min": 16.0,
        "bmi_max": 60.0,
        "baseline_madrs": {
            "trial": {"mean": 32.0, "sd": 5.5, "min": 20.0, "max": 60.0},
            "clinic": {"mean": 28.0, "sd": 8.0, "min": 12.0, "max": 60.0},
        },
        "benzodiazepine_share": 0.40,
        "benzodiazepine_high_dose_share": 0.40,
        "antidepressant_share": 0.75,
    },
    "schedule": {
        "planned_infusions": 6,
        "end_of_course_visit": True,
        "thrice_weekly_share": 0.50,
        "dose_mg_kg": 0.5,
        "escalated_dose_mg_kg": 0.75,
        "escalation_after_infusions": 3,
        "escalation_improvement_below": 0.25,
        "escalation_prob": 0.30,
        "escalation_efficacy_multiplier": 1.0,
        "infusion_minutes": 40,
        "hypertension_event_prob": 0.01,
        "hypertension_early_multiplier": 2.0,
        "hypertension_age_or": 1.04,
        "hypertension_slowed_minutes": 60,
        "hypertension_dose_reduction": 0.1,
        "min_dose_mg_kg": 0.3,
    },
    "response": {
        "responder_share": 0.75,
        "f_responder_mean": 0.80,
        "f_responder_sd": 0.15,
        "f_minimal_mean": 0.20,
        "f_minimal_sd": 0.12,
        "f_min": -0.30,
        "f_max": 1.0,
        "k_median": 0.50,
        "k_sigma": 0.50,
        "residual_sd": 3.5,
        "residual_ar1": 0.30,
        "benzodiazepine_high_f_multiplier": 0.70,
        "waning_per_day": 0.4,
        "waning_grace_days": 3,
        "waning_cap_fraction": 0.5,
        "inflammation_moderation_per_sd": 0.0,
    },
    "illness": {
        "respiratory_rate_per_year": 2.5,
        "influenza_like_share": 0.10,
        "gastrointestinal_rate_per_year": 0.8,
        "other_febrile_rate_per_year": 0.2,
        "duration_mean_days": {
            "respiratory": 8.0,
            "influenza_like": 8.0,
            "gastrointestinal": 2.5,
            "other_febrile": 5.0,
        },
        "duration_gamma_shape": 4.0,
        "severity_probs": {"mild": 0.65, "moderate": 0.28, "severe": 0.07},
        "onset_window_before_days": 10.0,
        "report_sensitivity": 0.80,
        "false_positive_rate": 0.01,
        "postpone_prob": {"mild": 0.10, "moderate": 0.50, "severe": 0.90, "febrile": 0.90},
        "postpone_days_min": 3,
        "postpone_days_max": 7,
        "medication_prob": {"mild": 0.20, "moderate": 0.50, "severe": 0.80},
        "medication_class_probs": {
            "antipyretic": 0.70,
            "nsaid": 0.45,
            "antibiotic": 0.15,
            "steroid": 0.05,
        },
        "antibiotic_prob_other_febrile": 0.60,
        "anti_inflammatory_pulse_multiplier": 0.80,
    },
    "effects": {
        "sickness_shift": {"mild": 1.5, "moderate": 3.5, "severe": 6.0},
        "sickness_item_weights": {
            "madrs_2": 0.05,
            "madrs_4": 0.19,
            "madrs_5": 0.19,
            "madrs_6": 0.19,
            "madrs_7": 0.19,
            "madrs_8": 0.19,
        },
        "carryover_fraction": 0.40,
        "carryover_window_days": 10.0,
        "efficacy_multiplier_when_ill": 1.0,
        "il6_to_madrs_per_log": 0.0,
    },
    "biomarkers": {
        "median": {"il6": 1.8, "tnfa": 2.5, "il1b": 0.15, "crp": 1.3},
        "log_sd": {"il6": 0.60, "tnfa": 0.45, "il1b": 0.80, "crp": 1.35},
        "corr_il6_crp": 0.45,
        "corr_il6_baseline_madrs": 0.10,
        "noise_sd": {"il6": 0.30, "tnfa": 0.20, "il1b": 0.40, "crp": 0.35},
        "il6_drift_responders": -0.15,
        "il6_pulse": {"mild": 2.5, "moderate": 4.0, "severe": 10.0, "febrile": 10.0},
        "crp_pulse_by_type": {
            "respiratory": 6.0,
            "influenza_like": 25.0,
            "gastrointestinal": 5.0,
            "other_febrile": 15.0,
        },
        "crp_severity_exponent": {"mild": 0.8, "moderate": 1.0, "severe": 1.25},
        "tnfa_pulse": 1.3,
        "il1b_pulse": 1.0,
        "rise_days": {"il6": 1.5, "tnfa": 3.0, "il1b": 1.5, "crp": 2.5},
        "decay_half_life_days": {"il6": 1.5, "tnfa": 1.5, "il1b": 1.5, "crp": 0.8},
        "platform": "hs",
        "lod": {
            "hs": {"il6": 0.15, "tnfa": 0.2, "il1b": 0.15, "crp": 0.15},
            "standard_multiplex": {"il6": 1.4, "tnfa": 1.5, "il1b": 0.8, "crp": 0.15},
        },
        "sampling_prob": {"baseline": 0.60, "end": 0.50, "ill": 0.30, "other": 0.10},
    },
    "missingness": {
        "dropout_mechanism": "mar",
        "dropout_share": 0.08,
        "dropout_or_per_10_points": 2.0,
        "intermittent_missing": 0.04,
        "self_report_missing": 0.04,
    },
    "scales": {
        "phq9": True,
        "qids_sr16": True,
        "phq9_noise_sd": 2.0,
        "qids_noise_sd": 2.0,
        "item_profile": [3.6, 4.0, 3.3, 3.2, 2.2, 3.2, 3.4, 3.8, 3.0, 1.8],
        "item_profile_concentration": 40.0,
    },
    # the clinic's decision when a patient is ill at a scheduled infusion (issue 17); the
    # defaults keep the original rule (illness.postpone_prob) and add nothing
    "decisions": {
        "policy": "rule",
        "madrs_centre": 25.0,
        "postpone_logit": {
            "intercept": 0.0,
            "moderate": 0.0,
            "severe": 0.0,
            "febrile": 0.0,
            "per_point_previous_madrs": 0.0,
        },
        "reduce_logit": {
            "intercept": 0.0,
            "moderate": 0.0,
            "severe": 0.0,
            "febrile": 0.0,
            "per_point_previous_madrs": 0.0,
        },
        "reduced_dose_factor": 1.0,
        "postpone_shift_next": 0.0,
        "reduced_dose_shift_next": 0.0,
        "record_planned_illness": True,
    },
}

#: One line per parameter: meaning, unit and evidence tag (sources: docs/simulation.md, "Parameters").
PARAM_DOCS: dict[str, str] = {
    "cohort.baseline_profile": "'trial' N(32,5.5) in [20,60] or 'clinic' N(28,8) in [12,60] [S]",
    "cohort.age_mean": "age mean, years; N(42,13) truncated 18-80, written 90+ if >= 90 [S]",
    "cohort.age_sd": "age SD, years [S]",
    "cohort.age_min": "age lower truncation, years [S]",
    "cohort.age_max": "age upper truncation, years [S]",
    "cohort.female_share": "share of women [S]",
    "cohort.bmi_mean": "BMI mean kg/m2, N(29.5, 5) [S: Lii 2023]",
    "cohort.bmi_sd": "BMI SD kg/m2 [S]",
    "cohort.bmi_min": "BMI lower clip kg/m2 [A]",
    "cohort.bmi_max": "BMI upper clip kg/m2 [A]",
    "cohort.baseline_madrs": "true baseline MADRS per profile: mean, sd, min, max [S]",
    "cohort.benzodiazepine_share": "daily benzodiazepine use [S: Andrashko 2020 40%]",
    "cohort.benzodiazepine_high_dose_share": "share of BZD users >8 mg diazepam-eq. [S]",
    "cohort.antidepressant_share": "concurrent antidepressant [A]",
    "schedule.planned_infusions": "infusions planned per course [S]",
    "schedule.end_of_course_visit": "rating-only visit after the last infusion [D]",
    "schedule.thrice_weekly_share": "share on days 0,2,4,7,9,11 (else 0,3,7,10,14,17) [S]",
    "schedule.dose_mg_kg": "standard dose, mg/kg over 40 min [S]",
    "schedule.escalated_dose_mg_kg": "dose after escalation [A]",
    "schedule.escalation_after_infusions": "escalation decided after this many infusions [A]",
    "schedule.escalation_improvement_below": "escalate if improvement < this share [A]",
    "schedule.escalation_prob": "probability of escalation when eligible [A]",
    "schedule.escalation_efficacy_multiplier": "x increment of escalated infusions [A]",
    "schedule.infusion_minutes": "standard infusion duration, minutes [S]",
    "schedule.hypertension_event_prob": "severe hypertension per session [S: Yale 2024 ~1%]",
    "schedule.hypertension_early_multiplier": "risk multiplier in sessions 1-3 [S: 43% in first 3]",
    "schedule.hypertension_age_or": "odds ratio per year of age (around 42) [S: Yale 2024]",
    "schedule.hypertension_slowed_minutes": "minutes when slowed by hypertension [A]",
    "schedule.hypertension_dose_reduction": "dose reduction (mg/kg) at the next infusion [A]",
    "schedule.min_dose_mg_kg": "dose floor after reductions [S: range 0.3-1.0]",
    "response.responder_share": "P(responder); 0.72 before recalibration, see _RECALIBRATION [D]",
    "response.f_responder_mean": "f, responders: mean; 0.76 before recalibration [D]",
    "response.f_responder_sd": "f, responders: SD [D]",
    "response.f_minimal_mean": "f, minimal improvers: mean [D; cf. O'Brien]",
    "response.f_minimal_sd": "f, minimal improvers: SD [D]",
    "response.f_min": "lower clip of f (negative = worsening) [A]",
    "response.f_max": "upper clip of f [A]",
    "response.k_median": "rate k per infusion, lognormal median [D]",
    "response.k_sigma": "rate k, lognormal sigma [D]",
    "response.residual_sd": "within-person residual SD, MADRS points [D: MADRS reliability]",
    "response.residual_ar1": "AR(1) correlation of residuals across sessions [A]",
    "response.benzodiazepine_high_f_multiplier": "f multiplier for >8 mg DZE BZD [S dir., A size]",
    "response.waning_per_day": "MADRS + per gap day beyond the grace days [D: relapse 18 d]",
    "response.waning_grace_days": "days after an infusion without waning [D]",
    "response.waning_cap_fraction": "waning capped at this share of the gain so far [D]",
    "response.inflammation_moderation_per_sd": "f += this per SD baseline log IL-6 [S: mixed]",
    "illness.respiratory_rate_per_year": "ARI onsets per person-year incl. influenza-like [S: 2-4]",
    "illness.influenza_like_share": "febrile influenza-like share of ARI [S/A: 4% of swabs]",
    "illness.gastrointestinal_rate_per_year": "AGE onsets per person-year [S: 0.41-1.27]",
    "illness.other_febrile_rate_per_year": "other febrile illness (UTI etc.) per person-year [A]",
    "illness.duration_mean_days": "mean symptomatic duration by type, days [S; other_febrile A]",
    "illness.duration_gamma_shape": "gamma shape of durations (4: CV 0.5) [S: 1-2 weeks]",
    "illness.severity_probs": "severity mix at onset mild/moderate/severe [A]",
    "illness.onset_window_before_days": "onsets allowed this many days before day 0 [D]",
    "illness.report_sensitivity": "P(ill flag | truly ill at the session) [A]",
    "illness.false_positive_rate": "P(ill flag | not ill) per session [A]",
    "illness.postpone_prob": "P(postponed | ill) by severity; 'febrile' for febrile types [A]",
    "illness.postpone_days_min": "postponement length, uniform integer min, days [A]",
    "illness.postpone_days_max": "postponement length, uniform integer max, days [A]",
    "illness.medication_prob": "P(any illness medication | episode) by severity [A]",
    "illness.medication_class_probs": "P(class | any illness medication) [A]",
    "illness.antibiotic_prob_other_febrile": "P(antibiotic | medicated other febrile) [A]",
    "illness.anti_inflammatory_pulse_multiplier": "NSAID/steroid scale log CRP/IL-6 pulse [A]",
    "effects.sickness_shift": "direct same-session MADRS shift by severity [A: 0 to +8]",
    "effects.sickness_item_weights": "share of the sickness shift per MADRS item [S qual.]",
    "effects.carryover_fraction": "share of the direct shift added at the next session [A]",
    "effects.carryover_window_days": "carry-over only within this many days of onset [A]",
    "effects.efficacy_multiplier_when_ill": "ill session's incremental drug effect x this [A]",
    "effects.il6_to_madrs_per_log": "MADRS per ln-unit of illness IL-6 pulse (mediation b) [A]",
    "biomarkers.median": "baseline medians: IL-6/TNF/IL-1b pg/mL, CRP mg/L [S/D/A]",
    "biomarkers.log_sd": "baseline SD on the log scale [S/D/A]",
    "biomarkers.corr_il6_crp": "corr(log IL-6, log CRP) [A]",
    "biomarkers.corr_il6_baseline_madrs": "corr(log IL-6, baseline MADRS) [A]",
    "biomarkers.noise_sd": "within-person noise, log scale [A]",
    "biomarkers.il6_drift_responders": "IL-6 change over a course, responders [S dir.]",
    "biomarkers.il6_pulse": "peak IL-6 fold change by severity ('febrile' floor) [A]",
    "biomarkers.crp_pulse_by_type": "peak CRP fold change at moderate severity [S: Melbye]",
    "biomarkers.crp_severity_exponent": "CRP fold = type fold ** exponent(severity) [A]",
    "biomarkers.tnfa_pulse": "peak TNF-a fold change [A]",
    "biomarkers.il1b_pulse": "peak IL-1b fold change (1 = negative control) [S]",
    "biomarkers.rise_days": "days from onset to peak [S: IL-6 d2, CRP d2-4, TNF d3]",
    "biomarkers.decay_half_life_days": "half-life of the pulse after resolution, days [S/A]",
    "biomarkers.platform": "assay profile: 'hs' or 'standard_multiplex' [A/S]",
    "biomarkers.lod": (
        "limits of detection per platform [A]; standard_multiplex IL-6 1.4 pg/mL gives the "
        "~35% non-detects of Thompson 2012 [S] with the hs IL-6 distribution (the research "
        "table's '~2 pg/mL' would give ~55%) [D]"
    ),
    "biomarkers.sampling_prob": "P(blood draw): baseline, end, reported ill, other [A]",
    "missingness.dropout_mechanism": "'mar' (last observed) or 'mnar' (unobserved next value) [A]",
    "missingness.dropout_share": "expected share of patients dropping out [S: 3-15%]",
    "missingness.dropout_or_per_10_points": "hazard odds ratio per 10 points less improvement [A]",
    "missingness.intermittent_missing": "missing MADRS at an attended session (not baseline) [A]",
    "missingness.self_report_missing": "missing PHQ-9 / QIDS-SR16 at an attended session [A]",
    "scales.phq9": "write phq9 [A]",
    "scales.qids_sr16": "write qids_sr16 [A]",
    "scales.phq9_noise_sd": "PHQ-9 noise SD around the range-scaled latent severity [A]",
    "scales.qids_noise_sd": "QIDS-SR16 noise SD around the range-scaled latent severity [A]",
    "scales.item_profile": "mean MADRS item profile (relative weights, items 1-10) [A]",
    "scales.item_profile_concentration": "Dirichlet concentration of patient item profiles [A]",
    "decisions.policy": (
        "'rule': postpone with illness.postpone_prob, never reduce the dose; 'logistic': "
        "postpone and reduce the dose by the logits below [A]"
    ),
    "decisions.madrs_centre": "previous MADRS at which the logits' intercepts apply [A]",
    "decisions.postpone_logit": (
        "P(postpone | ill at the planned day): logit = intercept + moderate/severe + febrile "
        "+ per_point_previous_madrs x (previous rating - centre) [A]"
    ),
    "decisions.reduce_logit": (
        "P(reduced dose | ill and not postponed), same terms (policy 'logistic') [A]"
    ),
    "decisions.reduced_dose_factor": "a reduced dose is the usual dose x this, that infusion only [A]",
    "decisions.postpone_shift_next": (
        "MADRS shift at the rating after a postponed infusion, on top of what the later day "
        "changes (illness resolved, waning) [A]"
    ),
    "decisions.reduced_dose_shift_next": "MADRS shift at the rating after a reduced-dose infusion [A]",
    "decisions.record_planned_illness": (
        "write planned_ill, planned_illness_type/severity/days_since_onset/medication: the "
        "illness at the planned day of a postponed infusion [A]"
    ),
}

#: Why two ketamine-response defaults differ from the research table (responder_share 0.72 -> 0.75,
#: f_responder_mean 0.76 -> 0.80, both inside the table's plausible ranges): its trajectory
#: calibration ignored the benzodiazepine (f x0.7 in ~16% of patients), gap-day waning and
#: sickness components, which together cost ~4 points of response after six infusions. With
#: those three switched off this generator reproduces that check (20,000 patients:
#: response/remission after one 9.9%/2.5%, after six 61.5%/39.8%, mean change -17.6).
#: With them on, the recalibrated values give after one 10.5%/2.6%, after six 63%/41%,
#: mean change -18.1 (SD 10.5), median 3 infusions to response (tests/test_calibration.py;
#: docs/simulation.md, "Where the code differs from the research table").
_RECALIBRATION = "responder_share 0.72->0.75, f_responder_mean 0.76->0.80"

_NULL_EFFECTS = {
    "sickness_shift": {"mild": 0.0, "moderate": 0.0, "severe": 0.0},
    "carryover_fraction": 0.0,
    "efficacy_multiplier_when_ill": 1.0,
    "il6_to_madrs_per_log": 0.0,
}

def _scenario_file(name: str) -> dict:
    """A scenario kept in its own file, ``simulate/<name>.yaml`` (sparse overrides, commented)."""
    from pathlib import Path

    from ketastats.safeyaml import load_yaml

    path = Path(__file__).with_name(f"{name}.yaml")
    return load_yaml(path.read_text(encoding="utf-8"), source=str(path))


#: Named scenarios: sparse overrides on top of :data:`DEFAULTS` (which is ``sickness``).
SCENARIOS: dict[str, dict] = {
    # illness has no effect on the MADRS at all (symptoms, drug efficacy, mediation)
    "null": {"effects": copy.deepcopy(_NULL_EFFECTS)},
    # direct sickness-behaviour shift on items 4-8 (+2) with carry-over; the defaults
    "sickness": {},
    # sickness + an ill session's incremental drug effect x0.7 (scenario B, docs/simulation.md)
    "attenuation": {"effects": {"efficacy_multiplier_when_ill": 0.7}},
    # sickness + an ill session's incremental drug effect x1.2 (scenario C)
    "amplification": {"effects": {"efficacy_multiplier_when_ill": 1.2}},
    # illness acts only through the drug effect (no symptom shift): a clean efficacy test
    "attenuation_only": {
        "effects": {
            "sickness_shift": {"mild": 0.0, "moderate": 0.0, "severe": 0.0},
            "carryover_fraction": 0.0,
            "efficacy_multiplier_when_ill": 0.7,
        }
    },
    # about half of the sickness effect runs through the IL-6 pulse (path b = 1.5)
    "mediation": {
        "effects": {
            "sickness_shift": {"mild": 0.75, "moderate": 1.75, "severe": 3.0},
            "il6_to_madrs_per_log": 1.5,
        }
    },
    # dropout depends on the current, unobserved MADRS (defaults otherwise)
    "mnar": {"missingness": {"dropout_mechanism": "mnar"}},
    # baseline IL-6 moderates ketamine response (conflicting literature: both signs)
    "inflammation_attenuates": {"response": {"inflammation_moderation_per_sd": -0.10}},
    "inflammation_enhances": {"response": {"inflammation_moderation_per_sd": 0.10}},
    # winter season: ARI about 5%/week
    "winter": {"illness": {"respiratory_rate_per_year": 5.2}},
    # community clinic: less severe, wider baseline
    "clinic": {"cohort": {"baseline_profile": "clinic"}},
    # standard multiplex assay: IL-6 LOD 1.4 pg/mL, ~35% non-detects (Thompson 2012)
    "standard_multiplex": {"biomarkers": {"platform": "standard_multiplex"}},
    # proceed, postpone or reduce the dose (issue 17): ketastats.simulate.decisions
    "decisions": _scenario_file("decisions"),
}

_CHOICES = {
    "decisions.policy": ("rule", "logistic"),
    "cohort.baseline_profile": ("trial", "clinic"),
    "biomarkers.platform": ("hs", "standard_multiplex"),
    "missingness.dropout_mechanism": ("mar", "mnar"),
}
_PROBABILITIES = (
    "cohort.female_share",
    "cohort.benzodiazepine_share",
    "cohort.benzodiazepine_high_dose_share",
    "cohort.antidepressant_share",
    "schedule.thrice_weekly_share",
    "schedule.escalation_prob",
    "schedule.hypertension_event_prob",
    "response.responder_share",
    "illness.influenza_like_share",
    "illness.report_sensitivity",
    "illness.false_positive_rate",
    "missingness.dropout_share",
    "missingness.intermittent_missing",
    "missingness.self_report_missing",
)


def default_params() -> dict:
    """Return a fresh nested dict of the documented defaults (the ``sickness`` scenario).

    Each leaf is documented in :data:`PARAM_DOCS` under its dotted path (a dict-valued
    leaf such as ``effects.sickness_shift`` is documented as a whole).

    Returns
    -------
    dict
        A deep copy; changing it does not change :data:`DEFAULTS`.
    """
    return copy.deepcopy(DEFAULTS)


def merge_params(base: dict, overrides: dict | None, *, where: str = "overrides") -> dict:
    """Deep-merge ``overrides`` into a copy of ``base``, refusing unknown keys.

    Parameters
    ----------
    base : dict
        Complete parameter tree (e.g. :func:`default_params`).
    overrides : dict or None
        Sparse tree of replacements.
    where : str
        Name of the source, used in error messages (e.g. a file path).

    Returns
    -------
    dict
        The merged tree.

    Raises
    ------
    ConfigError
        If a key is unknown, a section is replaced by a scalar, or a value is out of range.
    """
    merged = copy.deepcopy(base)
    if overrides is None:
        return merged
    if not isinstance(overrides, dict):
        raise ConfigError(
            f"{where}: parameter overrides must be a mapping, got {type(overrides).__name__}"
        )
    _merge_into(merged, overrides, prefix="", where=where)
    _check_values(merged, where)
    return merged


def _merge_into(target: dict, src: dict, *, prefix: str, where: str) -> None:
    for key, value in src.items():
        path = f"{prefix}{key}"
        if key not in target:
            valid = ", ".join(sorted(str(k) for k in target))
            raise ConfigError(
                f"{where}: unknown simulation parameter '{path}'. "
                f"Valid keys{' under ' + prefix[:-1] if prefix else ''}: {valid}."
            )
        current = target[key]
        if isinstance(current, dict):
            if not isinstance(value, dict):
                raise ConfigError(
                    f"{where}: parameter '{path}' is a section (keys: "
                    f"{', '.join(sorted(current))}); give a mapping, not {value!r}."
                )
            _merge_into(current, value, prefix=f"{path}.", where=where)
        else:
            if (
                isinstance(current, bool) != isinstance(value, bool)
                or (isinstance(current, (int, float)) and not isinstance(value, (int, float)))
                or (isinstance(current, str) and not isinstance(value, str))
                or (isinstance(current, list) and not isinstance(value, list))
            ):
                raise ConfigError(
                    f"{where}: parameter '{path}' expects a value like {current!r}, got {value!r}."
                )
            target[key] = copy.deepcopy(value)


def _get(params: dict, dotted: str) -> Any:
    node: Any = params
    for part in dotted.split("."):
        node = node[part]
    return node


def _check_values(params: dict, where: str) -> None:
    for dotted, choices in _CHOICES.items():
        if _get(params, dotted) not in choices:
            raise ConfigError(
                f"{where}: parameter '{dotted}' must be one of {', '.join(choices)}; "
                f"got {_get(params, dotted)!r}."
            )
    for dotted in _PROBABILITIES:
        value = _get(params, dotted)
        if not 0.0 <= float(value) <= 1.0:
            raise ConfigError(f"{where}: parameter '{dotted}' is a probability; got {value!r}.")
    if int(params["schedule"]["planned_infusions"]) < 1:
        raise ConfigError(f"{where}: 'schedule.planned_infusions' must be >= 1.")
    sev = params["illness"]["severity_probs"]
    if abs(sum(sev.values()) - 1.0) > 1e-9:
        raise ConfigError(f"{where}: 'illness.severity_probs' must sum to 1; got {sev}.")
    if params["illness"]["postpone_days_min"] > params["illness"]["postpone_days_max"]:
        raise ConfigError(f"{where}: 'illness.postpone_days_min' exceeds 'postpone_days_max'.")
    factor = float(params["decisions"]["reduced_dose_factor"])
    if not 0.0 < factor <= 1.0:
        raise ConfigError(f"{where}: 'decisions.reduced_dose_factor' must be in (0, 1]; got {factor!r}.")
    if len(params["scales"]["item_profile"]) != 10:
        raise ConfigError(f"{where}: 'scales.item_profile' needs 10 values (MADRS items 1-10).")


def load_params(path: str | os.PathLike) -> dict:
    """Read parameter overrides from a YAML file and check them against the defaults.

    Parameters
    ----------
    path : path-like
        YAML file holding a sparse nested mapping, e.g.
        ``effects: {efficacy_multiplier_when_ill: 0.5}``.

    Returns
    -------
    dict
        The overrides (sparse, as written), already checked: apply them with
        ``simulate_cohort(..., overrides=load_params(path))``.

    Raises
    ------
    ConfigError
        If the file is missing or not YAML, or a key is unknown (the message names the key
        and lists the valid ones) or a value has the wrong type or range.
    """
    from ..safeyaml import load_yaml

    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError as exc:
        raise ConfigError(f"simulation parameter file not found: {path}") from exc
    # duplicate keys, alias bombs and __use_yte__ are refused as in the workflow config
    data = load_yaml(text, source=str(path))
    if data is None:
        return {}
    merge_params(default_params(), data, where=str(path))
    return data


def resolve_params(scenario: str = "sickness", overrides: dict | None = None) -> dict:
    """Return the complete parameter tree for ``scenario`` with ``overrides`` on top.

    Raises
    ------
    ConfigError
        If the scenario is unknown (lists the known ones) or an override is invalid.
    """
    if scenario not in SCENARIOS:
        raise ConfigError(
            f"unknown simulation scenario '{scenario}'. Known scenarios: {', '.join(SCENARIOS)}."
        )
    params = merge_params(default_params(), SCENARIOS[scenario], where=f"scenario '{scenario}'")
    return merge_params(params, overrides, where="overrides")
