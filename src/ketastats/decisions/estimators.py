"""Effect of a decision at ill infusions: naive, IPW, g-formula and AIPW, with patient-clustered SEs.

Every estimator takes the analysis set of one decision and one outcome: the eligible points
(:func:`ketastats.decisions.points.decision_points`) with the decision, the outcome and every
confounder observed. ``A`` is the decision (1 = postpone, or 1 = reduced dose), ``Y`` the
outcome, ``X`` the confounders (numeric as they are, categories as indicator columns). The
target is the average effect among eligible points, ``psi = E[Y(1) - Y(0)]`` (points of one
patient are separate "trials" of a sequential target-trial emulation).

``naive``
    difference of the mean outcomes (OLS of Y on A); confounded, shown for contrast.
``ipw``
    Hajek inverse-probability weighting: the propensity ``e(X) = P(A = 1 | X)`` by logistic
    regression (statsmodels GLM), stabilized weights ``P(A = a) / P(A = a | X)`` (Cole & Hernan
    2008) truncated at the 1st and 99th percentiles (``truncate``), and the weighted difference
    of means as the A coefficient of a weighted regression of Y on A. SE: the cluster-robust
    sandwich of that weighted regression (patients as clusters), treating the weights as known
    (as ``survey::svyglm`` and ``geepack::geeglm`` do), which is conservative for this estimand.
``gformula``
    the parametric g-formula: an outcome regression per decision arm (linear for a score,
    logistic for response, statsmodels GLM), each point's predictions under both decisions,
    averaged over all points. SE: the delta method on the stacked estimating equations (the
    outcome regressions and the mean), summed within patients: exact to first order, no
    bootstrap.
``aipw``
    augmented IPW (Bang & Robins 2005): the mean of ``m1 - m0 + A (Y - m1) / e - (1 - A) (Y -
    m0) / (1 - e)``, with the propensity (untruncated) and the per-arm outcome regressions above.
    Consistent when either model is right. SE: the sandwich of that mean, summed within
    patients (the influence function; the nuisance models' estimation adds nothing to first
    order when both are right).

``se="bootstrap"`` (the spec's ``se: bootstrap``) replaces the SE of ``ipw``, ``gformula`` and
``aipw`` by a patient-level cluster bootstrap (:func:`bootstrap_se`): patients resampled with
replacement from a fixed seed, the propensity and outcome models refitted in each resample (in
numpy, step for step as statsmodels fits them), the SE the rescaled interquartile range of the
resampled estimates (robust to the rare resample with an extreme weight); the interval stays Wald's. It accounts for the nuisance models' estimation, which the
analytic SEs above ignore (IPW, AIPW) and which makes AIPW's too small at clinic sizes.

Each returns :class:`Estimate`. The propensity is refused (:class:`NotEstimable`) when an arm
has fewer than ``min_per_arm`` points or most points' propensities are outside
``propensity_range`` (positivity fails): the analysis then says why instead of giving a number.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..exceptions import KetastatsError
from .points import CATEGORICAL

__all__ = [
    "ARM_PHRASES",
    "ESTIMATORS",
    "Estimate",
    "NotEstimable",
    "SE_METHODS",
    "analysis_set",
    "bootstrap_se",
    "check_positivity",
    "design_matrix",
    "estimate",
    "fit_outcome_models",
    "fit_propensity",
    "stabilized_weights",
]

ESTIMATORS = ("naive", "ipw", "gformula", "aipw")

#: standard errors of ``estimate``: the analytic ones (module docstring) or the cluster bootstrap
SE_METHODS = ("sandwich", "bootstrap")

#: How a skip reason says what happened in the arm that is too small ("18 of the ill infusions
#: analysed were postponed"), keyed by the arm labels of the decision kind.
ARM_PHRASES = {
    "postponed": "were postponed",
    "given as planned": "were given as planned",
    "reduced dose": "were given at a reduced dose",
    "usual dose": "were given at the usual dose",
}


class NotEstimable(KetastatsError):
    """The data cannot support the contrast (positivity, too few points); the message says why.

    Counts quoted in the message are given as keyword arguments and named ``{name}`` in it, so
    that a report can suppress small ones.
    """

    def __init__(self, template: str, **counts: int):
        self.template = template
        self.counts = {k: int(v) for k, v in counts.items()}
        super().__init__(template.format(**self.counts) if self.counts else template)


@dataclass
class Estimate:
    """One estimator's effect: the difference ``E[Y(1)] - E[Y(0)]`` among eligible points."""

    estimator: str
    estimate: float
    se: float
    ci_low: float
    ci_high: float
    p_value: float
    n_points: int
    n_patients: int
    n_treated: int
    n_control: int
    mean_treated: float | None = None
    mean_control: float | None = None
    se_method: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------ design


