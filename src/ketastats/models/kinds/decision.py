"""Kind ``decision``: when a patient is ill at a scheduled infusion, proceed, postpone or reduce the dose?

A sequential target-trial emulation (Hernan & Robins, *Causal Inference: What If*, ch. 21-22):
every scheduled infusion at which a patient is acutely ill is one "trial" of the decision taken
there (:mod:`ketastats.decisions.points`). Two contrasts:

``postpone``
    postpone the infusion versus give it as planned (with the clinic's usual dose practice),
    over every eligible decision point;
``reduced_dose``
    a reduced dose versus the patient's usual dose, over the eligible points at which the
    infusion was given on its planned day.

Each model of this kind runs one estimator (``estimator``: ``ipw``, ``gformula`` or ``aipw``;
:mod:`ketastats.decisions.estimators`), so that each is its own Snakemake job, and reports with
it the naive contrast, the positivity check, the diagnostics (overlap, balance before and after
weighting, effective sample size, the largest weights; :mod:`ketastats.decisions.diagnostics`)
and the effect by illness severity where each stratum has the numbers. The estimand in ICH
E9(R1) terms, the assumptions in plain words and the target-trial protocol are part of the
JSON (``estimand``, ``assumptions``, ``target_trial``).

A decision the cohort cannot analyse (a column missing, too few points in an arm, positivity
failing) has ``status: skipped`` with the reason (and, for a missing column, what to record);
never a number. The model is skipped when both are.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ...decisions import diagnostics as diag
from ...decisions.estimators import (
    NotEstimable,
    analysis_set,
    check_positivity,
    design_matrix,
    estimate,
    fit_propensity,
    stabilized_weights,
)
from ...decisions.points import CONFOUNDERS, OUTCOMES, RECORD, decision_points, missing_columns
from ..common import mcid_for
from ..counted import CountedText, escape, remember
from ..retries import SkipModel

__all__ = ["ARM_LABELS", "ASSUMPTIONS", "fit", "target_trial"]

log = logging.getLogger(__name__)

#: decision -> (label of A = 1, label of A = 0)
ARM_LABELS = {
    "postpone": ("postponed", "given as planned"),
    "reduced_dose": ("reduced dose", "usual dose"),
}

_ESTIMATOR_NAMES = {
    "naive": "naive difference of means (unadjusted)",
    "ipw": "inverse-probability weighting (stabilized weights)",
    "gformula": "parametric g-formula (outcome regression, standardized)",
    "aipw": "augmented inverse-probability weighting (doubly robust)",
}

#: the identifying assumptions, in plain words (the report shows them as they are)
ASSUMPTIONS = {
    "no_unmeasured_confounding": (
        "No unmeasured confounding: among ill patients who were alike in every recorded confounder "
        "(severity, kind of illness, fever, days since onset, previous and baseline rating, infusions "
        "received, days since the previous infusion, illness medication), whether the infusion was "
        "postponed (or the dose lowered) did not depend on anything else that also affects the next "
        "rating. A reason the clinic acted on but did not record (how unwell the patient looked, the "
        "patient's own wish) would bias every estimate here, and no statistical method can detect it."
    ),
    "positivity": (
        "Positivity: every kind of ill patient had a real chance of either choice. Where patients with "
        "some combination of the confounders were always postponed (or never), the data cannot say what "
        "the other choice would have done for them. The analysis checks the propensities and is skipped, "
        "with the reason, when an arm is too small or most points are outside the configured range."
    ),
    "consistency": (
        "Well-defined decisions: a postponement of whatever length it was, and a dose reduction of "
        "whatever size, each count as one treatment; the effect is that of the decisions as they were "
        "made in this clinic."
    ),
    "models": (
        "Correct models: IPW needs the propensity model (logistic regression on the confounders) to be "
        "right, the g-formula the outcome model (linear, or logistic for response, in each arm), AIPW "
        "only one of the two."
    ),
    "missing_outcomes": (
        "Missing outcomes: a decision point whose outcome rating is missing (a missed visit, dropout) "
        "is left out; this assumes the rating is missing at random given the confounders."
    ),
}


def target_trial(decision: str, score: str) -> list[dict[str, str]]:
    """The target-trial protocol and how it is emulated (Hernan & Robins 2016), for one decision."""
    treated, control = ARM_LABELS[decision]
    strategy = (
        "postpone the scheduled infusion versus give it on its planned day (dose as the clinic usually "
        "decides)"
        if decision == "postpone"
        else "give a reduced dose versus the patient's usual dose, when the infusion is given on its day"
    )
    return [
        {"element": "Eligibility",
         "target": "a patient in a course of IV ketamine who is acutely ill at a scheduled infusion "
                   "(the second or later)",
         "emulation": "every session from 2 on whose infusion was given (dose recorded) with ill = 1 on "
                      "the decision day (planned_ill = 1 for a postponed infusion); each patient "
                      "contributes every such point (sequential trials)"},
        {"element": "Treatment strategies", "target": strategy,
         "emulation": f"{treated} (1) versus {control} (0), as recorded"},
        {"element": "Assignment",
         "target": "randomized at each decision point",
         "emulation": "as if randomized given the confounders measured before the decision "
                      "(no unmeasured confounding); adjusted by weighting, standardization or both"},
        {"element": "Follow-up",
         "target": "from the decision to the next rating after the infusion is given, and to the end of "
                   "the course",
         "emulation": "the rating at the next session (a session's rating precedes its infusion); the "
                      "rating at the planned last session"},
        {"element": "Outcome",
         "target": f"{score.upper()} at the next rating; at the end of the course; response at each",
         "emulation": f"{score} at session + 1 and at the planned last session; {score}_response there"},
        {"element": "Causal contrast",
         "target": "the effect of the decision at that point, later decisions as the clinic makes them "
                   "(an observational analogue of the intention-to-treat effect)",
         "emulation": "the average effect among eligible decision points, E[Y(1) - Y(0)]"},
        {"element": "Analysis",
         "target": "difference in mean outcome (risk difference for response) with its 95% CI",
         "emulation": "IPW, g-formula and AIPW side by side (one job each), SEs clustered by patient; "
                      "points with a missing outcome or confounder left out"},
    ]


def _estimand(decision: str, score: str, mcid: float | None) -> dict[str, Any]:
    treated, control = ARM_LABELS[decision]
    population = (
        "scheduled infusions (from the second) at which a patient in a course of IV ketamine is acutely ill"
        if decision == "postpone"
        else "scheduled infusions (from the second) at which an acutely ill patient is given the infusion "
        "on its planned day"
    )
    return {
        "framework": "ICH E9(R1)",
        "population": population,
        "treatment": f"{treated} versus {control}",
        "variable": f"{score.upper()} total at the next rating after the infusion is given (primary); at the "
        "end of the course; response (at least 50% below baseline) at each",
        "intercurrent_events": {
            "later postponements, dose changes and illness": "treatment policy: as they happened under the "
            "clinic's usual practice",
            "discontinuation before the outcome": "hypothetical: the outcome as if the patient had stayed; "
            "points without the outcome are left out (missing at random given the confounders)",
            "illness medication": "a confounder measured at the decision, not an intercurrent event",
        },
        "summary": "difference in mean outcome, treated minus control, in scale points (risk difference "
        "for response), with its 95% confidence interval"
        + (f"; compared with the minimal clinically important difference of {mcid:g} points" if mcid else ""),
    }


def _versus_mcid(lo: float, hi: float, mcid: float | None) -> str | None:
    if mcid is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return None
    if -mcid < lo and hi < mcid:
        return "the CI excludes effects as large as the MCID"
    if lo >= mcid or hi <= -mcid:
        return "the whole CI is at or beyond the MCID"
    return "the CI includes effects as large as the MCID"


def _num(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


def _effect_json(e, mcid: float | None, binary: bool) -> dict[str, Any]:
    out = {
        "estimator": e.estimator,
        "estimate": _num(e.estimate),
        "se": _num(e.se),
        "ci_low": _num(e.ci_low),
        "ci_high": _num(e.ci_high),
        "p_value": _num(e.p_value),
        "mean_treated": _num(e.mean_treated),
        "mean_control": _num(e.mean_control),
        "n_points": e.n_points,
        "n_patients": e.n_patients,
        "n_treated": e.n_treated,
        "n_control": e.n_control,
        "se_method": e.se_method,
        "scale": "risk difference" if binary else "points",
    }
    if not binary:
        out["mcid"] = mcid
        out["versus_mcid"] = _versus_mcid(e.ci_low, e.ci_high, mcid)
    if e.details.get("weights"):
        out["weights"] = e.details["weights"]
    if e.details.get("bootstrap"):  # se: bootstrap; the analytic SE kept for contrast
        out["bootstrap"] = e.details["bootstrap"]
        out["analytic_se"] = _num(e.details["analytic_se"])
    return out


def _skip(block: dict[str, Any], out: dict[str, Any], text: CountedText) -> dict[str, Any]:
    block["status"] = "skipped"
    block["reason"] = remember(out, text)
    return block


def _terms(spec: Mapping[str, Any], key: str, available: Sequence[str]) -> list[str]:
    given = spec.get(key)
    terms = list(spec["confounders"]) if given is None else list(given)
    return [t for t in terms if t in available]


def _analyse_decision(
    decision: str,
    points: pd.DataFrame,
    notes: Mapping[str, Any],
    data: pd.DataFrame,
    spec: Mapping[str, Any],
    alpha: float,
    out: dict[str, Any],
    mcid: float | None,
) -> dict[str, Any]:
    treated, control = ARM_LABELS[decision]
    block: dict[str, Any] = {"status": "ok", "reason": None, "labels": {"treated": treated, "control": control}}
    missing = missing_columns(data, decision)
    if missing:
        block["missing_columns"] = missing
        block["record"] = [RECORD.get(c, c) for c in missing]
        what = " and ".join(block["record"])
        return _skip(block, out, CountedText(escape(
            f"{treated} versus {control}: the cohort has no {', '.join(missing)} (columns not in the data); "
            f"to analyse this decision, record {what}")))
    available = [c for c in spec["confounders"] if c in CONFOUNDERS and c not in notes["unavailable"]]
    block["confounders"] = available
    block["confounders_unavailable"] = [c for c in spec["confounders"] if c in notes["unavailable"]]
    ps_terms = _terms(spec, "propensity_terms", [*CONFOUNDERS])
    or_terms = _terms(spec, "outcome_terms", [*CONFOUNDERS])
    ps_terms = [t for t in ps_terms if t not in notes["unavailable"]]
    or_terms = [t for t in or_terms if t not in notes["unavailable"]]
    block["propensity_terms"], block["outcome_terms"] = ps_terms, or_terms
    eligible = points[points[decision].notna()]
    block["counts"] = {
        "eligible": int(len(eligible)),
        "treated": int((eligible[decision] == 1).sum()),
        "control": int((eligible[decision] == 0).sum()),
        "patients": int(eligible["patient_id"].nunique()),
    }
    # positivity and diagnostics on the primary outcome's analysis set
    primary = spec["outcomes"][0]
    ycol, ybinary = OUTCOMES[primary]
    terms = list(dict.fromkeys([*ps_terms, *or_terms]))
    base, counts = analysis_set(points, decision, ycol, terms)
    block["counts"].update({f"{primary}_{k}": v for k, v in counts.items()})
    A = base[decision].to_numpy(dtype=float)
    labels = {1: treated, 0: control}
    try:
        check_positivity(A, None, min_per_arm=int(spec["min_per_arm"]), propensity_range=spec["propensity_range"],
                         max_share_outside=float(spec["max_share_outside"]), labels=labels)
        X = design_matrix(base, ps_terms)
        ps = fit_propensity(A, X)
        check_positivity(A, ps.e, min_per_arm=int(spec["min_per_arm"]), propensity_range=spec["propensity_range"],
                         max_share_outside=float(spec["max_share_outside"]), labels=labels)
    except NotEstimable as exc:
        prefix = escape(f"{treated} versus {control}: ")
        return _skip(block, out, CountedText(prefix + exc.template, exc.counts))
    w, winfo = stabilized_weights(A, ps.e, spec.get("truncate"))
    raw_w, _ = stabilized_weights(A, ps.e, None)
    block["diagnostics"] = {
        "outcome": primary,
        "propensity_converged": ps.converged,
        "overlap": diag.overlap(ps.e, A, spec["propensity_range"]),
        "balance": diag.balance_table(X, A, w),
        "balance_threshold": diag.BALANCE_THRESHOLD,
        "effective_sample_size": diag.effective_sample_size(w, A),
        "largest_weights": diag.largest_weights(raw_w, A, k=5),
        "weights": {**winfo, "max_untruncated": float(raw_w.max()), "max": float(w.max()), "mean": float(w.mean())},
    }
    block["converged"] = ps.converged
    results: dict[str, Any] = {}
    for name in spec["outcomes"]:
        ycol, ybinary = OUTCOMES[name]
        data_o, counts_o = analysis_set(points, decision, ycol, terms)
        entry: dict[str, Any] = {"status": "ok", "counts": counts_o, "binary": ybinary}
        Ao = data_o[decision].to_numpy(dtype=float)
        try:
            check_positivity(Ao, None, min_per_arm=int(spec["min_per_arm"]),
                             propensity_range=spec["propensity_range"],
                             max_share_outside=float(spec["max_share_outside"]), labels=labels)
            if ybinary and min(data_o[ycol].sum(), len(data_o) - data_o[ycol].sum()) < int(spec["min_per_arm"]):
                raise NotEstimable("too few responses or non-responses ({n}) for a logistic outcome model",
                                   n=int(min(data_o[ycol].sum(), len(data_o) - data_o[ycol].sum())))
            kw = dict(decision=decision, outcome=ycol, binary=ybinary, propensity_terms=ps_terms,
                      outcome_terms=or_terms, truncate=spec.get("truncate"), alpha=alpha, **se_options(spec))
            entry["effect"] = _effect_json(estimate(spec["estimator"], data_o, **kw), mcid, ybinary)
            entry["naive"] = _effect_json(estimate("naive", data_o, **kw), mcid, ybinary)
        except NotEstimable as exc:
            entry["status"] = "skipped"
            entry["reason"] = remember(out, CountedText(escape(f"{treated} versus {control}, outcome {name}: ")
                                                        + exc.template, exc.counts))
        results[name] = entry
    block["outcomes"] = results
    block["by_severity"] = _by_severity(decision, points, spec, alpha, mcid, out, ps_terms, or_terms, labels)
    return block


def se_options(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec's standard-error settings as keywords of :func:`~ketastats.decisions.estimators.estimate`."""
    return {"se": str(spec.get("se") or "sandwich"), "bootstrap": int(spec.get("bootstrap") or 200),
            "seed": int(spec.get("seed") if spec.get("seed") is not None else 17)}


