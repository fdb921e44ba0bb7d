"""Multiple imputation by chained equations (MICE) in wide format and Rubin's rules: the engine of kinds ``lmm_mi`` and ``tipping_point``.

Kind ``lmm_mi`` is a sensitivity analysis of the primary model for missing ratings: the same
linear mixed model is fitted to each of ``m`` completed data sets and the fixed effects are
pooled by Rubin's rules, with Barnard-Rubin small-sample degrees of freedom.

Imputation model
----------------
The data are reshaped to **one row per patient and one column per variable x planned
session** (``madrs@s3``), so the imputation model keeps the correlation of a patient's ratings
across sessions (long-format MICE would treat sessions as independent rows). Planned sessions
are ``1..K`` with ``K`` the largest session in the cohort, or the spec's ``planned_sessions``.

* Session level, per session: the outcome (the session-1 rating *is* the baseline covariate
  ``<outcome>_baseline``), ``ill``, ``days_since_prev``, any other session-level column the
  model's terms read, and the spec's ``auxiliary`` columns that exist (default ``qids_sr16``,
  ``phq9``: self-reports that track the clinician rating, which is what makes MAR plausible).
* Patient level: the spec's ``auxiliary_patient`` columns that exist (default age, sex as
  male = 1 / female = 0 with other values missing, bmi, and for each cytokine marker the log of
  the session-1 draw, non-detects at LOD/sqrt(2) before logging).
* Missing cells: intermittently missing ratings and auxiliaries, undrawn baseline markers,
  and every variable of a planned session without a row (after dropout, or skipped). Those
  sessions become rows of the completed data: the **hypothetical strategy** for
  discontinuation ("had the patient stayed on the course"), under MAR. Sessions after ``K``
  are not analysed.

Each incomplete column is imputed by predictive mean matching (van Buuren 2018, algorithms
3.1 and 3.3): a Bayesian linear regression draw of ``beta`` and ``sigma`` (ridge ``1e-5`` times
the diagonal of ``X'X`` on standardised predictors, against collinearity), type-1 matching
(observed cases at ``X beta_hat``, missing cases at ``X beta_dot``) and a random choice among
the ``donors`` nearest observed cases. PMM donates observed values, so ``ill`` stays 0/1 and
scores stay whole numbers inside their range (no rounding needed). Each of the ``m``
imputations is its own chain of ``iterations`` cycles over the incomplete columns (patient
level first, then sessions in time order), started from random draws of observed values.
Every predictor is every other column (about 40 columns); a column with fewer than
``10 + 2 (q + 1)`` observed cases for ``q`` predictors falls back to the columns of its own and
the adjacent sessions plus the patient-level ones. Columns whose observed values are one
constant (``days_since_prev@s1``) are filled with it and not used as predictors.

Randomness comes only from :class:`numpy.random.Generator` streams spawned from the spec's
``seed`` (``SeedSequence(seed).spawn(m)``), so the result is byte-identical for a seed.

Why not ``statsmodels.imputation.mice.MICEData``
------------------------------------------------
Measured on the 200-patient demo cohort's wide frame (200 patients x 42 columns, 741 missing
cells; m = 20 chains of 10 cycles; statsmodels 0.15.0, one machine, nothing else running):
this implementation 1.8 s; ``MICEData`` (default settings, constant columns dropped) 31-41 s
per chain, measured on 2 chains, so about 12 minutes for m = 20: roughly 400x slower (it refits
a formula-based statsmodels OLS for every column and cycle, and warned of rank-deficient
designs). Determinism is *not* a reason: MICEData 0.15 takes ``rng`` and is byte-reproducible
with a seeded Generator; without it, it pulls fresh OS entropy (``np.random.seed`` does not
make it reproducible: checked). Its parameter draw is a normal approximation around the OLS
fit (no draw of ``sigma``) with 20 donors, against the Bayesian draw and 5 donors of van
Buuren (2018, section 3.4) used here.

References
----------
Rubin, D. B. (1987). *Multiple Imputation for Nonresponse in Surveys*. Wiley.

Barnard, J., & Rubin, D. B. (1999). Small-sample degrees of freedom with multiple imputation.
*Biometrika*, 86(4), 948-955.

van Buuren, S. (2018). *Flexible Imputation of Missing Data* (2nd ed.). CRC Press. Sections
2.3 (Rubin's rules), 3.2-3.4 (Bayesian regression draw, predictive mean matching), 5.2
(pooling), 11.2 (wide-format imputation of longitudinal data).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ...exceptions import ModelError
from ..common import as_float, coefficient_rows, illness_effect, mcid_for, num, term_columns
from ..estimands import apply_estimands
from ..fitting import LMM_SE_TYPES, fit_lmm_robust, formulas_for
from ..retries import SkipModel
from ..rows import model_rows
from .lmm import design_matrices, fast_max_q, fit_fast
from .sandwich import cluster_robust

__all__ = [
    "WideVariable",
    "WideData",
    "RubinPooled",
    "MIFits",
    "MIPrepared",
    "build_wide",
    "mice_pmm",
    "pmm_draw",
    "complete_long",
    "pool_rubin",
    "prepare_imputations",
    "MIDesign",
    "mi_designs",
    "analysis_rows",
    "fit_imputed",
    "imputation_block",
    "pooled_block",
]

log = logging.getLogger(__name__)

#: ridge factor (times the diagonal of X'X) of the Bayesian regression draw, as mice's default
RIDGE = 1e-5
#: columns the model derives from the completed data (never imputed directly)
_DERIVED = {"progress", "progress_log", "ill_lag1", "session"}
_MARKERS = ("il6_pg_ml", "tnfa_pg_ml", "il1b_pg_ml", "crp_mg_l")
IMPUTATION_METHOD = "chained equations (MICE), predictive mean matching"


# ------------------------------------------------------------------------------ wide data
@dataclass
class WideVariable:
    """One variable of the imputation model (session level: one column per planned session)."""

    name: str
    level: str  # "session" | "patient"
    role: str  # "analysis" | "auxiliary"
    columns: list[str]
    description: str = ""

    def to_dict(self, missing: int) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "level": self.level, "role": self.role, "missing": missing}
        if self.description:
            out["description"] = self.description
        return out


@dataclass
class WideData:
    """A cohort in wide format: one row per patient, one column per variable x planned session."""

    frame: pd.DataFrame  # float columns, index = patient ids
    variables: list[WideVariable]
    planned: list[int]
    attended: np.ndarray  # (patients, planned) True where the session had a row
    outcome: str
    group: str
    dropped_columns: list[str] = field(default_factory=list)

    @property
    def missing(self) -> np.ndarray:
        """Cells missing before imputation (patients x columns)."""
        return self.frame.isna().to_numpy()

    def session_of(self, column: str) -> int | None:
        """The planned session of a ``var@sK`` column (None for patient-level columns)."""
        if "@s" not in column:
            return None
        return int(column.rsplit("@s", 1)[1])


def _col(name: str, session: int) -> str:
    return f"{name}@s{session}"


def _sex01(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip().str.lower()
    out = pd.Series(np.nan, index=values.index, dtype=float)
    out[text.isin(["male", "m", "1"]).fillna(False).to_numpy(bool)] = 1.0
    out[text.isin(["female", "f", "0"]).fillna(False).to_numpy(bool)] = 0.0
    return out


def _baseline_log_marker(data: pd.DataFrame, marker: str, group: str) -> pd.Series:
    """Per patient, log of the session-1 draw (non-detects at LOD/sqrt(2)); NaN when not drawn."""
    first = data["session"] == data.groupby(group)["session"].transform("min")
    rows = data.loc[first & (data["session"] == 1)]
    value = as_float(rows[marker])
    cens_col = f"{marker}_censored"
    lod_col = f"{marker}_lod"
    if cens_col in rows.columns and lod_col in rows.columns:
        cens = rows[cens_col].fillna(False).astype(bool)
        value = value.where(~cens, as_float(rows[lod_col]) / math.sqrt(2.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        logged = np.log(value.where(value > 0))
    return pd.Series(logged.to_numpy(), index=rows[group].to_numpy())


def _is_patient_level(data: pd.DataFrame, column: str, group: str) -> bool:
    nun = data.groupby(group)[column].nunique(dropna=True)
    return bool((nun <= 1).all())


def build_wide(
    data: pd.DataFrame,
    *,
    outcome: str,
    analysis_session: Sequence[str],
    analysis_patient: Sequence[str] = (),
    auxiliary: Sequence[str] = (),
    auxiliary_patient: Sequence[str] = (),
    group: str = "patient_id",
    planned_sessions: int | None = None,
) -> WideData:
    """Reshape a prepared session table to the wide frame of the imputation model.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per patient and attended session (``session`` 1, 2, ...).
    outcome : str
        The analysed score; its session-1 column is the baseline covariate.
    analysis_session, analysis_patient : sequence of str
        Other columns the analysis model reads, by level (``ill``, ``days_since_prev``; age).
    auxiliary, auxiliary_patient : sequence of str
        Auxiliary variables (imputation model only) that are used when present in ``data``.
        Patient-level cytokine markers enter as the log of the session-1 draw; ``sex`` as
        male = 1, female = 0.
    group : str
        The patient column.
    planned_sessions : int, optional
        Planned sessions ``1..K``; default the largest session in ``data``.

    Returns
    -------
    WideData

    Raises
    ------
    SkipModel
        When an analysis variable has no observed value, or there is no session 2.

    Examples
    --------
    >>> df = pd.DataFrame({"patient_id": ["a", "a", "b"], "session": [1, 2, 1],
    ...                    "madrs": [30.0, 20.0, 28.0], "ill": [0.0, 1.0, 0.0]})
    >>> w = build_wide(df, outcome="madrs", analysis_session=["ill"])
    >>> list(w.frame.columns), int(w.frame.isna().sum().sum())
    (['madrs@s1', 'ill@s1', 'madrs@s2', 'ill@s2'], 2)
    """
    df = data.loc[data[group].notna()].copy()
    df["session"] = as_float(df["session"]).astype(int)
    k = int(planned_sessions) if planned_sessions else int(df["session"].max())
    if k < 2:
        raise SkipModel("multiple imputation: fewer than 2 planned sessions")
    beyond = int((df["session"] > k).sum())
    if beyond:
        log.warning("multiple imputation: %d row(s) after planned session %d are not analysed", beyond, k)
    df = df.loc[(df["session"] >= 1) & (df["session"] <= k)]
    if df.duplicated([group, "session"]).any():
        raise SkipModel("multiple imputation: a patient has two rows for one session")
    patients = pd.Index(sorted(df[group].astype(str).unique()), name=group)
    df[group] = df[group].astype(str)
    planned = list(range(1, k + 1))
    columns: dict[str, pd.Series] = {}
    variables: list[WideVariable] = []
    dropped: list[str] = []

    session_vars = [(v, "analysis") for v in dict.fromkeys([outcome, *analysis_session])]
    session_vars += [(v, "auxiliary") for v in auxiliary if v in df.columns and v not in dict(session_vars)]
    for name, role in session_vars:
        if name not in df.columns:
            raise SkipModel(f"multiple imputation: the data have no column {name!r}")
        wide = (
            pd.DataFrame({"p": df[group], "s": df["session"], "v": as_float(df[name]).to_numpy()})
            .pivot(index="p", columns="s", values="v")
            .reindex(index=patients, columns=planned)
        )
        cols = []
        for s in planned:
            c = _col(name, s)
            col = wide[s].astype(float)
            if col.notna().sum() == 0:
                if name == outcome and s == 1:
                    raise SkipModel(f"multiple imputation: no observed {outcome} at session 1 (baseline)")
                dropped.append(c)
                continue
            columns[c] = col
            cols.append(c)
        if not cols:
            if role == "analysis":
                raise SkipModel(f"multiple imputation: {name!r} has no observed value")
            continue
        desc = f"{name} at session 1 = {name}_baseline" if name == outcome else ""
        variables.append(WideVariable(name, "session", role, cols, desc))

    patient_vars = [(v, "analysis") for v in analysis_patient]
    patient_vars += [(v, "auxiliary") for v in auxiliary_patient if v not in dict(patient_vars)]
    for name, role in patient_vars:
        if name not in df.columns:
            if role == "analysis":
                raise SkipModel(f"multiple imputation: the data have no column {name!r}")
            continue
        desc = ""
        if name in _MARKERS or name.endswith(("_pg_ml", "_mg_l")):
            values = _baseline_log_marker(df, name, group).reindex(patients)
            desc = "log of the session-1 draw, non-detects at LOD/sqrt(2)"
        elif name == "sex":
            values = _sex01(df.groupby(group)[name].first()).reindex(patients)
            desc = "male = 1, female = 0, other values missing"
        else:
            values = as_float(df.groupby(group)[name].first()).reindex(patients)
        values = pd.Series(values.to_numpy(dtype=float), index=patients)
        if values.notna().sum() == 0:
            if role == "analysis":
                raise SkipModel(f"multiple imputation: {name!r} has no observed value")
            continue
        columns[name] = values
        variables.append(WideVariable(name, "patient", role, [name], desc))

    # patient-level first (visited first), then sessions in time order
    order = [v.columns[0] for v in variables if v.level == "patient"]
    for s in planned:
        order += [_col(v.name, s) for v in variables if v.level == "session" and _col(v.name, s) in columns]
    frame = pd.DataFrame({c: columns[c] for c in order}, index=patients)
    attended = np.zeros((len(patients), k), dtype=bool)
    pi = patients.get_indexer(df[group])
    attended[pi, df["session"].to_numpy() - 1] = True
    return WideData(frame, variables, planned, attended, outcome, group, dropped)


# ------------------------------------------------------------------------------ PMM
def pmm_draw(
    y_obs: np.ndarray,
    x_obs: np.ndarray,
    x_mis: np.ndarray,
    rng: np.random.Generator,
    *,
    donors: int = 5,
    ridge: float = RIDGE,
) -> np.ndarray:
    """Predictive mean matching draws for the missing cases of one variable.

    Bayesian linear regression draw (van Buuren 2018, algorithm 3.1) followed by type-1
    matching (algorithm 3.3): observed cases are predicted at ``beta_hat``, missing cases at the
    drawn ``beta_dot``; each missing case receives the observed value of one of its ``donors``
    nearest observed cases, chosen at random.

    Parameters
    ----------
    y_obs : numpy.ndarray
        Observed values of the variable, shape (n_obs,).
    x_obs, x_mis : numpy.ndarray
        Predictors (with an intercept column) of the observed and missing cases.
    rng : numpy.random.Generator
        The only source of randomness.
    donors : int
        Number of nearest donors to choose from.
    ridge : float
        Ridge factor: ``(X'X + ridge diag(X'X))^-1`` (against collinear predictors).

    Returns
    -------
    numpy.ndarray
        One observed value per missing case.

    References
    ----------
    van Buuren, S. (2018). *Flexible Imputation of Missing Data* (2nd ed.), section 3.4.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> x = np.c_[np.ones(50), np.arange(50.0)]
    >>> y = 2 * np.arange(50.0)
    >>> out = pmm_draw(y, x, np.array([[1.0, 10.2]]), rng)
    >>> bool(out[0] in y)
    True
    """
    n_obs, q = x_obs.shape
    xtx = x_obs.T @ x_obs
    diag = np.diag(xtx).copy()
    diag[diag <= 0] = 1.0
    a = xtx + np.diag(ridge * diag)
    try:
        chol = np.linalg.cholesky(a)
    except np.linalg.LinAlgError:
        a = xtx + np.diag(1e-3 * diag + 1e-8)
        chol = np.linalg.cholesky(a)
    v = np.linalg.inv(a)
    v = (v + v.T) / 2
    beta_hat = v @ (x_obs.T @ y_obs)
    resid = y_obs - x_obs @ beta_hat
    g = rng.chisquare(max(n_obs - q, 1))
    sigma = math.sqrt(float(resid @ resid) / g)
    # V^{1/2} via the Cholesky factor of V (chol is the factor of V^-1)
    root = np.linalg.inv(chol).T
    beta_dot = beta_hat + sigma * (root @ rng.standard_normal(q))
    yhat_obs = x_obs @ beta_hat
    yhat_mis = x_mis @ beta_dot
    k = max(1, min(int(donors), n_obs))
    order = np.argsort(yhat_obs, kind="stable")
    sorted_hat = yhat_obs[order]
    pos = np.searchsorted(sorted_hat, yhat_mis)
    # the k nearest lie within [pos - k, pos + k): take that window and keep its k closest
    lo = np.clip(pos - k, 0, max(n_obs - 2 * k, 0))
    window = lo[:, None] + np.arange(min(2 * k, n_obs))[None, :]
    dist = np.abs(sorted_hat[window] - yhat_mis[:, None])
    nearest = np.argsort(dist, axis=1, kind="stable")[:, :k]
    pick = nearest[np.arange(len(yhat_mis)), rng.integers(0, k, size=len(yhat_mis))]
    return y_obs[order[window[np.arange(len(yhat_mis)), pick]]]


def _predictor_sets(wide: WideData, active: np.ndarray, n_obs: np.ndarray) -> list[np.ndarray]:
    """Predictors per column: every other active column, or (when the column has fewer than
    ``10 + 2 (q + 1)`` observed cases) the columns of the same and adjacent sessions plus the
    patient-level ones."""
    sess = np.array([wide.session_of(c) or 0 for c in wide.frame.columns])
    idx_all = np.flatnonzero(active)
    out = []
    for j in range(len(sess)):
        pred = idx_all[idx_all != j]
        if n_obs[j] < 10 + 2 * (len(pred) + 1) and sess[j]:
            near = (sess[pred] == 0) | (np.abs(sess[pred] - sess[j]) <= 1)
            pred = pred[near]
        out.append(pred.astype(int))
    return out


def mice_pmm(
    wide: WideData,
    *,
    m: int = 20,
    iterations: int = 10,
    donors: int = 5,
    seed: int = 20261125,
) -> tuple[list[np.ndarray], dict[str, Any]]:
    """``m`` completed copies of the wide frame by chained equations with PMM.

    Parameters
    ----------
    wide : WideData
        From :func:`build_wide`.
    m : int
        Number of imputations (independent chains).
    iterations : int
        Cycles over the incomplete columns per chain.
    donors : int
        Donor pool size of predictive mean matching.
    seed : int
        Seed of ``SeedSequence(seed).spawn(m)``: chain ``i`` uses the ``i``-th child stream.

    Returns
    -------
    completed, info
        ``completed``: ``m`` arrays (patients x columns); ``info``: ``cells_imputed``,
        ``constant_columns``, ``restricted_predictors`` (columns imputed from adjacent sessions
        only), ``seconds``.

    References
    ----------
    van Buuren, S., & Groothuis-Oudshoorn, K. (2011). mice: Multivariate imputation by
    chained equations in R. *Journal of Statistical Software*, 45(3).

    Examples
    --------
    >>> df = pd.DataFrame({"patient_id": list("aabbcc") * 5, "session": [1, 2] * 15,
    ...                    "madrs": np.r_[np.arange(29.0), np.nan]})
    >>> df["patient_id"] = [f"{p}{i // 6}" for i, p in enumerate(df["patient_id"])]
    >>> done, info = mice_pmm(build_wide(df, outcome="madrs", analysis_session=[]), m=2, seed=1)
    >>> info["cells_imputed"], bool(np.isin(done[0][-1, 1], np.arange(29.0)))
    (1, True)
    """
    t0 = time.perf_counter()
    x0 = wide.frame.to_numpy(dtype=float, copy=True)
    miss = np.isnan(x0)
    n_obs = (~miss).sum(axis=0)
    constant = np.array([np.unique(x0[~miss[:, j], j]).size < 2 for j in range(x0.shape[1])])
    for j in np.flatnonzero(constant & miss.any(axis=0)):
        x0[miss[:, j], j] = x0[~miss[:, j], j][0]
    active = ~constant
    preds = _predictor_sets(wide, active, n_obs)
    visit = [j for j in range(x0.shape[1]) if active[j] and miss[:, j].any()]
    streams = np.random.SeedSequence(int(seed)).spawn(int(m))
    completed = []
    try:
        from tqdm.auto import tqdm

        chains = tqdm(streams, desc="imputations", unit="chain", disable=None, leave=False)
    except ImportError:  # pragma: no cover - tqdm is a dependency
        chains = streams
    for child in chains:
        rng = np.random.Generator(np.random.PCG64(child))
        x = x0.copy()
        for j in visit:
            obs = x0[~miss[:, j], j]
            x[miss[:, j], j] = rng.choice(obs, size=int(miss[:, j].sum()))
        for _ in range(int(iterations)):
            for j in visit:
                p = preds[j]
                a = x[:, p]
                mu, sd = a.mean(axis=0), a.std(axis=0)
                sd[sd == 0] = 1.0
                design = np.column_stack([np.ones(len(a)), (a - mu) / sd])
                mj = miss[:, j]
                x[mj, j] = pmm_draw(x[~mj, j], design[~mj], design[mj], rng, donors=donors)
        completed.append(x)
    info = {
        "cells_imputed": int(miss.sum()),
        "constant_columns": [c for c, k in zip(wide.frame.columns, constant) if k],
        "restricted_predictors": int(sum(1 for j in visit if len(preds[j]) < active.sum() - 1)),
        "seconds": time.perf_counter() - t0,
    }
    return completed, info


# ------------------------------------------------------------------------------ back to long
def complete_long(wide: WideData, completed: np.ndarray) -> pd.DataFrame:
    """One completed wide array as a long table: a row for every patient and planned session.

    Adds the derived columns the models read: ``progress`` (``session - 1``), ``progress_log``,
    ``ill_lag1`` (``ill`` at the previous planned session, 0 at session 1), and
    ``<outcome>_baseline`` (the session-1 value); ``ill_within``/``ill_between`` are recomputed
    by the model's centring. ``_attended`` marks sessions that had a row, ``_imputed_<v>`` the
    cells of session-level variable ``v`` that were imputed.
    """
    frame = pd.DataFrame(completed, index=wide.frame.index, columns=wide.frame.columns)
    miss = wide.frame.isna()
    n, k = len(frame), len(wide.planned)
    long = pd.DataFrame(
        {
            wide.group: np.repeat(frame.index.to_numpy(), k),
            "session": np.tile(np.asarray(wide.planned), n),
        }
    )
    long["_attended"] = wide.attended.ravel()
    for var in wide.variables:
        if var.level == "patient":
            long[var.name] = np.repeat(frame[var.name].to_numpy(), k)
            continue
        vals = np.full((n, k), np.nan)
        imp = np.zeros((n, k), dtype=bool)
        for c in var.columns:
            s = wide.session_of(c)
            assert s is not None
            vals[:, s - 1] = frame[c].to_numpy()
            imp[:, s - 1] = miss[c].to_numpy()
        long[var.name] = vals.ravel()
        long[f"_imputed_{var.name}"] = imp.ravel()
    long["progress"] = long["session"] - 1
    long["progress_log"] = np.log1p(long["progress"].astype(float))
    if "ill" in long.columns:
        long["ill_lag1"] = long.groupby(wide.group)["ill"].shift(1).fillna(0.0)
    if "days_since_prev" in long.columns:
        long.loc[long["session"] == 1, "days_since_prev"] = 0.0
    base = long[wide.outcome].where(long["session"] == 1)
    long[f"{wide.outcome}_baseline"] = base.groupby(long[wide.group]).transform("max")
    return long


# ------------------------------------------------------------------------------ Rubin's rules
@dataclass
class RubinPooled:
    """Rubin's rules for ``p`` parameters (arrays of length ``p``)."""

    estimate: np.ndarray  # Q-bar
    within: np.ndarray  # U-bar
    between: np.ndarray  # B
    total: np.ndarray  # T = U-bar + (1 + 1/m) B
    riv: np.ndarray  # relative increase in variance, (1 + 1/m) B / U-bar
    lam: np.ndarray  # proportion of total variance due to missingness, (1 + 1/m) B / T
    fmi: np.ndarray  # fraction of missing information
    df: np.ndarray  # Barnard-Rubin degrees of freedom
    m: int

    @property
    def se(self) -> np.ndarray:
        """Pooled standard errors, ``sqrt(T)``."""
        return np.sqrt(self.total)


