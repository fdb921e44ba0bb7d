"""results.json and report.html from a synthetic cohort with known truth."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import report_cohort as rc
from report_cohort import conceals

from ketastats.pipeline import step_fit
from ketastats.prepare import prepare_sessions
from ketastats.report import FIGURES, TABLES, build_results
from ketastats.report.suppression import is_small

SECTIONS = [
    "summary",
    "data-flow",
    "table1",
    "trajectories",
    "illness",
    "cytokines",
    "primary-model",
    "forest",
    "diagnostics",
    "other-models",
    "methods",
    "suppression",
    "provenance",
]


@pytest.fixture(scope="module")
def rep():
    return rc.rendered()


def counts_shown(res: dict):
    """Every count results.json holds, with where it is."""
    f = res["data_flow"]
    for k in (
        "records_received",
        "patients_received",
        "records_analysed",
        "patients_analysed",
        "patients_excluded",
    ):
        yield f"data_flow.{k}", f[k]
    for e in f["excluded"]:
        yield "data_flow.excluded", e["records"]
    for k, v in res["table1"]["n"].items():
        yield f"table1.n.{k}", v
    for row in res["table1"]["rows"]:
        for k, cell in row["cells"].items():
            yield f"table1.{row['variable']}.{row['level']}.{k}", cell.get("n")
            yield f"table1.{row['variable']}.missing.{k}", row["missing"][k]
    ill = res["illness"]
    for k in ("sessions", "ill_sessions", "patients", "ever_ill", "never_ill"):
        yield f"illness.{k}", ill[k]
    for t in ill["by_type"]:
        yield f"illness.type.{t['type']}", t["sessions"]
    for by in ("by_session", "by_day"):
        for row in res["trajectories"][by]:
            yield f"trajectories.{by}", row["n"]
    for c in res["cytokines"]:
        for k in ("measured", "detected", "below_lod"):
            yield f"cytokines.{c['marker']}.{k}", c[k]
    for name, m in res["models"].items():
        yield f"models.{name}.nobs", m["nobs"]
        yield f"models.{name}.ngroups", m["ngroups"]


def test_every_count_in_results_json_is_suppressed_when_small(rep):
    res = rep["results"]
    seen = list(counts_shown(res))
    assert len(seen) > 50
    for where, v in seen:
        assert not (isinstance(v, int) and is_small(v, 10)), (where, v)
    assert res["suppression"]["applied"]
    # the Suppression section names every place where cells were hidden
    html = rep["html"]
    section = html.split('id="suppression"')[1].split("</section>")[0]
    for s in res["suppression"]["summary"]:
        assert s["where"] in section


def test_data_flow_adds_up_and_matches_the_model(rep):
    res, b = rep["results"], rc.built()
    f = res["data_flow"]
    raw = pd.read_csv(b["root"] / "data/raw/synth/sessions.csv")
    assert f["records_received"] == len(raw) and f["patients_received"] == raw["patient_id"].nunique()
    shown = [e["records"] for e in f["excluded"]]
    assert all(isinstance(v, int) for v in shown)  # 80 patients, 4% missing: nothing small here
    assert f["records_received"] == sum(shown) + f["records_analysed"]
    primary = json.loads(b["models"]["primary"].read_text())
    assert f["records_analysed"] == primary["nobs"]
    reasons = {e["reason"]: e["records"] for e in f["excluded"]}
    if (primary.get("spec") or {}).get("sessions") == "post_baseline":  # the model's own selection
        assert reasons.pop("baseline rating (first session: a covariate, not an outcome)") == 80
        raw = raw[raw["session"] > 1]
    assert reasons == {"no outcome rating (madrs missing)": int(raw["madrs"].isna().sum())}


def test_primary_estimates_recover_the_simulated_truth(rep):
    res = rep["results"]
    coefs = {c["term"]: c for c in res["models"]["primary"]["coefficients"]}
    for term, truth in (("ill", rc.TRUTH["ill"]), ("session", rc.TRUTH["session"])):
        assert coefs[term]["ci_low"] < truth < coefs[term]["ci_high"], term
    eff = res["models"]["primary"]["illness_effect"]
    assert eff["term"] == "ill" and eff["estimate"] == coefs["ill"]["estimate"]
    assert [e["model"] for e in res["illness_effects"]] == ["primary", "ri_only"]


def test_summary_sentences_hold_the_numbers_and_are_in_the_report(rep):
    res, html = rep["results"], rep["html"]
    eff = res["models"]["primary"]["illness_effect"]
    text = " ".join(res["summary"])
    assert f"{abs(eff['estimate']):.2f} points higher" in text
    assert f"{eff['ci_low']:.2f} to {eff['ci_high']:.2f}" in text
    assert (
        f"{res['data_flow']['patients_analysed']} patients with {res['data_flow']['records_analysed']} rated"
        in text
    )
    for s in res["summary"]:
        assert s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("'", "&#39;") in html
    # no count from 1 to 10 in a sentence (the threshold itself is named, as a rule)
    for s in res["summary"]:
        for m in re.finditer(r"\b(\d+) (?:of \d+ )?(?:patients|sessions|session records|rated)", s):
            assert not is_small(int(m.group(1)), 10), s


def test_every_section_figure_and_table_is_present(rep):
    html, out = rep["html"], rep["dir"]
    for sid in SECTIONS:
        assert f'id="{sid}"' in html, sid
    for name in FIGURES:
        png, svg = out / "figures" / f"{name}.png", out / "figures" / f"{name}.svg"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and svg.read_text().lstrip().startswith("<?xml")
    for name in TABLES:
        assert (out / "tables" / f"{name}.csv").stat().st_size > 0
    # the decision analysis's figures are drawn only where it ran (this cohort has no decision data)
    decided = (rep["results"].get("decisions") or {}).get("available")
    shown = [n for n in FIGURES if decided or n not in ("decision_overlap", "decision_balance", "by_illness")]
    assert not decided and len(shown) == len(FIGURES) - 3
    assert html.count("<img ") == len(shown)
    for url in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert url.startswith(("data:", "#")), url
    t1 = pd.read_csv(out / "tables" / "table1.csv", dtype=str)
    assert t1.iloc[0]["Overall"] == str(rep["results"]["table1"]["n"]["overall"])


def test_methods_name_the_models_software_and_references(rep):
    res = rep["results"]
    text = " ".join(res["methods"]["paragraphs"])
    assert "madrs ~ session + ill" in text and "restricted maximum likelihood" in text
    assert f"statsmodels {res['provenance']['packages']['statsmodels']}" in text
    keys = {r["key"] for r in res["methods"]["references"]}
    assert {"bell2002", "pustejovsky2018", "montgomery1979", "cms2020", "austin2009"} <= keys
    for k in keys:
        assert f"[{k}" in text or f"; {k}]" in text


def test_outputs_are_reproducible_and_html_differs_only_in_run_date(rep, tmp_path):
    again = rc.run_report(
        rc.built(), tmp_path / "again", command="other command", run_date="2030-05-05 05:05 UTC"
    )
    a, b = rep["dir"], again["dir"]
    assert (a / "results.json").read_bytes() == (b / "results.json").read_bytes()
    assert "pytest" not in (a / "results.json").read_text()  # the command is in the HTML only
    for name in FIGURES:
        for ext in ("png", "svg"):
            assert (a / "figures" / f"{name}.{ext}").read_bytes() == (
                b / "figures" / f"{name}.{ext}"
            ).read_bytes(), name
    for name in TABLES:
        assert (a / "tables" / f"{name}.csv").read_bytes() == (b / "tables" / f"{name}.csv").read_bytes()
    norm = [
        h.replace("2026-01-01 00:00 UTC", "DATE").replace("2030-05-05 05:05 UTC", "DATE")
        for h in (rep["html"], again["html"])
    ]
    assert norm[0].replace("<code>pytest</code>", "<code>CMD</code>") == norm[1].replace(
        "<code>other command</code>", "<code>CMD</code>"
    )


def test_recovery_and_power_sections_appear_only_with_their_files(rep, tmp_path):
    assert 'id="recovery"' not in rep["html"] and rep["results"]["recovery"] is None
    out = tmp_path / "sim"
    (out / "recovery").mkdir(parents=True)
    (out / "power").mkdir()
    # the formats ketastats.recovery and ketastats.power write: one summary row; rows under "rows"
    summary = {
        "scenario": "sickness",
        "n_patients": 200,
        "replicates": 20,
        "truth": 3.0,
        "mean_estimate": 3.0123,
        "bias": 0.0123,
        "bias_mcse": 0.0456,
        "emp_se": 0.51,
        "mean_se": 0.5,
        "coverage": 0.947,
        "coverage_mcse": 0.021,
        "rejection_rate": 0.81,
    }
    (out / "recovery/summary.json").write_text(json.dumps(summary))
    power = {
        "alpha": 0.05,
        "rows": [
            {"n_patients": 100, "power": 0.4567, "power_mcse": 0.05},
            {"n_patients": 200, "power": 0.8123},
        ],
    }
    (out / "power/summary.json").write_text(json.dumps(power))
    got = rc.run_report(rc.built(), out)
    assert got["results"]["recovery"]["rows"] == [{**summary, "n": 200}]
    recovery = got["html"].split('id="recovery"')[1].split("</section>")[0]
    for text in ("sickness", "<td>200</td>", "<td>20</td>", "0.012", "±0.046", "0.947", "±0.021", "0.810"):
        assert text in recovery, text
    power_html = got["html"].split('id="power"')[1].split("</section>")[0]
    assert (
        "<td>100</td>" in power_html
        and "0.457" in power_html
        and "±0.050" in power_html
        and "0.812" in power_html
    )
    assert any(
        "bias 0.01 points and 94.7% confidence-interval coverage" in s for s in got["results"]["summary"]
    )
    # the recovery summary is also drawn (estimate against truth, power against size), embedded
    assert recovery.count('<img src="data:image/png;base64,') == 1


def test_failed_and_sparse_model_files_are_reported_not_fatal():
    b = rc.built()
    sessions = pd.read_parquet(b["sessions"])
    primary = json.loads(b["models"]["primary"].read_text())
    sparse = {
        k: primary[k] for k in ("coefficients", "nobs", "ngroups", "random", "residual_variance", "loglik")
    }
    models = {
        "primary": primary,
        "bare": sparse,  # no status, spec, method, engine, label...
        # a reason the model recorded with its counts (models.counted), and one it did not
        "mmrm": {
            "status": "skipped",
            "reason": "needs at least 3 sessions per patient",
            "label": "MMRM",
            "counted_text": {"needs at least 3 sessions per patient": {"text": "needs at least 3 sessions per patient", "counts": {}}},
        },
        "old": {"status": "failed", "reason": "ValueError: 7 rows for 7 groups", "label": "Old"},
    }
    info = json.loads(b["input"].read_text())
    prov = {
        "input": {"file": info["file"], "sha256": info["sha256"]},
        "packages": {},
        "git_commit": "x",
        "config_yaml": "",
    }
    res = build_results(
        "synth", sessions, info, models, prov, {"small_cell_threshold": 10, "confidence_level": 0.95}
    )
    assert res["models"]["bare"]["status"] == "ok" and res["models"]["mmrm"]["status"] == "skipped"
    assert [e["model"] for e in res["illness_effects"]] == ["primary", "bare"]
    assert any("MMRM (skipped: needs at least 3 sessions per patient)" in s for s in res["summary"])
    # text not recorded with its counts may quote one: its numbers are withheld
    assert any("Old (failed: ValueError: # rows for # groups)" in s for s in res["summary"])
    # two models with the same counts: nothing to derive from their difference
    assert res["models"]["bare"]["nobs"] == res["models"]["primary"]["nobs"]


def test_model_counts_that_differ_by_a_small_number_are_suppressed():
    b = rc.built()
    sessions = pd.read_parquet(b["sessions"])
    primary = json.loads(b["models"]["primary"].read_text())
    sens = dict(primary, nobs=primary["nobs"] - 4, label="without sessions near onset")  # 4 sessions fewer
    info = json.loads(b["input"].read_text())
    prov = {
        "input": {"file": info["file"], "sha256": info["sha256"]},
        "packages": {},
        "git_commit": "x",
        "config_yaml": "",
    }
    res = build_results(
        "synth",
        sessions,
        info,
        {"primary": primary, "sens": sens},
        prov,
        {"small_cell_threshold": 10, "confidence_level": 0.95},
    )
    assert conceals(res["models"]["primary"]["nobs"], primary["nobs"]) or conceals(
        res["models"]["sens"]["nobs"], sens["nobs"]
    )
    assert any(e["where"] == "Data flow and model counts" for e in res["suppression"]["entries"])


def test_small_cohort_suppresses_the_data_flow(tmp_path):
    b = rc.build(tmp_path, n_patients=9, seed=4, models={"primary": rc.MODELS["primary"]})
    got = rc.run_report(b, Path(tmp_path) / "out")
    f = got["results"]["data_flow"]
    assert f["patients_received"] == "<11" and f["patients_analysed"] == "<11"
    assert "9 patients" not in " ".join(got["results"]["summary"])
    assert "Data flow and model counts" in got["html"].split('id="suppression"')[1]


def test_effects_on_other_scales_stay_out_of_the_forest_plot():
    b = rc.built()
    sessions = pd.read_parquet(b["sessions"])
    primary = json.loads(b["models"]["primary"].read_text())
    logit = {
        "label": "Response (logistic)",
        "kind": "glmm_binary",
        "nobs": primary["nobs"],
        "ngroups": primary["ngroups"],
        "coefficients": [],
        "illness_effect": {
            "term": "ill",
            "estimate": 0.7,
            "ci_low": 0.5,
            "ci_high": 0.98,
            "scale": "odds ratio",
        },
    }
    info = json.loads(b["input"].read_text())
    prov = {
        "input": {"file": info["file"], "sha256": info["sha256"]},
        "packages": {},
        "git_commit": "x",
        "config_yaml": "",
    }
    res = build_results(
        "synth",
        sessions,
        info,
        {"primary": primary, "response": logit},
        prov,
        {"small_cell_threshold": 10, "confidence_level": 0.95},
    )
    assert [e["model"] for e in res["illness_effects"]] == ["primary"]
    assert [(e["model"], e["scale"]) for e in res["illness_effects_other_scales"]] == [
        ("response", "odds ratio")
    ]


def _flow_with(primary_changes: dict) -> tuple[dict, pd.DataFrame]:
    b = rc.built()
    sessions = pd.read_parquet(b["sessions"])
    primary = {**json.loads(b["models"]["primary"].read_text()), **primary_changes}
    info = json.loads(b["input"].read_text())
    prov = {
        "input": {"file": info["file"], "sha256": info["sha256"]},
        "packages": {},
        "git_commit": "x",
        "config_yaml": "",
    }
    res = build_results(
        "synth",
        sessions,
        info,
        {"primary": primary},
        prov,
        {"small_cell_threshold": 10, "confidence_level": 0.95},
    )
    return res["data_flow"], sessions


def test_data_flow_names_baseline_rows_and_estimand_removals():
    b = rc.built()
    spec = {**json.loads(b["models"]["primary"].read_text())["spec"], "sessions": "post_baseline"}
    sessions = pd.read_parquet(b["sessions"])
    post = sessions[sessions["session"] > 1]
    nobs = int(post["madrs"].notna().sum()) - 12
    estimands = {
        "postponement": {"strategy": "hypothetical", "rows_removed": 12},
        "dose_change": {"strategy": "treatment_policy", "rows_removed": 0},
    }
    flow, _ = _flow_with({"spec": spec, "estimands": estimands, "nobs": nobs})
    reasons = {e["reason"]: e["records"] for e in flow["excluded"]}
    assert reasons == {
        "baseline rating (first session: a covariate, not an outcome)": 80,
        "postponement: hypothetical strategy": 12,
        "no outcome rating (madrs missing)": int(post["madrs"].isna().sum()),
    }
    assert flow["records_analysed"] == nobs
    assert flow["records_received"] == sum(reasons.values()) + nobs


def test_data_flow_defers_to_the_model_when_the_data_cannot_explain_its_count():
    sessions = pd.read_parquet(rc.built()["sessions"])
    nobs = int(sessions["madrs"].notna().sum()) - 25  # the model dropped 25 rows more than the data explain
    spec = {"formula": "madrs ~ session + ill", "re_formula": "~session"}
    flow, sessions = _flow_with({"spec": spec, "nobs": nobs})
    assert flow["records_analysed"] == nobs
    assert flow["excluded"] == [
        {
            "reason": "missing values, intercurrent-event strategy or other exclusion by the model",
            "records": int(sessions["madrs"].isna().sum()) + 25,
        }
    ]


def test_provenance_traces_every_number_to_checksummed_files(rep):
    import hashlib

    b, prov, html = rc.built(), rep["results"]["provenance"], rep["html"]

    def sha(path) -> str:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()

    assert prov["input"]["sha256"] == sha(b["root"] / "data/raw/synth/sessions.csv")
    assert prov["derived"]["sessions"]["sha256"] == sha(b["sessions"])
    for name, path in b["models"].items():
        assert prov["derived"][f"model {name}"]["sha256"] == sha(path)
    section = html.split('id="provenance"')[1]
    for f in [prov["input"], *prov["derived"].values()]:
        assert f["sha256"] in section
    for needle in (
        "<code>pytest</code>",
        "2026-01-01 00:00 UTC",
        prov["packages"]["statsmodels"],
        "small_cell_threshold: 10",
    ):
        assert needle in section, needle  # command, run date, versions, config


def test_ketastats_report_command_rerenders_a_cohort(tmp_path, project_root):
    import shutil

    import yaml

    from ketastats.cli import main

    b = rc.built()
    shutil.copytree(b["root"] / "data", tmp_path / "data")
    cfg = rc.project_config(project_root)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    code = main(
        [
            "report",
            "--cohort",
            "synth",
            "--config",
            str(tmp_path / "config.yaml"),
            "--root",
            str(tmp_path),
            "--pdf",
        ]
    )
    assert code == 0
    out = tmp_path / "reports/synth"
    assert (out / "report.pdf").read_bytes()[:5] == b"%PDF-"
    assert {p.stem for p in (out / "figures").glob("*.svg")} == set(FIGURES)
    assert {p.stem for p in (out / "tables").glob("*.csv")} == set(TABLES)
    assert "<code>ketastats report --cohort synth" in (out / "report.html").read_text()


def test_minimal_data_and_a_failed_primary_still_render(tmp_path):
    from ketastats.report import render_html

    sessions = pd.DataFrame(
        {
            "patient_id": [f"P{i:02d}" for i in range(30) for _ in range(3)],
            "session": [1, 2, 3] * 30,
            "day": [0, 3, 7] * 30,
            "madrs": [30.0, 25.0, 20.0] * 30,
        }
    )
    models = {"primary": {"status": "failed", "reason": "ModelError: singular design", "label": "Primary"}}
    info = {"records": 90, "patients": 30, "file": "x.csv", "sha256": "0" * 64}
    prov = {
        "input": {"file": "x.csv", "sha256": "0" * 64},
        "packages": {"ketastats": "0"},
        "git_commit": "x",
        "config_yaml": "",
        "command": "c",
    }
    res = build_results(
        "tiny", sessions, info, models, prov, {"small_cell_threshold": 10, "confidence_level": 0.9}
    )
    assert res["illness"] == {"available": False} and res["cytokines"] == [] and res["illness_effects"] == []
    assert "The primary model was failed: ModelError: singular design." in res["summary"]
    html = render_html(
        res, sessions, tmp_path / "r.html", models=models, figures_dir=tmp_path / "f"
    ).read_text()
    for sid in SECTIONS:
        assert f'id="{sid}"' in html
    assert "The primary model was failed: no diagnostics." in html
    assert "t-based 90% confidence intervals" in html
    assert len(list((tmp_path / "f").glob("*.png"))) == len(FIGURES)


def test_results_json_releases_no_model_rows_or_patient_values(rep):
    """A model result keeps the rows it analysed (its design) and per-patient BLUPs for the
    diagnostics; none of it is released: results.json holds no design, no BLUPs and no patient id."""
    res = rep["results"]
    text = json.dumps(res) + (rep["dir"] / "report.html").read_text()
    models = rc.built()["models"]
    assert any(json.loads(Path(p).read_text()).get("design") for p in models.values())  # the model files have rows
    for m in res["models"].values():
        assert "design" not in m and "blups" not in m
    ids = set(pd.read_parquet(rc.built()["sessions"])["patient_id"].astype(str))
    assert ids and not [i for i in ids if f'"{i}"' in text or f">{i}<" in text]


def test_the_headline_n_is_shown_as_a_range_never_suppressed(tmp_path):
    """When 1 to 10 patients have no analysed rating, their number is hidden and the number
    analysed is shown as the range a reader can derive anyway (200 - 1..10 = 190-199 for 200
    patients), never as "suppressed": a study's N is never withheld."""
    raw = rc.make_sessions(120, seed=5)
    gone = sorted(raw["patient_id"].unique())[:3]  # three patients rated at baseline only
    raw = raw[~(raw["patient_id"].isin(gone) & (raw["session"] > 1))]
    prepared = prepare_sessions(raw)
    model = tmp_path / "primary.json"
    step_fit(prepared, {**rc.MODELS["primary"], "sessions": "post_baseline"}, model)
    info = {"file": "x.csv", "sha256": "0" * 64, "records": int(len(raw)), "patients": 120, "warnings": 0}
    prov = {"input": {"file": "x.csv", "sha256": "0" * 64}, "packages": {}, "git_commit": "x", "config_yaml": ""}
    res = build_results(
        "synth", prepared, info, {"primary": json.loads(model.read_text())}, prov,
        {"small_cell_threshold": 10, "confidence_level": 0.95},
    )
    flow = res["data_flow"]
    assert flow["patients_excluded"] == "<11"
    assert flow["patients_analysed"] == "110-119" and conceals(flow["patients_analysed"], 117)
    first = res["summary"][0]
    assert first.startswith("110 to 119 patients with ") and "suppressed" not in first
    assert "suppressed" not in json.dumps(flow)


