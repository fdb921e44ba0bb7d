"""Cytokines on the log scale: the effect of illness on each marker, and moderation.

Values below the assay's limit of detection (``<marker>_censored``) are handled per the
spec's ``censoring``:

``tobit`` (default of ``cytokine_illness``)
    A left-censored random-intercept model by maximum likelihood
    (:mod:`ketastats.models.censored`): a non-detect contributes ``P(y <= log LOD)``. Valid
    with many non-detects; a marker is skipped only above ``max_censored_fraction`` (0.8).
``lod_sqrt2`` / ``lod_half`` / ``exclude``
    Substitution by LOD/sqrt(2) (Hornung & Reed 1990) or LOD/2, or dropping non-detects,
    then an ordinary mixed model; a sensitivity analysis, and what the moderation and
    mediation models use for the marker as a covariate. Defensible only for a small
    non-detect share: above ``max_censored_fraction`` (0.3, the Okdahl et al. 2022 rule)
    the marker is skipped and says so.

``cytokine_illness``
    Per marker: ``log(marker) ~ ill_within + ill_between + progress + (1 | patient)`` over
    every session with a draw (censored at the LOD); ``exp(b_W)`` is the ratio of the marker's level when ill
    to when not ill within the same patient.
``cytokine_moderation``
    Per moderator (baseline log IL-6, baseline log CRP; the session-1 draw, centred at the
    grand mean over patients): the primary model plus ``ill_within x moderator`` and the
    moderator's main effect, with a random slope for ``ill_within`` (a cross-level
    interaction without it is anti-conservative; Heisig & Schaeffer 2019).

Each marker's or moderator's test is listed under ``"tests"`` for the family-wide
Benjamini-Hochberg adjustment (:mod:`ketastats.models.multiplicity`).

References
----------
Hornung, R. W., & Reed, L. D. (1990). Estimation of average concentration in the presence
of nondetectable values. *Applied Occupational and Environmental Hygiene*, 5(1), 46-51.

Heisig, J. P., & Schaeffer, M. (2019). Why you should always include a random slope for
the lower-level variable involved in a cross-level interaction. *European Sociological
Review*, 35(2), 258-279.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import ModelError
from .common import coefficient_rows, illness_effect, mcid_for, num, require_illness
from .counted import CountedText, escape, remember
from .lmm import fit_spec_lmm, formulas_for, lmm_block, model_rows
from .multiplicity import adjust_tests
from .robust import SkipModel

__all__ = ["log_marker", "marker_summary", "fit_cytokine_illness_kind", "fit_moderation_kind"]

log = logging.getLogger(__name__)

_SUBSTITUTE = {"lod_sqrt2": 1 / np.sqrt(2), "lod_half": 0.5}


def _censored(df: pd.DataFrame, marker: str) -> pd.Series:
    col = f"{marker}_censored"
    if col not in df.columns:
        return pd.Series(False, index=df.index)
    return df[col].fillna(False).astype(bool)


def log_marker(df: pd.DataFrame, marker: str, censoring: str = "lod_sqrt2") -> pd.Series:
    """Natural log of a marker, non-detects replaced per ``censoring`` (NaN when not drawn).

    Examples
    --------
    >>> df = pd.DataFrame({"il6": [2.0, np.nan, np.nan], "il6_lod": [0.2, 0.2, 0.2],
    ...                    "il6_censored": [False, True, False]})
    >>> np.round(np.exp(log_marker(df, "il6")), 4).tolist()
    [2.0, 0.1414, nan]
    """
    val = pd.to_numeric(df[marker], errors="coerce").astype(float)
    cens = _censored(df, marker)
    if censoring in _SUBSTITUTE or censoring == "lod":
        lod_col = f"{marker}_lod"
        if cens.any() and lod_col not in df.columns:
            raise ModelError(f"{marker}: censored values but no {lod_col} column to substitute from")
        if cens.any():
            lod = pd.to_numeric(df[lod_col], errors="coerce").astype(float)
            val = val.where(~cens, lod * _SUBSTITUTE.get(censoring, 1.0))
    elif censoring != "exclude":
        raise ModelError(f"unknown censoring rule {censoring!r}; use tobit, lod_sqrt2, lod_half or exclude")
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(val.where(val > 0))
    return out


def marker_summary(df: pd.DataFrame, marker: str) -> dict[str, Any]:
    """Draws, non-detects and their share for one marker in the given rows."""
    if marker not in df.columns:
        return {"draws": 0, "censored": 0, "censored_fraction": None}
    cens = _censored(df, marker)
    drawn = df[marker].notna() | cens
    n, c = int(drawn.sum()), int(cens.sum())
    return {"draws": n, "censored": c, "censored_fraction": num(c / n) if n else None}


def _check_marker(
    df: pd.DataFrame, marker: str, spec: Mapping[str, Any], flags: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Draw counts of a marker, its non-detect flag, and a skip when it cannot be analysed.

    A marker with more than ``flag_censored_fraction`` (default 0.3, the Okdahl et al. 2022
    rule) of its draws below the limit of detection is **flagged**: the flag, and how the
    config says to handle it (the spec's ``censoring``, skipped above
    ``max_censored_fraction``), are recorded in ``summ`` and in ``flags[marker]``.
    """
    if marker not in df.columns:
        raise SkipModel(f"{marker}: not in the data (no draws)")
    summ = marker_summary(df, marker)
    frac = summ["censored_fraction"] or 0.0
    flag_at = float(spec.get("flag_censored_fraction", 0.3))
    max_frac = float(spec.get("max_censored_fraction", 0.3))
    summ["flag_threshold"] = flag_at
    summ["flagged"] = bool(frac > flag_at)
    censoring = spec.get("censoring", "lod_sqrt2")
    if frac > max_frac:
        handling = f"skipped: more than max_censored_fraction = {max_frac:g} below the limit"
    elif censoring == "tobit":
        handling = "censored (tobit) likelihood"
    else:
        handling = {"lod_sqrt2": "LOD/sqrt(2) substitution", "lod_half": "LOD/2 substitution"}.get(
            censoring, "non-detects left out"
        )
    summ["handling"] = handling
    if summ["flagged"] and flags is not None:
        # the counts, not a percentage, in the text: the report suppresses small ones
        message = CountedText(
            escape(marker) + ": {censored} of {draws} draws below the limit of detection "
            + escape(f"(more than {100 * flag_at:.0f}%): {handling} (censoring: {censoring})"),
            {"censored": summ["censored"], "draws": summ["draws"]},
        )
        flags[marker] = {
            "draws": summ["draws"],
            "censored": summ["censored"],
            "censored_fraction": summ["censored_fraction"],
            "threshold": flag_at,
            "handling": handling,
            "message": message,
        }
    if summ["draws"] < int(spec.get("min_draws", 20)):
        raise SkipModel(
            escape(marker) + ": {draws} draw(s), " + f"at least {spec.get('min_draws', 20)} needed",
            draws=summ["draws"],
        )
    if frac > max_frac:
        raise SkipModel(
            escape(marker) + ": {censored} of {draws} draws below the limit of detection "
            f"(more than {100 * max_frac:.0f}%): "
            + (
                "even the censored likelihood is unreliable"
                if censoring == "tobit"
                else "substitution is not defensible"
            ),
            censored=summ["censored"],
            draws=summ["draws"],
        )
    return summ


