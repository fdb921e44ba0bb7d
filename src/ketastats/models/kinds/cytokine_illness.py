"""Kind ``cytokine_illness``: the effect of illness on each cytokine marker, on the log scale.

Per marker: ``log(marker) ~ ill_within + ill_between + progress + (1 | patient)`` over
every session with a draw; ``exp(b_W)`` is the ratio of the marker's level when ill to when
not ill within the same patient. Values below the assay's limit of detection
(``<marker>_censored``) are handled per the spec's ``censoring``:

``tobit`` (default)
    A left-censored random-intercept model by maximum likelihood
    (:mod:`ketastats.models.engines.tobit`): a non-detect contributes ``P(y <= log LOD)``.
    Valid with many non-detects; a marker is skipped only above ``max_censored_fraction`` (0.8).
``lod_sqrt2`` / ``lod_half`` / ``exclude``
    Substitution by LOD/sqrt(2) (Hornung & Reed 1990) or LOD/2, or dropping non-detects,
    then an ordinary mixed model; a sensitivity analysis, and what the moderation and
    mediation models use for the marker as a covariate. Defensible only for a small
    non-detect share: above ``max_censored_fraction`` (0.3, the Okdahl et al. 2022 rule)
    the marker is skipped and says so.

Each marker's test is listed under ``"tests"`` for the family-wide Benjamini-Hochberg
adjustment (:mod:`ketastats.models.multiplicity`). The marker handling is
:mod:`ketastats.models.markers`.

References
----------
Hornung, R. W., & Reed, L. D. (1990). Estimation of average concentration in the presence
of nondetectable values. *Applied Occupational and Environmental Hygiene*, 5(1), 46-51.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..common import coefficient_rows, illness_effect, num, require_illness
from ..counted import CountedText
from ..engines.tobit import fit_tobit_lmm
from ..fitting import fit_spec_lmm, formulas_for, lmm_block
from ..markers import censored, check_marker, finish_blocks, log_marker
from ..retries import SkipModel
from ..rows import model_rows

__all__ = ["fit"]

log = logging.getLogger(__name__)


def fit(
    data: pd.DataFrame, spec: Mapping[str, Any], estimands: Mapping[str, str], alpha
):
    """Kind ``cytokine_illness``: illness effect on each log marker (one LMM per marker)."""
    blocks: dict[str, dict[str, Any]] = {}
    skipped: dict[str, CountedText] = {}
    tests = []
    flags: dict[str, Any] = {}
    record_all: dict[str, Any] = {}
    for marker in spec["markers"]:
        outcome = f"log_{marker}"
        sub_spec = {**spec, "outcome": outcome}
        formula, re_formula = formulas_for(sub_spec)
        tobit = spec["censoring"] == "tobit"
        try:
            if marker not in data.columns:
                raise SkipModel(f"{marker}: not in the data (no draws)")

            def derive(df, marker=marker, outcome=outcome, tobit=tobit):
                if tobit:  # observed log value, or the log LOD where censored (with the flag)
                    return df.assign(
                        **{outcome: log_marker(df, marker, "lod"), f"{outcome}_cens": censored(df, marker)}
                    )
                return df.assign(**{outcome: log_marker(df, marker, spec["censoring"])})

            df, record = model_rows(
                data,
                sub_spec,
                estimands,
                outcome=outcome,
                terms=[*spec["fixed"], *(spec.get("random") or [])],
                outcome_type="cytokine",
                cytokines=[marker],
                what=f"{spec['label']} ({marker})",
                derive=derive,
            )
            summ = check_marker(df, marker, spec, flags)
            require_illness(df, f"{spec['label']} ({marker})")
        except SkipModel as exc:
            skipped[marker] = exc.counted
            continue
        if tobit:
            block = _tobit_block(df, formula, outcome, spec, alpha, prefix=f"{marker}: ")
        else:
            block = lmm_block(fit_spec_lmm(df, formula, re_formula, spec, alpha, prefix=f"{marker}: "))
        block["draws"] = summ
        eff = illness_effect(
            block["coefficients"], f"{marker}: {spec['illness_term']}", scale="log (natural)"
        )
        if eff is not None:
            eff["ratio"] = num(np.exp(eff["estimate"]))
            eff["ratio_ci_low"] = num(np.exp(eff["ci_low"]))
            eff["ratio_ci_high"] = num(np.exp(eff["ci_high"]))
            tests.append(
                {
                    "id": f"{marker}:illness",
                    "label": f"illness effect on log {marker}",
                    "term": eff["term"],
                    "estimate": eff["estimate"],
                    "p_value": eff["p_value"],
                }
            )
        block["illness_effect"] = eff
        blocks[marker] = block
        record_all = record
    return finish_blocks(blocks, skipped, spec, record_all, flags, tests)


def _tobit_block(
    df: pd.DataFrame, formula: str, outcome: str, spec: Mapping[str, Any], alpha: float, prefix: str
):
    """Fit the left-censored random-intercept model; fields as :func:`lmm_block` gives them."""
    import patsy

    from ..engines.agq import quadrature_words

    if spec.get("random"):
        raise SkipModel(
            "the censored (tobit) model has a random intercept only; set random: [] or another censoring"
        )
    y_df, x_df = patsy.dmatrices(formula, df, return_type="dataframe")
    rows = df.loc[y_df.index]
    n_agq = spec.get("n_agq", "auto")
    r = fit_tobit_lmm(
        y_df.iloc[:, 0].to_numpy(),
        rows[f"{outcome}_cens"].to_numpy(bool),
        x_df.to_numpy(),
        rows[spec["group"]].astype(str).to_numpy(),
        n_agq=n_agq if n_agq == "auto" else int(n_agq),
    )
    coefs = coefficient_rows(list(x_df.columns), r.beta, r.se, alpha=alpha, prefix=prefix)
    return {
        "converged": bool(r.converged),
        "singular": bool(r.singular),
        "attempts": [a.to_dict() for a in r.attempts],
        "engine": "ketastats AGQ (censored)",
        "optimizer": r.optimizer,
        "method": f"ML, left-censored at the LOD ({quadrature_words(r.quadrature)})",
        "quadrature": r.quadrature,
        "formula": formula,
        "re_formula": None,
        "nobs": int(r.nobs),
        "ncensored": int(r.ncensored),
        "ngroups": int(r.ngroups),
        "df_method": "normal",
        "coefficients": coefs,
        "fixed": {c["term"]: {"estimate": c["estimate"], "se": c["se"]} for c in coefs},
        "random": {
            "group": spec["group"],
            "names": ["Intercept"],
            "cov": [[num(r.tau**2)]],
            "sd": [num(r.tau)],
        },
        "residual_variance": num(r.sigma**2),
        "loglik": num(r.loglik),
        "blups": {"group": [str(g) for g in r.group_labels], "Intercept": [num(v) for v in r.modes]},
        "messages": list(r.messages),
    }


