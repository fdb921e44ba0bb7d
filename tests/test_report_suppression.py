"""Small-cell suppression: no count of 1..threshold is shown or derivable from what is shown."""

from __future__ import annotations

import atexit
import copy
import functools
import itertools
import json
import shutil
import tempfile
from pathlib import Path

import disclosure_attack as da
import numpy as np
import pandas as pd
import pytest
import report_cohort as rc
import yaml
from conftest import run_snakemake, tiny_config
from hypothesis import given, settings
from hypothesis import strategies as st
from report_cohort import conceals

from ketastats.config import check_config
from ketastats.exceptions import ConfigError
from ketastats.models.counted import CountedText, escape, fill, mask_numbers
from ketastats.prepare import prepare_sessions
from ketastats.report import build_results
from ketastats.report.suppression import (
    SUPPRESSED,
    Disclosure,
    SuppressionLog,
    disclosure_settings,
    is_small,
    is_suppressed,
    say_count,
    suppress_count,
    suppress_related,
)

THR = 10


def derive(shown: dict, relations, cells: dict) -> dict:
    """What an attacker learns: repeatedly solve every relation with one unknown member."""
    known = {k: v for k, v in shown.items() if not is_suppressed(v)}
    changed = True
    while changed:
        changed = False
        for total, parts in relations:
            members = [total, *parts]
            unknown = [m for m in members if m not in known]
            if len(unknown) == 1:
                u = unknown[0]
                known[u] = (
                    known[total] - sum(known[p] for p in parts if p != u)
                    if u != total
                    else sum(known[p] for p in parts)
                )
                assert known[u] == cells[u]  # the attacker's arithmetic is right
                changed = True
    return known


def assert_protected(cells, relations, shown, thr=THR):
    for k, v in shown.items():
        assert not (isinstance(v, int) and is_small(v, thr)), (k, v)
    learned = derive(shown, relations, cells)
    for k, v in learned.items():
        assert not is_small(v, thr), f"cell {k} = {v} can be derived"
    for total, parts in relations:
        hidden_parts = [p for p in parts if is_suppressed(shown.get(p, SUPPRESSED))]
        if total in learned and len(hidden_parts) >= 2:
            # the hidden parts' sum is known: it must not itself be a small count
            assert not is_small(sum(cells[p] for p in hidden_parts), thr), (total, hidden_parts)


def test_suppress_count_keeps_zero_and_large_counts():
    assert [suppress_count(n, 10) for n in (0, 1, 10, 11, None)] == [0, "<11", "<11", 11, None]
    assert suppress_count(5, 4) == 5 and suppress_count(4, 4) == "<5"
    assert suppress_count(3, 0) == 3  # threshold 0 switches suppression off


def test_one_small_cell_in_a_row_takes_a_second_cell_with_it():
    log = SuppressionLog(THR)
    cells = {"total": 120, "a": 4, "b": 30, "c": 86}
    shown = suppress_related(cells, [("total", ["a", "b", "c"])], log, "T")
    assert shown == {"total": 120, "a": "<11", "b": SUPPRESSED, "c": 86}  # b: the smallest other cell
    assert [e["reason"] for e in log.entries] == ["small", "complementary"]
    assert {e["where"] for e in log.entries} == {"T"}


def test_two_small_cells_whose_sum_is_small_take_a_third():
    log = SuppressionLog(THR)
    cells = {"total": 100, "a": 3, "b": 4, "c": 40, "d": 53}
    shown = suppress_related(cells, [("total", ["a", "b", "c", "d"])], log, "T")
    assert shown["c"] == SUPPRESSED and shown["d"] == 53  # 3 + 4 = 7 would be derivable


def test_small_total_hides_its_parts_and_zero_stays_visible():
    log = SuppressionLog(THR)
    shown = suppress_related({"t": 6, "a": 6, "b": 0}, [("t", ["a", "b"])], log, "T")
    assert shown == {"t": "<11", "a": "<11", "b": 0}


def test_undisplayed_cell_protected_only_when_small():
    rel = [("N", ["rated", "unrated"])]
    shown = suppress_related(
        {"N": 60, "rated": 40, "unrated": 20}, rel, SuppressionLog(THR), "F", undisplayed=["unrated"]
    )
    assert shown == {"N": 60, "rated": 40}
    log = SuppressionLog(THR)
    shown = suppress_related({"N": 60, "rated": 57, "unrated": 3}, rel, log, "F", undisplayed=["unrated"])
    assert shown == {"N": 60, "rated": SUPPRESSED}  # 60 - 57 = 3 would be derivable
    assert log.entries == [{"where": "F", "cell": "rated", "reason": "complementary"}]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=2, max_size=6))
