"""The STROBE checklist of the report: where each of the 22 items is addressed.

STROBE (STrengthening the Reporting of OBservational studies in Epidemiology; von Elm et al.
2007, Lancet 370:1453-57) lists 22 items an observational study's paper should report. The
report cannot write a paper, but it holds much of what several items ask for (the flow of
patients, Table 1, the models, missing data, sensitivity analyses). :func:`strobe_checklist`
returns one row per item (the cohort-study version; the short texts are our paraphrase, not
the checklist's wording) with the report sections that address it, or that the item is the
authors' to write (title, background, setting, discussion, funding), or both.

A section that is empty for this cohort (no cytokine data, no illness data, a failed primary
model, no simulation summaries) does not address anything: the row says so, and an item
left with no section falls to the authors.

Examples
--------
>>> rows = strobe_checklist({"models": {}, "cytokines": [], "illness": {"available": False}})
>>> len(rows), rows[0]["topic"], rows[-1]["status"]
(22, 'Title and abstract', 'authors')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["STROBE_ITEMS", "SECTIONS", "report_sections", "strobe_checklist"]

#: report section id -> its title (the ``id`` of a ``<section>`` of the HTML report)
SECTIONS: dict[str, str] = {
    "summary": "Summary of findings",
    "data-flow": "Data flow",
    "table1": "Table 1",
    "trajectories": "Score trajectories",
    "illness": "Illness episodes",
    "cytokines": "Cytokines",
    "primary-model": "Primary model",
    "forest": "Illness effect across analyses",
    "sensitivity": "Sensitivity analyses",
    "diagnostics": "Diagnostics",
    "other-models": "Other models",
    "estimands": "Estimands",
    "methods": "Methods",
    "suppression": "Suppression",
    "provenance": "Provenance",
    "recovery": "Recovery",
    "power": "Power",
}

#: The 22 items (cohort-study version): number, part of the paper, topic, what it asks for (in
#: our words), the sections that address it, and what is left for the authors ("" = nothing).
STROBE_ITEMS: tuple[dict[str, Any], ...] = (
    {"item": 1, "part": "Title and abstract", "topic": "Title and abstract",
     "text": "Name the study design in the title or abstract, and give an informative, balanced summary "
             "of what was done and found.",
     "sections": ["summary"],
     "authors": "the title and abstract (the summary's sentences give the findings to draw on)"},
    {"item": 2, "part": "Introduction", "topic": "Background and rationale",
     "text": "Explain the scientific background and why the study was done.",
     "sections": [], "authors": "the background and rationale"},
    {"item": 3, "part": "Introduction", "topic": "Objectives",
     "text": "State the specific objectives, including any prespecified hypotheses.",
     "sections": ["estimands", "primary-model"],
     "authors": "the objectives and hypotheses in words (the estimand table states each analysis's question)"},
    {"item": 4, "part": "Methods", "topic": "Study design",
     "text": "Present the key elements of the study design early in the paper.",
     "sections": ["methods", "data-flow"],
     "authors": "the design (e.g. retrospective cohort of IV ketamine courses) and how the cohort was assembled"},
    {"item": 5, "part": "Methods", "topic": "Setting",
     "text": "Describe the setting, locations and relevant dates: recruitment, exposure, follow-up and "
             "data collection.",
     "sections": [], "authors": "the setting, sites and calendar dates (the data hold study days only)"},
    {"item": 6, "part": "Methods", "topic": "Participants",
     "text": "Give the eligibility criteria, the sources and methods of selecting participants, and the "
             "methods of follow-up.",
     "sections": ["data-flow"],
     "authors": "the clinic's eligibility criteria and referral pathway (the report gives the analysis "
                "exclusions)"},
    {"item": 7, "part": "Methods", "topic": "Variables",
     "text": "Define every outcome, exposure, predictor, potential confounder and effect modifier; give "
             "diagnostic criteria where relevant.",
     "sections": ["estimands", "methods", "table1"],
     "authors": "how acute illness was defined and ascertained (diagnostic criteria)"},
    {"item": 8, "part": "Methods", "topic": "Data sources and measurement",
     "text": "For each variable of interest, give the sources of data and how it was measured; say whether "
             "assessment was comparable between groups.",
     "sections": ["methods", "cytokines"],
     "authors": "who rated the outcome, the assays used, and whether assessment differed by illness status"},
    {"item": 9, "part": "Methods", "topic": "Bias",
     "text": "Describe any efforts to address potential sources of bias.",
     "sections": ["estimands", "sensitivity", "methods"],
     "authors": ""},
    {"item": 10, "part": "Methods", "topic": "Study size",
     "text": "Explain how the study size was arrived at.",
     "sections": ["data-flow", "power"],
     "authors": "why the cohort has this size (all eligible courses in a period, or a target)"},
    {"item": 11, "part": "Methods", "topic": "Quantitative variables",
     "text": "Explain how quantitative variables were handled in the analyses, and which groupings were "
             "chosen and why.",
     "sections": ["methods", "table1", "cytokines"],
     "authors": ""},
    {"item": 12, "part": "Methods", "topic": "Statistical methods",
     "text": "Describe all statistical methods, including control of confounding; methods for subgroups "
             "and interactions; how missing data and loss to follow-up were handled; sensitivity analyses.",
     "sections": ["methods", "estimands", "sensitivity", "other-models", "diagnostics"],
     "authors": ""},
    {"item": 13, "part": "Results", "topic": "Participants",
     "text": "Report the numbers at each stage of the study (eligible, included, analysed), the reasons "
             "for non-participation at each stage, and consider a flow diagram.",
     "sections": ["data-flow"],
     "authors": ""},
    {"item": 14, "part": "Results", "topic": "Descriptive data",
     "text": "Give the participants' characteristics and information on exposures and confounders; the "
             "number with missing data for each variable; and the follow-up time.",
     "sections": ["table1", "illness", "trajectories"],
     "authors": ""},
    {"item": 15, "part": "Results", "topic": "Outcome data",
     "text": "Report the numbers of outcome events or summary measures over time.",
     "sections": ["trajectories", "cytokines"],
     "authors": ""},
    {"item": 16, "part": "Results", "topic": "Main results",
     "text": "Give unadjusted and confounder-adjusted estimates with their precision (e.g. 95% CI) and "
             "which confounders were adjusted for; category boundaries of categorised variables; "
             "absolute risks where relative ones are given and meaningful.",
     "sections": ["primary-model", "forest", "other-models"],
     "authors": "any translation of relative effects into absolute risks"},
    {"item": 17, "part": "Results", "topic": "Other analyses",
     "text": "Report other analyses done: subgroups, interactions and sensitivity analyses.",
     "sections": ["sensitivity", "other-models", "diagnostics", "recovery"],
     "authors": ""},
    {"item": 18, "part": "Discussion", "topic": "Key results",
     "text": "Summarise the key results with reference to the study objectives.",
     "sections": ["summary"],
     "authors": "the discussion's summary, against the objectives"},
    {"item": 19, "part": "Discussion", "topic": "Limitations",
     "text": "Discuss limitations, including sources of potential bias or imprecision, with their "
             "direction and magnitude.",
     "sections": ["sensitivity", "suppression"],
     "authors": "the limitations (the sensitivity analyses and what suppression hides are material for it)"},
    {"item": 20, "part": "Discussion", "topic": "Interpretation",
     "text": "Give a cautious overall interpretation considering the objectives, limitations, multiplicity "
             "of analyses, results of similar studies and other evidence.",
     "sections": [], "authors": "the interpretation"},
    {"item": 21, "part": "Discussion", "topic": "Generalisability",
     "text": "Discuss the external validity of the results.",
     "sections": [], "authors": "the generalisability of the results"},
    {"item": 22, "part": "Other information", "topic": "Funding",
     "text": "Give the source of funding and the role of the funders, for this study and, if applicable, "
             "for the original study on which it is based.",
     "sections": [], "authors": "funding and the funders' role"},
)  # fmt: skip


def report_sections(results: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each report section: its title, whether it is in the report and has content for this
    cohort (``available``), and if not, why (``reason``).

    A section the report always renders but that is empty for this cohort (the cytokines of a
    cohort without draws) is ``rendered`` but not ``available``; recovery and power are rendered
    only when their simulation summaries exist.
    """
    models = results.get("models") or {}
    primary = models.get("primary")
    if primary is None:
        primary_reason = "no model named primary is configured"
    elif primary.get("status", "ok") != "ok":
        primary_reason = f"the primary model was {primary.get('status')}"
    else:
        primary_reason = ""
    sens = (results.get("sensitivity") or {}).get("rows")
    why_not = {
        "illness": ""
        if (results.get("illness") or {}).get("available")
        else "the cohort has no illness data",
        "cytokines": "" if results.get("cytokines") else "the cohort has no cytokine measurements",
        "primary-model": primary_reason,
        "diagnostics": primary_reason,
        "forest": "" if results.get("illness_effects") else "no analysis estimated an illness effect",
        "sensitivity": "" if sens else "no sensitivity analysis is configured",
        "other-models": "" if any(n != "primary" for n in models) else "only the primary model is configured",
        "estimands": "" if models else "no model is configured",
        "recovery": "" if results.get("recovery") else "no recovery simulation was run for this cohort",
        "power": "" if results.get("power") else "no power simulation was run for this cohort",
    }
    out = {}
    for sid, title in SECTIONS.items():
        reason = why_not.get(sid, "")
        out[sid] = {
            "id": sid,
            "title": title,
            "rendered": sid not in ("recovery", "power") or bool(results.get(sid)),
            "available": not reason,
            "reason": reason,
        }
    return out


