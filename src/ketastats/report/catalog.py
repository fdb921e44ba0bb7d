"""What the report writes: figure and table names (file stems) and their titles.

Plain data, no plotting or data libraries: the workflow's ``report`` rule declares one
output per figure and table, and Snakemake reads these on every parse of the Snakefile.
"""

from __future__ import annotations

__all__ = ["FIGURES", "TABLES"]

#: figure name (file stem under ``reports/<cohort>/figures/``) -> title (and alt text)
FIGURES: dict[str, str] = {
    "flow": "Data flow: session records and patients received, excluded (with reasons) and analysed",
    "trajectories_session": "MADRS trajectories by session: individual patients, and means with CI by illness status",
    "trajectories_day": "MADRS trajectories by study day: individual patients, and means with CI by illness status",
    "illness_timeline": "Acute illness over the course: one line per ever-ill patient (swimmer plot)",
    "cytokines": "Cytokine distributions with detection limits",
    "decision_overlap": "Ill at an infusion: propensity of each decision by what was done (overlap)",
    "decision_balance": "Ill at an infusion: confounder balance before and after weighting (love plot)",
    "by_illness": "Which illnesses matter: illness effect by type, severity and fever; decision effects by severity",
    "forest": "Illness effect on the MADRS across the primary and other analyses",
    "residuals_fitted": "Primary model: residuals against fitted values",
    "qq": "Primary model: normal QQ plot of the residuals",
    "caterpillar": "Primary model: random effects (conditional modes) with conditional 95% intervals",
}

#: table name (file stem under ``reports/<cohort>/tables/``) -> what it holds
TABLES: dict[str, str] = {
    "table1": "Table 1: patient characteristics by ever-ill status",
    "data_flow": "Data flow: records received, excluded (with reasons) and analysed",
    "coefficients": "Fixed effects of every model (estimate, SE, CI, p)",
    "illness_effects": "The illness effect in every analysis (the forest plot's numbers)",
    "trajectories_session": "Mean MADRS with CI by session and ever-ill status",
    "trajectories_day": "Mean MADRS with CI by study-day bin and ever-ill status",
    "cytokines": "Cytokine measurements: detected, below the detection limit, limits",
    "suppression": "Cells suppressed by the small-cell rule, where and why",
}