def design_matrix(points: pd.DataFrame, terms: Sequence[str]) -> pd.DataFrame:
    """Intercept, numeric terms as they are and categorical terms as indicators (first level the reference).

    Columns that are constant, or linear combinations of earlier ones (``febrile`` next to the
    illness types, a level nobody has), are dropped, so the design has full column rank.
    """
    cols: dict[str, np.ndarray] = {"const": np.ones(len(points))}
    for term in terms:
        if term in CATEGORICAL:
            values = points[term].astype(object)
            levels = [lv for lv in CATEGORICAL[term] if (values == lv).any()]
            levels += sorted({str(v) for v in values.dropna()} - set(levels))
            for lv in levels[1:]:
                cols[f"{term}[{lv}]"] = (values == lv).to_numpy(dtype=float)
        else:
            cols[term] = pd.to_numeric(points[term], errors="coerce").to_numpy(dtype=float)
    X = pd.DataFrame(cols, index=points.index)
    return X[independent_columns(X)]


def independent_columns(X: pd.DataFrame, tol: float = 1e-9) -> list[str]:
    """The columns of ``X`` kept by a greedy rank check, in order (the intercept first)."""
    keep: list[str] = []
    basis = np.zeros((len(X), 0))
    for c in X.columns:
        x = X[c].to_numpy(dtype=float)
        if not np.all(np.isfinite(x)):
            continue
        scale = np.linalg.norm(x)
        if scale == 0:
            continue
        r = x / scale
        if basis.shape[1]:
            r = r - basis @ (basis.T @ r)
            r = r - basis @ (basis.T @ r)
        norm = np.linalg.norm(r)
        if norm > tol * 1e3:
            basis = np.column_stack([basis, r / norm])
            keep.append(c)
    return keep


# ------------------------------------------------------------------------------ models


def _glm(y: np.ndarray, X: np.ndarray, binary: bool, weights: np.ndarray | None = None):
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationWarning

    family = sm.families.Binomial() if binary else sm.families.Gaussian()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (ConvergenceWarning, PerfectSeparationWarning, RuntimeWarning))
        model = sm.GLM(y, X, family=family, var_weights=weights)
        return model.fit(maxiter=100)


@dataclass
class Propensity:
    """The propensity model: P(A = 1 | X) per point and the fit behind it."""

    e: np.ndarray
    columns: list[str]
    params: np.ndarray
    converged: bool


def fit_propensity(A: np.ndarray, X: pd.DataFrame) -> Propensity:
    """Logistic regression of the decision on the confounders (statsmodels GLM, Binomial)."""
    res = _glm(A, X.to_numpy(dtype=float), binary=True)
    e = np.asarray(res.fittedvalues, dtype=float)
    return Propensity(e=e, columns=list(X.columns), params=np.asarray(res.params), converged=bool(res.converged))


