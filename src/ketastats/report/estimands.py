"""The estimand table: what each analysis estimates, in the five attributes of ICH E9(R1).

ICH E9(R1) (the addendum on estimands, 2019) describes the quantity an analysis targets by

* the **population**: the patients (and here the sessions) the question is about;
* the **treatment condition**: the treatment, and here the exposure compared (acute illness);
* the **variable** (endpoint): the outcome, on its scale;
* the **intercurrent events** and the strategy for each (treatment policy, hypothetical,
  composite, while on treatment, principal stratum);
* the **population-level summary**: how outcomes are compared between the conditions
  (a difference in means, an odds ratio, a ratio of geometric means).

:func:`estimand_table` writes one row per model of ``results["models"]`` from that entry
alone (its spec, kind, illness effect, released counts and its ``estimands`` block, the
strategies the model actually applied; see :mod:`ketastats.models.estimands`), so every word
and number of the table is traceable to results.json.

Examples
--------
>>> res = {"cohort": "demo", "settings": {"instrument": {"name": "madrs", "short": "MADRS", "min": 0,
...        "max": 60, "unit": "infusion", "remission_max": 10, "response_fraction": 0.5}},
...        "models": {"primary": {"kind": "lmm", "label": "Primary", "status": "ok", "nobs": 227,
...        "ngroups": "37-39", "spec": {"outcome": "madrs", "sessions": "post_baseline",
...        "illness_term": "ill_within"}, "estimands": {"postponement": {"strategy": "treatment_policy",
...        "description": "every rating as observed", "rows_removed": 0, "rows_changed": 0}}}}}
>>> row = estimand_table(res)[0]
>>> row["summary_measure"]
'Within-patient difference in mean MADRS (points), sessions during acute illness vs sessions without.'
>>> row["population"]
'Post-baseline sessions (from session 2) with a MADRS rating, of patients on an IV ketamine course (cohort demo): 227 sessions of 37 to 39 patients.'
>>> row["intercurrent_events"][0]["strategy"]
'treatment_policy'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .suppression import say_count

__all__ = ["ATTRIBUTES", "EVENTS", "estimand_table"]

#: the five attributes, as the table's columns: key -> heading
ATTRIBUTES = {
    "population": "Population",
    "treatment": "Treatment condition",
    "variable": "Variable",
    "intercurrent_events": "Intercurrent events and strategies",
    "summary_measure": "Population-level summary",
}

#: intercurrent event (the model JSON's key) -> what it is
EVENTS = {
    "postponement": "Session postponed",
    "dose_change": "Ketamine dose changed",
    "discontinuation": "Course stopped before the planned last session",
    "illness_medication": "Illness medication (antipyretic, NSAID, steroid, antibiotic) at a cytokine draw",
}

_MARKERS = {"il6_pg_ml": "IL-6", "tnfa_pg_ml": "TNF-α", "il1b_pg_ml": "IL-1β", "crp_mg_l": "CRP"}

#: the exposure a model's illness term stands for
_EXPOSURES = {
    "ill_within": "acute illness at the session, within patient (ill_within)",
    "ill": "acute illness at the session (ill)",
    "ever_ill": "acute illness at any session of the course (ever_ill)",
}


def _marker(col: str) -> str:
    return _MARKERS.get(col, col)


def _base_term(m: Mapping[str, Any]) -> str:
    """The model's illness term (the one its illness effect reports, else its spec's), without a
    part's prefix (``"il6_pg_ml: ill_within"``)."""
    spec = m.get("spec") or {}
    eff = m.get("illness_effect") or {}
    term = str(eff.get("term") or spec.get("illness_term") or "")
    return term.rsplit(": ", 1)[-1]


def _outcome(m: Mapping[str, Any], ins: Mapping[str, Any]) -> str:
    spec = m.get("spec") or {}
    out = spec.get("outcome") or (m.get("illness_effect") or {}).get("outcome") or ""
    return (
        str(out).replace("score", str(ins.get("name") or "madrs"), 1)
        if str(out).startswith("score")
        else str(out)
    )


def _end_level(m: Mapping[str, Any]) -> bool:
    return (m.get("level") or (m.get("spec") or {}).get("level")) == "end"


