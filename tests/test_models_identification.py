"""A fit the data do not identify is never "ok": separation, failed Hessians, unexpected errors."""

from __future__ import annotations

import numpy as np
import pytest
from models_sim import prepared_cohort

from ketastats.models import registry, resolve_estimands, resolve_spec, run_model
from ketastats.models.identification import MAX_LOG_ODDS, fit_reasons, runaway_reasons, separation_reasons

EST = resolve_estimands(None)


@pytest.fixture(scope="module")
def separated():
    """No responder among the ill sessions: the within-patient odds ratio of illness is infinite."""
    df, _ = prepared_cohort(120, seed=5, p_ill_patient=0.5)
    df = df.copy()
    ill = df["ill"].astype(float) > 0
    assert ill.sum() > 20 and df.loc[~ill, "madrs_response"].sum() > 20
    df.loc[ill, "madrs_response"] = 0.0
    return df


@pytest.mark.parametrize("kind", ["gee_binary", "glmm_binary"])
def test_separation_among_ill_sessions_is_unreliable_not_ok(separated, kind):
    spec = resolve_spec("m", {"kind": kind, "outcome": "madrs_response", "n_agq": 3})
    out = run_model("m", spec, separated, EST)
    assert out["status"] == "unreliable"
    assert "quasi-complete separation: no events among the sessions with ill = 1" in out["reason"]
    assert out["identification"] and out["reason"].startswith(out["identification"][0])


def test_the_same_model_without_separation_is_ok():
    df, _ = prepared_cohort(120, seed=5, p_ill_patient=0.5)
    out = run_model("m", resolve_spec("m", {"kind": "gee_binary", "outcome": "madrs_response"}), df, EST)
    assert out["status"] == "ok", out["reason"]
    assert out["identification"] == []


def test_separation_reasons_see_both_levels_and_ignore_continuous_regressors():
    y = np.array([1, 1, 1, 0, 0, 1, 0, 1])
    x = np.array([1, 1, 1, 0, 0, 0, 0, 0])  # every x = 1 row is an event: no non-events there
    assert separation_reasons(y, {"x": x, "age": np.linspace(20, 60, 8)}) == [
        "quasi-complete separation: no non-events among the sessions with x = 1, so the odds ratio of x is "
        "infinite"
    ]
    assert separation_reasons(y, {"x": np.array([1, 0, 1, 0, 1, 0, 1, 0])}) == []


def test_runaway_predictions_use_rs_numerically_0_or_1_criterion():
    assert MAX_LOG_ODDS == pytest.approx(-np.log(10 * np.finfo(float).eps))
    assert runaway_reasons([-30.0, 12.0, 0.0]) == []  # structural zeros: large but finite
    assert len(runaway_reasons([-35.0, 0.0])) == 1 and len(runaway_reasons([np.inf])) == 1


def _fake_kind(fields):
    def fit(data, spec, estimands, alpha):
        return fields

    return fit


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("glmm_binary", "unreliable"), ("lmm", "ok")],  # an LMM's SEs do not come from that Hessian
)
def test_every_attempt_failing_its_hessian_check(monkeypatch, kind, expected):
    attempts = [
        {"label": "a", "ok": False, "converged": True, "singular": False, "hessian_pd": False, "loglik": -3.0},
        {"label": "b", "ok": False, "converged": True, "singular": False, "hessian_pd": False, "loglik": -3.1},
    ]
    monkeypatch.setitem(
        registry._FITS, kind, _fake_kind({"attempts": attempts, "converged": True, "coefficients": []})
    )
    df, _ = prepared_cohort(20, seed=1)
    out = run_model("m", resolve_spec("m", {"kind": kind}), df, EST)
    assert out["status"] == expected
    if expected == "unreliable":
        assert "every fitting attempt (2) failed its Hessian check" in out["reason"]


def test_hessian_check_by_part_and_convergence():
    attempts = [
        {"label": "il6: a", "converged": True, "hessian_pd": True, "loglik": -1.0},
        {"label": "crp: a", "converged": True, "hessian_pd": False, "loglik": -1.0},
        {"label": "crp: b", "converged": False, "hessian_pd": False, "loglik": -1.0},
    ]
    got = fit_reasons({"attempts": attempts, "fits": {"il6": {}, "crp": {}}})
    assert len(got) == 1 and got[0].startswith("crp: every fitting attempt (2) failed its Hessian check")
    assert fit_reasons({"attempts": [{"label": "x", "converged": False, "loglik": -2.0}]}) == [
        "no fitting attempt converged"
    ]


def test_an_unexpected_error_is_failed_with_words_not_a_python_exception(monkeypatch, caplog):
    def boom(data, spec, estimands, alpha):
        return None + 1  # a TypeError, as a bug would raise

    monkeypatch.setitem(registry._FITS, "gee", boom)
    df, _ = prepared_cohort(20, seed=1)
    out = run_model("mmrm", resolve_spec("mmrm", {"kind": "gee"}), df, EST)
    assert out["status"] == "failed"
    assert "TypeError" not in out["reason"] and "NoneType" not in out["reason"]
    assert "logs/<cohort>/fit_mmrm.log" in out["reason"]
    assert "TypeError" in caplog.text  # the exception itself goes to the job log


def test_an_unreliable_model_is_greyed_and_left_out_of_the_forest_plot_and_range(tmp_path):
    import json

    import pandas as pd
    import report_cohort as rc

    from ketastats.report import build_results, render_html

    b = rc.built()
    sessions = pd.read_parquet(b["sessions"])
    primary = json.loads(b["models"]["primary"].read_text())
    shaky = {
        **primary,
        "label": "Shaky sensitivity",
        "role": "sensitivity",
        "status": "unreliable",
        "reason": "quasi-complete separation: no events among the sessions with ill = 1",
    }
    shaky["coefficients"] = [
        {**c, "estimate": -281.0, "ci_low": -3843.0, "ci_high": 3281.0} if c["term"] == "ill" else c
        for c in primary["coefficients"]
    ]
    assert any(c["term"] == "ill" for c in primary["coefficients"])
    info = json.loads(b["input"].read_text())
    prov = {"input": {"file": info["file"], "sha256": info["sha256"]}, "packages": {"ketastats": "0"},
            "git_commit": "x", "config_yaml": "", "command": "c"}
    models = {"primary": primary, "shaky": shaky}
    res = build_results("synth", sessions, info, models, prov, {"small_cell_threshold": 10, "confidence_level": 0.95})
    assert [e["model"] for e in res["illness_effects"]] == ["primary"]
    summary = " ".join(res["summary"])
    assert "-281" not in summary and "Not identified by the data" in summary
    assert "Shaky sensitivity (quasi-complete separation" in summary
    html = render_html(res, sessions, tmp_path / "r.html", models=models, figures_dir=tmp_path / "f").read_text()
    section = html.split('id="model-shaky"')[1].split("</section>")[0]
    assert "Unreliable, not reported as an estimate: quasi-complete separation" in section
    assert '<div class="unreliable">' in section
