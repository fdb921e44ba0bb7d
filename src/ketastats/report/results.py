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

import itertools
import logging
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..identifiers import redact_provenance
from ..models.counted import fill, mask_numbers
from ..models.result import ModelResult
from .decisions import decision_diagnostics, decision_section
from .estimands import estimand_table
from .methods import methods_section
from .sensitivity import sensitivity_section
from .strobe import strobe_checklist
from .suppression import SUPPRESSED, Disclosure, disclosure_settings, is_small, is_suppressed
from .suppression import say_count as _say
from .tables import table_one

__all__ = [
    "ILLNESS_TERMS",
    "instrument_settings",
    "CYTOKINES",
    "build_results",
    "summary_sentences",
    "model_illness_effect",
]

log = logging.getLogger(__name__)

def instrument_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The cohort's instrument (config ``cohorts.<name>.outcome``) as the report shows it:
    column, abbreviation, name, range, MCID, response and remission rules, and their sources
    (:data:`ketastats.contract.INSTRUMENTS`), with the schedule's unit.

    Examples
    --------
    >>> i = instrument_settings({"instrument": "hamd17", "schedule_unit": "week"})
    >>> i["short"], i["max"], i["remission_max"], i["mcid"], i["unit"]
    ('HAM-D 17', 52, 7, 3.0, 'week')
    """
    from ..contract import INSTRUMENTS

    name = str(settings.get("instrument") or "madrs")
    ins = INSTRUMENTS[name]
    return {
        "name": name,
        "short": ins.short or name,
        "label": ins.label,
        "min": ins.min,
        "max": ins.max,
        "mcid": ins.mcid,
        "remission_max": ins.remission_max,
        "response_fraction": ins.response_fraction,
        "source": ins.source,
        "unit": str(settings.get("schedule_unit") or "infusion"),
    }
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


#: per-patient and per-row blocks (and the exact counts of texts) kept in the model JSONs but
#: not copied into results.json: a model's design holds the rows it analysed; a decision model's
#: balance table and propensity histogram are released by the decision section instead
_PER_PATIENT = ("blups", "predicted_effects", "counted_text", "design", "overlap", "balance")
#: order of the analyses in tables and the forest plot
_ROLE_ORDER = {"primary": 0, "sensitivity": 1, "secondary": 2}


def _drop_per_patient(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _drop_per_patient(v) for k, v in obj.items() if k not in _PER_PATIENT}
    if isinstance(obj, list):
        return [_drop_per_patient(v) for v in obj]
    return obj


def _model_view(name: str, m: Mapping[str, Any]) -> dict[str, Any]:
    """One model's entry in results.json: its result (read as a
    :class:`~ketastats.models.result.ModelResult`) minus per-patient values and its design,
    with every key the report reads present, ``terms`` keyed by term name and the illness effect."""
    r = ModelResult.from_json({**m, "name": m.get("name") or name})
    entry = _drop_per_patient({k: v for k, v in dict(m).items() if k != "schema_version"})
    coefs = [c.to_json() for c in r.coefficients]
    spec = dict(r.spec)
    # the formulas actually fitted (specs may give outcome + fixed terms instead)
    design = r.design
    spec["formula"] = spec.get("formula") or r.extra.get("formula") or (design.formula if design else "") or ""
    spec["re_formula"] = spec.get("re_formula") or r.extra.get("re_formula") or (design.re_formula if design else None)
    entry.update(
        name=name,
        label=r.label or name,
        kind=r.kind,
        role=m.get("role") or ("primary" if name == "primary" else "secondary"),
        status=r.status,
        reason=r.reason,
        spec=spec,
        method=r.method,
        engine=r.engine,
        optimizer=r.optimizer or "",
        converged=r.converged if r.converged is not None else r.status == "ok",
        singular=bool(r.singular),
        loglik=r.loglik,
        residual_variance=r.residual_variance,
        random=r.random or {"group": None, "names": [], "cov": []},
        coefficients=coefs,
        terms={c["term"]: {k: v for k, v in c.items() if k != "term"} for c in coefs},
        df_method=r.df_method or (coefs[0].get("df_method") if coefs else None),
        illness_effect=model_illness_effect(m) if r.status == "ok" else None,
        messages=list(r.messages),
    )
    return entry


#: integer values of model blocks that are not counts: settings, positions, labels
NOT_COUNTS = frozenset(
    {
        "seed", "m", "iterations", "donors", "planned_sessions", "n_draws", "n_agq", "max_times",
        "sessions", "days", "delta", "deltas", "min_patients", "min_events", "min_draws",
        "imputations", "threshold", "flag_threshold", "df", "q", "mcid", "level", "session", "day",
        "visit", "visits", "max_visits",
    }
)  # fmt: skip
#: float values of model blocks that are counts all the same (a mean of counts)
FLOAT_COUNTS = frozenset({"imputed_ill_ratings"})
#: shares and the counts they are a share of (other ``*_fraction`` keys: every count of the block)
FRACTION_OF = {
    "censored_fraction": ("censored", "draws"),
    "share_at_or_above_mcid": ("patients_at_or_above_mcid", "patients_predicted"),
}
#: free text of a model entry (rendered from its counts, or with its numbers withheld)
_TEXT_KEYS = ("reason", "messages", "skipped_parts", "message")


def _is_fraction(key: str) -> bool:
    return key.endswith("_fraction") or key.endswith("_pct") or key.startswith("share_")


def _is_count(key: str, value: Any) -> bool:
    return key not in NOT_COUNTS and isinstance(value, int | np.integer) and not isinstance(value, bool)


def _release_text(
    text: Any, counted: Mapping[str, Any], layer: Disclosure, where: str, key: tuple
) -> Any:
    """Free text of a model as the release shows it.

    Text the model recorded with its counts (``counted_text``, see
    :mod:`ketastats.models.counted`) is rendered from the counts after suppression (one
    block: if one is small, all are hidden); any other text (an error message, an
    optimizer's note) has every number withheld, since it may quote a count.
    """
    if not isinstance(text, str):
        return text
    entry = counted.get(text)
    if not isinstance(entry, Mapping) or fill(entry.get("text", ""), entry.get("counts") or {}) != text:
        return mask_numbers(text)
    counts = dict(entry.get("counts") or {})
    if not counts:
        return text
    keys = {name: (*key, name) for name in counts}
    for name, n in counts.items():
        layer.count(keys[name], int(n), where=where, label=f"{_label_of(key[2:])}: {name}")
    layer.link(keys.values())
    template = entry["text"]
    return layer.later(lambda d: fill(template, {name: d.value(k) for name, k in keys.items()}, _say))


def _label_of(path: Sequence[Any]) -> str:
    return " / ".join(map(str, path))


def _release_model(name: str, view: dict[str, Any], raw: Mapping[str, Any], layer: Disclosure) -> dict[str, Any]:
    """A model's entry for results.json, every count of it registered with the layer.

    Its ``nobs``/``ngroups`` (and its per-part fits') are the cells registered by the data
    flow. Other counts (events, draws, rows removed by an estimand, imputed cells, ranges)
    are registered where they are: a block of counts whose relations are not known is linked
    (one small, all hidden); known relations are registered as such (events + non-events =
    nobs; draws = below the limit + detected). Equal counts of one model are one cell. Shares
    are shown only when the counts they are a share of are. Free text goes through
    :func:`_release_text`.
    """
    where = f"Model {view['label']}"
    counted = raw.get("counted_text") or {}
    base = ("model", name)
    registered: list[tuple[tuple, int]] = []

    def count(key: tuple, n: Any, path: tuple) -> Any:
        cell = layer.count(key, n, where=where, label=_label_of(path))
        if isinstance(n, int | np.integer) and n > 0:
            registered.append((key, int(n)))
        return cell

    def visit(obj: Any, path: tuple, fit: str | None) -> Any:
        if isinstance(obj, list):
            return [visit(v, (*path, i), fit) for i, v in enumerate(obj)]
        if not isinstance(obj, Mapping):
            return obj
        out: dict[str, Any] = {}
        block: dict[str, tuple] = {}
        fractions = []
        top = not path
        for k, v in obj.items():
            p = (*path, k)
            if top and k in ("spec", "name", "label", "kind", "role", "status"):
                out[k] = v
            elif k in _TEXT_KEYS:
                tk = ("text", name, *p)
                if isinstance(v, list):
                    out[k] = [_release_text(t, counted, layer, where, (*tk, i)) for i, t in enumerate(v)]
                elif isinstance(v, Mapping):
                    out[k] = {kk: _release_text(t, counted, layer, where, (*tk, kk)) for kk, t in v.items()}
                else:
                    out[k] = _release_text(v, counted, layer, where, tk)
            elif k == "attempts" and isinstance(v, list):
                out[k] = [
                    {**a, "message": mask_numbers(a["message"])} if isinstance(a, Mapping) and a.get("message") else a
                    for a in v
                ]
            elif k in ("nobs", "ngroups") and (top or fit is not None) and _is_count(k, v):
                key = (k, name) if top else (f"fit_{k}", name, fit)
                out[k] = count(key, int(v), p) if layer.known(key) else count((*base, *p), int(v), p)
            elif _is_count(str(k), v):
                key = (*base, *p)
                out[k] = count(key, int(v), p)
                block[k] = key
            elif (
                isinstance(v, list) and v and str(k) not in NOT_COUNTS
                and all(_is_count(str(k), x) for x in v) and str(k).endswith("_range")
            ):  # fmt: skip
                out[k] = [count((*base, *p, i), int(x), (*p, i)) for i, x in enumerate(v)]
                block.update({f"{k}[{i}]": (*base, *p, i) for i in range(len(v))})
            elif k in FLOAT_COUNTS and isinstance(v, float):
                key = (*base, *p)
                out[k] = count(key, v, p)
                block[k] = key
            elif isinstance(k, str) and _is_fraction(k) and isinstance(v, int | float) and not isinstance(v, bool):
                fractions.append(k)
                out[k] = v
            else:
                out[k] = visit(v, p, k if path == ("fits",) else fit)
        # known relations of this block; any other counts are linked (one small, all hidden)
        linked = dict(block)
        if top and "events" in block and "non_events" in block and layer.known(("nobs", name)):
            if int(obj["events"]) + int(obj["non_events"]) == int(obj.get("nobs") or -1):
                layer.relate(("nobs", name), [block["events"], block["non_events"]])
                linked.pop("events"), linked.pop("non_events")
        if "draws" in block and "censored" in block:
            detected = (*block["draws"][:-1], "detected")
            layer.count(detected, int(obj["draws"]) - int(obj["censored"]), display=False)
            layer.relate(block["draws"], [block["censored"], detected])
            linked.pop("draws"), linked.pop("censored")
        if "patients_predicted" in block and "patients_at_or_above_mcid" in block:
            below = (*block["patients_predicted"][:-1], "patients_below_mcid")
            layer.count(below, int(obj["patients_predicted"]) - int(obj["patients_at_or_above_mcid"]), display=False)
            layer.relate(block["patients_predicted"], [block["patients_at_or_above_mcid"], below])
            for k in ("patients_predicted", "patients_at_or_above_mcid", "patients_with_both"):
                linked.pop(k, None)
        layer.link(linked.values())
        for k in fractions:
            of = FRACTION_OF.get(k)
            deps = [block[c] for c in of if c in block] if of else list(block.values())
            complete = bool(deps) and (of is None or len(deps) == len(of))
            out[k] = layer.later(lambda d, v=out[k], deps=deps, ok=complete: v if ok and d.shown_all(deps) else SUPPRESSED)
        return out

    entry = visit(view, (), None)
    # a number shown twice is one count: equal counts of one model are shown or hidden together
    by_value: dict[int, list[tuple]] = {}
    for key, n in registered:
        by_value.setdefault(n, []).append(key)
    for keys in by_value.values():
        for a, b in zip(keys, keys[1:]):
            if a != b:
                layer.same(a, b)
    return entry


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
    layer: Disclosure,
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

    w = "Data flow and model counts"

    def count(key: Any, n: int, label: str, display: bool = True) -> Any:
        return layer.count(key, int(n), where=w, label=label, display=display)

    flow = {
        "records_received": count(("flow", "records_received"), n_rec, "records_received"),
        "patients_received": count(("flow", "patients_received"), n_pat, "patients_received"),
        "excluded": [
            {"reason": r, "records": count(("flow", "excluded", i), n, f"excluded_{i}")}
            for i, (r, n) in enumerate(reasons)
        ],
        "patients_excluded": count(("flow", "patients_excluded"), n_pat - p_an, "patients_excluded"),
        "records_analysed": count(("flow", "records_analysed"), n_an, "records_analysed"),
        "patients_analysed": count(("flow", "patients_analysed"), p_an, "patients_analysed"),
    }
    layer.relate(
        ("flow", "records_received"),
        [*(("flow", "excluded", i) for i in range(len(reasons))), ("flow", "records_analysed")],
    )
    layer.relate(("flow", "patients_received"), [("flow", "patients_excluded"), ("flow", "patients_analysed")])
    # what was received against the processed table (Table 1, the illness section)
    n_proc = int(len(sessions))
    p_proc = int(sessions["patient_id"].nunique()) if "patient_id" in sessions else 0
    sessions_all, _ = _shared(layer, ("sessions", "all"), n_proc, ("flow", "sessions"), where=w, display=False)
    if reasons and reasons[0][0] == "not in the processed table":
        layer.relate(("flow", "records_received"), [sessions_all, ("flow", "excluded", 0)])
    else:
        layer.same(("flow", "records_received"), sessions_all)
    patients_all, _ = _shared(layer, ("Patients", "N", "overall"), p_proc, ("flow", "patients"), where=w, display=False)
    count(("flow", "patients_not_processed"), n_pat - p_proc, "patients not processed", display=False)
    layer.relate(("flow", "patients_received"), [patients_all, ("flow", "patients_not_processed")])
    flow["model_counts"] = _model_counts(models, layer, n_rec, n_pat, n_an, p_an, count)
    return flow


def _model_counts(
    models: Mapping[str, Mapping[str, Any]],
    layer: Disclosure,
    n_rec: int,
    n_pat: int,
    n_an: int,
    p_an: int,
    count: Any,
) -> dict[str, dict[str, Any]]:
    """Each model's (and each per-part fit's) nobs and ngroups, registered with the layer.

    The records or patients a model left out (against those received), and the difference
    between any two models' counts of the same unit (sessions: nobs; patients: ngroups, and
    the nobs of a one-row-per-patient model, which is its number of patients), could be
    derived: they are protected without being shown. A difference of zero (two models on the
    same rows) ties the two counts: shown or hidden together.
    """
    family: dict[str, list[tuple[Any, int]]] = {"sessions": [], "patients": []}
    out = {}
    for name in _ordered(models):
        m = models[name]
        label = m.get("label") or name
        nobs, ngroups = m.get("nobs"), m.get("ngroups")
        one_row = (m.get("spec") or {}).get("level") == "end" or (
            nobs is not None and ngroups is not None and int(nobs) == int(ngroups)
        )
        if nobs is not None:
            count(("nobs", name), int(nobs), f"{label}: nobs")
            family["patients" if one_row else "sessions"].append((("nobs", name), int(nobs)))
        if ngroups is not None:
            count(("ngroups", name), int(ngroups), f"{label}: ngroups")
            family["patients"].append((("ngroups", name), int(ngroups)))
        if one_row and nobs is not None and ngroups is not None:
            layer.same(("ngroups", name), ("nobs", name))
        parts = []
        for part, fit in (m.get("fits") or {}).items():
            if not isinstance(fit, Mapping):
                continue
            for k, unit in (("nobs", "sessions"), ("ngroups", "patients")):
                v = fit.get(k)
                if isinstance(v, int | np.integer) and not isinstance(v, bool):
                    count((f"fit_{k}", name, part), int(v), f"{label}: fits / {part} / {k}")
                    family[unit].append(((f"fit_{k}", name, part), int(v)))
                    if k == "nobs":
                        parts.append((("fit_nobs", name, part), int(v)))
        if nobs is not None and parts and sum(v for _, v in parts) == int(nobs) and len(parts) > 1:
            layer.relate(("nobs", name), [k for k, _ in parts])
        out[name] = {
            "nobs": count(("nobs", name), int(nobs), f"{label}: nobs") if nobs is not None else None,
            "ngroups": count(("ngroups", name), int(ngroups), f"{label}: ngroups") if ngroups is not None else None,
        }
    primary = models.get("primary") or {}
    if primary.get("nobs") is not None and int(primary["nobs"]) == n_an:
        layer.same(("flow", "records_analysed"), ("nobs", "primary"))
    if primary.get("ngroups") is not None and int(primary["ngroups"]) == p_an:
        layer.same(("flow", "patients_analysed"), ("ngroups", "primary"))
    for unit, total, n_total in (("sessions", ("flow", "records_received"), n_rec), ("patients", ("flow", "patients_received"), n_pat)):
        members = family[unit]
        for key, v in members:
            out_key = ("left out", *key)
            count(out_key, n_total - v, "left out", display=False)
            layer.relate(total, [key, out_key])
        for (a, x), (b, y) in itertools.combinations(members, 2):
            (hi, vh), (lo, vl) = sorted([(a, x), (b, y)], key=lambda t: -t[1])
            diff = ("difference", a, b)
            count(diff, vh - vl, "difference", display=False)
            layer.relate(hi, [lo, diff])
    return out


# ------------------------------------------------------------------ illness
def _shared(layer: Disclosure, key: Any, n: int, own: Any, **kw: Any) -> tuple[Any, Any]:
    """Register ``n`` under the release-wide ``key`` (one cell wherever it is shown), or under
    ``own`` when ``key`` already holds a different count; returns (key used, placeholder)."""
    if layer.known(key) and layer.raw(key) != n:
        key = own
    return key, layer.count(key, n, **kw)


def _illness(sessions: pd.DataFrame, layer: Disclosure) -> dict[str, Any]:
    """Sessions with acute illness, by type, and patients ever ill."""
    if "ill" not in sessions.columns:
        return {"available": False}
    w = "Illness episodes"
    ill = pd.to_numeric(sessions["ill"], errors="coerce")
    pts = sessions.assign(_ill=ill).groupby("patient_id")["_ill"].max()
    n_ever = int((pts > 0).sum())
    sess = {
        "all": int(len(sessions)),
        "ill": int((ill == 1).sum()),
        "not ill": int((ill == 0).sum()),
        "ill unknown": int(ill.isna().sum()),
    }
    skey = {k: _shared(layer, ("sessions", k), n, ("illness", "sessions", k), where=w, label=f"{k} sessions",
                       display=k in ("all", "ill"))[0] for k, n in sess.items()}  # fmt: skip
    layer.relate(skey["all"], [skey["ill"], skey["not ill"], skey["ill unknown"]])
    pkey = {}
    for k, n in (("overall", int(len(pts))), ("ever_ill", n_ever), ("never_ill", int(len(pts)) - n_ever)):
        pkey[k] = _shared(layer, ("Patients", "N", k), n, ("illness", "patients", k), where=w, label=f"patients {k}")[0]
    layer.relate(pkey["overall"], [pkey["never_ill"], pkey["ever_ill"]])
    types: list[str] = []
    if "illness_type" in sessions.columns:
        t = sessions.loc[ill == 1, "illness_type"].astype(object).where(lambda s: s.notna(), "not recorded")
        counts = t.astype(str).value_counts().sort_index()
        types = list(counts.index)
        for k, v in counts.items():
            layer.count(("illness type", k), int(v), where=w, label=f"type / {k}")
        layer.relate(skey["ill"], [("illness type", k) for k in types])

    def pct(d: Disclosure, part: Any, whole: Any) -> float | None:
        return _pct(d.value(part), d.value(whole))

    return {
        "available": True,
        "sessions": layer.count(skey["all"], sess["all"]),
        "ill_sessions": layer.count(skey["ill"], sess["ill"]),
        "ill_sessions_pct": layer.later(lambda d: pct(d, skey["ill"], skey["all"])),
        "patients": layer.count(pkey["overall"], int(len(pts))),
        "ever_ill": layer.count(pkey["ever_ill"], n_ever),
        "ever_ill_pct": layer.later(lambda d: pct(d, pkey["ever_ill"], pkey["overall"])),
        "never_ill": layer.count(pkey["never_ill"], int(len(pts)) - n_ever),
        "by_type": [{"type": k, "sessions": layer.count(("illness type", k), int(counts[k]))} for k in types],
    }


# ------------------------------------------------------------- trajectories
def _mean_ci(v: np.ndarray, level: float) -> tuple[float, float, float]:
    m = float(np.mean(v))
    if len(v) < 2:
        return m, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * np.std(v, ddof=1) / math.sqrt(len(v)))
    return m, m - half, m + half


#: decimals of a mean (and its CI) whose number of patients is suppressed: to full precision,
#: the mean of integer ratings names its denominator (757/29 = 26.1034...), and so the count
HIDDEN_N_DECIMALS = 1


def _trajectory(
    sessions: pd.DataFrame, by: str, score: str, level: float, layer: Disclosure, where: str
) -> list[dict[str, Any]]:
    """Mean score with a t-based CI per ``by`` value and ever-ill status (patients as units).

    The patients rated at a time point and those not rated add up to the group's size (Table
    1's cell): a rated count is hidden when the group's size is hidden and nobody was missed
    (the count would be the size), or when the patients not rated are 1 to ``threshold``.
    A mean whose count is hidden is shown to :data:`HIDDEN_N_DECIMALS` decimal(s).
    """
    if score not in sessions.columns or by not in sessions.columns:
        return []
    df = sessions[["patient_id", by, score, "ever_ill"]].dropna(subset=[score, by])
    if by == "day":
        df = df.assign(day=(df["day"] // DAY_BIN) * DAY_BIN)
    # one value per patient and time point (the mean, if a patient has two sessions in a bin)
    per = df.groupby(["ever_ill", by, "patient_id"], sort=True)[score].mean().reset_index()
    group_n = sessions.groupby("ever_ill")["patient_id"].nunique().to_dict()
    label = {0: "never ill", 1: "ever ill"}
    group = {0: "never_ill", 1: "ever_ill"}
    points = sorted(per[by].unique())
    rows = []
    for flag in (0, 1):
        if flag not in group_n:
            continue
        total, _ = _shared(
            layer, ("Patients", "N", group[flag]), int(group_n[flag]), (where, "N", group[flag]),
            where=where, label=f"N / {label[flag]}", display=False,
        )  # fmt: skip
        for t in points:
            v = per.loc[(per["ever_ill"] == flag) & (per[by] == t), score].to_numpy(float)
            key = (label[flag], f"{by} {t:g}")
            cell = layer.count((where, *key), len(v), where=where, label=_label_of(key))
            layer.count((where, *key, "not rated"), int(group_n[flag]) - len(v), where=where, display=False)
            layer.relate(total, [(where, *key), (where, *key, "not rated")])
            row = {"ever_ill": flag, by: float(t) if by == "day" else int(t), "n": cell}
            if len(v) == 0 or is_small(len(v), layer.threshold):
                row.update(mean=None, ci_low=None, ci_high=None)
            else:
                stats_ = dict(zip(("mean", "ci_low", "ci_high"), _mean_ci(v, level)))
                row.update(
                    {
                        k: layer.later(lambda d, x=x, key=(where, *key): _rounded(x) if d.hidden(key) else x)
                        for k, x in stats_.items()
                    }
                )
            rows.append(row)
    return sorted(rows, key=lambda r: (r["ever_ill"], r[by]))


def _rounded(x: float) -> float:
    return x if not math.isfinite(x) else round(x, HIDDEN_N_DECIMALS)


# ---------------------------------------------------------------- cytokines
def _cytokines(sessions: pd.DataFrame, layer: Disclosure) -> list[dict[str, Any]]:
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
        where = f"Cytokines: {label}"
        cells = {
            "measured": int(measured.sum()),
            "detected": int(detected.sum()),
            "below_lod": int(cens.sum()),
        }
        keys = {k: ("cytokine", marker, k) for k in cells}
        shown = {k: layer.count(keys[k], n, where=where, label=k) for k, n in cells.items()}
        layer.relate(keys["measured"], [keys["detected"], keys["below_lod"]])
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
                "below_lod_pct": layer.later(
                    lambda d, k=keys: _pct(d.value(k["below_lod"]), d.value(k["measured"]))
                ),
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
#: optional contract columns and what each adds to the report when a cohort has it
_WOULD_ADD = {
    "ill": "illness flags per session: the illness effect (the primary model's question), the ever-ill "
    "split of Table 1 and of the trajectories, and every illness model",
    "il6_pg_ml": "cytokine draws (IL-6, TNF-a, IL-1b, CRP): the illness-cytokine, moderation and mediation models",
    "madrs_1": "the ten MADRS items: the sensitivity analysis without the sickness-sensitive items 4-8",
}


def _missing_columns(sessions: pd.DataFrame) -> list[dict[str, str]]:
    """Optional columns the cohort lacks, with what each would add (the report lists them)."""
    from ..contract import CYTOKINES

    have = {c for c in sessions.columns if sessions[c].notna().any()}
    out = []
    if "ill" not in have:
        out.append({"column": "ill", "adds": _WOULD_ADD["ill"]})
    if not have & set(CYTOKINES):
        out.append({"column": ", ".join(CYTOKINES), "adds": _WOULD_ADD["il6_pg_ml"]})
    if "madrs_1" not in have:
        out.append({"column": "madrs_1 ... madrs_10", "adds": _WOULD_ADD["madrs_1"]})
    return out


def _without_label(m: Mapping[str, Any]) -> str:
    """A model's reason without the label it usually starts with (the summary names it already)."""
    reason, label = str(m.get("reason") or "no reason recorded"), str(m.get("label") or "")
    if label and reason.startswith(label):
        reason = reason[len(label) :].lstrip(" :") or reason
    return reason


