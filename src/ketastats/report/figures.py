"""Report figures, drawn from the processed data and the model results (never refitted)."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

__all__ = ["trajectory_figure", "coefficient_figure", "figure_to_data_uri"]

# fixed metadata so that the same data give byte-identical images
_PNG_META = {"Software": None}
_SVG_META = {"Date": None, "Creator": None}


def figure_to_data_uri(fig) -> str:
    """Encode a figure as a PNG ``data:`` URI (the report embeds every image)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata=_PNG_META)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def trajectory_figure(sessions: pd.DataFrame, score: str = "madrs", z: float = 1.96):
    """Individual score trajectories and the mean with CI by session, by ever-ill status."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    df = sessions.dropna(subset=[score])
    for _, g in df.groupby("patient_id", sort=False):
        axes[0].plot(g["session"], g[score], color="0.6", lw=0.5, alpha=0.4)
    axes[0].set_title("Individual trajectories")
    axes[0].set_xlabel("Session (infusion number)")
    axes[0].set_ylabel(score.upper())
    groups = df["ever_ill"] if "ever_ill" in df.columns else pd.Series(0, index=df.index)
    for flag, label, color in [(0, "never ill", "tab:blue"), (1, "ever ill", "tab:red")]:
        sub = df[groups == flag]
        if sub.empty:
            continue
        agg = sub.groupby("session")[score].agg(["mean", "std", "count"])
        se = agg["std"] / np.sqrt(agg["count"])
        axes[1].plot(agg.index, agg["mean"], marker="o", color=color, label=label)
        axes[1].fill_between(agg.index, agg["mean"] - z * se, agg["mean"] + z * se, color=color, alpha=0.2)
    axes[1].set_title("Mean with 95% CI, by illness during the course")
    axes[1].set_xlabel("Session (infusion number)")
    axes[1].legend(frameon=False)
    fig.tight_layout()
    return fig


def coefficient_figure(coefficients: list[dict], title: str):
    """Fixed effects (except the intercept) with their confidence intervals."""
    rows = [c for c in coefficients if c["term"] != "Intercept"]
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.45 * max(len(rows), 1)))
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
