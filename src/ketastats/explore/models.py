"""Model results side by side, a trial model, BLUPs and per-patient fitted trajectories.

Model JSON files are read defensively: a file needs only ``fixed`` (term -> estimate,
se) to appear in the comparisons; ``coefficients``, ``random``, ``blups``, ``status``,
``label``, ``kind`` and ``illness_effect`` are used when present, so that models of any
kind (mixed, GEE, logistic, cytokine, mediation) sit side by side.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import KetastatsError
from ..models.result import ModelResult
from .cohort import CohortView
from .sessions import ill_flags

__all__ = [
    "ILLNESS_TERMS",
    "illness_effects",
    "model_table",
    "coefficient_table",
    "try_model",
    "default_mixed_model",
    "blup_table",
    "predict_trajectories",
    "example_patients",
]

#: Terms that carry the illness effect, in order of preference (first found is used).
ILLNESS_TERMS: tuple[str, ...] = ("ill", "ill_within", "ill[T.1]", "ill[T.1.0]", "ill_lag1", "ever_ill")


# ------------------------------------------------------------------ models
def _result(m: Mapping[str, Any]) -> ModelResult:
    """A model JSON (as the workflow wrote it) read through the one result type."""
    return m if isinstance(m, ModelResult) else ModelResult.from_json(m)


def _coefficients(m: Mapping[str, Any]) -> pd.DataFrame:
    cols = ["term", "estimate", "se", "ci_low", "ci_high", "p_value"]
    r = _result(m)
    if r.coefficients:
        df = r.coefficient_table()
    elif r.fixed:
        df = pd.DataFrame(
            [{"term": t, **(v if isinstance(v, Mapping) else {"estimate": v})} for t, v in r.fixed.items()]
        )
    else:
        return pd.DataFrame(columns=cols)
    for c in cols:
        if c not in df.columns:
            df[c] = np.nan
    df[cols[1:]] = df[cols[1:]].apply(pd.to_numeric, errors="coerce")
    return df[cols]


def _outcome(m: Mapping[str, Any]) -> str | None:
    r = _result(m)
    formula = r.extra.get("formula") or r.spec.get("formula") or (r.design.formula if r.design else None)
    if isinstance(formula, str) and "~" in formula:
        return formula.split("~", 1)[0].strip() or None
    return r.spec.get("outcome") or r.extra.get("outcome")


def _status(m: Mapping[str, Any]) -> str:
    if isinstance(m.get("status"), str):
        return m["status"]
    if m.get("converged") is False:
        return "not converged"
    if m.get("singular") is True:
        return "singular"
    return "ok"


def illness_effects(view: CohortView | Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """The illness effect of every model that has one.

    Uses a model's ``illness_effect`` entry when it has one (a number or a mapping with
    ``estimate``, ``se``, ``ci_low``, ``ci_high``, ``p_value``, ``term``); otherwise the
    first coefficient named in :data:`ILLNESS_TERMS`, else the first term starting with
    ``ill`` that is not an interaction.

    Returns
    -------
    pandas.DataFrame
        One row per model with an illness effect: ``model``, ``label``, ``term``,
        ``estimate``, ``se``, ``ci_low``, ``ci_high``, ``p_value``.
    """
    models = view.models if isinstance(view, CohortView) else view
    rows = []
    for name, m in models.items():
        label = m.get("label") or name
        eff = m.get("illness_effect")
        if isinstance(eff, Mapping) and eff.get("estimate") is not None:
            rows.append(
                {
                    "model": name,
                    "label": label,
                    "term": eff.get("term"),
                    **{k: eff.get(k) for k in ("estimate", "se", "ci_low", "ci_high", "p_value")},
                }
            )
            continue
        if isinstance(eff, (int, float)) and not isinstance(eff, bool):
            rows.append({"model": name, "label": label, "term": None, "estimate": eff})
            continue
        coefs = _coefficients(m)
        terms = list(coefs["term"].astype(str))
        pick = next((t for t in ILLNESS_TERMS if t in terms), None)
        if pick is None:
            pick = next((t for t in terms if t.startswith("ill") and ":" not in t), None)
        if pick is None:
            continue
        row = coefs[coefs["term"] == pick].iloc[0]
        rows.append({"model": name, "label": label, **row.to_dict()})
    cols = ["model", "label", "term", "estimate", "se", "ci_low", "ci_high", "p_value"]
    out = pd.DataFrame(rows, columns=cols)
    out[cols[3:]] = out[cols[3:]].apply(pd.to_numeric, errors="coerce")
    return out


def model_table(view: CohortView | Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Every model of the cohort in one table: what it is, whether it worked, its illness effect.

    Returns
    -------
    pandas.DataFrame
        One row per model: ``model``, ``label``, ``kind``, ``status``, ``outcome``,
        ``method``, ``engine``, ``nobs``, ``ngroups``, ``loglik``, ``converged``,
        ``singular``, then ``illness_term``, ``illness_estimate``, ``illness_ci_low``,
        ``illness_ci_high``, ``illness_p`` (empty when the model has no illness term).
    """
    models = view.models if isinstance(view, CohortView) else view
    eff = illness_effects(models).set_index("model")
    rows = []
    for name, m in models.items():
        spec = m.get("spec") if isinstance(m.get("spec"), Mapping) else {}
        e = eff.loc[name] if name in eff.index else None
        rows.append(
            {
                "model": name,
                "label": m.get("label") or name,
                "kind": m.get("kind") or spec.get("kind") or ("lmm" if m.get("random") else None),
                "status": _status(m),
                "outcome": _outcome(m),
                "method": m.get("method") or spec.get("method"),
                "engine": m.get("engine"),
                "nobs": m.get("nobs"),
                "ngroups": m.get("ngroups"),
                "loglik": m.get("loglik"),
                "converged": m.get("converged"),
                "singular": m.get("singular"),
                "illness_term": None if e is None else e["term"],
                "illness_estimate": np.nan if e is None else e["estimate"],
                "illness_ci_low": np.nan if e is None else e["ci_low"],
                "illness_ci_high": np.nan if e is None else e["ci_high"],
                "illness_p": np.nan if e is None else e["p_value"],
            }
        )
    return pd.DataFrame(rows)


