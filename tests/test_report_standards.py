"""Reporting standards in the report: the STROBE checklist, the estimand table, the flow diagram.

On the synthetic cohort's rendered report (``report_cohort.rendered``), and on results built
from it with a small count in the data flow.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import xml.etree.ElementTree as ET
from collections import Counter

import pandas as pd
import pytest
import report_cohort as rc

from ketastats.report import build_results
from ketastats.report.estimands import ATTRIBUTES, estimand_table
from ketastats.report.figures import figure_bytes
from ketastats.report.flow import flow_figure
from ketastats.report.strobe import STROBE_ITEMS, strobe_checklist
from ketastats.report.suppression import is_small

SVG = "{http://www.w3.org/2000/svg}"
#: a count as the flow diagram prints it: a number, "<11" or a range such as "190-199"
COUNT = re.compile(r"(?<![\w.])<?\d+(?:-\d+)?(?![\w.])")


@pytest.fixture(scope="module")
def rep():
    return rc.rendered()


def _section(html: str, sid: str) -> str:
    return html.split(f'<section id="{sid}"')[1].split("</section>")[0]


def _ids(html: str) -> set[str]:
    return set(re.findall(r'\sid="([^"]+)"', html))


# ------------------------------------------------------------------- STROBE
def test_strobe_lists_the_22_items_each_with_a_section_link_or_for_the_authors(rep):
    res, html = rep["results"], rep["html"]
    rows = res["strobe"]
    assert [r["item"] for r in rows] == list(range(1, 23))
    for r in rows:
        linked = [s for s in r["sections"] if s["available"]]
        assert linked or r["authors"], r
        assert r["status"] == ("authors" if not linked else "partly" if r["authors"] else "report"), r
    # in the HTML: one table row per item, each with a link into the report or the authors' part
    table = _section(html, "strobe")
    trs = re.findall(r"<tr><td>(\d+)</td>(.*?)</tr>", table, re.S)
    assert [int(n) for n, _ in trs] == list(range(1, 23))
    for (n, tr), r in zip(trs, rows):
        links = re.findall(r'<a href="#([^"]+)">', tr)
        assert links == [s["id"] for s in r["sections"] if s["available"]], n
        assert links or "For the authors to write" in tr, n
        assert ("For the authors to write" in tr) == bool(r["authors"]), n
    # the checklist's own texts are in the report
    for it in STROBE_ITEMS:
        assert it["text"].replace("'", "&#39;") in table


def test_strobe_and_estimand_links_point_at_sections_of_the_rendered_report(rep):
    html = rep["html"]
    ids = _ids(html)
    for sid in ("strobe", "estimands"):
        links = re.findall(r'href="#([^"]+)"', _section(html, sid))
        assert links, sid
        missing = [x for x in links if x not in ids]
        assert not missing, (sid, missing)
    # the nav links to both sections
    nav = html.split("<nav")[1].split("</nav>")[0]
    assert 'href="#estimands"' in nav and 'href="#strobe"' in nav


def test_a_section_absent_or_empty_for_the_cohort_is_not_linked_and_says_why(rep):
    res, html = rep["results"], rep["html"]
    # the synthetic cohort has no simulation summaries: no Recovery section, no link to it
    assert res["recovery"] is None and 'id="recovery"' not in html
    item17 = next(r for r in res["strobe"] if r["item"] == 17)
    rec = next(s for s in item17["sections"] if s["id"] == "recovery")
    assert not rec["available"] and "recovery" in rec["reason"]
    assert 'href="#recovery"' not in _section(html, "strobe")
    assert "Recovery: not in this report (no recovery simulation" in _section(html, "strobe")
    # a cohort without cytokines or illness data, and with a failed primary model
    bare = copy.deepcopy(res)
    bare["cytokines"], bare["illness"] = [], {"available": False}
    bare["models"] = {"primary": {**bare["models"]["primary"], "status": "failed"}}
    bare["sensitivity"], bare["illness_effects"] = {"rows": []}, []
    rows = {r["item"]: r for r in strobe_checklist(bare)}
    cyto = next(s for s in rows[8]["sections"] if s["id"] == "cytokines")
    assert not cyto["available"] and cyto["reason"] == "the cohort has no cytokine measurements"
    assert [s["id"] for s in rows[15]["sections"] if s["available"]] == ["trajectories"]
    # other analyses: sensitivity, other models, diagnostics, recovery all empty -> the authors'
    assert rows[17]["status"] == "authors" and rows[17]["authors"]
    assert not any(s["available"] for s in rows[17]["sections"])
    ill = next(s for s in rows[14]["sections"] if s["id"] == "illness")
    assert not ill["available"] and "illness" in ill["reason"]
    assert rows[16]["sections"][0]["reason"] == "the primary model was failed"


# ----------------------------------------------------------------- estimands
def test_estimand_table_has_one_row_per_model_with_the_five_attributes(rep):
    res, html = rep["results"], rep["html"]
    table = res["estimand_table"]
    assert [r["model"] for r in table] == list(res["models"])
    files = {name: json.loads(p.read_text()) for name, p in rc.built()["models"].items()}
    for row in table:
        for key in ATTRIBUTES:
            assert row[key], (row["model"], key)
        for key in ("population", "treatment", "variable", "summary_measure"):
            assert isinstance(row[key], str) and row[key].strip()
        # the strategies are those the model applied, as its JSON records them
        recorded = files[row["model"]]["estimands"]
        assert {e["event"]: e["strategy"] for e in row["intercurrent_events"]} == {
            k: v["strategy"] for k, v in recorded.items()
        }
        m = res["models"][row["model"]]
        assert f"{m['nobs']} sessions of {m['ngroups']} patients" in row["population"]
        assert row["summary_measure"] == "Difference in mean MADRS (points), ill vs not ill sessions."
        assert "(ill)" in row["treatment"]  # the term these models estimate
    section = _section(html, "estimands")
    body_rows = re.findall(r"<tr( class=\"unreliable\")?><td><a href=\"#([^\"]+)\">", section)
    assert [sid for _, sid in body_rows] == [r["section"] for r in table]
    assert section.count("<b>treatment policy</b>") == sum(
        e["strategy"] == "treatment_policy" for r in table for e in r["intercurrent_events"]
    )


def _model(kind: str, **kw) -> dict:
    base = {"kind": kind, "label": kind, "status": "ok", "nobs": 300, "ngroups": 60,
            "spec": {"outcome": "madrs", "sessions": "post_baseline", "illness_term": "ill_within"},
            "estimands": {"postponement": {"strategy": "hypothetical", "description": "d", "rows_removed": 12}}}  # fmt: skip
    for k, v in kw.items():
        if k == "spec":
            base["spec"] = {**base["spec"], **v}
        else:
            base[k] = v
    return base


def test_population_level_summary_follows_the_kind_and_scale():
    ins = {"name": "madrs", "short": "MADRS", "min": 0, "max": 60, "unit": "infusion",
           "remission_max": 10, "response_fraction": 0.5}  # fmt: skip
    models = {
        "primary": _model("lmm", illness_effect={"term": "ill_within", "scale": "points"}),
        "gee_end": _model(
            "gee_binary", level="end", spec={"outcome": "madrs_remission", "level": "end"},
            estimand_scale="population-averaged (marginal) odds ratio",
            illness_effect={"term": "ever_ill", "scale": "log odds ratio"},
        ),
        "glmm": _model(
            "glmm_binary", spec={"outcome": "madrs_response"},
            estimand_scale="subject-specific (conditional) odds ratio",
            illness_effect={"term": "ill_within", "scale": "log odds ratio"},
        ),
        "cyto": _model("cytokine_illness", censoring="tobit",
                       spec={"outcome": None, "markers": ["il6_pg_ml", "crp_mg_l"], "sessions": "all"}),
        "skipped": {"kind": "lmm", "label": "skipped", "status": "skipped", "reason": "too few patients",
                    "spec": {"outcome": "madrs", "illness_term": "ill_within"}},
    }  # fmt: skip
    rows = {r["model"]: r for r in estimand_table({"cohort": "c", "settings": {"instrument": ins}, "models": models})}
    assert rows["primary"]["summary_measure"].startswith("Within-patient difference in mean MADRS")
    assert rows["gee_end"]["summary_measure"].startswith("Population-averaged (marginal) odds ratio of remission")
    assert "ever vs never" not in rows["gee_end"]["treatment"] and "(ever_ill)" in rows["gee_end"]["treatment"]
    assert "at the end of the course" in rows["gee_end"]["variable"]
    assert rows["gee_end"]["population"].endswith(": 60 patients.")
    assert rows["glmm"]["summary_measure"].startswith("Subject-specific (conditional) odds ratio of response")
    assert "at least 50% below the baseline" in rows["glmm"]["variable"]
    assert rows["cyto"]["summary_measure"].startswith("Ratio of geometric mean concentrations")
    assert "IL-6, CRP" in rows["cyto"]["variable"] and "left-censored" in rows["cyto"]["variable"]
    assert rows["primary"]["intercurrent_events"] == [
        {"event": "postponement", "label": "Session postponed", "strategy": "hypothetical",
         "strategy_label": "hypothetical", "description": "d", "rows_removed": 12, "rows_changed": None}
    ]  # fmt: skip
    # a model skipped before it recorded its strategies still has its row, saying so
    sk = rows["skipped"]
    assert sk["intercurrent_events"] == [] and "skipped" in sk["events_note"]
    assert all(sk[k] for k in ("population", "treatment", "variable", "summary_measure"))


# ---------------------------------------------------------------------- flow
def _released_counts(flow: dict) -> list:
    return [
        flow["records_received"], flow["patients_received"], *(e["records"] for e in flow["excluded"]),
        flow["patients_excluded"], flow["records_analysed"], flow["patients_analysed"],
    ]  # fmt: skip


def _svg_texts(svg: bytes) -> tuple[list[str], dict[str, str]]:
    """Every text line of an SVG, and the text of each element with an id."""
    root = ET.fromstring(svg)  # valid XML, or this raises
    assert root.tag == f"{SVG}svg"
    lines = ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]
    by_id = {}
    for g in root.iter(f"{SVG}g"):
        if g.get("id", "").startswith("flow-"):
            by_id[g.get("id")] = " ".join("".join(t.itertext()) for t in g.iter(f"{SVG}text"))
    return lines, by_id


def _check_flow_svg(svg: bytes, flow: dict) -> None:
    lines, by_id = _svg_texts(svg)
    text = "\n".join(lines)
    shown = _released_counts(flow)
    numeric = [str(v) for v in shown if COUNT.fullmatch(str(v))]
    words = [v for v in shown if not COUNT.fullmatch(str(v))]  # "suppressed"
    assert Counter(COUNT.findall(text)) == Counter(numeric), (text, shown)
    assert text.count("suppressed") == len(words)
    keyed = {
        "flow-records_received": flow["records_received"],
        "flow-patients_received": flow["patients_received"],
        "flow-patients_excluded": flow["patients_excluded"],
        "flow-records_analysed": flow["records_analysed"],
        "flow-patients_analysed": flow["patients_analysed"],
        **{f"flow-excluded-{i}": e["records"] for i, e in enumerate(flow["excluded"])},
    }
    assert set(by_id) == set(keyed)
    for gid, value in keyed.items():
        assert by_id[gid].split(" ")[0] == str(value), (gid, by_id[gid], value)
    for e in flow["excluded"]:  # every reason is in the diagram (wrapped lines joined)
        assert " ".join(e["reason"].split()) in " ".join(" ".join(lines).split())
    for tok in COUNT.findall(text):
        assert not (tok.isdigit() and is_small(int(tok), 10)), tok


def test_flow_svg_is_in_the_report_and_holds_exactly_the_released_counts(rep):
    res, html, out = rep["results"], rep["html"], rep["dir"]
    svg = (out / "figures" / "flow.svg").read_bytes()
    _check_flow_svg(svg, res["data_flow"])
    # the report embeds that SVG itself (not a PNG of it), in the data-flow section
    m = re.search(r'<img src="data:image/svg\+xml;base64,([^"]+)"', _section(html, "data-flow"))
    assert m and base64.b64decode(m.group(1)) == svg
    assert (out / "figures" / "flow.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_flow_svg_shows_small_counts_as_released_never_the_count():
    """Five records and three patients received but not in the processed table: both small."""
    b = rc.built()
    info = json.loads(b["input"].read_text())
    info = {**info, "records": info["records"] + 5, "patients": info["patients"] + 3}
    models = {name: json.loads(p.read_text()) for name, p in b["models"].items()}
    prov = {"input": {"file": info["file"], "sha256": info["sha256"]}, "packages": {"ketastats": "0"},
            "git_commit": "x", "config_yaml": "", "command": "pytest"}  # fmt: skip
    res = build_results(
        "synth", pd.read_parquet(b["sessions"]), info, models, prov,
        {"small_cell_threshold": 10, "confidence_level": 0.95},
    )  # fmt: skip
    flow = res["data_flow"]
    assert flow["excluded"][0] == {"reason": "not in the processed table", "records": "<11"}
    assert flow["patients_excluded"] == "<11"
    hidden = [v for v in _released_counts(flow) if isinstance(v, str)]
    assert len(hidden) >= 3  # the small ones and at least one complement
    _, svg = figure_bytes(flow_figure(flow))
    _check_flow_svg(svg, flow)
    text = "\n".join(_svg_texts(svg)[0])
    assert "<11 records: not in the processed table" in text and not re.search(r"(?<!\d)5 records", text)
    assert "<11 patients without any analysed record" in text and not re.search(r"(?<!\d)3 patients", text)
