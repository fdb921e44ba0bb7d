"""Linear mixed models behind one interface.

:func:`fit_mixed` fits a two-level linear mixed model (random effects for one grouping
factor) by REML or ML and returns a :class:`MixedModelResult`, whatever engine did the work.
Engines:

``"statsmodels"``
    :class:`statsmodels.regression.mixed_linear_model.MixedLM`, started from several
    optimizers; the best optimum is kept (statsmodels' own ``converged`` flag is not proof
    of an optimum, see docs/testing.md, "Known traps of statsmodels' MixedLM").
``"fast"``
    :mod:`ketastats.models.engines.fast_lmm`, the profiled-deviance engine of Bates et al. (2015) for
    up to three correlated random effects per group.
``"auto"``
    ``"fast"`` when the model is in its class, else ``"statsmodels"``.

Fixed-effect standard errors are ``sigma^2 (X' V^-1 X)^-1`` at the estimates, as lme4 and
SAS PROC MIXED report them, for every engine.

References
----------
Bates, D., Maechler, M., Bolker, B., & Walker, S. (2015). Fitting linear mixed-effects
models using lme4. *Journal of Statistical Software*, 67(1), 1-48.
https://doi.org/10.18637/jss.v067.i01

Lindstrom, M. J., & Bates, D. M. (1988). Newton-Raphson and EM algorithms for linear
mixed-effects models for repeated-measures data. *JASA*, 83(404), 1014-1022.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import patsy
from scipy import stats

from ...exceptions import ConvergenceWarning, ModelError

__all__ = ["MixedModelResult", "fit_mixed", "design_matrices", "ENGINES"]

log = logging.getLogger(__name__)

ENGINES = ("auto", "fast", "statsmodels")
#: optimizers tried in turn by the statsmodels engine; the best log-likelihood wins
_SM_METHODS = ("bfgs", "lbfgs", "powell")


@dataclass
class MixedModelResult:
    """A fitted linear mixed model, engine-independent and JSON-serializable.

    Attributes
    ----------
    fixed : pandas.DataFrame
        One row per fixed-effect term (patsy names, e.g. ``Intercept``,
        ``treatment[T.BtheB]``) with ``estimate`` and ``se``.
    cov_beta : numpy.ndarray
        Covariance matrix of the fixed effects, ``sigma^2 (X' V^-1 X)^-1``.
    random_names : list of str
        Names of the random effects (columns of the random-effects design).
    re_cov : numpy.ndarray
        Random-effect covariance matrix in variance units.
    residual_variance : float
        Residual variance ``sigma^2``.
    loglik : float
        Log-likelihood; under REML the REML log-likelihood as lme4's ``logLik`` prints it.
    """

    formula: str
    group: str
    re_formula: str | None
    method: str
    fixed: pd.DataFrame
    cov_beta: np.ndarray
    random_names: list[str]
    re_cov: np.ndarray
    residual_variance: float
    loglik: float
    nobs: int
    ngroups: int
    converged: bool
    singular: bool
    engine: str
    optimizer: str = ""
    messages: list[str] = field(default_factory=list)
    blups: pd.DataFrame | None = None
    seconds_fit: float = float("nan")
    #: denominator degrees of freedom per fixed effect (None: normal approximation)
    df: np.ndarray | None = None
    df_method: str = "normal"

    # ------------------------------------------------------------------ inference
    def coef_table(self, alpha: float = 0.05) -> pd.DataFrame:
        """Fixed effects with Wald statistics, two-sided p-values and ``1 - alpha`` CIs.

        With Satterthwaite df (``fit_mixed(..., df_method="satterthwaite")``) the statistics
        are t with those df, else large-sample normal; the ``df_method`` column says which, so
        that every reported p-value says how it was obtained.
        """
        tab = self.fixed.copy()
        stat = tab["estimate"] / tab["se"]
        if self.df is not None:
            df = np.asarray(self.df, dtype=float)
            tab["df"] = df
            tab["t"] = stat
            tab["p_value"] = 2 * stats.t.sf(np.abs(stat), df)
            crit = stats.t.ppf(1 - alpha / 2, df)
        else:
            tab["z"] = stat
            tab["p_value"] = 2 * stats.norm.sf(np.abs(stat))
            crit = stats.norm.ppf(1 - alpha / 2)
        tab["ci_low"] = tab["estimate"] - crit * tab["se"]
        tab["ci_high"] = tab["estimate"] + crit * tab["se"]
        tab["df_method"] = self.df_method
        return tab

    def to_dict(self) -> dict[str, Any]:
        """The result as plain JSON types (the ``ketastats fit --json`` format)."""
        df = [None] * len(self.fixed) if self.df is None else [_num(v) for v in self.df]
        return {
            "fixed": {
                str(t): {"estimate": _num(e), "se": _num(s), "df": d, "df_method": self.df_method}
                for t, e, s, d in zip(self.fixed["term"], self.fixed["estimate"], self.fixed["se"], df)
            },
            "df_method": self.df_method,
            "random": {
                "group": self.group,
                "names": list(self.random_names),
                "cov": [[_num(v) for v in row] for row in np.atleast_2d(self.re_cov)],
            },
            "residual_variance": _num(self.residual_variance),
            "loglik": _num(self.loglik),
            "nobs": int(self.nobs),
            "ngroups": int(self.ngroups),
            "method": self.method,
            "converged": bool(self.converged),
            "singular": bool(self.singular),
            "engine": self.engine,
            "optimizer": self.optimizer,
            "formula": self.formula,
            "re_formula": self.re_formula,
            "messages": list(self.messages),
        }

    def as_model_result(
        self, name: str, rows: pd.DataFrame, *, alpha: float = 0.05, spec: Mapping[str, Any] | None = None
    ):
        """This fit as a :class:`~ketastats.models.result.ModelResult` (the schema the workflow
        writes), with ``rows`` (the data that entered the fit, ``design_matrices``' ``used``) as
        its design."""
        from ..result import Coefficient, ModelResult, design_of

        tab = self.coef_table(alpha)
        coefs = [
            Coefficient(
                term=str(r["term"]),
                estimate=_num(r["estimate"]),
                se=_num(r["se"]),
                df=_num(r["df"]) if "df" in tab else None,
                ci_low=_num(r["ci_low"]),
                ci_high=_num(r["ci_high"]),
                p_value=_num(r["p_value"]),
                df_method=self.df_method,
            )
            for _, r in tab.iterrows()
        ]
        d = self.to_dict()
        blups = None
        if self.blups is not None:
            b = self.blups.sort_values("group", key=lambda s: s.astype(str), kind="stable")
            blups = {"group": [str(g) for g in b["group"]], **{str(c): [_num(v) for v in b[c]] for c in self.random_names}}
        random = dict(d["random"])
        random["sd"] = [_num(v) for v in np.sqrt(np.clip(np.diag(np.atleast_2d(self.re_cov)), 0, None))]
        return ModelResult(
            name=name,
            kind="lmm",
            label=name,
            spec=dict(spec or {"formula": self.formula, "re_formula": self.re_formula, "group": self.group}),
            status="ok" if self.converged else "unreliable",
            reason=None if self.converged else "the fit did not converge",
            converged=bool(self.converged),
            singular=bool(self.singular),
            engine=self.engine,
            optimizer=self.optimizer,
            method=self.method,
            nobs=int(self.nobs),
            ngroups=int(self.ngroups),
            df_method=self.df_method,
            coefficients=coefs,
            fixed=d["fixed"],
            random=random,
            residual_variance=_num(self.residual_variance),
            loglik=_num(self.loglik),
            blups=blups,
            messages=list(self.messages),
            design=design_of(
                rows, self.formula, self.re_formula, self.group,
                [str(t) for t in self.fixed["term"]], [str(n) for n in self.random_names],
            ),
            extra={"formula": self.formula, "re_formula": self.re_formula, "se_type": "model-based"},
        )


def _num(x: float) -> float | None:
    x = float(x)
    return None if not math.isfinite(x) else x


# ---------------------------------------------------------------------- design
def design_matrices(
    data: pd.DataFrame, formula: str, group: str, re_formula: str | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str], list[str], pd.DataFrame]:
    """Build ``y, X, Z, groups`` from a patsy formula, dropping rows with missing values.

    Returns
    -------
    y, X, Z, groups, fixed_names, random_names, used
        ``used`` is the subset of ``data`` that entered the fit (rows with a missing
        outcome, predictor or group dropped).
    """
    if group not in data.columns:
        raise ModelError(
            f"grouping column {group!r} is not in the data; columns are: {', '.join(map(str, data.columns))}"
        )
    try:
        y_df, x_df = patsy.dmatrices(formula, data, return_type="dataframe", NA_action="drop")
    except patsy.PatsyError as exc:
        raise ModelError(f"cannot build the fixed-effects design from {formula!r}: {exc}") from exc
    if y_df.shape[1] != 1:
        raise ModelError(
            f"the outcome of {formula!r} is not a number (it holds text, which would make {y_df.shape[1]} "
            "outcome columns); give a numeric outcome column, with empty cells for missing values"
        )
    keep = x_df.index
    if re_formula:
        try:
            z_df = patsy.dmatrix(re_formula, data.loc[keep], return_type="dataframe", NA_action="drop")
        except patsy.PatsyError as exc:
            raise ModelError(f"cannot build the random-effects design from {re_formula!r}: {exc}") from exc
        keep = z_df.index
    else:
        z_df = pd.DataFrame({"Intercept": np.ones(len(keep))}, index=keep)
    grp = data.loc[keep, group]
    keep = grp.index[grp.notna()]
    if len(keep) == 0:
        raise ModelError(f"no complete rows for {formula!r} (group {group!r}): nothing to fit")
    y = y_df.loc[keep].to_numpy(dtype=float).ravel()
    X = x_df.loc[keep].to_numpy(dtype=float)
    Z = z_df.loc[keep].to_numpy(dtype=float)
    groups = data.loc[keep, group].to_numpy()
    rank = np.linalg.matrix_rank(X)
    if rank < X.shape[1]:
        raise ModelError(
            f"the fixed-effects design of {formula!r} is rank deficient ({rank} < {X.shape[1]} "
            f"columns: {', '.join(x_df.columns)}); drop a collinear term or a constant predictor"
        )
    return y, X, Z, groups, list(x_df.columns), list(z_df.columns), data.loc[keep]


def _gls_cov_beta(
    X: np.ndarray, Z: np.ndarray, groups: np.ndarray, re_cov: np.ndarray, sigma2: float
) -> np.ndarray:
    """``(X' V^-1 X)^-1`` with ``V_i = Z_i G Z_i' + sigma^2 I`` (Woodbury, per group)."""
    q = Z.shape[1]
    order = np.argsort(groups, kind="stable")
    g_sorted = groups[order]
    bounds = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1], True])
    XtVX = np.zeros((X.shape[1], X.shape[1]))
    # V^-1 = (I - Z (sigma^2 G^-1 + Z'Z)^-1 Z') / sigma^2, with G possibly singular handled
    # through the equivalent form (I - Z G (sigma^2 I + Z'Z G)^-1 Z') / sigma^2.
    for a, b in zip(bounds[:-1], bounds[1:]):
        idx = order[a:b]
        Xi, Zi = X[idx], Z[idx]
        ZtZ = Zi.T @ Zi
        M = np.linalg.solve(sigma2 * np.eye(q) + ZtZ @ re_cov, np.eye(q))
        ZtX = Zi.T @ Xi
        XtVX += (Xi.T @ Xi - ZtX.T @ (re_cov @ M) @ ZtX) / sigma2
    return np.linalg.inv(XtVX)


# ------------------------------------------------------------------------ fit
def fit_mixed(
    data: pd.DataFrame,
    formula: str,
    group: str,
    re_formula: str | None = None,
    *,
    reml: bool = True,
    engine: str = "auto",
    references: Mapping[str, str] | None = None,
    df_method: str = "normal",
) -> MixedModelResult:
    """Fit a linear mixed model with random effects for one grouping factor.

    Parameters
    ----------
    data : pandas.DataFrame
        Long-format data, one row per observation. Rows with a missing outcome, predictor
        or group are dropped.
    formula : str
        Fixed-effects formula in patsy syntax, e.g. ``"madrs ~ session + ill"``.
    group : str
        Column identifying the groups (patients).
    re_formula : str, optional
        Random-effects formula, e.g. ``"~session"`` for a random intercept and slope.
        ``None`` gives a random intercept only.
    reml : bool, default True
        REML (True) or maximum likelihood (False).
    engine : {"auto", "fast", "statsmodels"}
        Which engine fits the model; the result's ``engine`` records which one ran.
    references : mapping, optional
        Reference level per categorical column (``{"treatment": "TAU"}``), so that patsy
        names the contrasts ``treatment[T.BtheB]``.
    df_method : {"normal", "satterthwaite"}
        Degrees of freedom of the fixed-effect tests: ``"satterthwaite"`` computes them as
        lmerTest does (:func:`ketastats.models.satterthwaite`); where the variance parameters'
        Hessian is not positive definite they are unavailable and the result says
        ``"normal"`` with a message.

    Returns
    -------
    MixedModelResult

    Examples
    --------
    Thirty patients rated weekly; the true course is 30 - 2 * week:

    >>> import numpy as np
    >>> import pandas as pd
    >>> from ketastats.models import fit_mixed
    >>> rng = np.random.default_rng(1)
    >>> df = pd.DataFrame({"patient": np.repeat(np.arange(30), 5), "week": np.tile(np.arange(5), 30)})
    >>> u = rng.normal(0, 3, 30)
    >>> df["madrs"] = 30 - 2 * df["week"] + u[df["patient"]] + rng.normal(0, 2, len(df))
    >>> fit_mixed(df, "madrs ~ week", "patient").fixed.round(2)
            term  estimate    se
    0  Intercept     29.58  0.54
    1       week     -1.96  0.11
    """
    if engine not in ENGINES:
        raise ModelError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if df_method not in ("normal", "satterthwaite"):
        raise ModelError(f"unknown df method {df_method!r}; choose normal or satterthwaite")
    data = apply_references(data, references or {})
    y, X, Z, groups, xnames, znames, used = design_matrices(data, formula, group, re_formula)
    chosen = engine
    if engine == "auto":
        chosen = "fast" if Z.shape[1] <= fast_max_q() else "statsmodels"
    t0 = time.perf_counter()
    if chosen == "fast":
        res = fit_fast(y, X, Z, groups, xnames, znames, reml)
    else:
        res = _fit_statsmodels(used, formula, group, re_formula, y, X, Z, groups, xnames, znames, reml)
    res.seconds_fit = time.perf_counter() - t0
    res.formula, res.group, res.re_formula = formula, group, re_formula
    if df_method == "satterthwaite":
        from .satterthwaite import satterthwaite

        sat = satterthwaite(y, X, Z, groups, res.re_cov, res.residual_variance, reml=reml)
        if sat.hessian_pd:
            res.df, res.df_method = sat.df, "satterthwaite"
        else:
            res.messages.append(
                "Satterthwaite df unavailable (the Hessian of the log-likelihood in the variance "
                "parameters is not positive definite): normal approximation"
            )
    if not res.converged:
        warnings.warn(
            f"mixed model {formula!r} (random {re_formula or '~1'} | {group}) did not converge "
            f"({res.engine}): {'; '.join(res.messages) or 'optimizer stopped early'}",
            ConvergenceWarning,
            stacklevel=2,
        )
    if res.singular:
        warnings.warn(
            f"mixed model {formula!r}: singular fit (a random-effect variance is at the boundary); "
            "consider a simpler random-effects structure",
            ConvergenceWarning,
            stacklevel=2,
        )
    return res


def apply_references(data: pd.DataFrame, references: Mapping[str, str]) -> pd.DataFrame:
    if not references:
        return data
    data = data.copy()
    for col, ref in references.items():
        if col not in data.columns:
            raise ModelError(f"reference level given for {col!r}, which is not a column of the data")
        values = data[col].dropna().astype(str)
        levels = sorted(values.unique())
        if ref not in levels:
            raise ModelError(
                f"reference level {ref!r} for {col!r} does not occur; levels are: {', '.join(levels)}"
            )
        order = [ref] + [lv for lv in levels if lv != ref]
        data[col] = pd.Categorical(data[col].where(data[col].isna(), data[col].astype(str)), categories=order)
    return data


def fast_max_q() -> int:
    """The most random effects per group the fast engine fits (more go to statsmodels)."""
    from .fast_lmm import MAX_Q

    return int(MAX_Q)


def fit_fast(y, X, Z, groups, xnames, znames, reml) -> MixedModelResult:
    from .fast_lmm import fit_lmm_fast

    r = fit_lmm_fast(y, X, Z, groups, reml=reml)
    se = np.sqrt(np.diag(r.cov_beta))
    blups = pd.DataFrame(r.blups, columns=znames)
    blups.insert(0, "group", r.group_labels)
    return MixedModelResult(
        formula="",
        group="",
        re_formula=None,
        method="REML" if reml else "ML",
        fixed=pd.DataFrame({"term": xnames, "estimate": r.beta, "se": se}),
        cov_beta=np.asarray(r.cov_beta),
        random_names=znames,
        re_cov=np.asarray(r.re_cov),
        residual_variance=float(r.resid_var),
        loglik=float(r.loglik),
        nobs=int(r.n_obs),
        ngroups=int(r.n_groups),
        converged=bool(r.converged),
        singular=bool(r.singular),
        engine="fast",
        optimizer="profiled deviance",
        messages=[r.message] if r.message and not r.converged else [],
        blups=blups,
    )


def _fit_statsmodels(used, formula, group, re_formula, y, X, Z, groups, xnames, znames, reml):
    from statsmodels.regression.mixed_linear_model import MixedLM

    model = MixedLM(y, X, groups=groups, exog_re=Z)
    best, best_method, messages = None, "", []
    for method in _SM_METHODS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                r = model.fit(reml=reml, method=[method])
            except (np.linalg.LinAlgError, ValueError) as exc:
                messages.append(f"{method}: {exc}")
                continue
        if not np.isfinite(r.llf):
            continue
        log.debug("statsmodels %s: llf=%.8f converged=%s", method, r.llf, r.converged)
        if best is None or r.llf > best.llf + 1e-9:
            best, best_method = r, method
    if best is None:
        raise ModelError(f"statsmodels could not fit {formula!r}: {'; '.join(messages)}")
    re_cov = np.asarray(best.cov_re, dtype=float).reshape(Z.shape[1], Z.shape[1])
    sigma2 = float(best.scale)
    beta = np.asarray(best.fe_params, dtype=float)
    cov_beta = _gls_cov_beta(X, Z, groups, re_cov, sigma2)
    converged = bool(best.converged)
    eig = np.linalg.eigvalsh(re_cov) if re_cov.size else np.array([1.0])
    singular = bool(eig.min() <= 1e-6 * max(sigma2, 1e-12))
    re = best.random_effects
    labels = list(re.keys())
    blups = pd.DataFrame(np.vstack([np.asarray(re[k], dtype=float) for k in labels]), columns=znames)
    blups.insert(0, "group", labels)
    return MixedModelResult(
        formula=formula,
        group=group,
        re_formula=re_formula,
        method="REML" if reml else "ML",
        fixed=pd.DataFrame({"term": xnames, "estimate": beta, "se": np.sqrt(np.diag(cov_beta))}),
        cov_beta=cov_beta,
        random_names=znames,
        re_cov=re_cov,
        residual_variance=sigma2,
        loglik=float(best.llf),
        nobs=len(y),
        ngroups=len(np.unique(groups)),
        converged=converged,
        singular=singular,
        engine="statsmodels",
        optimizer=best_method,
        messages=messages,
        blups=blups,
    )
