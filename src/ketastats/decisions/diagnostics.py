"""Diagnostics of a decision analysis: overlap, balance, effective sample size, largest weights.

What a reviewer of a target-trial emulation checks before reading an effect (Austin & Stuart
2015):

- **overlap**: the distribution of the propensity ``P(A = 1 | X)`` in each arm (a histogram on
  [0, 1] for the analysts, a smoothed density and quantiles for the report's overlap figure),
  its range per arm and the number of points outside the configured ``propensity_range``;
- **balance**: per confounder (each indicator of a category separately) the standardized mean
  difference ``(mean_1 - mean_0) / sqrt((var_1 + var_0) / 2)`` before and after weighting,
  with the *unweighted* variances in the denominator both times, so that the two are on one
  scale (the love plot); ``|SMD| < 0.1`` is the usual threshold of balance;
- **weights**: the effective sample size per arm ``(sum w)^2 / sum w^2`` (Kish), the largest
  weights with their arm, and how many were truncated.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["BALANCE_THRESHOLD", "balance_table", "density", "effective_sample_size", "largest_weights", "overlap"]

#: |SMD| below this is "balanced" (Austin & Stuart 2015)
BALANCE_THRESHOLD = 0.1


def _smd(x: np.ndarray, a: np.ndarray, w: np.ndarray, denom: float) -> float | None:
    m1 = np.average(x[a == 1], weights=w[a == 1])
    m0 = np.average(x[a == 0], weights=w[a == 0])
    return float((m1 - m0) / denom) if denom > 0 else None


def balance_table(X: pd.DataFrame, A: np.ndarray, w: np.ndarray) -> list[dict[str, Any]]:
    """SMD of each design column (without the intercept) before and after weighting."""
    rows = []
    ones = np.ones_like(w)
    for col in X.columns:
        if col == "const":
            continue
        x = X[col].to_numpy(dtype=float)
        v1, v0 = np.var(x[A == 1], ddof=1), np.var(x[A == 0], ddof=1)
        denom = float(np.sqrt((v1 + v0) / 2))
        before = _smd(x, A, ones, denom)
        after = _smd(x, A, w, denom)
        binary = bool(np.isin(x, (0.0, 1.0)).all())
        rows.append(
            {
                "term": col,
                "binary": binary,
                "mean_treated": float(x[A == 1].mean()),
                "mean_control": float(x[A == 0].mean()),
                "mean_treated_weighted": float(np.average(x[A == 1], weights=w[A == 1])),
                "mean_control_weighted": float(np.average(x[A == 0], weights=w[A == 0])),
                "smd_before": before,
                "smd_after": after,
                "balanced_after": None if after is None else bool(abs(after) < BALANCE_THRESHOLD),
            }
        )
    return rows


def effective_sample_size(w: np.ndarray, A: np.ndarray) -> dict[str, float]:
    """Kish's effective sample size per arm: (sum w)^2 / sum w^2."""
    out = {}
    for a, name in ((1, "treated"), (0, "control")):
        ww = w[A == a]
        out[name] = float(ww.sum() ** 2 / np.sum(ww**2)) if ww.size else 0.0
    return out


def largest_weights(w: np.ndarray, A: np.ndarray, k: int = 5) -> list[dict[str, Any]]:
    """The ``k`` largest weights with their arm and their share of the arm's total weight."""
    order = np.argsort(-w, kind="stable")[:k]
    totals = {a: float(w[A == a].sum()) for a in (0, 1)}
    return [
        {"weight": float(w[i]), "arm": "treated" if A[i] == 1 else "control",
         "share_of_arm": float(w[i] / totals[int(A[i])]) if totals[int(A[i])] > 0 else None}
        for i in order
    ]


def overlap(e: np.ndarray, A: np.ndarray, propensity_range, bins: int = 20) -> dict[str, Any]:
    """Histogram of the propensity per arm on [0, 1] and the share of points outside the range."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    lo, hi = float(propensity_range[0]), float(propensity_range[1])
    out: dict[str, Any] = {"edges": edges.tolist(), "range": [lo, hi]}
    for a, name in ((1, "treated"), (0, "control")):
        ee = e[A == a]
        counts, _ = np.histogram(ee, bins=edges)
        out[name] = {
            "counts": counts.astype(int).tolist(),
            "min": float(ee.min()) if ee.size else None,
            "max": float(ee.max()) if ee.size else None,
            "mean": float(ee.mean()) if ee.size else None,
        }
    out["points_outside_range"] = int(np.sum((e < lo) | (e > hi)))
    out["quantiles"] = {
        name: [float(q) for q in np.quantile(e[A == a], (0.1, 0.25, 0.5, 0.75, 0.9))] if np.any(A == a) else None
        for a, name in ((1, "treated"), (0, "control"))
    }
    out["density"] = density(e, A)
    return out


def density(e: np.ndarray, A: np.ndarray, points: int = 101) -> dict[str, Any]:
    """Smoothed density of the propensity per arm on [0, 1] (Gaussian kernel, Scott's bandwidth):
    the overlap figure, without counts of points."""
    from scipy.stats import gaussian_kde

    grid = np.linspace(0.0, 1.0, points)
    out: dict[str, Any] = {"grid": grid.tolist()}
    for a, name in ((1, "treated"), (0, "control")):
        ee = e[A == a]
        if ee.size < 2 or np.ptp(ee) == 0:
            out[name] = None
            continue
        out[name] = [float(v) for v in gaussian_kde(ee)(grid)]
    return out
