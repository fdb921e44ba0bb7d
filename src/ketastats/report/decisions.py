"""The report's section "When a patient is ill: proceed, postpone or reduce the dose?" (issue 17).

Built in two steps around the disclosure layer (:class:`~ketastats.report.suppression.Disclosure`):

1. :func:`decision_diagnostics` (before the layer decides) takes, from each model of kind
   ``decision``, what the generic model entry of ``results.json`` does not carry: the balance
   table and the propensity overlap. The SMD of a yes/no confounder is shown only when the
   counts it implies in each arm (those with the level and those without) are shown, so it
   cannot give away a small count; the overlap is a smoothed density and quantiles, never bin
   counts; the number of points outside the propensity range is a count like any other.
2. :func:`decision_section` (after) assembles the section from the released model entries (the
   effects, the counts and the reasons, already through the layer) and step 1's output: one
   plain answer per decision (the doubly robust estimate against the MCID), the three
   estimators and the naive contrast side by side, the estimand, the assumptions, the
   target-trial protocol, the diagnostics, and the rows of the "by illness" figure (the primary
   model's illness effect by type, severity and fever, from kind ``illness_by``; the decision
   effects by severity).

Every number of the section is in ``results.json`` under ``decisions``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .suppression import SUPPRESSED, Disclosure

__all__ = ["HEADLINE_ORDER", "decision_diagnostics", "decision_section", "answer_sentence"]

#: which estimator answers the question when several ran (the doubly robust one first)
HEADLINE_ORDER = ("aipw", "gformula", "ipw")
_ESTIMATOR_LABEL = {"aipw": "AIPW (doubly robust)", "ipw": "IPW", "gformula": "g-formula", "naive": "naive"}
_BY_LABEL = {"illness_type": "type", "illness_severity": "severity", "febrile": "fever"}


def _decision_models(models: Mapping[str, Mapping[str, Any]], kind: str = "decision") -> list[str]:
    return [name for name, m in models.items() if m.get("kind") == kind]


def decision_diagnostics(models: Mapping[str, Mapping[str, Any]], layer: Disclosure) -> dict[str, Any]:
    """Balance and overlap of every decision model, every count registered with ``layer``."""
    out: dict[str, Any] = {}
    for name in _decision_models(models):
        m = models[name]
        where = f"Model {m.get('label') or name}: diagnostics"
        per: dict[str, Any] = {}
        for decision, block in (m.get("decisions") or {}).items():
            diag = block.get("diagnostics")
            if block.get("status") != "ok" or not diag:
                continue
            ov = diag["overlap"]
            n1 = int(sum(ov["treated"]["counts"]))
            n0 = int(sum(ov["control"]["counts"]))
            base = ("decision", name, decision)
            k_n1 = (*base, "n_treated")
            k_n0 = (*base, "n_control")
            layer.count(k_n1, n1, where=where, label=f"{decision}: points treated", display=False)
            layer.count(k_n0, n0, where=where, label=f"{decision}: points control", display=False)
            rows = []
            for row in diag["balance"]:
                r = {k: row[k] for k in ("term", "binary", "smd_before", "smd_after", "balanced_after")}
                if row["binary"]:
                    keys = []
                    for arm, n, mean in (("treated", n1, row["mean_treated"]), ("control", n0, row["mean_control"])):
                        k = int(round(mean * n))
                        with_key = (*base, row["term"], arm, "with")
                        without_key = (*base, row["term"], arm, "without")
                        # counts the SMD implies: registered as cells (the SMD is shown only with them)
                        layer.count(with_key, k, where=where, label=f"{decision}: {row['term']} ({arm})")
                        layer.count(without_key, n - k, where=where, label=f"{decision}: not {row['term']} ({arm})")
                        layer.relate((*base, f"n_{arm}"), [with_key, without_key])
                        keys += [with_key, without_key]
                    for key in ("smd_before", "smd_after", "balanced_after"):
                        v = r[key]
                        r[key] = layer.later(lambda d, v=v, keys=tuple(keys): v if d.shown_all(keys) else SUPPRESSED)
                rows.append(r)
            outside = layer.count((*base, "outside_range"), int(ov.get("points_outside_range") or 0),
                                  where=where, label=f"{decision}: points outside the propensity range")
            # a severity stratum estimated (min_per_stratum) with an arm of 1..threshold points: the
            # report's small-cell rule holds its effect back, whatever the model's own setting
            small = [r["severity"] for r in block.get("by_severity") or [] if r.get("status") == "ok"
                     and 0 < min(int(r["n_treated"]), int(r["n_control"])) <= layer.threshold]
            per[decision] = {
                "small_strata": small,
                "balance": rows,
                "balance_threshold": diag.get("balance_threshold"),
                "overlap": {"range": ov["range"], "density": ov.get("density"), "quantiles": ov.get("quantiles"),
                            "points_outside_range": outside},
                "effective_sample_size": diag["effective_sample_size"],
                "largest_weights": diag["largest_weights"],
                "weights": {k: diag["weights"].get(k) for k in ("truncate", "bounds", "max", "max_untruncated", "mean")},
            }
        out[name] = per
    return out


def _fmt(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}".replace("-", "−")


def answer_sentence(decision: str, effect: Mapping[str, Any], labels: Mapping[str, str], mcid: float | None,
                    score: str, level: float) -> str:
    """One plain sentence: the effect of the decision on the next rating against the MCID."""
    est, lo, hi = effect.get("estimate"), effect.get("ci_low"), effect.get("ci_high")
    if est is None or lo is None or hi is None:
        return f"{labels['treated'].capitalize()} versus {labels['control']}: no estimate."
    what = "postponing the infusion" if decision == "postpone" else "giving a reduced dose"
    other = "giving it as planned" if decision == "postpone" else "the usual dose"
    direction = "lowered (improved)" if est < 0 else "raised (worsened)"
    ci = f"{int(round(100 * level))}% CI {_fmt(lo)} to {_fmt(hi)}"
    head = (f"When a patient was ill at a scheduled infusion, {what} {direction} the next {score} rating by "
            f"{_fmt(abs(est))} points ({ci}) compared with {other}")
    if mcid is None:
        return head + "."
    m = float(mcid)
    if hi < 0 or lo > 0:
        better = hi < 0
        side = "benefit" if better else "harm"
        if (better and hi <= -m) or (not better and lo >= m):
            verdict = f"a clinically important {side} (the whole CI is beyond the {m:g}-point MCID)"
        elif (better and lo <= -m) or (not better and hi >= m):
            verdict = f"a {side} that may or may not reach the {m:g}-point MCID"
        else:
            verdict = f"a {side} smaller than the {m:g}-point MCID"
    elif -m < lo and hi < m:
        verdict = f"no clinically important difference either way (the CI lies within ±{m:g} points)"
    else:
        verdict = f"inconclusive: the CI includes both no difference and a difference as large as the {m:g}-point MCID"
    return f"{head}: {verdict}."


def _small_stratum(row: Mapping[str, Any], labels: Mapping[str, str]) -> dict[str, Any]:
    """A by-severity row whose smaller arm is a small cell: counts as released, no effect."""
    out = {k: v for k, v in row.items() if k != "effect"}
    out["status"] = "suppressed"
    out["reason"] = (f"{labels['treated']} versus {labels['control']}, {row['severity']} illness: an arm has too "
                     "few decision points for the report's small-cell rule (report.small_cell_threshold); the "
                     "effect is not shown")
    return out


def _effect_row(model: str, estimator: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    e = entry.get("effect") or {}
    return {"model": model, "estimator": estimator, "label": _ESTIMATOR_LABEL.get(estimator, estimator),
            **{k: e.get(k) for k in ("estimate", "se", "ci_low", "ci_high", "p_value", "n_points", "n_patients",
                                     "n_treated", "n_control", "versus_mcid", "scale")}}


def decision_section(
    views: Mapping[str, Mapping[str, Any]],
    diagnostics: Mapping[str, Any],
    *,
    mcid: float | None,
    score: str,
    level: float,
) -> dict[str, Any]:
    """The section's content from the released model entries and :func:`decision_diagnostics`."""
    names = _decision_models(views)
    out: dict[str, Any] = {"available": bool(names), "models": names, "decisions": {}, "by_illness": []}
    if not names:
        out["note"] = "No model of kind decision is configured (config models: kind decision)."
        return out
    ok = [n for n in names if views[n].get("status") == "ok"]
    by_est = {views[n].get("spec", {}).get("estimator") or views[n].get("estimator"): n for n in names}
    headline = next((by_est[e] for e in HEADLINE_ORDER if e in by_est and by_est[e] in ok), ok[0] if ok else names[0])
    out["headline_model"] = headline
    hv = views[headline]
    out["estimand"] = hv.get("estimand")
    out["assumptions"] = hv.get("assumptions")
    out["target_trial"] = hv.get("target_trial")
    decisions = list(dict.fromkeys(d for n in names for d in (views[n].get("spec") or {}).get("decisions") or []))
    if hv.get("status") != "ok":  # no decision could be analysed: the model's reason says why, once
        out["status"] = hv.get("status")
        out["reason"] = hv.get("reason")
        decisions = []
    for decision in decisions:
        block = (hv.get("decisions") or {}).get(decision) or {}
        entry: dict[str, Any] = {"labels": block.get("labels"), "status": block.get("status") or hv.get("status")}
        if hv.get("status") != "ok" or block.get("status") != "ok":
            entry["status"] = "skipped"
            entry["reason"] = block.get("reason") or hv.get("reason")
            entry["missing_columns"] = block.get("missing_columns")
            entry["record"] = block.get("record")
            out["decisions"][decision] = entry
            continue
        labels = block["labels"]
        primary = (hv.get("spec") or {}).get("outcomes", ["next"])[0]
        p_entry = block["outcomes"].get(primary) or {}
        if p_entry.get("status") == "ok":
            entry["answer"] = answer_sentence(decision, p_entry["effect"], labels, mcid, score, level)
        else:
            entry["answer"] = f"{labels['treated'].capitalize()} versus {labels['control']}: {p_entry.get('reason')}"
        rows = []
        order = {e: i for i, e in enumerate(HEADLINE_ORDER[:1] + ("ipw", "gformula"))}
        ordered = sorted(names, key=lambda n: order.get((views[n].get("spec") or {}).get("estimator"), 9))
        for outcome in (hv.get("spec") or {}).get("outcomes", []):
            naive_row = None
            for n in ordered:
                b = ((views[n].get("decisions") or {}).get(decision)) or {}
                o = (b.get("outcomes") or {}).get(outcome) or {}
                est = (views[n].get("spec") or {}).get("estimator")
                if views[n].get("status") == "ok" and o.get("status") == "ok":
                    rows.append({"outcome": outcome, **_effect_row(n, est, o)})
                    if n == headline:
                        naive_row = {"outcome": outcome, **_effect_row(n, "naive", {"effect": o.get("naive")})}
                else:
                    rows.append({"outcome": outcome, "model": n, "estimator": est,
                                 "label": _ESTIMATOR_LABEL.get(est, est), "status": "skipped",
                                 "reason": o.get("reason") or b.get("reason") or views[n].get("reason")})
            if naive_row:
                rows.append(naive_row)
        entry["effects"] = rows
        entry["counts"] = block.get("counts")
        entry["confounders"] = block.get("confounders")
        entry["confounders_unavailable"] = block.get("confounders_unavailable")
        entry["diagnostics"] = (diagnostics.get(headline) or {}).get(decision)
        small = set(((diagnostics.get(headline) or {}).get(decision) or {}).get("small_strata") or [])
        entry["by_severity"] = [_small_stratum(r, labels) if r.get("severity") in small else r
                                for r in block.get("by_severity") or []]
        out["decisions"][decision] = entry
        for r in entry["by_severity"]:
            out["by_illness"].append({
                "panel": f"{labels['treated'].capitalize()} versus {labels['control']} (by severity)",
                "group": "severity", "level": r["severity"], "status": r["status"],
                **({k: (r.get("effect") or {}).get(k) for k in ("estimate", "ci_low", "ci_high")}),
                "reason": r.get("reason"),
            })
    primary_rows = []
    for n in _decision_models(views, "illness_by"):
        v = views[n]
        for by, b in (v.get("by_illness") or {}).items():
            for r in b.get("levels") or []:
                primary_rows.append({
                    "panel": f"Illness effect on the {score} (primary model) by {_BY_LABEL.get(by, by)}",
                    "group": by, "level": r["level"], "status": r["status"] if v.get("status") == "ok" else "skipped",
                    **{k: r.get(k) for k in ("estimate", "ci_low", "ci_high", "n_sessions", "reason")},
                    "global_p": (b.get("global_test") or {}).get("p_value"),
                })
    out["by_illness"] = primary_rows + out["by_illness"]
    return out
