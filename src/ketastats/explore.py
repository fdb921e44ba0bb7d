"""Look around a cohort that the workflow has already run: the notebooks' toolbox.

The analyst notebooks (``notebooks/``) hold no analysis logic; they call the functions
here. Everything reads what the workflow wrote (``data/processed/<cohort>/sessions.parquet``
and ``data/processed/<cohort>/models/<name>.json``) and never refits a model.

Model JSON files are read defensively: a file needs only ``fixed`` (term -> estimate,
se) to appear in the comparisons; ``coefficients``, ``random``, ``blups``, ``status``,
``label``, ``kind`` and ``illness_effect`` are used when present, so that models of any
kind (mixed, GEE, logistic, cytokine, mediation) sit side by side.

Examples
--------
>>> view = load_cohort("demo")                                    # doctest: +SKIP
>>> model_table(view)[["model", "nobs", "illness_estimate"]]      # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .exceptions import KetastatsError

__all__ = [
    "CohortView",
    "find_root",
    "list_cohorts",
    "load_cohort",
    "cohort_overview",
    "missingness_table",
    "score_by_session",
    "illness_episodes",
    "episode_summary",
    "model_table",
    "coefficient_table",
    "illness_effects",
    "try_model",
    "cytokine_markers",
    "cytokine_summary",
    "cytokine_by_illness",
    "default_mixed_model",
    "blup_table",
    "predict_trajectories",
    "example_patients",
    "plot_score_distributions",
    "plot_missingness",
    "plot_illness_timeline",
    "plot_illness_effects",
    "plot_cytokines",
    "plot_blups",
    "plot_trajectories",
]

log = logging.getLogger(__name__)

#: Terms that carry the illness effect, in order of preference (first found is used).
ILLNESS_TERMS: tuple[str, ...] = ("ill", "ill_within", "ill[T.1]", "ill[T.1.0]", "ill_lag1", "ever_ill")

_CYTOKINE_UNITS_FALLBACK = {
    "il6_pg_ml": "pg/mL",
    "tnfa_pg_ml": "pg/mL",
    "il1b_pg_ml": "pg/mL",
    "crp_mg_l": "mg/L",
}


class CohortNotRunError(KetastatsError):
    """The cohort asked for has no processed data yet (the workflow has not run it)."""


# ------------------------------------------------------------------- loading
def find_root(start: str | os.PathLike | None = None) -> Path:
    """The project folder: ``start`` or the nearest folder above it holding a ``Snakefile``.

    Lets a notebook work both when the workflow runs it from the project folder and when an
    analyst opens it in JupyterLab from ``notebooks/``.

    Parameters
    ----------
    start : path, optional
        Where to start looking (default: the working directory).

    Raises
    ------
    KetastatsError
        If neither ``start`` nor any folder above it holds a ``Snakefile``.
    """
    here = Path(start if start is not None else os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "Snakefile").is_file():
            return folder
    raise KetastatsError(
        f"no ketastats project (a folder with a Snakefile) at or above {here}; "
        "pass root='path/to/project' or start the notebook inside the project folder"
    )


def list_cohorts(root: str | os.PathLike | None = None) -> list[str]:
    """Names of the cohorts that have a processed session table under ``root``."""
    base = find_root(root) / "data" / "processed"
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / "sessions.parquet").is_file())


@dataclass
class CohortView:
    """What the workflow produced for one cohort, loaded for reading.

    Attributes
    ----------
    cohort : str
        The cohort's name (as in ``config/config.yaml``).
    root : pathlib.Path
        The project folder.
    sessions : pandas.DataFrame
        The analysis table ``data/processed/<cohort>/sessions.parquet``.
    models : dict
        Model name -> the model's JSON (as written by the ``fit_model`` rule), sorted by name.
    results : dict or None
        ``reports/<cohort>/results.json`` when the report has been rendered.
    """

    cohort: str
    root: Path
    sessions: pd.DataFrame
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    results: dict[str, Any] | None = None

    @property
    def processed_dir(self) -> Path:
        return self.root / "data" / "processed" / self.cohort

    @property
    def report_dir(self) -> Path:
        return self.root / "reports" / self.cohort

    def __repr__(self) -> str:
        n_pat = self.sessions["patient_id"].nunique() if "patient_id" in self.sessions else 0
        # no absolute path here: executed notebooks show it, and must not depend on where
        # the project sits (same inputs, same bytes)
        return (
            f"CohortView(cohort={self.cohort!r}, patients={n_pat}, "
            f"sessions={len(self.sessions)}, models={list(self.models)})"
        )


def load_cohort(cohort: str, root: str | os.PathLike | None = None) -> CohortView:
    """Load a cohort's processed data and model results by name.

    Parameters
    ----------
    cohort : str
        Cohort name, as in ``config/config.yaml`` (``"demo"`` for the bundled demo).
    root : path, optional
        The project folder, or any folder inside it (default: the working directory);
        see :func:`find_root`.

    Returns
    -------
    CohortView

    Raises
    ------
    KetastatsError
        If the cohort has not been run (no ``sessions.parquet``), naming the cohorts that have.
    """
    project = find_root(root)
    processed = project / "data" / "processed" / cohort
    table = processed / "sessions.parquet"
    if not table.is_file():
        have = list_cohorts(project)
        raise CohortNotRunError(
            f"cohort {cohort!r} has no processed data ({table} is missing); run "
            f"`snakemake --cores 2` in {project} first"
            + (f" or pick one of the cohorts already run: {', '.join(have)}" if have else "")
        )
    sessions = pd.read_parquet(table)
    models: dict[str, dict[str, Any]] = {}
    for path in sorted((processed / "models").glob("*.json")):
        try:
            models[path.stem] = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            log.warning("skipping model %s: not valid JSON (%s)", path, exc)
    results_path = project / "reports" / cohort / "results.json"
    results = json.loads(results_path.read_text(encoding="utf-8")) if results_path.is_file() else None
    log.info("cohort %s: %d sessions, models %s", cohort, len(sessions), ", ".join(models) or "none")
    return CohortView(cohort=cohort, root=project, sessions=sessions, models=models, results=results)


# -------------------------------------------------------------- the sessions
def _ill(sessions: pd.DataFrame) -> pd.Series:
    if "ill" not in sessions.columns:
        return pd.Series(np.nan, index=sessions.index)
    return pd.to_numeric(sessions["ill"], errors="coerce")


def cohort_overview(sessions: pd.DataFrame) -> pd.DataFrame:
    """Counts that describe a cohort: patients, sessions, illness.

    Returns
    -------
    pandas.DataFrame
        Columns ``quantity`` and ``value``, one row per count.
    """
    per_patient = sessions.groupby("patient_id", sort=True).size()
    ill = _ill(sessions)
    episodes = illness_episodes(sessions)
    ever = ill.groupby(sessions["patient_id"]).max()
    rows = [
        ("patients", int(sessions["patient_id"].nunique())),
        ("sessions", len(sessions)),
        ("sessions per patient, median", float(per_patient.median()) if len(per_patient) else math.nan),
        ("sessions per patient, min", int(per_patient.min()) if len(per_patient) else 0),
        ("sessions per patient, max", int(per_patient.max()) if len(per_patient) else 0),
        ("sessions with illness", int((ill == 1).sum())),
        ("sessions with illness unknown", int(ill.isna().sum())),
        ("patients ever ill", int((ever == 1).sum())),
        ("illness episodes", len(episodes)),
    ]
    return pd.DataFrame(rows, columns=["quantity", "value"], dtype=object)


def missingness_table(sessions: pd.DataFrame, *, only_missing: bool = True) -> pd.DataFrame:
    """Missing values per column, most missing first.

    Cytokine values below the detection limit are *censored*, not missing: for a marker
    with a ``<marker>_censored`` column, only values that are neither measured nor censored
    count as missing.

    Returns
    -------
    pandas.DataFrame
        Columns ``column``, ``n_missing``, ``pct_missing`` (0-100).
    """
    n = len(sessions)
    rows = []
    for col in sessions.columns:
        miss = sessions[col].isna()
        flag = f"{col}_censored"
        if flag in sessions.columns:
            miss = miss & ~sessions[flag].fillna(False).astype(bool)
        rows.append((col, int(miss.sum())))
    out = pd.DataFrame(rows, columns=["column", "n_missing"])
    out["pct_missing"] = 100.0 * out["n_missing"] / n if n else math.nan
    if only_missing:
        out = out[out["n_missing"] > 0]
    return out.sort_values(["n_missing", "column"], ascending=[False, True], kind="stable").reset_index(
        drop=True
    )


def score_by_session(sessions: pd.DataFrame, score: str = "madrs") -> pd.DataFrame:
    """Mean, SD and count of ``score`` per session number, by illness at that session.

    Returns
    -------
    pandas.DataFrame
        Index ``session``; columns ``n``, ``mean``, ``sd`` for all sessions and
        ``mean_well``, ``mean_ill``, ``n_ill`` by the session's illness status.
    """
    if score not in sessions.columns:
        raise KetastatsError(f"score {score!r} is not a column of the session table")
    df = sessions[["session", score]].assign(ill=_ill(sessions)).dropna(subset=[score])
    g = df.groupby("session")[score]
    out = pd.DataFrame({"n": g.size(), "mean": g.mean(), "sd": g.std()})
    out["mean_well"] = df[df["ill"] == 0].groupby("session")[score].mean()
    out["mean_ill"] = df[df["ill"] == 1].groupby("session")[score].mean()
    out["n_ill"] = df[df["ill"] == 1].groupby("session").size().reindex(out.index, fill_value=0)
    return out


def illness_episodes(sessions: pd.DataFrame) -> pd.DataFrame:
    """Illness episodes: runs of consecutive sessions rated ill, per patient.

    Returns
    -------
    pandas.DataFrame
        One row per episode: ``patient_id``, ``episode`` (1, 2, ... within patient),
        ``first_session``, ``last_session``, ``n_sessions``, ``illness_type`` (most frequent
        within the episode) and ``max_severity``.

    Examples
    --------
    >>> df = pd.DataFrame({"patient_id": ["A"] * 5, "session": [1, 2, 3, 4, 5],
    ...                    "ill": [0, 1, 1, 0, 1]})
    >>> illness_episodes(df)[["episode", "first_session", "n_sessions"]].to_numpy().tolist()
    [[1, 2, 2], [2, 5, 1]]
    """
    cols = [
        "patient_id",
        "episode",
        "first_session",
        "last_session",
        "n_sessions",
        "illness_type",
        "max_severity",
    ]
    if "ill" not in sessions.columns or sessions.empty:
        return pd.DataFrame(columns=cols)
    df = sessions.assign(_ill=_ill(sessions).fillna(0) == 1).sort_values(
        ["patient_id", "session"], kind="stable"
    )
    new_patient = df["patient_id"] != df["patient_id"].shift()
    starts = df["_ill"] & (new_patient | ~df["_ill"].shift(fill_value=False))
    df["_episode"] = starts.groupby(df["patient_id"]).cumsum()
    ill = df[df["_ill"]]
    if ill.empty:
        return pd.DataFrame(columns=cols)
    severities = ["mild", "moderate", "severe"]
    rows = []
    for (pid, ep), g in ill.groupby(["patient_id", "_episode"], sort=True):
        types = g["illness_type"].dropna().astype(str) if "illness_type" in g else pd.Series(dtype=str)
        sev = g["illness_severity"].dropna().astype(str) if "illness_severity" in g else pd.Series(dtype=str)
        ranked = [s for s in severities if s in set(sev)]
        rows.append(
            (
                pid,
                int(ep),
                int(g["session"].min()),
                int(g["session"].max()),
                len(g),
                types.mode().iloc[0] if len(types) else None,
                ranked[-1] if ranked else None,
            )
        )
    return pd.DataFrame(rows, columns=cols)


def episode_summary(episodes: pd.DataFrame) -> pd.DataFrame:
    """Episodes counted by illness type and worst severity.

    Returns
    -------
    pandas.DataFrame
        Index ``illness_type`` (``"unknown"`` when not recorded); one column per severity
        plus ``total``.
    """
    if episodes.empty:
        return pd.DataFrame(columns=["total"])
    e = episodes.assign(
        illness_type=episodes["illness_type"].fillna("unknown"),
        max_severity=episodes["max_severity"].fillna("unknown"),
    )
    out = pd.crosstab(e["illness_type"], e["max_severity"])
    order = [s for s in ("mild", "moderate", "severe", "unknown") if s in out.columns]
    out = out[order]
    out["total"] = out.sum(axis=1)
    out.columns.name = None
    return out.sort_values("total", ascending=False, kind="stable")


# ------------------------------------------------------------------ models
def _coefficients(m: Mapping[str, Any]) -> pd.DataFrame:
    cols = ["term", "estimate", "se", "ci_low", "ci_high", "p_value"]
    if isinstance(m.get("coefficients"), list) and m["coefficients"]:
        df = pd.DataFrame(m["coefficients"])
    elif isinstance(m.get("fixed"), Mapping):
        df = pd.DataFrame(
            [{"term": t, **(v if isinstance(v, Mapping) else {"estimate": v})} for t, v in m["fixed"].items()]
        )
    else:
        return pd.DataFrame(columns=cols)
    for c in cols:
        if c not in df.columns:
            df[c] = np.nan
    df[cols[1:]] = df[cols[1:]].apply(pd.to_numeric, errors="coerce")
    return df[cols]


def _outcome(m: Mapping[str, Any]) -> str | None:
    spec = m.get("spec") if isinstance(m.get("spec"), Mapping) else {}
    formula = m.get("formula") or spec.get("formula")
    if isinstance(formula, str) and "~" in formula:
        return formula.split("~", 1)[0].strip() or None
    return spec.get("outcome") or m.get("outcome")


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
    method, engine, group, alpha
        As in a ``models:`` entry of the config; ``alpha`` sets the CI level (1 - alpha).

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
    from .pipeline import step_fit

    spec = {"formula": formula, "method": method, "engine": engine, "group": group}
    if re_formula:
        spec["re_formula"] = re_formula
    with tempfile.TemporaryDirectory(prefix="ketastats-trial-") as tmp:
        out = Path(tmp) / f"{name}.json"
        step_fit(view.sessions, spec, out, alpha=alpha)
        fitted = json.loads(out.read_text(encoding="utf-8"))
    fitted.setdefault("label", f"{name} (fitted in the notebook)")
    return dataclasses.replace(view, models={**view.models, name: fitted})


# --------------------------------------------------------------- cytokines
def cytokine_markers(sessions: pd.DataFrame) -> dict[str, str]:
    """Cytokine marker columns present in ``sessions`` -> unit."""
    try:
        from .contract import CYTOKINES as units
    except ImportError:  # pragma: no cover - the contract ships with the package
        units = _CYTOKINE_UNITS_FALLBACK
    return {m: u for m, u in units.items() if m in sessions.columns}


def _censored(sessions: pd.DataFrame, marker: str) -> pd.Series:
    flag = f"{marker}_censored"
    if flag in sessions.columns:
        return sessions[flag].fillna(False).astype(bool)
    return pd.Series(False, index=sessions.index)


def cytokine_summary(sessions: pd.DataFrame) -> pd.DataFrame:
    """Per marker: how often measured, how often below the detection limit, and the spread.

    Quantiles are of the detected values only; censored values are counted, never
    substituted.

    Returns
    -------
    pandas.DataFrame
        One row per marker: ``marker``, ``unit``, ``n_measured``, ``n_detected``,
        ``n_censored``, ``pct_censored`` (of measured), ``median``, ``q1``, ``q3``,
        ``patients_measured``.
    """
    rows = []
    for marker, unit in cytokine_markers(sessions).items():
        value = pd.to_numeric(sessions[marker], errors="coerce")
        cens = _censored(sessions, marker)
        detected = value.notna()
        measured = detected | cens
        d = value[detected]
        rows.append(
            {
                "marker": marker,
                "unit": unit,
                "n_measured": int(measured.sum()),
                "n_detected": int(detected.sum()),
                "n_censored": int(cens.sum()),
                "pct_censored": 100.0 * cens.sum() / measured.sum() if measured.any() else np.nan,
                "median": d.median() if len(d) else np.nan,
                "q1": d.quantile(0.25) if len(d) else np.nan,
                "q3": d.quantile(0.75) if len(d) else np.nan,
                "patients_measured": int(sessions.loc[measured, "patient_id"].nunique()),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "marker",
            "unit",
            "n_measured",
            "n_detected",
            "n_censored",
            "pct_censored",
            "median",
            "q1",
            "q3",
            "patients_measured",
        ],
    )


def cytokine_by_illness(sessions: pd.DataFrame) -> pd.DataFrame:
    """Detected cytokine values by illness at the session: count, median, censored share.

    Returns
    -------
    pandas.DataFrame
        One row per marker and illness status (``well``/``ill``): ``marker``, ``status``,
        ``n_measured``, ``pct_censored``, ``median``, ``q1``, ``q3``.
    """
    ill = _ill(sessions)
    rows = []
    for marker in cytokine_markers(sessions):
        value = pd.to_numeric(sessions[marker], errors="coerce")
        cens = _censored(sessions, marker)
        for status, mask in (("well", ill == 0), ("ill", ill == 1)):
            measured = mask & (value.notna() | cens)
            d = value[mask & value.notna()]
            rows.append(
                {
                    "marker": marker,
                    "status": status,
                    "n_measured": int(measured.sum()),
                    "pct_censored": 100.0 * (cens & mask).sum() / measured.sum()
                    if measured.any()
                    else np.nan,
                    "median": d.median() if len(d) else np.nan,
                    "q1": d.quantile(0.25) if len(d) else np.nan,
                    "q3": d.quantile(0.75) if len(d) else np.nan,
                }
            )
    return pd.DataFrame(
        rows, columns=["marker", "status", "n_measured", "pct_censored", "median", "q1", "q3"]
    )


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


def _group_column(m: Mapping[str, Any]) -> str:
    spec = m.get("spec") if isinstance(m.get("spec"), Mapping) else {}
    random = m.get("random") if isinstance(m.get("random"), Mapping) else {}
    return spec.get("group") or random.get("group") or "patient_id"


def predict_trajectories(
    view: CohortView, model: str | None = None, patients: Iterable[str] | None = None
) -> pd.DataFrame:
    """Observed scores next to a linear mixed model's fitted values, per patient and session.

    ``fitted_population`` is ``X beta`` (the average patient); ``fitted_patient`` adds the
    patient's BLUPs, ``X beta + Z b_i``. Both are rebuilt from the model JSON and the
    processed table (the model is not refitted).

    Parameters
    ----------
    view : CohortView
    model : str, optional
        A linear mixed model with ``fixed``, ``blups`` and a ``formula`` (in ``spec`` or
        top level); ``re_formula`` absent means a random intercept. Default:
        :func:`default_mixed_model`.
    patients : iterable of str, optional
        Restrict to these patients (default: all).

    Returns
    -------
    pandas.DataFrame
        ``patient_id``, ``session``, ``observed``, ``ill``, ``fitted_population``,
        ``fitted_patient``; rows with a missing predictor are dropped.
    """
    import patsy

    model = model or default_mixed_model(view)
    m = _model(view, model)
    blups = blup_table(view, model)
    spec = m.get("spec") if isinstance(m.get("spec"), Mapping) else {}
    formula = m.get("formula") or spec.get("formula")
    if not formula or "~" not in formula:
        raise KetastatsError(f"model {model!r} has no formula; cannot rebuild its fitted values")
    re_formula = m.get("re_formula") or spec.get("re_formula") or "1"
    group = _group_column(m)
    data = view.sessions.copy()
    data[group] = data[group].astype(str)
    if patients is not None:
        wanted = [str(p) for p in patients]
        data = data[data[group].isin(wanted)]
    outcome, rhs = (s.strip() for s in formula.split("~", 1))
    X = patsy.dmatrix(rhs, data, return_type="dataframe", NA_action="drop")
    Z = patsy.dmatrix(re_formula.lstrip("~").strip() or "1", data.loc[X.index], return_type="dataframe")
    fixed = m.get("fixed", {})
    beta = pd.Series(
        {t: (v["estimate"] if isinstance(v, Mapping) else v) for t, v in fixed.items()}, dtype=float
    )
    missing = [c for c in X.columns if c not in beta.index]
    if missing:
        raise KetastatsError(
            f"model {model!r}: design columns {missing} have no estimate in its JSON "
            f"(estimates: {', '.join(beta.index)}); was it fitted to this table?"
        )
    b = blups.set_index("patient_id").reindex(data.loc[X.index, group])
    zcols = [c for c in Z.columns if c in b.columns]
    if len(zcols) != Z.shape[1]:
        raise KetastatsError(
            f"model {model!r}: BLUP columns {list(b.columns)} do not match {list(Z.columns)}"
        )
    pop = X.to_numpy(float) @ beta[X.columns].to_numpy(float)
    dev = (Z[zcols].to_numpy(float) * b[zcols].to_numpy(float)).sum(axis=1)
    used = data.loc[X.index]
    out = pd.DataFrame(
        {
            "patient_id": used[group].to_numpy(),
            "session": used["session"].to_numpy(),
            "observed": pd.to_numeric(used[outcome], errors="coerce").to_numpy()
            if outcome in used
            else np.nan,
            "ill": _ill(used).to_numpy(),
            "fitted_population": pop,
            "fitted_patient": pop + dev,
        }
    )
    return out.sort_values(["patient_id", "session"], kind="stable").reset_index(drop=True)


def example_patients(view: CohortView, n: int = 6, *, seed: int = 0) -> list[str]:
    """A reproducible handful of patients to look at: half with an illness episode, half without.

    Patients are drawn at random (``seed``) among those with at least three sessions.
    """
    s = view.sessions
    counts = s.groupby("patient_id").size()
    eligible = counts[counts >= 3].index.astype(str)
    ever = (_ill(s) == 1).groupby(s["patient_id"].astype(str)).any()
    rng = np.random.default_rng(seed)
    ill_ids = sorted(p for p in eligible if ever.get(p, False))
    well_ids = sorted(p for p in eligible if not ever.get(p, False))
    k_ill = min(len(ill_ids), n // 2 + n % 2)
    k_well = min(len(well_ids), n - k_ill)
    k_ill = min(len(ill_ids), n - k_well)
    picked = list(rng.choice(ill_ids, k_ill, replace=False)) if k_ill else []
    picked += list(rng.choice(well_ids, k_well, replace=False)) if k_well else []
    return sorted(str(p) for p in picked)


# ------------------------------------------------------------------- plots
def _figure(nrows: int = 1, ncols: int = 1, *, width: float = 10.0, height: float = 3.6, **kw):
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def plot_score_distributions(sessions: pd.DataFrame, score: str = "madrs") -> Figure:
    """Baseline score, score by session (ill vs well) and last-session change."""
    fig, axes = _figure(1, 3, width=12)
    ax = axes[0, 0]
    base = f"{score}_baseline"
    first = sessions.groupby("patient_id")[base].first() if base in sessions else pd.Series(dtype=float)
    ax.hist(first.dropna(), bins=20, color="tab:blue", alpha=0.8)
    ax.set(title=f"Baseline {score.upper()} (one per patient)", xlabel=score.upper(), ylabel="patients")
    ax = axes[0, 1]
    tab = score_by_session(sessions, score)
    ax.plot(tab.index, tab["mean_well"], marker="o", label="well at that session")
    ax.plot(tab.index, tab["mean_ill"], marker="s", ls="", color="tab:red", label="ill at that session")
    ax.set(title=f"Mean {score.upper()} by session", xlabel="session", ylabel=score.upper())
    ax.legend(frameon=False)
    ax = axes[0, 2]
    change = f"{score}_change"
    if change in sessions:
        last = sessions.sort_values("session").groupby("patient_id")[change].last()
        ax.hist(last.dropna(), bins=20, color="tab:green", alpha=0.8)
    ax.set(title="Change from baseline at the last session", xlabel="change", ylabel="patients")
    return fig


def plot_missingness(sessions: pd.DataFrame, top: int = 20) -> Figure:
    """Horizontal bars: percent missing of the ``top`` most incomplete columns."""
    tab = missingness_table(sessions).head(top)
    fig, axes = _figure(width=8, height=max(2.0, 0.25 * len(tab) + 1))
    ax = axes[0, 0]
    ax.barh(tab["column"][::-1], tab["pct_missing"][::-1], color="0.5")
    ax.set(
        xlabel="% of sessions missing", xlim=(0, 100), title="Missing values (censored cytokines not counted)"
    )
    return fig


def plot_illness_timeline(sessions: pd.DataFrame) -> Figure:
    """When illness happens: ill sessions by session number and by illness type."""
    ill = _ill(sessions) == 1
    fig, axes = _figure(1, 2, width=11)
    ax = axes[0, 0]
    by_session = ill.groupby(sessions["session"]).mean() * 100
    ax.bar(by_session.index, by_session.to_numpy(), color="tab:red", alpha=0.8)
    ax.set(title="Sessions rated ill, by session", xlabel="session", ylabel="% of sessions")
    ax = axes[0, 1]
    if "illness_type" in sessions:
        types = sessions.loc[ill, "illness_type"].astype(object).fillna("unknown").value_counts()
        ax.barh(types.index[::-1].astype(str), types.to_numpy()[::-1], color="tab:orange")
    ax.set(title="Ill sessions by illness type", xlabel="sessions")
    return fig


def plot_illness_effects(effects: pd.DataFrame) -> Figure:
    """Forest plot of the illness effect (estimate and CI) across models."""
    fig, axes = _figure(width=8, height=max(2.0, 0.5 * len(effects) + 1.2))
    ax = axes[0, 0]
    y = np.arange(len(effects))[::-1]
    est = effects["estimate"].to_numpy(float)
    lo = effects["ci_low"].to_numpy(float)
    hi = effects["ci_high"].to_numpy(float)
    err = np.vstack([est - lo, hi - est])
    ax.errorbar(est, y, xerr=np.where(np.isfinite(err), err, 0), fmt="o", color="k", capsize=3)
    ax.axvline(0, color="0.6", ls="--")
    ax.set_yticks(y, [f"{lab} ({t})" for lab, t in zip(effects["label"], effects["term"])])
    ax.set(xlabel="illness effect (outcome units), with CI", title="Illness effect by model")
    return fig


def plot_cytokines(sessions: pd.DataFrame) -> Figure:
    """Detected values (log scale) by illness at the session, one panel per marker.

    Values below the detection limit are not drawn; each panel's title gives their share.
    """
    markers = list(cytokine_markers(sessions))
    fig, axes = _figure(1, max(1, len(markers)), width=3.2 * max(1, len(markers)))
    ill = _ill(sessions)
    units = cytokine_markers(sessions)
    for ax, marker in zip(axes[0], markers):
        ax.set_ylabel(f"detected values ({units[marker]})")
        value = pd.to_numeric(sessions[marker], errors="coerce")
        data = [value[(ill == s) & value.notna() & (value > 0)].to_numpy() for s in (0, 1)]
        keep = [(d, lab) for d, lab in zip(data, ("well", "ill")) if len(d)]
        if keep:
            ax.boxplot([d for d, _ in keep])
            ax.set_xticks(range(1, len(keep) + 1), [lab for _, lab in keep])
            ax.set_yscale("log")
        pct = cytokine_summary(sessions).set_index("marker").loc[marker, "pct_censored"]
        ax.set_title(f"{marker}\n{pct:.0f}% below LOD" if np.isfinite(pct) else marker)
    if not markers:
        axes[0, 0].text(0.5, 0.5, "no cytokine columns", ha="center", va="center")
    return fig


def plot_blups(blups: pd.DataFrame) -> Figure:
    """Random intercept against random slope (when there is one), coloured by ever ill."""
    effects = [c for c in blups.columns if c not in ("patient_id", "ever_ill")]
    fig, axes = _figure(width=6, height=4.5)
    ax = axes[0, 0]
    colour = (
        blups["ever_ill"].map({1: "tab:red", 0: "tab:blue"}).fillna("0.5") if "ever_ill" in blups else "k"
    )
    if len(effects) >= 2:
        ax.scatter(blups[effects[0]], blups[effects[1]], c=colour, s=14, alpha=0.7)
        ax.set(xlabel=f"BLUP: {effects[0]}", ylabel=f"BLUP: {effects[1]}")
    elif effects:
        ax.scatter(blups[effects[0]], np.arange(len(blups)), c=colour, s=10)
        ax.set(xlabel=f"BLUP: {effects[0]}", ylabel="patient (index)")
    ax.set_title("Patient random effects (red: ever ill, blue: never ill)")
    return fig


def plot_trajectories(traj: pd.DataFrame, ncols: int = 3) -> Figure:
    """One panel per patient: observed score, the patient's fit (BLUPs) and the average fit."""
    ids = list(dict.fromkeys(traj["patient_id"]))
    nrows = max(1, -(-len(ids) // ncols))
    fig, axes = _figure(nrows, ncols, width=3.6 * ncols, height=2.6 * nrows, sharex=True, sharey=True)
    for ax in axes.ravel()[len(ids) :]:
        ax.set_visible(False)
    for ax, pid in zip(axes.ravel(), ids):
        g = traj[traj["patient_id"] == pid]
        ax.plot(g["session"], g["fitted_population"], color="0.6", ls="--", label="average patient")
        ax.plot(g["session"], g["fitted_patient"], color="tab:blue", label="this patient (BLUPs)")
        well = g["ill"] != 1
        ax.scatter(g.loc[well, "session"], g.loc[well, "observed"], color="k", s=14, label="observed")
        ax.scatter(
            g.loc[~well, "session"], g.loc[~well, "observed"], color="tab:red", s=30, marker="s", label="ill"
        )
        ax.set_title(str(pid), fontsize=9)
    axes[0, 0].legend(fontsize=7, frameon=False)
    for ax in axes[-1]:
        ax.set_xlabel("session")
    return fig
