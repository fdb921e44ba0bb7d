"""Small-cell suppression: no count of 1..threshold is shown or derivable from what is shown."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from ketastats.report.suppression import (
    SUPPRESSED,
    SuppressionLog,
    is_small,
    is_suppressed,
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
