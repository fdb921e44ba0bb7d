"""Proceed, postpone or reduce the dose: the generator's decision policy and its true effects.

Scenario ``decisions`` (``simulate/decisions.yaml``) switches the generator from its original
postponement rule (``illness.postpone_prob``) to a logistic decision policy: at a scheduled
infusion at which the patient is truly ill (the dominant episode on the *planned* day), the
clinic postpones with probability ``expit(intercept + moderate/severe + febrile + b (m - c))``,
where *m* is the patient's previous rating as it would be observed (``clip(core, 0, 60) +
sickness``, the expectation of the written total) and *c* is ``decisions.madrs_centre``; an ill
infusion that is given is given at ``reduced_dose_factor`` times the usual dose with
probability from ``reduce_logit`` (the same terms). The previous rating and the severity drive
the decisions and the next rating alike, so a naive comparison is confounded.

The true effects (``truth["effects"]["decisions"]``)
------------------------------------------------------
For every eligible decision point (an attended infusion session 2 .. planned infusions at
which the patient is truly ill on the planned day) :func:`decision_truth` computes the
patient's next rating (the one after the infusion is given) twice, under each decision at that
point, with everything else as it happened before the point and the clinic's own policy
afterwards, with the same random numbers (the realised residual, episode durations,
postponement lengths and the uniform draws of later decisions): the *individual* causal
contrast. Each counterfactual rating is the expectation of the written MADRS total given the
residual (``clip(core, 0, 60) + max(sickness, 0)``; the integer rounding and the item split add
mean-zero noise). The truth is the mean contrast over the cohort's eligible points:

``postpone``
    rating after the infusion when it is postponed minus when it is given (with the clinic's
    usual dose practice), over every eligible point. Besides ``postpone_shift_next`` it holds
    what the later day changes by itself: the illness may have resolved by the next rating,
    carry-over and waning differ, the next infusion's decision sees another rating.
``reduced_dose``
    rating after a reduced-dose infusion minus after the usual dose, over the eligible points
    at which the infusion was given (not postponed).

:func:`next_rating` mirrors the per-visit pass of :func:`ketastats.simulate.generator._simulate`
for one visit and the next; a test checks that under the decisions actually taken it gives
the simulated ratings exactly, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy.special import expit

__all__ = [
    "DECISION_COLUMNS",
    "decision_probability",
    "decision_truth",
    "end_rating",
    "next_rating",
    "observed_rating",
    "planned_illness_columns",
]

#: Columns written when ``decisions.record_planned_illness`` is true: the illness at the
#: planned day of a postponed infusion (what the decision to postpone was based on).
DECISION_COLUMNS: tuple[str, ...] = (
    "planned_ill",
    "planned_illness_type",
    "planned_illness_severity",
    "planned_days_since_onset",
    "planned_illness_medication",
)

_SEVERITIES = ("mild", "moderate", "severe")


def observed_rating(core: np.ndarray, sickness: np.ndarray) -> np.ndarray:
    """Expected written MADRS total given the latent core score and the sickness shift."""
    return np.clip(core, 0.0, 60.0) + np.maximum(sickness, 0.0)


def decision_probability(dc: dict, which: str, ep, e0: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """P(postpone) (``which="postpone"``) or P(reduced dose) under the logistic policy.

    Parameters
    ----------
    dc : dict
        The ``decisions`` parameter section.
    which : {"postpone", "reduce"}
    ep : the generator's episodes
    e0 : ndarray of int
        Dominant episode on the planned day per patient (-1: not ill; the result is then
        meaningless and masked by the caller).
    previous : ndarray
        The previous rating as observed (:func:`observed_rating`).
    """
    c = dc["postpone_logit" if which == "postpone" else "reduce_logit"]
    e = np.maximum(e0, 0)
    sev = ep.sev[e]
    lin = (
        float(c["intercept"])
        + np.where(sev == 1, float(c["moderate"]), 0.0)
        + np.where(sev == 2, float(c["severe"]), 0.0)
        + np.where(ep.febrile[e], float(c["febrile"]), 0.0)
        + float(c["per_point_previous_madrs"]) * (previous - float(dc["madrs_centre"]))
    )
    return expit(lin)


def _postpone_probability(sim: dict, p: dict, e0: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """P(postpone) under the scenario's policy (rule or logistic) for patients ill on the planned day."""
    ep = sim["episodes"]
    dc = p["decisions"]
    if dc["policy"] == "logistic":
        prob = decision_probability(dc, "postpone", ep, e0, previous)
    else:
        il = p["illness"]
        pp_sev = np.array([float(il["postpone_prob"][s]) for s in _SEVERITIES])
        e = np.maximum(e0, 0)
        prob = np.where(ep.febrile[e], float(il["postpone_prob"]["febrile"]), pp_sev[ep.sev[e]])
    return np.where(e0 >= 0, prob, 0.0)