def coefficient_table(
    view: CohortView | Mapping[str, Mapping[str, Any]], models: Sequence[str] | None = None
) -> pd.DataFrame:
    """Fixed-effect estimates of several models side by side.

    Returns
    -------
    pandas.DataFrame
        Long format: ``model``, ``term``, ``estimate``, ``se``, ``ci_low``, ``ci_high``,
        ``p_value`` (terms in each model's own order).
    """
    all_models = view.models if isinstance(view, CohortView) else view
    names = list(all_models) if models is None else list(models)
    parts = []
    for name in names:
        if name not in all_models:
            raise KetastatsError(f"no model {name!r}; this cohort has: {', '.join(all_models) or 'none'}")
        parts.append(_coefficients(all_models[name]).assign(model=name))
    if not parts:
        return pd.DataFrame(columns=["model", "term", "estimate", "se", "ci_low", "ci_high", "p_value"])
    out = pd.concat(parts, ignore_index=True)
    return out[["model", "term", "estimate", "se", "ci_low", "ci_high", "p_value"]]


def try_model(
    view: CohortView,
    formula: str | None,
    re_formula: str | None = "~session",
    *,
    name: str = "trial",
    method: str = "REML",
    engine: str = "auto",
    group: str = "patient_id",
    alpha: float = 0.05,
    se: str = "cr2",
) -> CohortView:
    """Fit one more linear mixed model to the cohort, as the workflow would, for comparison.

    The model is fitted by the workflow's own step (:func:`ketastats.pipeline.step_fit`)
    and read back from its JSON, so it sits in :func:`model_table` and
    :func:`illness_effects` exactly like the workflow's models. Nothing is written to the
    project: to keep a model, add it to ``models:`` in ``config/config.yaml``.

    Parameters
    ----------
    view : CohortView
    formula : str or None
        Fixed effects, patsy syntax, on columns of ``view.sessions`` (e.g.
        ``"madrs ~ session + ill_within + ill_between"``). ``None`` or ``""``: no trial
        model, ``view`` is returned unchanged (so that a notebook parameter can leave it off).
    re_formula : str or None
        Random effects per patient (``"~session"``: intercept and slope; ``None``: intercept).
    name : str
        The model's name in the returned view (must not be taken).
    method, engine, group, alpha, se
        As in a ``models:`` entry of the config (kind ``lmm``); ``alpha`` sets the CI level
        (1 - alpha); ``se="model"`` gives lme4's standard errors instead of the CR2 sandwich.

    Returns
    -------
    CohortView
        A copy of ``view`` with the trial model added; ``view`` itself is not changed.

    Raises
    ------
    KetastatsError
        If ``name`` is taken, or the model cannot be fitted (e.g. a misspelt column).
    """
    if not formula:
        return view
    if name in view.models:
        raise KetastatsError(f"a model named {name!r} exists already; pass another name=")
    from ..pipeline import step_fit

    spec = {
        "formula": formula,
        "method": method,
        "engine": engine,
        "group": group,
        "se": se,
        "label": f"{name} (fitted in the notebook)",
    }
    if re_formula:
        spec["re_formula"] = re_formula
    with tempfile.TemporaryDirectory(prefix="ketastats-trial-") as tmp:
        out = Path(tmp) / f"{name}.json"
        step_fit(view.sessions, spec, out, alpha=alpha)
        fitted = json.loads(out.read_text(encoding="utf-8"))
    if fitted.get("status", "ok") != "ok":
        # in a notebook a model that could not be fitted is an error to see, not a row to skip
        raise KetastatsError(f"trial model {name!r} was {fitted['status']}: {fitted.get('reason')}")
    return dataclasses.replace(view, models={**view.models, name: fitted})


# ---------------------------------------------------- BLUPs and trajectories
def _is_linear_mixed(m: Mapping[str, Any]) -> bool:
    b = m.get("blups")
    return isinstance(b, Mapping) and "group" in b and m.get("residual_variance") is not None


