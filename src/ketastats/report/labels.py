"""Human labels with units for model terms, declared once.

A coefficient's raw name (``ill_within``, ``progress_log``, ``madrs_baseline``,
``il6_pg_ml:ill_within``, ``C(session)[T.3]``) stays in ``results.json`` and in the
report's hover text; the report shows :func:`term_label`. Labels of data columns come from
the data contract (:data:`ketastats.contract.COLUMNS`: their descriptions and units); the
variables the package derives (``prepare``, the models' centring) are labelled here, in
:data:`DERIVED`.

Examples
--------
>>> term_label("ill_within", "MADRS")
'Acute illness at the session (within patient: vs own other sessions)'
>>> term_label("madrs_baseline", "MADRS")
'Baseline MADRS (points)'
>>> term_label("il6_pg_ml: ill_within", "MADRS")
'IL-6 (pg/mL) x Acute illness at the session (within patient: vs own other sessions)'
>>> term_label("C(session)[T.3]", "MADRS")
'Session 3 (vs the first session analysed)'
"""

from __future__ import annotations

import re

from ..contract import COLUMNS, INSTRUMENTS

__all__ = ["DERIVED", "term_label"]

#: derived variables and model terms -> label (``{score}`` is the instrument's short name)
DERIVED: dict[str, str] = {
    "Intercept": "Intercept ({score} points)",
    "ill": "Acute illness at the session (yes vs no)",
    "ill_within": "Acute illness at the session (within patient: vs own other sessions)",
    "ill_between": "Share of a patient's sessions with acute illness (between patients)",
    "ill_lag1": "Acute illness at the previous session",
    "ever_ill": "Ill at any session of the course (yes vs no)",
    "progress": "Infusions received so far (per infusion)",
    "progress_log": "Infusions received so far, log(1 + n) (early-course curvature)",
    "days_since_prev": "Days since the previous infusion (per day)",
    "session": "Session number (per session)",
    "day": "Study day (per day)",
    "age": "Age (per year)",
    "bmi": "Body-mass index (per kg/m2)",
    "madrs_nonsick": "MADRS without the items illness itself raises (4-8) (points)",
}


def _lower_first(text: str) -> str:
    """``text`` with its first letter in lower case, unless it starts an acronym (MADRS, C-reactive)."""
    return text[0].lower() + text[1:] if len(text) > 1 and text[1].islower() else text


def _column_label(name: str, score: str) -> str | None:
    if name in DERIVED:
        return DERIVED[name].format(score=score)
    m = re.fullmatch(r"ill_(illness_type|illness_severity|febrile)_(\w+?)_within", name)
    if m:  # kind illness_by: ill with this level of the grouping, within patient
        level = m[2].replace("_", " ").replace("influenza like", "influenza-like")
        return f"Acute illness at the session: {level} (within patient)"
    m = re.fullmatch(r"(log_)?(\w+?)_(within|between)", name)
    if m and m[2] in COLUMNS:  # a centred column: its within- or between-patient part
        inner = _column_label(m[2], score) or m[2]
        part = "within patient" if m[3] == "within" else "patient mean (between patients)"
        return f"{'Log ' + inner if m[1] else inner}, {part}"
    if name.endswith("_base_c"):  # a moderator: the baseline log marker, grand-mean centred
        inner = _column_label(name.removesuffix("_base_c"), score)
        return None if inner is None else f"Baseline log {inner} (centred)"
    base = name.removesuffix("_baseline")
    if base != name and base in INSTRUMENTS:
        return f"Baseline {INSTRUMENTS[base].short} (points)"
    if base != name and base in DERIVED:
        return f"Baseline {_lower_first(DERIVED[base])}"
    if name.endswith("_baseline"):
        inner = _column_label(base, score)
        return None if inner is None else f"Baseline {_lower_first(inner)}"
    spec = COLUMNS.get(name) if isinstance(COLUMNS, dict) else None
    if spec is None:
        return None
    text = spec.description.split(";")[0].rstrip(".")
    text = re.sub(r" concentration$", "", text)
    text = re.sub(r" \(1\) or not \(0\)$", "", text)
    return f"{text} ({spec.unit})" if spec.unit and spec.unit != "points" else text


def term_label(term: str, score: str = "MADRS") -> str:
    """The human label of a model term, with its unit; the term itself when it has none.

    Interactions (``a:b``) join their parts' labels with ``x``; patsy's categorical levels
    (``C(session)[T.3]``, ``sex[T.male]``) read as the level against the reference.
    """
    term = str(term)
    if ":" in term:
        return " x ".join(term_label(p.strip(), score) for p in term.split(":"))
    m = re.fullmatch(r"C\((\w+)\)\[T\.([^\]]+)\]", term) or re.fullmatch(r"(\w+)\[T\.([^\]]+)\]", term)
    if m:
        var, level = m[1], m[2]
        level = level[:-2] if level.endswith(".0") else level
        if var == "session":
            return f"Session {level} (vs the first session analysed)"
        base = _column_label(var, score) or var
        return f"{base}: {level} (vs reference)"
    return _column_label(term, score) or term