def _combine(blocks: dict[str, dict[str, Any]], skipped: dict[str, CountedText], what: str) -> dict[str, Any]:
    if not blocks:
        parts = CountedText.join(list(skipped.values()), "; ")
        raise SkipModel(
            escape(f"{what}: no marker could be analysed (") + parts.template + ")", **parts.counts
        )
    coefs = [c for b in blocks.values() for c in b["coefficients"]]
    attempts = [{**a, "label": f"{k}: {a['label']}"} for k, b in blocks.items() for a in b["attempts"]]
    first = next(iter(blocks.values()))
    out: dict[str, Any] = {}
    skipped_parts = {k: remember(out, v) for k, v in skipped.items()}
    skip_messages = [remember(out, v.prefixed(f"skipped {k}: ")) for k, v in skipped.items()]
    return out | {
        "converged": all(b["converged"] for b in blocks.values()),
        "singular": any(b["singular"] for b in blocks.values()),
        "attempts": attempts,
        "engine": first["engine"],
        "optimizer": first["optimizer"],
        "method": first["method"],
        "nobs": int(sum(b["nobs"] for b in blocks.values())),
        "ngroups": int(max(b["ngroups"] for b in blocks.values())),
        "df_method": "satterthwaite"
        if all(b["df_method"] == "satterthwaite" for b in blocks.values())
        else "mixed"
        if any(b["df_method"] == "satterthwaite" for b in blocks.values())
        else "normal",
        "coefficients": coefs,
        "fits": blocks,
        "skipped_parts": skipped_parts,
        "messages": [f"{k}: {m}" for k, b in blocks.items() for m in b["messages"]] + skip_messages,
    }


