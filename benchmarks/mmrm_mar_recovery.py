#!/usr/bin/env python
"""Recovery of an illness effect under MAR dropout: the likelihood MMRM against the GEEs (issue 18).

    python benchmarks/mmrm_mar_recovery.py --design original --replicates 1000 --patients 200
    python benchmarks/mmrm_mar_recovery.py --design selective --replicates 1000 --patients 200
    python benchmarks/mmrm_mar_recovery.py --design feedback --replicates 1000 --patients 200
    python benchmarks/mmrm_mar_recovery.py --design feedback --sds 8,8,8,8,8,8,8 --replicates 1000 --patients 200
    python benchmarks/mmrm_mar_recovery.py --design feedback --sds 8,8,8,8,8,8,8 --a -30 --patients 10000 --replicates 4

Each replicate simulates a cohort of ``--patients`` patients with 7 sessions:

- illness per session, a Markov chain per patient: a fraction ``prone`` of the patients are illness-prone
  (ill after a well session with probability ``onset_prone``, after an ill one with ``stay_prone``), the
  others ``onset`` and ``stay``;
- the score ``y_t = mu_t + beta * ill_t + e_t`` with ``mu_t`` falling from 30 by 1.5 points a session,
  ``beta = 3`` points and ``e`` multivariate normal with an unstructured covariance: SDs ``sds`` per session,
  correlation ``c + ad_weight * prod(phi_k)`` over the steps ``k`` between two sessions, ``phi`` rising
  linearly from ``phi_first`` to ``phi_last`` (a common part, a first-order ante-dependence and a nugget
  ``1 - c - ad_weight``; stationary when ``phi_first == phi_last``);
- monotone dropout after each session, with probability ``logit^-1(a + b (y_{t-1} - 30))``: driven by the
  previous rating, which was observed (MAR);
- optionally (``g``) illness more likely after a higher rating: ``logit P(ill_t) = logit p + g (y_{t-1} - 30)``
  with ``p`` the chain's probability above.

Designs (``DESIGNS``; every number can be overridden by its option):

- ``original``: SDs 6 to 9, correlation ``0.3 + 0.6 * 0.8^lag``, ``a = -2.5, b = 0.15``; 30% prone
  (onset 0.25, stay 0.7; others 0.1, 0.6). About 35% drop out before the last session.
- ``selective``: what theory says distorts the GEEs' working covariance (docs/statistics.md): a narrow
  baseline spread that widens (SDs 4, 8, 9, 9.5, 10, 10, 10: inclusion criteria restrict the first rating,
  responders and non-responders then separate; the GEE's working covariance has one variance), correlation
  that rises as patients settle (``phi`` 0.7 to 0.95: 0.72 between sessions 1 and 2, 0.87 between 6 and 7),
  dropout strongly driven by the previous rating (``b = 0.5``) and illness that persists less than the
  ratings do (stay 0.35 / 0.45, onset 0.15 / 0.25), so that the working model's error in predicting a
  rating from the previous one falls on the illness contrast. About half drop out.
- ``feedback``: ``selective`` with illness more likely in patients doing worse: the log odds of being ill
  at a session gain ``g = 0.1`` per point of the previous rating (odds x2.2 per 8 points). Illness then
  depends on past ratings only (sequentially exogenous): the likelihood still factorises into each rating
  given the past, so the MMRM stays valid, but a GEE's estimating equation is unbiased only when its
  working covariance is the true one.

Each analysis fits ``y ~ C(session) + ill`` on the observed ratings: the MMRM (unstructured covariance,
REML; Satterthwaite df, and Kenward-Roger; ketastats.models.engines.mmrm), the GEE with an unstructured
working correlation (robust SEs; statsmodels, as the shipped config's kind ``gee``), the GEE with an
exchangeable and with an independence working correlation (robust SEs), and, as a check of the generator,
generalised least squares with the true covariance (``oracle``; normal interval with its model SE).
Printed: bias, empirical SD, mean SE and the coverage of the 95% CI of the illness effect, with Monte
Carlo SEs, and the wall and CPU time. Not a test: the tables go to docs/statistics.md.
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

DESIGNS = {
    # The first study's design: correlation 0.3 + 0.6 * 0.8^lag off the diagonal.
    "original": {
        "sds": [6.0, 6.5, 7.0, 7.5, 8.0, 8.5, 9.0], "c": 0.3, "ad_weight": 0.6, "phi_first": 0.8,
        "phi_last": 0.8, "a": -2.5, "b": 0.15, "prone": 0.3, "onset_prone": 0.25, "stay_prone": 0.7,
        "onset": 0.1, "stay": 0.6, "g": 0.0,
    },
    "selective": {
        "sds": [4.0, 8.0, 9.0, 9.5, 10.0, 10.0, 10.0], "c": 0.3, "ad_weight": 0.6, "phi_first": 0.7,
        "phi_last": 0.95, "a": -2.5, "b": 0.5, "prone": 0.3, "onset_prone": 0.25, "stay_prone": 0.45,
        "onset": 0.15, "stay": 0.35, "g": 0.0,
    },
}
# ``selective`` with illness more likely after a worse rating (odds x2.2 per 8 points, one SD)
DESIGNS["feedback"] = {**DESIGNS["selective"], "g": 0.1}

ARMS = (
    ("oracle", "GLS with the true covariance (check of the generator)"),
    ("mmrm", "MMRM (us, REML, Satterthwaite)"),
    ("mmrm_kr", "MMRM (us, REML, Kenward-Roger)"),
    ("gee", "GEE, unstructured working correlation, robust SE (shipped `mmrm_gee`)"),
    ("gee_exchangeable", "GEE, exchangeable working correlation, robust SE"),
    ("gee_independence", "GEE, working independence, robust SE"),
)


def covariance(d: dict) -> np.ndarray:
    """The true covariance of one patient's 7 errors under design ``d``."""
    T = SESSIONS
    sd = np.asarray(d["sds"], dtype=float)
    phi = np.linspace(d["phi_first"], d["phi_last"], T - 1)
    R = np.empty((T, T))
    for i in range(T):
        for j in range(T):
            lo, hi = min(i, j), max(i, j)
            R[i, j] = d["c"] + d["ad_weight"] * float(np.prod(phi[lo:hi]))
    np.fill_diagonal(R, 1.0)
    return R * np.outer(sd, sd)