def stabilized_weights(A: np.ndarray, e: np.ndarray, truncate: Sequence[float] | None) -> tuple[np.ndarray, dict]:
    """``P(A = a) / P(A = a | X)``, truncated at the given percentiles of the weights (fractions)."""
    p1 = float(np.mean(A))
    with np.errstate(divide="ignore"):  # each arm's branch only where it applies
        w = np.where(A == 1, p1 / e, (1 - p1) / (1 - e))
    info: dict[str, Any] = {"truncate": list(truncate) if truncate else None, "n_truncated": 0}
    if truncate:
        lo, hi = np.quantile(w, [float(truncate[0]), float(truncate[1])])
        info.update(bounds=[float(lo), float(hi)], n_truncated=int(np.sum((w < lo) | (w > hi))))
        w = np.clip(w, lo, hi)
    return w, info


@dataclass
class OutcomeModels:
    """Per-arm outcome regressions and each point's predictions under both decisions."""

    m1: np.ndarray
    m0: np.ndarray
    fits: dict[int, Any]
    columns: dict[int, list[str]]
    binary: bool


def fit_outcome_models(Y: np.ndarray, A: np.ndarray, X: pd.DataFrame, binary: bool) -> OutcomeModels:
    """Outcome regression within each arm (columns without variation in an arm are dropped there)."""
    preds, fits, columns = {}, {}, {}
    for a in (0, 1):
        rows = A == a
        keep = independent_columns(X.loc[rows])
        Xa = X[keep].to_numpy(dtype=float)
        res = _glm(Y[rows], Xa[rows], binary=binary)
        fits[a], columns[a] = res, keep
        preds[a] = np.asarray(res.model.predict(res.params, Xa), dtype=float)
    return OutcomeModels(m1=preds[1], m0=preds[0], fits=fits, columns=columns, binary=binary)


# ------------------------------------------------------------------------------ variance


def cluster_se(contrib: np.ndarray, groups: np.ndarray) -> float:
    """sqrt(sum over patients of (sum of the patient's contributions)^2): the clustered sandwich."""
    sums = pd.Series(contrib).groupby(groups).sum().to_numpy()
    return float(math.sqrt(np.sum(sums**2)))


def _wald(est: float, se: float, alpha: float) -> tuple[float, float, float]:
    if not (np.isfinite(est) and np.isfinite(se)) or se <= 0:
        return math.nan, math.nan, math.nan
    z = stats.norm.ppf(1 - alpha / 2)
    p = float(2 * stats.norm.sf(abs(est / se)))
    return est - z * se, est + z * se, p


def _weighted_difference(Y, A, w, groups):
    """A coefficient of the weighted regression of Y on (1, A), with its cluster-robust SE."""
    X = np.column_stack([np.ones_like(A, dtype=float), A.astype(float)])
    res = _glm(Y, X, binary=False, weights=w)
    beta = np.asarray(res.params)
    resid = Y - X @ beta
    bread = np.linalg.inv((X * w[:, None]).T @ X)
    scores = X * (w * resid)[:, None]
    sums = pd.DataFrame(scores).groupby(groups).sum().to_numpy()
    cov = bread @ (sums.T @ sums) @ bread
    return float(beta[1]), float(math.sqrt(cov[1, 1]))