def next_rating(sim: dict, p: dict, v: int, postpone: np.ndarray, reduce: np.ndarray) -> np.ndarray:
    """Expected next rating (session ``v + 2``) of every patient under the decisions given at visit ``v``.

    Parameters
    ----------
    sim : dict
        The generator's internal arrays (``_simulate``).
    p : dict
        The parameter tree.
    v : int
        0-based visit of the infusion decided (1 <= v < planned infusions).
    postpone, reduce : ndarray of bool, shape (n,)
        The decisions at visit ``v`` (``reduce`` only matters where ``postpone`` is False).

    Returns
    -------
    ndarray, shape (n,)
        ``clip(core, 0, 60) + max(sickness, 0)`` at visit ``v + 1`` with the realised
        residual, all else as simulated before visit ``v`` and the policy's own decision at
        visit ``v + 1`` (same uniform draw).
    """
    ep = sim["episodes"]
    sc, rs, il, ef, bm = (p[k] for k in ("schedule", "response", "illness", "effects", "biomarkers"))
    dc = p["decisions"]
    n_inf = sim["n_inf"]
    if not 1 <= v < n_inf or v + 1 >= sim["n_vis"]:
        raise ValueError(f"visit {v} has no next rating to compare")
    planned, day = sim["planned"], sim["day"]
    base, bf, k = sim["baseline"], sim["baseline"] * sim["f"], sim["k"]
    prog, resid, shift = sim["prog"], sim["resid"], sim["decision_shift"]
    sev_shift = np.array([float(ef["sickness_shift"][s]) for s in _SEVERITIES])
    frac, window = float(ef["carryover_fraction"]), float(ef["carryover_window_days"])
    wpd, grace, cap = (float(rs[x]) for x in ("waning_per_day", "waning_grace_days", "waning_cap_fraction"))
    b_med = float(ef["il6_to_madrs_per_log"])
    rise, half = float(bm["rise_days"]["il6"]), float(bm["decay_half_life_days"]["il6"])
    postpone = np.asarray(postpone, dtype=bool)
    reduce = np.asarray(reduce, dtype=bool) & ~postpone

    def state(e, t):
        ill = e >= 0
        return ill, np.where(ill, sev_shift[ep.sev[np.maximum(e, 0)]], 0.0)

    def mediated(t):
        return b_med * ep.log_pulse(t.astype(float), sim["log_peak"]["il6"], rise, half)

    # ---- visit v, on the planned day or later
    t_plan = day[:, v - 1] + (planned[:, v] - planned[:, v - 1])
    t_v = t_plan + np.where(postpone, sim["post_len"][:, v], 0)
    e_v = ep.dominant(t_v.astype(float))
    ill_v, direct_v = state(e_v, t_v)
    prev = sim["ep_at"][:, v - 1]
    within = (prev >= 0) & (t_v - ep.onset[np.maximum(prev, 0)] <= window)
    carry_v = np.where(within, frac * sim["direct"][:, v - 1], 0.0)
    waning_v = np.minimum(
        wpd * np.maximum(t_v - day[:, v - 1] - grace, 0), cap * np.maximum(bf * prog[:, v], 0.0)
    )
    core_v = base - bf * prog[:, v] + waning_v + resid[:, v] + shift[:, v]
    sick_v = direct_v + carry_v + mediated(t_v)
    # escalation (decided on this rating when v is the escalation visit)
    esc = np.asarray(sim["escalated"], dtype=bool)
    e_after = int(sc["escalation_after_infusions"])
    if v == e_after:
        first = sim["core"][:, 0] + sim["direct"][:, 0] + sim["mediated"][:, 0]
        now = core_v + sick_v
        improvement = (first - now) / np.maximum(first, 1.0)
        esc = (improvement < float(sc["escalation_improvement_below"])) & (
            sim["u_esc"] < float(sc["escalation_prob"])
        )
    elif v < e_after:
        esc = np.zeros_like(esc)
    w0 = np.where(esc, float(sc["escalation_efficacy_multiplier"]), 1.0)
    incr = np.exp(-k * v) - np.exp(-k * (v + 1))
    p_next = prog[:, v] + w0 * np.where(ill_v, float(ef["efficacy_multiplier_when_ill"]), 1.0) * incr

    # ---- visit v + 1: the policy's own decision there, then the rating
    t_plan_n = t_v + (planned[:, v + 1] - planned[:, v])
    if v + 1 < n_inf:
        e0n = ep.dominant(t_plan_n.astype(float))
        pprob = _postpone_probability(sim, p, e0n, observed_rating(core_v, sick_v))
        post_n = (e0n >= 0) & (sim["u_post"][:, v + 1] < pprob)
        t_n = t_plan_n + np.where(post_n, sim["post_len"][:, v + 1], 0)
    else:
        t_n = t_plan_n
    e_n = ep.dominant(t_n.astype(float))
    _, direct_n = state(e_n, t_n)
    within_n = (e_v >= 0) & (t_n - ep.onset[np.maximum(e_v, 0)] <= window)
    carry_n = np.where(within_n, frac * direct_v, 0.0)
    waning_n = np.minimum(wpd * np.maximum(t_n - t_v - grace, 0), cap * np.maximum(bf * p_next, 0.0))
    shift_n = 0.0
    if dc["policy"] == "logistic":
        shift_n = float(dc["postpone_shift_next"]) * postpone + float(dc["reduced_dose_shift_next"]) * reduce
    core_n = base - bf * p_next + waning_n + resid[:, v + 1] + shift_n
    return observed_rating(core_n, direct_n + carry_n + mediated(t_n))


