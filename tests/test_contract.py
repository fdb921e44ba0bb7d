"""The contract is self-consistent and the documentation covers all of it."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from ketastats import contract, validate
from ketastats.contract import (
    COLUMNS,
    CYTOKINES,
    ILLNESS_TYPES,
    INSTRUMENTS,
    MADRS_CORE_ITEMS,
    MADRS_ITEMS,
    MADRS_SICKNESS_ITEMS,
    MEDICATION_CLASSES,
    REQUIRED,
    SEVERITIES,
)
from ketastats.identifiers import IDENTIFIER_KINDS

DOC = Path(__file__).resolve().parents[1] / "docs" / "data_contract.md"


def test_required_columns_are_keys():
    assert REQUIRED == ("patient_id", "session", "day")
    assert all(COLUMNS[c].required for c in REQUIRED)
    assert sum(spec.required for spec in COLUMNS.values()) == len(REQUIRED)


def test_issue_levels():
    assert ILLNESS_TYPES == ("respiratory", "influenza_like", "gastrointestinal",
                             "other_febrile", "other")
    assert SEVERITIES == ("mild", "moderate", "severe")
    assert {"benzodiazepine", "nsaid", "antibiotic", "steroid", "antipyretic"} <= set(
        MEDICATION_CLASSES)
    assert set(CYTOKINES) == {"il6_pg_ml", "tnfa_pg_ml", "il1b_pg_ml", "crp_mg_l"}


@pytest.mark.parametrize(("name", "lo", "hi", "remission"), [
    ("madrs", 0, 60, 10), ("hamd17", 0, 52, 7), ("qids_sr16", 0, 27, 5), ("phq9", 0, 27, 4),
    ("bdi2", 0, 63, 13),
])
def test_instruments(name, lo, hi, remission):
    inst = INSTRUMENTS[name]
    assert (inst.min, inst.max, inst.remission_max) == (lo, hi, remission)
    assert inst.response_fraction == 0.5
    assert lo < inst.remission_max < hi
    assert len(inst.source) > 20 and re.search(r"(19|20)\d\d", inst.source)
    spec = COLUMNS[name]
    assert (spec.min, spec.max, spec.kind) == (lo, hi, "int")


def test_madrs_items_partition():
    assert len(MADRS_ITEMS) == 10
    assert set(MADRS_SICKNESS_ITEMS) | set(MADRS_CORE_ITEMS) == set(MADRS_ITEMS)
    assert not set(MADRS_SICKNESS_ITEMS) & set(MADRS_CORE_ITEMS)
    assert MADRS_SICKNESS_ITEMS == tuple(f"madrs_{i}" for i in (4, 5, 6, 7, 8))
    assert INSTRUMENTS["madrs"].items == MADRS_ITEMS
    assert INSTRUMENTS["madrs"].max == 6 * len(MADRS_ITEMS)
    assert all((COLUMNS[i].min, COLUMNS[i].max) == (0, 6) for i in MADRS_ITEMS)


def test_specs_are_well_formed():
    for name, spec in COLUMNS.items():
        assert spec.name == name
        assert spec.description
        pd.api.types.pandas_dtype(spec.dtype if spec.dtype != "str" else "object")
        if spec.kind == "category":
            assert spec.levels or name == "site"
        if spec.min is not None and spec.max is not None:
            assert spec.min < spec.max
        if spec.kind == "binary":
            assert (spec.min, spec.max) == (0, 1)
    for marker in CYTOKINES:
        assert COLUMNS[marker].kind == "cytokine"
        assert COLUMNS[marker + contract.LOD_SUFFIX].kind == "float"


def test_the_documentation_covers_every_column_rule_and_kind():
    text = DOC.read_text(encoding="utf-8")
    for name in COLUMNS:
        assert f"`{name}`" in text, name
    rules = {"read", "mapping", "checksum", "empty", "duplicate_column", "required", "type",
             "range", "level", "lod_string", "duplicate", "day_order", "items_total",
             "items_incomplete", "lod_fraction", "unknown_column", *validate.CROSS_FIELD_RULES}
    for rule in rules:
        assert f"`{rule}`" in text, rule
    for kind in IDENTIFIER_KINDS:
        assert f"`{kind}`" in text, kind
    for inst in INSTRUMENTS.values():
        assert f"`{inst.name}`" in text
        assert f"<= {inst.remission_max}" in text
    assert "safe_columns" in text and "redcap_dictionary" in text
