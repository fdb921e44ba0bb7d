"""Multiple testing: Benjamini-Hochberg false discovery rate across a family of tests.

The cytokine family (each marker's illness effect, the moderation tests and the mediation
tests) is adjusted together: every model of the family lists its tests under ``"tests"``
in its JSON, and :func:`adjust_families` adjusts them across models for ``results.json``.
BH controls the FDR under independence or positive regression dependence (Benjamini &
Yekutieli 2001), the plausible case for markers that rise together in an infection.

References
----------
Benjamini, Y., & Hochberg, Y. (1995). Controlling the false discovery rate: a practical and
powerful approach to multiple testing. *JRSS B*, 57(1), 289-300.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["bh_adjust", "adjust_tests", "adjust_families"]


def bh_adjust(p_values: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values), in the input order.

    ``q_(i) = min_{j >= i} min(1, m p_(j) / j)`` over the sorted p-values; a hypothesis is
    rejected at FDR level ``q`` when its adjusted p-value is at most ``q``. Missing
    p-values (NaN) stay NaN and do not count in ``m``.

    Examples
    --------
    The 15 p-values of Benjamini & Hochberg (1995, section 4.1): at q = 0.05 the four
    smallest are rejected.

    >>> p = [0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344, 0.0459,
    ...      0.3240, 0.4262, 0.5719, 0.6528, 0.7590, 1.0]
    >>> int((bh_adjust(p) <= 0.05).sum())
    4
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    m = int(ok.sum())
    if m == 0:
        return out
    pv = p[ok]
    order = np.argsort(pv, kind="stable")
    ranked = pv[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    q = np.minimum(q, 1.0)
    adj = np.empty(m)
    adj[order] = q
    out[ok] = adj
    return out


def adjust_tests(tests: Sequence[Mapping[str, Any]], q: float = 0.05) -> list[dict[str, Any]]:
    """Add ``p_adjusted`` (BH) and ``rejected`` (at FDR ``q``) to each test record."""
    p = [t.get("p_value") if t.get("p_value") is not None else np.nan for t in tests]
    adj = bh_adjust(p)
    out = []
    for t, a in zip(tests, adj):
        row = dict(t)
        row["p_adjusted"] = float(a) if np.isfinite(a) else None
        row["rejected"] = bool(np.isfinite(a) and a <= q)
        out.append(row)
    return out


def adjust_families(models: Mapping[str, Mapping[str, Any]], q: float = 0.05) -> dict[str, Any]:
    """BH across every model of each family (``"family"`` in the model JSON), for results.json.

    Returns ``{family: {"method": "Benjamini-Hochberg", "fdr": q, "n_tests", "tests": [...]}}``
    with the tests of models whose status is ``"ok"``, in model-name order.
    """
    fams: dict[str, list[dict[str, Any]]] = {}
    for name in sorted(models):
        m = models[name]
        fam = m.get("family") or (m.get("spec") or {}).get("family")
        if not fam or m.get("status", "ok") != "ok":
            continue
        for t in m.get("tests") or []:
            fams.setdefault(fam, []).append({"model": name, **t})
    return {
        fam: {
            "method": "Benjamini-Hochberg",
            "fdr": q,
            "n_tests": len(tests),
            "tests": adjust_tests(tests, q),
        }
        for fam, tests in fams.items()
    }
