"""When a patient is ill at a scheduled infusion: proceed, postpone or reduce the dose? (issue 17)

A sequential target-trial emulation on a cohort's prepared session table:

- :mod:`~ketastats.decisions.points`: the eligible decision points (each scheduled infusion at
  which the patient is ill, session 2 on), the decision taken, the confounders measured before
  it and the outcomes after it;
- :mod:`~ketastats.decisions.estimators`: the naive contrast, inverse-probability weighting
  with stabilized and truncated weights, the parametric g-formula and the doubly robust AIPW
  estimator, each with a standard error clustered by patient;
- :mod:`~ketastats.decisions.diagnostics`: positivity, propensity overlap, covariate balance
  before and after weighting, effective sample size and the largest weights.

The model kind ``decision`` (:mod:`ketastats.models.kinds.decision`) runs one estimator on one
cohort and writes the model JSON; ``docs/statistics.md`` states the estimands and assumptions.
"""

from .points import CONFOUNDERS, DECISIONS, OUTCOMES, decision_points

__all__ = ["CONFOUNDERS", "DECISIONS", "OUTCOMES", "decision_points"]
