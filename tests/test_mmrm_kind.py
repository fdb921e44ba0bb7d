"""Kind ``mmrm`` (ketastats.models.kinds.mmrm) and ``ketastats fit --mmrm``: the model JSON, the fallback
order of covariance structures, the SE and df options, and the command line (issue 18)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from demo_cohort import demo_sessions, shipped_estimands, shipped_spec
from mmrm_models import MMRM_DATA, fit

from ketastats.cli import main
from ketastats.exceptions import ConfigError
from ketastats.models import resolve_spec, run_model
from ketastats.models.kinds.mmrm import structure_order, unsupported_reason
from ketastats.models.specs import spec_problems


@pytest.fixture(scope="module")
def demo():
    return demo_sessions()


def _run(demo, **override):
    spec = {**shipped_spec("mmrm"), **override}
    return run_model("mmrm", spec, demo, shipped_estimands())


def test_shipped_mmrm_is_unstructured_reml_with_kenward_roger(demo):
    out = _run(demo)
    assert out["status"] == "ok", out["reason"]
    assert out["kind"] == "mmrm" and out["role"] == "sensitivity"
    assert out["method"] == "REML" and out["df_method"] == "kenward_roger"
    assert out["se_type"] == "model-based with the Kenward-Roger adjustment"
    cov = out["covariance"]
    assert cov["structure"] == cov["requested"] == "us" and cov["passed_over"] == []
    T = len(cov["visits"])
    assert len(cov["parameters"]) == T * (T + 1) // 2
    S = np.array(cov["matrix"]["all"])
    assert S.shape == (T, T) and np.all(np.linalg.eigvalsh(S) > 0)
    # the illness terms are time-varying covariates; the effect reported is the within-patient one
    eff = out["illness_effect"]
    assert eff["term"] == "ill_within" and eff["df_method"] == "kenward_roger" and eff["df"] > 100
    assert any(c["term"].startswith("C(session)") for c in out["coefficients"])
    json.dumps(out, allow_nan=False)  # plain JSON


def test_too_many_visits_for_us_falls_back_in_order_and_says_so(demo):
    out = _run(demo, max_visits=4)
    assert out["status"] == "ok"
    cov = out["covariance"]
    assert cov["requested"] == "us" and cov["structure"] == "toeph"
    assert "more than max_visits = 4" in cov["passed_over"][0]
    assert any("covariance toeph used instead of us" in m for m in out["messages"])
    # toeph's 2T-1 parameters
    assert len(cov["parameters"]) == 2 * len(cov["visits"]) - 1


def test_no_supported_structure_skips_with_the_reasons(demo):
    out = _run(demo, max_visits=4, covariance_fallback=["us"])
    assert out["status"] == "skipped"
    assert "no covariance structure could be fitted" in out["reason"]


def test_structure_order_and_support_rules():
    assert structure_order("us", ["us", "toeph", "ar1h"]) == ["us", "toeph", "ar1h"]
    assert structure_order("toeph", ["us", "toeph", "ar1h"]) == ["toeph", "ar1h"]
    assert structure_order("cs", ["us", "toeph", "ar1h"]) == ["cs", "us", "toeph", "ar1h"]
    subj = np.repeat(np.arange(5), 3)
    vis = np.tile([1, 2, 3], 5)
    assert unsupported_reason("us", [1, 2, 3], subj, vis, 12) == "6 covariance parameters for 5 patients"
    assert unsupported_reason("ar1", [1, 2, 3], subj, vis, 12) is None
    # visits 1 and 3 never together
    subj2 = np.repeat(np.arange(20), 2)
    vis2 = np.tile([1, 2], 20)
    vis2[20:] = np.tile([2, 3], 10)
    assert "never rated in the same patient" in unsupported_reason("us", [1, 2, 3], subj2, vis2, 12)


def test_kenward_roger_and_empirical_options(demo):
    base = _run(demo, df_method="satterthwaite")
    kr = _run(demo, df_method="kenward_roger")
    emp = _run(demo, df_method="satterthwaite", se="empirical")
    b = {c["term"]: c for c in base["coefficients"]}
    k = {c["term"]: c for c in kr["coefficients"]}
    e = {c["term"]: c for c in emp["coefficients"]}
    for term in b:
        assert k[term]["estimate"] == e[term]["estimate"] == b[term]["estimate"]
        assert k[term]["se"] >= b[term]["se"]  # the KR adjustment inflates
        assert k[term]["df_method"] == "kenward_roger" and b[term]["df_method"] == "satterthwaite"
        assert e[term]["df_method"] == "residual" and e[term]["df"] == emp["ngroups"] - len(b)
    assert e["ill_within"]["se"] != pytest.approx(b["ill_within"]["se"], rel=1e-3)
    assert "Kenward-Roger" in kr["se_type"] and "sandwich" in emp["se_type"]


def test_spec_problems_of_the_new_fields():
    assert spec_problems("m", resolve_spec("m", {"kind": "mmrm"})) == []
    lmm_kr = spec_problems("m", resolve_spec("m", {"kind": "lmm", "df_method": "kenward_roger"}))
    assert any("kenward_roger is for kind mmrm" in p for p in lmm_kr)
    both = spec_problems("m", resolve_spec("m", {"kind": "mmrm", "df_method": "kenward_roger", "se": "empirical"}))
    assert any("use se: model" in p for p in both)
    assert any("kind mmrm has" in p for p in spec_problems("m", resolve_spec("m", {"kind": "mmrm", "se": "robust"})))
    assert any("kind gee has" in p for p in spec_problems("m", resolve_spec("m", {"kind": "gee", "se": "model"})))


def test_config_schema_accepts_mmrm_and_refuses_unknown_structures(project_root):
    import yaml

    from ketastats.config import check_config

    cfg = yaml.safe_load((project_root / "config/config.yaml").read_text())
    assert cfg["models"]["mmrm"]["kind"] == "mmrm"
    check_config(cfg)
    cfg["models"]["mmrm"]["covariance"] = "banded"
    with pytest.raises(ConfigError):
        check_config(cfg)


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------


def test_cli_fit_mmrm_equals_the_engine(tmp_path):
    out = tmp_path / "mmrm.json"
    argv = [
        "fit", str(MMRM_DATA / "fev_data.csv"),
        "--formula", "FEV1 ~ ARMCD * AVISIT + RACE + SEX",
        "--group", "USUBJID", "--mmrm", "AVISIT", "--covariance", "us",
        "--reference", "SEX=Male", "--reference", "ARMCD=PBO",
        "--json", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    res = json.loads(out.read_text())
    ref = fit("un_reml")
    assert res["m2loglik"] == pytest.approx(ref.m2loglik, abs=1e-6)
    assert res["nobs"] == 537 and res["method"] == "REML" and res["df_method"] == "satterthwaite"
    coefs = {c["term"]: c for c in res["coefficients"]}
    trt = coefs["ARMCD[T.TRT]"]
    j = ref.names.index("ARMCD[T.TRT]")
    assert trt["estimate"] == pytest.approx(ref.beta[j], rel=1e-6)
    assert trt["se"] == pytest.approx(ref.se[j], rel=1e-6)
    assert trt["df"] == pytest.approx(ref.df[j], rel=1e-6) and trt["df_method"] == "satterthwaite"
    assert "SEX[T.Female]" in coefs and res["kind"] == "mmrm" and res["random"] is None
    assert len(res["covariance"]["parameters"]) == 10
    # Kenward-Roger and ML
    assert main([*argv[:-2], "--df", "kenward_roger", "--ml", "--json", str(out)]) == 0
    res2 = json.loads(out.read_text())
    assert res2["method"] == "ML" and res2["df_method"] == "kenward_roger"
    assert res2["m2loglik"] == pytest.approx(fit("un_ml").m2loglik, abs=1e-6)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--mmrm", "AVISIT", "--re", "~1"], "takes no random effects"),
        (["--mmrm", "AVISIT", "--df", "kenward_roger", "--se", "empirical"], "without --se empirical"),
        (["--covariance", "ar1"], "need --mmrm"),
        (["--mmrm", "NOPE"], "'NOPE' is not in the data"),
    ],
)
def test_cli_mmrm_errors_are_for_people(extra, message, tmp_path, capsys):
    argv = ["fit", str(MMRM_DATA / "fev_data.csv"), "--formula", "FEV1 ~ ARMCD", "--group", "USUBJID",
            *extra, "--json", str(tmp_path / "x.json")]  # fmt: skip
    rc = main(argv)
    assert rc != 0
    assert message in capsys.readouterr().err


def test_methods_say_what_each_assumes(demo):
    """The report's Methods: the MMRM is valid under MAR, the GEE under MCAR (issue 18)."""
    from ketastats.models.descriptions import describe_method
    from ketastats.report.sensitivity import describe_analysis

    out = _run(demo)
    d = describe_method(out)
    assert "(MAR)" in d.model and "(MCAR)" in d.model and "unstructured covariance" in d.model
    assert "random intercept" not in " ".join([d.model, d.random, d.estimation, d.se_method])
    # the shipped Kenward-Roger is named where the SEs and the tests are described
    assert "Kenward-Roger" in d.se_method and "Kenward-Roger" in d.inference and "[kenward1997]" in d.inference
    assert "Satterthwaite" in describe_method(_run(demo, df_method="satterthwaite")).inference
    gee = run_model("mmrm_gee", shipped_spec("mmrm_gee"), demo, shipped_estimands())
    assert "completely at random" in describe_method(gee).estimation
    assert "MAR" in describe_analysis(out) and "MCAR" in describe_analysis(gee)
    fallback = describe_method(_run(demo, max_visits=4))
    assert "could not support it" in fallback.model
