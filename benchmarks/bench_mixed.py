#!/usr/bin/env python
"""Benchmark the fast mixed-model engine against statsmodels and lme4 on the same data (issue 10).

    python benchmarks/bench_mixed.py --sizes 1000 5000 20000 100000 --repeats 3

For each size (patients x 7 sessions) the script simulates one cohort with a fixed seed, writes it
to a CSV in a temporary folder, and times, each engine in its own subprocess (so that peak memory
is per engine):

- ``fast``: ketastats.models.engines.fast_lmm.fit_lmm_fast, as "fit" (the call alone) and "read+fit" (CSV read
  with pandas, design built, fit);
- ``statsmodels``: MixedLM(...).fit(reml=True) with its default optimizers, fit alone; skipped
  where it would take more than ~60 s (extrapolated from the previous size) unless ``--all``;
- ``lme4``: ``Rscript benchmarks/bench_lme4.R`` (lmer() alone, timed inside R; lme4's default
  optimizer), when Rscript with lme4 is installed.

Model: y ~ time * arm + baseline with a random intercept (RI) or a random intercept and a random
slope on time (RS) per patient, REML. Each engine is warmed up on a small subset first (imports,
method dispatch), then timed ``--repeats`` times; the table shows medians, the ratios to the fast
engine's fit, the peak resident memory of each engine's process (interpreter and libraries
included) and the largest log-likelihood difference to lme4. Then a 1M-row RI+RS fit is timed
(``--big-rows``; 0 skips it). Benchmarks are not tests: nothing here asserts a timing.
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
SESSIONS = 7
MODELS = ("RI", "RS")


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------


def simulate_cohort(patients: int, sessions: int = SESSIONS, seed: int = 2024, missing: float = 0.0):
    """A ketamine-like cohort: weekly sessions, two arms, a baseline score, correlated random
    intercepts and slopes. Returns a dict of columns (pid, time, arm, baseline, y)."""
    rng = np.random.default_rng([seed, patients])
    pid = np.repeat(np.arange(1, patients + 1), sessions)
    time_ = np.tile(np.arange(sessions, dtype=float), patients)
    arm = rng.integers(0, 2, patients).astype(float)[pid - 1]
    baseline = np.round(rng.normal(30.0, 6.0, patients), 1)[pid - 1]
    cov = np.array([[25.0, -1.5], [-1.5, 1.0]])  # intercept sd 5, slope sd 1, correlation -0.3
    b = rng.multivariate_normal([0.0, 0.0], cov, patients)[pid - 1]
    y = (
        30.0
        - 1.2 * time_
        - 0.8 * arm * time_
        + 0.5 * (baseline - 30.0)
        + b[:, 0]
        + b[:, 1] * time_
        + rng.normal(0.0, 4.0, pid.size)
    )
    keep = rng.random(pid.size) >= missing
    return {
        "pid": pid[keep],
        "time": time_[keep],
        "arm": arm[keep],
        "baseline": baseline[keep],
        "y": np.round(y[keep], 4),
    }


def write_csv(cols: dict, path: Path) -> None:
    import pandas as pd

    pd.DataFrame(cols).to_csv(path, index=False, float_format="%.6g")


def design(df):
    t = df["time"].to_numpy(float)
    arm = df["arm"].to_numpy(float)
    X = np.column_stack([np.ones(t.size), t, arm, df["baseline"].to_numpy(float), t * arm])
    return df["y"].to_numpy(float), X, df["pid"].to_numpy()


# ---------------------------------------------------------------------------------------------
# workers (run in subprocesses)
# ---------------------------------------------------------------------------------------------


def _import_ketastats():
    try:
        import ketastats  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(ROOT / "src"))


def worker_fast(csv: str, model: str, repeats: int) -> None:
    _import_ketastats()
    import tracemalloc

    import pandas as pd

    from ketastats.models.engines.fast_lmm import fit_lmm_fast

    q = 1 if model == "RI" else 2
    df = pd.read_csv(csv)
    y, X, g = design(df)
    warm = slice(0, min(700, y.size))
    fit_lmm_fast(y[warm], X[warm], X[warm, [0, 1][:q]], g[warm])
    for r in range(repeats):
        t0 = time.perf_counter()
        df = pd.read_csv(csv)
        y, X, g = design(df)
        t1 = time.perf_counter()
        res = fit_lmm_fast(y, X, X[:, [0, 1][:q]], g)
        t2 = time.perf_counter()
        print(
            json.dumps(
                {
                    "engine": "fast",
                    "repeat": r + 1,
                    "fit_s": t2 - t1,
                    "read_fit_s": t2 - t0,
                    "loglik": res.loglik,
                    "fixef": res.beta.tolist(),
                    "converged": res.converged,
                    "singular": res.singular,
                    "n_iter": res.n_iter,
                }
            ),
            flush=True,
        )
    tracemalloc.start()
    fit_lmm_fast(y, X, X[:, [0, 1][:q]], g)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(json.dumps({"engine": "fast", "traced_peak_mb": peak / 2**20}), flush=True)


def worker_statsmodels(csv: str, model: str, repeats: int) -> None:
    import warnings

    import pandas as pd
    import statsmodels.api as sm

    q = 1 if model == "RI" else 2
    df = pd.read_csv(csv)
    y, X, g = design(df)
    warnings.simplefilter("ignore")
    warm = slice(0, min(700, y.size))
    sm.MixedLM(y[warm], X[warm], g[warm], exog_re=X[warm, [0, 1][:q]]).fit(reml=True)
    for r in range(repeats):
        t0 = time.perf_counter()
        fit = sm.MixedLM(y, X, g, exog_re=X[:, [0, 1][:q]]).fit(reml=True)
        t1 = time.perf_counter()
        print(
            json.dumps(
                {
                    "engine": "statsmodels",
                    "repeat": r + 1,
                    "fit_s": t1 - t0,
                    "loglik": float(fit.llf),
                    "fixef": np.asarray(fit.fe_params).tolist(),
                    "converged": bool(fit.converged),
                }
            ),
            flush=True,
        )


# ---------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------


def run_worker_rusage(cmd: list[str], timeout: float | None = None) -> tuple[list[dict], float, str]:
    """Like run_worker but reaps the child itself, so that its rusage (peak RSS) is its own."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        proc = subprocess.Popen(cmd, stdout=fo, stderr=fe, text=True, env=env)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if deadline is not None and time.monotonic() > deadline:
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)  # keep Popen from waiting again
        fo.seek(0)
        fe.seek(0)
        out, err = fo.read(), fe.read()
    records = []
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return records, usage.ru_maxrss / 1024.0, err


