"""Proceed, postpone or reduce the dose (issue 17): generator truth, decision points, estimators."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ketastats.decisions import CONFOUNDERS, decision_points
from ketastats.decisions.estimators import (
    ESTIMATORS,
    NotEstimable,
    analysis_set,
    check_positivity,
    design_matrix,
    estimate,
    fit_propensity,
    stabilized_weights,
)
from ketastats.prepare import prepare_sessions
from ketastats.simulate import generator, simulate_cohort
from ketastats.simulate.decisions import DECISION_COLUMNS, next_rating, observed_rating
from ketastats.simulate.params import resolve_params
from ketastats.validate import coerce_sessions


def _sim(scenario: str, n: int, seed: int, overrides: dict | None = None) -> tuple[dict, dict]:
    p = resolve_params(scenario, overrides)
    children = np.random.SeedSequence(seed).spawn(len(generator._STREAMS))
    rng = {k: np.random.Generator(np.random.PCG64(s)) for k, s in zip(generator._STREAMS, children, strict=True)}
    return generator._simulate(n, p, rng), p


# ---------------------------------------------------------------- generator truth


@pytest.mark.parametrize(
    ("scenario", "overrides"),
    [
        ("decisions", None),
        ("sickness", None),
        ("mediation", None),
        ("attenuation", {"schedule": {"escalation_efficacy_multiplier": 1.4, "escalation_prob": 0.9}}),
        ("decisions", {"effects": {"efficacy_multiplier_when_ill": 0.6, "il6_to_madrs_per_log": 1.0}}),
    ],
)
def test_counterfactual_next_rating_reproduces_the_simulated_one_under_the_decisions_taken(scenario, overrides):
    # next_rating re-derives one visit and the next outside the generator's loop: under the
    # decisions actually taken it must give the simulated ratings exactly, or the truth is wrong
    sim, p = _sim(scenario, 1500, 3, overrides)
    for v in range(1, sim["n_inf"]):
        got = next_rating(sim, p, v, sim["postponed"][:, v], sim["reduced"][:, v])
        want = observed_rating(
            sim["core"][:, v + 1], sim["direct"][:, v + 1] + sim["carry"][:, v + 1] + sim["mediated"][:, v + 1]
        )
        assert np.array_equal(got, want), v
    # and the other decision does change it where the patient was ill on the planned day
    v = 2
    ill = sim["ep_plan"][:, v] >= 0
    taken = next_rating(sim, p, v, sim["postponed"][:, v], sim["reduced"][:, v])
    other = next_rating(sim, p, v, ~sim["postponed"][:, v], sim["reduced"][:, v])
    assert ill.sum() > 50 and np.mean(other[ill] != taken[ill]) > 0.5


@pytest.mark.parametrize(
    ("scenario", "overrides"),
    [
        ("decisions", None),
        ("sickness", None),
        ("attenuation", {"schedule": {"escalation_efficacy_multiplier": 1.4, "escalation_prob": 0.9}}),
    ],
)
def test_the_forced_course_agrees_with_the_simulation_and_with_next_rating(scenario, overrides):
    # the end-of-course truth re-runs the generator's own per-visit pass with one visit's decisions
    # forced: forcing the decisions taken gives the simulated course exactly, and forcing others
    # gives, at the next rating, what the independent next_rating computes
    p = resolve_params(scenario, overrides)
    sim = generator._simulate(1200, p, generator._streams(3))
    n = sim["n"]
    for v in range(1, sim["n_inf"]):
        same = generator._simulate(n, p, generator._streams(3), force=(v, sim["postponed"][:, v], sim["reduced"][:, v]))
        for key in ("core", "direct", "carry", "mediated", "day", "postponed", "reduced"):
            assert np.array_equal(same[key], sim[key]), (v, key)
        rng = np.random.default_rng(v)
        for post, red in [(np.ones(n, bool), None), (np.zeros(n, bool), None), (np.zeros(n, bool), np.ones(n, bool)),
                          (rng.random(n) < 0.5, rng.random(n) < 0.5)]:
            forced = generator._simulate(n, p, generator._streams(3), force=(v, post, red))
            want = next_rating(sim, p, v, post, forced["reduced"][:, v])
            got = observed_rating(forced["core"][:, v + 1], forced["direct"][:, v + 1] + forced["carry"][:, v + 1]
                                  + forced["mediated"][:, v + 1])
            assert np.array_equal(got, want), v


def test_end_of_course_truth_is_the_next_rating_truth_at_the_last_infusion():
    c = simulate_cohort(1500, seed=4, scenario="decisions")
    truth = c.truth["effects"]["decisions"]
    end = truth["end_of_course"]
    assert end["postpone"]["n_points"] == truth["postpone"]["n_points"]
    assert end["reduced_dose"]["n_points"] == truth["reduced_dose"]["n_points"]
    last = c.params["schedule"]["planned_infusions"]  # its next rating is the end of the course
    rows = pd.DataFrame(truth["points"])
    at_last = rows[rows["session"] == last]
    assert len(at_last) > 30
    assert (at_last["postpone_effect_end"] == at_last["postpone_effect"]).all()
    given = at_last[at_last["reduced_dose_effect"].notna()]
    assert (given["reduced_dose_effect_end"] == given["reduced_dose_effect"]).all()
    assert end["postpone"]["value"] == pytest.approx(rows["postpone_effect_end"].mean(), abs=1e-4)
    assert end["reduced_dose"]["value"] == pytest.approx(rows["reduced_dose_effect_end"].dropna().mean(), abs=1e-4)
    # earlier points: the next-rating shifts have faded by the end (a reduced dose shifts one rating),
    # what is left is the later day's course
    early = rows[rows["session"] < last]
    assert abs(early["reduced_dose_effect_end"].dropna().mean()) < 0.25 * abs(truth["reduced_dose"]["value"])
    assert 0 < end["reduced_dose"]["value"] < truth["reduced_dose"]["value"]
    assert truth["postpone"]["value"] < end["postpone"]["value"] < 0


def test_decisions_scenario_records_its_truth_and_the_planned_illness():
    c = simulate_cohort(1500, seed=4, scenario="decisions")
    truth = c.truth["effects"]["decisions"]
    assert truth["postpone_shift_next"] == -1.0 and truth["reduced_dose_shift_next"] == 2.0
    # a reduced dose only shifts the next rating (clipping at 0 makes it a little less than 2)
    assert 1.9 < truth["reduced_dose"]["value"] <= 2.0
    # postponing also lets the illness pass before the next rating: more benefit than the shift
    assert truth["postpone"]["value"] < -1.5
    assert truth["postpone"]["n_points"] == len(truth["points"]) > 300
    s = c.sessions
    assert tuple(s.columns[-len(DECISION_COLUMNS):]) == DECISION_COLUMNS
    post = s["postponed"] == 1
    assert post.sum() > 50
    assert (s.loc[post, "planned_ill"] == 1).all() and s.loc[~post, "planned_ill"].isna().all()
    assert s.loc[post, "planned_illness_severity"].notna().all()
    # the illness on the planned day is what the decision saw; on the later day it has often passed
    assert (s.loc[post, "ill"] == 0).mean() > 0.3
    # reduced doses are one-off: 0.6 x the usual dose, back to the usual dose at the next infusion
    red = [r for r in truth["points"] if r["reduced_dose"]]
    assert len(red) > 50
    assert sorted(s["dose_mg_kg"].dropna().round(2).unique()) == [0.3, 0.45, 0.5, 0.75]


@pytest.mark.parametrize("scenario", ["sickness", "null", "mnar"])
def test_every_scenario_records_the_planned_illness_and_nothing_else_moves(scenario):
    # the planned_* columns are records of what happened on the planned day; writing them (and the
    # decision truth) leaves every other column and truth value of the scenario as it was
    c = simulate_cohort(300, seed=4, scenario=scenario)
    off = simulate_cohort(300, seed=4, scenario=scenario, overrides={"decisions": {"record_planned_illness": False}})
    assert c.params["decisions"]["policy"] == "rule" and c.params["decisions"]["record_planned_illness"]
    assert tuple(c.sessions.columns) == tuple(off.sessions.columns) + DECISION_COLUMNS
    pd.testing.assert_frame_equal(c.sessions[list(off.sessions.columns)], off.sessions)
    truth = dict(c.truth, effects=dict(c.truth["effects"]))
    decisions = truth["effects"].pop("decisions")
    assert "decisions" not in off.truth["effects"]
    assert truth["params"]["decisions"].pop("record_planned_illness") is True
    assert off.truth["params"]["decisions"].pop("record_planned_illness") is False
    assert truth == off.truth
    # the rule policy never lowers a dose on purpose: no dose effect; postponing has one (the later day)
    assert decisions["policy"] == "rule" and decisions["reduced_dose"]["value"] == 0.0
    assert decisions["postpone"]["n_points"] > 20 and decisions["postpone"]["value"] != 0.0
    post = c.sessions["postponed"] == 1
    assert c.sessions.loc[~post, list(DECISION_COLUMNS)].isna().all().all()
    assert c.sessions.loc[post, "planned_ill"].notna().all()


def test_the_decision_stream_is_spawned_last():
    # the other streams (and so every existing scenario's output) do not move
    assert generator._STREAMS[-1] == "decisions"
    a = np.random.SeedSequence(5).spawn(len(generator._STREAMS) - 1)
    b = np.random.SeedSequence(5).spawn(len(generator._STREAMS))
    assert [x.generate_state(2).tolist() for x in a] == [x.generate_state(2).tolist() for x in b[:-1]]


# ---------------------------------------------------------------- decision points


def _points(n=2000, seed=5, scenario="decisions"):
    c = simulate_cohort(n, seed=seed, scenario=scenario)
    data = prepare_sessions(coerce_sessions(c.sessions))
    points, notes = decision_points(data)
    return c, data, points, notes


@pytest.fixture(scope="module")
def decisions_cohort():
    return _points()


def test_decision_points_are_the_ill_infusions_with_the_decision_day_confounders(decisions_cohort):
    c, data, points, notes = decisions_cohort
    truth = c.truth["effects"]["decisions"]
    # the same points as the generator's: sessions 2 .. 6 ill on the planned day
    want = {(r["patient_id"], r["session"]) for r in truth["points"]}
    assert set(zip(points["patient_id"], points["session"], strict=True)) == want
    assert {(r["patient_id"], r["session"]) for r in truth["points"] if r["postponed"]} == set(
        zip(points.loc[points.postpone == 1, "patient_id"], points.loc[points.postpone == 1, "session"], strict=True)
    )
    got_reduced = points.loc[points.reduced_dose == 1, ["patient_id", "session"]].itertuples(index=False)
    assert {tuple(r) for r in got_reduced} == {
        (r["patient_id"], r["session"]) for r in truth["points"] if r["reduced_dose"]
    }
    assert points["session"].between(2, 6).all()
    assert notes["planned_last"] == 7 and "baseline_log_il6" in notes["unavailable"]
    # one postponed point by hand: confounders from the planned day, outcome from the next session
    row = points[points.postpone == 1].iloc[0]
    s = data[(data.patient_id == row.patient_id)].set_index("session")
    here = s.loc[row.session]
    assert row.severity == here["planned_illness_severity"]
    assert row.days_since_onset == here["planned_days_since_onset"]
    assert row.days_since_previous == here["days_since_prev"] - here["delay_days"]
    assert row.previous_score == s.loc[row.session - 1, "madrs"]
    assert row.y_next == s.loc[row.session + 1, "madrs"]
    assert row.y_end == s.loc[7, "madrs"]
    assert np.isnan(row.reduced_dose)


def test_a_cohort_without_planned_illness_keeps_only_given_infusions_as_points():
    c = simulate_cohort(600, seed=6, scenario="sickness", overrides={"decisions": {"record_planned_illness": False}})
    data = prepare_sessions(coerce_sessions(c.sessions))
    points, _ = decision_points(data)
    # postponed infusions cannot be eligible: their illness on the planned day is unknown
    assert (points["postpone"] == 0).all() and len(points) > 20
    from ketastats.decisions.points import missing_columns

    assert missing_columns(data, "postpone") == ["planned_ill", "planned_illness_severity"]
    assert missing_columns(data, "reduced_dose") == []
    assert missing_columns(data.drop(columns=["dose_mg_kg", "postponed"]), "reduced_dose") == ["dose_mg_kg"]


# ---------------------------------------------------------------- estimators


def _analyse(points, notes, decision, outcome="y_next", binary=False, **kw):
    terms = [t for t in CONFOUNDERS if t not in notes["unavailable"]]
    a, counts = analysis_set(points, decision, outcome, terms)
    return {
        e: estimate(e, a, decision=decision, outcome=outcome, binary=binary, propensity_terms=terms,
                    outcome_terms=terms, **kw)
        for e in ESTIMATORS
    }, counts


@pytest.mark.parametrize("decision", ["postpone", "reduced_dose"])
def test_naive_contrast_is_biased_where_ipw_gformula_and_aipw_cover_the_truth(decisions_cohort, decision):
    c, _, points, notes = decisions_cohort
    truth = c.truth["effects"]["decisions"][decision]["value"]
    fits, counts = _analyse(points, notes, decision)
    assert counts["analysed"] > 400
    naive = fits["naive"]
    # sicker patients with worse previous ratings are postponed / dosed down more: the naive
    # contrast makes the decision look worse than it is, far beyond its CI
    assert not naive.ci_low <= truth <= naive.ci_high
    assert naive.estimate - truth > 2.0
    for e in ("ipw", "gformula", "aipw"):
        assert fits[e].ci_low <= truth <= fits[e].ci_high, (e, fits[e].estimate, truth)
        assert 0.2 < fits[e].se < 1.5


def test_gformula_ipw_and_aipw_equal_standardization_by_hand_on_a_saturated_example():
    # two binary confounders (4 strata), saturated models: every estimator is the standardized
    # difference sum_l P(L = l) (mean Y | A=1, l - mean Y | A=0, l)
    rng = np.random.default_rng(1)
    n = 400
    sev = rng.choice(["mild", "moderate"], n)
    med = rng.integers(0, 2, n).astype(float)
    cell = (sev == "moderate").astype(int) * 2 + med.astype(int)
    a = (rng.random(n) < np.array([0.2, 0.4, 0.6, 0.8])[cell]).astype(float)
    y = 10 + 3 * cell + 2 * a + a * cell + rng.normal(0, 2, n)
    pts = pd.DataFrame({"patient_id": [f"P{i // 2}" for i in range(n)], "severity": sev,
                        "illness_medication": med, "postpone": a, "y_next": y})
    df = pd.DataFrame({"cell": cell, "a": a, "y": y})
    means = df.groupby(["cell", "a"])["y"].mean().unstack()
    share = df["cell"].value_counts(normalize=True).sort_index()
    by_hand = float(((means[1.0] - means[0.0]) * share).sum())
    # the saturated propensity and outcome model: severity x medication as one 4-level factor
    pts["illness_type"] = np.array(["respiratory", "influenza_like", "gastrointestinal", "other_febrile"])[cell]
    terms = ["illness_type"]
    got = {e: estimate(e, pts, decision="postpone", outcome="y_next", binary=False, propensity_terms=terms,
                       outcome_terms=terms, truncate=None).estimate for e in ("ipw", "gformula", "aipw")}
    assert got["gformula"] == pytest.approx(by_hand, abs=1e-10)
    assert got["ipw"] == pytest.approx(by_hand, abs=1e-8)
    assert got["aipw"] == pytest.approx(by_hand, abs=1e-8)
    # and the naive contrast is the crude difference of means
    naive = estimate("naive", pts, decision="postpone", outcome="y_next", binary=False, propensity_terms=terms,
                     outcome_terms=terms)
    assert naive.estimate == pytest.approx(y[a == 1].mean() - y[a == 0].mean(), abs=1e-10)


def test_gformula_delta_method_se_equals_the_clustered_difference_of_means_without_confounders():
    # with no confounders the g-formula is the difference of means, and its stacked
    # estimating-equation SE must equal the cluster-robust SE of the OLS contrast
    rng = np.random.default_rng(2)
    n = 300
    pts = pd.DataFrame({
        "patient_id": [f"P{i // 3}" for i in range(n)],
        "postpone": np.repeat((rng.random(n // 3) < 0.4).astype(float), 3),
    })
    u = np.repeat(rng.normal(0, 2, n // 3), 3)
    pts["y_next"] = 5 + pts["postpone"] * 1.5 + u + rng.normal(0, 1, n)
    g = estimate("gformula", pts, decision="postpone", outcome="y_next", binary=False, propensity_terms=[],
                 outcome_terms=[])
    nv = estimate("naive", pts, decision="postpone", outcome="y_next", binary=False, propensity_terms=[],
                  outcome_terms=[])
    assert g.estimate == pytest.approx(nv.estimate, abs=1e-12)
    assert g.se == pytest.approx(nv.se, rel=1e-10)
    # the clustered SE is larger than one that ignores the patients (3 points each, one decision
    # and one shared u per patient)
    iid = np.sqrt(pts.groupby("postpone")["y_next"].var() / pts.groupby("postpone").size()).pow(2).sum() ** 0.5
    assert g.se > 1.5 * iid


def test_binary_outcome_gives_a_risk_difference(decisions_cohort):
    c, _, points, notes = decisions_cohort
    fits, _ = _analyse(points, notes, "reduced_dose", outcome="response_next", binary=True)
    for e, f in fits.items():
        assert -1 < f.ci_low < f.estimate < f.ci_high < 1, e
    # a 2-point worse rating costs some responses: the adjusted estimates are below zero
    assert fits["aipw"].estimate < 0 and fits["gformula"].estimate < 0


def test_stabilized_weights_are_truncated_at_percentiles():
    rng = np.random.default_rng(3)
    e = np.clip(rng.beta(2, 2, 1000), 0.001, 0.999)
    a = (rng.random(1000) < e).astype(float)
    w, info = stabilized_weights(a, e, None)
    assert np.mean(w[a == 1] * e[a == 1]) == pytest.approx(a.mean())
    wt, info = stabilized_weights(a, e, (0.01, 0.99))
    lo, hi = np.quantile(w, [0.01, 0.99])
    assert wt.min() == pytest.approx(lo) and wt.max() == pytest.approx(hi)
    assert info["n_truncated"] == int(np.sum((w < lo) | (w > hi))) >= 18


def test_positivity_failures_are_refused_with_a_reason():
    a = np.array([1.0] * 5 + [0.0] * 100)
    with pytest.raises(NotEstimable, match="too few to compare: 5 of the ill infusions analysed were postponed; "
                       "comparing the two choices needs at least 20 of each .min_per_arm., so no effect") as err:
        check_positivity(a, None, min_per_arm=20, propensity_range=(0.05, 0.95), max_share_outside=0.5,
                         labels={1: "postponed", 0: "given"})
    assert err.value.counts == {"n": 5}  # open to the report's suppression
    with pytest.raises(NotEstimable, match="3 of the ill infusions analysed were given at the usual dose"):
        check_positivity(np.array([1.0] * 100 + [0.0] * 3), None, min_per_arm=20, propensity_range=(0.05, 0.95),
                         max_share_outside=0.5, labels={1: "reduced dose", 0: "usual dose"})
    with pytest.raises(NotEstimable, match="none of the ill infusions analysed were given at a reduced dose"):
        check_positivity(np.zeros(30), None, min_per_arm=20, propensity_range=(0.05, 0.95),
                         max_share_outside=0.5, labels={1: "reduced dose", 0: "usual dose"})
    a = np.array([1.0] * 50 + [0.0] * 50)
    e = np.r_[np.full(40, 0.99), np.full(10, 0.5), np.full(40, 0.01), np.full(10, 0.5)]
    with pytest.raises(NotEstimable, match="for 80% of the ill infusions analysed the estimated chance of being "
                       "postponed .the propensity. is outside .0.05, 0.95."):
        check_positivity(a, e, min_per_arm=20, propensity_range=(0.05, 0.95), max_share_outside=0.5,
                         labels={1: "postponed", 0: "given"})
    check_positivity(a, np.full(100, 0.5), min_per_arm=20, propensity_range=(0.05, 0.95),
                     max_share_outside=0.5, labels={1: "postponed", 0: "given"})


def test_design_matrix_drops_aliased_columns():
    pts = pd.DataFrame({"illness_type": ["respiratory", "influenza_like", "other_febrile", "respiratory"],
                        "febrile": [0.0, 1.0, 1.0, 0.0], "severity": ["mild"] * 4, "progress": [1.0, 2, 3, 4]})
    X = design_matrix(pts, ["illness_type", "febrile", "severity", "progress"])
    # febrile = influenza_like + other_febrile; one severity level only: both dropped
    assert list(X.columns) == ["const", "illness_type[influenza_like]", "illness_type[other_febrile]", "progress"]
    ps = fit_propensity(np.array([0.0, 1, 1, 0]), X[["const", "progress"]])
    assert ps.e.shape == (4,)


def test_recovery_replicate_scores_every_variant_against_the_truth():
    from ketastats.decisions.recovery import VARIANTS, run_decision_replicate, summarize
    from ketastats.models import resolve_spec

    spec = resolve_spec("decision", {"kind": "decision"})
    rows = run_decision_replicate("decisions", 1500, 3, 0, spec) + run_decision_replicate("decisions", 1500, 3, 1, spec)
    table = pd.DataFrame(rows)
    assert set(table["variant"]) == set(VARIANTS) and set(table["decision"]) == {"postpone", "reduced_dose"}
    # the outcomes with a truth: the next rating and the end of the course (response has none)
    assert set(table["outcome"]) == {"next", "end"}
    assert (table.groupby(["replicate", "decision", "outcome"])["truth"].nunique() == 1).all()
    truth = simulate_cohort(1500, seed=table["seed"].iloc[0], scenario="decisions").truth["effects"]["decisions"]
    first = table[table["replicate"] == 0].set_index(["decision", "outcome", "variant"])
    assert first.loc[("postpone", "end", "aipw"), "truth"] == truth["end_of_course"]["postpone"]["value"]
    assert first.loc[("reduced_dose", "next", "aipw"), "truth"] == truth["reduced_dose"]["value"]
    assert (table["skipped"] == "").all()
    s = summarize(table).set_index(["decision", "outcome", "variant"])
    assert s.loc[("postpone", "next", "naive"), "bias"] > 2  # confounded
    assert abs(s.loc[("postpone", "next", "aipw_wrong_propensity"), "bias"]) < 1
    assert list(s["replicates"].unique()) == [2] and (s["replicates_skipped"] == 0).all()
    # a cohort too small for the decision: counted as skipped with the model's reason, never estimated
    small = pd.DataFrame(run_decision_replicate("decisions", 60, 3, 0, spec, variants=["aipw"]))
    assert small["estimate"].isna().all() and small["skipped"].str.contains("too few to compare").all()
    s = summarize(small).set_index(["decision", "outcome", "variant"])
    assert (s["replicates_skipped"] == 1).all() and (s["replicates_with_estimate"] == 0).all()
    with pytest.raises(Exception, match="no decision truth"):
        run_decision_replicate("sickness", 100, 3, 0, spec, overrides={"decisions": {"record_planned_illness": False}})


def test_a_confounder_recorded_for_given_infusions_only_is_left_out_not_the_postponed_points():
    c = simulate_cohort(800, seed=9, scenario="decisions")
    data = prepare_sessions(coerce_sessions(c.sessions)).drop(columns=["planned_illness_medication"])
    points, notes = decision_points(data)
    assert "illness_medication" in notes["unavailable"]
    assert points.loc[points.postpone == 0, "illness_medication"].notna().all()
    _, full = decision_points(prepare_sessions(coerce_sessions(c.sessions)))
    assert "illness_medication" not in full["unavailable"]


def test_aipw_with_a_propensity_of_exactly_one_at_a_postponed_point(monkeypatch):
    # a near-separated logistic fit can return e = 1.0 exactly at a postponed point (it happened in
    # a 300-patient cohort); that point's control term is 0 x (Y - m0) / 0 and must count as zero
    from ketastats.decisions import estimators as est_mod

    rng = np.random.default_rng(2)
    n = 120
    sure = np.arange(n) < 30  # always postponed
    pts = pd.DataFrame({
        "postpone": np.where(sure, 1.0, (rng.random(n) < 0.4).astype(float)),
        "previous_score": rng.normal(25, 5, n),
        "patient_id": [f"p{i // 3}" for i in range(n)],
    })
    pts["y_next"] = 20 - 2 * pts["postpone"] + 0.3 * (pts["previous_score"] - 25) + rng.normal(0, 2, n)
    real = est_mod.fit_propensity

    def saturated(A, X):
        ps = real(A, X)
        ps.e = np.where(sure, 1.0, ps.e)
        return ps

    monkeypatch.setattr(est_mod, "fit_propensity", saturated)
    kw = dict(decision="postpone", outcome="y_next", binary=False, propensity_terms=["previous_score"],
              outcome_terms=["previous_score"])
    e = est_mod.estimate("aipw", pts, **kw)
    A, Y = pts["postpone"].to_numpy(), pts["y_next"].to_numpy()
    om = est_mod.fit_outcome_models(Y, A, est_mod.design_matrix(pts, ["previous_score"]), False)
    ps = saturated(A, est_mod.design_matrix(pts, ["previous_score"]))
    by_hand = om.m1 - om.m0
    t = A == 1
    by_hand[t] += (Y - om.m1)[t] / ps.e[t]
    by_hand[~t] -= (Y - om.m0)[~t] / (1 - ps.e[~t])
    assert np.isfinite(e.estimate) and np.isfinite(e.se) and e.estimate == pytest.approx(by_hand.mean(), abs=1e-12)
    # a point given as planned that the propensity says is always postponed: an infinite weight, refused
    pts.loc[0, "postpone"] = 0.0
    for estimator in ("aipw", "ipw"):
        with pytest.raises(NotEstimable, match="for 1 ill infusion.s. analysed the confounders predict the other"):
            est_mod.estimate(estimator, pts, **kw)


# ---------------------------------------------------------------- bootstrap SE


@pytest.fixture(scope="module")
def small_cohort():
    c = simulate_cohort(300, seed=8, scenario="decisions")
    points, notes = decision_points(prepare_sessions(coerce_sessions(c.sessions)))
    terms = [t for t in CONFOUNDERS if t not in notes["unavailable"]]
    return points, terms


def _by_hand_bootstrap(estimator, a, terms, outcome, binary, resamples, seed):
    """The resampling loop written out: patients drawn with replacement, estimate() (statsmodels) refitted."""
    rng = np.random.default_rng(seed)
    patients = pd.unique(a["patient_id"].astype(str))
    rows = {p: g for p, g in a.groupby(a["patient_id"].astype(str), sort=False)}
    ests = []
    for _ in range(resamples):
        pick = rng.integers(0, len(patients), len(patients))
        sample = pd.concat([rows[patients[i]] for i in pick], ignore_index=True)
        ests.append(estimate(estimator, sample, decision="postpone", outcome=outcome, binary=binary,
                             propensity_terms=terms, outcome_terms=terms).estimate)
    ests = np.sort(ests)
    # the rescaled interquartile range, quartiles by linear interpolation written out
    def quantile(q):
        h = (len(ests) - 1) * q
        lo = int(np.floor(h))
        return ests[lo] + (h - lo) * (ests[min(lo + 1, len(ests) - 1)] - ests[lo])

    return (quantile(0.75) - quantile(0.25)) / 1.3489795003921634, float(np.std(ests, ddof=1))


@pytest.mark.parametrize(("estimator", "outcome", "binary"), [
    ("aipw", "y_next", False), ("ipw", "y_next", False), ("gformula", "y_next", False),
    ("aipw", "response_next", True),
])
def test_bootstrap_se_equals_a_hand_written_resampling_loop_with_the_same_seed(small_cohort, estimator, outcome,
                                                                               binary):
    points, terms = small_cohort
    a, _ = analysis_set(points, "postpone", outcome, terms)
    kw = dict(decision="postpone", outcome=outcome, binary=binary, propensity_terms=terms, outcome_terms=terms)
    boot = estimate(estimator, a, se="bootstrap", bootstrap=25, seed=4, **kw)
    plain = estimate(estimator, a, **kw)
    want, want_sd = _by_hand_bootstrap(estimator, a, terms, outcome, binary, resamples=25, seed=4)
    assert boot.se == pytest.approx(want, rel=1e-6)
    info = boot.details["bootstrap"]
    assert info["sd"] == pytest.approx(want_sd, rel=1e-6)
    assert {k: info[k] for k in ("resamples", "seed", "failed")} == {"resamples": 25, "seed": 4, "failed": 0}
    # the point estimate is untouched; the analytic SE is kept; the interval uses the bootstrap SE
    assert boot.estimate == plain.estimate and boot.details["analytic_se"] == plain.se
    assert boot.ci_high - boot.ci_low == pytest.approx(2 * 1.959963984540054 * boot.se)
    assert "cluster bootstrap (25 resamples, seed 4)" in boot.se_method


def test_bootstrap_se_is_deterministic_for_a_seed_and_moves_with_it(small_cohort):
    points, terms = small_cohort
    a, _ = analysis_set(points, "postpone", "y_next", terms)
    kw = dict(decision="postpone", outcome="y_next", binary=False, propensity_terms=terms, outcome_terms=terms,
              se="bootstrap", bootstrap=30)
    first, again, other = (estimate("aipw", a, seed=s, **kw) for s in (9, 9, 10))
    assert first.se.hex() == again.se.hex() and first.ci_low.hex() == again.ci_low.hex()
    assert first.se != other.se
    # the naive contrast keeps its sandwich under se: bootstrap
    naive = estimate("naive", a, **kw)
    assert "bootstrap" not in naive.se_method and "analytic_se" not in naive.details
    with pytest.raises(Exception, match="unknown se 'jackknife'"):
        estimate("aipw", a, **{**kw, "se": "jackknife"})
