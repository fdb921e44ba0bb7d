"""The sensitivity analyses in one place: what each changes, and its illness effect.

:func:`sensitivity_section` reads the model entries of ``results.json`` (already
small-cell suppressed) and returns the ``sensitivity`` block the report's "Sensitivity
analyses" section shows: one row per analysis with a plain description of what it changes
relative to the primary model, the illness effect beside the primary's, and the details a
reviewer needs to judge it (the imputation model's variables, the tipping-point grid, the
working correlation, the markers flagged for non-detects).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["describe_analysis", "sensitivity_section"]


def _f(x: Any, digits: int = 2) -> str:
    return "n/a" if x is None else f"{float(x):.{digits}f}"


def describe_analysis(m: Mapping[str, Any]) -> str:
    """One sentence: what this analysis changes relative to the primary model."""
    spec = m.get("spec") or {}
    kind = m.get("kind") or "lmm"
    parts: list[str] = []
    filters = m.get("row_filters") or {}
    if kind == "gee":
        wc = (m.get("working_correlation") or {}).get("structure", spec.get("correlation", "unstructured"))
        parts.append(
            f"marginal model (GEE) with one mean per session and a{'n' if wc[0] in 'aeiou' else ''} {wc} "
            "working correlation across sessions, robust SEs (valid under MCAR dropout)"
        )
    elif kind == "mmrm":
        cov = m.get("covariance") or {}
        used = cov.get("structure", spec.get("covariance", "us"))
        names = {"us": "unstructured", "cs": "compound-symmetry", "csh": "heterogeneous compound-symmetry",
                 "ar1": "AR(1)", "ar1h": "heterogeneous AR(1)", "toeph": "heterogeneous Toeplitz",
                 "adh": "ante-dependence"}
        text = (
            f"mixed model for repeated measures (MMRM, REML): one mean per session and "
            f"{'an' if names.get(used, used)[0] in 'aeiouAEIOU' else 'a'} {names.get(used, used)} covariance "
            "across sessions instead of random effects (valid under MAR dropout)"
        )
        if cov.get("requested") and cov.get("requested") != used:
            text += f"; {names.get(cov['requested'], cov['requested'])} covariance not supported by the data"
        parts.append(text)
    elif kind == "lmm_mi":
        imp = m.get("imputation") or {}
        parts.append(
            f"missing ratings (and the sessions after dropout) multiply imputed by chained equations, "
            f"m = {imp.get('m', spec.get('imputations', '?'))}, pooled by Rubin's rules (MAR given the "
            "imputation model's variables)"
        )
    elif kind == "tipping_point":
        parts.append(
            "delta-adjusted multiple imputation: imputed ratings at ill sessions shifted by delta points "
            "(MNAR); the tipping point is the delta at which the conclusion changes"
        )
    elif kind == "cytokine_illness":
        parts.append(f"non-detects handled by {spec.get('censoring', '?')} instead of the censored likelihood")
    elif kind == "glmm_binary":
        parts.append("subject-specific (mixed logistic) model of response")
    if spec.get("outcome") and spec.get("outcome") != "madrs" and kind in ("lmm", "gee", "mmrm", "lmm_mi"):
        parts.append(f"outcome {spec['outcome']}")
        if spec["outcome"] == "madrs_nonsick":
            parts[-1] += " (MADRS without the sickness-sensitive items 4-8)"
    if "complete_case" in filters or spec.get("complete_case"):
        parts.append("only patients with every planned session rated (complete cases; valid under MCAR only)")
    if "exclude_onset_within_days" in filters or spec.get("exclude_onset_within_days") is not None:
        d = spec.get("exclude_onset_within_days")
        parts.append(f"ill sessions within {d} days of the illness onset (or with an unknown onset) left out")
    return "; ".join(parts) if parts else "as the primary model, with the changes in its specification"


def _same_imputation(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    keys = ("method", "m", "iterations", "donors", "seed", "planned_sessions", "variables")
    return all(a.get(k) == b.get(k) for k in keys)


def sensitivity_section(results: Mapping[str, Any]) -> dict[str, Any]:
    """The ``sensitivity`` block of results.json.

    Parameters
    ----------
    results : mapping
        The results being built: ``models`` (entries, suppressed) and ``illness_effects``.

    Returns
    -------
    dict
        ``rows`` (one per sensitivity analysis: ``model``, ``label``, ``status``, ``changes``,
        ``estimate``, ``ci_low``, ``ci_high``, ``p_value``, ``scale``, ``reason``),
        ``primary`` (the primary model's effect), ``imputation`` (name -> the imputation
        block), ``tipping`` (name -> the tipping-point block), ``working_correlation``
        (name -> block) and ``censoring_flags`` (model -> marker -> flag).

    Examples
    --------
    >>> res = {"models": {"primary": {"kind": "lmm", "role": "primary", "status": "ok",
    ...        "illness_effect": {"estimate": 1.0, "ci_low": 0.0, "ci_high": 2.0}}}}
    >>> sensitivity_section(res)["rows"]
    []
    """
    models = results.get("models") or {}
    primary = (models.get("primary") or {}).get("illness_effect")
    rows = []
    imputation, tipping, wc, flags = {}, {}, {}, {}
    for name, m in models.items():
        if m.get("censoring_flags"):
            flags[name] = m["censoring_flags"]
        if m.get("role") != "sensitivity":
            continue
        eff = m.get("illness_effect") or {}
        rows.append(
            {
                "model": name,
                "label": m.get("label") or name,
                "kind": m.get("kind"),
                "status": m.get("status", "ok"),
                "reason": m.get("reason"),
                "changes": describe_analysis(m),
                "term": eff.get("term"),
                "estimate": eff.get("estimate"),
                "ci_low": eff.get("ci_low"),
                "ci_high": eff.get("ci_high"),
                "p_value": eff.get("p_value"),
                "scale": eff.get("scale"),
                "delta": eff.get("delta"),
            }
        )
        if m.get("imputation"):
            imputation[name] = m["imputation"]
        if m.get("tipping"):
            tipping[name] = m["tipping"]
        if m.get("working_correlation") and m.get("kind") == "gee":
            wc[name] = m["working_correlation"]
    # a tipping-point analysis reuses an MI model's imputations (same fields, same seed): list the
    # imputation model once
    for name in [n for n in imputation if models[n].get("kind") == "tipping_point"]:
        if any(_same_imputation(imputation[name], imputation[o]) for o in imputation if o != name):
            imputation.pop(name)
    return {
        "primary": primary,
        "rows": rows,
        "imputation": imputation,
        "tipping": tipping,
        "working_correlation": wc,
        "censoring_flags": flags,
    }
