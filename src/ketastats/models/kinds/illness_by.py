"""Kind ``illness_by``: which illnesses matter? The primary model's illness effect by kind of illness.

For each grouping in ``by`` (``illness_type``, ``illness_severity``, ``febrile``) the primary
linear mixed model is refitted with the within-person illness term split by level: one
indicator per level, ``ill_<by>_<level>`` (1 at a session ill with that type, severity or
febrile status), each person-mean centred over the analysed sessions (``<col>_within``), in
place of ``ill_within``; the between-person part (``ill_between``) and the previous session's
illness (``ill_lag1``) stay as in the primary model. Each level's coefficient is the
within-person effect of being ill *with that level* against being well; the global test is
the Wald test that they are all equal (chi-squared on k - 1 df, from the fixed effects'
covariance). A level with fewer than ``min_sessions`` ill sessions stays in the model (its
sessions are ill, not well) but its effect is not reported (``status: too_few``).
An ill session without the grouping's value (type or severity not recorded) is its own level,
``unknown``, for the same reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..common import as_float, mcid_for, require_illness
from ..counted import CountedText, escape, remember
from ..fitting import fit_spec_lmm, formulas_for, lmm_block
from ..retries import SkipModel
from ..rows import model_rows

__all__ = ["LEVELS", "fit"]

#: grouping -> its levels, in display order
LEVELS = {
    "illness_type": ("respiratory", "influenza_like", "gastrointestinal", "other_febrile", "other"),
    "illness_severity": ("mild", "moderate", "severe"),
    "febrile": ("febrile", "afebrile"),
}
_FEBRILE = ("influenza_like", "other_febrile")


def _level_of(data: pd.DataFrame, by: str) -> pd.Series:
    """Each session's level of grouping ``by`` (None when not ill)."""
    ill = as_float(data["ill"]) > 0
    if by == "febrile":
        if "illness_type" not in data.columns:
            raw = pd.Series(None, index=data.index, dtype=object)
        else:
            typ = data["illness_type"].astype(object)
            raw = pd.Series(np.where(typ.isin(_FEBRILE), "febrile", "afebrile"), index=data.index, dtype=object)
            raw[typ.isna()] = None
    else:
        raw = data[by].astype(object) if by in data.columns else pd.Series(None, index=data.index, dtype=object)
    level = raw.where(raw.notna(), "unknown")
    return level.where(ill, None)


def _wald_equal(beta: np.ndarray, cov: np.ndarray) -> dict[str, Any] | None:
    """Wald test that every coefficient in ``beta`` is equal (chi-squared, k - 1 df)."""
    k = len(beta)
    if k < 2:
        return None
    C = np.hstack([-np.ones((k - 1, 1)), np.eye(k - 1)])
    d = C @ beta
    V = C @ cov @ C.T
    try:
        chi2 = float(d @ np.linalg.solve(V, d))
    except np.linalg.LinAlgError:
        return None
    return {"chi2": chi2, "df": k - 1, "p_value": float(stats.chi2.sf(chi2, k - 1)),
            "hypothesis": "the illness effect is the same at every level shown"}


def fit(data: pd.DataFrame, spec: Mapping[str, Any], estimands: Mapping[str, str], alpha: float) -> dict[str, Any]:
    """Kind ``illness_by``: the within-person illness effect by type, severity and febrile status."""
    outcome = spec["outcome"]
    what = str(spec["label"])
    if "ill" not in data.columns or data["ill"].isna().all():
        raise SkipModel(f"{what} needs the illness flag 'ill', which the data do not have")
    require_illness(data, what)
    mcid = mcid_for(outcome)
    out: dict[str, Any] = {"by_illness": {}, "fits": {}}
    coefficients: list[dict[str, Any]] = []
    base_fixed = [t for t in spec["fixed"] if t != spec.get("split_term", "ill_within")]
    for by in spec["by"]:
        level = _level_of(data, by)
        present = [lv for lv in (*LEVELS[by], "unknown") if (level == lv).any()]
        if not present:
            out["by_illness"][by] = {"status": "skipped", "reason": remember(
                out, f"{what}: no ill session has {by} recorded")}
            continue
        cols = {lv: f"ill_{by}_{lv}" for lv in present}
        derived = data.assign(**{c: (level == lv).astype(float) for lv, c in cols.items()})
        sp = {**spec, "centre": [*spec.get("centre", ["ill"]), *cols.values()],
              "fixed": [*base_fixed, *(f"{c}_within" for c in cols.values())]}
        formula, re_formula = formulas_for(sp)
        terms = [formula.split("~", 1)[1], re_formula or ""]
        df, record = model_rows(derived, sp, estimands, outcome=outcome, terms=terms, what=f"{what} ({by})")
        res = fit_spec_lmm(df, formula, re_formula, sp, alpha, prefix=f"{by}: ")
        block = lmm_block(res)
        block.pop("blups", None)
        out["fits"][by] = {k: block[k] for k in ("formula", "re_formula", "nobs", "ngroups", "converged",
                                                 "singular", "engine", "method", "df_method")}
        coefficients.extend(block["coefficients"])
        out.setdefault("attempts", []).extend(block["attempts"])
        fixed = res.result.fixed.reset_index(drop=True)
        names = list(fixed["term"])
        rows, shown = [], []
        for lv, c in cols.items():
            term = f"{c}_within"
            n_sessions = int((df[c] > 0).sum())
            n_patients = int(df.loc[df[c] > 0, spec["group"]].nunique())
            row: dict[str, Any] = {"level": lv, "term": term, "n_sessions": n_sessions, "n_patients": n_patients}
            coef = next((r for r in block["coefficients"] if r["term"] == f"{by}: {term}"), None)
            if n_sessions < int(spec["min_sessions"]) or coef is None:
                row["status"] = "too_few"
                row["reason"] = remember(out, CountedText(
                    escape(f"{by} = {lv}: ") + "{n} ill session(s), "
                    + escape(f"fewer than the {spec['min_sessions']} needed (min_sessions); kept in the model, "
                             "not reported"), {"n": n_sessions}))
            else:
                row.update(status="ok", **{k: coef[k] for k in ("estimate", "se", "ci_low", "ci_high", "p_value",
                                                                 "df", "df_method")})
                row["mcid"] = mcid
                shown.append(names.index(term))
            rows.append(row)
        idx = np.array(shown, dtype=int)
        test = _wald_equal(res.result.fixed["estimate"].to_numpy()[idx], np.asarray(res.result.cov_beta)[np.ix_(idx, idx)])
        out["by_illness"][by] = {"status": "ok", "levels": rows, "global_test": test,
                                 "nobs": int(block["nobs"]), "ngroups": int(block["ngroups"]),
                                 "estimands": record}
    done = [b for b in out["by_illness"].values() if b.get("status") == "ok"]
    if not done:
        raise SkipModel(f"{what}: no grouping could be analysed")
    out.update(
        coefficients=coefficients,
        nobs=max(b["nobs"] for b in done),
        ngroups=max(b["ngroups"] for b in done),
        converged=all(f["converged"] for f in out["fits"].values()),
        singular=any(f["singular"] for f in out["fits"].values()),
        engine=", ".join(sorted({str(f["engine"]) for f in out["fits"].values()})),
        method=spec["method"],
        df_method=next(iter(out["fits"].values()))["df_method"],
    )
    return out