def _population(cohort: str, m: Mapping[str, Any], ins: Mapping[str, Any]) -> str:
    spec = m.get("spec") or {}
    kind = m.get("kind") or "lmm"
    short = ins.get("short") or "MADRS"
    if kind == "cytokine_illness":
        rows = (
            "sessions with a cytokine draw (draws below the detection limit kept, as censored or substituted)"
        )
    elif kind == "mediation":
        rows = f"post-baseline sessions with both a draw of {_marker(str(spec.get('mediator', '')))} and a {short} rating"
    elif _end_level(m):
        rows = "one row per patient: the last rated session of the course"
    elif kind in ("lmm_mi", "tipping_point"):
        rows = (
            f"every planned post-baseline session of every patient, missing {short} ratings multiply imputed"
        )
    elif spec.get("sessions") == "all":
        rows = f"all sessions with a {short} rating"
    else:
        rows = f"post-baseline sessions (from session 2) with a {short} rating"
    extra = []
    if spec.get("complete_case") or "complete_case" in (m.get("row_filters") or {}):
        extra.append("only patients with every planned session rated")
    if spec.get("exclude_onset_within_days") is not None:
        extra.append(
            f"ill sessions within {spec['exclude_onset_within_days']} days of the illness onset "
            "(or with an unknown onset) left out"
        )
    text = f"{rows[:1].upper()}{rows[1:]}, of patients on an IV ketamine course (cohort {cohort})"
    text += "".join(f"; {e}" for e in extra)
    nobs, ngroups = m.get("nobs"), m.get("ngroups")
    if ngroups is not None:
        unit = (
            "observations" if kind in ("cytokine_illness", "cytokine_moderation", "mediation") else "sessions"
        )
        if _end_level(m) or nobs is None:
            text += f": {say_count(ngroups)} patients"
        else:
            text += f": {say_count(nobs)} {unit} of {say_count(ngroups)} patients"
    return text + "."


def _treatment(m: Mapping[str, Any], ins: Mapping[str, Any]) -> str:
    spec = m.get("spec") or {}
    kind = m.get("kind") or "lmm"
    term = _base_term(m)
    exposure = _EXPOSURES.get(
        term, f"{term} (the model's illness term)" if term else "none named by the model"
    )
    text = (
        f"IV ketamine course as delivered (sessions numbered by {ins.get('unit') or 'infusion'}); "
        f"exposure compared: {exposure}"
    )
    if kind == "cytokine_moderation":
        mods = spec.get("moderators") or list((m.get("fits") or {}).keys())
        text += f", and its interaction with the patient's baseline log {', '.join(map(_marker, mods))}"
    elif kind == "mediation":
        text += f", acting through the log {_marker(str(spec.get('mediator', '')))} concentration (mediator)"
    return text + "."


def _variable(m: Mapping[str, Any], ins: Mapping[str, Any]) -> str:
    spec = m.get("spec") or {}
    kind = m.get("kind") or "lmm"
    name, short = str(ins.get("name") or "madrs"), str(ins.get("short") or "MADRS")
    rng = f"{ins.get('min', 0)}-{ins.get('max', '')}".rstrip("-")
    when = "at the end of the course" if _end_level(m) else "at each analysed session"
    if kind == "cytokine_illness":
        markers = spec.get("markers") or list((m.get("fits") or {}).keys())
        cens = m.get("censoring") or spec.get("censoring") or ""
        how = (
            "left-censored at the limit of detection"
            if cens == "tobit"
            else f"non-detects substituted ({cens})"
            if cens
            else "non-detects as recorded"
        )
        return (
            f"Natural log of each marker's concentration ({', '.join(map(_marker, markers))}) "
            f"at each draw, {how}."
        )
    out = _outcome(m, ins)
    if out == name:
        return f"{short} total score ({rng}; higher is more severe) {when}."
    if out == f"{name}_nonsick":
        return f"{short} total without the sickness-sensitive items 4-8 {when}."
    if out == f"{name}_response":
        frac = ins.get("response_fraction")
        pct = f"at least {round(100 * float(frac))}%" if frac is not None else "a set fraction"
        return f"Response (yes/no): {short} {pct} below the baseline rating, {when}."
    if out == f"{name}_remission":
        return f"Remission (yes/no): {short} at most {ins.get('remission_max')}, {when}."
    return f"{out or 'the model outcome'} {when}."


