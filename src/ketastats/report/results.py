"""Assemble ``results.json``: every number the report shows, machine-readable.

The HTML report is rendered from this dictionary alone (plus figures drawn from the
processed data and the model files), so each number a reviewer reads has a key here that
traces it back to its model file, processed data and input checksum. Every count in it has
already been through small-cell suppression (the file is shareable), and there is no run
date in it: the same inputs give the same bytes.

Keys: ``cohort``, ``settings``, ``data_flow``, ``table1``, ``illness``, ``trajectories``,
``cytokines``, ``models``, ``illness_effects`` (on the primary model's scale: the forest
plot), ``illness_effects_other_scales``, ``sensitivity`` (:mod:`.sensitivity`), ``recovery``,
``power``, ``methods``,
``suppression``, ``provenance``, ``summary``.

Model JSON is read defensively: ``status`` defaults to ``"ok"``; ``label``, ``kind``,
``illness_effect``, ``singular``, ``optimizer`` and ``messages`` may be absent. The
illness effect of a model is its ``illness_effect`` entry when present, else its
coefficient for the first of :data:`ILLNESS_TERMS` it has.

Optional simulation summaries (rendered when present):

``recovery`` (``reports/<cohort>/recovery/summary.json``)
    One summary row, a list of them, or ``{"rows": [...]}``; keys read: ``scenario``,
    ``n`` or ``n_patients``, ``replicates``, ``truth``, ``mean_estimate``, ``bias``,
    ``emp_se``, ``mean_se``, ``coverage``, ``rejection_rate`` and the Monte Carlo SEs
    ``<key>_mcse``; other keys are kept.
``power`` (``reports/<cohort>/power/summary.json``)
    ``{"rows": [...]}`` (or the list); keys read: ``n`` or ``n_patients``, ``power``,
    ``power_mcse``, ``replicates``; other keys are kept.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..identifiers import redact_provenance
from .methods import methods_section
from .sensitivity import sensitivity_section
from .suppression import SUPPRESSED, SuppressionLog, is_small, is_suppressed, suppress_related
from .suppression import say_count as _say
from .tables import table_one

__all__ = [
    "ILLNESS_TERMS",
    "MADRS_MCID",
    "CYTOKINES",
    "build_results",
    "summary_sentences",
    "model_illness_effect",
]

log = logging.getLogger(__name__)

#: minimal clinically important difference on the MADRS (points); see domain.md 1.6
MADRS_MCID = 2.0
#: terms read as "the illness effect", in order of preference
ILLNESS_TERMS = ("ill_within", "ill", "ill[T.True]", "ill[T.1]")
#: cytokine markers (contract names); each has ``<m>``, ``<m>_lod`` and ``<m>_censored``
CYTOKINES = {
    "il6_pg_ml": "IL-6 (pg/mL)",
    "tnfa_pg_ml": "TNF-α (pg/mL)",
    "il1b_pg_ml": "IL-1β (pg/mL)",
    "crp_mg_l": "CRP (mg/L)",
}
#: the scale of an illness effect that does not name one
DEFAULT_SCALE = "points"
#: width of the study-day bins of the trajectory-by-day summary
DAY_BIN = 7


def _fmt(x: float | None, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def _pct(part: int | str | None, whole: int | str | None) -> float | None:
    if part is None or whole is None or is_suppressed(part) or is_suppressed(whole) or not whole:
        return None
    return 100.0 * part / whole


# ------------------------------------------------------------------- models
def model_illness_effect(model: Mapping[str, Any]) -> dict[str, Any] | None:
    """The model's illness effect: its ``illness_effect`` entry, else an illness coefficient."""
    eff = model.get("illness_effect")
    if eff:
        return dict(eff)
    coefs = {c.get("term"): c for c in model.get("coefficients") or []}
    for term in ILLNESS_TERMS:
        if term in coefs:
            c = coefs[term]
            return {k: c.get(k) for k in ("term", "estimate", "se", "ci_low", "ci_high", "p_value")}
    return None