def test_row_with_total_never_reveals_a_small_cell(parts):
    cells = {("p", i): v for i, v in enumerate(parts)}
    cells["total"] = sum(parts)
    relations = [("total", [("p", i) for i in range(len(parts))])]
    shown = suppress_related(cells, relations, SuppressionLog(THR), "row")
    assert_protected(cells, relations, shown)


@settings(max_examples=150, deadline=None)
@given(st.integers(2, 4), st.integers(2, 4), st.data())
def test_table_with_margins_never_reveals_a_small_cell(n_rows, n_cols, data):
    grid = data.draw(
        st.lists(
            st.lists(st.integers(0, 30), min_size=n_cols, max_size=n_cols), min_size=n_rows, max_size=n_rows
        )
    )
    cells = {(i, j): grid[i][j] for i, j in itertools.product(range(n_rows), range(n_cols))}
    for i in range(n_rows):
        cells[(i, "T")] = sum(grid[i])
    for j in range(n_cols):
        cells[("T", j)] = sum(grid[i][j] for i in range(n_rows))
    cells[("T", "T")] = sum(map(sum, grid))
    relations = [((i, "T"), [(i, j) for j in range(n_cols)]) for i in range(n_rows)]
    relations += [(("T", j), [(i, j) for i in range(n_rows)]) for j in range(n_cols)]
    relations += [
        (("T", "T"), [(i, "T") for i in range(n_rows)]),
        (("T", "T"), [("T", j) for j in range(n_cols)]),
    ]
    log = SuppressionLog(THR)
    shown = suppress_related(cells, relations, log, "grid")
    assert_protected(cells, relations, shown)
    # every suppressed cell is logged once, and nothing else is
    assert sorted(e["cell"] for e in log.entries) == sorted(
        " / ".join(map(str, k)) for k, v in shown.items() if is_suppressed(v)
    )
    # cells that are not suppressed are shown with their true value
    assert all(v == cells[k] for k, v in shown.items() if not is_suppressed(v))


def test_log_summary_counts_per_place_and_reason():
    log = SuppressionLog(THR)
    suppress_related({"t": 50, "a": 2, "b": 48}, [("t", ["a", "b"])], log, "Table 1")
    log.count(3, "Figure", "n at session 2")
    d = log.to_dict()
    assert d["applied"] is True and d["small_label"] == "<11"
    assert d["summary"] == [
        {"where": "Table 1", "reason": "small", "cells": 1},
        {"where": "Table 1", "reason": "complementary", "cells": 1},
        {"where": "Figure", "reason": "small", "cells": 1},
    ]
    assert SuppressionLog(THR).to_dict()["applied"] is False


# ------------------------------------------------------- the disclosure layer
def test_a_count_registered_by_two_sections_is_one_cell_logged_once():
    layer = Disclosure(THR)
    for where in ("Table 1", "Illness episodes"):
        layer.count(("N", "ever"), 4, where=where)
        layer.count(("N", "never"), 96, where=where)
        layer.count(("N", "all"), 100, where=where)
        layer.relate(("N", "all"), [("N", "never"), ("N", "ever")])
    layer.resolve()
    ever, never, total = (layer.value(("N", k)) for k in ("ever", "never", "all"))
    assert (ever, total) == ("<11", 100) and conceals(never, 96)
    assert never == "90-99"  # 100 minus 1 to 10: what a reader can derive anyway, and no more
    assert layer.log.entries == [
        {"where": "Table 1", "cell": "N / ever", "reason": "small"},
        {"where": "Table 1", "cell": "N / never", "reason": "complementary"},
    ]
    with pytest.raises(RuntimeError):
        layer.count("late", 3)
    with pytest.raises(ValueError):
        _register_twice()


def _register_twice():
    layer = Disclosure(THR)
    layer.count("x", 12)
    layer.count("x", 13)


def test_an_undisplayed_zero_is_known_so_the_count_beside_a_hidden_total_is_hidden():
    """The never-ill n at session 1 is the group's size when nobody missed session 1."""
    layer = Disclosure(THR)
    layer.count("ever", 3)
    layer.count("never", 197)
    layer.count("all", 200)
    layer.relate("all", ["never", "ever"])
    for s, rated in ((1, 197), (2, 180)):
        layer.count(("rated", s), rated)
        layer.count(("not rated", s), 197 - rated, display=False)
        layer.relate("never", [("rated", s), ("not rated", s)])
    layer.resolve()
    assert conceals(layer.value("never"), 197)
    assert conceals(layer.value(("rated", 1)), 197)  # 197 + 0 would be the hidden group size
    assert layer.value(("rated", 1)) == layer.value("never") == "190-199"
    assert layer.value(("rated", 2)) == 180  # 17 not rated: unknown to a reader, and not small