def _by_severity(decision, points, spec, alpha, mcid, out, ps_terms, or_terms, labels) -> list[dict[str, Any]]:
    """The decision's effect on the primary outcome within each illness severity, where the numbers allow."""
    name = spec["outcomes"][0]
    ycol, ybinary = OUTCOMES[name]
    terms = [t for t in dict.fromkeys([*ps_terms, *or_terms]) if t != "severity"]
    rows = []
    for level in ("mild", "moderate", "severe"):
        sub = points[points["severity"] == level]
        data_s, counts = analysis_set(sub, decision, ycol, terms)
        A = data_s[decision].to_numpy(dtype=float)
        row: dict[str, Any] = {"severity": level, "outcome": name, "n_points": counts["analysed"],
                               "n_treated": int(A.sum()), "n_control": int(len(A) - A.sum())}
        try:
            check_positivity(A, None, min_per_arm=int(spec["min_per_stratum"]),
                             propensity_range=spec["propensity_range"],
                             max_share_outside=float(spec["max_share_outside"]), labels=labels,
                             setting="min_per_stratum")
            e = estimate(spec["estimator"], data_s, decision=decision, outcome=ycol, binary=ybinary,
                         propensity_terms=[t for t in ps_terms if t != "severity"],
                         outcome_terms=[t for t in or_terms if t != "severity"],
                         truncate=spec.get("truncate"), alpha=alpha, **se_options(spec))
            row.update(status="ok", effect=_effect_json(e, mcid, ybinary))
        except NotEstimable as exc:
            row.update(status="skipped", reason=remember(
                out, CountedText(escape(f"{labels[1]} versus {labels[0]}, {level} illness: ") + exc.template,
                                 exc.counts)))
        rows.append(row)
    return rows