#: per-patient blocks kept in the model JSONs but not copied into results.json
_PER_PATIENT = ("blups", "predicted_effects")
#: order of the analyses in tables and the forest plot
_ROLE_ORDER = {"primary": 0, "sensitivity": 1, "secondary": 2}


def _drop_per_patient(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _drop_per_patient(v) for k, v in obj.items() if k not in _PER_PATIENT}
    if isinstance(obj, list):
        return [_drop_per_patient(v) for v in obj]
    return obj


def _model_view(name: str, m: Mapping[str, Any]) -> dict[str, Any]:
    """One model's entry in results.json: its JSON minus per-patient values, with every key
    the report reads present, ``terms`` keyed by term name and the illness effect."""
    entry = _drop_per_patient(dict(m))
    status = m.get("status") or "ok"
    coefs = list(m.get("coefficients") or [])
    spec = dict(m.get("spec") or {})
    # the formulas actually fitted (specs may give outcome + fixed terms instead)
    spec["formula"] = spec.get("formula") or m.get("formula") or ""
    spec["re_formula"] = spec.get("re_formula") or m.get("re_formula")
    entry.update(
        name=name,
        label=m.get("label") or name,
        kind=m.get("kind") or "lmm",
        role=m.get("role") or ("primary" if name == "primary" else "secondary"),
        status=status,
        reason=m.get("reason"),
        spec=spec,
        method=m.get("method"),
        engine=m.get("engine"),
        optimizer=m.get("optimizer") or "",
        converged=m.get("converged", status == "ok"),
        singular=bool(m.get("singular")),
        loglik=m.get("loglik"),
        residual_variance=m.get("residual_variance"),
        random=m.get("random") or {"group": None, "names": [], "cov": []},
        coefficients=coefs,
        terms={c["term"]: {k: v for k, v in c.items() if k != "term"} for c in coefs if "term" in c},
        df_method=m.get("df_method") or (coefs[0].get("df_method") if coefs else None),
        illness_effect=model_illness_effect(m) if status == "ok" else None,
        messages=list(m.get("messages") or []),
    )
    return entry


#: keys of model-JSON blocks that hold counts of patients, sessions, draws or events
_COUNT_KEYS = frozenset(
    {
        "events",
        "non_events",
        "rows_removed",
        "draws",
        "censored",
        "ncensored",
        "sessions_removed",
        "onset_unknown_removed",
        "ill_sessions_kept",
        "patients_kept",
        "patients_removed",
        "missing",
        "rows_observed",
        "rows_added",
        "cells_imputed",
        "imputed_ill_ratings",
    }
)


def _suppress_counts(obj: Any, slog: SuppressionLog, where: str) -> Any:
    """Small counts anywhere in a model's entry, suppressed like the tables' counts.

    In a block (dict) holding a small count, every other count and every ``*_fraction``
    of that block is suppressed too (complementary: a total or a share would reveal it).
    """
    if isinstance(obj, list):
        return [_suppress_counts(v, slog, where) for v in obj]
    if not isinstance(obj, Mapping):
        return obj
    out = {k: _suppress_counts(v, slog, where) for k, v in obj.items()}
    counts = [
        k for k, v in out.items() if k in _COUNT_KEYS and isinstance(v, int | np.integer) and not isinstance(v, bool)
    ]
    small = [k for k in counts if is_small(int(out[k]), slog.threshold)]
    for k in small:
        out[k] = slog.count(int(out[k]), where, k)
    if small:
        for k in [*counts, *(k for k in out if str(k).endswith("_fraction"))]:
            if k not in small and out[k] is not None and not is_suppressed(out[k]):
                out[k] = SUPPRESSED
                slog.add(where, str(k), "complementary")
    return out