def pool_rubin(
    estimates: np.ndarray, variances: np.ndarray, df_complete: float | np.ndarray | None = None
) -> RubinPooled:
    """Pool ``m`` complete-data analyses by Rubin's rules with Barnard-Rubin df.

    Parameters
    ----------
    estimates : array, shape (m, p)
        Each imputation's estimates.
    variances : array, shape (m, p)
        Their squared standard errors.
    df_complete : float or array, optional
        Complete-data degrees of freedom ``nu_com``; ``None`` (or infinite) gives the large-sample
        df of Rubin (1987), ``(m - 1) / lambda^2``.

    Returns
    -------
    RubinPooled
        ``estimate = mean(Q)``, ``within = mean(U)``, ``between = var(Q)`` (ddof 1),
        ``total = within + (1 + 1/m) between``, ``riv = (1 + 1/m) B / U``,
        ``lam = (1 + 1/m) B / T``, Barnard-Rubin ``df = nu_old nu_obs / (nu_old + nu_obs)`` with
        ``nu_old = (m - 1) / lam^2`` and ``nu_obs = (nu_com + 1) / (nu_com + 3) nu_com (1 - lam)``,
        and ``fmi = (riv + 2 / (df + 3)) / (1 + riv)``.

    References
    ----------
    Rubin, D. B. (1987). *Multiple Imputation for Nonresponse in Surveys*. Wiley.
    Barnard, J., & Rubin, D. B. (1999). Small-sample degrees of freedom with multiple
    imputation. *Biometrika*, 86(4), 948-955.
    van Buuren, S. (2018). *Flexible Imputation of Missing Data*, 2nd ed., eqs. 2.16-2.31
    (the FMI uses the Barnard-Rubin df, as ``mice::pool``).

    Examples
    --------
    >>> r = pool_rubin(np.array([[1.0], [2.0], [3.0]]), np.array([[1.0], [1.0], [1.0]]), 100)
    >>> float(r.estimate[0]), float(r.total[0]), round(float(r.df[0]), 2)
    (2.0, 2.333333333333333, 5.35)
    """
    q = np.atleast_2d(np.asarray(estimates, dtype=float))
    u = np.atleast_2d(np.asarray(variances, dtype=float))
    if q.shape != u.shape:
        raise ValueError(f"estimates {q.shape} and variances {u.shape} differ in shape")
    m = q.shape[0]
    if m < 2:
        raise ValueError("Rubin's rules need at least 2 imputations")
    qbar = q.mean(axis=0)
    ubar = u.mean(axis=0)
    b = q.var(axis=0, ddof=1)
    t = ubar + (1 + 1 / m) * b
    with np.errstate(divide="ignore", invalid="ignore"):
        riv = (1 + 1 / m) * b / ubar
        lam = (1 + 1 / m) * b / t
        df_old = np.where(lam > 0, (m - 1) / lam**2, np.inf)
        if df_complete is None or np.all(~np.isfinite(np.asarray(df_complete, dtype=float))):
            df = df_old
        else:
            nu = np.broadcast_to(np.asarray(df_complete, dtype=float), qbar.shape)
            df_obs = (nu + 1) / (nu + 3) * nu * (1 - lam)
            df = np.where(np.isfinite(df_old), df_old * df_obs / (df_old + df_obs), df_obs)
        fmi = (riv + 2 / (df + 3)) / (1 + riv)
    return RubinPooled(qbar, ubar, b, t, riv, lam, fmi, np.asarray(df, dtype=float), m)