def _natural_reduce(sim: dict, p: dict, v: int) -> np.ndarray:
    """The dose decision the policy takes at visit ``v`` if the infusion is given then."""
    if p["decisions"]["policy"] != "logistic":
        return np.zeros(sim["n"], dtype=bool)
    e0 = sim["ep_plan"][:, v]
    previous = observed_rating(
        sim["core"][:, v - 1], sim["direct"][:, v - 1] + sim["carry"][:, v - 1] + sim["mediated"][:, v - 1]
    )
    prob = decision_probability(p["decisions"], "reduce", sim["episodes"], e0, previous)
    return (e0 >= 0) & (sim["u_reduce"][:, v] < prob)


def _mean(x: np.ndarray) -> float | None:
    return round(float(np.mean(x)), 4) if x.size else None


def _by_severity(effects: np.ndarray, sev: np.ndarray) -> dict:
    """Mean effect and points per severity of the illness at the decision (the by-severity estimands)."""
    return {name: {"value": _mean(effects[sev == k]), "n_points": int(np.sum(sev == k))}
            for k, name in enumerate(_SEVERITIES)}


def end_rating(sim: dict) -> np.ndarray:
    """Expected written rating at the planned last session (the end of the course) of every patient."""
    e = sim["n_vis"] - 1
    return observed_rating(sim["core"][:, e], sim["direct"][:, e] + sim["carry"][:, e] + sim["mediated"][:, e])