def _ordered(models: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Primary first, then sensitivity analyses, then secondary ones; by name within a role."""

    def key(n: str) -> tuple[int, int, str]:
        role = (models[n] or {}).get("role") or ("primary" if n == "primary" else "secondary")
        return (n != "primary", _ROLE_ORDER.get(role, 3), n)

    return sorted(models, key=key)


# ---------------------------------------------------------------- data flow
def _formula_columns(formula: str | None, columns: Sequence[str]) -> list[str]:
    if not formula:
        return []
    names = re.findall(r"[A-Za-z_][A-Za-z0-9_.]*", formula)
    return list(dict.fromkeys(n for n in names if n in set(columns)))


def _data_flow(
    received: Mapping[str, Any],
    sessions: pd.DataFrame,
    models: Mapping[str, Mapping[str, Any]],
    slog: SuppressionLog,
) -> dict[str, Any]:
    """Records received, excluded (with reasons) and analysed by the primary model."""
    n_rec, n_pat = int(received["records"]), int(received["patients"])
    primary = models.get("primary") or {}
    spec = dict(primary.get("spec") or {})
    spec["formula"] = spec.get("formula") or primary.get("formula")
    spec["re_formula"] = spec.get("re_formula") or primary.get("re_formula")
    outcome_cols = _formula_columns((spec.get("formula") or "").split("~")[0], sessions.columns)
    pred_cols = _formula_columns("~".join((spec.get("formula") or "").split("~")[1:]), sessions.columns)
    pred_cols += [c for c in _formula_columns(spec.get("re_formula"), sessions.columns) if c not in pred_cols]
    group = spec.get("group", "patient_id")
    reasons: list[tuple[str, int]] = []
    if len(sessions) != n_rec:
        reasons.append(("not in the processed table", n_rec - len(sessions)))
    keep = pd.Series(True, index=sessions.index)
    # 1. the model's session selection (stats spec ``sessions: post_baseline``)
    if spec.get("sessions") == "post_baseline" and {"patient_id", "session"} <= set(sessions.columns):
        first = sessions["session"] == sessions.groupby("patient_id")["session"].transform("min")
        reasons.append(("baseline rating (first session: a covariate, not an outcome)", int(first.sum())))
        keep &= ~first
    # 2. rows removed by an intercurrent-event strategy (counted by the model, in its JSON)
    strategy: list[tuple[str, int]] = []
    for event, e in (primary.get("estimands") or {}).items():
        n = int(e.get("rows_removed") or 0) if isinstance(e, Mapping) else 0
        if n:
            strategy.append((f"{event.replace('_', ' ')}: {e.get('strategy', 'estimand')} strategy", n))
    removed = sum(n for _, n in strategy)
    # 3. missing outcome or model variable (complete cases), from the data
    missing: list[tuple[str, int]] = []
    left = keep.copy()
    if outcome_cols:
        miss = left & sessions[outcome_cols].isna().any(axis=1)
        missing.append((f"no outcome rating ({', '.join(outcome_cols)} missing)", int(miss.sum())))
        left &= ~miss
    for col in [*pred_cols, group]:
        if col in sessions.columns:
            miss = left & sessions[col].isna()
            if miss.any():
                missing.append((f"{col} missing", int(miss.sum())))
                left &= ~miss
    n_an = int(left.sum()) - removed
    p_an = int(sessions.loc[left, "patient_id"].nunique()) if "patient_id" in sessions else 0
    nobs = primary.get("nobs")
    if nobs is not None and int(nobs) != n_an:
        # the model is the authority on what it used; the data alone cannot say which rows
        # it dropped (or whether a strategy removed rows that also had missing values)
        log.warning("primary model used %s records; the data flow counts %d", nobs, n_an)
        strategy = []
        missing = [
            (
                "missing values, intercurrent-event strategy or other exclusion by the model",
                int(keep.sum()) - int(nobs),
            )
        ]
        n_an = int(nobs)
    reasons += strategy + missing
    if primary.get("ngroups") is not None:
        p_an = int(primary["ngroups"])

    cells: dict[Any, int] = {"records_received": n_rec, "records_analysed": n_an, "patients_received": n_pat}
    cells["patients_analysed"] = p_an
    cells["patients_excluded"] = n_pat - p_an
    for i, (_, n) in enumerate(reasons):
        cells[f"excluded_{i}"] = n
    relations: list[tuple[Any, list[Any]]] = [
        ("records_received", [*(f"excluded_{i}" for i in range(len(reasons))), "records_analysed"]),
        ("patients_received", ["patients_excluded", "patients_analysed"]),
    ]
    # each model's own counts: the records/patients it left out, and its difference from
    # every other model, could be derived; they are protected without being shown
    undisplayed = []
    names = _ordered(models)
    for name in names:
        m = models[name]
        if m.get("nobs") is None:
            continue
        cells[("nobs", name)] = int(m["nobs"])
        cells[("nobs_out", name)] = n_rec - int(m["nobs"])
        relations.append(("records_received", [("nobs", name), ("nobs_out", name)]))
        undisplayed.append(("nobs_out", name))
        if m.get("ngroups") is not None:
            cells[("ngroups", name)] = int(m["ngroups"])
            cells[("ngroups_out", name)] = n_pat - int(m["ngroups"])
            relations.append(("patients_received", [("ngroups", name), ("ngroups_out", name)]))
            undisplayed.append(("ngroups_out", name))
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            for key in ("nobs", "ngroups"):
                if (key, a) in cells and (key, b) in cells:
                    hi, lo = sorted([a, b], key=lambda n, k=key: -cells[(k, n)])
                    cells[(key, "diff", a, b)] = cells[(key, hi)] - cells[(key, lo)]
                    relations.append(((key, hi), [(key, lo), (key, "diff", a, b)]))
                    undisplayed.append((key, "diff", a, b))
    shown = suppress_related(cells, relations, slog, "Data flow and model counts", undisplayed=undisplayed)
    flow = {
        "records_received": shown["records_received"],
        "patients_received": shown["patients_received"],
        "excluded": [{"reason": r, "records": shown[f"excluded_{i}"]} for i, (r, _) in enumerate(reasons)],
        "patients_excluded": shown["patients_excluded"],
        "records_analysed": shown["records_analysed"],
        "patients_analysed": shown["patients_analysed"],
        "model_counts": {
            n: {"nobs": shown.get(("nobs", n)), "ngroups": shown.get(("ngroups", n))} for n in names
        },
    }
    return flow


# ------------------------------------------------------------------ illness
def _illness(sessions: pd.DataFrame, slog: SuppressionLog) -> dict[str, Any]:
    """Sessions with acute illness, by type, and patients ever ill."""
    if "ill" not in sessions.columns:
        return {"available": False}
    ill = pd.to_numeric(sessions["ill"], errors="coerce")
    n_sessions = int(len(sessions))
    n_ill = int((ill == 1).sum())
    pts = sessions.assign(_ill=ill).groupby("patient_id")["_ill"].max()
    cells: dict[Any, int] = {
        "sessions": n_sessions,
        "ill_sessions": n_ill,
        "not_ill_sessions": int((ill == 0).sum()),
        "unknown_sessions": int(ill.isna().sum()),
        "patients": int(len(pts)),
        "ever_ill": int((pts > 0).sum()),
        "never_ill": int(len(pts) - (pts > 0).sum()),
    }
    relations: list[tuple[Any, list[Any]]] = [
        ("sessions", ["ill_sessions", "not_ill_sessions", "unknown_sessions"]),
        ("patients", ["ever_ill", "never_ill"]),
    ]
    types: list[str] = []
    if "illness_type" in sessions.columns:
        t = sessions.loc[ill == 1, "illness_type"].astype(object).where(lambda s: s.notna(), "not recorded")
        counts = t.astype(str).value_counts().sort_index()
        types = list(counts.index)
        for k, v in counts.items():
            cells[("type", k)] = int(v)
        relations.append(("ill_sessions", [("type", k) for k in types]))
    shown = suppress_related(cells, relations, slog, "Illness episodes")
    return {
        "available": True,
        "sessions": shown["sessions"],
        "ill_sessions": shown["ill_sessions"],
        "ill_sessions_pct": _pct(shown["ill_sessions"], shown["sessions"]),
        "patients": shown["patients"],
        "ever_ill": shown["ever_ill"],
        "ever_ill_pct": _pct(shown["ever_ill"], shown["patients"]),
        "never_ill": shown["never_ill"],
        "by_type": [{"type": k, "sessions": shown[("type", k)]} for k in types],
    }


# ------------------------------------------------------------- trajectories
def _mean_ci(v: np.ndarray, level: float) -> tuple[float, float, float]:
    m = float(np.mean(v))
    if len(v) < 2:
        return m, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * np.std(v, ddof=1) / math.sqrt(len(v)))
    return m, m - half, m + half


def _trajectory(
    sessions: pd.DataFrame, by: str, score: str, level: float, slog: SuppressionLog, where: str
) -> list[dict[str, Any]]:
    """Mean score with a t-based CI per ``by`` value and ever-ill status (patients as units)."""
    if score not in sessions.columns or by not in sessions.columns:
        return []
    df = sessions[["patient_id", by, score, "ever_ill"]].dropna(subset=[score, by])
    if by == "day":
        df = df.assign(day=(df["day"] // DAY_BIN) * DAY_BIN)
    # one value per patient and time point (the mean, if a patient has two sessions in a bin)
    per = df.groupby(["ever_ill", by, "patient_id"], sort=True)[score].mean().reset_index()
    group_n = sessions.groupby("ever_ill")["patient_id"].nunique().to_dict()
    label = {0: "never ill", 1: "ever ill"}
    cells: dict[Any, int] = {}
    relations: list[tuple[Any, list[Any]]] = []
    undisplayed = []
    points = sorted(per[by].unique())
    for flag in (0, 1):
        if flag not in group_n:
            continue
        total = ("N", label[flag])
        cells[total] = int(group_n[flag])  # shown in Table 1, so taken as shown here
        for t in points:
            n = int(((per["ever_ill"] == flag) & (per[by] == t)).sum())
            cells[(label[flag], f"{by} {t:g}")] = n
            cells[(label[flag], f"{by} {t:g}", "not rated")] = int(group_n[flag]) - n
            relations.append(
                (total, [(label[flag], f"{by} {t:g}"), (label[flag], f"{by} {t:g}", "not rated")])
            )
            undisplayed.append((label[flag], f"{by} {t:g}", "not rated"))
    # the group sizes belong to Table 1 (suppressed and logged there): not logged again here
    local = SuppressionLog(slog.threshold)
    shown = suppress_related(cells, relations, local, where, undisplayed=undisplayed)
    slog.entries.extend(e for e in local.entries if not e["cell"].startswith("N / "))
    rows = []
    for flag in (0, 1):
        for t in points:
            key = (label[flag], f"{by} {t:g}")
            if key not in shown:
                continue
            v = per.loc[(per["ever_ill"] == flag) & (per[by] == t), score].to_numpy(float)
            row = {"ever_ill": flag, by: float(t) if by == "day" else int(t), "n": shown[key]}
            if len(v) == 0 or is_small(len(v), slog.threshold):
                row.update(mean=None, ci_low=None, ci_high=None)
            else:
                m, lo, hi = _mean_ci(v, level)
                row.update(mean=m, ci_low=lo, ci_high=hi)
            rows.append(row)
    return rows


# ---------------------------------------------------------------- cytokines
def _cytokines(sessions: pd.DataFrame, slog: SuppressionLog) -> list[dict[str, Any]]:
    """Per marker: sessions measured, detected, below the detection limit, and the limits."""
    out = []
    for marker, label in CYTOKINES.items():
        if marker not in sessions.columns:
            continue
        cens_col = f"{marker}_censored"
        cens = (
            sessions[cens_col].fillna(False).astype(bool)
            if cens_col in sessions.columns
            else pd.Series(False, index=sessions.index)
        )
        detected = sessions[marker].notna() & ~cens
        measured = detected | cens
        cells = {
            "measured": int(measured.sum()),
            "detected": int(detected.sum()),
            "below_lod": int(cens.sum()),
        }
        shown = suppress_related(
            cells, [("measured", ["detected", "below_lod"])], slog, f"Cytokines: {label}"
        )
        lod_col = f"{marker}_lod"
        lods = (
            sorted(
                float(x)
                for x in pd.to_numeric(sessions.loc[measured, lod_col], errors="coerce").dropna().unique()
            )
            if lod_col in sessions.columns
            else []
        )
        out.append(
            {
                "marker": marker,
                "label": label,
                **shown,
                "below_lod_pct": _pct(shown["below_lod"], shown["measured"]),
                "lod": lods,
            }
        )
    return out


# --------------------------------------------------------------- recovery
def _rows(obj: Any) -> list[dict[str, Any]]:
    """Rows of a simulation summary: ``{"rows": [...]}``, a list of rows, or one row (a dict)."""
    if obj is None:
        return []
    if isinstance(obj, Mapping):
        obj = obj["rows"] if "rows" in obj else [obj]
    rows = [dict(r) for r in obj if isinstance(r, Mapping)]
    for r in rows:  # ``n`` and ``n_patients`` both name the simulated cohort size
        if "n" not in r and "n_patients" in r:
            r["n"] = r["n_patients"]
    return rows


# ---------------------------------------------------------------- summary
def summary_sentences(results: Mapping[str, Any]) -> list[str]:
    """Plain sentences with numbers, generated from the (suppressed) results themselves."""
    out = []
    flow = results["data_flow"]
    excl = [e for e in flow["excluded"] if e["records"] != 0]
    excl_txt = "; ".join(f"{_say(e['records'])} excluded: {e['reason']}" for e in excl)
    out.append(
        f"{_say(flow['patients_analysed'])} patients with {_say(flow['records_analysed'])} rated sessions "
        f"were analysed, of {_say(flow['records_received'])} session records from "
        f"{_say(flow['patients_received'])} patients received" + (f" ({excl_txt})." if excl_txt else ".")
    )
    ill = results.get("illness") or {}
    if ill.get("available"):
        pct = "" if ill["ever_ill_pct"] is None else f" ({_fmt(ill['ever_ill_pct'], 0)}%)"
        out.append(
            f"{_say(ill['ever_ill'])} of {_say(ill['patients'])} patients{pct} had at least one session with "
            f"acute illness; {_say(ill['ill_sessions'])} of {_say(ill['sessions'])} sessions were recorded "
            "during an illness."
        )
    level = int(round(100 * results["settings"]["confidence_level"]))
    primary = results["models"].get("primary")
    if primary and primary["status"] == "ok":
        eff = primary.get("illness_effect")
        mcid = float((eff or {}).get("mcid") or results["settings"]["madrs_mcid"])
        if eff and eff.get("estimate") is not None:
            est, lo, hi, p = eff["estimate"], eff.get("ci_low"), eff.get("ci_high"), eff.get("p_value")
            direction = "higher (worse)" if est > 0 else "lower (better)"
            if lo is not None and hi is not None and -mcid < lo and hi < mcid:
                clinical = (
                    f"the whole interval lies within ±{mcid:g} points, the minimal clinically "
                    "important difference, so any effect is unlikely to matter clinically"
                )
            elif abs(est) >= mcid:
                clinical = (
                    f"the estimate is at least the minimal clinically important difference of {mcid:g} points"
                )
            else:
                clinical = (
                    f"the estimate is below the minimal clinically important difference of {mcid:g} "
                    "points, but the interval does not exclude a clinically important effect"
                )
            out.append(
                f"In the primary model, MADRS scores at sessions during acute illness ({eff['term']}) were "
                f"{_fmt(abs(est))} points {direction} than otherwise ({level}% CI {_fmt(lo)} to {_fmt(hi)}; "
                f"p {'< 0.001' if p is not None and p < 0.001 else '= ' + _fmt(p, 3)}); {clinical}."
            )
        nonlinear = any(c.get("term") == "progress_log" for c in primary["coefficients"])
        for c in primary["coefficients"]:
            if c.get("term") in ("session", "progress") and not nonlinear:
                out.append(
                    f"MADRS scores changed by {_fmt(c['estimate'])} points per infusion on average "
                    f"({level}% CI {_fmt(c.get('ci_low'))} to {_fmt(c.get('ci_high'))})."
                )
        if not primary["converged"]:
            out.append("Warning: the primary model did not converge; its estimates are unreliable.")
        if primary.get("singular"):
            out.append(
                "Note: the primary model's fit is singular (a random-effect variance is at its boundary)."
            )
    elif primary:
        out.append(
            f"The primary model was {primary['status']}: {primary.get('reason') or 'no reason recorded'}."
        )
    sens = [e for e in results["illness_effects"] if e["model"] != "primary"]
    if sens:
        ests = [e["estimate"] for e in sens]
        out.append(
            f"In the other analysis the illness effect was {_fmt(ests[0])} points (forest plot)."
            if len(sens) == 1
            else f"Across {len(sens)} other analyses the illness effect ranged from {_fmt(min(ests))} to "
            f"{_fmt(max(ests))} points (forest plot)."
        )
    for r in (results.get("recovery") or {}).get("rows", []):
        if r.get("bias") is not None and r.get("coverage") is not None:
            out.append(
                f"In {r.get('replicates', 'the')} simulated cohorts of {r.get('n', '?')} patients "
                f"(scenario {r.get('scenario', '?')}), the illness effect was recovered with bias "
                f"{_fmt(r['bias'])} points and {_fmt(100 * r['coverage'], 1)}% confidence-interval coverage."
            )
    shaky = [m for m in results["models"].values() if m["status"] == "unreliable"]
    if shaky:
        out.append(
            "Not identified by the data, so not reported as estimates (shown greyed, left out of the "
            "forest plot and of the range above): "
            + "; ".join(f"{m['label']} ({m.get('reason') or 'no reason recorded'})" for m in shaky)
            + "."
        )
    bad = [m for m in results["models"].values() if m["status"] not in ("ok", "unreliable")]
    if bad:
        out.append(
            "Not estimated: "
            + "; ".join(
                f"{m['label']} ({m['status']}: {m.get('reason') or 'no reason recorded'})" for m in bad
            )
            + "."
        )
    if results["suppression"]["applied"]:
        out.append(
            f"Counts of patients or sessions from 1 to {results['settings']['small_cell_threshold']} are not "
            "shown (small-cell suppression; see the Suppression section)."
        )
    return out


# ------------------------------------------------------------------ build
def build_results(
    cohort: str,
    sessions: pd.DataFrame,
    received: Mapping[str, Any],
    models: Mapping[str, Mapping[str, Any]],
    provenance: Mapping[str, Any],
    settings: Mapping[str, Any],
    *,
    recovery: Mapping[str, Any] | Sequence[Any] | None = None,
    power: Mapping[str, Any] | Sequence[Any] | None = None,
) -> dict[str, Any]:
    """Collect every number the report shows into one JSON-serializable dictionary.

    Parameters
    ----------
    cohort : str
        Cohort name.
    sessions : pandas.DataFrame
        The prepared session table (``data/processed/<cohort>/sessions.parquet``).
    received : mapping
        What the validation step recorded about the input (``records``, ``patients``,
        ``sha256``, ``file``).
    models : mapping
        Model name -> the fitted model's JSON (``data/processed/<cohort>/models/<name>.json``).
    provenance : mapping
        Software versions, git commit, config (no run date: results.json is
        byte-identical across reruns of the same inputs).
    settings : mapping
        The config's ``report`` section (``small_cell_threshold``, ``confidence_level``).
    recovery, power : mapping or list, optional
        The simulation summaries (``reports/<cohort>/recovery/summary.json``,
        ``power/summary.json``); see the module docstring for the keys read.

    Returns
    -------
    dict
        See the module docstring. Counts from 1 to ``small_cell_threshold`` are replaced
        by ``"<threshold+1>"`` and cells that would reveal them by ``"suppressed"``.
    """
    threshold = int(settings["small_cell_threshold"])
    level = float(settings["confidence_level"])
    slog = SuppressionLog(threshold)
    if "ever_ill" not in sessions.columns:
        sessions = sessions.assign(ever_ill=0)
    flow = _data_flow(received, sessions, models, slog)
    views = {name: _model_view(name, models[name]) for name in _ordered(models)}
    for name, v in views.items():
        views[name] = v = _suppress_counts(v, slog, f"Model {v['label']}")
        v["nobs"] = flow["model_counts"][name]["nobs"]
        v["ngroups"] = flow["model_counts"][name]["ngroups"]
    # the forest plot compares effects on the primary model's scale (MADRS points); effects
    # on other scales (odds ratios, log cytokine) are listed separately
    effects, other_effects = [], []
    primary_eff = views.get("primary", {}).get("illness_effect") or {}
    main_scale = primary_eff.get("scale") or DEFAULT_SCALE
    for name, v in views.items():
        eff = v["illness_effect"]
        if v["status"] == "ok" and eff and eff.get("estimate") is not None:
            label = v["label"]
            if eff.get("delta") is not None:  # tipping point: the effect at the delta shown
                label = f"{label}, delta = {float(eff['delta']):+g}"
            row = {"model": name, "label": label, **eff, "scale": eff.get("scale") or DEFAULT_SCALE}
            (effects if row["scale"] == main_scale else other_effects).append(row)
    mcid = (views.get("primary", {}).get("illness_effect") or {}).get("mcid") or MADRS_MCID
    results: dict[str, Any] = {
        "cohort": cohort,
        "settings": {"small_cell_threshold": threshold, "confidence_level": level, "madrs_mcid": float(mcid)},
        "data_flow": flow,
        "table1": table_one(sessions, slog),
        "illness": _illness(sessions, slog),
        "trajectories": {
            "by_session": _trajectory(
                sessions, "session", "madrs", level, slog, "Figure: trajectories by session"
            ),
            "by_day": _trajectory(sessions, "day", "madrs", level, slog, "Figure: trajectories by study day"),
            "day_bin": DAY_BIN,
        },
        "cytokines": _cytokines(sessions, slog),
        "models": views,
        "illness_effects": effects,
        "illness_effects_other_scales": other_effects,
        "recovery": {"rows": _rows(recovery)} if recovery is not None else None,
        "power": {"rows": _rows(power)} if power is not None else None,
        "provenance": redact_provenance(dict(provenance)),  # config text passes the identifier guard
    }
    try:  # family-wise multiplicity adjustment (ketastats.models.multiplicity, stats issue)
        from ..models.multiplicity import adjust_families
    except ImportError:
        results["multiplicity"] = None
    else:
        results["multiplicity"] = adjust_families(models)
    results["sensitivity"] = sensitivity_section(results)
    results["suppression"] = slog.to_dict()
    results["methods"] = methods_section(results)
    results["summary"] = summary_sentences(results)
    return results
