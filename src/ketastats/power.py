"""Power by simulation, for planning a new cohort.

For each cohort size on a grid, :func:`run_power` simulates replicate cohorts with a given
true within-person illness effect, fits the primary model and counts how often the
illness effect is significant at ``alpha``. The effect is set by scaling the simulator's
direct sickness shifts (``effects.sickness_shift``, by severity) so that the true value of
the model's illness coefficient (:func:`ketastats.recovery.target_effect`, the estimand of
the recovery study) equals the requested effect.

References
----------
Arnold, B. F., Hogan, D. R., Colford, J. M., & Hubbard, A. E. (2011). Simulation methods to
estimate design power: an overview for applied research. *BMC Medical Research
Methodology*, 11, 94. https://doi.org/10.1186/1471-2288-11-94
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from .exceptions import KetastatsError
from .recovery import run_replicate

__all__ = ["effect_overrides", "run_power", "power_figure", "write_power"]

log = logging.getLogger(__name__)


def effect_overrides(
    effect: float,
    scenario: str = "sickness",
    *,
    seed: int = 0,
    pilot_patients: int = 4000,
    spec: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Simulator overrides under which the true within-person illness effect is ``effect``.

    The sickness shifts of ``scenario`` are scaled by ``effect / v1``, where ``v1`` is the
    recovery truth of the unscaled scenario (what the illness coefficient of ``spec``, by
    default the primary model, estimates: :func:`ketastats.recovery.target_effect`) on a
    large pilot cohort. The truth is linear in the shifts, so the scaled scenario's truth is
    ``effect`` up to the pilot's sampling (the shifts move a few escalation and dropout
    decisions).
    """
    from .simulate import resolve_params

    shifts = resolve_params(scenario)["effects"]["sickness_shift"]
    v1 = float(run_replicate(scenario, pilot_patients, seed, 0, spec=spec)["truth"])
    if not math.isfinite(v1):
        raise KetastatsError(f"the pilot cohort of scenario {scenario!r} gave no estimate to scale the effect by")
    if abs(v1) < 1e-9:
        raise KetastatsError(
            f"scenario {scenario!r} has no illness effect to scale; use scenario 'sickness' with --effect"
        )
    scale = effect / v1
    return {"effects": {"sickness_shift": {k: float(v) * scale for k, v in shifts.items()}}}


def run_power(
    sizes: Sequence[int],
    replicates: int,
    *,
    effect: float | None = None,
    scenario: str = "sickness",
    seed: int = 0,
    spec: Mapping[str, Any] | None = None,
    alpha: float = 0.05,
    progress: bool = True,
) -> pd.DataFrame:
    """Estimated power to detect the illness effect at each cohort size.

    Returns
    -------
    pandas.DataFrame
        One row per size: ``n_patients``, ``replicates``, ``power`` (share of replicates
        rejecting H0 at ``alpha``), ``power_mcse``, ``true_effect``, ``mean_estimate``.
    """
    overrides = effect_overrides(effect, scenario, seed=seed, spec=spec) if effect is not None else None
    rows = []
    for n in sizes:
        reps = [
            run_replicate(scenario, int(n), seed + int(n), r, spec=spec, overrides=overrides, alpha=alpha)
            for r in tqdm(range(replicates), desc=f"power n={n}", disable=not progress, unit="rep")
        ]
        t = pd.DataFrame(reps)
        t = t[t["se"].notna()]
        p = float(t["rejects"].mean()) if len(t) else math.nan
        rows.append(
            {
                "n_patients": int(n),
                "replicates": int(len(t)),
                "power": p,
                "power_mcse": math.sqrt(p * (1 - p) / len(t)) if len(t) else math.nan,
                "true_effect": float(t["truth"].mean()) if len(t) else math.nan,
                "mean_estimate": float(t["estimate"].mean()) if len(t) else math.nan,
            }
        )
        log.info("n=%d: power %.3f over %d replicates", n, p, len(t))
    return pd.DataFrame(rows)


def power_figure(table: pd.DataFrame, alpha: float = 0.05):
    """The power curve with Monte Carlo error bars and the conventional 80% line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.errorbar(table["n_patients"], table["power"], yerr=1.96 * table["power_mcse"], marker="o", capsize=3)
    ax.axhline(0.8, color="0.5", ls="--", lw=0.8)
    ax.set_ylim(0, 1)
    ax.set_xlabel("Patients in the cohort")
    ax.set_ylabel(f"Power (two-sided alpha = {alpha:g})")
    eff = table["true_effect"].mean()
    ax.set_title(f"Power to detect a within-person illness effect of {eff:.2f} MADRS points")
    fig.tight_layout()
    return fig


def write_power(table: pd.DataFrame, out_dir: str | Path, alpha: float = 0.05) -> dict[str, Path]:
    """Write ``power.csv``, ``summary.json`` and ``power.png``/``power.svg`` (atomically)."""
    from ._atomic import atomic_path
    from .outputs import write_json
    from .tablecsv import write_csv

    out = Path(out_dir)
    paths = {
        "table": out / "power.csv",
        "summary": out / "summary.json",
        "png": out / "power.png",
        "svg": out / "power.svg",
    }
    write_csv(table, paths["table"], float_format="%.10g")
    write_json(paths["summary"], {"alpha": alpha, "rows": table.to_dict(orient="records")})
    import matplotlib.pyplot as plt

    fig = power_figure(table, alpha)
    with atomic_path(paths["png"]) as tmp:
        fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None})
    with atomic_path(paths["svg"]) as tmp:
        plt.rcParams["svg.hashsalt"] = "ketastats"
        fig.savefig(tmp, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return paths
