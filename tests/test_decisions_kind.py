"""Kind ``decision``: the model JSON of the decision analysis (issue 17)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ketastats.models import resolve_spec, run_model
from ketastats.models.specs import resolve_estimands, spec_problems
from ketastats.prepare import prepare_sessions
from ketastats.simulate import simulate_cohort
from ketastats.simulate.decisions import DECISION_COLUMNS
from ketastats.validate import coerce_sessions


def _data(scenario="decisions", n=2000, seed=5):
    c = simulate_cohort(n, seed=seed, scenario=scenario)
    return c, prepare_sessions(coerce_sessions(c.sessions))


def _run(data, **spec):
    s = resolve_spec("decision_test", {"kind": "decision", **spec})
    assert spec_problems("models.decision_test", s) == []
    return run_model("decision_test", s, data, resolve_estimands(None))


@pytest.fixture(scope="module")
def cohort():
    return _data()


@pytest.mark.parametrize("estimator", ["ipw", "gformula", "aipw"])
def test_each_estimator_gives_both_decisions_with_estimand_assumptions_and_protocol(cohort, estimator):
    c, data = cohort
    out = _run(data, estimator=estimator)
    json.dumps(out, allow_nan=False)  # every number finite, the JSON valid
    assert out["status"] == "ok" and out["estimator"] == estimator
    truth = c.truth["effects"]["decisions"]
    for decision in ("postpone", "reduced_dose"):
        block = out["decisions"][decision]
        assert block["status"] == "ok"
        nxt = block["outcomes"]["next"]
        eff, naive = nxt["effect"], nxt["naive"]
        assert eff["estimator"] == estimator and naive["estimator"] == "naive"
        assert eff["ci_low"] <= truth[decision]["value"] <= eff["ci_high"]
        assert not naive["ci_low"] <= truth[decision]["value"] <= naive["ci_high"]
        assert eff["mcid"] == 2.0 and eff["versus_mcid"]
        assert set(block["outcomes"]) == {"next", "end", "response_next", "response_end"}
        assert block["outcomes"]["response_next"]["effect"]["scale"] == "risk difference"
        d = block["diagnostics"]
        ess = d["effective_sample_size"]
        assert 0 < ess["treated"] <= block["counts"]["treated"] and 0 < ess["control"] <= block["counts"]["control"]
        bal = {r["term"]: r for r in d["balance"]}
        # the previous rating drives the decision: imbalanced before weighting, much less after
        # (truncating the weights leaves a little imbalance)
        assert abs(bal["previous_score"]["smd_before"]) > 0.2
        assert abs(bal["previous_score"]["smd_after"]) < abs(bal["previous_score"]["smd_before"]) / 3
        assert max(abs(r["smd_after"]) for r in d["balance"]) < 0.15
        assert sum(d["overlap"]["treated"]["counts"]) == nxt["counts"]["analysed"] - nxt["effect"]["n_control"]
        assert len(d["largest_weights"]) == 5 and d["weights"]["n_truncated"] > 0
        assert [r["severity"] for r in block["by_severity"]] == ["mild", "moderate", "severe"]
        assert any(r["status"] == "ok" for r in block["by_severity"])
        for r in block["by_severity"]:
            assert (r["status"] == "ok") == ("effect" in r)
    est = out["estimand"]["postpone"]
    assert est["framework"] == "ICH E9(R1)"
    assert {"population", "treatment", "variable", "intercurrent_events", "summary"} <= set(est)
    assert set(out["assumptions"]) >= {"no_unmeasured_confounding", "positivity"}
    elements = [r["element"] for r in out["target_trial"]["postpone"]]
    assert elements == ["Eligibility", "Treatment strategies", "Assignment", "Follow-up", "Outcome",
                        "Causal contrast", "Analysis"]
    assert {c["term"] for c in out["coefficients"]} >= {"postpone[next]", "reduced_dose[next]"}


def test_a_cohort_without_the_columns_says_which_and_what_to_record():
    _, data = _data("sickness", 600, 3)
    # a clinic export without the planned_* columns (the generator writes them), and too few reduced doses
    data = data.drop(columns=list(DECISION_COLUMNS))
    out = _run(data, estimator="aipw")
    assert out["status"] == "skipped"
    assert "planned_ill, planned_illness_severity" in out["reason"]
    assert "record whether the patient was ill on the planned day of a postponed infusion" in out["reason"]
    no_dose = data.drop(columns=["dose_mg_kg"])
    out = _run(no_dose, estimator="aipw", decisions=["reduced_dose"])
    assert out["status"] == "skipped" and "no dose_mg_kg" in out["reason"]
    assert "the dose of each infusion in mg/kg" in out["reason"]


def test_positivity_failure_gives_a_reason_not_a_number(cohort):
    _, data = cohort
    out = _run(data, estimator="ipw", decisions=["postpone"], propensity_range=[0.45, 0.55])
    assert out["status"] == "skipped"
    assert "the estimated chance of being postponed (the propensity) is outside [0.45, 0.55]" in out["reason"]
    assert out["coefficients"] == [] and "decisions" not in out
    out = _run(data, estimator="ipw", min_per_arm=100000)
    assert out["status"] == "skipped" and "needs at least 100000 of each (min_per_arm)" in out["reason"]
    # the count in the reason is recorded for the report's suppression
    assert any(v["counts"] for v in out["counted_text"].values())


def test_one_decision_skipped_leaves_the_other(cohort):
    _, data = cohort
    out = _run(data.drop(columns=["planned_ill"]), estimator="gformula")
    assert out["status"] == "ok"
    assert out["decisions"]["postpone"]["status"] == "skipped"
    assert out["decisions"]["postpone"]["missing_columns"] == ["planned_ill"]
    assert out["decisions"]["reduced_dose"]["status"] == "ok"
    assert "effect" not in out["decisions"]["postpone"].get("outcomes", {})


def test_misspecified_terms_and_bad_settings_are_refused_by_the_spec_check():
    s = resolve_spec("d", {"kind": "decision", "truncate": [0.99, 0.01], "confounders": ["severity", "mood"]})
    problems = spec_problems("models.d", s)
    assert any("truncate" in p for p in problems)
    assert any("'mood' not a confounder" in p for p in problems)


def test_propensity_terms_can_be_misspecified_on_purpose(cohort):
    c, data = cohort
    truth = c.truth["effects"]["decisions"]["postpone"]["value"]
    good = _run(data, estimator="ipw", decisions=["postpone"], outcomes=["next"])
    bad = _run(data, estimator="ipw", decisions=["postpone"], outcomes=["next"], propensity_terms=["progress"])
    g = good["decisions"]["postpone"]["outcomes"]["next"]["effect"]["estimate"]
    b = bad["decisions"]["postpone"]["outcomes"]["next"]["effect"]["estimate"]
    # leaving severity and the previous rating out of the propensity leaves IPW confounded
    assert abs(b - truth) > 2 * abs(g - truth) and abs(b - truth) > 1.5
    assert bad["decisions"]["postpone"]["propensity_terms"] == ["progress"]
    assert np.isfinite(b)


def test_decision_effects_by_severity_where_each_stratum_has_the_numbers(cohort):
    from ketastats.decisions import decision_points
    from ketastats.decisions.estimators import analysis_set, estimate

    c, data = cohort
    truth = c.truth["effects"]["decisions"]
    # the true effect of postponing grows with severity (the illness passes before the next rating)
    sev_truth = truth["postpone"]["by_severity"]
    assert sev_truth["mild"]["value"] > sev_truth["moderate"]["value"] > sev_truth["severe"]["value"]
    out = _run(data, estimator="aipw", outcomes=["next"])
    points, _ = decision_points(data)
    shown = 0
    for decision in ("postpone", "reduced_dose"):
        block = out["decisions"][decision]
        terms = [t for t in block["propensity_terms"] if t != "severity"]
        for r in block["by_severity"]:
            level = r["severity"]
            if min(r["n_treated"], r["n_control"]) < 20:  # min_per_stratum
                assert r["status"] == "skipped" and "effect" not in r
                assert f"{level} illness: too few to compare" in r["reason"] and "(min_per_stratum)" in r["reason"]
                continue
            shown += 1
            e = r["effect"]
            # the stratum's own analysis: the estimator on that stratum's points, severity left out
            sub, _ = analysis_set(points[points["severity"] == level], decision, "y_next", terms)
            ref = estimate("aipw", sub, decision=decision, outcome="y_next", binary=False, propensity_terms=terms,
                           outcome_terms=terms, truncate=[0.01, 0.99], alpha=0.05)
            assert e["estimate"] == pytest.approx(ref.estimate, abs=1e-10) and e["se"] == pytest.approx(ref.se)
            assert e["n_treated"] == r["n_treated"] and e["n_control"] == r["n_control"]
            # and it estimates that stratum's true effect (mean individual effect of its points)
            t = truth[decision]["by_severity"][level]["value"]
            assert abs(e["estimate"] - t) < 3 * e["se"], (decision, level, e["estimate"], t)
    assert shown == 4  # mild and moderate for both decisions; few severe illnesses are given as planned


def test_a_clinic_sized_cohort_with_a_saturated_propensity_gets_a_number_not_none():
    # a 300-patient cohort of the clinic-size recovery study whose propensity is exactly 1 at a
    # postponed point: AIPW gave status ok with no estimate before that point's zero term was kept zero
    _, data = _data("decisions", 300, 1603324329)
    out = _run(data, estimator="aipw", decisions=["postpone"], outcomes=["next"])
    eff = out["decisions"]["postpone"]["outcomes"]["next"]["effect"]
    assert out["status"] == "ok" and np.isfinite(eff["estimate"]) and eff["se"] > 0
    assert eff["ci_low"] < eff["estimate"] < eff["ci_high"]


def test_se_bootstrap_reaches_the_model_json_and_the_methods_text(cohort):
    from ketastats.models.descriptions import describe_method

    _, data = cohort
    small = data[data["patient_id"].isin(data["patient_id"].unique()[:400])]
    kw = dict(estimator="aipw", decisions=["postpone"], outcomes=["next"])
    boot = _run(small, se="bootstrap", bootstrap=20, seed=3, **kw)
    plain = _run(small, **kw)
    b = boot["decisions"]["postpone"]["outcomes"]["next"]["effect"]
    p = plain["decisions"]["postpone"]["outcomes"]["next"]["effect"]
    assert b["estimate"] == p["estimate"] and b["analytic_se"] == p["se"] and b["se"] != p["se"]
    assert {k: b["bootstrap"][k] for k in ("resamples", "seed", "failed")} == {"resamples": 20, "seed": 3,
                                                                              "failed": 0}
    assert b["bootstrap"]["sd"] > 0
    assert "bootstrap" in b["se_method"] and "bootstrap" not in p["se_method"]
    assert "analytic_se" not in p
    assert "cluster bootstrap (20 resamples of the patients, seed 3)" in describe_method(boot).se_method
    s = resolve_spec("d", {"kind": "decision", "se": "cr2"})
    assert any("decision takes sandwich or bootstrap" in p for p in spec_problems("models.d", s))
