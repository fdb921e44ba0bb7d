"""Model specifications in config: defaults, per-cohort overrides, estimands, strict schema."""

from __future__ import annotations

import copy

import pytest
import yaml

from ketastats.config import check_config, cohort_estimands, load_config, model_spec, model_specs
from ketastats.exceptions import ConfigError
from ketastats.models import KIND_DEFAULTS, KINDS


@pytest.fixture()
def cfg(project_root):
    return yaml.safe_load((project_root / "config/config.yaml").read_text())


def test_every_kind_has_defaults_and_the_config_uses_known_kinds(project_root):
    assert set(KINDS) == set(KIND_DEFAULTS)
    c = load_config(project_root / "config/config.yaml")
    assert {s["kind"] for s in c["models"].values()} <= set(KINDS)
    assert c["models"]["primary"]["role"] == "primary"
    assert c["models"]["primary"]["random"] == ["progress"]
    assert c["estimands"]["illness_medication"] == "while_on_treatment"


def test_primary_spec_is_the_issue_model(project_root):
    spec = model_spec(load_config(project_root / "config/config.yaml"), "demo", "primary")
    assert spec["outcome"] == "madrs" and spec["sessions"] == "post_baseline"
    assert {"progress", "days_since_prev", "madrs_baseline", "ill_within", "ill_between", "ill_lag1"} <= set(
        spec["fixed"]
    )
    assert spec["method"] == "REML" and spec["df_method"] == "satterthwaite"


def test_cohort_overrides_a_field_and_switches_a_model_off(cfg):
    cfg["cohorts"]["demo"]["models"] = {"primary": {"method": "ML"}, "mediation_il6": {"enabled": False}}
    cfg["cohorts"]["demo"]["estimands"] = {"postponement": "hypothetical"}
    cfg["cohorts"]["other"] = {"input": "data/raw/other/x.csv"}
    c = check_config(cfg)
    assert model_spec(c, "demo", "primary")["method"] == "ML"
    assert model_spec(c, "other", "primary")["method"] == "REML"
    assert model_spec(c, "demo", "mediation_il6")["enabled"] is False
    assert model_specs(c, "demo")["primary"]["fixed"] == model_specs(c)["primary"]["fixed"]
    assert cohort_estimands(c, "demo")["postponement"] == "hypothetical"
    assert cohort_estimands(c, "other")["postponement"] == "treatment_policy"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c["models"]["primary"].update(kind="lmer"), "models.primary.kind: 'lmer' is not allowed"),
        (
            lambda c: c["models"]["primary"].update(fixd=["x"]),
            "models.primary.fixd: unknown key 'fixd'. Did you mean 'fixed'?",
        ),
        (
            lambda c: c["estimands"].update(postponement="ignore"),
            "estimands.postponement: 'ignore' is not allowed",
        ),
        (lambda c: c["estimands"].update(dropout="composite"), "estimands.dropout: unknown key 'dropout'"),
        (
            lambda c: c["cohorts"]["demo"].update(models={"primry": {"method": "ML"}}),
            "cohorts.demo.models.primry: there is no model 'primry' under models:. Did you mean 'primary'?",
        ),
        (
            lambda c: c["cohorts"]["demo"].update(models={"primary": {"kind": "gee_binary"}}),
            "cohorts.demo.models.primary.kind: a cohort cannot change a model's kind",
        ),
        (
            lambda c: c["models"]["illness_slopes"].update(random=["progress"]),
            "models.illness_slopes.random: kind illness_slopes needs a random slope on the illness term",
        ),
        (
            lambda c: c["models"]["cytokine_moderation"].update(random=["progress"]),
            "needs a random slope for 'ill_within' (Heisig & Schaeffer 2019)",
        ),
        (
            lambda c: c["models"]["response_gee"].update(formula="y ~ x"),
            "models.response_gee: formula/re_formula are only for kind lmm",
        ),
        (lambda c: c["models"]["response_glmm"].update(n_agq=0), "models.response_glmm.n_agq"),
    ],
)
def test_bad_model_config_names_the_key(cfg, mutate, expected):
    bad = copy.deepcopy(cfg)
    mutate(bad)
    with pytest.raises(ConfigError) as exc:
        check_config(bad)
    assert expected in str(exc.value)


def test_every_model_key_in_the_config_is_commented(project_root):
    """Each model field used in config/config.yaml is explained in its comment block."""
    text = (project_root / "config/config.yaml").read_text()
    comments = "\n".join(line for line in text.splitlines() if line.lstrip().startswith("#"))
    cfg = yaml.safe_load(text)
    for spec in cfg["models"].values():
        for key in spec:
            assert key in comments, key
    for key in cfg["estimands"]:
        assert key in text


def test_every_kind_has_its_code_and_only_that_kind_is_imported():
    """A config ``kind:`` leads in one step to ``models/kinds/<kind>.py`` and its ``fit``;
    fitting one kind imports no other."""
    import subprocess
    import sys
    from pathlib import Path

    import ketastats.models.kinds as kinds_pkg
    from ketastats.models.registry import REGISTRY
    from ketastats.models.specs import KINDS

    assert set(REGISTRY) == set(KINDS)
    files = {p.stem for p in Path(kinds_pkg.__file__).parent.glob("*.py")} - {"__init__"}
    assert files == set(KINDS), files ^ set(KINDS)  # one file per kind, named as the kind
    for name, kind in REGISTRY.items():
        assert callable(kind.fit), name
        assert kind.fit.__module__ == f"ketastats.models.kinds.{name}"
    code = (
        "import sys; from ketastats.models.registry import REGISTRY; REGISTRY['lmm'].fit; "
        "print(sorted(m for m in sys.modules if m.startswith(('ketastats.models.', 'statsmodels.api'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for other in ("gee", "glmm_binary", "mice", "tipping_point", "mediation", "statsmodels.api"):
        assert other not in out, (other, out)
