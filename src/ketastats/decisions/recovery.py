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
The outcomes are those of the spec with a truth: ``next`` (the replicate's own
``truth["effects"]["decisions"][decision]["value"]``, the mean individual effect over the cohort's
eligible points) and ``end`` (``...["end_of_course"][decision]["value"]``). Positivity is checked
as the model checks it; a replicate that fails is counted, not estimated. The summary gives, per
decision, outcome and estimator, the bias, the empirical SE, the mean model SE and the 95% CI
coverage, each with its Monte Carlo SE (Morris, White & Crowther 2019), and the replicates skipped.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..exceptions import KetastatsError
from .estimators import NotEstimable, analysis_set, check_positivity, design_matrix, estimate, fit_propensity
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


#: outcome -> where its truth is in ``truth["effects"]["decisions"]`` (None: the decision's own block)
TRUTH_OF = {"next": None, "end": "end_of_course"}


def _truth_value(truth: Mapping[str, Any], outcome: str, decision: str) -> float | None:
    block = truth if TRUTH_OF[outcome] is None else truth.get(TRUTH_OF[outcome], {})
    return block.get(decision, {}).get("value")


def _positivity(points, decision, ycol, terms, ps_terms, spec, labels, full: bool) -> None:
    """The model's positivity checks (:mod:`ketastats.models.kinds.decision`) on one analysis set."""
    data_d, _ = analysis_set(points, decision, ycol, terms)
    A = data_d[decision].to_numpy(dtype=float)
    kw = dict(min_per_arm=int(spec["min_per_arm"]), propensity_range=spec["propensity_range"],
              max_share_outside=float(spec["max_share_outside"]), labels=labels)
    check_positivity(A, None, **kw)
    if full:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ps = fit_propensity(A, design_matrix(data_d, ps_terms))
        check_positivity(A, ps.e, **kw)