# ------------------------------------------------------------------------------ the kind
@dataclass
class MIPrepared:
    """The imputations of one spec on one cohort (shared by ``lmm_mi`` and ``tipping_point``)."""

    wide: WideData
    completed: list[pd.DataFrame]  # long completed tables, one per imputation
    info: dict[str, Any]
    record: dict[str, Any]  # estimands record
    formula: str
    re_formula: str | None
    outcome: str
    terms: list[str]
    seconds: float


@dataclass
class MIFits:
    """The ``m`` complete-data fits of one analysis, pooled."""

    terms: list[str]
    pooled: RubinPooled
    coefficients: list[dict[str, Any]]
    re_cov: np.ndarray
    random_names: list[str]
    residual_variance: float
    nobs: int
    ngroups: int
    converged: bool
    singular: bool
    engines: list[str]
    df_complete: float | np.ndarray
    messages: list[str]


def _mi_estimands(data: pd.DataFrame, spec: Mapping[str, Any], estimands: Mapping[str, str], outcome: str):
    """Apply the estimands (discontinuation: hypothetical, by the imputation) to the observed rows."""
    configured = estimands.get("discontinuation", "treatment_policy")
    est = dict(estimands)
    est["discontinuation"] = "hypothetical"
    df, record = apply_estimands(
        data, est, outcome=outcome, outcome_type="continuous", level="session", group=spec["group"]
    )
    return df, record, configured