def simulate(rng: np.random.Generator, patients: int, d: dict, S: np.ndarray):
    T = SESSIONS
    prone = rng.random(patients) < d["prone"]
    p_onset = np.where(prone, d["onset_prone"], d["onset"])
    p_stay = np.where(prone, d["stay_prone"], d["stay"])
    u = np.empty((patients, T))
    for t in range(T):
        u[:, t] = rng.random(patients)
    mu = 30.0 - 1.5 * np.arange(T)
    e = rng.multivariate_normal(np.zeros(T), S, patients)
    ill = np.zeros((patients, T))
    ill[:, 0] = u[:, 0] < p_onset
    y = np.empty((patients, T))
    y[:, 0] = mu[0] + BETA * ill[:, 0] + e[:, 0]
    for t in range(1, T):
        p = np.where(ill[:, t - 1] == 1, p_stay, p_onset)
        if d["g"]:  # illness more likely after a worse (higher) rating: sequentially exogenous
            p = 1.0 / (1.0 + np.exp(-(np.log(p / (1.0 - p)) + d["g"] * (y[:, t - 1] - 30.0))))
        ill[:, t] = u[:, t] < p
        y[:, t] = mu[t] + BETA * ill[:, t] + e[:, t]
    keep = np.ones((patients, T), dtype=bool)
    for t in range(1, T):
        p_drop = 1.0 / (1.0 + np.exp(-(d["a"] + d["b"] * (y[:, t - 1] - 30.0))))
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


def _oracle(y, X, pid, session, S):
    """GLS with the true covariance: the likelihood score for the mean, unbiased under MAR."""
    A = np.zeros((X.shape[1], X.shape[1]))
    b = np.zeros(X.shape[1])
    starts = np.flatnonzero(np.r_[True, pid[1:] != pid[:-1]])
    ends = np.r_[starts[1:], pid.size]
    inv = {}
    for s, e in zip(starts, ends, strict=True):
        v = tuple(session[s:e] - 1)
        if v not in inv:
            inv[v] = np.linalg.inv(S[np.ix_(v, v)])
        W, Xi = inv[v], X[s:e]
        A += Xi.T @ W @ Xi
        b += Xi.T @ W @ y[s:e]
    cov = np.linalg.inv(A)
    return cov @ b, cov