def _gformula_contributions(om: OutcomeModels, X: pd.DataFrame, Y: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Per-point contributions to psi_hat - psi (influence function / n) of the g-formula."""
    n = len(Y)
    d = om.m1 - om.m0
    psi = float(np.mean(d))
    contrib = (d - psi) / n
    for a, sign in ((1, 1.0), (0, -1.0)):
        res = om.fits[a]
        Xa = X[om.columns[a]].to_numpy(dtype=float)
        rows = A == a
        mu = om.m1 if a == 1 else om.m0
        # d m / d beta at every point: X (identity link) or mu (1 - mu) X (logit)
        deriv = Xa * (mu * (1 - mu))[:, None] if om.binary else Xa
        grad = deriv.mean(axis=0)
        # estimating equations of the GLM in its arm: X_i (y_i - mu_i) (canonical links)
        info = (Xa[rows] * ((mu * (1 - mu))[rows] if om.binary else np.ones(rows.sum()))[:, None]).T @ Xa[rows]
        score = np.zeros_like(Xa)
        score[rows] = Xa[rows] * (Y[rows] - mu[rows])[:, None]
        infl = score @ np.linalg.solve(info, grad)
        contrib = contrib + sign * infl
        del res
    return contrib


# ------------------------------------------------------------------------------ bootstrap


def _independent(X: np.ndarray) -> np.ndarray:
    """Indices of the columns of ``X`` that :func:`independent_columns` keeps (arrays, no names)."""
    return np.asarray([int(c) for c in independent_columns(pd.DataFrame(X, columns=range(X.shape[1])))], dtype=int)


def _refit_propensity(A: np.ndarray, X: np.ndarray) -> np.ndarray:
    """:func:`fit_propensity` in numpy: the columns with variation in this sample, statsmodels' IRLS.

    The bootstrap refits thousands of small GLMs; statsmodels' per-fit overhead would dominate.
    """
    X = X[:, _independent(X)]
    return 1.0 / (1.0 + np.exp(-(X @ _logit_params(A, X))))


def _point_estimate(estimator: str, Y: np.ndarray, A: np.ndarray, X_ps: np.ndarray | None,
                    X_or: np.ndarray | None, binary: bool, truncate: Sequence[float] | None) -> float:
    """The estimator's effect on one (resampled) data set, both nuisance models refitted."""
    if estimator in ("ipw", "aipw"):
        e = _refit_propensity(A, X_ps)
    if estimator in ("gformula", "aipw"):
        m = {}
        for a in (0, 1):
            rows = A == a
            keep = _independent(X_or[rows])
            Xa = X_or[:, keep]
            if binary:  # fitted in the arm, predicted at every point
                beta = _logit_params(Y[rows], Xa[rows])
                m[a] = 1.0 / (1.0 + np.exp(-(Xa @ beta)))
            else:
                beta = np.linalg.lstsq(Xa[rows], Y[rows], rcond=None)[0]
                m[a] = Xa @ beta
    if estimator == "ipw":
        w, _ = stabilized_weights(A, e, truncate)
        t, c = A == 1, A == 0
        return float(np.average(Y[t], weights=w[t]) - np.average(Y[c], weights=w[c]))
    if estimator == "gformula":
        return float(np.mean(m[1] - m[0]))
    with np.errstate(divide="ignore", invalid="ignore"):
        mu1 = m[1] + np.where(A == 1, (Y - m[1]) / e, 0.0)
        mu0 = m[0] + np.where(A == 0, (Y - m[0]) / (1 - e), 0.0)
    return float(np.mean(mu1 - mu0))


def _logit_params(y: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Coefficients of a logistic regression by statsmodels' IRLS, step for step (numpy only).

    The same start (``mu = (y + 1/2) / 2``), working weights and responses (probabilities clipped
    at machine epsilon), least-squares steps and stopping rule (deviance change at most 1e-8,
    at most 100 steps) as ``sm.GLM(..., Binomial()).fit()``, so that a resample with separated
    points gives the coefficients statsmodels gives, not another point on the diverging path.
    """
    eps = np.finfo(float).eps
    mu = (y + 0.5) / 2
    p = np.clip(mu, eps, 1 - eps)
    eta = np.log(p / (1 - p))
    dev_old = _binomial_deviance(y, mu)
    beta = np.zeros(X.shape[1])
    for _ in range(100):
        p = np.clip(mu, eps, 1 - eps)
        deriv = 1.0 / (p * (1 - p))
        w = 1.0 / (deriv**2 * (p * (1 - p)))
        sw = np.sqrt(w)
        beta = np.linalg.lstsq(X * sw[:, None], (eta + deriv * (y - mu)) * sw, rcond=None)[0]
        eta = X @ beta
        mu = 1.0 / (1.0 + np.exp(-eta))
        dev = _binomial_deviance(y, mu)
        if abs(dev - dev_old) <= 1e-8:
            break
        dev_old = dev
    return beta


def _binomial_deviance(y: np.ndarray, mu: np.ndarray) -> float:
    """statsmodels' Binomial deviance (0/1 outcome), with its guards against log(0)."""
    eps = np.finfo(float).eps
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r = (y * np.log(np.clip(y / (mu + 1e-20), eps, np.inf))
             + (1 - y) * np.log(np.clip((1 - y) / (1 - mu + 1e-20), eps, np.inf)))
    return float(np.sum(2 * r))


def bootstrap_se(
    estimator: str,
    Y: np.ndarray,
    A: np.ndarray,
    groups: np.ndarray,
    *,
    X_ps: pd.DataFrame | None,
    X_or: pd.DataFrame | None,
    binary: bool,
    truncate: Sequence[float] | None,
    resamples: int = 200,
    seed: int = 1,
) -> tuple[float, dict[str, Any]]:
    """Patient-level cluster bootstrap SE of ``ipw``, ``gformula`` or ``aipw``.

    Each resample draws as many patients as there are, with replacement
    (``numpy.random.default_rng(seed).integers``, patients in order of first appearance), takes
    all their points, refits the propensity and outcome models and recomputes the estimate. The
    SE is the interquartile range of the finite resample estimates over that of the normal
    (``IQR / 1.349``; numpy's linear percentiles), not their standard deviation: a resample that
    draws a treated point with a propensity near 0 gives an AIPW estimate tens of SEs away (the
    untruncated weight), and one such draw in 200 would set the SD (Chernozhukov, Fernandez-Val &
    Melly 2013 use the same rescaled IQR). The SD is reported as ``sd``. A resample in which an arm
    is empty, or the estimate is not finite, is counted (``failed``) and left out.
    """
    codes, _ = pd.factorize(pd.Series(groups))
    order = np.argsort(codes, kind="stable")
    starts = np.searchsorted(codes[order], np.arange(codes.max() + 2))
    n_groups = int(codes.max()) + 1
    Xp = None if X_ps is None else np.asarray(X_ps, dtype=float)
    Xo = None if X_or is None else np.asarray(X_or, dtype=float)
    rng = np.random.default_rng(seed)
    ests = []
    failed = 0
    for _ in range(int(resamples)):
        pick = rng.integers(0, n_groups, n_groups)
        idx = np.concatenate([order[starts[g]:starts[g + 1]] for g in pick])
        a = A[idx]
        if a.min() == a.max():
            failed += 1
            continue
        with np.errstate(all="ignore"):
            est = _point_estimate(estimator, Y[idx], a, None if Xp is None else Xp[idx],
                                  None if Xo is None else Xo[idx], binary, truncate)
        if math.isfinite(est):
            ests.append(est)
        else:
            failed += 1
    if len(ests) < 2:
        return math.nan, {"resamples": int(resamples), "seed": int(seed), "failed": failed, "sd": math.nan}
    q1, q3 = np.percentile(ests, [25, 75])
    se = float((q3 - q1) / (2 * stats.norm.ppf(0.75)))
    return se, {"resamples": int(resamples), "seed": int(seed), "failed": failed,
                "sd": float(np.std(ests, ddof=1))}


# ------------------------------------------------------------------------------ estimators


def estimate(
    estimator: str,
    points: pd.DataFrame,
    *,
    decision: str,
    outcome: str,
    binary: bool,
    propensity_terms: Sequence[str],
    outcome_terms: Sequence[str],
    truncate: Sequence[float] | None = (0.01, 0.99),
    alpha: float = 0.05,
    group: str = "patient_id",
    se: str = "sandwich",
    bootstrap: int = 200,
    seed: int = 1,
) -> Estimate:
    """One estimator of the effect of ``decision`` on ``outcome`` (module docstring).

    ``points`` is the analysis set: every point with the decision, the outcome and the terms
    observed (the caller selects it and checks positivity). ``se="bootstrap"`` replaces the
    standard error of ``ipw``, ``gformula`` and ``aipw`` by the patient-level cluster bootstrap
    (:func:`bootstrap_se`: ``bootstrap`` resamples from ``seed``, both nuisance models refitted
    in each); the analytic SE is kept in ``details["analytic_se"]``.
    """
    if estimator not in ESTIMATORS:
        raise KetastatsError(f"unknown estimator {estimator!r}; use one of {', '.join(ESTIMATORS)}")
    if se not in SE_METHODS:
        raise KetastatsError(f"unknown se {se!r}; use one of {', '.join(SE_METHODS)}")
    A = points[decision].to_numpy(dtype=float)
    Y = points[outcome].to_numpy(dtype=float)
    groups = points[group].astype(str).to_numpy()
    n1, n0 = int(A.sum()), int(len(A) - A.sum())
    common = dict(
        n_points=len(A),
        n_patients=int(pd.Series(groups).nunique()),
        n_treated=n1,
        n_control=n0,
    )
    details: dict[str, Any] = {}
    if estimator == "naive":
        est, sd = _weighted_difference(Y, A, np.ones_like(Y), groups)
        m1, m0 = float(Y[A == 1].mean()), float(Y[A == 0].mean())
        se_method = "cluster-robust sandwich (patients), OLS of the outcome on the decision"
    elif estimator == "ipw":
        ps = fit_propensity(A, design_matrix(points, propensity_terms))
        _check_propensity(A, ps.e)
        w, info = stabilized_weights(A, ps.e, truncate)
        est, sd = _weighted_difference(Y, A, w, groups)
        m1 = float(np.average(Y[A == 1], weights=w[A == 1]))
        m0 = float(np.average(Y[A == 0], weights=w[A == 0]))
        details = {"weights": info, "propensity_converged": ps.converged, "propensity_terms": ps.columns}
        se_method = (
            "cluster-robust sandwich (patients) of the weighted regression, weights treated as known"
        )
    elif estimator == "gformula":
        X = design_matrix(points, outcome_terms)
        om = fit_outcome_models(Y, A, X, binary)
        est = float(np.mean(om.m1 - om.m0))
        sd = cluster_se(_gformula_contributions(om, X, Y, A), groups)
        m1, m0 = float(np.mean(om.m1)), float(np.mean(om.m0))
        details = {"outcome_terms": {str(a): om.columns[a] for a in (0, 1)}}
        se_method = "delta method on the stacked estimating equations, summed within patients"
    else:  # aipw
        ps = fit_propensity(A, design_matrix(points, propensity_terms))
        X = design_matrix(points, outcome_terms)
        om = fit_outcome_models(Y, A, X, binary)
        e = ps.e
        _check_propensity(A, e)
        # each arm's residual term only where that arm was taken: a propensity of exactly 1 (0) at a
        # point given (not given) the decision, which a near-separated logistic fit can return, is
        # 0 x (Y - m) / 0 in the other arm's term, which is zero, not NaN
        mu1 = om.m1 + np.divide(A * (Y - om.m1), e, out=np.zeros_like(Y), where=A == 1)
        mu0 = om.m0 + np.divide((1 - A) * (Y - om.m0), 1 - e, out=np.zeros_like(Y), where=A == 0)
        phi = mu1 - mu0
        est = float(np.mean(phi))
        sd = cluster_se((phi - est) / len(phi), groups)
        m1, m0 = float(np.mean(mu1)), float(np.mean(mu0))
        details = {
            "propensity_converged": ps.converged,
            "propensity_terms": ps.columns,
            "outcome_terms": {str(a): om.columns[a] for a in (0, 1)},
        }
        se_method = "sandwich of the mean of the AIPW pseudo-outcomes, summed within patients"
    if se == "bootstrap" and estimator != "naive":
        details["analytic_se"] = sd
        X_ps = design_matrix(points, propensity_terms) if estimator in ("ipw", "aipw") else None
        X_or = design_matrix(points, outcome_terms) if estimator in ("gformula", "aipw") else None
        sd, info = bootstrap_se(estimator, Y, A, groups, X_ps=X_ps, X_or=X_or, binary=binary,
                                truncate=truncate, resamples=bootstrap, seed=seed)
        details["bootstrap"] = info
        se_method = (f"patient-level cluster bootstrap ({info['resamples']} resamples, seed {seed}), the "
                     "propensity and outcome models refitted in each")
    if not (math.isfinite(est) and math.isfinite(sd)):
        raise NotEstimable("the estimate is not a finite number (the models could not be fitted to these points); "
                           "no effect is estimated")
    lo, hi, p = _wald(est, sd, alpha)
    return Estimate(
        estimator=estimator,
        estimate=est,
        se=sd,
        ci_low=lo,
        ci_high=hi,
        p_value=p,
        mean_treated=m1,
        mean_control=m0,
        se_method=se_method,
        details=details,
        **common,
    )


def _check_propensity(A: np.ndarray, e: np.ndarray) -> None:
    """Refuse when a point took a decision its propensity gives no chance (an infinite weight)."""
    impossible = int(np.sum(((A == 1) & (e <= 0)) | ((A == 0) & (e >= 1))))
    if impossible:
        raise NotEstimable(
            "the choice is all but predictable: for {n} ill infusion(s) analysed the confounders predict the "
            "other choice with certainty (an infinite weight), so the data cannot say what that choice would "
            "have done; no effect is estimated", n=impossible)


def analysis_set(
    points: pd.DataFrame, decision: str, outcome: str, terms: Sequence[str]
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Points with the decision, the outcome and every term observed; counts of those left out."""
    need = [decision, outcome, *dict.fromkeys(terms)]
    has_decision = points[decision].notna()
    has_outcome = points[outcome].notna()
    has_terms = points[list(dict.fromkeys(terms))].notna().all(axis=1) if terms else True
    keep = has_decision & has_outcome & has_terms
    counts = {
        "eligible": int(has_decision.sum()),
        "missing_outcome": int((has_decision & ~has_outcome).sum()),
        "missing_confounder": int((has_decision & has_outcome & ~has_terms).sum()),
        "analysed": int(keep.sum()),
    }
    del need
    return points.loc[keep].reset_index(drop=True), counts


def check_positivity(
    A: np.ndarray,
    e: np.ndarray | None,
    *,
    min_per_arm: int,
    propensity_range: Sequence[float],
    max_share_outside: float,
    labels: Mapping[int, str],
    setting: str = "min_per_arm",
) -> None:
    """Raise :class:`NotEstimable` when an arm is too small or most propensities are extreme.

    The message is for a clinician: how many of the ill infusions analysed had each choice, and
    how many are needed (``setting`` names the configuration key). The count is a keyword of
    :class:`NotEstimable`, so that the report can suppress it when small.
    """
    for a in (1, 0):
        n = int(np.sum(A == a))
        if n < min_per_arm:
            did = ARM_PHRASES.get(labels[a], f"were in the group '{labels[a]}'")
            needs = (f"; comparing the two choices needs at least {min_per_arm} of each ({setting}), so no "
                     "effect is estimated")
            # the other arm's size is not quoted: with this one it could reveal a small count
            if n == 0:
                raise NotEstimable(f"too few to compare: none of the ill infusions analysed {did}" + needs)
            raise NotEstimable(f"too few to compare: {{n}} of the ill infusions analysed {did}" + needs, n=n)
    if e is not None:
        lo, hi = float(propensity_range[0]), float(propensity_range[1])
        outside = float(np.mean((e < lo) | (e > hi)))
        if outside > max_share_outside:
            raise NotEstimable(
                f"the choice is all but predictable: for {100 * outside:.0f}% of the ill infusions analysed "
                f"the estimated chance of being {labels[1]} (the propensity) is outside [{lo:g}, {hi:g}] "
                f"(more than {100 * max_share_outside:.0f}%; propensity_range, max_share_outside), so the data "
                "cannot say what the other choice would have done; no effect is estimated"
            )