#: the columns a decision analysis (proceed, postpone or lower the dose) needs
DECISION_COLUMNS = ("postponed", "dose_mg_kg", "illness_severity")


def _ci_text(level: int, lo: float | None, hi: float | None, f=None) -> str:
    f = f or _fmt
    return f"{level}% CI {f(lo)} to {f(hi)}"


def answer_sentences(results: Mapping[str, Any]) -> list[dict[str, str]]:
    """The first screen: the study's answer in plain words, one claim per sentence, each with
    the section that shows it (``{"text", "link"}``); generated from the released results only.

    The claims, in order: whether acute illness at a session changes the score (against the
    instrument's MCID); whether illness during the course changes the end-of-course result
    (response, remission); what to do when a patient arrives ill (the decision analysis, or
    what it would need); how robust the answer is (sensitivity range, tipping point); the
    study's size.
    """
    out: list[dict[str, str]] = []
    settings = results["settings"]
    ins = settings["instrument"]
    short = ins["short"]
    level = int(round(100 * settings["confidence_level"]))
    models = results["models"]
    primary = models.get("primary")
    if not settings.get("illness_data", True):
        out.append({"text": "This cohort has no illness data, so it cannot tell whether acute illness changes the "
                            f"{short}; the report describes the course of the {short} only.", "link": "#data-flow"})
    elif primary and primary["status"] == "ok" and (primary.get("illness_effect") or {}).get("estimate") is not None:
        eff = primary["illness_effect"]
        est, lo, hi = eff["estimate"], eff.get("ci_low"), eff.get("ci_high")
        mcid = eff.get("mcid") if eff.get("mcid") is not None else settings.get("mcid")
        worse = "higher (worse)" if est > 0 else "lower (better)"
        if mcid is None:
            verdict = f"the {short} has no established minimal clinically important difference to judge it against"
        elif lo is not None and hi is not None and -mcid < lo and hi < mcid:
            verdict = (f"smaller than the {mcid:g}-point minimal clinically important difference across the whole "
                       "interval: being ill at a session does not change the score in a way that matters clinically")
        elif lo is not None and (lo >= mcid or (hi is not None and hi <= -mcid)):
            verdict = f"at least the {mcid:g}-point minimal clinically important difference across the whole interval"
        else:
            verdict = (f"the interval includes effects larger than the {mcid:g}-point minimal clinically important "
                       "difference, so a clinically important effect is not ruled out")
        ever = (results.get("illness") or {}).get("ever_ill")
        few = (f" It rests on few patients: {_say(ever)} were ill at any session."
               if isinstance(ever, str) or (isinstance(ever, int) and ever < 30) else "")
        out.append({"text": f"At a session during an acute illness, the {short} was {_fmt(abs(est))} points {worse} "
                            f"than at the same patient's other sessions ({_ci_text(level, lo, hi)}); {verdict}.{few}",
                    "link": "#primary-model"})
    elif primary:
        out.append({"text": f"The primary model was {primary['status']}, so this report gives no estimate of the "
                            "illness effect at a session.", "link": "#primary-model"})
    for name, what in (("response_end", "response"), ("remission_end", "remission")):
        m = models.get(name)
        eff = (m or {}).get("illness_effect") or {}
        if not m or m["status"] != "ok" or eff.get("estimate") is None:
            continue
        o, lo, hi = (None if v is None else math.exp(v) for v in (eff["estimate"], eff.get("ci_low"), eff.get("ci_high")))
        clear = lo is not None and hi is not None and (lo > 1 or hi < 1)
        out.append({"text": f"Patients who were ill at any session had {_fmt(o)} times the odds of {what} at the end of "
                            f"the course ({_ci_text(level, lo, hi)}); "
                            + ("the interval excludes an odds ratio of 1 (no difference)." if clear else
                               "the interval includes an odds ratio of 1 (no difference)."),
                    "link": f"#model-{name}"})
    configured = {n: m for n, m in models.items() if m.get("kind") == "decision"}
    decisions = [n for n, m in configured.items() if m["status"] == "ok"]
    if decisions:
        out.append({"text": "What to do when a patient arrives ill (proceed, postpone or reduce the dose) is "
                            "estimated in its own section.", "link": "#decisions"})
    elif configured:  # configured, and the data have the columns, but no decision could be estimated
        reason = next((str(m["reason"]) for m in configured.values() if m.get("reason")), "")
        out.append({"text": "What to do when a patient arrives ill (proceed, postpone or lower the dose) could not "
                            "be estimated from these data" + (f": {reason}" if reason else "") + ".",
                    "link": "#decisions"})
    else:
        missing = [c for c in DECISION_COLUMNS if c not in (settings.get("decision_columns") or [])]
        needs = ("the data lack " + ", ".join(missing) + " (record each session's postponement, dose and illness "
                 "severity)") if missing else ("the data have the columns it needs (" + ", ".join(DECISION_COLUMNS)
                                              + "); the decision analysis is not configured")
        out.append({"text": "What to do when a patient arrives ill (proceed, postpone or lower the dose) is not "
                            f"estimated in this report: {needs}.", "link": "#data-flow"})
    sens = [e for e in results.get("illness_effects") or [] if e["model"] != "primary"]
    if sens:
        ests = [e["estimate"] for e in sens]
        text = (f"Across {len(sens)} sensitivity analyses the illness effect ranged from {_fmt(min(ests))} to "
                f"{_fmt(max(ests))} points")
        tips = ((results.get("sensitivity") or {}).get("tipping") or {}).values()
        deltas = [d for t in tips for d in ((t.get("tipping_delta") or {}).get("negative"),
                                            (t.get("tipping_delta") or {}).get("positive")) if d is not None]
        if deltas:
            nearest = min(deltas, key=abs)
            text += (f"; the conclusion would change only if the missing ratings of ill sessions were "
                     f"{_fmt(abs(nearest), 1)} points {'higher' if nearest > 0 else 'lower'} than assumed (tipping point)")
        out.append({"text": text + ".", "link": "#sensitivity"})
    flow = results["data_flow"]
    out.append({"text": f"{_say(flow['patients_analysed'])} patients with {_say(flow['records_analysed'])} rated "
                        f"sessions were analysed, of {_say(flow['patients_received'])} patients received.",
                "link": "#data-flow"})
    return [{**a, "text": _sentence(a["text"])} for a in out]