def decision_truth(sim: dict, p: dict, resimulate: Callable[[tuple], dict] | None = None) -> dict:
    """True effects of postponing and of a reduced dose on the next rating and the end of the course.

    Parameters
    ----------
    sim, p : the generator's arrays and parameters
    resimulate : callable, optional
        ``resimulate((visit, postpone, reduce))`` returns the same cohort (same random numbers)
        with the decisions at ``visit`` forced (the generator's ``_simulate(..., force=)``). With
        it the truth also holds ``end_of_course``: the same contrasts on the expected rating at the
        planned last session, the whole rest of the course re-run by the generator itself.
    """
    n_inf, n_vis = sim["n_inf"], sim["n_vis"]
    att = sim["attended"]
    post_eff, red_eff = [], []
    post_end, red_end = [], []
    post_sev, red_sev = [], []  # severity of the illness at the decision (on the planned day)
    rows = []
    for v in range(1, min(n_inf, n_vis - 1)):
        eligible = att[:, v] & (sim["ep_plan"][:, v] >= 0)
        if not eligible.any():
            continue
        no = np.zeros(sim["n"], dtype=bool)
        natural_reduce = _natural_reduce(sim, p, v)
        y_post = next_rating(sim, p, v, ~no, no)
        y_proceed = next_rating(sim, p, v, no, natural_reduce)
        y_usual = next_rating(sim, p, v, no, no)
        y_reduced = next_rating(sim, p, v, no, ~no)
        given = eligible & ~sim["postponed"][:, v]
        post_eff.append((y_post - y_proceed)[eligible])
        red_eff.append((y_reduced - y_usual)[given])
        sev = sim["episodes"].sev[np.maximum(sim["ep_plan"][:, v], 0)]
        post_sev.append(sev[eligible])
        red_sev.append(sev[given])
        end = None
        if resimulate is not None:
            e_post = end_rating(resimulate((v, ~no, None)))
            e_proceed = end_rating(resimulate((v, no, None)))  # the policy's own dose decision
            if p["decisions"]["policy"] == "logistic":
                e_reduced_minus_usual = end_rating(resimulate((v, no, ~no))) - end_rating(resimulate((v, no, no)))
            else:  # under the rule a dose is never reduced for an illness and a reduction changes nothing
                e_reduced_minus_usual = np.zeros(sim["n"])
            end = (e_post - e_proceed, e_reduced_minus_usual)
            post_end.append(end[0][eligible])
            red_end.append(end[1][given])
        for i in np.nonzero(eligible)[0]:
            row = {
                "patient_id": str(sim["patient_id"][i]),
                "session": v + 1,
                "severity": _SEVERITIES[int(sev[i])],
                "postponed": bool(sim["postponed"][i, v]),
                "reduced_dose": bool(sim["reduced"][i, v]),
                "postpone_effect": round(float(y_post[i] - y_proceed[i]), 4),
                "reduced_dose_effect": (
                    round(float(y_reduced[i] - y_usual[i]), 4) if given[i] else None
                ),
            }
            if end is not None:
                row["postpone_effect_end"] = round(float(end[0][i]), 4)
                row["reduced_dose_effect_end"] = round(float(end[1][i]), 4) if given[i] else None
            rows.append(row)
    post = np.concatenate(post_eff) if post_eff else np.zeros(0)
    red = np.concatenate(red_eff) if red_eff else np.zeros(0)
    psev = np.concatenate(post_sev) if post_sev else np.zeros(0, dtype=int)
    rsev = np.concatenate(red_sev) if red_sev else np.zeros(0, dtype=int)
    dc = p["decisions"]
    out = {
        "outcome": "MADRS at the next rating after the infusion is given (session + 1)",
        "policy": dc["policy"],
        "postpone_shift_next": round(float(dc["postpone_shift_next"]), 4),
        "reduced_dose_shift_next": round(float(dc["reduced_dose_shift_next"]), 4),
        "postpone": {
            "value": _mean(post),
            "n_points": int(post.size),
            "by_severity": _by_severity(post, psev),
            "definition": (
                "mean over eligible decision points (attended infusion sessions 2.. at which the "
                "patient is truly ill on the planned day) of the expected next rating when the "
                "infusion is postponed minus when it is given (usual dose practice), same random "
                "numbers, the policy's own decisions afterwards"
            ),
        },
        "reduced_dose": {
            "value": _mean(red),
            "n_points": int(red.size),
            "by_severity": _by_severity(red, rsev),
            "definition": (
                "mean over eligible decision points at which the infusion was given of the "
                "expected next rating after a reduced dose minus after the usual dose"
            ),
        },
    }
    if resimulate is not None:
        pe = np.concatenate(post_end) if post_end else np.zeros(0)
        re_ = np.concatenate(red_end) if red_end else np.zeros(0)
        out["end_of_course"] = {
            "outcome": "MADRS at the end of the course (the planned last session)",
            "postpone": {
                "value": _mean(pe),
                "n_points": int(pe.size),
                "by_severity": _by_severity(pe, psev),
                "definition": (
                    "mean over the same eligible decision points of the expected rating at the planned "
                    "last session when the infusion is postponed minus when it is given (usual dose "
                    "practice), the rest of the course re-simulated with the same random numbers and the "
                    "policy's own later decisions; missed visits and dropout do not apply (hypothetical)"
                ),
            },
            "reduced_dose": {
                "value": _mean(re_),
                "n_points": int(re_.size),
                "by_severity": _by_severity(re_, rsev),
                "definition": (
                    "mean over the eligible points at which the infusion was given of the expected rating "
                    "at the planned last session after a reduced dose minus after the usual dose"
                ),
            },
        }
    out["points"] = rows
    return out