def strobe_checklist(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The STROBE checklist for these results: one row per item (22), in order.

    Parameters
    ----------
    results : mapping
        ``results.json`` as built so far (the model entries, the illness and cytokine blocks,
        ``sensitivity``, ``recovery``, ``power``).

    Returns
    -------
    list of dict
        ``item`` (1-22), ``part``, ``topic``, ``text`` (what the item asks, paraphrased),
        ``sections`` (each ``id``, ``title``, ``available`` and ``reason``: the sections meant
        to address it, with whether they do for this cohort), ``authors`` (what the authors
        write, "" when nothing) and ``status``: ``"report"`` (addressed by the report),
        ``"partly"`` (the report addresses part, the authors write the rest) or ``"authors"``
        (for the authors to write: the report has nothing for it, or nothing for this cohort).
    """
    sections = report_sections(results)
    rows = []
    for it in STROBE_ITEMS:
        secs = [dict(sections[s]) for s in it["sections"]]
        covered = [s for s in secs if s["available"]]
        authors = it["authors"]
        if not covered and not authors:  # every section meant to address it is empty here
            authors = "the whole item (the report's sections for it are empty for this cohort)"
        status = "authors" if not covered else ("partly" if authors else "report")
        rows.append(
            {
                "item": it["item"],
                "part": it["part"],
                "topic": it["topic"],
                "text": it["text"],
                "sections": secs,
                "authors": authors,
                "status": status,
            }
        )
    return rows
