"""Kind ``lmm_mi``: the primary model under multiple imputation of missing ratings (sensitivity).

The same linear mixed model is fitted to each of ``m`` completed data sets (MICE in wide
format, predictive mean matching) and the fixed effects are pooled by Rubin's rules with
Barnard-Rubin small-sample degrees of freedom. The imputation model, the pooling and their
references are in :mod:`ketastats.models.engines.mice`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import pandas as pd

from ..engines.mice import analysis_rows, fit_imputed, mi_designs, pooled_block, prepare_imputations

__all__ = ["fit"]

log = logging.getLogger(__name__)


def fit(data: pd.DataFrame, spec: Mapping[str, Any], estimands: Mapping[str, str], alpha: float):
    """Kind ``lmm_mi``: the spec's LMM on ``m`` MICE-completed data sets, pooled by Rubin's rules."""
    t0 = time.perf_counter()
    prep = prepare_imputations(data, spec, estimands)
    designs = mi_designs([analysis_rows(c, spec, prep) for c in prep.completed], spec, prep)
    fits = fit_imputed(designs, spec, prep, alpha=alpha)
    out = pooled_block(prep, fits, spec)
    # timings go to the log, not the JSON: the same inputs must give byte-identical results
    log.info(
        "%s: %d imputations in %.1f s, fitted and pooled in %.1f s",
        spec["label"],
        len(prep.completed),
        prep.seconds,
        time.perf_counter() - t0 - prep.seconds,
    )
    return out
