#!/usr/bin/env python
"""Recovery of an illness effect under MAR dropout: the likelihood MMRM against the GEE (issue 18).

    python benchmarks/mmrm_mar_recovery.py --replicates 400 --patients 200

Each replicate simulates a cohort of ``--patients`` patients with 7 sessions:

- illness per session, persistent within a patient (a Markov chain: ill after ill with probability
  0.6, after a well session with 0.1; 30% of patients are illness-prone, 0.25 and 0.7);
- the score ``y_t = mu_t + beta * ill_t + e_t`` with ``mu_t`` falling from 30 by 1.5 points a session,
  ``beta = 3`` points and ``e`` multivariate normal with an unstructured covariance (SDs 6 to 9, correlation
  0.3 + 0.6 * 0.8^lag);
- monotone dropout after each session, with probability ``logit^-1(-2.5 + 0.15 (y_{t-1} - 30))``: driven by
  the previous rating, which was observed (MAR). About 35% of patients drop out before the last session.

Each analysis fits ``y ~ C(session) + ill`` on the observed ratings: the MMRM (unstructured covariance,
REML, Satterthwaite df, and Kenward-Roger; ketastats.models.engines.mmrm), the GEE with an unstructured working correlation
(robust SEs; statsmodels, as kind ``gee``) and the GEE with working independence. Printed: bias, empirical SD, mean SE and the coverage of the 95% CI of the
illness effect, with Monte Carlo SEs. Not a test: the table goes to docs/statistics.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SESSIONS = 7
BETA = 3.0


def simulate(rng: np.random.Generator, patients: int):
    T = SESSIONS
    sd = np.linspace(6.0, 9.0, T)
    lag = np.abs(np.subtract.outer(np.arange(T), np.arange(T)))
    R = 0.3 + 0.6 * 0.8**lag
    np.fill_diagonal(R, 1.0)
    S = R * np.outer(sd, sd)
    prone = rng.random(patients) < 0.3
    p_onset = np.where(prone, 0.25, 0.1)
    p_stay = np.where(prone, 0.7, 0.6)
    ill = np.zeros((patients, T))
    ill[:, 0] = rng.random(patients) < p_onset
    for t in range(1, T):
        p = np.where(ill[:, t - 1] == 1, p_stay, p_onset)
        ill[:, t] = rng.random(patients) < p
    mu = 30.0 - 1.5 * np.arange(T)
    y = mu[None, :] + BETA * ill + rng.multivariate_normal(np.zeros(T), S, patients)
    keep = np.ones((patients, T), dtype=bool)
    for t in range(1, T):
        p_drop = 1.0 / (1.0 + np.exp(-(-2.5 + 0.15 * (y[:, t - 1] - 30.0))))
        keep[:, t] = keep[:, t - 1] & (rng.random(patients) >= p_drop)
    pid = np.repeat(np.arange(patients), T)
    session = np.tile(np.arange(1, T + 1), patients)
    k = keep.ravel()
    return pid[k], session[k], ill.ravel()[k], y.ravel()[k], float(np.mean(~keep[:, -1]))


def design(session, ill):
    T = SESSIONS
    X = np.zeros((session.size, T + 1))
    X[:, 0] = 1.0
    for t in range(2, T + 1):
        X[:, t - 1] = session == t
    X[:, T] = ill
    return X


def fit_both(pid, session, ill, y):
    from scipy import stats
    from statsmodels.genmod import cov_struct, families
    from statsmodels.genmod.generalized_estimating_equations import GEE

    from ketastats.models.engines.mmrm import fit_mmrm

    X = design(session, ill)
    res = fit_mmrm(y, X, pid, session, covariance="us", visit_levels=list(range(1, SESSIONS + 1)))
    j = X.shape[1] - 1
    se = float(res.se[j])
    crit = float(stats.t.ppf(0.975, res.df[j]))
    mmrm = {"est": float(res.beta[j]), "se": se, "crit": crit, "converged": bool(res.converged)}
    kr = res.kenward_roger("expected")
    L = np.eye(X.shape[1])[j]
    from ketastats.models.engines.mmrm import kr_df

    mmrm_kr = {"est": float(res.beta[j]), "se": float(np.sqrt(kr["vcov"][j, j])),
               "crit": float(stats.t.ppf(0.975, kr_df(kr, L[None, :]))), "converged": bool(res.converged)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = GEE(y, X, groups=pid, time=session - 1, family=families.Gaussian(), cov_struct=cov_struct.Unstructured())
        gr = g.fit(maxiter=100, cov_type="robust")
    gee = {"est": float(gr.params[j]), "se": float(gr.bse[j]), "crit": float(stats.norm.ppf(0.975)),
           "converged": bool(getattr(gr, "converged", True))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gi = GEE(y, X, groups=pid, family=families.Gaussian(), cov_struct=cov_struct.Independence()).fit(
            cov_type="robust"
        )
    gee_ind = {"est": float(gi.params[j]), "se": float(gi.bse[j]), "crit": float(stats.norm.ppf(0.975)),
               "converged": True}
    return mmrm, mmrm_kr, gee, gee_ind


def summarize(rows, name):
    est = np.array([r[name]["est"] for r in rows])
    se = np.array([r[name]["se"] for r in rows])
    crit = np.array([r[name]["crit"] for r in rows])
    cover = np.abs(est - BETA) <= crit * se
    n = len(rows)
    c = float(np.mean(cover))
    return {
        "bias": float(np.mean(est) - BETA),
        "bias_mcse": float(np.std(est, ddof=1) / math.sqrt(n)),
        "sd": float(np.std(est, ddof=1)),
        "mean_se": float(np.mean(se)),
        "coverage": c,
        "coverage_mcse": math.sqrt(c * (1 - c) / n),
        "converged": int(sum(r[name]["converged"] for r in rows)),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--replicates", type=int, default=400)
    ap.add_argument("--patients", type=int, default=200)
    ap.add_argument("--seed", type=int, default=20261207)
    a = ap.parse_args(argv)
    try:
        import ketastats  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(ROOT / "src"))
    seeds = np.random.SeedSequence(a.seed).spawn(a.replicates)
    rows, drop = [], []
    t0 = time.perf_counter()
    for s in seeds:
        pid, session, ill, y, dropped = simulate(np.random.default_rng(s), a.patients)
        mmrm, mmrm_kr, gee, gee_ind = fit_both(pid, session, ill, y)
        rows.append({"mmrm": mmrm, "mmrm_kr": mmrm_kr, "gee": gee, "gee_independence": gee_ind})
        drop.append(dropped)
    out = {
        "replicates": a.replicates,
        "patients": a.patients,
        "seed": a.seed,
        "beta": BETA,
        "dropped_before_last_session": float(np.mean(drop)),
        "seconds": time.perf_counter() - t0,
        "mmrm": summarize(rows, "mmrm"),
        "mmrm_kr": summarize(rows, "mmrm_kr"),
        "gee": summarize(rows, "gee"),
        "gee_independence": summarize(rows, "gee_independence"),
    }
    print(json.dumps(out, indent=1))
    print()
    print("| analysis | bias (MC SE) | SD of estimates | mean SE | coverage of the 95% CI (MC SE) |")
    print("|---|---|---|---|---|")
    for k, label in (
        ("mmrm", "MMRM (us, REML, Satterthwaite)"),
        ("mmrm_kr", "MMRM (us, REML, Kenward-Roger)"),
        ("gee", "GEE (unstructured working correlation, robust SE)"),
        ("gee_independence", "GEE (working independence, robust SE)"),
    ):
        m = out[k]
        print(f"| {label} | {m['bias']:+.3f} ({m['bias_mcse']:.3f}) | {m['sd']:.3f} | {m['mean_se']:.3f} | "
              f"{100 * m['coverage']:.1f}% ({100 * m['coverage_mcse']:.1f}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
