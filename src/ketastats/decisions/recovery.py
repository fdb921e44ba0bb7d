"""Recovery study of the decision estimators: bias, empirical SE, model SE and coverage.

``ketastats recovery --scenario decisions --model decision_aipw`` (a model of kind ``decision``)
runs this instead of the primary model's recovery (:mod:`ketastats.recovery`). Each replicate
simulates one cohort (:func:`ketastats.simulate.simulate_cohort`, replicate seeds as in
:func:`ketastats.recovery.replicate_seed`), runs it through the same steps as real data (contract
typing, :func:`~ketastats.prepare.prepare_sessions`, :func:`~ketastats.decisions.decision_points`)
and applies every estimator to both decisions, with the spec's settings, plus deliberately
misspecified variants:

``aipw_wrong_propensity``, ``ipw_wrong_propensity``
    the propensity model without the confounders that drive the decision (only ``progress`` and
    ``days_since_previous``);
``aipw_wrong_outcome``, ``gformula_wrong_outcome``
    the outcome models without them.

AIPW should stay consistent with one of its two models wrong; IPW and the g-formula should not.
The truth is the replicate's own ``truth["effects"]["decisions"][decision]["value"]`` (the mean
individual effect over the cohort's eligible points). The summary gives, per estimator and
decision, the bias, the empirical SE, the mean model SE and the 95% CI coverage, each with its
Monte Carlo SE (Morris, White & Crowther 2019).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..exceptions import KetastatsError
from .estimators import NotEstimable, analysis_set, estimate
from .points import CONFOUNDERS, OUTCOMES, decision_points

__all__ = ["VARIANTS", "run_decision_recovery", "run_decision_replicate", "summarize", "write_decision_recovery"]

log = logging.getLogger(__name__)

#: terms of a deliberately wrong model: none of the confounders that drive the decisions
WRONG_TERMS = ["progress", "days_since_previous"]

#: variant -> (estimator, which model is wrong: None, "propensity" or "outcome")
VARIANTS: dict[str, tuple[str, str | None]] = {
    "naive": ("naive", None),
    "ipw": ("ipw", None),
    "gformula": ("gformula", None),
    "aipw": ("aipw", None),
    "ipw_wrong_propensity": ("ipw", "propensity"),
    "gformula_wrong_outcome": ("gformula", "outcome"),
    "aipw_wrong_propensity": ("aipw", "propensity"),
    "aipw_wrong_outcome": ("aipw", "outcome"),
}


def run_decision_replicate(
    scenario: str,
    n_patients: int,
    seed: int,
    replicate: int,
    spec: Mapping[str, Any],
    *,
    overrides: Mapping[str, Any] | None = None,
    alpha: float = 0.05,
) -> list[dict[str, Any]]:
    """One simulated cohort, every variant and decision: one row each."""
    from ..prepare import prepare_sessions
    from ..recovery import replicate_seed
    from ..simulate import simulate_cohort
    from ..validate import coerce_sessions

    rseed = replicate_seed(seed, replicate)
    cohort = simulate_cohort(n_patients, seed=rseed, scenario=scenario, overrides=dict(overrides or {}))
    truth = cohort.truth["effects"].get("decisions")
    if truth is None:
        raise KetastatsError(f"scenario {scenario!r} has no decision truth; use scenario 'decisions'")
    data = prepare_sessions(coerce_sessions(cohort.sessions))
    points, notes = decision_points(data, score="madrs")
    outcome = spec["outcomes"][0]
    ycol, binary = OUTCOMES[outcome]
    confounders = [c for c in spec["confounders"] if c in CONFOUNDERS and c not in notes["unavailable"]]
    ps_terms = [t for t in (spec.get("propensity_terms") or confounders) if t not in notes["unavailable"]]
    or_terms = [t for t in (spec.get("outcome_terms") or confounders) if t not in notes["unavailable"]]
    rows = []
    for decision in spec["decisions"]:
        value = truth[decision]["value"]
        data_d, counts = analysis_set(points, decision, ycol, list(dict.fromkeys([*ps_terms, *or_terms])))
        for variant, (estimator, wrong) in VARIANTS.items():
            row: dict[str, Any] = {
                "replicate": int(replicate), "seed": rseed, "scenario": scenario, "n_patients": int(n_patients),
                "decision": decision, "outcome": outcome, "variant": variant, "truth": value,
                "n_points": counts["analysed"],
            }
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    e = estimate(
                        estimator, data_d, decision=decision, outcome=ycol, binary=binary,
                        propensity_terms=WRONG_TERMS if wrong == "propensity" else ps_terms,
                        outcome_terms=WRONG_TERMS if wrong == "outcome" else or_terms,
                        truncate=spec.get("truncate"), alpha=alpha,
                    )
                row.update(estimate=e.estimate, se=e.se, ci_low=e.ci_low, ci_high=e.ci_high)
            except (NotEstimable, np.linalg.LinAlgError) as exc:
                log.warning("replicate %d %s %s: no estimate: %s", replicate, decision, variant, exc)
                row.update(estimate=math.nan, se=math.nan, ci_low=math.nan, ci_high=math.nan)
            row["covers"] = bool(row["ci_low"] <= value <= row["ci_high"])
            rows.append(row)
    return rows


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """Per variant and decision: bias, empirical SE, mean model SE, coverage, with Monte Carlo SEs."""
    out = []
    for (decision, variant), g in rows.groupby(["decision", "variant"], sort=False):
        ok = g[np.isfinite(g["estimate"]) & np.isfinite(g["se"])]
        n = len(ok)
        if n < 2:
            continue
        err = ok["estimate"] - ok["truth"]
        emp = float(ok["estimate"].std(ddof=1))
        cov = float(ok["covers"].mean())
        out.append({
            "decision": decision,
            "variant": variant,
            "replicates": int(len(g)),
            "replicates_with_estimate": n,
            "truth": float(ok["truth"].mean()),
            "mean_estimate": float(ok["estimate"].mean()),
            "bias": float(err.mean()),
            "bias_mcse": emp / math.sqrt(n),
            "emp_se": emp,
            "emp_se_mcse": emp / math.sqrt(2 * (n - 1)),
            "mean_se": float(ok["se"].mean()),
            "coverage": cov,
            "coverage_mcse": math.sqrt(cov * (1 - cov) / n),
            "bias_over_emp_se": float(err.mean()) / emp if emp > 0 else math.nan,
            "mean_points": float(ok["n_points"].mean()),
        })
    return pd.DataFrame(out)


def run_decision_recovery(
    scenario: str,
    replicates: int,
    n_patients: int,
    seed: int,
    spec: Mapping[str, Any],
    *,
    overrides: Mapping[str, Any] | None = None,
    alpha: float = 0.05,
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A whole recovery study in this process: (per-replicate rows, summary)."""
    rows = []
    for r in tqdm(range(replicates), desc=f"decision recovery {scenario}", disable=not progress, unit="rep"):
        rows.extend(run_decision_replicate(scenario, n_patients, seed, r, spec, overrides=overrides, alpha=alpha))
    table = pd.DataFrame(rows)
    return table, summarize(table)


def write_decision_recovery(table: pd.DataFrame, summary: pd.DataFrame, out_dir: str | Path) -> dict[str, Path]:
    """Write ``replicates.csv``, ``summary.csv`` and ``summary.json`` (atomically)."""
    from ..pipeline import write_json
    from ..tablecsv import write_csv

    out = Path(out_dir)
    paths = {"replicates": out / "replicates.csv", "summary_csv": out / "summary.csv",
             "summary_json": out / "summary.json"}
    write_csv(table.sort_values(["replicate", "decision", "variant"]), paths["replicates"], float_format="%.10g")
    write_csv(summary, paths["summary_csv"], float_format="%.10g")
    write_json(paths["summary_json"], {"rows": summary.to_dict(orient="records")})
    return paths
