"""Delta-adjusted multiple imputation and the tipping point of the illness effect (kind ``tipping_point``).

The imputations of kind ``lmm_mi`` assume the missing ratings are missing at random (MAR). The
MNAR question here is whether ratings missed *during illness* (a patient too unwell to be
rated, or who dropped out while ill) were worse than MAR predicts. For each ``delta`` of the
spec's ``deltas`` grid, ``delta`` outcome points are added to every **imputed** outcome value at
an analysed session where the patient is ill (observed or imputed ``ill == 1``); observed
ratings, and the baseline covariate, are never shifted, and the shifted values are not
clipped to the scale's range (a shift is an assumption about the mean, not a rating). The
model is refitted on every shifted data set and pooled by Rubin's rules; the imputations are
those of ``lmm_mi`` for the same spec fields and seed (:func:`~ketastats.models.engines.mice.
prepare_imputations`), so ``delta = 0`` reproduces ``lmm_mi``.

The conclusion at each delta reads the illness term's pooled confidence interval: ``"worse when
ill"`` (the interval above 0: higher scores are worse), ``"better when ill"`` (below 0) or ``"no
difference shown"``. The tipping point on each side of 0 is the grid delta closest to 0 whose
conclusion differs from the one at ``delta = 0``; it is refined by linear interpolation, between
that grid point and its neighbour towards 0, of the confidence bound that crosses 0 (the lower
bound when the conclusion leaves or enters "worse when ill", the upper one for "better when
ill"). Not reaching a change within the grid is reported as null with a message.

References
----------
Permutt, T. (2016). Sensitivity analysis for missing data in regulatory submissions.
*Statistics in Medicine*, 35(17), 2876-2879.

Ratitch, B., O'Kelly, M., & Tosiello, R. (2013). Missing data in clinical trials: from
clinical assumptions to statistical analysis using pattern mixture models. *Pharmaceutical
Statistics*, 12(6), 337-347.

van Buuren, S. (2018). *Flexible Imputation of Missing Data* (2nd ed.), section 3.8.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..common import illness_effect, mcid_for
from ..counted import remember
from ..engines.mice import (
    MIDesign,
    MIFits,
    analysis_rows,
    fit_imputed,
    mi_designs,
    pooled_block,
    prepare_imputations,
)
from ..retries import SkipModel

__all__ = ["conclusion_of", "tipping_points", "fit"]

log = logging.getLogger(__name__)

WORSE, BETTER, NONE = "worse when ill", "better when ill", "no difference shown"


def conclusion_of(ci_low: float | None, ci_high: float | None) -> str:
    """The reading of an illness effect's CI (higher scores are worse).

    Examples
    --------
    >>> conclusion_of(0.4, 3.0), conclusion_of(-3.0, -0.1), conclusion_of(-1.0, 2.0)
    ('worse when ill', 'better when ill', 'no difference shown')
    """
    if ci_low is not None and ci_low > 0:
        return WORSE
    if ci_high is not None and ci_high < 0:
        return BETTER
    return NONE


def _bound(before: str, after: str) -> str:
    """The CI bound whose crossing of 0 changes the conclusion ``before`` -> ``after``."""
    if before == WORSE or after == WORSE:
        return "ci_low" if before != BETTER else "ci_high"
    return "ci_high"


def tipping_points(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Tipping deltas on each side of 0 from the per-delta rows (``delta``, CI, ``conclusion``).

    Returns
    -------
    dict
        ``conclusion_at_zero``, ``tipping_grid`` ({negative, positive}: the grid delta closest to
        0 whose conclusion differs from the one at 0, or None) and ``tipping_delta`` (the same
        refined by linear interpolation of the crossing CI bound between that grid point and its
        neighbour towards 0).

    Examples
    --------
    >>> rows = [{"delta": d, "ci_low": 1 + 0.5 * d, "ci_high": 5 + 0.5 * d} for d in (-4, -2, 0, 2)]
    >>> for r in rows:
    ...     r["conclusion"] = conclusion_of(r["ci_low"], r["ci_high"])
    >>> out = tipping_points(rows)
    >>> out["tipping_grid"], out["tipping_delta"]
    ({'negative': -2.0, 'positive': None}, {'negative': -2.0, 'positive': None})
    """
    by = {float(r["delta"]): r for r in rows}
    if 0.0 not in by:
        raise ValueError("the delta grid must include 0")
    zero = by[0.0]
    grid: dict[str, float | None] = {}
    interp: dict[str, float | None] = {}
    for side, sign in (("negative", -1.0), ("positive", 1.0)):
        grid[side] = interp[side] = None
        prev = zero
        for d in sorted((d for d in by if d * sign > 0), key=abs):
            r = by[d]
            if r["conclusion"] != zero["conclusion"]:
                key = _bound(zero["conclusion"], r["conclusion"])
                b0, b1 = prev[key], r[key]
                d0 = float(prev["delta"])
                if b0 is None or b1 is None or b1 == b0:
                    x = d
                else:
                    x = d0 + (0.0 - b0) * (d - d0) / (b1 - b0)
                    x = float(min(max(x, min(d0, d)), max(d0, d)))
                grid[side], interp[side] = d, x
                break
            prev = r
    return {"conclusion_at_zero": zero["conclusion"], "tipping_grid": grid, "tipping_delta": interp}


