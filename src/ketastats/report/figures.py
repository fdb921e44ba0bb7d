"""Report figures, drawn from ``results.json``, the processed data and the model files.

Nothing is refitted. Every count a figure prints (numbers at risk, detection counts) is
taken from ``results.json``, where it has been through small-cell suppression; means
computed from 1 to ``threshold`` patients are absent there and are not drawn.

Each figure is saved as PNG (embedded in the report) and SVG (for papers) with fixed
metadata (no software string, no date, a fixed SVG hash salt), so the same data give the
same bytes.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from .._atomic import atomic_path
from .catalog import FIGURES

__all__ = [
    "FIGURES",
    "figure_bytes",
    "figure_to_data_uri",
    "save_figure",
    "trajectory_figure",
    "illness_timeline_figure",
    "cytokine_figure",
    "forest_figure",
    "residuals_figure",
    "qq_figure",
    "caterpillar_figure",
    "message_figure",
    "coefficient_figure",
]


_PNG_META = {"Software": None}
_SVG_META = {"Date": None, "Creator": None}
_RC = {
    "svg.hashsalt": "ketastats",
    "svg.fonttype": "path",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
_COLORS = {0: "#1f77b4", 1: "#d62728"}
_GROUP_LABELS = {0: "never ill", 1: "ever ill"}


def figure_bytes(fig) -> tuple[bytes, bytes]:
    """PNG and SVG bytes of a figure, with fixed metadata (and the figure's own
    ``ketastats_rc`` settings, e.g. the flow diagram's text kept as text)."""
    with matplotlib.rc_context({**_RC, **getattr(fig, "ketastats_rc", {})}):
        png, svg = io.BytesIO(), io.BytesIO()
        fig.savefig(png, format="png", dpi=110, bbox_inches="tight", metadata=_PNG_META)
        fig.savefig(svg, format="svg", bbox_inches="tight", metadata=_SVG_META)
    return png.getvalue(), svg.getvalue()


def figure_to_data_uri(fig) -> str:
    """Encode a figure as a PNG ``data:`` URI (the report embeds every image)."""
    png, _ = figure_bytes(fig)
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def save_figure(fig, out_dir: str | Path | None, name: str) -> str:
    """Write ``<out_dir>/<name>.png`` and ``.svg`` atomically; return the PNG as a data URI
    (the SVG for a figure with ``ketastats_embed = "svg"``)."""
    png, svg = figure_bytes(fig)
    if out_dir is not None:
        out = Path(out_dir)
        for ext, data in (("png", png), ("svg", svg)):
            with atomic_path(out / f"{name}.{ext}") as tmp:
                Path(tmp).write_bytes(data)
    if getattr(fig, "ketastats_embed", "png") == "svg":
        return "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _new(nrows: int = 1, ncols: int = 1, *, figsize=None, **kwargs):
    """A figure and its axes, as ``pyplot.subplots`` but not registered with pyplot: drawing a
    report figure neither needs nor changes the session's backend (a notebook keeps its own)."""
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=figsize)
        return fig, fig.subplots(nrows, ncols, **kwargs)


def message_figure(text: str, title: str = ""):
    """A small figure that says why a plot could not be drawn (the file still exists)."""
    fig, ax = _new(figsize=(6, 1.6))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    if title:
        ax.set_title(title)
    return fig