def prepare_imputations(
    data: pd.DataFrame, spec: Mapping[str, Any], estimands: Mapping[str, str]
) -> MIPrepared:
    """Estimands, wide frame, ``m`` chained-equation imputations and their long completed tables.

    Parameters
    ----------
    data : pandas.DataFrame
        The cohort's prepared session table.
    spec : mapping
        A resolved ``lmm_mi`` or ``tipping_point`` spec (``imputations``, ``iterations``,
        ``donors``, ``seed``, ``auxiliary``, ``auxiliary_patient``, ``planned_sessions``, and
        the model's ``outcome``/``fixed``/``random`` or ``formula``/``re_formula``).
    estimands : mapping
        Strategy per intercurrent event; discontinuation is handled by the hypothetical strategy
        (sessions after dropout imputed under MAR) whatever is configured, and recorded so.

    Returns
    -------
    MIPrepared
    """
    t0 = time.perf_counter()
    group = spec["group"]
    formula, re_formula = formulas_for(spec)
    outcome = formula.split("~", 1)[0].strip()
    terms = [formula.split("~", 1)[1], re_formula or ""]
    centre = list(spec.get("centre") or [])
    df, record, configured = _mi_estimands(data, spec, estimands, outcome)
    if df.empty:
        raise SkipModel(f"{spec['label']}: no rows left after the estimands")
    needed = [c for c in term_columns(terms, centre) if c not in _DERIVED and c != group]
    needed = [c for c in needed if c != f"{outcome}_baseline" and c != outcome]
    missing_cols = [c for c in needed if c not in df.columns]
    if missing_cols:
        raise SkipModel(f"{spec['label']} needs column(s) {', '.join(missing_cols)}, which the data lack")
    patient_level = [
        c for c in needed if _is_patient_level(df, c, group) and c not in ("ill", "days_since_prev")
    ]
    session_level = [c for c in needed if c not in patient_level]
    wide = build_wide(
        df,
        outcome=outcome,
        analysis_session=session_level,
        analysis_patient=patient_level,
        auxiliary=[a for a in spec.get("auxiliary") or [] if a not in session_level and a != outcome],
        auxiliary_patient=[a for a in spec.get("auxiliary_patient") or [] if a not in patient_level],
        group=group,
        planned_sessions=spec.get("planned_sessions"),
    )
    arrays, info = mice_pmm(
        wide,
        m=int(spec["imputations"]),
        iterations=int(spec["iterations"]),
        donors=int(spec["donors"]),
        seed=int(spec["seed"]),
    )
    completed = [complete_long(wide, a) for a in arrays]
    attended = wide.attended
    rows_observed = int(attended.sum())
    rows_added = int((~attended).sum())
    last = np.where(attended.any(axis=1), wide.attended.shape[1] - np.argmax(attended[:, ::-1], axis=1), 0)
    after_dropout = int(sum(len(wide.planned) - int(x) for x in last))
    record = dict(record)
    record["discontinuation"] = {
        "strategy": "hypothetical",
        "configured_strategy": configured,
        "description": "sessions after dropout (and skipped planned sessions) created and imputed by "
        "multiple imputation under MAR: the ratings had the patient stayed on the course",
        "rows_removed": 0,
        "rows_changed": 0,
        "rows_added": rows_added,
        "rows_added_after_dropout": after_dropout,
    }
    if configured != "hypothetical":
        log.info(
            "%s: discontinuation handled by the hypothetical strategy (MAR imputation), not %s",
            spec["label"],
            configured,
        )
    info.update(rows_observed=rows_observed, rows_added=rows_added, rows_added_after_dropout=after_dropout)
    seconds = time.perf_counter() - t0
    log.info(
        "%s: %d imputations of %d cells (%d patients x %d columns) in %.2f s",
        spec["label"],
        len(arrays),
        info["cells_imputed"],
        *wide.frame.shape,
        seconds,
    )
    return MIPrepared(wide, completed, info, record, formula, re_formula, outcome, terms, seconds)


