"""Small-cell suppression (CMS cell-size policy): counts 1..threshold are never shown.

A count of 1 to ``threshold`` patients or sessions is *primary*-suppressed: shown as
``"<{threshold+1}"``. A count that could be derived from the cells shown next to it (a row
total minus the other cells, a group size minus the other levels) is *complementary*-
suppressed: shown as ``"suppressed"``. Zero is allowed (it discloses nobody).

The rules for a group of cells that add up to a total (:func:`suppress_related`):

1. every cell (and the total) from 1 to ``threshold`` is suppressed;
2. for every additive relation ``total = part_1 + ... + part_k``: if exactly one member is
   suppressed, or the suppressed parts (total shown) add up to 1..``threshold`` (their sum
   could be derived and would itself be a small cell), the smallest non-zero part still
   shown is suppressed too (the total when no part is left);
3. rule 2 is repeated until no relation changes (relations can share cells, as the rows and
   columns of a table with margins do).

Every suppression is recorded in a :class:`SuppressionLog`, which the report prints in its
"Suppression" section and writes to ``results.json``.

References
----------
Centers for Medicare & Medicaid Services (2020). *CMS Cell Size Suppression Policy*.
https://www.hhs.gov/guidance/document/cms-cell-suppression-policy

Examples
--------
>>> log = SuppressionLog(threshold=10)
>>> suppress_related({"total": 120, "ill": 4, "not ill": 116}, [("total", ["ill", "not ill"])], log, "demo")
{'total': 120, 'ill': '<11', 'not ill': 'suppressed'}
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "SUPPRESSED",
    "SuppressionLog",
    "is_small",
    "is_suppressed",
    "suppress_count",
    "suppress_related",
    "small_label",
    "say_count",
]

#: the value shown for a cell suppressed only so that a small cell cannot be derived
SUPPRESSED = "suppressed"


def is_small(n: int | None, threshold: int) -> bool:
    """True when ``n`` is a count that must not be shown (1 <= n <= threshold); 0 is allowed."""
    return n is not None and threshold > 0 and 1 <= int(n) <= threshold


def small_label(threshold: int) -> str:
    """How a primary-suppressed count is shown: ``"<11"`` for threshold 10."""
    return f"<{threshold + 1}"


def is_suppressed(value: Any) -> bool:
    """True when ``value`` is a suppressed cell (a string such as ``"<11"`` or ``"suppressed"``)."""
    return isinstance(value, str)


def suppress_count(n: int | None, threshold: int) -> int | str | None:
    """Return ``n`` itself, or the string ``"<{threshold+1}"`` when it is a small cell.

    Examples
    --------
    >>> suppress_count(0, 10), suppress_count(7, 10), suppress_count(42, 10)
    (0, '<11', 42)
    """
    if n is None:
        return None
    return small_label(threshold) if is_small(n, threshold) else int(n)


def say_count(n: int | str | None) -> str:
    """A (possibly suppressed) count as a sentence shows it.

    Examples
    --------
    >>> say_count(42), say_count("<11"), say_count(SUPPRESSED)
    ('42', 'fewer than 11', '[suppressed]')
    """
    if n == SUPPRESSED:
        return "[suppressed]"
    if isinstance(n, str) and n.startswith("<"):
        return f"fewer than {n[1:]}"
    return "n/a" if n is None else str(n)


@dataclass
class SuppressionLog:
    """What was suppressed, where and why: the report's "Suppression" section.

    Attributes
    ----------
    threshold : int
        Counts from 1 to ``threshold`` are suppressed.
    entries : list of dict
        One per suppressed cell: ``where`` (report section and table), ``cell`` (row/column
        label) and ``reason`` (``"small"`` or ``"complementary"``), in the order found.
    """

    threshold: int
    entries: list[dict[str, str]] = field(default_factory=list)

    def add(self, where: str, cell: str, reason: str) -> None:
        """Record one suppressed cell."""
        self.entries.append({"where": where, "cell": cell, "reason": reason})

    def count(self, n: int | None, where: str, cell: str) -> int | str | None:
        """:func:`suppress_count` that records the suppression."""
        out = suppress_count(n, self.threshold)
        if is_suppressed(out):
            self.add(where, cell, "small")
        return out

    def summary(self) -> list[dict[str, Any]]:
        """Suppressed cells counted per place (``where``) and reason, in order of appearance."""
        counts: dict[tuple[str, str], int] = {}
        for e in self.entries:
            key = (e["where"], e["reason"])
            counts[key] = counts.get(key, 0) + 1
        return [{"where": w, "reason": r, "cells": n} for (w, r), n in counts.items()]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: threshold, labels, every entry and the per-place summary."""
        return {
            "threshold": self.threshold,
            "applied": bool(self.entries),
            "small_label": small_label(self.threshold),
            "complementary_label": SUPPRESSED,
            "entries": list(self.entries),
            "summary": self.summary(),
        }


def _label(key: Hashable) -> str:
    return " / ".join(map(str, key)) if isinstance(key, tuple) else str(key)


def suppress_related(
    cells: Mapping[Hashable, int | None],
    relations: Iterable[tuple[Hashable, Sequence[Hashable]]],
    log: SuppressionLog,
    where: str,
    *,
    undisplayed: Collection[Hashable] = (),
) -> dict[Hashable, int | str | None]:
    """Suppress small cells and every cell from which a small cell could be derived.

    Parameters
    ----------
    cells : mapping
        Cell key -> count (``None`` for a cell that is not shown at all).
    relations : iterable of (total_key, [part_keys])
        Additive relations among the cells: ``cells[total] == sum(cells[parts])``.
    log : SuppressionLog
        Receives one entry per suppressed cell.
    where : str
        Where the cells are shown (for the log), e.g. ``"Table 1"``.
    undisplayed : collection, optional
        Cells that are never shown but could be derived from the others (for example the
        patients without a rating at a session, given the group size and the number
        rated). They are protected like shown cells when they are small, and left out of
        the result.

    Returns
    -------
    dict
        Cell key -> the count, ``"<{threshold+1}"`` (small) or ``"suppressed"``
        (complementary).
    """
    thr = log.threshold
    relations = [(t, list(p)) for t, p in relations]
    undisplayed = set(undisplayed)
    small = {k for k, v in cells.items() if v is not None and is_small(v, thr)}
    hidden = small | undisplayed
    # an undisplayed cell that is not small may be derived: it discloses nobody
    harmless = {k for k in undisplayed if k not in small}
    changed = True
    while changed:
        changed = False
        for total, parts in relations:
            sup = [m for m in [total, *parts] if m in hidden]
            if not sup or (len(sup) == 1 and sup[0] in harmless):
                continue
            sup_parts = [m for m in parts if m in hidden]
            derivable_sum = (
                total not in hidden
                and len(sup_parts) >= 2
                and is_small(sum(cells[m] or 0 for m in sup_parts), thr)
            )
            if len(sup) == 1 or derivable_sum:
                candidates = sorted(
                    (cells[m] or 0, i, m)
                    for i, m in enumerate(parts)
                    if m not in hidden and (cells[m] or 0) > 0
                )
                pick = candidates[0][2] if candidates else (total if total not in hidden else None)
                if pick is not None:
                    hidden.add(pick)
                    changed = True
    out: dict[Hashable, int | str | None] = {}
    for k, v in cells.items():
        if k in undisplayed:
            continue
        if k in small:
            out[k] = small_label(thr)
            log.add(where, _label(k), "small")
        elif k in hidden:
            out[k] = SUPPRESSED
            log.add(where, _label(k), "complementary")
        else:
            out[k] = None if v is None else int(v)
    return out