def test_linked_block_hides_every_count_when_one_is_small_and_later_values_see_it():
    layer = Disclosure(THR)
    block = {k: layer.count(k, n) for k, n in (("kept", 40), ("removed", 3), ("rows", 0), ("sessions", 200))}
    layer.link(block)
    share = layer.later(lambda d: 0.075 if d.shown_all(["kept", "removed"]) else SUPPRESSED)
    layer.follow("sessions", ["other"])
    layer.count("other", 50)
    layer.resolve()
    assert layer.fill({**block, "share": share}) == {
        "kept": SUPPRESSED, "removed": "<11", "rows": 0, "sessions": SUPPRESSED, "share": SUPPRESSED,
    }  # fmt: skip
    assert layer.value("other") == SUPPRESSED  # it follows 'sessions'


def test_public_threshold_below_ten_is_refused_and_internal_allows_it():
    assert disclosure_settings({"small_cell_threshold": 10}) == (10, "public")
    assert disclosure_settings({"small_cell_threshold": 20, "disclosure": "public"}) == (20, "public")
    assert disclosure_settings({"small_cell_threshold": 0, "disclosure": "internal"}) == (0, "internal")
    for bad in ({"small_cell_threshold": 0}, {"small_cell_threshold": 5, "disclosure": "public"}):
        with pytest.raises(ConfigError, match=r"report.small_cell_threshold: .*report.disclosure: internal"):
            disclosure_settings(bad)
    cfg = tiny_config()
    cfg["report"]["small_cell_threshold"] = 0
    with pytest.raises(ConfigError, match="switches suppression off") as err:
        check_config(cfg)
    assert "report.disclosure: internal" in str(err.value)
    cfg["report"]["disclosure"] = "internal"
    assert check_config(cfg)["report"]["small_cell_threshold"] == 0
    assert check_config(tiny_config())["report"]["disclosure"] == "public"


def test_counted_text_renders_suppressed_counts_and_other_text_loses_its_numbers():
    t = CountedText(escape("Model {label}") + ": {n} patient(s) of {m}; at least 10 needed", {"n": 3, "m": 40})
    assert str(t) == "Model {label}: 3 patient(s) of 40; at least 10 needed"
    assert t.render(say_count_of({"n": "<11", "m": SUPPRESSED})) == (
        "Model {label}: fewer than 11 patient(s) of [suppressed]; at least 10 needed"
    )
    assert fill("{0.__class__} {x}", {"x": 1}) == "{0.__class__} 1"  # no attribute look-up
    assert mask_numbers("ModelError: 1105 rows for 3 groups, 1e-3 (il6_pg_ml, P001)") == (
        "ModelError: # rows for # groups, # (il6_pg_ml, P001)"
    )


def say_count_of(shown):
    names = {3: "n", 40: "m"}
    return lambda v: say_count(shown[names[v]])


# ------------------------------------------------------------- the attacker
def _cohort(n_never: int, n_ever: int, n_sessions: int, p_yes: float, p_missing: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_never + n_ever):
        ever = i >= n_never
        ill_at = int(rng.integers(2, n_sessions + 1)) if ever else None
        yes = int(rng.random() < p_yes)
        for s in range(1, n_sessions + 1):
            rated = s == 1 or rng.random() > p_missing
            rows.append(
                {
                    "patient_id": f"P{i:03d}", "session": s, "day": 3 * (s - 1), "age": 30 + i % 30,
                    "sex": "female" if rng.random() < 0.5 else "male", "antidepressant": yes,
                    "madrs": float(rng.integers(5, 45)) if rated else np.nan, "ill": int(ever and s == ill_at),
                }
            )  # fmt: skip
    return prepare_sessions(pd.DataFrame(rows))


def _release(sessions: pd.DataFrame, models: dict | None = None) -> tuple[dict, dict]:
    """results.json as released (threshold 10) and the oracle (no suppression), as JSON."""
    info = {"records": len(sessions), "patients": int(sessions["patient_id"].nunique()), "file": "x", "sha256": "0"}
    out = []
    for report in ({"small_cell_threshold": THR}, {"small_cell_threshold": 0, "disclosure": "internal"}):
        res = build_results("x", sessions, info, models or {}, {}, {**report, "confidence_level": 0.95})
        out.append(json.loads(json.dumps(res)))
    return out[0], out[1]


