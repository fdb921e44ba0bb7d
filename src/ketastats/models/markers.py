"""Cytokine markers as model variables: the log scale, non-detects, per-marker checks.

Shared by the kinds that model a marker (``cytokine_illness``, ``cytokine_moderation``,
``mediation``): :func:`log_marker` (substitution below the limit of detection, or the LOD
itself for a censored model), :func:`censored` (the non-detect flags),
:func:`check_marker` (enough draws, not too many non-detects), and the assembly of
per-marker blocks into one model result (:func:`combine_blocks`, :func:`finish_blocks`).

References
----------
Hornung, R. W., & Reed, L. D. (1990). Estimation of average concentration in the presence
of nondetectable values. *Applied Occupational and Environmental Hygiene*, 5(1), 46-51.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import ModelError
from .common import num
from .counted import CountedText, escape, remember
from .multiplicity import adjust_tests
from .retries import SkipModel

__all__ = [
    "censored",
    "log_marker",
    "marker_summary",
    "check_marker",
    "baseline_log_marker",
    "combine_blocks",
    "finish_blocks",
]

log = logging.getLogger(__name__)


_SUBSTITUTE = {"lod_sqrt2": 1 / np.sqrt(2), "lod_half": 0.5}


def censored(df: pd.DataFrame, marker: str) -> pd.Series:
    """Which rows' ``marker`` draw was below the limit of detection (False where not recorded)."""
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
    cens = censored(df, marker)
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
    cens = censored(df, marker)
    drawn = df[marker].notna() | cens
    n, c = int(drawn.sum()), int(cens.sum())
    return {"draws": n, "censored": c, "censored_fraction": num(c / n) if n else None}


def check_marker(
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


def combine_blocks(blocks: dict[str, dict[str, Any]], skipped: dict[str, CountedText], what: str) -> dict[str, Any]:
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


def finish_blocks(
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
    out = combine_blocks(blocks, skipped, spec["label"])
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


def baseline_log_marker(
    data: pd.DataFrame, marker: str, censoring: str, group: str = "patient_id"
) -> pd.Series:
    """Per patient: log marker at the first session (session 1 draw), NaN when not drawn."""
    first = data["session"] == data.groupby(group)["session"].transform("min")
    lm = log_marker(data.loc[first], marker, censoring)
    return pd.Series(lm.to_numpy(), index=data.loc[first, group].to_numpy())