def fit(data: pd.DataFrame, spec: Mapping[str, Any], estimands: Mapping[str, str], alpha: float) -> dict[str, Any]:
    """Kind ``decision``: the effect of postponing, and of a reduced dose, at ill infusions (module docstring)."""
    score = str(spec.get("instrument") or "madrs")
    out: dict[str, Any] = {}
    if score not in data.columns:
        raise SkipModel(f"the decision analysis needs column {score}, not in the data")
    points, notes = decision_points(data, score=score, planned_last=spec.get("planned_sessions"))
    mcid = mcid_for(score)
    decisions: dict[str, Any] = {}
    for decision in spec["decisions"]:
        decisions[decision] = _analyse_decision(decision, points, notes, data, spec, alpha, out, mcid)
    done = [d for d, b in decisions.items() if b["status"] == "ok"]
    if not done:
        texts = [CountedText(**_counted(out, b["reason"])) for b in decisions.values()]
        raise SkipModel(**_skip_args(CountedText.join(texts, "; ")))
    first = decisions[done[0]]
    primary = first["outcomes"][spec["outcomes"][0]]
    coefficients = []
    for d in done:
        for name, entry in decisions[d]["outcomes"].items():
            if entry["status"] == "ok":
                e = entry["effect"]
                coefficients.append({"term": f"{d}[{name}]", **{k: e[k] for k in (
                    "estimate", "se", "ci_low", "ci_high", "p_value")}, "df": None, "df_method": "normal"})
    out.update(
        {
            "estimator": spec["estimator"],
            "estimator_name": _ESTIMATOR_NAMES[spec["estimator"]],
            "engine": "statsmodels GLM",
            "converged": all(decisions[d].get("converged", True) for d in done),
            "singular": False,
            "df_method": "normal",
            "nobs": primary.get("counts", {}).get("analysed"),
            "ngroups": first["counts"]["patients"],
            "coefficients": coefficients,
            "estimand": {d: _estimand(d, score, mcid) for d in spec["decisions"]},
            "assumptions": dict(ASSUMPTIONS),
            "target_trial": {d: target_trial(d, score) for d in spec["decisions"]},
            "decision_points": {
                "eligible": notes["n_points"],
                "planned_sessions": notes["planned_last"],  # a session number, not a count
                "confounders_unavailable": notes["unavailable"],
            },
            "decisions": decisions,
        }
    )
    return out


def _counted(out: Mapping[str, Any], plain: str) -> dict[str, Any]:
    j = out["counted_text"][plain]
    return {"template": j["text"], "counts": j["counts"]}


def _skip_args(text: CountedText) -> dict[str, Any]:
    """Arguments of :class:`SkipModel` that carry ``text``'s template and counts."""
    return {"message": text.template, **text.counts} if text.counts else {"message": str(text)}
