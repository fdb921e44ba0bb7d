"""The Methods paragraph of every model kind says what was fitted: its model, SEs and formula."""

from __future__ import annotations

import json
import re

import pytest
from markupsafe import escape

from ketastats.models.descriptions import DESCRIBERS, describe_method
from ketastats.models.specs import KINDS

pytestmark = pytest.mark.workflow

#: kind -> (words its SE sentence must hold, words no part of its paragraph may hold)
EXPECTED = {
    "lmm": ("cluster-robust sandwich (CR2", ("σ²(X'V⁻¹X)⁻¹",)),  # se: cr2, the default
    "gee": ("sandwich", ("random intercept", "σ²(X'V⁻¹X)⁻¹")),
    "gee_binary": ("sandwich", ("random intercept", "σ²(X'V⁻¹X)⁻¹")),
    "glmm_binary": ("observed information", ("σ²(X'V⁻¹X)⁻¹", "sandwich")),
    "cytokine_illness": ("full observed information", ("σ²(X'V⁻¹X)⁻¹", "sandwich")),
    "cytokine_moderation": ("σ²(X'V⁻¹X)⁻¹", ("sandwich",)),
    "mediation": ("Monte Carlo", ("sandwich",)),
    "illness_slopes": ("σ²(X'V⁻¹X)⁻¹", ("sandwich",)),
    "lmm_mi": ("Rubin's rules [rubin1987] from the small-sample cluster-robust (CR2)", ("σ²(X'V⁻¹X)⁻¹",)),
    "tipping_point": ("Rubin's rules [rubin1987] from the small-sample cluster-robust (CR2)", ("σ²(X'V⁻¹X)⁻¹",)),
    "mmrm": ("(X'V⁻¹X)⁻¹", ("random intercept", "sandwich")),
    "decision": ("sandwich", ("random intercept", "σ²(X'V⁻¹X)⁻¹")),
    "illness_by": ("σ²(X'V⁻¹X)⁻¹", ("sandwich",)),
}


def test_every_kind_has_a_description():
    assert set(DESCRIBERS) == set(KINDS) == set(EXPECTED)


@pytest.fixture(scope="module")
def models(demo_run):
    out = {}
    for p in sorted((demo_run / "data/processed/demo/models").glob("*.json")):
        m = json.loads(p.read_text())
        out[m["name"]] = m
    return out


def test_each_fitted_kind_names_its_se_method_and_formula(models):
    kinds = {m["kind"] for m in models.values()}
    assert kinds == set(KINDS)  # the demo fits every kind
    for name, m in models.items():
        if m["kind"] == "decision":  # the tiny demo: too few postponed ill infusions, no reduced dose
            assert m["status"] == "skipped" and "too few to compare" in m["reason"], name
            assert "were postponed" in m["reason"] and "were given at a reduced dose" in m["reason"], name
        else:
            assert m["status"] == "ok", name
        d = describe_method(m)
        must, never = EXPECTED[m["kind"]]
        if m["kind"] == "cytokine_illness" and m["censoring"] != "tobit":  # substituted: an LMM, lme4's SEs
            must, never = EXPECTED["illness_slopes"]
        if m["kind"] == "decision" and (m.get("spec") or {}).get("se") == "bootstrap":  # decision_aipw as shipped
            must = "patient-level cluster bootstrap"
        assert must in d.se_method, (name, d.se_method)
        text = " ".join([d.model, d.random, d.estimation, d.se_method, d.inference, d.extra])
        for word in never:
            assert word not in text, (name, word)
        assert "~" in d.formula and d.formula.split("~")[1].strip(), (name, d.formula)
        if "_" in m["kind"]:  # an identifier such as gee_binary, not a word
            assert m["kind"] not in text, (name, "internal kind name as prose")


def test_report_paragraphs_follow_the_descriptions(demo_run, models):
    paras = json.loads((demo_run / "reports/demo/results.json").read_text())["methods"]["paragraphs"]
    for name, m in models.items():
        if m["status"] == "skipped":  # the decision models on the tiny demo (too few points): said so, with why
            mine = [p for p in paras if p.startswith(f"The model '{escape(m['label'])}'")]
            assert len(mine) == 1 and "was skipped" in mine[0] and "too few to compare" in mine[0], name
            continue
        mine = [p for p in paras if p.startswith(f"Model '{escape(m['label'])}'")]
        assert len(mine) == 1, name
        p = mine[0]
        assert describe_method(m).se_method in p
        assert re.search(r"<code>[^<]*~[^<]+</code>", p), (name, p)
        assert " of with " not in p and "model of <code></code>" not in p
