"""The report's decision section (issue 17): answers, diagnostics, by-illness rows, suppression."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest

from ketastats.models import resolve_spec, run_model
from ketastats.models.specs import resolve_estimands
from ketastats.pipeline import provenance
from ketastats.prepare import prepare_sessions
from ketastats.report import build_results
from ketastats.report.decision_figures import by_illness_figure, love_figure, overlap_figure
from ketastats.report.decisions import answer_sentence
from ketastats.simulate import simulate_cohort
from ketastats.simulate.decisions import DECISION_COLUMNS
from ketastats.validate import coerce_sessions

SPECS = {
    "primary": {"kind": "lmm", "role": "primary"},
    "illness_by": {"kind": "illness_by"},
    "decision_aipw": {"kind": "decision", "estimator": "aipw"},
    "decision_ipw": {"kind": "decision", "estimator": "ipw"},
    "decision_gformula": {"kind": "decision", "estimator": "gformula"},
}


def _results(scenario: str, n: int, seed: int = 5, drop: tuple[str, ...] = ()):
    c = simulate_cohort(n, seed=seed, scenario=scenario)
    data = prepare_sessions(coerce_sessions(c.sessions.drop(columns=list(drop))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models = {k: run_model(k, resolve_spec(k, s), data, resolve_estimands(None)) for k, s in SPECS.items()}
    received = {"records": len(c.sessions), "patients": n, "sha256": "0" * 64, "file": "sessions.csv"}
    prov = provenance({"cohorts": {}}, {"sha256": "0" * 64, "file": "sessions.csv"}, Path("."))
    res = build_results("t", data, received, models, prov, {"small_cell_threshold": 10, "confidence_level": 0.95})
    return c, models, res


@pytest.fixture(scope="module")
def decisions_results():
    return _results("decisions", 1500)


def test_the_section_answers_each_decision_against_the_mcid(decisions_results):
    c, models, res = decisions_results
    json.dumps(res, allow_nan=False)
    dx = res["decisions"]
    assert dx["available"] and dx["headline_model"] == "decision_aipw"
    for decision in ("postpone", "reduced_dose"):
        e = dx["decisions"][decision]
        assert e["status"] == "ok"
        eff = models["decision_aipw"]["decisions"][decision]["outcomes"]["next"]["effect"]
        # the sentence quotes the AIPW estimate and CI, rounded, and reads them against the MCID
        assert f"{abs(eff['estimate']):.1f} points" in e["answer"]
        assert f"{eff['ci_low']:.1f}".replace("-", "−") in e["answer"] and "2-point MCID" in e["answer"]
        assert ("lowered" in e["answer"]) == (eff["estimate"] < 0)
        # every estimator and the naive contrast, per outcome, in results.json
        got = {(r["outcome"], r["estimator"]) for r in e["effects"]}
        assert {("next", x) for x in ("aipw", "ipw", "gformula", "naive")} <= got
        assert e["diagnostics"]["effective_sample_size"]["treated"] > 0
    assert dx["estimand"]["postpone"]["framework"] == "ICH E9(R1)"
    assert "No unmeasured confounding" in dx["assumptions"]["no_unmeasured_confounding"]
    assert [r["element"] for r in dx["target_trial"]["postpone"]][0] == "Eligibility"


def test_by_illness_rows_hold_the_primary_model_by_kind_and_the_decisions_by_severity(decisions_results):
    _, models, res = decisions_results
    rows = res["decisions"]["by_illness"]
    panels = list(dict.fromkeys(r["panel"] for r in rows))
    assert panels[:3] == [f"Illness effect on the MADRS (primary model) by {b}" for b in ("type", "severity", "fever")]
    assert any(p.startswith("Postponed versus given as planned") for p in panels)
    sev = {r["level"]: r for r in rows if r["group"] == "illness_severity"}
    # the simulated sickness shift grows with severity (1.5, 3.5, 6 points)
    assert sev["mild"]["estimate"] < sev["moderate"]["estimate"] < sev["severe"]["estimate"]
    assert all(r["ci_low"] <= r["estimate"] <= r["ci_high"] for r in rows if r["status"] == "ok")
    test = models["illness_by"]["by_illness"]["illness_severity"]["global_test"]
    assert test["df"] == 2 and test["p_value"] < 1e-6


def test_by_severity_strata_with_a_small_arm_are_held_back_by_the_report(decisions_results):
    c, models, res = decisions_results
    raw = {d: {r["severity"]: r for r in models["decision_aipw"]["decisions"][d]["by_severity"]}
           for d in ("postpone", "reduced_dose")}
    # at the default threshold (10) every estimated stratum is shown, with its CI, in the by-illness rows
    rows = {(r["panel"], r["level"]): r for r in res["decisions"]["by_illness"]}
    panel = {"postpone": "Postponed versus given as planned (by severity)",
             "reduced_dose": "Reduced dose versus usual dose (by severity)"}
    for d, strata in raw.items():
        for level, r in strata.items():
            row = rows[(panel[d], level)]
            assert row["status"] == r["status"]
            if r["status"] == "ok":
                assert row["ci_low"] < row["estimate"] == r["effect"]["estimate"] < row["ci_high"]
    # a threshold above min_per_stratum: a stratum whose smaller arm is at or below it loses its effect
    threshold = 40
    data = prepare_sessions(coerce_sessions(c.sessions))
    received = {"records": len(c.sessions), "patients": 1500, "sha256": "0" * 64, "file": "sessions.csv"}
    prov = provenance({"cohorts": {}}, {"sha256": "0" * 64, "file": "sessions.csv"}, Path("."))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        strict = build_results("t", data, received, models, prov,
                               {"small_cell_threshold": threshold, "confidence_level": 0.95})
    small = {(d, lv) for d, strata in raw.items() for lv, r in strata.items()
             if r["status"] == "ok" and min(r["n_treated"], r["n_control"]) <= threshold}
    big = {(d, lv) for d, strata in raw.items() for lv, r in strata.items()
           if r["status"] == "ok" and min(r["n_treated"], r["n_control"]) > threshold}
    assert small and big  # the cohort has both
    for d, strata in strata_of(strict).items():
        for level, r in strata.items():
            if (d, level) in small:
                assert r["status"] == "suppressed" and "effect" not in r and "small-cell rule" in r["reason"]
            elif (d, level) in big:
                assert r["status"] == "ok" and r["effect"]["estimate"] == raw[d][level]["effect"]["estimate"]
    text = json.dumps(strict["decisions"]["by_illness"])
    for d, level in small:
        assert str(raw[d][level]["effect"]["estimate"]) not in text
    labels = [t.get_text() for t in by_illness_figure(strict["decisions"], mcid=2.0).axes[0].get_yticklabels()]
    assert sum("(not shown: small cell)" in t for t in labels) == len(small)


def strata_of(res):
    return {d: {r["severity"]: r for r in e["by_severity"]} for d, e in res["decisions"]["decisions"].items()}


def test_no_raw_balance_or_histogram_counts_in_the_release(decisions_results):
    _, models, res = decisions_results
    raw = models["decision_aipw"]["decisions"]["postpone"]["diagnostics"]
    assert raw["overlap"]["treated"]["counts"] and raw["balance"][0]["mean_treated"] is not None
    text = json.dumps(res["models"]["decision_aipw"])
    assert '"balance"' not in text and '"overlap"' not in text
    rel = res["decisions"]["decisions"]
    for decision, e in rel.items():
        for r in e["diagnostics"]["balance"]:
            assert "mean_treated" not in r
        # yes/no confounders with a small implied count are suppressed, never shown
        smds = {r["term"]: r["smd_after"] for r in e["diagnostics"]["balance"] if r["binary"]}
        assert "suppressed" in smds.values(), decision
        assert "counts" not in e["diagnostics"]["overlap"]


def test_a_cohort_without_the_columns_says_what_to_record_and_the_rest_runs():
    _, models, res = _results("sickness", 300, drop=DECISION_COLUMNS)
    dx = res["decisions"]
    assert dx["status"] == "skipped" and "planned_ill" in dx["reason"] and "record whether" in dx["reason"]
    assert res["models"]["primary"]["status"] == "ok"
    assert res["illness_effects"]


def test_too_few_postponements_are_said_in_a_clinicians_words():
    # a demo-sized clinic cohort: the planned_* columns are there, but few ill infusions were
    # postponed and none given at a reduced dose; the section says so instead of a number
    _, models, res = _results("sickness", 150)
    dx = res["decisions"]
    assert dx["status"] == "skipped" and dx["decisions"] == {}
    post, dose = dx["reason"].split("; reduced dose versus usual dose: ")
    m = re.fullmatch(r"postponed versus given as planned: too few to compare: (\d+) of the ill infusions analysed "
                     r"were postponed; comparing the two choices needs at least 20 of each \(min_per_arm\), so no "
                     r"effect is estimated", post)
    assert m and 10 < int(m.group(1)) < 20, post  # above the report's small-cell threshold: shown
    assert dose.startswith("too few to compare: none of the ill infusions analysed were given at a reduced dose")
    assert res["models"]["primary"]["status"] == "ok"


@pytest.mark.parametrize(
    ("est", "lo", "hi", "words"),
    [
        (-3.0, -4.5, -2.2, "a clinically important benefit"),
        (-2.0, -3.1, -0.9, "a benefit that may or may not reach"),
        (-0.8, -1.5, -0.1, "a benefit smaller than"),
        (0.2, -1.0, 1.4, "no clinically important difference"),
        (0.5, -1.0, 2.6, "inconclusive"),
        (3.0, 2.1, 3.9, "a clinically important harm"),
    ],
)
def test_answer_sentence_reads_the_ci_against_the_mcid(est, lo, hi, words):
    s = answer_sentence("postpone", {"estimate": est, "ci_low": lo, "ci_high": hi},
                        {"treated": "postponed", "control": "given as planned"}, 2.0, "MADRS", 0.95)
    assert words in s and "95% CI" in s


def test_the_figures_draw_from_the_released_section(decisions_results):
    _, _, res = decisions_results
    dx = res["decisions"]
    for fig in (overlap_figure(dx), love_figure(dx), by_illness_figure(dx, mcid=2.0)):
        assert len(fig.axes) >= 1
    assert len(overlap_figure(dx).axes) == 2
    # without a decision analysis the figures say why
    none = {"available": False}
    assert overlap_figure(none).axes[0].texts[0].get_text().startswith("No decision analysis")


def test_first_screen_says_why_no_decision_was_estimated_when_it_was_configured():
    """A cohort with the decision columns but too few points in an arm (a small sickness cohort): the
    answer says the analysis could not be estimated and why, not that it was not configured."""
    from ketastats.report.results import answer_sentences

    _, models, res = _results("sickness", 60)
    assert {models[k]["status"] for k in SPECS if k.startswith("decision")} == {"skipped"}
    said = [a for a in answer_sentences(res) if "patient arrives ill" in a["text"]]
    assert len(said) == 1 and said[0]["link"] == "#decisions"
    text = said[0]["text"]
    assert "could not be estimated from these data: " in text and "too few to compare" in text
    assert "not configured" not in text


def test_summary_names_models_skipped_for_one_reason_together():
    _, models, res = _results("sickness", 60)
    said = [s for s in res["summary"] if s.startswith("Not estimated: ")]
    assert len(said) == 1
    reason = models["decision_aipw"]["reason"]
    assert said[0].count("too few to compare") == reason.count("too few to compare")  # said once, not thrice
    for k in ("decision_aipw", "decision_ipw", "decision_gformula"):
        assert models[k]["label"] in said[0]


def test_no_empty_decision_figures_when_nothing_was_estimated(tmp_path):
    """Decision models that ran but were all skipped: the reason is shown, and no overlap or love plot
    with nothing in it; the by-illness figure (the primary model's rows) stays."""
    from ketastats.report.render import render_html

    c, models, res = _results("sickness", 60)
    data = prepare_sessions(coerce_sessions(c.sessions))
    res["provenance"].setdefault("command", "snakemake --cores 2")  # as the report rule records it
    html = render_html(res, data, tmp_path / "report.html", models=models).read_text()
    section = html[html.index('<section id="decisions">'):]
    section = section[: section.index("</section>")]
    assert "Not analysed in this cohort: " in section and "too few to compare" in section
    assert "love plot" not in section and "(overlap)" not in section
    assert section.count("<img ") == 1 and "Which illnesses matter" in section