def default_mixed_model(view: CohortView) -> str:
    """The model to show BLUPs of: ``primary`` if it is a linear mixed model with BLUPs,
    else the first such model by name.

    Raises
    ------
    KetastatsError
        If no model of the cohort is a linear mixed model with saved BLUPs.
    """
    names = [n for n, m in view.models.items() if _is_linear_mixed(m)]
    if not names:
        raise KetastatsError(
            f"cohort {view.cohort!r} has no linear mixed model with BLUPs among its models "
            f"({', '.join(view.models) or 'none'}); add one to models: in config/config.yaml"
        )
    return "primary" if "primary" in names else names[0]


def _model(view: CohortView, model: str) -> dict[str, Any]:
    if model not in view.models:
        raise KetastatsError(
            f"cohort {view.cohort!r} has no model {model!r}; models: {', '.join(view.models) or 'none'}"
        )
    return view.models[model]


def blup_table(view: CohortView, model: str | None = None) -> pd.DataFrame:
    """The model's predicted random effects (BLUPs), one row per patient.

    ``model=None`` takes :func:`default_mixed_model`.

    Returns
    -------
    pandas.DataFrame
        Column ``patient_id`` then one column per random effect (e.g. ``Intercept``,
        ``session``), plus ``ever_ill`` when the session table has it.

    Raises
    ------
    KetastatsError
        If the model has no BLUPs (not a mixed model, or they were not saved).
    """
    model = model or default_mixed_model(view)
    m = _model(view, model)
    b = m.get("blups")
    if not isinstance(b, Mapping) or "group" not in b:
        raise KetastatsError(f"model {model!r} of cohort {view.cohort!r} has no BLUPs (not a mixed model?)")
    df = pd.DataFrame(dict(b)).rename(columns={"group": "patient_id"})
    df["patient_id"] = df["patient_id"].astype(str)
    if "ever_ill" in view.sessions.columns:
        ever = view.sessions.groupby("patient_id")["ever_ill"].max()
        ever.index = ever.index.astype(str)
        df["ever_ill"] = df["patient_id"].map(ever)
    return df



def predict_trajectories(
    view: CohortView, model: str | None = None, patients: Iterable[str] | None = None
) -> pd.DataFrame:
    """Observed scores next to a linear mixed model's fitted values, per patient and session.

    ``fitted_population`` is ``X beta`` (the average patient); ``fitted_patient`` adds the
    patient's BLUPs, ``X beta + Z b_i``. Both are the model's own
    (:meth:`ketastats.models.ModelResult.fitted`): on the rows it analysed, as it analysed
    them (a post-baseline model has no fitted value at the baseline session). The model is
    not refitted and its design is not rebuilt from the session table.

    Parameters
    ----------
    view : CohortView
    model : str, optional
        A linear mixed model with BLUPs and a design in its result. Default:
        :func:`default_mixed_model`.
    patients : iterable of str, optional
        Restrict to these patients (default: all).

    Returns
    -------
    pandas.DataFrame
        ``patient_id``, ``session``, ``observed``, ``ill``, ``fitted_population``,
        ``fitted_patient``, sorted by patient and session.
    """
    model = model or default_mixed_model(view)
    blup_table(view, model)  # refuses a model without BLUPs
    res = _result(_model(view, model))
    if res.design is None:
        raise KetastatsError(
            f"model {model!r} of cohort {view.cohort!r} has no design in its result (written before ketastats "
            "kept one); run the workflow again to refit it"
        )
    fit = res.fitted()
    rows = res.design.rows
    out = pd.DataFrame(
        {
            "patient_id": rows[res.design.group].astype(str).to_numpy(),
            "session": rows["session"].to_numpy() if "session" in rows else np.nan,
            "observed": fit["observed"].to_numpy(),
            "ill": ill_flags(rows).to_numpy(),
            "fitted_population": fit["fitted_marginal"].to_numpy(),
            "fitted_patient": fit["fitted"].to_numpy(),
        }
    )
    if patients is not None:
        out = out[out["patient_id"].isin([str(p) for p in patients])]
    return out.sort_values(["patient_id", "session"], kind="stable").reset_index(drop=True)


def example_patients(view: CohortView, n: int = 6, *, seed: int = 0) -> list[str]:
    """A reproducible handful of patients to look at: half with an illness episode, half without.

    Patients are drawn at random (``seed``) among those with at least three sessions.
    """
    s = view.sessions
    counts = s.groupby("patient_id").size()
    eligible = counts[counts >= 3].index.astype(str)
    ever = (ill_flags(s) == 1).groupby(s["patient_id"].astype(str)).any()
    rng = np.random.default_rng(seed)
    ill_ids = sorted(p for p in eligible if ever.get(p, False))
    well_ids = sorted(p for p in eligible if not ever.get(p, False))
    k_ill = min(len(ill_ids), n // 2 + n % 2)
    k_well = min(len(well_ids), n - k_ill)
    k_ill = min(len(ill_ids), n - k_well)
    picked = list(rng.choice(ill_ids, k_ill, replace=False)) if k_ill else []
    picked += list(rng.choice(well_ids, k_well, replace=False)) if k_well else []
    return sorted(str(p) for p in picked)
