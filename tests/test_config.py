"""The workflow config is checked against its schema, every problem named by its key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from ketastats.config import check_config, load_config, schema
from ketastats.exceptions import ConfigError


@pytest.fixture()
def cfg(project_root):
    return yaml.safe_load((project_root / "config/config.yaml").read_text())


def test_default_config_is_valid_and_gets_defaults(project_root):
    c = load_config(project_root / "config/config.yaml")
    assert "demo" in c["cohorts"]
    assert c["report"]["small_cell_threshold"] == 10
    assert c["models"]["primary"]["method"] == "REML"


def test_config_schema_file_is_the_package_schema(project_root):
    assert yaml.safe_load((project_root / "config/schema.yaml").read_text()) == schema()


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda c: c["cohorts"]["demo"].update(formatt="csv"),
            "cohorts.demo.formatt: unknown key 'formatt'. Did you mean 'format'?",
        ),
        (lambda c: c["cohorts"]["demo"].update(format="xls"), "cohorts.demo.format: 'xls' is not allowed"),
        (
            lambda c: c["models"]["primary"].update(method="REM"),
            "models.primary.method: 'REM' is not allowed; use one of: REML, ML",
        ),
        (
            lambda c: c["models"]["primary"].update(engine="lme4"),
            "models.primary.engine: 'lme4' is not allowed",
        ),
        (lambda c: c["cohorts"]["demo"].pop("input"), "cohorts.demo: 'input' is a required property"),
        (lambda c: c.update(cohort={}), "cohort: unknown key 'cohort'. Did you mean 'cohorts'?"),
        (lambda c: c["report"].update(small_cell_threshold=-1), "report.small_cell_threshold"),
        (lambda c: c["cohorts"].update({"bad name": {"input": "x.csv"}}), "name 'bad name' must consist of"),
        (
            lambda c: c["models"]["primary"].update(formula="madrs session"),
            "models.primary.formula: 'madrs session' has no '~'",
        ),
        (
            lambda c: c["cohorts"]["demo"].update(format="redcap"),
            "cohorts.demo.redcap_dictionary: required when format is redcap",
        ),
        (
            lambda c: c["cohorts"].update(x={"input": "data/raw/x/file.dat"}),
            "cohorts.x.input: cannot tell the format",
        ),
    ],
)
def test_bad_config_names_the_key(cfg, mutate, expected):
    bad = copy.deepcopy(cfg)
    mutate(bad)
    with pytest.raises(ConfigError) as exc:
        check_config(bad)
    assert expected in str(exc.value)


def test_all_problems_are_listed_at_once(cfg):
    bad = copy.deepcopy(cfg)
    bad["cohorts"]["demo"]["formatt"] = "csv"
    bad["models"]["primary"]["method"] = "REM"
    with pytest.raises(ConfigError) as exc:
        check_config(bad)
    text = str(exc.value)
    assert "2 problem(s)" in text
    assert "cohorts.demo.formatt" in text and "models.primary.method" in text


def test_missing_config_file_says_so(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_the_fast_check_and_jsonschema_agree_on_validity():
    """A valid config is decided by fastjsonschema's generated code, an invalid one explained by
    jsonschema: on the shipped config and mutations of it, both give the same verdict."""
    from jsonschema import Draft202012Validator

    from ketastats.config import _fast_validator, schema

    fast = _fast_validator()
    assert fast is not None
    shipped = yaml.safe_load((Path(__file__).resolve().parents[1] / "config/config.yaml").read_text())
    mutations = [
        lambda c: c,
        lambda c: c.pop("cohorts"),
        lambda c: c["cohorts"]["demo"].update(formatt="csv"),
        lambda c: c["cohorts"]["demo"].update(format="xls"),
        lambda c: c["cohorts"]["demo"]["simulate"].update(patients=1),
        lambda c: c["cohorts"]["demo"]["simulate"].update(patients="200"),
        lambda c: c["cohorts"]["demo"]["simulate"].update(patients=True),
        lambda c: c["cohorts"].update({"bad name!": {"input": "x.csv"}}),
        lambda c: c["models"]["primary"].update(kind=3),
        lambda c: c["models"]["primary"].update(method="reml"),
        lambda c: c["models"]["primary"].update(fixed="progress"),
        lambda c: c["models"]["primary_mi"].update(imputations=1),
        lambda c: c["report"].update(confidence_level=1.5),
        lambda c: c["report"].update(pdf="maybe"),
        lambda c: c["report"].update(small_cell_threshold=-1),
        lambda c: c["estimands"].update(postponement="ignore"),
        lambda c: c["recovery"]["demo"].update(replicates=1),
        lambda c: c.update(extra_key=1),
        lambda c: c["models"].update(empty={}),
    ]
    sch = schema()
    verdicts = []
    for i, mutate in enumerate(mutations):
        cfg = copy.deepcopy(shipped)
        mutate(cfg)
        slow_ok = not list(Draft202012Validator(sch).iter_errors(cfg))
        try:
            fast(cfg)
            fast_ok = True
        except Exception:  # noqa: BLE001 - fastjsonschema's error, or data its code did not expect
            fast_ok = False
        assert fast_ok == slow_ok, (i, fast_ok, slow_ok)
        verdicts.append(slow_ok)
    assert verdicts[0] and verdicts.count(False) >= len(mutations) - 3  # the shipped one is valid


@pytest.mark.parametrize(
    ("instrument", "short"),
    [("madrs", "MADRS"), ("hamd17", "HAM-D 17"), ("qids_sr16", "QIDS-SR16"), ("phq9", "PHQ-9"), ("bdi2", "BDI-II")],
)
def test_models_follow_the_cohorts_instrument(cfg, instrument, short):
    """The shipped models say 'score'; each cohort's specs name its own instrument's columns."""
    from ketastats.config import model_spec

    c = copy.deepcopy(cfg)
    c["cohorts"]["demo"]["outcome"] = instrument
    checked = check_config(c)
    primary = model_spec(checked, "demo", "primary")
    assert primary["outcome"] == instrument and primary["instrument"] == instrument
    assert f"{instrument}_baseline" in primary["fixed"] and "score_baseline" not in primary["fixed"]
    assert primary["label"] == f"Primary: {short} by illness (linear mixed model)"
    assert model_spec(checked, "demo", "response_end")["outcome"] == f"{instrument}_response"
    assert model_spec(checked, "demo", "remission_gee")["outcome"] == f"{instrument}_remission"
    assert model_spec(checked, "demo", "primary_nonsick")["outcome"] == "madrs_nonsick"  # named itself
    # a spec resolved for the cohort keeps its instrument when resolved again (as ketastats fit does)
    from ketastats.models import resolve_spec

    assert resolve_spec("primary", primary)["outcome"] == instrument


def test_an_unknown_instrument_is_named(cfg):
    c = copy.deepcopy(cfg)
    c["cohorts"]["demo"]["outcome"] = "hamd21"
    with pytest.raises(ConfigError, match="cohorts.demo.outcome"):
        check_config(c)