_TP_ESTIMANDS = {
    "postponement": "treatment_policy",
    "dose_change": "treatment_policy",
    "discontinuation": "treatment_policy",
    "illness_medication": "treatment_policy",
}


def analysis_rows(completed: pd.DataFrame, spec: Mapping[str, Any], prep: MIPrepared) -> pd.DataFrame:
    """The rows the model analyses in one completed table (session selection, centring)."""
    df, _ = model_rows(
        completed, spec, _TP_ESTIMANDS, outcome=prep.outcome, terms=prep.terms, what=spec["label"]
    )
    return df


@dataclass
class MIDesign:
    """The model's design on one analysed completed data set (built once, refitted with shifts)."""

    y: np.ndarray
    X: np.ndarray
    Z: np.ndarray
    groups: np.ndarray
    xnames: list[str]
    znames: list[str]
    frame: pd.DataFrame  # the analysed rows, in the order of y


def mi_designs(datasets: Sequence[pd.DataFrame], spec: Mapping[str, Any], prep: MIPrepared) -> list[MIDesign]:
    """Design matrices of the spec's model on each analysed completed data set."""
    out = []
    for df in datasets:
        y, X, Z, groups, xnames, znames, used = design_matrices(
            df, prep.formula, spec["group"], prep.re_formula
        )
        out.append(MIDesign(y, X, Z, groups, xnames, znames, used))
    return out


