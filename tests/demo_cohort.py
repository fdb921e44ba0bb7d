"""The demo cohort, frozen: ``tests/data/demo_sessions.csv``.

It is the input ``ketastats simulate`` writes for the shipped config's demo cohort (200
patients, seed 20261125, scenario sickness; simulated, no real person), read, typed and
prepared here by the package's own steps, as the workflow does. The R reference scripts
(``tests/data/demo_reference.R``) read the rows each model analyses, written from this file by
``tests/data/demo_rows.py`` with the package's own row functions.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd
import yaml

from ketastats.io import read_cohort
from ketastats.models import resolve_estimands, resolve_spec
from ketastats.prepare import prepare_sessions
from ketastats.validate import coerce_sessions

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent


@functools.lru_cache(maxsize=1)
def _sessions() -> pd.DataFrame:
    cohort = {"input": "demo_sessions.csv", "format": "csv", "columns": {}}
    return prepare_sessions(coerce_sessions(read_cohort(cohort, root=DATA)))


def demo_sessions() -> pd.DataFrame:
    """The prepared demo sessions (a fresh copy)."""
    return _sessions().copy()


@functools.lru_cache(maxsize=1)
def _config() -> dict:
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def shipped_spec(name: str) -> dict:
    """Model ``name`` of the shipped config, resolved with its kind's defaults."""
    return resolve_spec(name, _config()["models"][name])


def shipped_models() -> list[str]:
    """The names of the shipped config's models."""
    return list(_config()["models"])


def shipped_estimands() -> dict:
    """The shipped config's estimands."""
    return resolve_estimands(_config()["estimands"])


#: the models with an R reference (tests/data/demo_reference.R): one or more per kind of the shipped config
MODELS = [
    "primary",
    "complete_case",
    "illness_slopes",
    "mmrm_gee",
    "mmrm",
    "response_gee",
    "response_end",
    "response_glmm",
    "cytokine_illness",
    "cytokine_illness_lod",
    "cytokine_moderation",
    "mediation_il6",
    "primary_mi",
    "tipping_point",
    "illness_by",
]
#: the multiple-imputation kinds are referenced with fewer imputations and deltas (the analysis and the
#: pooling of given completed data sets are checked, not the imputation draws)
MI_OVERRIDE = {"imputations": 3, "deltas": [0, 6]}


#: the MMRM is referenced by nlme::gls, which has model-based SEs and no Kenward-Roger adjustment; the
#: shipped Kenward-Roger is checked against pbkrtest in tests/test_mmrm.py (the fit is the same either way)
MMRM_OVERRIDE = {"df_method": "satterthwaite"}


def spec_for(name: str) -> dict:
    """The shipped spec of ``name`` as the R reference uses it."""
    spec = shipped_spec(name)
    if spec["kind"] in ("lmm_mi", "tipping_point"):
        spec = {**spec, **MI_OVERRIDE}
    if spec["kind"] == "mmrm":
        spec = {**spec, **MMRM_OVERRIDE}
    return spec


@functools.lru_cache(maxsize=1)
def recorded() -> tuple[list[dict], dict]:
    """Every model of :data:`MODELS` run on the demo, with the rows its fitters received.

    ``tests/data/demo_rows.py``'s recorder (cached: the reference and quadrature tests share it).
    Treat the result as read-only.
    """
    import sys

    sys.path.insert(0, str(DATA))
    import demo_rows

    return demo_rows.record_all()