def _sentence(text: str) -> str:
    """A sentence starts with a capital, even when it starts with a count ("fewer than 11 ...")."""
    return text[:1].upper() + text[1:]


def summary_sentences(results: Mapping[str, Any]) -> list[str]:
    """Plain sentences with numbers, generated from the (suppressed) results themselves."""
    out = []
    settings = results["settings"]
    if not settings.get("illness_data", True):
        out.append(
            "This cohort has no illness data (no 'ill' column), so the report cannot say whether acute "
            f"illness changes the {settings['instrument']['short']} course: it shows the course itself "
            "(trajectories, Table 1, the outcome model without illness terms). What each missing column would "
            "add is listed under Data flow."
        )
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
    short, unit = results["settings"]["instrument"]["short"], results["settings"]["instrument"]["unit"]
    primary = results["models"].get("primary")
    if primary and primary["status"] == "ok":
        eff = primary.get("illness_effect")
        mcid = (eff or {}).get("mcid") or results["settings"]["mcid"]
        if eff and eff.get("estimate") is not None and mcid is not None:
            mcid = float(mcid)
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
                f"In the primary model, {short} scores at sessions during acute illness ({eff['term']}) were "
                f"{_fmt(abs(est))} points {direction} than otherwise ({level}% CI {_fmt(lo)} to {_fmt(hi)}; "
                f"p {'< 0.001' if p is not None and p < 0.001 else '= ' + _fmt(p, 3)}); {clinical}."
            )
        nonlinear = any(c.get("term") == "progress_log" for c in primary["coefficients"])
        for c in primary["coefficients"]:
            if c.get("term") in ("session", "progress") and not nonlinear:
                out.append(
                    f"{short} scores changed by {_fmt(c['estimate'])} points per {unit} on average "
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
    if not settings.get("illness_data", True):  # one line for what needs illness data, not one reason each
        needs_ill = [m for m in bad if re.search(r"\bill(_\w+)?\b|illness flag", str(m.get("reason") or ""))]
        if needs_ill:
            out.append(
                "Not estimated, as they need illness data: " + "; ".join(m["label"] for m in needs_ill) + "."
            )
        bad = [m for m in bad if m not in needs_ill]
    if bad:
        # models that failed or were skipped for the same reason (the three decision estimators on one
        # cohort) are named together, the reason said once
        groups: dict[tuple[str, str], list[str]] = {}
        for m in bad:
            groups.setdefault((str(m["status"]), _without_label(m)), []).append(str(m["label"]))
        out.append(
            "Not estimated: "
            + "; ".join(f"{', '.join(labels)} ({status}: {why})" for (status, why), labels in groups.items())
            + "."
        )
    if results["suppression"]["applied"]:
        out.append(
            f"Counts of patients or sessions from 1 to {results['settings']['small_cell_threshold']} are not "
            "shown (small-cell suppression; see the Suppression section)."
        )
    return [_sentence(s) for s in out]


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
    threshold, disclosure = disclosure_settings(settings)
    level = float(settings["confidence_level"])
    layer = Disclosure(threshold)
    instrument = instrument_settings(settings)
    score = instrument["name"]
    has_illness = "ill" in sessions.columns and sessions["ill"].notna().any()
    if "ever_ill" not in sessions.columns:
        sessions = sessions.assign(ever_ill=0)
    # every count of the release goes through one layer, decided at once (resolve)
    pending = {
        "table1": table_one(sessions, layer),
        "illness": _illness(sessions, layer),
        "trajectories": {
            "by_session": _trajectory(
                sessions, "session", score, level, layer, "Figure: trajectories by session"
            ),
            "by_day": _trajectory(sessions, "day", score, level, layer, "Figure: trajectories by study day"),
            "day_bin": DAY_BIN,
        },
        "cytokines": _cytokines(sessions, layer),
        "data_flow": _data_flow(received, sessions, models, layer),
        "decisions": decision_diagnostics(models, layer),
    }
    pending["models"] = {
        name: _release_model(name, _model_view(name, models[name]), models[name], layer) for name in _ordered(models)
    }
    layer.resolve()
    released = layer.fill(pending)
    views = released["models"]
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
    mcid = (views.get("primary", {}).get("illness_effect") or {}).get("mcid") or instrument["mcid"]
    results: dict[str, Any] = {
        "cohort": cohort,
        "settings": {
            "small_cell_threshold": threshold,
            "disclosure": disclosure,
            "confidence_level": level,
            "mcid": None if mcid is None else float(mcid),
            "instrument": instrument,
            "illness_data": bool(has_illness),
            "missing_columns": _missing_columns(sessions),
            "decision_columns": [c for c in DECISION_COLUMNS if c in sessions.columns and sessions[c].notna().any()],
        },
        "data_flow": released["data_flow"],
        "table1": released["table1"],
        "illness": released["illness"],
        "trajectories": released["trajectories"],
        "cytokines": released["cytokines"],
        "models": views,
        "illness_effects": effects,
        "illness_effects_other_scales": other_effects,
        "recovery": {"rows": _rows(recovery)} if recovery is not None else None,
        "power": {"rows": _rows(power)} if power is not None else None,
        "provenance": redact_provenance(dict(provenance)),  # config text passes the identifier guard
    }
    if not has_illness:  # no ever-ill split to show: Table 1 describes all patients
        t1 = results["table1"]
        t1["columns"] = [c for c in t1["columns"] if c["key"] == "overall"]
        for row in t1["rows"]:
            row["smd"] = None
    try:  # family-wise multiplicity adjustment (ketastats.models.multiplicity, stats issue)
        from ..models.multiplicity import adjust_families
    except ImportError:
        results["multiplicity"] = None
    else:
        results["multiplicity"] = adjust_families(models)
    results["decisions"] = decision_section(
        views, released["decisions"], mcid=mcid, score=instrument["short"], level=level
    )
    results["sensitivity"] = sensitivity_section(results)
    results["suppression"] = layer.log.to_dict()
    results["methods"] = methods_section(results)
    results["summary"] = summary_sentences(results)
    results["answer"] = answer_sentences(results)
    results["estimand_table"], results["strobe"] = estimand_table(results), strobe_checklist(results)
    return results