def planned_illness_columns(sessions: pd.DataFrame, sim: dict) -> pd.DataFrame:
    """``sessions`` with :data:`DECISION_COLUMNS`: the illness on the planned day of a postponed infusion."""
    from ketastats.simulate.generator import MED_CLASSES
    from ketastats.simulate.params import ILLNESS_TYPES

    ep = sim["episodes"]
    rows_p, rows_v = np.nonzero(sim["attended"])
    e0 = sim["ep_plan"][rows_p, rows_v]
    post = sim["postponed"][rows_p, rows_v]
    ill = post & (e0 >= 0)
    e = np.maximum(e0, 0)
    t_plan = sim["day"][rows_p, rows_v] - sim["delay"][rows_p, rows_v]
    since = np.floor(t_plan - ep.onset[e])
    med = np.zeros(e.size, dtype=bool)
    for c in MED_CLASSES:  # antipyretic, NSAID, antibiotic, steroid: any illness medication
        med |= ep.meds[c][e]

    def ints(a, mask):
        s = pd.array(np.asarray(a, dtype=np.int64), dtype="Int64")
        s[~mask] = pd.NA
        return s

    def strs(a, mask):
        s = pd.array(np.asarray(a, dtype=object), dtype="string")
        s[~mask] = pd.NA
        return s

    out = sessions.copy()
    out["planned_ill"] = ints(ill.astype(int), post)
    out["planned_illness_type"] = strs(np.array(ILLNESS_TYPES, dtype=object)[ep.type[e]], ill)
    out["planned_illness_severity"] = strs(np.array(_SEVERITIES, dtype=object)[ep.sev[e]], ill)
    out["planned_days_since_onset"] = ints(np.where(ill, since, 0).astype(np.int64), ill)
    out["planned_illness_medication"] = ints(med.astype(int), ill)
    return out
