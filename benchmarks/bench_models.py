#!/usr/bin/env python
"""Time model kinds as the workflow runs them, on a simulated cohort of any size (issue 27).

    python benchmarks/bench_models.py --patients 50000 --models response_glmm cytokine_illness primary

The cohort is made by the package's own simulator with the shipped config's demo settings (seed and
scenario; ``--patients`` replaces the size), then read, typed and prepared as the workflow does, in a
temporary folder. Each model of ``config/config.yaml`` named by ``--models`` is then run by
:func:`ketastats.models.run_model` (rows, estimands, fit, JSON fields: what one ``fit_model`` job does
besides reading and writing), ``--repeats`` times; the median is printed with the log-likelihood and,
for the quadrature kinds, the nodes used. Point ``PYTHONPATH`` at another checkout's ``src`` to time
that version on the same cohort. Benchmarks are not tests: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patients", type=int, default=50000)
    ap.add_argument(
        "--models", nargs="+", default=["response_glmm", "cytokine_illness", "primary", "illness_slopes"]
    )
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--json", type=Path, help="also write the records here")
    a = ap.parse_args()

    import pandas as pd

    from ketastats import pipeline
    from ketastats.models import resolve_estimands, resolve_spec, run_model

    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cohort = dict(cfg["cohorts"]["demo"])
    cohort["simulate"] = {**cohort["simulate"], "patients": a.patients}
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        pipeline.step_simulate(cohort, root=root)
        pipeline.step_validate(
            "bench",
            cohort,
            out_table=root / "validated.parquet",
            out_input=root / "input.json",
            problems_csv=root / "problems.csv",
            root=root,
        )
        pipeline.step_prepare(root / "validated.parquet", root / "sessions.parquet")
        data = pd.read_parquet(root / "sessions.parquet")
        print(
            f"cohort: {a.patients} patients, {len(data)} sessions, prepared in {time.perf_counter() - t0:.1f} s"
        )
        estimands = resolve_estimands(cfg["estimands"])
        for name in a.models:
            spec = resolve_spec(name, cfg["models"][name])
            times, out = [], None
            for _ in range(a.repeats):
                t = time.perf_counter()
                out = run_model(name, spec, data, estimands)
                times.append(time.perf_counter() - t)
            fits = out.get("fits") or {name: out}
            rec = {
                "model": name,
                "kind": spec["kind"],
                "seconds": round(statistics.median(times), 2),
                "status": out["status"],
                "loglik": {k: f.get("loglik") for k, f in fits.items()},
                "nodes": {
                    k: [f["quadrature"]["min_points"], f["quadrature"]["max_points"]]
                    for k, f in fits.items()
                    if "quadrature" in f
                },
            }
            records.append(rec)
            print(json.dumps(rec))
    if a.json:
        a.json.write_text(json.dumps(records, indent=1))


if __name__ == "__main__":
    main()
