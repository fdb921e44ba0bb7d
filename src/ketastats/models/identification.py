"""Is a fit identified? Separation in binary models, failed Hessians, runaway estimates.

A fit whose estimates the data do not pin down must never be reported as ``ok``:
:func:`run_model <ketastats.models.run.run_model>` sets ``status: "unreliable"`` with the
reasons below in words, and the report shows such a model greyed, outside the forest plot
and the summary's range.

The checks:

* **Separation** (binary outcomes, before fitting): a binary regressor, or the session's
  illness indicator behind a centred illness term, whose level has only events or only
  non-events predicts the outcome perfectly there; the maximum-likelihood log odds ratio is
  then infinite (complete or quasi-complete separation; Albert & Anderson 1984).
* **Runaway predictions** (binary outcomes, after fitting): fixed-effects predicted
  probabilities numerically 0 or 1 (log odds beyond ``±MAX_LOG_ODDS``, R's ``glm.fit``
  criterion: within 10 machine epsilons of 0 or 1) for some rows are the numerical face of
  (quasi-)separation that the table check cannot see (a continuous regressor that splits
  the outcomes). The rule is on the linear predictor, not on coefficients, so that it does
  not depend on a regressor's scale (a between-patient proportion has a large coefficient
  per unit without any separation).
* **Hessian** (kinds whose standard errors come from it: the mixed logistic model, the Tobit
  cytokine model, the GEEs' robust covariance): when every fitting attempt of a model (or of
  one of its parts: a marker) failed its positive-definiteness check, the SEs come from a
  matrix that is not an information matrix: the estimates are not identified. Linear mixed
  models take their fixed-effect SEs from σ²(X'V⁻¹X)⁻¹, which stays valid when a variance
  sits at its boundary (a singular fit, reported as such, as lme4 does).
* **Convergence** (every kind): no attempt converged.

References
----------
Albert, A., & Anderson, J. A. (1984). On the existence of maximum likelihood estimates in
logistic regression models. *Biometrika*, 71(1), 1-10. https://doi.org/10.1093/biomet/71.1.1

Examples
--------
>>> import numpy as np
>>> y = np.array([0, 0, 1, 1, 0, 1])
>>> ill = np.array([1, 1, 0, 0, 0, 0])
>>> separation_reasons(y, {"ill": ill})
['quasi-complete separation: no events among the sessions with ill = 1, so the odds ratio of ill is infinite']
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .common import as_float

__all__ = ["MAX_LOG_ODDS", "separation_reasons", "runaway_reasons", "fit_reasons", "binary_identification"]

#: |predicted log odds| beyond which a fitted probability is numerically 0 or 1: R's
#: ``glm.fit`` criterion (mu within 10 * machine epsilon of 0 or 1), about 33.7
MAX_LOG_ODDS = float(-np.log(10 * np.finfo(float).eps))


def _binary_levels(x: np.ndarray) -> np.ndarray | None:
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    levels = np.unique(x)
    return levels if len(levels) == 2 and set(levels) <= {0.0, 1.0} else None


def separation_reasons(
    y: Sequence[float] | np.ndarray, regressors: Mapping[str, Sequence[float] | np.ndarray], unit: str = "sessions"
) -> list[str]:
    """Binary regressors at a level of which the outcome never varies (words, no counts).

    Parameters
    ----------
    y : array of 0/1
        The outcome of the analysed rows.
    regressors : mapping of name -> array
        Candidate binary regressors of the same rows (non-binary ones are ignored); pass the
        session's illness indicator as well when the model uses a centred illness term.
    unit : str
        What a row is, for the message ("sessions", "patients").
    """
    y = np.asarray(y, dtype=float)
    out = []
    for name, x in regressors.items():
        x = np.asarray(x, dtype=float)
        if _binary_levels(x) is None or len(x) != len(y):
            continue
        for level in (1.0, 0.0):
            at = y[x == level]
            if len(at) and np.all(at == at[0]):
                which = "events" if at[0] == 0 else "non-events"
                out.append(
                    f"quasi-complete separation: no {which} among the {unit} with {name} = {int(level)}, "
                    f"so the odds ratio of {name} is infinite"
                )
    return out


def runaway_reasons(eta: Sequence[float] | np.ndarray, unit: str = "sessions") -> list[str]:
    """Fitted probabilities of 0 or 1: separation seen after the fit (scale-free).

    ``eta`` is the fixed-effects linear predictor of the analysed rows. Under (quasi-)
    separation the estimates run off to infinity and some rows' predicted log odds with
    them; beyond ``±MAX_LOG_ODDS`` (a probability within 10 machine epsilons of 0 or 1) the
    fit has stopped somewhere on that road rather than at an estimate. Structural zeros
    (nobody remits at the first session) give large but finite log odds and pass.

    Examples
    --------
    >>> runaway_reasons([-1.2, 0.5, -281.0])
    ['fitted probabilities of 0 or 1: the predicted log odds reach -281.0 for some sessions (beyond ±33.7), the sign of (quasi-)separation; the data do not identify the estimates']
    """
    eta = np.asarray(eta, dtype=float)
    if not len(eta):
        return []
    worst = float(eta[np.nanargmax(np.abs(eta))]) if np.isfinite(eta).any() else float("nan")
    if not np.isfinite(eta).all() or abs(worst) > MAX_LOG_ODDS:
        return [
            f"fitted probabilities of 0 or 1: the predicted log odds reach {worst:.1f} for some {unit} "
            f"(beyond ±{MAX_LOG_ODDS:.1f}), the sign of (quasi-)separation; the data do not identify the "
            "estimates"
        ]
    return []


def _part(label: str, parts: Sequence[str]) -> str:
    for p in parts:
        if label.startswith(f"{p}: "):
            return p
    return ""


def fit_reasons(result: Mapping[str, Any], *, hessian_se: bool = True) -> list[str]:
    """Why a fitted model (its JSON fields) is not identified, for every kind; empty when fine.

    ``hessian_se``: whether the model's SEs come from the Hessian that the attempts check
    (see the module's notes); if not, a failed check is a singular fit, not unidentified.

    Examples
    --------
    >>> fit_reasons({"attempts": [{"label": "a", "hessian_pd": False, "converged": True},
    ...                           {"label": "b", "hessian_pd": False, "converged": True}]})
    ['every fitting attempt (2) failed its Hessian check: the information matrix is not positive definite, so the estimates and their SEs are not identified']
    """
    out = []
    attempts = [a for a in result.get("attempts") or [] if isinstance(a, Mapping)]
    parts = list((result.get("fits") or {}).keys())
    by_part: dict[str, list[Mapping[str, Any]]] = {}
    for a in attempts:
        by_part.setdefault(_part(str(a.get("label", "")), parts), []).append(a)
    for part, tries in by_part.items():
        where = f"{part}: " if part else ""
        checked = [a for a in tries if a.get("hessian_pd") is not None]
        if hessian_se and checked and all(a["hessian_pd"] is False for a in checked):
            out.append(
                f"{where}every fitting attempt ({len(checked)}) failed its Hessian check: the information "
                "matrix is not positive definite, so the estimates and their SEs are not identified"
            )
        ran = [a for a in tries if a.get("converged") is not None and a.get("loglik", 0) is not None]
        if ran and not any(a["converged"] for a in ran):
            out.append(f"{where}no fitting attempt converged")
    if not attempts and result.get("converged") is False:
        out.append("the fit did not converge")
    for c in result.get("coefficients") or []:
        se = c.get("se")
        if se is not None and not math.isfinite(se):
            out.append(f"the standard error of {c.get('term')} is not finite")
    return out


def binary_identification(
    df: pd.DataFrame, y_df: pd.DataFrame, x_df: pd.DataFrame, beta: np.ndarray, spec, sigma2: float = 0.0
) -> list[str]:
    """Separation checks of a binary model (:mod:`ketastats.models.identification`): its
    binary regressors and, behind a centred illness term, the session's illness indicator.

    A mixed model's subject-specific log odds are larger than population-averaged ones by
    about sqrt(1 + 0.346 sigma^2) (Zeger, Liang & Albert 1988); its predicted log odds are
    divided by that factor before the runaway check, so that a large random-intercept
    variance is not taken for separation.
    """
    unit = "patients" if spec.get("level", "session") == "end" else "sessions"
    regressors = {c: x_df[c].to_numpy() for c in x_df.columns if c != "Intercept"}
    if "ill" in df.columns and unit == "sessions" and any(c.startswith("ill") for c in x_df.columns):
        regressors.setdefault("ill", as_float(df.loc[y_df.index, "ill"]).to_numpy())
    y = y_df.iloc[:, 0].to_numpy()
    eta = (x_df.to_numpy() @ beta) / np.sqrt(1.0 + 0.346 * sigma2)
    return separation_reasons(y, regressors, unit) + runaway_reasons(eta, unit)
