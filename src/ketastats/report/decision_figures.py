"""Figures of the decision section: propensity overlap, love plot, and "by illness".

Drawn from ``results.json["decisions"]`` only (numbers already through the disclosure layer):
the overlap figure from smoothed densities (no bin counts), the love plot from the SMDs shown
(a suppressed SMD is left out and said so), the by-illness figure from the released estimates
and CIs (levels with too few sessions or points are listed as not estimated).
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from .figures import message_figure

__all__ = ["by_illness_figure", "love_figure", "overlap_figure"]

_RC = {"font.size": 9, "axes.spines.top": False, "axes.spines.right": False, "svg.hashsalt": "ketastats",
       "svg.fonttype": "path"}
_ARM_COLORS = {"treated": "#d62728", "control": "#1f77b4"}


def _new(nrows: int, ncols: int, figsize) -> tuple[Figure, Any]:
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=figsize)
        return fig, np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()


def _ok(section: Mapping[str, Any] | None) -> list[tuple[str, Mapping[str, Any]]]:
    decs = (section or {}).get("decisions") or {}
    return [(d, e) for d, e in decs.items() if e.get("status") == "ok" and e.get("diagnostics")]


def _why_not(section: Mapping[str, Any] | None) -> str:
    if not section or not section.get("available"):
        return "No decision analysis is configured."
    reasons = [f"{d}: {e.get('reason')}" for d, e in (section.get("decisions") or {}).items() if e.get("reason")]
    return "\n".join(textwrap.wrap("Not estimated. " + " ".join(reasons), 110)) if reasons else "Not estimated."


def overlap_figure(section: Mapping[str, Any] | None):
    """Propensity densities by decision arm (one panel per decision) and the positivity range."""
    ok = _ok(section)
    if not ok:
        return message_figure(_why_not(section))
    fig, axes = _new(1, len(ok), (4.8 * len(ok), 3.2))
    for ax, (_decision, e) in zip(axes, ok, strict=True):
        ov = e["diagnostics"]["overlap"]
        dens = ov.get("density") or {}
        grid = np.asarray(dens.get("grid") or [])
        for arm in ("treated", "control"):
            if dens.get(arm) is not None:
                ax.plot(grid, dens[arm], color=_ARM_COLORS[arm], label=e["labels"][arm])
                ax.fill_between(grid, dens[arm], color=_ARM_COLORS[arm], alpha=0.15)
        lo, hi = ov["range"]
        ax.axvspan(0, lo, color="0.85", zorder=0)
        ax.axvspan(hi, 1, color="0.85", zorder=0)
        ax.set_xlim(0, 1)
        ax.set_xlabel(f"Propensity P({e['labels']['treated']} | confounders)")
        ax.set_ylabel("Density")
        ax.set_title(f"{e['labels']['treated'].capitalize()} versus {e['labels']['control']}", fontsize=9)
        ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return fig


def love_figure(section: Mapping[str, Any] | None):
    """Standardized mean differences before (open) and after (filled) weighting, per confounder."""
    ok = _ok(section)
    if not ok:
        return message_figure(_why_not(section))
    rows = max(len(e["diagnostics"]["balance"]) for _, e in ok)
    fig, axes = _new(1, len(ok), (4.8 * len(ok), 1.2 + 0.28 * rows))
    for ax, (_decision, e) in zip(axes, ok, strict=True):
        bal = e["diagnostics"]["balance"]
        thr = e["diagnostics"].get("balance_threshold") or 0.1
        shown = [r for r in bal if isinstance(r.get("smd_before"), int | float) and isinstance(r.get("smd_after"), int | float)]
        hidden = len(bal) - len(shown)
        y = np.arange(len(shown))[::-1]
        for yi, r in zip(y, shown, strict=True):
            ax.plot(abs(r["smd_before"]), yi, "o", mfc="none", color="0.4")
            ax.plot(abs(r["smd_after"]), yi, "o", color="k")
        ax.axvline(thr, color="#d62728", lw=0.8, ls="--")
        ax.set_yticks(y, [r["term"] for r in shown], fontsize=7)
        ax.set_xlabel("|standardized mean difference|: open before, filled after weighting")
        title = f"{e['labels']['treated'].capitalize()} versus {e['labels']['control']}"
        if hidden:
            title += f"\n({hidden} yes/no confounder(s) not shown: small counts)"
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def by_illness_figure(
    section: Mapping[str, Any] | None, *, mcid: float | None = None, score: str = "MADRS", level: float = 0.95
):
    """Effects with CIs by kind of illness: the primary model's illness effect by type, severity and
    fever, and each decision's effect by severity (not estimated where the numbers are too few)."""
    rows = (section or {}).get("by_illness") or []
    if not rows:
        return message_figure("No illness-by-type model or decision analysis gave results.")
    panels: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        panels.setdefault(r["panel"], []).append(r)
    n = sum(len(v) + 1 for v in panels.values())
    fig, axes = _new(1, 1, (8.5, 1.0 + 0.24 * n))
    ax = axes[0]
    y = n - 1
    ticks, labels = [], []
    for panel, items in panels.items():
        ticks.append(y)
        labels.append(panel)
        y -= 1
        for r in items:
            est, lo, hi = r.get("estimate"), r.get("ci_low"), r.get("ci_high")
            ok = r.get("status") == "ok" and all(isinstance(v, int | float) for v in (est, lo, hi))
            ticks.append(y)
            why = " (not shown: small cell)" if r.get("status") == "suppressed" else " (not estimated: too few)"
            labels.append(f"   {str(r['level']).replace('_', ' ')}" + ("" if ok else why))
            if ok:
                ax.hlines(y, lo, hi, color="k", lw=1.4)
                ax.plot(est, y, "o", color="k", ms=5)
            y -= 1
    if mcid is not None:
        ax.axvspan(-mcid, mcid, color="#2ca02c", alpha=0.08)
    ax.axvline(0, color="0.4", lw=0.8, ls="--")
    ax.set_yticks(ticks, labels, fontsize=7)
    for t, lab in zip(ax.get_yticklabels(), labels, strict=True):
        if not lab.startswith("   "):
            t.set_fontweight("bold")
    ax.set_xlabel(
        f"Effect, {score} points ({round(100 * level)}% CI); > 0 = worse" + (f"; band ±{mcid:g} (MCID)" if mcid else "")
    )
    fig.tight_layout()
    return fig