def _summary(m: Mapping[str, Any], ins: Mapping[str, Any]) -> str:
    spec = m.get("spec") or {}
    kind = m.get("kind") or "lmm"
    short = str(ins.get("short") or "MADRS")
    term = _base_term(m)
    eff = m.get("illness_effect") or {}
    scale = str(eff.get("scale") or "")
    contrast = {
        "ill_within": "sessions during acute illness vs sessions without",
        "ill": "ill vs not ill sessions",
        "ever_ill": "patients ever ill vs never ill during the course",
    }.get(term, f"per unit of {term}" if term else "between the exposure conditions")
    within = "within-patient " if term == "ill_within" else ""
    if kind == "cytokine_illness":
        return (
            "Ratio of geometric mean concentrations, ill vs not ill sessions within patient (the exponential "
            "of the log-scale illness coefficient), per marker."
        )
    if kind == "cytokine_moderation":
        return (
            f"Change in the within-patient illness effect on the {short} (points) per unit of the baseline "
            "log marker (the illness x marker interaction), per marker."
        )
    if kind == "mediation":
        return (
            f"Indirect effect of illness through the log {_marker(str(spec.get('mediator', '')))} (a x b, "
            f"{short} points; Monte Carlo CI), beside the direct effect (c')."
        )
    if kind == "illness_slopes":
        return (
            f"Mean within-patient illness effect ({short} points) and its between-patient SD "
            "(random slope), with the patients' own effects."
        )
    if "odds ratio" in scale or kind in ("gee_binary", "glmm_binary"):
        what = str(m.get("estimand_scale") or "odds ratio")
        outcome = "remission" if _outcome(m, ins).endswith("_remission") else "response"
        return f"{what[:1].upper()}{what[1:]} of {outcome}, {contrast} (estimated on the log-odds scale)."
    if scale.startswith("log"):
        return f"Ratio of geometric means, {contrast} (the exponential of the log-scale coefficient)."
    measure = f"{within}difference in mean {short} (points), {contrast}"
    if m.get("estimand_scale") and "population-averaged" in str(m["estimand_scale"]):
        measure = "population-averaged " + measure
    if kind == "lmm_mi":
        measure += "; missing ratings multiply imputed (MAR), pooled by Rubin's rules"
    elif kind == "tipping_point":
        measure += (
            "; at each shift delta of the imputed ratings at ill sessions (MNAR), with the delta at "
            "which the conclusion changes"
        )
    return measure[:1].upper() + measure[1:] + "."


def _events(m: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for event, e in (m.get("estimands") or {}).items():
        e = e if isinstance(e, Mapping) else {"strategy": e}
        rows.append(
            {
                "event": event,
                "label": EVENTS.get(event, event.replace("_", " ")),
                "strategy": e.get("strategy"),
                "strategy_label": str(e.get("strategy") or "not recorded").replace("_", " "),
                "description": e.get("description") or "",
                "rows_removed": e.get("rows_removed"),
                "rows_changed": e.get("rows_changed"),
            }
        )
    return rows


def estimand_table(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per model of ``results["models"]``: the estimand's five attributes.

    Parameters
    ----------
    results : mapping
        ``results.json`` as built so far: ``cohort``, ``settings.instrument`` and ``models``
        (entries already through small-cell suppression).

    Returns
    -------
    list of dict
        ``model``, ``label``, ``kind``, ``role``, ``status``, ``reason``, ``section`` (the id of
        the model's section in the report), ``population``, ``treatment``, ``variable``,
        ``intercurrent_events`` (per event: ``event``, ``label``, ``strategy`` as the model
        JSON records it, ``strategy_label``, ``description``, ``rows_removed``,
        ``rows_changed``; empty when the model recorded none, e.g. skipped before its data
        were selected, see ``events_note``) and ``summary_measure``.
    """
    ins = (results.get("settings") or {}).get("instrument") or {}
    cohort = str(results.get("cohort") or "")
    rows = []
    for name, m in (results.get("models") or {}).items():
        events = _events(m)
        status = m.get("status", "ok")
        rows.append(
            {
                "model": name,
                "label": m.get("label") or name,
                "kind": m.get("kind"),
                "role": m.get("role"),
                "status": status,
                "reason": m.get("reason"),
                "section": "primary-model" if name == "primary" else f"model-{name}",
                "population": _population(cohort, m, ins),
                "treatment": _treatment(m, ins),
                "variable": _variable(m, ins),
                "intercurrent_events": events,
                "events_note": ""
                if events
                else f"not recorded: the model was {status} before its intercurrent events were handled",
                "summary_measure": _summary(m, ins),
            }
        )
    return rows