def _fit_one(design: MIDesign, spec: Mapping[str, Any], prep: MIPrepared, shift: np.ndarray | None = None):
    """Fast engine on the prebuilt design; the robust retries (other engines) when it fails."""
    reml = spec["method"] == "REML"
    y = design.y if shift is None else design.y + shift
    if design.Z.shape[1] <= fast_max_q():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = fit_fast(y, design.X, design.Z, design.groups, design.xnames, design.znames, reml)
            if res.converged:
                return res
        except (ModelError, np.linalg.LinAlgError, ValueError, ArithmeticError) as exc:
            log.info("fast engine failed on an imputed data set (%s): robust retries", exc)
    frame = design.frame if shift is None else design.frame.assign(**{prep.outcome: y})
    fit = fit_lmm_robust(
        frame,
        prep.formula,
        spec["group"],
        prep.re_formula,
        reml=reml,
        engine="statsmodels",
        df_method="normal",
    )
    return fit.result


def fit_imputed(
    designs: Sequence[MIDesign],
    spec: Mapping[str, Any],
    prep: MIPrepared,
    *,
    alpha: float = 0.05,
    shifts: Sequence[np.ndarray] | None = None,
) -> MIFits:
    """Fit the spec's model to each analysed completed data set and pool by Rubin's rules.

    ``shifts`` (one array per data set, aligned with ``design.y``) are added to the outcome
    (delta adjustment). With ``se: model`` each fit's variances are lme4's and the complete-data
    df of the Barnard-Rubin df are ``nobs - p``; with ``se: cr2`` (the default, as kind ``lmm``)
    they are each fit's CR2 sandwich (:func:`ketastats.models.engines.sandwich.cluster_robust`)
    and the complete-data df per coefficient the mean of the fits' Bell-McCaffrey df.
    """
    se = str(spec.get("se") or "model")
    cr2_df: list[np.ndarray] = []
    ests, vars_, covs, sig2 = [], [], [], []
    conv, sing, engines, msgs = True, False, [], []
    terms: list[str] = []
    names: list[str] = []
    nobs = ngroups = 0
    for i, design in enumerate(designs):
        res = _fit_one(design, spec, prep, None if shifts is None else shifts[i])
        terms = [str(t) for t in res.fixed["term"]]
        names = list(res.random_names)
        ests.append(res.fixed["estimate"].to_numpy(dtype=float))
        if se == "cr2":
            if terms != [str(t) for t in design.xnames]:
                raise ModelError(f"fixed effects {terms} differ from the design's {design.xnames}")
            y = design.y if shifts is None else design.y + shifts[i]
            sw = cluster_robust(y, design.X, design.Z, design.groups, res.re_cov, res.residual_variance, adjust="cr2")
            vars_.append(np.diag(sw.cov).copy())
            cr2_df.append(sw.df)
        else:
            vars_.append(res.fixed["se"].to_numpy(dtype=float) ** 2)
        covs.append(np.atleast_2d(res.re_cov))
        sig2.append(float(res.residual_variance))
        conv &= bool(res.converged)
        sing |= bool(res.singular)
        engines.append(res.engine)
        nobs, ngroups = int(res.nobs), int(res.ngroups)
    p = len(terms)
    df_com = np.mean(np.vstack(cr2_df), axis=0) if cr2_df else float(max(nobs - p, 1))
    pooled = pool_rubin(np.vstack(ests), np.vstack(vars_), df_com)
    coefs = coefficient_rows(
        terms, pooled.estimate, pooled.se, alpha=alpha, df=pooled.df, df_method="barnard_rubin"
    )
    if sing:
        msgs.append("at least one imputation's fit is singular")
    if not conv:
        msgs.append("at least one imputation's fit did not converge")
    return MIFits(
        terms,
        pooled,
        coefs,
        np.mean(np.stack(covs), axis=0),
        names,
        float(np.mean(sig2)),
        nobs,
        ngroups,
        conv,
        sing,
        engines,
        df_com,
        msgs,
    )


