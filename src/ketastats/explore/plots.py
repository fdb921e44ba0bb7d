"""Figures for the notebooks: each returns a matplotlib Figure (not registered with pyplot)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .sessions import cytokine_markers, cytokine_summary, ill_flags, missingness_table, score_by_session

__all__ = [
    "plot_score_distributions",
    "plot_missingness",
    "plot_illness_timeline",
    "plot_illness_effects",
    "plot_cytokines",
    "plot_blups",
    "plot_trajectories",
]


# ------------------------------------------------------------------- plots
def _figure(nrows: int = 1, ncols: int = 1, *, width: float = 10.0, height: float = 3.6, **kw):
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def plot_score_distributions(sessions: pd.DataFrame, score: str = "madrs") -> Figure:
    """Baseline score, score by session (ill vs well) and last-session change."""
    fig, axes = _figure(1, 3, width=12)
    ax = axes[0, 0]
    base = f"{score}_baseline"
    first = sessions.groupby("patient_id")[base].first() if base in sessions else pd.Series(dtype=float)
    ax.hist(first.dropna(), bins=20, color="tab:blue", alpha=0.8)
    ax.set(title=f"Baseline {score.upper()} (one per patient)", xlabel=score.upper(), ylabel="patients")
    ax = axes[0, 1]
    tab = score_by_session(sessions, score)
    ax.plot(tab.index, tab["mean_well"], marker="o", label="well at that session")
    ax.plot(tab.index, tab["mean_ill"], marker="s", ls="", color="tab:red", label="ill at that session")
    ax.set(title=f"Mean {score.upper()} by session", xlabel="session", ylabel=score.upper())
    ax.legend(frameon=False)
    ax = axes[0, 2]
    change = f"{score}_change"
    if change in sessions:
        last = sessions.sort_values("session").groupby("patient_id")[change].last()
        ax.hist(last.dropna(), bins=20, color="tab:green", alpha=0.8)
    ax.set(title="Change from baseline at the last session", xlabel="change", ylabel="patients")
    return fig


def plot_missingness(sessions: pd.DataFrame, top: int = 20) -> Figure:
    """Horizontal bars: percent missing of the ``top`` most incomplete columns."""
    tab = missingness_table(sessions).head(top)
    fig, axes = _figure(width=8, height=max(2.0, 0.25 * len(tab) + 1))
    ax = axes[0, 0]
    ax.barh(tab["column"][::-1], tab["pct_missing"][::-1], color="0.5")
    ax.set(
        xlabel="% of sessions missing", xlim=(0, 100), title="Missing values (censored cytokines not counted)"
    )
    return fig


def plot_illness_timeline(sessions: pd.DataFrame) -> Figure:
    """When illness happens: ill sessions by session number and by illness type."""
    ill = ill_flags(sessions) == 1
    fig, axes = _figure(1, 2, width=11)
    ax = axes[0, 0]
    by_session = ill.groupby(sessions["session"]).mean() * 100
    ax.bar(by_session.index, by_session.to_numpy(), color="tab:red", alpha=0.8)
    ax.set(title="Sessions rated ill, by session", xlabel="session", ylabel="% of sessions")
    ax = axes[0, 1]
    if "illness_type" in sessions:
        types = sessions.loc[ill, "illness_type"].astype(object).fillna("unknown").value_counts()
        ax.barh(types.index[::-1].astype(str), types.to_numpy()[::-1], color="tab:orange")
    ax.set(title="Ill sessions by illness type", xlabel="sessions")
    return fig


def plot_illness_effects(effects: pd.DataFrame) -> Figure:
    """Forest plot of the illness effect (estimate and CI) across models."""
    fig, axes = _figure(width=8, height=max(2.0, 0.5 * len(effects) + 1.2))
    ax = axes[0, 0]
    y = np.arange(len(effects))[::-1]
    est = effects["estimate"].to_numpy(float)
    lo = effects["ci_low"].to_numpy(float)
    hi = effects["ci_high"].to_numpy(float)
    err = np.vstack([est - lo, hi - est])
    ax.errorbar(est, y, xerr=np.where(np.isfinite(err), err, 0), fmt="o", color="k", capsize=3)
    ax.axvline(0, color="0.6", ls="--")
    ax.set_yticks(y, [f"{lab} ({t})" for lab, t in zip(effects["label"], effects["term"])])
    ax.set(xlabel="illness effect (outcome units), with CI", title="Illness effect by model")
    return fig


def plot_cytokines(sessions: pd.DataFrame) -> Figure:
    """Detected values (log scale) by illness at the session, one panel per marker.

    Values below the detection limit are not drawn; each panel's title gives their share.
    """
    markers = list(cytokine_markers(sessions))
    fig, axes = _figure(1, max(1, len(markers)), width=3.2 * max(1, len(markers)))
    ill = ill_flags(sessions)
    units = cytokine_markers(sessions)
    for ax, marker in zip(axes[0], markers):
        ax.set_ylabel(f"detected values ({units[marker]})")
        value = pd.to_numeric(sessions[marker], errors="coerce")
        data = [value[(ill == s) & value.notna() & (value > 0)].to_numpy() for s in (0, 1)]
        keep = [(d, lab) for d, lab in zip(data, ("well", "ill")) if len(d)]
        if keep:
            ax.boxplot([d for d, _ in keep])
            ax.set_xticks(range(1, len(keep) + 1), [lab for _, lab in keep])
            ax.set_yscale("log")
        pct = cytokine_summary(sessions).set_index("marker").loc[marker, "pct_censored"]
        ax.set_title(f"{marker}\n{pct:.0f}% below LOD" if np.isfinite(pct) else marker)
    if not markers:
        axes[0, 0].text(0.5, 0.5, "no cytokine columns", ha="center", va="center")
    return fig


def plot_blups(blups: pd.DataFrame) -> Figure:
    """Random intercept against random slope (when there is one), coloured by ever ill."""
    effects = [c for c in blups.columns if c not in ("patient_id", "ever_ill")]
    fig, axes = _figure(width=6, height=4.5)
    ax = axes[0, 0]
    colour = (
        blups["ever_ill"].map({1: "tab:red", 0: "tab:blue"}).fillna("0.5") if "ever_ill" in blups else "k"
    )
    if len(effects) >= 2:
        ax.scatter(blups[effects[0]], blups[effects[1]], c=colour, s=14, alpha=0.7)
        ax.set(xlabel=f"BLUP: {effects[0]}", ylabel=f"BLUP: {effects[1]}")
    elif effects:
        ax.scatter(blups[effects[0]], np.arange(len(blups)), c=colour, s=10)
        ax.set(xlabel=f"BLUP: {effects[0]}", ylabel="patient (index)")
    ax.set_title("Patient random effects (red: ever ill, blue: never ill)")
    return fig


def plot_trajectories(traj: pd.DataFrame, ncols: int = 3) -> Figure:
    """One panel per patient: observed score, the patient's fit (BLUPs) and the average fit."""
    ids = list(dict.fromkeys(traj["patient_id"]))
    nrows = max(1, -(-len(ids) // ncols))
    fig, axes = _figure(nrows, ncols, width=3.6 * ncols, height=2.6 * nrows, sharex=True, sharey=True)
    for ax in axes.ravel()[len(ids) :]:
        ax.set_visible(False)
    for ax, pid in zip(axes.ravel(), ids):
        g = traj[traj["patient_id"] == pid]
        ax.plot(g["session"], g["fitted_population"], color="0.6", ls="--", label="average patient")
        ax.plot(g["session"], g["fitted_patient"], color="tab:blue", label="this patient (BLUPs)")
        well = g["ill"] != 1
        ax.scatter(g.loc[well, "session"], g.loc[well, "observed"], color="k", s=14, label="observed")
        ax.scatter(
            g.loc[~well, "session"], g.loc[~well, "observed"], color="tab:red", s=30, marker="s", label="ill"
        )
        ax.set_title(str(pid), fontsize=9)
    axes[0, 0].legend(fontsize=7, frameon=False)
    for ax in axes[-1]:
        ax.set_xlabel("session")
    return fig
