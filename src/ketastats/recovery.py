"""Recovery studies: does the primary model find the simulator's known illness effect?

A recovery study simulates ``R`` cohorts under one scenario (:mod:`ketastats.simulate`),
runs each through the same steps as real data (contract typing, :func:`prepare_sessions`,
the configured model) and compares the estimated within-person illness effect with the
true one. Each replicate is fitted by :func:`ketastats.models.run_model`, the function
behind the workflow's fit jobs, so its interval and p-value (Satterthwaite df for the
primary model) are the ones a real cohort would get. The summary gives bias, empirical SE,
mean model SE, 95% CI coverage and the rejection rate, each with its Monte Carlo standard
error (Morris, White & Crowther 2019).

The truth (:func:`target_effect`)
    What the coefficient of the illness flag in a linear mixed model (kind ``lmm``, e.g.
    the primary model's ``ill_within``) estimates is a weighted within-person contrast of
    the outcome between the sessions *flagged* ill and the other analysed sessions. Its true
    value in a simulated cohort is that same contrast applied to the illness-caused part of
    the outcome, which only the generator knows: with ``s`` the true shift of the expected
    MADRS caused by illness at each analysed session (same-session sickness shift,
    carry-over from an earlier ill session, IL-6-mediated shift and drug-efficacy change:
    :meth:`~ketastats.simulate.SimulatedCohort.illness_shift`), ``X`` the model's
    fixed-effects design on the rows it analyses and ``V = blockdiag(Z_i G Z_i' + sigma^2 I)``
    its weights,

        truth = [(X' V^-1 X)^-1 X' V^-1 s]_illness_term,

    the coefficient the model would report if the outcome were the illness shift alone,
    free of noise. ``s`` never comes from the data or the estimate; ``X`` is what the model
    sees (the reported flags, the schedule) and ``G``, ``sigma^2`` are the fitted variance
    components that weight the sessions. Missed illness and false flags dilute this truth
    as they dilute the estimate. The simple mean shift at reported-ill sessions
    (``truth.json``'s ``within_person_effect_reported_illness``) is kept beside it as
    ``truth_reported_mean``, a descriptive number. For model kinds other than ``lmm`` the
    recovery falls back to that mean and says so (``truth_definition``).

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
    "gls_projection",
    "replicate_seed",
    "run_replicate",
    "target_effect",
    "summarize_replicates",
    "run_recovery",
    "write_recovery",
]

log = logging.getLogger(__name__)

#: the descriptive truth of ``truth.json``: mean true same-session shift at reported-ill sessions
TRUTH_KEY = "within_person_effect_reported_illness"
#: ``truth_definition`` of a replicate: the model-weighted projection, or the descriptive mean
PROJECTION, REPORTED_MEAN = "model_projection", "reported_mean"


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
        # the fitted weights of kind lmm, for the truth (not written to the replicate rows)
        "_re_cov": (out.get("random") or {}).get("cov"),
        "_residual_variance": out.get("residual_variance"),
        "_nobs": out.get("nobs"),
    }


def gls_projection(
    s: np.ndarray,
    X: np.ndarray,
    Z: np.ndarray,
    groups: np.ndarray,
    re_cov: np.ndarray,
    residual_variance: float,
) -> np.ndarray:
    """GLS coefficients ``(X' V^-1 X)^-1 X' V^-1 s`` with ``V_i = Z_i G Z_i' + sigma^2 I`` per group.

    Computed per group by the Woodbury identity ``V_i^-1 = (I - Z_i G M_i Z_i') / sigma^2``,
    ``M_i = (sigma^2 I + Z_i' Z_i G)^-1`` (``G`` may be singular).

    Examples
    --------
    >>> X = np.column_stack([np.ones(4), [0.0, 1.0, 0.0, 1.0]])
    >>> Z, g = np.ones((4, 1)), np.array([1, 1, 2, 2])
    >>> s = np.array([0.0, 2.0, 1.0, 3.0])
    >>> gls_projection(s, X, Z, g, np.array([[5.0]]), 1.0).round(6).tolist()
    [0.5, 2.0]
    """
    s = np.asarray(s, dtype=float)
    X = np.asarray(X, dtype=float)
    Z = np.asarray(Z, dtype=float)
    G = np.atleast_2d(np.asarray(re_cov, dtype=float))
    sigma2 = float(residual_variance)
    _, inv = np.unique(np.asarray(groups), return_inverse=True)
    m, q, p = int(inv.max()) + 1, Z.shape[1], X.shape[1]
    ZtZ, ZtX, Zts = np.zeros((m, q, q)), np.zeros((m, q, p)), np.zeros((m, q))
    np.add.at(ZtZ, inv, Z[:, :, None] * Z[:, None, :])
    np.add.at(ZtX, inv, Z[:, :, None] * X[:, None, :])
    np.add.at(Zts, inv, Z * s[:, None])
    GM = G[None] @ np.linalg.inv(sigma2 * np.eye(q)[None] + ZtZ @ G[None])
    XtVX = X.T @ X - np.einsum("mqp,mqr,mrs->ps", ZtX, GM, ZtX)
    XtVs = X.T @ s - np.einsum("mqp,mqr,mr->p", ZtX, GM, Zts)
    return np.linalg.solve(XtVX, XtVs)


def target_effect(
    cohort: Any,
    data: pd.DataFrame,
    spec: Mapping[str, Any],
    estimands: Mapping[str, str],
    re_cov: Any,
    residual_variance: float,
    nobs: int | None = None,
) -> float:
    """The true value of the illness coefficient of a kind-``lmm`` ``spec`` in a simulated cohort.

    ``[(X' V^-1 X)^-1 X' V^-1 s]`` at the spec's ``illness_term`` (module docstring): ``s`` is
    ``cohort.illness_shift()["total"]`` (the generator's true illness-caused shift, never the
    data) at the rows the model analyses, ``X``/``Z`` the model's designs on those rows (built
    by the model's own row selection), ``V`` its weights at the fitted variance components
    ``re_cov`` (``G``) and ``residual_variance`` (``sigma^2``). ``nobs``, when given, is the
    fit's number of rows, checked against the rows rebuilt here.

    Raises
    ------
    KetastatsError
        If the spec is not of kind ``lmm``, has no illness term in its design, the rows differ
        from the fit's, or an analysed row has no true shift.
    """
    from .models import design_matrices
    from .models.fitting import formulas_for
    from .models.rows import model_rows

    if spec.get("kind") != "lmm":
        raise KetastatsError(f"the projection truth is defined for kind lmm, not {spec.get('kind')!r}")
    formula, re_formula = formulas_for(spec)
    outcome, rhs = (part.strip() for part in formula.split("~", 1))
    what = str(spec.get("label") or "model")
    rows, _ = model_rows(data, spec, estimands, outcome=outcome, terms=[rhs, re_formula or ""], what=what)
    group = spec["group"]
    _, X, Z, groups, names, _, used = design_matrices(rows, formula, group, re_formula)
    if nobs is not None and int(nobs) != len(used):
        raise KetastatsError(f"the fit analysed {nobs} rows, the truth's design has {len(used)}")
    term = spec.get("illness_term")
    if term not in names:
        raise KetastatsError(f"the illness term {term!r} is not a column of the design ({', '.join(names)})")
    shift = cohort.illness_shift()
    keys = pd.DataFrame(
        {"patient_id": used[group].astype(str).to_numpy(), "session": used["session"].astype(int).to_numpy()}
    )
    key = ["patient_id", "session"]
    s = keys.merge(shift[[*key, "total"]], on=key, how="left")["total"]
    if s.isna().any():
        raise KetastatsError(f"{int(s.isna().sum())} analysed row(s) have no true illness shift")
    G = np.array([[math.nan if v is None else float(v) for v in row] for row in np.atleast_2d(re_cov)])
    sigma2 = math.nan if residual_variance is None else float(residual_variance)
    if not (np.isfinite(G).all() and math.isfinite(sigma2) and sigma2 > 0):
        raise KetastatsError("the fit gave no usable variance components to weight the truth with")
    return float(gls_projection(s.to_numpy(), X, Z, groups, G, sigma2)[names.index(term)])


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
    """Simulate one cohort, analyse it like real data, and compare with the truth.

    The row holds the estimate, its SE, CI and p-value, ``truth`` (the value the estimate is
    scored against: :func:`target_effect` for kind ``lmm``, else the descriptive mean),
    ``truth_definition`` (``model_projection`` or ``reported_mean``), ``truth_reported_mean``
    (the mean true same-session shift at reported-ill sessions, from ``truth.json``),
    ``covers`` and ``rejects``. A replicate without an estimate has no projection truth (NaN).
    """
    from .models import resolve_estimands
    from .prepare import prepare_sessions
    from .simulate import simulate_cohort
    from .validate import coerce_sessions

    spec = dict(spec or default_spec())
    estimands = resolve_estimands(estimands)
    rseed = replicate_seed(seed, replicate)
    cohort = simulate_cohort(n_patients, seed=rseed, scenario=scenario, overrides=dict(overrides or {}))
    data = prepare_sessions(coerce_sessions(cohort.sessions))
    reported_mean = float(cohort.truth["effects"][TRUTH_KEY]["value"])
    definition = PROJECTION if spec.get("kind") == "lmm" else REPORTED_MEAN
    out = {"replicate": int(replicate), "seed": rseed, "scenario": scenario, "n_patients": int(n_patients)}
    nan = math.nan
    try:
        got = fit(data, spec, estimands, alpha)
        weights = got.pop("_re_cov", None), got.pop("_residual_variance", None), got.pop("_nobs", None)
        if definition == PROJECTION:
            truth = target_effect(cohort, data, spec, estimands, *weights)
        else:
            truth = reported_mean
    except KetastatsError as exc:
        log.warning("replicate %d: no estimate: %s", replicate, exc)
        got = {"estimate": nan, "se": nan, "ci_low": nan, "ci_high": nan, "p_value": nan,
               "converged": False, "singular": False, "engine": ""}
        truth = nan if definition == PROJECTION else reported_mean
    out.update(got)
    out.update(
        {
            "truth": truth,
            "truth_definition": definition,
            "truth_reported_mean": reported_mean,
            "covers": bool(got["ci_low"] <= truth <= got["ci_high"]),
            "rejects": bool(got["p_value"] < alpha),
        }
    )
    return out


def summarize_replicates(rows: pd.DataFrame) -> dict[str, Any]:
    """Bias, empirical SE, mean model SE, coverage and rejection rate, with Monte Carlo SEs.

    The truth differs a little between cohorts, so the bias is the mean of estimate minus
    truth and its Monte Carlo SE is ``error_sd`` (the SD of estimate minus truth, also what
    the model SE must match for the intervals to cover) over the root of the replicates;
    ``emp_se`` is the SD of the estimates and ``bias_over_emp_se`` the bias in those units.
    """
    ok = rows[np.isfinite(rows["estimate"]) & np.isfinite(rows["se"])]
    n = len(ok)
    if n < 2:
        raise KetastatsError(f"only {n} replicate(s) gave an estimate; a summary needs at least 2")
    est, se, truth = ok["estimate"], ok["se"], ok["truth"]
    emp_se = float(est.std(ddof=1))
    err_sd = float((est - truth).std(ddof=1))
    coverage = float(ok["covers"].mean())
    reject = float(ok["rejects"].mean())
    definitions = sorted(set(rows["truth_definition"].dropna())) if "truth_definition" in rows else []
    reported = ok["truth_reported_mean"] if "truth_reported_mean" in ok else truth
    return {
        "scenario": str(rows["scenario"].iloc[0]),
        "n_patients": int(rows["n_patients"].iloc[0]),
        "truth_definition": ", ".join(definitions) or REPORTED_MEAN,
        "replicates": int(len(rows)),
        "replicates_with_estimate": n,
        "replicates_converged": int(ok["converged"].sum()),
        "truth": float(truth.mean()),
        "truth_reported_mean": float(reported.mean()),
        "mean_estimate": float(est.mean()),
        "bias": float((est - truth).mean()),
        "bias_mcse": err_sd / math.sqrt(n),
        "bias_over_emp_se": float((est - truth).mean()) / emp_se if emp_se > 0 else math.nan,
        "emp_se": emp_se,
        "emp_se_mcse": emp_se / math.sqrt(2 * (n - 1)),
        "error_sd": err_sd,
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
