"""Model diagnostics from a model's result: the report never refits, nor rebuilds a design.

The fitted values of a two-level linear mixed model are ``X beta + Z b_i`` (conditional on
the patient's BLUP ``b_i``); the residuals are ``y`` minus them. Both come from the model's
own :class:`~ketastats.models.result.ModelResult` (:meth:`~ketastats.models.result.ModelResult.fitted`):
its design holds the rows it analysed as it analysed them (estimand strategies, session
selection, and the within-patient centring of *that* model's rows). The conditional
variance of a BLUP, for the caterpillar plot, is ``(G^-1 + Z_i' Z_i / sigma^2)^-1`` (given
the variance parameters), as lme4's ``ranef(condVar = TRUE)`` reports it for a single
grouping factor; ``G`` may be singular, so the equivalent form ``G - G Z_i' V_i^-1 Z_i G`` is
used.

References
----------
Bates, D., Maechler, M., Bolker, B., & Walker, S. (2015). Fitting linear mixed-effects
models using lme4. *Journal of Statistical Software*, 67(1), 1-48.

Robinson, G. K. (1991). That BLUP is a good thing: the estimation of random effects.
*Statistical Science*, 6(1), 15-32.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import ModelError
from ..models.result import ModelResult

__all__ = ["ModelDiagnostics", "model_diagnostics"]


@dataclass
class ModelDiagnostics:
    """Residuals, fitted values and BLUPs with conditional SDs of one model.

    Attributes
    ----------
    frame : pandas.DataFrame
        One row per observation used: ``group``, ``observed``, ``fitted`` (conditional),
        ``fitted_marginal`` (``X beta``) and ``residual``.
    blups : pandas.DataFrame
        One row per group and random effect: ``group``, ``effect``, ``blup``, ``cond_sd``.
    """

    frame: pd.DataFrame
    blups: pd.DataFrame


def model_diagnostics(model: ModelResult | Mapping[str, Any], sessions: pd.DataFrame | None = None) -> ModelDiagnostics:
    """Fitted values, residuals and BLUP intervals of a fitted model, without refitting.

    Parameters
    ----------
    model : ModelResult or mapping
        The model's result (or its JSON), with its design (kinds ``lmm`` and
        ``illness_slopes``).
    sessions : pandas.DataFrame, optional
        Not used: the rows are the model's own (kept so that older callers still work).

    Returns
    -------
    ModelDiagnostics
        ``frame`` has the model's keys (patient, session) besides the values.

    Raises
    ------
    ModelError
        When the result lacks what is needed (design, coefficients, BLUPs), or holds a
        different number of rows than the model used (``nobs``).
    """
    res = model if isinstance(model, ModelResult) else ModelResult.from_json(model)
    if res.design is None:
        raise ModelError(
            f"model {res.name!r} has no design in its result (a model JSON written before ketastats wrote "
            "designs, or a kind without one); refit it (run the workflow again) to get its diagnostics"
        )
    random = res.random or {}
    names = list(random.get("names") or [])
    if not res.coefficients or not res.blups or not names:
        raise ModelError(f"model {res.name!r}: the result has no coefficients, BLUPs or random effects")
    missing = [t for t in res.design.columns if res.coefficient(t) is None]
    if missing:
        raise ModelError(
            f"model {res.name!r}: design columns {missing} have no coefficient in the result "
            f"(terms: {sorted(c.term for c in res.coefficients)})"
        )
    if res.nobs is not None and len(res.design.rows) != int(res.nobs):
        raise ModelError(
            f"model {res.name!r} used {res.nobs} rows, but its formulas select {len(res.design.rows)} "
            "rows of its design (a damaged result)"
        )
    if list(res.design.random_columns) != names:
        raise ModelError(f"random-effect design {res.design.random_columns} does not match the result's {names}")
    fit = res.fitted()
    group = res.design.group
    frame = fit.rename(columns={group: "group"}).assign(group=lambda d: d["group"].astype(str))
    _, _, Z = res.design.matrices()
    b_table = res.blup_table()
    G = np.atleast_2d(np.asarray(random["cov"], dtype=float))
    sigma2 = float(res.residual_variance)
    rows = []
    order = pd.Index(frame["group"])
    for g in b_table.index:
        idx = np.flatnonzero(order == g)
        Zi = Z[idx]
        Vi = Zi @ G @ Zi.T + sigma2 * np.eye(len(idx))
        GZt = G @ Zi.T
        cvar = G - GZt @ np.linalg.solve(Vi, GZt.T) if len(idx) else G
        for j, n in enumerate(names):
            rows.append(
                {
                    "group": g,
                    "effect": n,
                    "blup": float(b_table.loc[g, n]),
                    "cond_sd": float(np.sqrt(max(cvar[j, j], 0.0))),
                }
            )
    return ModelDiagnostics(frame=frame, blups=pd.DataFrame(rows))
