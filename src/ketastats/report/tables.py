"""Table 1: patient characteristics by ever-ill status, small cells suppressed.

Table 1 is built at patient level (one row per patient: the first session's values, the
number of sessions and the length of the course), as recommended for session-level data.
Continuous variables are summarised as mean (SD), or as median [Q1, Q3] when their
distribution is skewed (absolute sample skewness above 1); categorical variables as
n (%) of the patients with a known value. Each variable has a count of patients with a
missing value, and the standardized mean difference (SMD) between ever-ill and never-ill
patients: for a continuous variable ``(m1 - m0) / sqrt((s1^2 + s0^2) / 2)``, for a
categorical one the multivariate form of Yang & Dalton (2012), which for two levels is
``(p1 - p0) / sqrt((p1 (1 - p1) + p0 (1 - p0)) / 2)``.

Counts are suppressed by the release's disclosure layer
(:class:`ketastats.report.suppression.Disclosure`): the levels and the missing count of a
variable add up to the column's patient count, and the never-ill and ever-ill cells add up
to the overall cell, so a suppressed cell cannot be recovered from either direction. A
statistic (mean, SD, median, percentage) computed from 1 to ``threshold`` patients is not
shown either, nor is the SMD of a categorical variable with a suppressed count (see
:func:`table_one`).

References
----------
Austin, P. C. (2009). Balance diagnostics for comparing the distribution of baseline
covariates between treatment groups in propensity-score matched samples. *Statistics in
Medicine*, 28(25), 3083-3107.

Yang, D., & Dalton, J. E. (2012). A unified approach to measuring the effect size between
two groups using SAS. *SAS Global Forum*, paper 335-2012.

Pollard, T. J., Johnson, A. E. W., Raffa, J. D., & Mark, R. G. (2018). tableone: an open
source Python package for producing summary statistics for research papers. *JAMIA Open*,
1(1), 26-31.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .suppression import SUPPRESSED, Disclosure, SuppressionLog, is_small

__all__ = [
    "GROUPS",
    "TABLE1_VARIABLES",
    "patient_level",
    "table_one",
    "table_one_frame",
    "smd_continuous",
    "smd_categorical",
]

#: Table 1 columns: key, heading, value of ``ever_ill`` (None = all patients)
GROUPS: list[tuple[str, str, int | None]] = [
    ("never_ill", "Never ill", 0),
    ("ever_ill", "Ever ill", 1),
    ("overall", "Overall", None),
]

#: Table 1 rows: patient-level column, label, kind ("continuous" | "categorical" | "auto")
TABLE1_VARIABLES: list[tuple[str, str, str]] = [
    ("age", "Age (years)", "continuous"),
    ("sex", "Sex", "categorical"),
    ("bmi", "BMI (kg/m²)", "continuous"),
    ("madrs_baseline", "MADRS at baseline", "continuous"),
    ("hamd17_baseline", "HAM-D 17 at baseline", "continuous"),
    ("phq9_baseline", "PHQ-9 at baseline", "continuous"),
    ("qids_sr16_baseline", "QIDS-SR16 at baseline", "continuous"),
    ("bdi2_baseline", "BDI-II at baseline", "continuous"),
    ("n_sessions", "Sessions recorded", "continuous"),
    ("course_days", "Length of course (days)", "continuous"),
    ("n_ill_sessions", "Sessions with acute illness", "continuous"),
    ("dose_mg_kg", "Ketamine dose (mg/kg, first session)", "continuous"),
    ("antidepressant", "Antidepressant at baseline", "categorical"),
    ("benzodiazepine", "Benzodiazepine at baseline", "categorical"),
]

_SKEW_LIMIT = 1.0
_MISSING = "(missing)"


def patient_level(sessions: pd.DataFrame) -> pd.DataFrame:
    """One row per patient: first-session values, sessions recorded, course length, ever ill.

    Parameters
    ----------
    sessions : pandas.DataFrame
        The prepared session table (``ketastats.prepare.prepare_sessions``).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``patient_id`` (sorted), with the first session's columns plus
        ``n_sessions``, ``course_days``, ``n_ill_sessions`` and ``ever_ill``.
    """
    df = sessions.sort_values(["patient_id", "session"], kind="stable")
    g = df.groupby("patient_id", sort=True)
    # groupby.first skips NaN; Table 1 wants the first session's own value (missing if missing)
    first = df.drop_duplicates("patient_id", keep="first").set_index("patient_id").sort_index()
    out = first.copy()
    out["n_sessions"] = g.size().astype(float)
    if "day" in df.columns:
        out["course_days"] = (g["day"].max() - g["day"].min()).astype(float)
    if "ill" in df.columns:
        ill = pd.to_numeric(df["ill"], errors="coerce")
        out["n_ill_sessions"] = ill.groupby(df["patient_id"]).sum(min_count=1).astype(float)
        out["ever_ill"] = (ill.groupby(df["patient_id"]).max() > 0).astype(int)
    elif "ever_ill" not in out.columns:
        out["ever_ill"] = 0
    return out


def smd_continuous(x1: Sequence[float], x0: Sequence[float]) -> float | None:
    """Standardized mean difference ``(m1 - m0) / sqrt((s1^2 + s0^2) / 2)`` (Austin 2009).

    Examples
    --------
    >>> round(smd_continuous([1, 2, 3], [0, 1, 2]), 6)
    1.0
    """
    a = np.asarray(pd.Series(x1, dtype=float).dropna())
    b = np.asarray(pd.Series(x0, dtype=float).dropna())
    if len(a) < 2 or len(b) < 2:
        return None
    pooled = math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    if pooled == 0:
        return None
    return float((a.mean() - b.mean()) / pooled)


def smd_categorical(x1: Sequence[Any], x0: Sequence[Any]) -> float | None:
    """SMD of a categorical variable, Yang & Dalton (2012): ``sqrt((T-C)' S^-1 (T-C))``.

    ``T`` and ``C`` are the proportions of levels 2..k in each group and ``S`` the average
    of the two groups' multinomial covariance matrices. For two levels this is
    ``|p1 - p0| / sqrt((p1 (1 - p1) + p0 (1 - p0)) / 2)``. Missing values are ignored.
    """
    a = pd.Series(x1, dtype=object).dropna().astype(str)
    b = pd.Series(x0, dtype=object).dropna().astype(str)
    if a.empty or b.empty:
        return None
    levels = sorted(set(a) | set(b))
    if len(levels) < 2:
        return 0.0
    t = np.array([(a == lv).mean() for lv in levels[1:]])
    c = np.array([(b == lv).mean() for lv in levels[1:]])

    def cov(p: np.ndarray) -> np.ndarray:
        return np.diag(p) - np.outer(p, p)

    s = (cov(t) + cov(c)) / 2
    d = t - c
    try:
        val = float(d @ np.linalg.solve(s, d))
    except np.linalg.LinAlgError:
        val = float(d @ np.linalg.pinv(s) @ d)
    return math.sqrt(max(val, 0.0))


def _skewed(x: pd.Series) -> bool:
    x = x.dropna().astype(float)
    if len(x) < 3 or x.std(ddof=0) == 0:
        return False
    return abs(float(((x - x.mean()) ** 3).mean() / x.std(ddof=0) ** 3)) > _SKEW_LIMIT


def _categorical_values(col: pd.Series) -> pd.Series:
    """Categorical values as strings; 0/1 flags as "no"/"yes"."""
    num = pd.to_numeric(col, errors="coerce")
    if col.notna().sum() and num.notna().sum() == col.notna().sum() and set(num.dropna().unique()) <= {0, 1}:
        return num.map({0: "no", 1: "yes"}).astype(object)
    return col.astype(object).where(col.notna()).map(lambda v: v if v is None or v != v else str(v))


def _fmt(x: float | None, d: int = 1) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{d}f}"


def table_one(
    sessions: pd.DataFrame, log: SuppressionLog | Disclosure, *, where: str = "Table 1"
) -> dict[str, Any]:
    """Table 1 by ever-ill status, with missing counts, SMDs and small cells suppressed.

    Parameters
    ----------
    sessions : pandas.DataFrame
        The prepared session table.
    log : SuppressionLog or Disclosure
        A :class:`~ketastats.report.suppression.SuppressionLog`: the table is suppressed on
        its own and the log receives the suppressed cells. A
        :class:`~ketastats.report.suppression.Disclosure` layer: the table's counts are
        registered with the release's other counts and the result holds placeholders, which
        the caller fills after ``resolve()`` (:func:`ketastats.report.build_results` does).
    where : str
        Name of the table in the suppression log.

    Returns
    -------
    dict
        ``columns`` (key, label), ``n`` (patients per column, suppressed) and ``rows``: one
        per variable and, for categorical variables, one per level. A row has ``variable``,
        ``label``, ``level``, ``kind`` (``"mean_sd"``, ``"median_iqr"``, ``"n_pct"``),
        ``cells`` (column key -> dict of numbers, suppressed where needed, and the
        ``text`` shown), ``missing`` (column key -> count, suppressed) and ``smd``.
        Variables absent from the data are left out.

    Notes
    -----
    All counts of the table are suppressed together, so that the relations between rows
    (levels + missing = N) and between columns (never ill + ever ill = overall) are honoured
    at once; the group sizes are the cells ``("Patients", "N", column)`` of the whole release.

    A percentage is shown only when its count, the column's missing count and the column's
    size are all shown. The SMD of a categorical variable is **not shown when any count of
    that variable** (a level or the missing count, in any column, or a group size) **is
    suppressed**: for a yes/no variable the SMD, the two group sizes and the overall count of
    a level are one equation in one unknown, the hidden cell. Rounding would not help: in the
    demo cohort (31 ever-ill patients) each possible value of the hidden cell gives a
    different SMD even at two decimals, so the table's rounded SMD still names the cell
    (tests/test_report_suppression.py inverts it both ways). With every count shown the SMD
    adds nothing that could not be computed from the table.
    """
    layer = log if isinstance(log, Disclosure) else Disclosure(log.threshold, log=log)
    thr = layer.threshold
    pts = patient_level(sessions)
    members = {key: (pts if flag is None else pts[pts["ever_ill"] == flag]) for key, _, flag in GROUPS}
    keys = [k for k, _, _ in GROUPS]
    n_raw = {k: int(len(members[k])) for k in keys}
    small_group = {k: is_small(n_raw[k], thr) for k in keys}
    n_key = {k: ("Patients", "N", k) for k in keys}

    def count(key: tuple, n: int) -> Any:
        return layer.count(key, n, where=where)

    n_cell = {k: count(n_key[k], n_raw[k]) for k in keys}
    layer.relate(n_key["overall"], [n_key["never_ill"], n_key["ever_ill"]])
    rows: list[dict[str, Any]] = []
    no_smd = small_group["ever_ill"] or small_group["never_ill"]
    for var, label, kind in TABLE1_VARIABLES:
        if var not in pts.columns or pts[var].isna().all():
            continue
        if kind == "categorical":
            vals = _categorical_values(pts[var])
            levels = sorted(vals.dropna().unique())
            raw: dict[tuple, int] = {}
            for k in keys:
                v = vals.loc[members[k].index]
                for lv in levels:
                    raw[(label, lv, k)] = int((v == lv).sum())
                raw[(label, _MISSING, k)] = int(v.isna().sum())
            cell = {key: count(key, n) for key, n in raw.items()}
            for k in keys:
                layer.relate(n_key[k], [(label, lv, k) for lv in [*levels, _MISSING]])
            for lv in [*levels, _MISSING]:
                layer.relate((label, lv, "overall"), [(label, lv, "never_ill"), (label, lv, "ever_ill")])
            missing = {k: cell[(label, _MISSING, k)] for k in keys}
            smd_value = (
                None
                if no_smd
                else smd_categorical(vals.loc[members["ever_ill"].index], vals.loc[members["never_ill"].index])
            )
            every_count = [*raw, *n_key.values()]
            smd = layer.later(lambda d, s=smd_value, c=every_count: s if d.shown_all(c) else None)
            for lv in levels:
                row_cells = {}
                for k in keys:
                    known = n_raw[k] - raw[(label, _MISSING, k)]
                    deps = [(label, lv, k), (label, _MISSING, k), n_key[k]]
                    pct = None if known == 0 else 100.0 * raw[(label, lv, k)] / known
                    row_cells[k] = layer.later(
                        lambda d, key=(label, lv, k), deps=deps, pct=pct: _n_pct(d, key, deps, pct)
                    )
                rows.append(
                    {
                        "variable": var,
                        "label": label,
                        "level": lv,
                        "kind": "n_pct",
                        "cells": row_cells,
                        "missing": missing,
                        "smd": smd,
                    }
                )
        else:
            x = pd.to_numeric(pts[var], errors="coerce").astype(float)
            missing = {k: count((label, _MISSING, k), int(x.loc[members[k].index].isna().sum())) for k in keys}
            layer.relate(
                (label, _MISSING, "overall"), [(label, _MISSING, "never_ill"), (label, _MISSING, "ever_ill")]
            )
            skew = _skewed(x)
            row_cells = {}
            for k in keys:
                v = x.loc[members[k].index].dropna()
                if len(v) == 0:
                    row_cells[k] = {"text": "n/a"}
                elif is_small(len(v), thr):
                    row_cells[k] = {"text": SUPPRESSED}
                    layer.log.add(where, f"{label} / {k} (statistic of 1-{thr} patients)", "small")
                elif skew:
                    q1, med, q3 = (float(q) for q in np.percentile(v, [25, 50, 75]))
                    row_cells[k] = {
                        "median": med,
                        "q1": q1,
                        "q3": q3,
                        "text": f"{_fmt(med)} [{_fmt(q1)}, {_fmt(q3)}]",
                    }
                else:
                    m, s = float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan")
                    row_cells[k] = {"mean": m, "sd": s, "text": f"{_fmt(m)} ({_fmt(s)})"}
            smd = (
                None
                if no_smd
                else smd_continuous(x.loc[members["ever_ill"].index], x.loc[members["never_ill"].index])
            )
            rows.append(
                {
                    "variable": var,
                    "label": label,
                    "level": None,
                    "kind": "median_iqr" if skew else "mean_sd",
                    "cells": row_cells,
                    "missing": missing,
                    "smd": smd,
                }
            )
    out = {
        "unit": "patients",
        "columns": [{"key": k, "label": lab} for k, lab, _ in GROUPS],
        "n": n_cell,
        "rows": rows,
    }
    if isinstance(log, Disclosure):
        return out
    layer.resolve()
    return layer.fill(out)


def _n_pct(layer: Disclosure, key: tuple, deps: list[tuple], pct: float | None) -> dict[str, Any]:
    """A Table 1 cell: the count as shown, and its percentage when nothing it needs is hidden."""
    cnt = layer.value(key)
    # a percentage would reveal a suppressed count (or the denominator of one)
    if not layer.shown_all(deps):
        pct = None
    text = str(cnt) if pct is None else f"{cnt} ({_fmt(pct)}%)"
    return {"n": cnt, "pct": pct, "text": text}


def table_one_frame(t1: dict[str, Any]) -> pd.DataFrame:
    """Table 1 as the data frame shown (and written to ``tables/table1.csv``)."""
    cols = [c["key"] for c in t1["columns"]]
    labels = {c["key"]: c["label"] for c in t1["columns"]}
    recs = [
        {"variable": "Patients, N", "level": "", **{labels[k]: t1["n"][k] for k in cols}, "SMD": ""}
        | {f"Missing: {labels[k]}": "" for k in cols}
    ]
    for r in t1["rows"]:
        recs.append(
            {
                "variable": r["label"]
                + (
                    ""
                    if r["level"] is not None
                    else (", median [IQR]" if r["kind"] == "median_iqr" else ", mean (SD)")
                ),
                "level": r["level"] or "",
                **{labels[k]: r["cells"][k]["text"] for k in cols},
                "SMD": "" if r["smd"] is None else f"{r['smd']:.2f}",
                **{f"Missing: {labels[k]}": r["missing"][k] for k in cols},
            }
        )
    return pd.DataFrame.from_records(recs)