def _random_mean_block(fits: MIFits, group: str) -> dict[str, Any]:
    cov = np.atleast_2d(fits.re_cov)
    sd = np.sqrt(np.clip(np.diag(cov), 0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(sd, sd)
    return {
        "group": group,
        "names": list(fits.random_names),
        "cov": [[num(v) for v in row] for row in cov],
        "sd": [num(v) for v in sd],
        "corr": [[num(v) for v in row] for row in corr],
        "pooling": "mean over the imputations",
    }


def imputation_block(prep: MIPrepared, fits: MIFits, spec: Mapping[str, Any]) -> dict[str, Any]:
    """The ``imputation`` block of the model JSON."""
    miss = prep.wide.frame.isna()
    variables = []
    for v in prep.wide.variables:
        variables.append(v.to_dict(int(miss[v.columns].to_numpy().sum())))
    return {
        "method": IMPUTATION_METHOD,
        "format": "wide (one row per patient, one column per variable x planned session)",
        "m": int(spec["imputations"]),
        "iterations": int(spec["iterations"]),
        "donors": int(spec["donors"]),
        "seed": int(spec["seed"]),
        "planned_sessions": len(prep.wide.planned),
        "variables": variables,
        "predictors": "all other columns"
        + (
            f" ({prep.info['restricted_predictors']} column(s) with few observed cases: same and "
            "adjacent sessions plus patient-level columns)"
            if prep.info.get("restricted_predictors")
            else ""
        ),
        "rows_observed": prep.info["rows_observed"],
        "rows_added": prep.info["rows_added"],
        "rows_added_after_dropout": prep.info["rows_added_after_dropout"],
        "cells_imputed": prep.info["cells_imputed"],
        "assumption": "MAR given the imputation model's variables",
        "fmi": {t: num(f) for t, f in zip(fits.terms, fits.pooled.fmi)},
        "riv": {t: num(r) for t, r in zip(fits.terms, fits.pooled.riv)},
        "df_complete": (
            {t: num(d) for t, d in zip(fits.terms, fits.df_complete)}
            if np.ndim(fits.df_complete)
            else num(fits.df_complete)
        ),
    }


def pooled_block(prep: MIPrepared, fits: MIFits, spec: Mapping[str, Any]) -> dict[str, Any]:
    """The model-JSON fields of a pooled MI analysis (envelope fields and ``imputation``)."""
    ill_term = spec["illness_term"]
    eff = illness_effect(fits.coefficients, ill_term, scale="points", mcid=mcid_for(prep.outcome))
    if eff is not None:
        eff["outcome"] = prep.outcome
    engines = sorted(set(fits.engines))
    return {
        "converged": bool(fits.converged),
        "singular": bool(fits.singular),
        "attempts": [],
        "engine": engines[0] if len(engines) == 1 else "+".join(engines),
        "optimizer": None,
        "method": spec["method"],
        "formula": prep.formula,
        "re_formula": prep.re_formula,
        "nobs": int(fits.nobs),
        "ngroups": int(fits.ngroups),
        "df_method": "barnard_rubin",
        "se_type": LMM_SE_TYPES[str(spec.get("se") or "model")],
        "coefficients": fits.coefficients,
        "fixed": {c["term"]: {"estimate": c["estimate"], "se": c["se"]} for c in fits.coefficients},
        "illness_effect": eff,
        "random": _random_mean_block(fits, spec["group"]),
        "residual_variance": num(fits.residual_variance),
        "loglik": None,
        "blups": None,
        "estimands": prep.record,
        "imputation": imputation_block(prep, fits, spec),
        "messages": list(fits.messages),
    }