def run_decision_replicate(
    scenario: str,
    n_patients: int,
    seed: int,
    replicate: int,
    spec: Mapping[str, Any],
    *,
    overrides: Mapping[str, Any] | None = None,
    alpha: float = 0.05,
    variants: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """One simulated cohort: one row per decision, outcome with a truth (next, end) and variant.

    Positivity is checked as the model checks it (arm sizes and the propensity range on the first
    outcome's analysis set, arm sizes on each outcome's): a decision or outcome that fails gets no
    estimate and ``skipped`` = the reason, counted by :func:`summarize`.
    """
    from ..models.kinds.decision import ARM_LABELS, se_options
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
    outcomes = [o for o in spec["outcomes"] if o in TRUTH_OF]
    confounders = [c for c in spec["confounders"] if c in CONFOUNDERS and c not in notes["unavailable"]]
    ps_terms = [t for t in (spec.get("propensity_terms") or confounders) if t not in notes["unavailable"]]
    or_terms = [t for t in (spec.get("outcome_terms") or confounders) if t not in notes["unavailable"]]
    terms = list(dict.fromkeys([*ps_terms, *or_terms]))
    chosen = {k: VARIANTS[k] for k in (variants or VARIANTS)}
    rows = []
    for decision in spec["decisions"]:
        treated, control = ARM_LABELS[decision]
        labels = {1: treated, 0: control}
        first = OUTCOMES[spec["outcomes"][0]][0]
        try:
            _positivity(points, decision, first, terms, ps_terms, spec, labels, full=True)
            skipped_decision = None
        except NotEstimable as exc:
            skipped_decision = str(exc)
        for outcome in outcomes:
            ycol, binary = OUTCOMES[outcome]
            value = _truth_value(truth, outcome, decision)
            data_d, counts = analysis_set(points, decision, ycol, terms)
            skipped = skipped_decision
            if skipped is None:
                try:
                    _positivity(points, decision, ycol, terms, ps_terms, spec, labels, full=False)
                except NotEstimable as exc:
                    skipped = str(exc)
            for variant, (estimator, wrong) in chosen.items():
                row: dict[str, Any] = {
                    "replicate": int(replicate), "seed": rseed, "scenario": scenario, "n_patients": int(n_patients),
                    "decision": decision, "outcome": outcome, "variant": variant, "truth": value,
                    "n_points": counts["analysed"], "n_treated": int((data_d[decision] == 1).sum()),
                    "skipped": skipped or "",
                }
                row.update(estimate=math.nan, se=math.nan, ci_low=math.nan, ci_high=math.nan)
                if skipped is None:
                    try:
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            e = estimate(
                                estimator, data_d, decision=decision, outcome=ycol, binary=binary,
                                propensity_terms=WRONG_TERMS if wrong == "propensity" else ps_terms,
                                outcome_terms=WRONG_TERMS if wrong == "outcome" else or_terms,
                                truncate=spec.get("truncate"), alpha=alpha, **se_options(spec),
                            )
                        row.update(estimate=e.estimate, se=e.se, ci_low=e.ci_low, ci_high=e.ci_high)
                        if "analytic_se" in e.details:  # se: bootstrap; the other SEs for contrast
                            for name, other in (("analytic", e.details["analytic_se"]),
                                                ("bootstrap_sd", e.details["bootstrap"]["sd"])):
                                row.update({f"se_{name}": other,
                                            f"covers_{name}": _covers(e.estimate, other, value, alpha)})
                    except (NotEstimable, np.linalg.LinAlgError) as exc:
                        log.warning("replicate %d %s %s %s: no estimate: %s", replicate, decision, outcome,
                                    variant, exc)
                        row["skipped"] = str(exc)
                row["covers"] = bool(value is not None and row["ci_low"] <= value <= row["ci_high"])
                rows.append(row)
    return rows


def _covers(est: float, se: float, truth: float | None, alpha: float) -> bool:
    """Whether the Wald interval ``est +- z se`` covers ``truth``."""
    from scipy import stats

    z = float(stats.norm.ppf(1 - alpha / 2))
    return bool(truth is not None and est - z * se <= truth <= est + z * se)


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """Per decision, outcome and variant: bias, empirical SE, mean model SE, coverage, with Monte Carlo SEs.

    Replicates without an estimate (positivity failed) are counted (``replicates_skipped``) and
    left out of the other columns: the figures describe the cohorts that could be analysed.
    """
    out = []
    for (decision, outcome, variant), g in rows.groupby(["decision", "outcome", "variant"], sort=False):
        ok = g[np.isfinite(g["estimate"]) & np.isfinite(g["se"])]
        n = len(ok)
        base = {"decision": decision, "outcome": outcome, "variant": variant, "replicates": int(len(g)),
                "replicates_with_estimate": n, "replicates_skipped": int(len(g) - n)}
        if n < 2:
            out.append(base)
            continue
        err = ok["estimate"] - ok["truth"]
        emp = float(ok["estimate"].std(ddof=1))
        cov = float(ok["covers"].mean())
        out.append({
            **base,
            "truth": float(ok["truth"].mean()),
            "mean_estimate": float(ok["estimate"].mean()),
            "bias": float(err.mean()),
            "bias_mcse": emp / math.sqrt(n),
            "emp_se": emp,
            "emp_se_mcse": emp / math.sqrt(2 * (n - 1)),
            "mean_se": float(ok["se"].mean()),
            "coverage": cov,
            "coverage_mcse": math.sqrt(cov * (1 - cov) / n),
            **_other_ses(ok),
            "bias_over_emp_se": float(err.mean()) / emp if emp > 0 else math.nan,
            "mean_points": float(ok["n_points"].mean()),
            "mean_treated": float(ok["n_treated"].mean()),
        })
    return pd.DataFrame(out)


def _other_ses(ok: pd.DataFrame) -> dict[str, float]:
    """Mean and coverage of the SEs recorded for contrast when the study ran ``se: bootstrap``."""
    out: dict[str, float] = {}
    for name in ("analytic", "bootstrap_sd"):
        if f"se_{name}" not in ok or not ok[f"se_{name}"].notna().all():
            continue
        cov = float(ok[f"covers_{name}"].astype(bool).mean())
        out.update({f"mean_se_{name}": float(ok[f"se_{name}"].mean()), f"coverage_{name}": cov,
                    f"coverage_{name}_mcse": math.sqrt(cov * (1 - cov) / len(ok))})
    return out


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
    variants: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A whole recovery study in this process: (per-replicate rows, summary)."""
    rows = []
    for r in tqdm(range(replicates), desc=f"decision recovery {scenario}", disable=not progress, unit="rep"):
        rows.extend(run_decision_replicate(scenario, n_patients, seed, r, spec, overrides=overrides, alpha=alpha,
                                           variants=variants))
    table = pd.DataFrame(rows)
    return table, summarize(table)


def write_decision_recovery(table: pd.DataFrame, summary: pd.DataFrame, out_dir: str | Path) -> dict[str, Path]:
    """Write ``replicates.csv``, ``summary.csv`` and ``summary.json`` (atomically)."""
    from ..pipeline import write_json
    from ..tablecsv import write_csv

    out = Path(out_dir)
    paths = {"replicates": out / "replicates.csv", "summary_csv": out / "summary.csv",
             "summary_json": out / "summary.json"}
    write_csv(table.sort_values(["replicate", "decision", "outcome", "variant"]), paths["replicates"],
              float_format="%.10g")
    write_csv(summary, paths["summary_csv"], float_format="%.10g")
    write_json(paths["summary_json"], {"rows": summary.to_dict(orient="records")})
    return paths