@settings(max_examples=25, deadline=None)
@given(
    st.integers(11, 60), st.integers(0, 25), st.integers(2, 5), st.floats(0, 1), st.floats(0, 0.5), st.integers(0, 9)
)
def test_attacker_learns_no_small_count_from_tables_trajectories_and_percentages(
    n_never, n_ever, n_sessions, p_yes, p_missing, seed
):
    """Table 1 (SMDs, percentages), the illness section and the trajectories (per-session n,
    means) of random small cohorts, attacked by every solver that needs no model."""
    released, oracle = _release(_cohort(n_never, n_ever, n_sessions, p_yes, p_missing, seed))
    leaks = da.attack(released, oracle)
    assert not any(leaks.values()), {k: v for k, v in leaks.items() if v}


#: the released cohorts: the shipped demo (200 patients) and the same with 3, 5 and 10 ill patients
COHORTS = {"demo": None, "3 ill": 3, "5 ill": 5, "10 ill": 10}


@functools.cache
def release(cohort: str) -> dict:
    raw = da.demo_raw()
    if COHORTS[cohort] is not None:
        raw = da.with_ill_patients(raw, COHORTS[cohort])
    root = Path(tempfile.mkdtemp(prefix="ketastats-attack-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return da.build_release(root, raw)


#: leaks planted back into a release (from the oracle), one per route, each of which the
#: attacker must find: (cohort, solver, path into results.json)
PLANTED = [
    ("demo", "smd", ("table1", "rows", "antidepressant", "smd")),
    ("demo", "share", ("table1", "rows", "antidepressant", "pct")),
    ("demo", "mean_denominator", ("trajectories", "by_session", "hidden n", "mean")),
    ("demo", "nobs_differencing", ("models", "response_end", "nobs")),
    ("demo", "between_models", ("models", "response_end", "nobs")),
    ("demo", "share", ("models", "illness_slopes", "illness_slopes", "share_at_or_above_mcid")),
    ("demo", "direct", ("models", "tipping_point", "tipping", "imputed_ill_ratings_range")),
    ("3 ill", "session_complement", ("trajectories", "by_session", "never ill at 1", "n")),
    ("3 ill", "text", ("models", "illness_slopes", "reason")),
    ("3 ill", "additive", ("table1", "n", "never_ill")),
]


def _plant(res: dict, oracle: dict, path: tuple) -> dict:
    res = copy.deepcopy(res)
    if path[:2] == ("table1", "rows"):
        for r, o in zip(res["table1"]["rows"], oracle["table1"]["rows"]):
            if r["variable"] == path[2] and path[3] == "pct":  # the percentages alone
                for k, cell in r["cells"].items():
                    cell["pct"] = o["cells"][k]["pct"]
            elif r["variable"] == path[2]:
                r[path[3]] = o[path[3]]
    elif path[:2] == ("trajectories", "by_session"):
        for r, o in zip(res["trajectories"]["by_session"], oracle["trajectories"]["by_session"]):
            if path[2] == "hidden n" and isinstance(r["n"], str) and o["mean"] is not None:
                r["mean"] = o["mean"]
            if path[2] == "never ill at 1" and r["ever_ill"] == 0 and r["session"] == 1:
                r["n"] = o["n"]
    else:
        target, source = res, oracle
        for p in path[:-1]:
            target, source = target[p], source[p]
        target[path[-1]] = source[path[-1]]
    return res


@pytest.mark.slow  # fits 8 models to a 200-patient cohort (about 2-3 s of CPU per cohort)
@pytest.mark.parametrize("cohort", list(COHORTS))
def test_released_results_and_tables_survive_the_attacker(cohort):
    """Every route of issue 21 against results.json and the CSV tables of the demo cohort and
    of cohorts with 3, 5 and 10 ill patients: nothing small is shown or can be solved for.
    And the attacker is not blind: each route's leak, planted back from the unsuppressed
    results, is found."""
    rel = release(cohort)
    leaks = da.attack(rel["results"], rel["oracle"], rel["tables"])
    assert not any(leaks.values()), {k: v for k, v in leaks.items() if v}
    # the release still says something: most counts are shown
    shown = [v for p in da.Attack(rel["results"], rel["oracle"], {})._count_paths() for v in [da.get(rel["results"], p)]]
    assert sum(isinstance(v, int) for v in shown) > len(shown) / 2
    for where, solver, path in PLANTED:
        if where != cohort:
            continue
        planted = _plant(rel["results"], rel["oracle"], path)
        assert planted != rel["results"], path  # the value was hidden
        found = da.attack(planted, rel["oracle"])
        assert found[solver], (solver, path)
        if solver == "smd":  # the SMD as the CSV table rounds it (two decimals) names the cell too
            csv_only = da.tables_of(planted)
            assert da.attack(rel["results"], rel["oracle"], csv_only)["smd"]


@pytest.mark.workflow
def test_the_workflow_release_survives_the_attacker(demo_run):
    """The files the tiny workflow released (every model kind, 40 patients): results.json and
    tables/*.csv as Snakemake wrote them, against the same results built without suppression."""
    out = demo_run / "reports/demo"
    released = json.loads((out / "results.json").read_text())
    proc = demo_run / "data/processed/demo"
    models = {p.stem: json.loads(p.read_text()) for p in sorted((proc / "models").glob("*.json"))}
    info = json.loads((proc / "input.json").read_text())
    oracle = build_results(
        "demo", pd.read_parquet(proc / "sessions.parquet"), info, models, {},
        {"small_cell_threshold": 0, "disclosure": "internal", "confidence_level": 0.95},
    )  # fmt: skip
    assert len(released["models"]) == len(models) >= 15
    leaks = da.attack(released, json.loads(json.dumps(oracle)), da.read_tables(out / "tables"))
    assert not any(leaks.values()), {k: v for k, v in leaks.items() if v}


@pytest.mark.workflow
def test_changing_the_disclosure_settings_reruns_the_report(demo_run, tmp_path):
    """The threshold and the disclosure level are inputs of rule report (params): a change
    schedules the report again, and nothing upstream of it. (A threshold below 10 without
    'internal' is refused by the config check, which the Snakefile runs before any job:
    test_public_threshold_below_ten_is_refused_and_internal_allows_it.)"""
    work = tmp_path / "p"
    shutil.copytree(demo_run, work, symlinks=True)
    cfg_path = work / "config/config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    assert cfg["report"]["small_cell_threshold"] == 10 and cfg["report"]["disclosure"] == "public"
    cfg["report"].update(small_cell_threshold=20, disclosure="internal")
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    dry = run_snakemake(work, "--dry-run", "reports/demo/report.html")
    text = dry.stdout + dry.stderr
    assert dry.returncode == 0, text[-3000:]
    reasons = [line for line in text.splitlines() if "Params have changed" in line]
    assert reasons, text[-3000:]
    # both settings are params: Snakemake lists the old and the new value of each (in either order)
    before, now = reasons[0].split("before:")[1].split("now:")
    assert set(before.strip().split(",")) == {"10", "'public'"}, reasons[0]
    assert set(now.strip().split(",")) == {"20", "'internal'"}, reasons[0]
    assert "rule report:" in text and "rule fit_model:" not in text and "rule prepare" not in text


def test_an_internal_report_says_so_at_the_top_and_in_its_provenance():
    from ketastats.report import FIGURES, TABLES
    from ketastats.report.render import _env

    b = rc.built()
    info = json.loads(b["input"].read_text())
    models = {name: json.loads(path.read_text()) for name, path in b["models"].items()}
    prov = {"input": {"file": info["file"], "sha256": info["sha256"]}, "packages": {"ketastats": "0"},
            "git_commit": "x", "config_yaml": "", "command": "pytest"}  # fmt: skip
    public, internal = (
        build_results("synth", pd.read_parquet(b["sessions"]), info, models, prov, {**report, "confidence_level": 0.95})
        for report in ({"small_cell_threshold": THR}, {"small_cell_threshold": 0, "disclosure": "internal"})
    )
    figures = dict.fromkeys([*FIGURES, "simulation"], "data:,")
    pages = {
        name: _env().render(r=r, figures=figures, titles=FIGURES, notes={}, run_date="x", tables=TABLES)
        for name, r in (("public", public), ("internal", internal))
    }
    banner = "Internal report: not for release."
    assert banner not in pages["public"]
    html = pages["internal"]
    assert html.count(banner) == 2 and "<title>INTERNAL, NOT FOR RELEASE:" in html
    body = html.split("<body>")[1]
    assert body.index(banner) < body.index('id="summary"') and body.rindex(banner) > body.index('id="provenance"')
    assert "shown without small-cell suppression" in html and "Small-cell suppression is off" in html
    assert 'class="every-page"' in html and 'class="every-page"' not in pages["public"]