def test_the_first_screen_answers_the_question_with_links(rep):
    """The answer comes first, one claim per sentence, each linked to the section that shows it;
    the full tables of the other models are in a collapsed appendix at the end."""
    res, html = rep["results"], rep["html"]
    answer = res["answer"]
    assert answer and all(a["text"].endswith(".") and a["link"].startswith("#") for a in answer)
    for a in answer:
        assert f'id="{a["link"][1:]}"' in html, a
    first = answer[0]["text"]
    eff = res["models"]["primary"]["illness_effect"]
    assert first.startswith("At a session during an acute illness, the MADRS was ")
    assert f"{abs(eff['estimate']):.2f} points" in first and "minimal clinically important difference" in first
    assert "patients with" in answer[-1]["text"] and answer[-1]["link"] == "#data-flow"
    assert any("postpone" in a["text"] for a in answer)  # what to do when ill: said, or what it needs
    # order: the answer, then the main analysis, then the sensitivity summary; the appendix last
    pos = [html.index(f'id="{s}"') for s in ("summary", "primary-model", "sensitivity", "data-flow", "other-models")]
    assert pos == sorted(pos)
    appendix = html[html.index('id="other-models"'):]
    assert "<details" in appendix and 'id="model-ri_only"' in appendix


def test_terms_are_shown_with_labels_and_their_raw_names_on_hover(rep):
    from ketastats.report.labels import term_label

    html = rep["html"]
    for c in rep["results"]["models"]["primary"]["coefficients"]:
        assert f'<td class="text" title="{c["term"]}">{term_label(c["term"], "MADRS")}</td>' in html
        assert term_label(c["term"], "MADRS") != c["term"]  # every term of the model has a label


def test_every_term_of_the_shipped_models_has_a_label():
    from ketastats.report.labels import term_label

    ref = pd.read_csv(Path(__file__).parent / "data" / "demo_reference.csv")
    terms = set(ref.loc[ref["kind"].isin(["fixed", "pooled"]), "term"].astype(str))
    assert {"ill_within", "progress_log", "madrs_baseline", "ill_within:il6_pg_ml_base_c"} <= terms
    assert not [t for t in terms if term_label(t, "MADRS") == t]