# -------------------------------------------------------------- trajectories
def trajectory_figure(
    sessions: pd.DataFrame,
    summary: Sequence[Mapping[str, Any]],
    *,
    by: str = "session",
    score: str = "madrs",
    level: float = 0.95,
    day_bin: int = 7,
    group_n: Mapping[str, Any] | None = None,
    score_label: str | None = None,
    unit: str = "infusion",
):
    """Individual trajectories (left) and means with CI by ever-ill status (right).

    ``summary`` is ``results["trajectories"]["by_<by>"]``: the means, CIs and suppressed
    patient counts per time point and group (the counts are printed under the axis).
    ``group_n`` is Table 1's (suppressed) patient counts: one line per patient would let a
    reader count a small group, so lines are coloured by group only when both groups'
    counts are shown, and not drawn at all when the total is suppressed.
    """
    df = sessions.dropna(subset=[score, by]).sort_values(["patient_id", by], kind="stable")
    if df.empty:
        return message_figure(f"No {score_label or score.upper()} ratings to plot.")
    group_n = group_n or {}
    # a cohort without illness data has one group, all patients: no illness colours or split
    illness = "ill" in sessions.columns and sessions["ill"].notna().any()
    labels = _GROUP_LABELS if illness else {0: "all patients", 1: "ever ill"}
    colour_groups = illness and not any(isinstance(group_n.get(k), str) for k in ("never_ill", "ever_ill"))
    fig, axes = _new(1, 2, figsize=(10, 4.2), sharey=True)
    if isinstance(group_n.get("overall"), str):
        axes[0].text(
            0.5,
            0.5,
            "not shown: too few patients\n(small-cell rule)",
            transform=axes[0].transAxes,
            ha="center",
        )
    else:
        for _pid, g in df.groupby("patient_id", sort=True):
            flag = int(g["ever_ill"].iloc[0]) if ("ever_ill" in g and colour_groups) else 0
            axes[0].plot(g[by], g[score], color=_COLORS[flag] if colour_groups else "0.4", lw=0.5, alpha=0.25)
    xlabel = f"Session ({unit} number)" if by == "session" else "Study day (days since the first session)"
    axes[0].set_title("Individual patients" + (" (colour: ever ill)" if colour_groups else ""))
    axes[0].set_xlabel(xlabel)
    axes[0].set_ylabel(f"{score_label or score.upper()} total")
    rows = pd.DataFrame(list(summary))
    offset = {0: -0.06, 1: 0.06} if by == "session" else {0: -0.5, 1: 0.5}
    ticks = []
    for flag in (0, 1):
        if rows.empty:
            break
        sub = rows[(rows["ever_ill"] == flag) & rows["mean"].notna()].sort_values(by)
        if sub.empty:
            continue
        x = sub[by].astype(float) + (day_bin / 2 if by == "day" else 0) + offset[flag]
        axes[1].plot(x, sub["mean"], marker="o", ms=3.5, color=_COLORS[flag], label=labels[flag])
        axes[1].fill_between(
            x, sub["ci_low"].astype(float), sub["ci_high"].astype(float), color=_COLORS[flag], alpha=0.18
        )
    if not rows.empty:
        # patients with a rating per time point, under the axis (suppressed counts as in results.json)
        ticks = sorted(rows[by].unique())
        xs = {t: float(t) + (day_bin / 2 if by == "day" else 0) for t in ticks}
        trans = matplotlib.transforms.blended_transform_factory(axes[1].transData, axes[1].transAxes)
        for k, flag in enumerate((0, 1)):
            sub = rows[rows["ever_ill"] == flag].set_index(by)
            y = -0.2 - 0.07 * k
            axes[1].text(
                0,
                y,
                f"n {labels[flag]}",
                transform=axes[1].transAxes,
                ha="right",
                fontsize=7,
                color=_COLORS[flag],
            )
            for t in ticks:
                if t in sub.index:
                    n = sub.loc[t, "n"]
                    label = "s" if n == "suppressed" else str(n)
                    axes[1].text(
                        xs[t], y, label, transform=trans, ha="center", fontsize=7, color=_COLORS[flag]
                    )
        axes[1].text(
            1.0,
            -0.36,
            "n: patients rated; s: suppressed",
            transform=axes[1].transAxes,
            ha="right",
            fontsize=6.5,
            color="0.4",
        )
    lo, hi = axes[0].get_xlim()
    if not rows.empty:
        lo, hi = min(lo, min(xs.values()) - 0.3), max(hi, max(xs.values()) + 0.3)
    axes[1].set_xlim(lo, hi)  # the counts are placed in data coordinates: keep them on the axis
    if not axes[1].lines:
        axes[1].text(
            0.5, 0.5, "no mean shown: too few patients per point", transform=axes[1].transAxes, ha="center"
        )
    axes[1].set_title(
        f"Mean with {round(100 * level)}% CI, "
        + ("by illness during the course" if illness else "all patients (no illness data)")
    )
    axes[1].set_xlabel(xlabel if by == "session" else f"Study day ({day_bin}-day bins)")
    if axes[1].lines:
        axes[1].legend(frameon=False)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- timeline
