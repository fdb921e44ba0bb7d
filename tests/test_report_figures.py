"""Figures do not let a reader count a small group: what they draw follows results.json."""

from __future__ import annotations

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import report_cohort as rc

from ketastats.report.figures import cytokine_figure, illness_timeline_figure, trajectory_figure


def sessions() -> pd.DataFrame:
    return pd.read_parquet(rc.built()["sessions"])


def texts(fig) -> str:
    return " ".join(t.get_text() for ax in fig.axes for t in ax.texts)


def test_swimmer_plot_is_withheld_when_ever_ill_count_is_suppressed():
    fig = illness_timeline_figure(sessions(), {"ever_ill": "<11", "ill_sessions": 14, "by_type": []})
    assert "small-cell rule" in texts(fig)
    assert all(not ax.lines for ax in fig.axes)


def test_swimmer_plot_merges_illness_types_when_a_type_count_is_suppressed():
    df = sessions()
    shown = illness_timeline_figure(
        df, {"ever_ill": 24, "ill_sessions": 47, "by_type": [{"type": "cold", "sessions": 20}]}
    )
    labels = {t.get_text() for t in shown.axes[0].get_legend().get_texts()}
    assert {"ill: cold", "ill: flu", "ill: gi"} <= labels
    merged = illness_timeline_figure(
        df,
        {
            "ever_ill": 24,
            "ill_sessions": 47,
            "by_type": [{"type": "cold", "sessions": 20}, {"type": "gi", "sessions": "<11"}],
        },
    )
    labels = {t.get_text() for t in merged.axes[0].get_legend().get_texts()}
    assert labels == {"session", "ill"}
    # one row per ever-ill patient: as many rows as ever-ill patients
    n_ever = int(df.groupby("patient_id")["ill"].max().sum())
    assert len(merged.axes[0].collections) == n_ever


def test_individual_lines_lose_group_colours_when_a_group_count_is_suppressed():
    df = sessions()
    summary = []
    fig = trajectory_figure(
        df, summary, group_n={"never_ill": "suppressed", "ever_ill": "<11", "overall": 80}
    )
    colours = {mcolors.to_hex(line.get_color()) for line in fig.axes[0].lines}
    assert colours == {mcolors.to_hex("0.4")}
    fig = trajectory_figure(df, summary, group_n={"never_ill": 56, "ever_ill": 24, "overall": 80})
    assert len({mcolors.to_hex(line.get_color()) for line in fig.axes[0].lines}) == 2
    fig = trajectory_figure(df, summary, group_n={"never_ill": "<11", "ever_ill": 0, "overall": "<11"})
    assert not fig.axes[0].lines and "small-cell rule" in texts(fig)


def test_trajectory_means_drawn_only_where_results_hold_them():
    df = sessions()
    summary = [
        {"ever_ill": 0, "session": 1, "n": 56, "mean": 28.0, "ci_low": 27.0, "ci_high": 29.0},
        {"ever_ill": 0, "session": 2, "n": "<11", "mean": None, "ci_low": None, "ci_high": None},
        {"ever_ill": 0, "session": 3, "n": 40, "mean": 22.0, "ci_low": 21.0, "ci_high": 23.0},
    ]
    fig = trajectory_figure(df, summary, group_n={"never_ill": 56, "ever_ill": 24, "overall": 80})
    (line,) = fig.axes[1].lines
    np.testing.assert_allclose(line.get_ydata(), [28.0, 22.0])
    assert "<11" in texts(fig)  # the suppressed count, as results.json has it


def test_cytokine_with_few_detected_values_is_not_drawn():
    df = sessions()
    summary = [
        {
            "marker": "il6_pg_ml",
            "label": "IL-6",
            "detected": "<11",
            "below_lod": 470,
            "below_lod_pct": 97.9,
            "lod": [0.15],
        }
    ]
    fig = cytokine_figure(df, summary)
    assert "too few detected values" in texts(fig) and not fig.axes[0].lines


def test_cytokine_without_a_known_detection_limit_is_drawn():
    # the contract records a limit only with censored values: a marker may have none
    df = sessions()
    summary = [
        {
            "marker": "il6_pg_ml",
            "label": "IL-6",
            "detected": 468,
            "below_lod": 0,
            "below_lod_pct": 0.0,
            "lod": [],
        }
    ]
    fig = cytokine_figure(df, summary)
    ax = fig.axes[0]
    assert ax.get_legend() is None  # no detection-limit line to explain
    assert len(ax.lines) == 4  # the density and its three quartile lines
    assert "below limit: 0 sessions (0%)" in texts(fig)


def test_a_cohort_without_illness_data_is_drawn_as_one_group_in_its_own_score_and_unit():
    df = sessions().drop(columns=["ill", "ever_ill"], errors="ignore")
    df = df.rename(columns={"madrs": "hamd17"})
    summary = [{"ever_ill": 0, "session": 1, "n": 80, "mean": 24.0, "ci_low": 23.0, "ci_high": 25.0},
               {"ever_ill": 0, "session": 2, "n": 78, "mean": 20.0, "ci_low": 19.0, "ci_high": 21.0}]
    fig = trajectory_figure(
        df.assign(ever_ill=0), summary, group_n={"never_ill": 80, "ever_ill": 0, "overall": 80},
        score="hamd17", score_label="HAM-D 17", unit="week",
    )
    left, right = fig.axes[0], fig.axes[1]
    assert {mcolors.to_hex(line.get_color()) for line in left.lines} == {mcolors.to_hex("0.4")}
    assert left.get_title() == "Individual patients" and left.get_ylabel() == "HAM-D 17 total"
    assert left.get_xlabel() == "Session (week number)"
    assert right.get_title().endswith("all patients (no illness data)")
    assert [t.get_text() for t in right.get_legend().get_texts()] == ["all patients"]
    assert "never ill" not in texts(fig)