def fit_all(pid, session, ill, y, S):
    from scipy import stats
    from statsmodels.genmod import cov_struct, families
    from statsmodels.genmod.generalized_estimating_equations import GEE

    from ketastats.models.engines.mmrm import fit_mmrm, kr_df

    X = design(session, ill)
    j = X.shape[1] - 1
    z = float(stats.norm.ppf(0.975))
    out = {}
    b, cov = _oracle(y, X, pid, session, S)
    out["oracle"] = {"est": float(b[j]), "se": float(np.sqrt(cov[j, j])), "crit": z, "converged": True}
    res = fit_mmrm(y, X, pid, session, covariance="us", visit_levels=list(range(1, SESSIONS + 1)))
    out["mmrm"] = {"est": float(res.beta[j]), "se": float(res.se[j]), "crit": float(stats.t.ppf(0.975, res.df[j])),
                   "converged": bool(res.converged)}
    kr = res.kenward_roger("expected")
    L = np.eye(X.shape[1])[j][None, :]
    out["mmrm_kr"] = {"est": float(res.beta[j]), "se": float(np.sqrt(kr["vcov"][j, j])),
                      "crit": float(stats.t.ppf(0.975, kr_df(kr, L))), "converged": bool(res.converged)}
    for name, cs, kw in (
        ("gee", cov_struct.Unstructured, {"time": session - 1}),
        ("gee_exchangeable", cov_struct.Exchangeable, {}),
        ("gee_independence", cov_struct.Independence, {}),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            g = GEE(y, X, groups=pid, family=families.Gaussian(), cov_struct=cs(), **kw)
            gr = g.fit(maxiter=100, cov_type="robust")
        out[name] = {"est": float(gr.params[j]), "se": float(gr.bse[j]), "crit": z,
                     "converged": bool(getattr(gr, "converged", True))}
    return out


def summarize(rows, name):
    est = np.array([r[name]["est"] for r in rows])
    se = np.array([r[name]["se"] for r in rows])
    crit = np.array([r[name]["crit"] for r in rows])
    cover = np.abs(est - BETA) <= crit * se
    n = len(rows)
    diff = est - np.array([r["oracle"]["est"] for r in rows])
    c = float(np.mean(cover))
    sd = float(np.std(est, ddof=1))
    return {
        "bias": float(np.mean(est) - BETA),
        "bias_mcse": sd / math.sqrt(n),
        "sd": sd,
        "mean_se": float(np.mean(se)),
        "coverage": c,
        "coverage_mcse": math.sqrt(c * (1 - c) / n),
        "converged": int(sum(r[name]["converged"] for r in rows)),
        # paired against GLS with the true covariance on the same cohorts: the part of the bias that is
        # the analysis', with the cohorts' common noise taken out
        "minus_oracle": float(np.mean(diff)),
        "minus_oracle_mcse": float(np.std(diff, ddof=1) / math.sqrt(n)) if n > 1 else float("nan"),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--design", choices=sorted(DESIGNS), default="original")
    ap.add_argument("--replicates", type=int, default=400)
    ap.add_argument("--patients", type=int, default=200)
    ap.add_argument("--seed", type=int, default=20261207)
    for key in DESIGNS["original"]:
        kind = (lambda v: [float(x) for x in v.split(",")]) if key == "sds" else float
        ap.add_argument(f"--{key.replace('_', '-')}", type=kind, default=None,
                        help="override the design's value" + (" (7 comma-separated SDs)" if key == "sds" else ""))
    a = ap.parse_args(argv)
    try:
        import ketastats  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(ROOT / "src"))
    d = dict(DESIGNS[a.design])
    for key in d:
        if getattr(a, key) is not None:
            d[key] = getattr(a, key)
    S = covariance(d)
    np.linalg.cholesky(S)  # the design's covariance must be positive definite
    seeds = np.random.SeedSequence(a.seed).spawn(a.replicates)
    rows, drop = [], []
    t0, c0 = time.perf_counter(), time.process_time()
    for s in seeds:
        pid, session, ill, y, dropped = simulate(np.random.default_rng(s), a.patients, d, S)
        rows.append(fit_all(pid, session, ill, y, S))
        drop.append(dropped)
    sd = np.sqrt(np.diag(S))
    out = {
        "design": a.design,
        "parameters": d,
        "replicates": a.replicates,
        "patients": a.patients,
        "seed": a.seed,
        "beta": BETA,
        "sd": [round(float(v), 3) for v in sd],
        "correlation_lag1": [round(float(S[t, t + 1] / sd[t] / sd[t + 1]), 3) for t in range(SESSIONS - 1)],
        "dropped_before_last_session": float(np.mean(drop)),
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
        **{k: summarize(rows, k) for k, _ in ARMS},
    }
    print(json.dumps(out, indent=1))
    print()
    print("| analysis | bias (MC SE) | minus the oracle's estimate (MC SE) | SD of estimates | mean SE | "
          "coverage of the 95% CI (MC SE) |")
    print("|---|---|---|---|---|---|")
    for k, label in ARMS:
        m = out[k]
        print(f"| {label} | {m['bias']:+.3f} ({m['bias_mcse']:.3f}) | "
              f"{m['minus_oracle']:+.3f} ({m['minus_oracle_mcse']:.3f}) | {m['sd']:.3f} | {m['mean_se']:.3f} | "
              f"{100 * m['coverage']:.1f}% ({100 * m['coverage_mcse']:.1f}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
