"""Assemble ``results.json``: every number the report shows, machine-readable.

The HTML report is rendered from this dictionary alone (plus figures drawn from the
processed data), so each number a reviewer reads has a key here that traces it back to
its model file, processed data and input checksum.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from .suppression import suppress_count

__all__ = ["build_results", "summary_sentences"]

#: minimal clinically important difference on the MADRS (points); see domain.md 1.6
MADRS_MCID = 2.0


def _fmt(x: float | None, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def data_flow(
    received: Mapping[str, Any], sessions: pd.DataFrame, analysed: Mapping[str, int], threshold: int
) -> dict[str, Any]:
    """Records received, excluded (with reasons) and analysed, small cells suppressed."""
    n_rec = int(received["records"])
    n_pat = int(received["patients"])
    excluded_missing = n_rec - int(analysed["records"])
    return {
        "records_received": suppress_count(n_rec, threshold),
        "patients_received": suppress_count(n_pat, threshold),
        "excluded": [
            {
                "reason": "no outcome rating at the session (missing score)",
                "records": suppress_count(excluded_missing, threshold),
            }
        ],
        "records_analysed": suppress_count(int(analysed["records"]), threshold),
        "patients_analysed": suppress_count(int(analysed["patients"]), threshold),
    }


def summary_sentences(results: Mapping[str, Any]) -> list[str]:
    """Plain sentences with numbers, generated from the results themselves."""
    out = []
    flow = results["data_flow"]
    out.append(
        f"{flow['patients_analysed']} patients with {flow['records_analysed']} rated sessions were "
        f"analysed (of {flow['records_received']} session records received)."
    )
    primary = results["models"].get("primary")
    if primary and primary.get("status", "ok") != "ok":
        out.append(f"The primary model was {primary['status']}: {primary.get('reason')}.")
        primary = None
    if primary:
        level = int(round(100 * results["settings"]["confidence_level"]))
        for term in primary["coefficients"]:
            if term["term"] in ("ill", "ill_within"):
                est, lo, hi, p = term["estimate"], term["ci_low"], term["ci_high"], term["p_value"]
                direction = "higher" if est > 0 else "lower"
                clinical = "larger than" if abs(est) >= MADRS_MCID else "smaller than"
                out.append(
                    f"In the primary model, sessions with acute illness had MADRS scores "
                    f"{_fmt(abs(est))} points {direction} than sessions without illness "
                    f"({level}% CI {_fmt(lo)} to {_fmt(hi)}; p = {_fmt(p, 3)}), an effect "
                    f"{clinical} the minimal clinically important difference of {MADRS_MCID:g} points."
                )
            nonlinear = any(t["term"] == "progress_log" for t in primary["coefficients"])
            if term["term"] in ("session", "progress") and not nonlinear:
                out.append(
                    f"MADRS scores changed by {_fmt(term['estimate'])} points per infusion on average "
                    f"({level}% CI {_fmt(term['ci_low'])} to {_fmt(term['ci_high'])})."
                )
        if not primary["converged"]:
            out.append("Warning: the primary model did not converge; its estimates are unreliable.")
        if primary.get("singular"):
            out.append(
                "Note: the primary model's fit is singular (a random-effect variance is at its boundary)."
            )
    return out


#: per-patient blocks kept in the model JSONs but not copied into results.json
_PER_PATIENT = ("blups", "predicted_effects")


def _drop_per_patient(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _drop_per_patient(v) for k, v in obj.items() if k not in _PER_PATIENT}
    if isinstance(obj, list):
        return [_drop_per_patient(v) for v in obj]
    return obj


def model_entry(m: Mapping[str, Any], threshold: int) -> dict[str, Any]:
    """One model's entry in results.json: its JSON (minus per-patient values), counts
    suppressed, and ``terms`` keyed by term name."""
    entry = _drop_per_patient(dict(m))
    coefs = m.get("coefficients") or []
    entry.setdefault("status", "ok")
    entry.setdefault("optimizer", "")
    entry.setdefault("singular", False)
    entry.setdefault("messages", [])
    for key in ("converged", "loglik", "residual_variance", "random", "method", "engine", "spec"):
        entry.setdefault(key, None)
    spec = dict(entry["spec"] or {})
    # the formulas actually fitted (specs may give outcome + fixed terms instead)
    spec["formula"] = spec.get("formula") or m.get("formula") or ""
    spec["re_formula"] = spec.get("re_formula") or m.get("re_formula")
    entry["spec"] = spec
    if entry["random"] is None:
        entry["random"] = {"group": None, "names": [], "cov": []}
    entry["coefficients"] = coefs
    entry["nobs"] = suppress_count(m.get("nobs"), threshold)
    entry["ngroups"] = suppress_count(m.get("ngroups"), threshold)
    entry["df_method"] = m.get("df_method") or (coefs[0]["df_method"] if coefs else None)
    entry["terms"] = {c["term"]: {k: v for k, v in c.items() if k != "term"} for c in coefs}
    return entry


def build_results(
    cohort: str,
    sessions: pd.DataFrame,
    received: Mapping[str, Any],
    models: Mapping[str, Mapping[str, Any]],
    provenance: Mapping[str, Any],
    settings: Mapping[str, Any],
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
        Software versions, git commit, config and command (no run date: results.json is
        byte-identical across reruns of the same inputs).
    settings : mapping
        The config's ``report`` section (``small_cell_threshold``, ``confidence_level``).
    """
    threshold = int(settings["small_cell_threshold"])
    primary = models.get("primary")
    analysed = (
        {"records": primary["nobs"], "patients": primary["ngroups"]}
        if primary and primary.get("nobs") is not None
        else {"records": len(sessions), "patients": sessions["patient_id"].nunique()}
    )
    results: dict[str, Any] = {
        "cohort": cohort,
        "settings": {
            "small_cell_threshold": threshold,
            "confidence_level": float(settings["confidence_level"]),
        },
        "data_flow": data_flow(received, sessions, analysed, threshold),
        "models": {},
        "provenance": dict(provenance),
    }
    for name, m in models.items():
        results["models"][name] = model_entry(m, threshold)
    from ..models.multiplicity import adjust_families

    results["multiplicity"] = adjust_families(models)
    results["summary"] = summary_sentences(results)
    return results