def _finish(
    blocks: dict[str, dict[str, Any]],
    skipped: dict[str, CountedText],
    spec: Mapping[str, Any],
    record: dict[str, Any],
    flags: dict[str, Any],
    tests: list[dict[str, Any]],
) -> dict[str, Any]:
    """The model JSON of a per-marker kind: combined fits, non-detect flags, BH-adjusted tests.

    Its ``illness_effect`` is None: effects on markers, or per moderator, are not one number on
    the score's scale (see ``fits`` and ``tests``).
    """
    out = _combine(blocks, skipped, spec["label"])
    out["estimands"] = record
    out["censoring"] = spec["censoring"]
    out["censoring_flags"] = {m: {**f, "message": remember(out, f["message"])} for m, f in flags.items()}
    out["messages"] = [
        *out["messages"],
        *(f["message"] for f in out["censoring_flags"].values() if not f["handling"].startswith("skipped")),
    ]
    out["illness_effect"] = None
    out["family"] = spec.get("family", "cytokine")
    out["tests"] = tests
    out["bh_adjusted"] = adjust_tests(tests)
    return out


def fit_cytokine_illness_kind(
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
                        **{outcome: log_marker(df, marker, "lod"), f"{outcome}_cens": _censored(df, marker)}
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
            summ = _check_marker(df, marker, spec, flags)
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
    return _finish(blocks, skipped, spec, record_all, flags, tests)


def _tobit_block(
    df: pd.DataFrame, formula: str, outcome: str, spec: Mapping[str, Any], alpha: float, prefix: str
):
    """Fit the left-censored random-intercept model; fields as :func:`lmm_block` gives them."""
    import patsy

    from .agq import quadrature_words
    from .censored import fit_tobit_lmm

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


def baseline_log_marker(
    data: pd.DataFrame, marker: str, censoring: str, group: str = "patient_id"
) -> pd.Series:
    """Per patient: log marker at the first session (session 1 draw), NaN when not drawn."""
    first = data["session"] == data.groupby(group)["session"].transform("min")
    lm = log_marker(data.loc[first], marker, censoring)
    return pd.Series(lm.to_numpy(), index=data.loc[first, group].to_numpy())


def fit_moderation_kind(data: pd.DataFrame, spec: Mapping[str, Any], estimands: Mapping[str, str], alpha):
    """Kind ``cytokine_moderation``: illness x baseline log marker on the score."""
    blocks: dict[str, dict[str, Any]] = {}
    skipped: dict[str, CountedText] = {}
    tests = []
    flags: dict[str, Any] = {}
    record_all: dict[str, Any] = {}
    ill = spec["illness_term"]
    for marker in spec["moderators"]:
        mod = f"{marker}_base_c"
        try:
            if marker not in data.columns:
                raise SkipModel(f"{marker}: not in the data (no draws)")
            base = data[data["session"] == data.groupby(spec["group"])["session"].transform("min")]
            summ = _check_marker(base, marker, {**spec, "min_draws": spec.get("min_patients", 10)}, flags)
            blm = baseline_log_marker(data, marker, spec["censoring"], spec["group"])

            def derive(df, blm=blm, mod=mod):
                v = df[spec["group"]].map(blm)
                return df.assign(**{mod: v})

            formula, re_formula = formulas_for(spec, extra_fixed=[mod, f"{ill}:{mod}"])
            df, record = model_rows(
                data,
                spec,
                estimands,
                outcome=spec["outcome"],
                terms=[formula.split("~", 1)[1], re_formula or ""],
                what=f"{spec['label']} ({marker})",
                derive=derive,
            )
            # centre the moderator at the grand mean over the analysed patients
            per_patient = df.groupby(spec["group"])[mod].first()
            df = df.assign(**{mod: df[mod] - per_patient.mean()})
            require_illness(df, f"{spec['label']} ({marker})", min_sessions=2)
        except SkipModel as exc:
            skipped[marker] = exc.counted
            continue
        fit = fit_spec_lmm(df, formula, re_formula, spec, alpha, prefix=f"{marker}: ")
        block = lmm_block(fit)
        block["baseline_draws"] = summ
        block["moderator"] = {"column": mod, "centred_at": num(per_patient.mean()), "scale": "log"}
        term = f"{marker}: {ill}:{mod}"
        row = next(c for c in fit.coefficients if c["term"] == term)
        block["interaction"] = row
        tests.append(
            {
                "id": f"{marker}:moderation",
                "label": f"illness x baseline log {marker}",
                "term": term,
                "estimate": row["estimate"],
                "p_value": row["p_value"],
            }
        )
        block["illness_effect"] = illness_effect(
            fit.coefficients, f"{marker}: {ill}", scale="points", mcid=mcid_for(spec["outcome"])
        )
        blocks[marker] = block
        record_all = record
    return _finish(blocks, skipped, spec, record_all, flags, tests)