def have_lme4() -> bool:
    if shutil.which("Rscript") is None:
        return False
    r = subprocess.run(
        ["Rscript", "-e", "quit(status = !requireNamespace('lme4', quietly = TRUE))"], capture_output=True
    )
    return r.returncode == 0


def median(records: list[dict], key: str) -> float | None:
    vals = [r[key] for r in records if key in r]
    return statistics.median(vals) if vals else None


def fmt_s(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def fmt_ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b <= 0:
        return "–"
    return f"{a / b:.0f}x" if a / b >= 10 else f"{a / b:.1f}x"


def machine_line() -> str:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
        mem_s = f", {mem:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        mem_s = ""
    load = ""
    if hasattr(os, "getloadavg"):
        load = f", load average at start {os.getloadavg()[0]:.2f}"
    return f"{cpu}, {os.cpu_count()} cores{mem_s}, {platform.system()} {platform.release()}{load}"


def versions() -> str:
    import numpy
    import scipy

    parts = [
        f"Python {platform.python_version()}",
        f"numpy {numpy.__version__}",
        f"scipy {scipy.__version__}",
    ]
    try:
        import statsmodels

        parts.append(f"statsmodels {statsmodels.__version__}")
    except ImportError:
        pass
    try:
        import threadpoolctl

        parts.append(f"threadpoolctl {threadpoolctl.__version__}")
    except ImportError:
        parts.append("no threadpoolctl")
    return ", ".join(parts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000, 100000], help="patients")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--missing", type=float, default=0.0, help="share of sessions missing at random")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--all", action="store_true", help="run statsmodels at every size")
    ap.add_argument("--sm-limit", type=float, default=60.0, help="skip statsmodels above this many seconds")
    ap.add_argument("--no-statsmodels", action="store_true")
    ap.add_argument("--no-lme4", action="store_true")
    ap.add_argument("--lme4-optimizer", default="nloptwrap", help="lmerControl optimizer (lme4's default)")
    ap.add_argument(
        "--lme4-no-derivs",
        action="store_true",
        help="lmerControl(calc.derivs = FALSE): skip lme4's finite-difference Hessian check",
    )
    ap.add_argument("--big-rows", type=int, default=1_000_000, help="rows of the large RI+RS fit (0: skip)")
    ap.add_argument("--big-lme4", action="store_true", help="also time lme4 on the large fit")
    ap.add_argument("--json", type=Path, help="also write all records to this JSON file")
    ap.add_argument("--worker", choices=["fast", "statsmodels"], help=argparse.SUPPRESS)
    ap.add_argument("--csv", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker == "fast":
        worker_fast(args.csv, args.model, args.repeats)
        return 0
    if args.worker == "statsmodels":
        worker_statsmodels(args.csv, args.model, args.repeats)
        return 0

    lme4_ok = not args.no_lme4 and have_lme4()
    if not args.no_lme4 and not lme4_ok:
        print(
            "note: Rscript with lme4 not found; lme4 columns stay empty "
            "(Debian: apt-get install r-base-core r-cran-lme4)",
            file=sys.stderr,
        )
    try:
        import statsmodels  # noqa: F401

        sm_ok = not args.no_statsmodels
    except ImportError:
        sm_ok = False
    started = _dt.datetime.now().astimezone()
    header = f"{started:%Y-%m-%d %H:%M %Z}; {machine_line()}; {versions()}"
    print(f"# {header}", flush=True)

    rows_out, all_records = [], []
    sm_last: dict[str, tuple[int, float]] = {}
    with tempfile.TemporaryDirectory(prefix="ketastats-bench-") as tmp:
        for P in args.sizes:
            cols = simulate_cohort(P, seed=args.seed, missing=args.missing)
            csv = Path(tmp) / f"cohort_{P}.csv"
            write_csv(cols, csv)
            n = cols["y"].size
            for model in args.models:
                row = {"patients": P, "rows": n, "model": model}
                cmd = [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--worker",
                    "fast",
                    "--csv",
                    str(csv),
                    "--model",
                    model,
                    "--repeats",
                    str(args.repeats),
                ]
                rec, peak, err = run_worker_rusage(cmd)
                if not rec:
                    print(err, file=sys.stderr)
                fast = [r for r in rec if "fit_s" in r]
                row.update(
                    fast_fit=median(fast, "fit_s"),
                    fast_read=median(fast, "read_fit_s"),
                    fast_mb=peak,
                    fast_traced_mb=median(rec, "traced_peak_mb"),
                    fast_ll=fast[0]["loglik"] if fast else None,
                    fast_fe=fast[0]["fixef"] if fast else None,
                    fast_ok=all(r["converged"] for r in fast),
                )
                all_records += [dict(r, patients=P, model=model) for r in rec]
                # statsmodels, unless extrapolation says it would take too long
                row["sm_fit"] = row["sm_mb"] = row["sm_ll"] = None
                if sm_ok:
                    prev = sm_last.get(model)
                    predicted = None if prev is None else prev[1] * n / prev[0] * 1.2
                    if args.all or predicted is None or predicted <= args.sm_limit:
                        cmd[3] = "statsmodels"
                        rec, peak, err = run_worker_rusage(
                            cmd, timeout=max(args.sm_limit, 1) * (args.repeats + 2) * 3
                        )
                        sm = [r for r in rec if "fit_s" in r]
                        if sm:
                            row.update(
                                sm_fit=median(sm, "fit_s"), sm_mb=peak, sm_ll=max(r["loglik"] for r in sm)
                            )
                            sm_last[model] = (n, row["sm_fit"])
                        else:
                            print(err[-2000:], file=sys.stderr)
                        all_records += [dict(r, patients=P, model=model) for r in rec]
                    else:
                        row["sm_skipped"] = f"~{predicted:.0f} s predicted"
                # lme4
                row["lme4_fit"] = row["lme4_mb"] = row["lme4_ll"] = None
                if lme4_ok:
                    rcmd = [
                        "Rscript",
                        str(HERE / "bench_lme4.R"),
                        str(csv),
                        model,
                        str(args.repeats),
                        args.lme4_optimizer,
                        "FALSE" if args.lme4_no_derivs else "TRUE",
                    ]
                    rec, peak, err = run_worker_rusage(rcmd)
                    lm = [r for r in rec if "fit_s" in r]
                    if lm:
                        row.update(
                            lme4_fit=median(lm, "fit_s"),
                            lme4_mb=peak,
                            lme4_ll=lm[0]["loglik"],
                            lme4_fe=lm[0]["fixef"],
                            lme4_r_mb=median(lm, "r_max_used_mb"),
                        )
                    else:
                        print(err[-2000:], file=sys.stderr)
                    all_records += [dict(r, patients=P, model=model) for r in rec]
                rows_out.append(row)
                print(json.dumps({k: v for k, v in row.items() if not k.endswith("_fe")}), flush=True)

        big = None
        if args.big_rows:
            P = -(-args.big_rows // SESSIONS)
            cols = simulate_cohort(P, seed=args.seed, missing=0.0)
            csv = Path(tmp) / f"cohort_{P}.csv"
            write_csv(cols, csv)
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--worker",
                "fast",
                "--csv",
                str(csv),
                "--model",
                "RS",
                "--repeats",
                str(args.repeats),
            ]
            rec, peak, err = run_worker_rusage(cmd)
            fast = [r for r in rec if "fit_s" in r]
            big = {
                "patients": P,
                "rows": cols["y"].size,
                "fast_fit": median(fast, "fit_s"),
                "fast_read": median(fast, "read_fit_s"),
                "fast_mb": peak,
                "fast_ok": all(r["converged"] for r in fast),
                "fast_ll": fast[0]["loglik"] if fast else None,
            }
            if args.big_lme4 and lme4_ok:
                rec, peak, err = run_worker_rusage(
                    [
                        "Rscript",
                        str(HERE / "bench_lme4.R"),
                        str(csv),
                        "RS",
                        "1",
                        args.lme4_optimizer,
                        "FALSE" if args.lme4_no_derivs else "TRUE",
                    ]
                )
                lm = [r for r in rec if "fit_s" in r]
                if lm:
                    big.update(lme4_fit=lm[0]["fit_s"], lme4_mb=peak, lme4_ll=lm[0]["loglik"])
            print(json.dumps(big), flush=True)

    print()
    print(render_table(rows_out, big, header, args))
    if args.json:
        args.json.write_text(
            json.dumps(
                {"header": header, "rows": rows_out, "big": big, "records": all_records},
                indent=1,
                default=str,
            )
        )
    return 0


def render_table(rows, big, header, args) -> str:
    lines = [
        f"Measured {header}.",
        f"REML, y ~ time * arm + baseline, {SESSIONS} sessions per patient"
        + (f", {args.missing:.0%} of sessions missing" if args.missing else "")
        + f"; medians of {args.repeats} repeats; lme4 optimizer {args.lme4_optimizer}"
        + (", calc.derivs = FALSE" if args.lme4_no_derivs else " (lmer defaults)")
        + ".",
        "",
        "| patients | rows | model | fast fit (s) | fast read+fit (s) | statsmodels (s) | lme4 (s) "
        "| lme4 / fast | statsmodels / fast | peak RSS fast / sm / lme4 (MB) | loglik fast − lme4 |",
        "|---:|---:|:--|---:|---:|---:|---:|---:|---:|:--|---:|",
    ]
    for r in rows:
        sm = (
            fmt_s(r.get("sm_fit"))
            if r.get("sm_fit") is not None
            else ("skipped" if r.get("sm_skipped") else "–")
        )
        dll = "–"
        if r.get("lme4_ll") is not None and r.get("fast_ll") is not None:
            dll = f"{r['fast_ll'] - r['lme4_ll']:+.1e}"
        mem = " / ".join("–" if r.get(k) is None else f"{r[k]:.0f}" for k in ("fast_mb", "sm_mb", "lme4_mb"))
        flag = "" if r.get("fast_ok", True) else " (not converged)"
        lines.append(
            f"| {r['patients']:,} | {r['rows']:,} | {r['model']} | {fmt_s(r['fast_fit'])}{flag} | "
            f"{fmt_s(r['fast_read'])} | {sm} | {fmt_s(r.get('lme4_fit'))} | "
            f"{fmt_ratio(r.get('lme4_fit'), r['fast_fit'])} | {fmt_ratio(r.get('sm_fit'), r['fast_fit'])} | "
            f"{mem} | {dll} |"
        )
    if big:
        lines += [
            "",
            f"Large fit: {big['rows']:,} rows ({big['patients']:,} patients x {SESSIONS}), random intercept + "
            f"slope, REML: fast fit {fmt_s(big['fast_fit'])} s, read+fit {fmt_s(big['fast_read'])} s, "
            f"peak RSS {big['fast_mb']:.0f} MB"
            + ("" if big["fast_ok"] else " (not converged)")
            + (
                f"; lme4 {fmt_s(big['lme4_fit'])} s, peak RSS {big['lme4_mb']:.0f} MB, loglik fast − lme4 "
                f"{big['fast_ll'] - big['lme4_ll']:+.1e}"
                if big.get("lme4_fit") is not None
                else ""
            )
            + ".",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