def _reported_side(tips: Mapping[str, Any], est0: float) -> str:
    """Which side's delta the forest plot shows.

    A finding at delta = 0 (worse or better when ill): the side that moves the estimate
    towards the null (how far from MAR must missed ratings be to lose the finding). No
    finding at 0: the side whose tipping point is nearer 0 (how far from MAR to create one),
    or, when neither is reached, the side of the estimate's sign.
    """
    towards_null = "negative" if est0 > 0 else "positive"
    if tips["conclusion_at_zero"] != NONE:
        return towards_null
    reached = {k: v for k, v in tips["tipping_grid"].items() if v is not None}
    if reached:
        return min(reached, key=lambda k: abs(reached[k]))
    return "positive" if est0 >= 0 else "negative"


def _shift_masks(designs: Sequence[MIDesign], outcome: str) -> list[np.ndarray]:
    """Per data set, the analysed rows whose outcome was imputed at an ill session."""
    flag = f"_imputed_{outcome}"
    return [(d.frame[flag].to_numpy(bool) & (d.frame["ill"].to_numpy(float) > 0)) for d in designs]


def fit(
    data: pd.DataFrame, spec: Mapping[str, Any], estimands: Mapping[str, str], alpha: float
) -> dict[str, Any]:
    """Kind ``tipping_point``: delta-adjusted MI over the ``deltas`` grid; the model JSON fields.

    ``coefficients`` and ``illness_effect`` (with its ``delta``) are the pooled fit at the grid
    delta where the conclusion first changes on the reported side (:func:`_reported_side`:
    towards the null when delta = 0 shows a finding, else the nearer tipping point), or at
    that side's extreme delta when the conclusion does not change within the grid.
    ``tipping.rows`` has every delta.
    """
    t0 = time.perf_counter()
    prep = prepare_imputations(data, spec, estimands)
    ill_term = spec["illness_term"]
    deltas = sorted({float(d) for d in spec.get("deltas") or []} | {0.0})
    designs = mi_designs([analysis_rows(c, spec, prep) for c in prep.completed], spec, prep)
    if "ill" not in designs[0].frame.columns:
        raise SkipModel(f"{spec['label']}: the tipping point shifts ratings at ill sessions; no 'ill' column")
    masks = _shift_masks(designs, prep.outcome)
    counts = [int(mk.sum()) for mk in masks]
    fits: dict[float, MIFits] = {}
    rows = []
    for delta in deltas:
        f = fit_imputed(designs, spec, prep, alpha=alpha, shifts=[delta * mk for mk in masks])
        fits[delta] = f
        row = next((c for c in f.coefficients if c["term"] == ill_term), None)
        if row is None:
            raise SkipModel(f"{spec['label']}: the illness term {ill_term!r} is not in the model")
        rows.append(
            {
                "delta": delta,
                "estimate": row["estimate"],
                "se": row["se"],
                "ci_low": row["ci_low"],
                "ci_high": row["ci_high"],
                "p_value": row["p_value"],
                "df": row["df"],
                "conclusion": conclusion_of(row["ci_low"], row["ci_high"]),
            }
        )
        log.info("tipping point: delta %+g -> %s (%.3f)", delta, rows[-1]["conclusion"], row["estimate"])
    tips = tipping_points(rows)
    est0 = next(r for r in rows if r["delta"] == 0.0)["estimate"] or 0.0
    side = "negative" if est0 > 0 else "positive"
    messages = []
    for s in ("negative", "positive"):
        if tips["tipping_grid"][s] is None:
            extreme = min(deltas) if s == "negative" else max(deltas)
            messages.append(
                f"tipping point not reached on the {s} side: the conclusion "
                f"({tips['conclusion_at_zero']}) holds for every delta from 0 to {extreme:+g}"
            )
    reported_side = _reported_side(tips, est0)
    reported = tips["tipping_grid"][reported_side]
    if reported is None:
        reported = min(deltas) if reported_side == "negative" else max(deltas)
    f = fits[reported]
    out = pooled_block(prep, f, spec)
    eff = illness_effect(f.coefficients, ill_term, scale="points", mcid=mcid_for(prep.outcome))
    if eff is not None:
        eff["outcome"] = prep.outcome
        eff["delta"] = reported
    out["illness_effect"] = eff
    out["coefficients_delta"] = reported
    out["converged"] = all(x.converged for x in fits.values())
    out["singular"] = any(x.singular for x in fits.values())
    out["tipping"] = {
        "applies_to": "imputed ratings at ill sessions",
        "assumption": "MNAR: ratings missed at ill sessions are delta points higher (worse) than MAR "
        "predicts; observed ratings and the baseline covariate are not shifted; no clipping to the "
        "scale's range",
        "rows": rows,
        "conclusion_at_zero": tips["conclusion_at_zero"],
        "tipping_delta": tips["tipping_delta"],
        "tipping_grid": tips["tipping_grid"],
        "side_towards_null": side,
        "reported_side": reported_side,
        "reported_delta": reported,
        "imputed_ill_ratings": float(np.mean(counts)),
        "imputed_ill_ratings_range": [min(counts), max(counts)],
        "deltas": deltas,
    }
    # written by the package, the deltas in them are settings: recorded as trusted text
    out["messages"] = [*out["messages"], *(remember(out, m) for m in messages)]
    if not any(counts):
        out["messages"].append("no imputed rating falls on an ill session: every delta gives the same result")
    # timings go to the log, not the JSON: the same inputs must give byte-identical results
    log.info(
        "%s: imputations %.1f s, %d deltas fitted in %.1f s",
        spec["label"],
        prep.seconds,
        len(deltas),
        time.perf_counter() - t0 - prep.seconds,
    )
    return out
