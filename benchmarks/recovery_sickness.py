#!/usr/bin/env python
"""The primary model's recovery study of scenario ``sickness`` (issue 14 point 7), rerun and tabulated.

    python benchmarks/recovery_sickness.py --out results/recovery_sickness            # model-based SEs
    python benchmarks/recovery_sickness.py --se bias_reduced --out results/recovery_sickness_br

Each replicate is :func:`ketastats.recovery.run_replicate`, the function behind ``ketastats recovery``
(simulate, type, prepare, fit the built-in primary model, score against the projection truth). The
replicates run in batches of ``--batch`` whose CSVs are kept in ``--out``/batches, so an interrupted
study resumes where it stopped; at the end ``replicates.csv``, ``summary.json`` and ``summary.csv``
are written as ``ketastats recovery`` writes them and the table of docs/statistics.md is printed.
The same study in one command (no resume):

    ketastats recovery --scenario sickness --replicates 1000 --patients 200 --seed 7 [--se bias_reduced] --out DIR

Run it on one core (``OMP_NUM_THREADS=1``): about 0.3 s a replicate at 200 patients, 5-6 minutes for 1,000.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", default="sickness")
    ap.add_argument("--replicates", type=int, default=1000)
    ap.add_argument("--patients", type=int, default=200)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--se", choices=("model", "robust", "bias_reduced", "cr2"), default="model")
    ap.add_argument("--batch", type=int, default=50, help="replicates per checkpoint file")
    ap.add_argument(
        "--overrides",
        type=json.loads,
        default=None,
        help="simulator parameters as JSON, e.g. '{\"effects\": {\"carryover_fraction\": 0.0}}' "
        "(a mechanism switched off, as in the table of docs/statistics.md)",
    )
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()

    import pandas as pd

    from ketastats.recovery import default_spec, run_replicate, summarize_replicates, write_recovery

    spec = {**default_spec(), "se": a.se}
    batches = a.out / "batches"
    batches.mkdir(parents=True, exist_ok=True)
    # a folder holds one study: resuming with other settings would mix replicates of two studies
    study = {k: v for k, v in vars(a).items() if k != "out"}
    study_file = a.out / "study.json"
    if study_file.exists() and json.loads(study_file.read_text()) != json.loads(json.dumps(study, default=str)):
        raise SystemExit(f"{a.out} holds a study with other settings ({study_file}); use another --out")
    study_file.write_text(json.dumps(study, default=str, indent=1) + "\n")
    t0 = time.perf_counter()
    done = 0
    for start in range(0, a.replicates, a.batch):
        path = batches / f"batch_{start:05d}.csv"
        if not path.exists():
            stop = min(start + a.batch, a.replicates)
            rows = [
                run_replicate(a.scenario, a.patients, a.seed, r, spec=spec, overrides=a.overrides)
                for r in range(start, stop)
            ]
            tmp = path.with_suffix(".tmp")
            pd.DataFrame(rows).to_csv(tmp, index=False, float_format="%.10g")
            tmp.replace(path)
            done += stop - start
            rate = (time.perf_counter() - t0) / done
            print(f"replicates {start}-{stop - 1} done ({rate:.2f} s each)", flush=True)
    files = [batches / f"batch_{s:05d}.csv" for s in range(0, a.replicates, a.batch)]
    # keep_default_na=False: scenario "null" is a name, not a missing value
    table = pd.concat(
        [pd.read_csv(f, keep_default_na=False, na_values=["", "nan", "NaN"]) for f in files], ignore_index=True
    )
    s = summarize_replicates(table)
    write_recovery(table, s, a.out)
    print(
        f"\nscenario {s['scenario']}, {s['n_patients']} patients, {s['replicates']} replicates "
        f"({s['replicates_with_estimate']} with an estimate), seed {a.seed}, SEs: {a.se}, "
        f"truth: {s['truth_definition']}, overrides: {json.dumps(a.overrides) if a.overrides else 'none'}"
    )
    print("| quantity | value | Monte Carlo SE |\n|---|---|---|")
    rows = [
        ("true effect (mean projection truth)", s["truth"], None),
        ("descriptive truth (mean shift at reported-ill sessions)", s["truth_reported_mean"], None),
        ("bias against the descriptive truth", s["mean_estimate"] - s["truth_reported_mean"], None),
        ("mean estimate", s["mean_estimate"], None),
        ("bias", s["bias"], s["bias_mcse"]),
        ("bias / empirical SE", s["bias_over_emp_se"], s["bias_mcse"] / s["emp_se"]),
        ("empirical SE", s["emp_se"], s["emp_se_mcse"]),
        ("SD of estimate - truth", s["error_sd"], None),
        ("mean model SE", s["mean_se"], None),
        ("95% CI coverage", s["coverage"], s["coverage_mcse"]),
        ("rejection rate", s["rejection_rate"], s["rejection_rate_mcse"]),
    ]
    for name, value, mcse in rows:
        print(f"| {name} | {value:.3f} | {'' if mcse is None else f'{mcse:.3f}'} |")


if __name__ == "__main__":
    main()
