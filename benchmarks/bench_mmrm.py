#!/usr/bin/env python
"""Benchmark the MMRM engine against nlme::gls and glmmTMB on the same data (issue 18).

    python benchmarks/bench_mmrm.py --sizes 2000 20000 --repeats 3

For each size (patients x 7 visits, dropout at random given the previous rating) the script
simulates one cohort with a fixed seed, writes it to a CSV in a temporary folder and times, each
engine in its own subprocess:

- ``ketastats``: ``ketastats.models.engines.mmrm.fit_mmrm``, as "fit" (the call alone: visit
  patterns, REML by Newton, Satterthwaite df of every coefficient) and "read+fit" (CSV read with
  pandas, patsy design, fit);
- ``glmmTMB``: ``Rscript benchmarks/bench_mmrm.R DATA glmmTMB`` (us() covariance, residual variance
  fixed near zero, REML);
- ``gls``: ``Rscript benchmarks/bench_mmrm.R DATA gls`` (corSymm + varIdent, REML); skipped where
  it would take more than ``--max-seconds`` (extrapolated linearly from the previous size).

Model: ``y ~ visit * arm + baseline``, unstructured covariance across the 7 visits, REML. Each engine
is warmed up on a small subset first, then timed ``--repeats`` times (R fits: ``--r-repeats``); the
table shows medians, the ratios to ketastats' fit and the largest relative difference in -2 REML
log-likelihood to each R fit. Benchmarks are not tests: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VISITS = 7
FORMULA = "y ~ C(visit) * arm + baseline"


def simulate_cohort(patients: int, visits: int = VISITS, seed: int = 2026) -> dict:
    """Two arms, a baseline score, an unstructured (heterogeneous, AR-like) covariance over 7 visits and
    monotone dropout whose probability rises with the previous rating (MAR). Returns columns."""
    rng = np.random.default_rng([seed, patients])
    sd = np.linspace(6.0, 9.0, visits)
    lag = np.abs(np.subtract.outer(np.arange(visits), np.arange(visits)))
    R = 0.3 + 0.6 * 0.8**lag
    np.fill_diagonal(R, 1.0)
    S = R * np.outer(sd, sd)
    arm = rng.integers(0, 2, patients).astype(float)
    baseline = np.round(rng.normal(30.0, 6.0, patients), 1)
    mean = 30.0 - 1.5 * np.arange(visits)[None, :] - 0.8 * arm[:, None] * np.arange(visits)[None, :]
    mean = mean + 0.5 * (baseline[:, None] - 30.0)
    y = mean + rng.multivariate_normal(np.zeros(visits), S, patients)
    keep = np.ones((patients, visits), dtype=bool)
    for t in range(1, visits):
        p_drop = 1.0 / (1.0 + np.exp(-(-3.0 + 0.08 * (y[:, t - 1] - 25.0))))
        keep[:, t] = keep[:, t - 1] & (rng.random(patients) >= p_drop)
    pid = np.repeat(np.arange(1, patients + 1), visits)
    visit = np.tile(np.arange(1, visits + 1), patients)
    k = keep.ravel()
    return {
        "pid": pid[k],
        "visit": visit[k],
        "arm": np.repeat(arm, visits)[k],
        "baseline": np.repeat(baseline, visits)[k],
        "y": np.round(y.ravel()[k], 4),
    }


def write_csv(cols: dict, path: Path) -> None:
    import pandas as pd

    pd.DataFrame(cols).to_csv(path, index=False, float_format="%.6g")


# ---------------------------------------------------------------------------------------------
# worker (run in a subprocess)
# ---------------------------------------------------------------------------------------------


def worker_ketastats(csv: str, repeats: int) -> None:
    try:
        import ketastats  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(ROOT / "src"))
    import pandas as pd

    from ketastats.models.engines.mmrm import fit_mmrm, mmrm_design

    def design(df):
        return mmrm_design(df, FORMULA, subject="pid", visit="visit")

    df = pd.read_csv(csv)
    y, X, names, s, v, _ = design(df[df.pid <= 100])
    fit_mmrm(y, X, s, v, covariance="us", names=names)  # warm-up
    for r in range(repeats):
        t0 = time.perf_counter()
        df = pd.read_csv(csv)
        y, X, names, s, v, _ = design(df)
        t1 = time.perf_counter()
        res = fit_mmrm(y, X, s, v, covariance="us", names=names)
        t2 = time.perf_counter()
        print(
            json.dumps(
                {
                    "engine": "ketastats",
                    "repeat": r + 1,
                    "fit_s": t2 - t1,
                    "read_fit_s": t2 - t0,
                    "m2loglik": res.m2loglik,
                    "fixef": res.beta.tolist(),
                    "converged": res.converged,
                    "iterations": res.iterations,
                    "patterns": res.n_patterns,
                    "nobs": res.n_obs,
                }
            ),
            flush=True,
        )


# ---------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------


def run(cmd: list[str], timeout: float | None) -> list[dict]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return [{"error": f"timed out after {timeout:.0f} s"}]
    rows = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not rows:
        return [{"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}]
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--r-repeats", type=int, default=1)
    ap.add_argument("--max-seconds", type=float, default=900.0, help="skip an R fit extrapolated to take longer")
    ap.add_argument("--worker", nargs=2, metavar=("CSV", "REPEATS"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        worker_ketastats(a.worker[0], int(a.worker[1]))
        return 0
    rscript = shutil.which("Rscript")
    results = []
    last_r: dict[str, tuple[int, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in a.sizes:
            csv = Path(tmp) / f"mmrm_{n}.csv"
            cols = simulate_cohort(n)
            write_csv(cols, csv)
            row: dict = {"patients": n, "rows": int(len(cols["y"]))}
            ks = run([sys.executable, __file__, "--worker", str(csv), str(a.repeats)], None)
            if "error" in ks[0]:
                raise SystemExit(f"ketastats failed at {n}: {ks[0]['error']}")
            row["ketastats"] = {
                "fit_s": statistics.median(r["fit_s"] for r in ks),
                "read_fit_s": statistics.median(r["read_fit_s"] for r in ks),
                "m2loglik": ks[0]["m2loglik"],
                "converged": ks[0]["converged"],
                "patterns": ks[0]["patterns"],
                "fixef": ks[0]["fixef"],
            }
            for engine in ("glmmTMB", "gls"):
                if rscript is None:
                    row[engine] = {"error": "Rscript not found"}
                    continue
                prev = last_r.get(engine)
                if prev and prev[1] * n / prev[0] > a.max_seconds:
                    row[engine] = {"skipped": f"extrapolated {prev[1] * n / prev[0]:.0f} s > {a.max_seconds:.0f} s"}
                    continue
                out = run([rscript, str(HERE / "bench_mmrm.R"), str(csv), engine, str(a.r_repeats)],
                          timeout=3 * a.max_seconds)
                if "error" in out[0]:
                    row[engine] = out[0]
                    continue
                t = statistics.median(r["fit_s"] for r in out)
                last_r[engine] = (n, t)
                m2l = out[0]["m2loglik"]
                fe = np.array(out[0]["fixef"])
                # R's model.matrix order: intercept, visits, arm, baseline, visit:arm; patsy puts baseline last
                ours = np.array(row["ketastats"]["fixef"])
                ours = ours[[*range(VISITS + 1), 2 * VISITS, *range(VISITS + 1, 2 * VISITS)]]
                row[engine] = {
                    "fit_s": t,
                    "m2loglik": m2l,
                    "rel_m2loglik": abs(m2l - row["ketastats"]["m2loglik"]) / abs(m2l),
                    "max_rel_fixef": float(np.max(np.abs(fe - ours) / np.maximum(np.abs(fe), 1e-8))),
                    "converged": out[0]["converged"],
                    "ratio": t / row["ketastats"]["fit_s"],
                }
            results.append(row)
            print(json.dumps(row), flush=True)
    print()
    print(f"# {_dt.date.today()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}")
    print("| patients | rows | ketastats fit (s) | read+fit (s) | glmmTMB (s) | x | gls (s) | x | "
          "rel. diff -2 log L (glmmTMB, gls) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        k = r["ketastats"]

        def cell(e, key, r=r):
            v = r[e]
            if key in v:
                return f"{v[key]:.3g}" if key != "fit_s" else f"{v[key]:.2f}"
            return v.get("skipped") or v.get("error") or "-"

        print(f"| {r['patients']:,} | {r['rows']:,} | {k['fit_s']:.3f} | {k['read_fit_s']:.3f} | "
              f"{cell('glmmTMB', 'fit_s')} | {cell('glmmTMB', 'ratio')} | {cell('gls', 'fit_s')} | "
              f"{cell('gls', 'ratio')} | {cell('glmmTMB', 'rel_m2loglik')}, {cell('gls', 'rel_m2loglik')} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
