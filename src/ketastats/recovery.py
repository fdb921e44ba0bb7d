"""Recovery studies: does the primary model find the simulator's known illness effect?

A recovery study simulates ``R`` cohorts under one scenario (:mod:`ketastats.simulate`),
runs each through the same steps as real data (contract typing, :func:`prepare_sessions`,
the configured model) and compares the estimated within-person illness effect with the
true one recorded in ``truth.json``. Each replicate is fitted by
:func:`ketastats.models.run_model`, the function behind the workflow's fit jobs, so its
interval and p-value (Satterthwaite df for the primary model) are the ones a real cohort
would get. The summary gives bias, empirical SE, mean model SE, 95% CI coverage and the
rejection rate, each with its Monte Carlo standard error
(Morris, White & Crowther 2019).

References
----------
Morris, T. P., White, I. R., & Crowther, M. J. (2019). Using simulation studies to evaluate
statistical methods. *Statistics in Medicine*, 38(11), 2074-2102.
https://doi.org/10.1002/sim.8086
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from .exceptions import ConvergenceWarning, KetastatsError

__all__ = [
    "default_spec",
    "replicate_seed",
    "run_replicate",
    "summarize_replicates",
    "run_recovery",
    "write_recovery",
]

log = logging.getLogger(__name__)

TRUTH_KEY = "within_person_effect_reported_illness"


def default_spec() -> dict[str, Any]:
    """The project's default primary model (:mod:`ketastats.models.specs`), used when no spec is given."""
    from .models import resolve_spec

    return resolve_spec("primary", {"kind": "lmm", "role": "primary"})


def replicate_seed(seed: int, replicate: int) -> int:
    """Independent, reproducible seed of replicate ``replicate`` of a study seeded ``seed``."""
    return int(np.random.SeedSequence(entropy=int(seed), spawn_key=(int(replicate),)).generate_state(1)[0])


def default_fit(
    data: pd.DataFrame, spec: Mapping[str, Any], estimands: Mapping[str, str], alpha: float
) -> dict[str, Any]:
    """Fit ``spec`` exactly as the workflow's fit job does; return its illness effect."""
    from .models import run_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        out = run_model(str(spec.get("name", "model")), spec, data, estimands, alpha=alpha)
    eff = out.get("illness_effect")
    if out.get("status") != "ok" or not eff:
        raise KetastatsError(f"model {out.get('name')}: {out.get('status')}: {out.get('reason')}")
    return {
        "estimate": float(eff["estimate"]),
        "se": float(eff["se"]),
        "ci_low": float(eff["ci_low"]),
        "ci_high": float(eff["ci_high"]),
        "p_value": float(eff["p_value"]),
        "converged": bool(out.get("converged")),
        "singular": bool(out.get("singular")),
        "engine": str(out.get("engine") or ""),
    }


def run_replicate(
    scenario: str,
    n_patients: int,
    seed: int,
    replicate: int,
    *,
    spec: Mapping[str, Any] | None = None,
    estimands: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    alpha: float = 0.05,
    fit: Callable[..., dict[str, Any]] = default_fit,
) -> dict[str, Any]:
    """Simulate one cohort, analyse it like real data, and compare with the truth."""
    from .models import resolve_estimands
    from .prepare import prepare_sessions
    from .simulate import simulate_cohort
    from .validate import coerce_sessions

    spec = dict(spec or default_spec())
    estimands = resolve_estimands(estimands)
    rseed = replicate_seed(seed, replicate)
    cohort = simulate_cohort(n_patients, seed=rseed, scenario=scenario, overrides=dict(overrides or {}))
    data = prepare_sessions(coerce_sessions(cohort.sessions))
    truth = float(cohort.truth["effects"][TRUTH_KEY]["value"])
    out = {"replicate": int(replicate), "seed": rseed, "scenario": scenario, "n_patients": int(n_patients)}
    try:
        got = fit(data, spec, estimands, alpha)
    except KetastatsError as exc:
        log.warning("replicate %d: no estimate: %s", replicate, exc)
        nan = math.nan
        got = {"estimate": nan, "se": nan, "ci_low": nan, "ci_high": nan, "p_value": nan,
               "converged": False, "singular": False, "engine": ""}
    out.update(got)
    out.update(
        {
            "truth": truth,
            "covers": bool(got["ci_low"] <= truth <= got["ci_high"]),
            "rejects": bool(got["p_value"] < alpha),
        }
    )
    return out


def summarize_replicates(rows: pd.DataFrame) -> dict[str, Any]:
    """Bias, empirical SE, mean model SE, coverage and rejection rate, with Monte Carlo SEs."""
    ok = rows[np.isfinite(rows["estimate"]) & np.isfinite(rows["se"])]
    n = len(ok)
    if n < 2:
        raise KetastatsError(f"only {n} replicate(s) gave an estimate; a summary needs at least 2")
    est, se, truth = ok["estimate"], ok["se"], ok["truth"]
    emp_se = float(est.std(ddof=1))
    coverage = float(ok["covers"].mean())
    reject = float(ok["rejects"].mean())
    return {
        "scenario": str(rows["scenario"].iloc[0]),
        "n_patients": int(rows["n_patients"].iloc[0]),
        "replicates": int(len(rows)),
        "replicates_with_estimate": n,
        "replicates_converged": int(ok["converged"].sum()),
        "truth": float(truth.mean()),
        "mean_estimate": float(est.mean()),
        "bias": float((est - truth).mean()),
        "bias_mcse": emp_se / math.sqrt(n),
        "emp_se": emp_se,
        "emp_se_mcse": emp_se / math.sqrt(2 * (n - 1)),
        "mean_se": float(se.mean()),
        "coverage": coverage,
        "coverage_mcse": math.sqrt(coverage * (1 - coverage) / n),
        "rejection_rate": reject,
        "rejection_rate_mcse": math.sqrt(reject * (1 - reject) / n),
    }


def run_recovery(
    scenario: str,
    replicates: int,
    n_patients: int,
    seed: int,
    *,
    spec: Mapping[str, Any] | None = None,
    estimands: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    alpha: float = 0.05,
    progress: bool = True,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Run a whole recovery study in this process; returns (per-replicate rows, summary)."""
    rows = [
        run_replicate(
            scenario, n_patients, seed, r, spec=spec, estimands=estimands, overrides=overrides, alpha=alpha
        )
        for r in tqdm(range(replicates), desc=f"recovery {scenario}", disable=not progress, unit="rep")
    ]
    table = pd.DataFrame(rows)
    return table, summarize_replicates(table)


def write_recovery(table: pd.DataFrame, summary: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write ``replicates.csv``, ``summary.json`` and ``summary.csv`` (atomically)."""
    from .outputs import write_json
    from .tablecsv import write_csv

    out = Path(out_dir)
    paths = {
        "replicates": out / "replicates.csv",
        "summary_json": out / "summary.json",
        "summary_csv": out / "summary.csv",
    }
    write_csv(table.sort_values("replicate"), paths["replicates"], float_format="%.10g")
    write_json(paths["summary_json"], summary)
    write_csv(pd.DataFrame([summary]), paths["summary_csv"], float_format="%.10g")
    return paths
