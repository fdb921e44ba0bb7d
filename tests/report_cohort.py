"""A small synthetic cohort for the report tests: prepared sessions, model JSONs, input info.

The MADRS follows a known linear mixed model (random intercept and slope on session), so
that the report's tests can check estimates against the simulated truth. The cohort is
built without ``ketastats.simulate`` (another module), with the prepared table's columns.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from ketastats.pipeline import step_fit
from ketastats.prepare import prepare_sessions

TRUTH = {"intercept": 32.0, "session": -3.0, "ill": 3.0, "sd_intercept": 4.0, "sd_slope": 0.8, "sigma": 3.0}

MODELS = {
    "primary": {
        "formula": "madrs ~ session + ill",
        "re_formula": "~session",
        "method": "REML",
        "engine": "statsmodels",
    },
    "ri_only": {
        "formula": "madrs ~ session + ill",
        "re_formula": None,
        "method": "REML",
        "engine": "statsmodels",
    },
}

CONFIG = {
    "cohorts": {"synth": {"input": "data/raw/synth/sessions.csv", "format": "csv", "columns": {}}},
    "models": MODELS,
    "report": {"small_cell_threshold": 10, "confidence_level": 0.95},
}


def make_sessions(n_patients: int = 80, n_sessions: int = 6, seed: int = 1) -> pd.DataFrame:
    """Validated-table-like sessions (before ``prepare_sessions``)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_patients):
        b0 = rng.normal(0, TRUTH["sd_intercept"])
        b1 = rng.normal(0, TRUTH["sd_slope"])
        age = float(np.clip(rng.normal(45, 12), 18, 89))
        sex = "female" if rng.random() < 0.55 else "male"
        bmi = float(rng.lognormal(np.log(27), 0.15))
        antidep = int(rng.random() < 0.6)
        benzo = int(rng.random() < 0.3)
        prone = rng.random() < 0.35
        day = 0
        lod = 0.15
        for s in range(1, n_sessions + 1):
            if s > 1:
                day += int(rng.integers(2, 5))
            ill = int(prone and s > 1 and rng.random() < 0.35)
            y = TRUTH["intercept"] + b0 + (TRUTH["session"] + b1) * s + TRUTH["ill"] * ill
            y += rng.normal(0, TRUTH["sigma"])
            il6 = float(np.exp(rng.normal(np.log(0.8) + 0.9 * ill, 0.9)))
            rows.append(
                {
                    "patient_id": f"P{i:03d}",
                    "session": s,
                    "day": day,
                    "age": round(age),
                    "sex": sex,
                    "bmi": round(bmi, 1) if rng.random() > 0.05 else np.nan,
                    "madrs": float(np.clip(round(y), 0, 60)) if rng.random() > 0.04 else np.nan,
                    "ill": ill,
                    "illness_type": (["cold", "flu", "gi"][int(rng.integers(0, 3))] if ill else None),
                    "il6_pg_ml": il6 if il6 >= lod else np.nan,
                    "il6_pg_ml_lod": lod,
                    "il6_pg_ml_censored": il6 < lod,
                    "dose_mg_kg": 0.5,
                    "antidepressant": antidep,
                    "benzodiazepine": benzo,
                }
            )
    return pd.DataFrame(rows)


def build(tmp: Path, n_patients: int = 80, seed: int = 1, models: dict | None = None) -> dict:
    """Write a runnable report input set under ``tmp`` (relative paths as the workflow's)."""
    models = MODELS if models is None else models
    raw = make_sessions(n_patients, seed=seed)
    (tmp / "data/raw/synth").mkdir(parents=True, exist_ok=True)
    raw_csv = tmp / "data/raw/synth/sessions.csv"
    raw.to_csv(raw_csv, index=False)
    prepared = prepare_sessions(raw)
    proc = tmp / "data/processed/synth"
    (proc / "models").mkdir(parents=True, exist_ok=True)
    prepared.to_parquet(proc / "sessions.parquet", index=False)
    info = {
        "cohort": "synth",
        "file": "data/raw/synth/sessions.csv",
        "sha256": hashlib.sha256(raw_csv.read_bytes()).hexdigest(),
        "records": int(len(raw)),
        "patients": int(raw["patient_id"].nunique()),
        "warnings": 0,
    }
    (proc / "input.json").write_text(json.dumps(info))
    paths = {}
    for name, spec in models.items():
        paths[name] = proc / "models" / f"{name}.json"
        step_fit(prepared, spec, paths[name])
    return {"root": tmp, "sessions": proc / "sessions.parquet", "input": proc / "input.json", "models": paths}


@functools.cache
def built(n_patients: int = 80, seed: int = 1) -> dict:
    """:func:`build` once per test session (in a temporary folder removed at exit)."""
    tmp = Path(tempfile.mkdtemp(prefix="ketastats-report-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    return build(tmp, n_patients=n_patients, seed=seed)


def run_report(
    b: dict, out: Path, *, command: str = "pytest", run_date: str = "2026-01-01 00:00 UTC", pdf: bool = False
) -> dict:
    """``step_report`` on a built cohort, writing everything under ``out``."""
    from ketastats.pipeline import step_report

    out.mkdir(parents=True, exist_ok=True)
    step_report(
        "synth",
        CONFIG,
        sessions=b["sessions"],
        input_json=b["input"],
        model_jsons=b["models"],
        out_results=out / "results.json",
        out_html=out / "report.html",
        root=b["root"],
        command=command,
        figures_dir=out / "figures",
        tables_dir=out / "tables",
        out_pdf=out / "report.pdf" if pdf else None,
        run_date=run_date,
    )
    return {
        "dir": out,
        "results": json.loads((out / "results.json").read_text()),
        "html": (out / "report.html").read_text(),
    }


@functools.cache
def rendered() -> dict:
    """The synthetic cohort's report, rendered once per test session."""
    b = built()
    return run_report(b, b["root"] / "reports" / "synth")


def project_config(project_root: Path) -> dict:
    """The project's config with the synthetic cohort in place of its own, and the test's
    primary model (sections keyed by a cohort, such as a recovery study, go with it)."""
    import yaml

    cfg = yaml.safe_load((project_root / "config/config.yaml").read_text())
    cohorts = set(cfg["cohorts"])
    for key in [k for k, v in cfg.items() if k != "cohorts" and isinstance(v, dict) and cohorts & set(v)]:
        del cfg[key]
    cfg["cohorts"] = {"synth": {"input": "data/raw/synth/sessions.csv", "format": "csv", "columns": {}}}
    cfg["models"] = {"primary": dict(MODELS["primary"])}
    return cfg


def conceals(shown, true: int) -> bool:
    """A complementary-suppressed count: ``"suppressed"``, or a range ``"lo-hi"`` (lo < hi) that
    holds the true value, which a reader could derive anyway; never the value itself."""
    import re

    if shown == "suppressed":
        return True
    m = re.fullmatch(r"(\d+)-(\d+)", str(shown))
    return bool(m) and int(m[1]) < int(m[2]) and int(m[1]) <= true <= int(m[2])


def same_model_entry(ours: dict, local: dict, model_json: dict) -> None:
    """Two releases' entries of one model agree: every estimate equal; a suppressed count may be
    shown as a different range (each release's range is what its own other counts let a reader
    derive), but both conceal the model's true count."""
    assert ours.keys() == local.keys()
    for key in ours:
        if key in ("nobs", "ngroups") and (isinstance(ours[key], str) or isinstance(local[key], str)):
            assert conceals(ours[key], model_json[key]) and conceals(local[key], model_json[key]), key
        else:
            assert ours[key] == local[key], key