def illness_timeline_figure(
    sessions: pd.DataFrame, illness: Mapping[str, Any] | None = None, max_patients: int = 80
):
    """Swimmer plot: each ever-ill patient's course (sessions) with ill sessions marked.

    Patients are sorted by the day of their first illness. At most ``max_patients`` rows
    (the first by that order) are drawn; the axis label says so when more exist.
    ``illness`` is ``results["illness"]``: a reader can count the rows and marks, so the
    plot is not drawn when the number of ever-ill patients or ill sessions is suppressed
    there, and illness types share one marker when a type's count is suppressed.
    """
    if "ill" not in sessions.columns:
        return message_figure("No illness variable (ill) in the data.")
    illness = illness or {}
    if isinstance(illness.get("ever_ill"), str) or isinstance(illness.get("ill_sessions"), str):
        return message_figure(
            "Not shown: the number of ever-ill patients or of ill sessions is small (small-cell rule)."
        )
    by_type = not any(isinstance(t.get("sessions"), str) for t in illness.get("by_type", []))
    df = sessions.dropna(subset=["day"]).copy()
    df["ill"] = pd.to_numeric(df["ill"], errors="coerce")
    ever = df.groupby("patient_id")["ill"].max() > 0
    ids = ever[ever].index
    if len(ids) == 0:
        return message_figure("No session with acute illness was recorded.")
    first_ill = df[df["ill"] == 1].groupby("patient_id")["day"].min().loc[ids]
    order = first_ill.sort_values(kind="stable").index[:max_patients]
    fig, ax = _new(figsize=(9, max(2.6, 1.2 + 0.12 * len(order))))
    types = (
        sorted(df.loc[df["ill"] == 1, "illness_type"].dropna().astype(str).unique())
        if ("illness_type" in df and by_type)
        else []
    )
    markers = dict(zip(types, ["s", "^", "D", "v", "P", "X"] * 3))
    palette = dict(zip(types, ["#d62728", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"] * 3))
    seen = set()
    for i, pid in enumerate(order[::-1]):
        g = df[df["patient_id"] == pid]
        ax.hlines(i, g["day"].min(), g["day"].max(), color="0.75", lw=2)
        ok = g[g["ill"] != 1]
        ax.plot(
            ok["day"],
            np.full(len(ok), i),
            "o",
            color="0.35",
            ms=2.5,
            label="session" if "session" not in seen else None,
        )
        seen.add("session")
        sick = g[g["ill"] == 1]
        for t, gg in sick.groupby(
            sick["illness_type"].astype(str) if ("illness_type" in sick and types) else np.zeros(len(sick))
        ):
            t = str(t)
            lab = f"ill: {t}" if t in markers else "ill"
            ax.plot(
                gg["day"],
                np.full(len(gg), i),
                markers.get(t, "s"),
                color=palette.get(t, "#d62728"),
                ms=4,
                label=lab if lab not in seen else None,
            )
            seen.add(lab)
    ax.set_yticks([])
    ax.set_ylabel(
        f"ever-ill patients ({len(order)} shown)" if len(ids) > max_patients else "ever-ill patients"
    )
    ax.set_xlabel("Study day (days since first infusion)")
    ax.set_title("Illness episodes over the course")
    ax.legend(frameon=False, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- cytokines
def cytokine_figure(sessions: pd.DataFrame, summary: Sequence[Mapping[str, Any]]):
    """Densities of log10 concentrations of detected values, detection limits marked.

    A kernel density (not a histogram, whose bar heights would be counts of sessions, some
    of them small) with the median and quartiles marked. ``summary`` is
    ``results["cytokines"]``: the (suppressed) counts below the detection limit printed in
    each panel come from there; a marker with 1 to ``threshold`` detected values (shown as a
    string there) is not drawn.
    """
    summary = [s for s in summary if s.get("detected") not in (0, None)]
    if not summary:
        return message_figure("No cytokine measurements in the data.")
    fig, axes = _new(1, len(summary), figsize=(max(4.5, 3.2 * len(summary)), 3), squeeze=False)
    for ax, s in zip(axes[0], summary):
        m = s["marker"]
        ax.set_title(s["label"])
        ax.set_yticks([])
        if isinstance(s["detected"], str):
            ax.text(
                0.5, 0.5, "too few detected values\nto show", transform=ax.transAxes, ha="center", va="center"
            )
            continue
        cens = (
            sessions.get(f"{m}_censored", pd.Series(False, index=sessions.index)).fillna(False).astype(bool)
        )
        v = pd.to_numeric(sessions[m], errors="coerce")[~cens].dropna()
        x = np.log10(v[v > 0].to_numpy(float))
        lods = [math.log10(lod) for lod in s.get("lod") or [] if lod > 0]
        if len(np.unique(x)) > 1:
            lo, hi = min([x.min(), *lods]) - 0.3, max([x.max(), *lods]) + 0.3
            grid = np.linspace(lo, hi, 256)
            dens = stats.gaussian_kde(x)(grid)
            ax.fill_between(grid, dens, color="0.75")
            ax.plot(grid, dens, color="0.3", lw=1)
            ax.set_ylim(0, dens.max() * 1.3)  # room for the note
            q1, med, q3 = np.percentile(x, [25, 50, 75])
            for q, ls in ((q1, ":"), (med, "-"), (q3, ":")):
                ax.axvline(q, color="0.2", lw=0.8, ls=ls)
        for j, lod in enumerate(lods):
            ax.axvline(lod, color="#d62728", ls="--", lw=1.2, label="detection limit" if j == 0 else None)
        below = s["below_lod"]
        pct = s.get("below_lod_pct")
        txt = f"below limit: {below} sessions" + (f" ({pct:.0f}%)" if pct is not None else "")
        ax.text(0.98, 0.95, txt, transform=ax.transAxes, ha="right", va="top", fontsize=7)
        ax.set_xlabel("log10 concentration (detected values)")
        if lods:
            ax.legend(frameon=False, fontsize=7, loc="center right")
    axes[0][0].set_ylabel("density")
    fig.tight_layout()
    return fig


# -------------------------------------------------------------------- forest
def forest_figure(
    effects: Sequence[Mapping[str, Any]], *, mcid: float | None = None, level: float = 0.95, score_label: str = "MADRS"
):
    """The illness effect (estimate and CI) per analysis, with the MCID band shaded.

    Labels are wrapped; the term is named only where it differs from the primary's, and each
    row's estimate and CI are printed at the right so the plot can be read without the table.
    """
    if not effects:
        return message_figure("No analysis estimated an illness effect.")
    import textwrap

    main_term = effects[0].get("term")
    labels = []
    for e in effects:
        text = str(e["label"])
        if e.get("term") and e.get("term") != main_term:
            text += f" ({e['term']})"
        labels.append("\n".join(textwrap.wrap(text, 46)) or text)
    lines = sum(lab.count("\n") + 1 for lab in labels)
    fig, ax = _new(figsize=(9.5, 1.1 + 0.25 * lines + 0.15 * len(effects)))
    y = np.arange(len(effects))[::-1]
    for yi, e in zip(y, effects):
        lo, hi = e.get("ci_low"), e.get("ci_high")
        color = "k" if e["model"] == "primary" else "0.35"
        if lo is not None and hi is not None:
            ax.hlines(yi, lo, hi, color=color, lw=1.5)
        ax.plot(e["estimate"], yi, "s" if e["model"] == "primary" else "o", color=color, ms=6)
        ci = "" if lo is None or hi is None else f" [{lo:.2f}, {hi:.2f}]"
        ax.annotate(
            f"{e['estimate']:.2f}{ci}",
            (1.01, yi),
            xycoords=("axes fraction", "data"),
            va="center",
            fontsize=8,
            color=color,
        )
    if mcid is not None:
        ax.axvspan(-mcid, mcid, color="#2ca02c", alpha=0.08, label=f"±{mcid:g} points (MCID)")
    ax.axvline(0, color="0.4", lw=0.8, ls="--")
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_ylim(-0.6, len(effects) - 0.4)
    ax.set_xlabel(f"Illness effect, {score_label} points ({round(100 * level)}% CI); > 0 = worse when ill")
    fig.tight_layout()
    fig.legend(frameon=False, fontsize=7, loc="lower right")
    return fig


# -------------------------------------------------------------- diagnostics
def residuals_figure(frame: pd.DataFrame):
    """Conditional residuals against conditional fitted values, with a LOWESS-free binned mean."""
    fig, ax = _new(figsize=(6, 4))
    ax.scatter(frame["fitted"], frame["residual"], s=6, alpha=0.4, color="0.3")
    ax.axhline(0, color="#d62728", lw=1)
    bins = pd.qcut(frame["fitted"], q=min(10, max(frame["fitted"].nunique() // 5, 1)), duplicates="drop")
    binned = frame.groupby(bins, observed=True).agg(x=("fitted", "mean"), y=("residual", "mean"))
    ax.plot(
        binned["x"], binned["y"], color="#1f77b4", marker="o", ms=3, lw=1.2, label="mean residual per decile"
    )
    ax.set_xlabel("Fitted value (fixed effects + patient's BLUP)")
    ax.set_ylabel("Residual (observed - fitted)")
    ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return fig


def qq_figure(frame: pd.DataFrame):
    """Normal QQ plot of standardized conditional residuals, with the identity line."""
    r = np.sort(frame["residual"].to_numpy(float))
    z = (r - r.mean()) / r.std(ddof=1)
    q = stats.norm.ppf((np.arange(1, len(z) + 1) - 0.5) / len(z))
    fig, ax = _new(figsize=(4.5, 4.5))
    ax.scatter(q, z, s=6, color="0.3")
    lim = [min(q.min(), z.min()), max(q.max(), z.max())]
    ax.plot(lim, lim, color="#d62728", lw=1)
    ax.set_xlabel("Theoretical normal quantile")
    ax.set_ylabel("Standardized residual")
    fig.tight_layout()
    return fig


def caterpillar_figure(blups: pd.DataFrame, z: float = 1.96):
    """Conditional modes of each random effect, sorted, with ``± z`` conditional SD."""
    effects = list(dict.fromkeys(blups["effect"]))
    fig, axes = _new(1, len(effects), figsize=(4 * len(effects), 4), squeeze=False)
    for ax, eff in zip(axes[0], effects):
        b = blups[blups["effect"] == eff].sort_values("blup", kind="stable")
        x = np.arange(len(b))
        ax.errorbar(x, b["blup"], yerr=z * b["cond_sd"], fmt="o", ms=2, lw=0.6, color="0.3", ecolor="0.65")
        ax.axhline(0, color="#d62728", lw=0.8)
        ax.set_title(f"Random effect: {eff}")
        ax.set_xlabel("Patients, sorted")
        ax.set_xticks([])
    axes[0][0].set_ylabel("Conditional mode (BLUP)")
    fig.tight_layout()
    return fig


def coefficient_figure(coefficients: list[dict], title: str):
    """Fixed effects (except the intercept) with their confidence intervals."""
    rows = [c for c in coefficients if c["term"] != "Intercept"]
    fig, ax = _new(figsize=(6, 0.5 + 0.45 * max(len(rows), 1)))
    y = np.arange(len(rows))[::-1]
    est = [c["estimate"] for c in rows]
    lo = [c["estimate"] - c["ci_low"] for c in rows]
    hi = [c["ci_high"] - c["estimate"] for c in rows]
    ax.errorbar(est, y, xerr=[lo, hi], fmt="o", color="k", capsize=3)
    ax.axvline(0, color="0.5", lw=0.8, ls="--")
    ax.set_yticks(y, [c["term"] for c in rows])
    ax.set_xlabel("Estimate (MADRS points)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def simulation_figure(recovery: Mapping[str, Any] | None, power: Mapping[str, Any] | None):
    """Recovery (estimate against truth, per scenario) and power (against cohort size) in one figure.

    Recovery: the mean estimate with +/- 1.96 empirical SE (the spread of the replicates)
    beside the true effect; power: the estimated power with its Monte Carlo 95% band.
    """
    panels = [p for p in (recovery, power) if p and p.get("rows")]
    fig = Figure(figsize=(5.2 * max(len(panels), 1), 3.6))
    axes = fig.subplots(1, max(len(panels), 1), squeeze=False)
    k = 0
    if recovery and recovery.get("rows"):
        ax = axes[0][k]
        k += 1
        rows = list(recovery["rows"])
        y = np.arange(len(rows))[::-1]
        est = np.array([float(r.get("mean_estimate") or np.nan) for r in rows])
        spread = 1.96 * np.array([float(r.get("emp_se") or np.nan) for r in rows])
        truth = np.array([float(r.get("truth") or np.nan) for r in rows])
        ax.errorbar(
            est, y, xerr=spread, fmt="o", color="k", capsize=3, label="mean estimate ± 1.96 empirical SE"
        )
        ax.scatter(truth, y, marker="x", color="tab:red", s=60, zorder=3, label="true effect")
        ax.axvline(0, color="0.6", lw=0.8, ls="--")
        ax.set_yticks(y, [str(r.get("scenario", "")) for r in rows])
        ax.set_xlabel("Within-person illness effect (MADRS points)")
        ax.set_title("Recovery of the known effect")
        ax.legend(frameon=False, fontsize=8, loc="best")
    if power and power.get("rows"):
        ax = axes[0][k]
        rows = sorted(power["rows"], key=lambda r: float(r.get("n") or r.get("n_patients") or 0))
        n = np.array([float(r.get("n") or r.get("n_patients") or np.nan) for r in rows])
        pw = np.array([float(r.get("power") or np.nan) for r in rows])
        mc = np.array([float(r.get("power_mcse") or 0.0) for r in rows])
        ax.errorbar(n, pw, yerr=1.96 * mc, marker="o", capsize=3, color="k")
        ax.axhline(0.8, color="0.6", lw=0.8, ls="--")
        ax.set_ylim(0, 1)
        ax.set_xlabel("Patients in the cohort")
        ax.set_ylabel("Power")
        ax.set_title("Power to detect the illness effect")
    fig.tight_layout()
    return fig
