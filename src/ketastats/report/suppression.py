"""Small-cell suppression (CMS cell-size policy): counts 1..threshold are never shown.

A count of 1 to ``threshold`` patients or sessions is *primary*-suppressed: shown as
``"<{threshold+1}"``. A count that could be derived from the cells shown next to it (a row
total minus the other cells, a group size minus the other levels) is *complementary*-
suppressed: shown as ``"suppressed"`` by :func:`suppress_related`, and by the release's
:class:`Disclosure` layer as the **range a reader can derive anyway** (e.g. ``"190-199"``
for the patients analysed when 1 to 10 of 200 were excluded): the interval implied by the
shown counts, the additive relations and the rule itself (a small cell is 1 to
``threshold``, a complementary one above it). It tells nothing that was not derivable, and a
study's headline N is never "suppressed". Zero is allowed (it discloses nobody).

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

One disclosure layer
--------------------
Suppressing each table on its own is not enough: the same count appears in several places
(Table 1's group sizes, the illness section, the trajectories), and a count hidden in one
place can be solved from another (a per-session n next to a hidden group size, the nobs of
a one-row-per-patient model, the difference between two models' nobs, an SMD or a
percentage). :class:`Disclosure` is the single layer through which every count of the
release passes: every section registers its counts and how they relate (additive relations,
equal counts, blocks), the layer decides once for the whole release, and the sections read
the shown values back. Statistics computed from counts (percentages, shares, SMDs, means)
are registered as :meth:`Disclosure.later` values that see the decision. Two rules go
beyond CMS's additive ones:

* a cell that is never shown but is zero (the patients *not* rated at the first session,
  the difference between two models fitted to the same rows) is taken as known: an
  attacker would guess it, so the shown cell beside it is protected as if it were the total;
* a *block* of counts whose relations are not known (a model's bookkeeping) hides all its
  counts when one of them is small (:meth:`Disclosure.link`).

What suppression cannot protect against is said in the README ("What small-cell
suppression does not protect against"): two releases of overlapping cohorts, outside
knowledge of some patients, and anyone with the internal files under ``data/processed``.

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

import heapq
import re
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..exceptions import ConfigError

__all__ = [
    "SUPPRESSED",
    "RANGE",
    "PUBLIC_MIN_THRESHOLD",
    "DISCLOSURE_LEVELS",
    "Disclosure",
    "disclosure_settings",
    "SuppressionLog",
    "is_small",
    "is_suppressed",
    "suppress_count",
    "suppress_related",
    "small_label",
    "say_count",
]

#: the value shown for a cell suppressed only so that a small cell cannot be derived, when no
#: bounded range of it can be derived either
SUPPRESSED = "suppressed"
#: a complementary-suppressed count shown as the range a reader can derive: ``"190-199"``
RANGE = re.compile(r"\d+-\d+")
#: a report for release suppresses at least the counts 1 to 10 (CMS: cells of 1-10 are not shown)
PUBLIC_MIN_THRESHOLD = 10
#: ``report.disclosure``: ``public`` (the default: for release) or ``internal`` (study team only)
DISCLOSURE_LEVELS = ("public", "internal")


def disclosure_settings(settings: Mapping[str, Any]) -> tuple[int, str]:
    """The small-cell threshold and disclosure level of a report, checked.

    A public report (the default) must suppress at least the counts 1 to
    :data:`PUBLIC_MIN_THRESHOLD`; a lower threshold (0 switches suppression off) needs
    ``disclosure: internal``, and the report then says in a banner that it is not for release.

    Raises
    ------
    ConfigError
        When the threshold is lower than the public minimum without ``disclosure: internal``,
        or either setting is not valid.

    Examples
    --------
    >>> disclosure_settings({"small_cell_threshold": 10})
    (10, 'public')
    >>> disclosure_settings({"small_cell_threshold": 0, "disclosure": "internal"})
    (0, 'internal')
    """
    level = settings.get("disclosure", "public")
    if level not in DISCLOSURE_LEVELS:
        raise ConfigError(f"report.disclosure: {level!r} is not allowed; use one of: public, internal.")
    threshold = settings.get("small_cell_threshold", PUBLIC_MIN_THRESHOLD)
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 0:
        raise ConfigError("report.small_cell_threshold: must be a whole number, 0 or more.")
    if threshold < PUBLIC_MIN_THRESHOLD and level != "internal":
        raise ConfigError(threshold_message(threshold))
    return threshold, level


def threshold_message(threshold: int) -> str:
    """Why a threshold below the public minimum is refused (the config check says the same)."""
    what = "switches suppression off" if threshold == 0 else f"shows counts of {threshold + 1} to {PUBLIC_MIN_THRESHOLD}"
    return (
        f"report.small_cell_threshold: {threshold} {what}; a report for release must suppress counts of "
        f"1 to {PUBLIC_MIN_THRESHOLD} patients or sessions (small_cell_threshold: {PUBLIC_MIN_THRESHOLD} or "
        "more). For a report that stays within the study team, also set report.disclosure: internal "
        "(the report then carries a banner saying it is not for release)."
    )


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
    >>> say_count(42), say_count("<11"), say_count(SUPPRESSED), say_count("190-199")
    ('42', 'fewer than 11', '[suppressed]', '190 to 199')
    """
    if n == SUPPRESSED:
        return "[suppressed]"
    if isinstance(n, str) and RANGE.fullmatch(n):
        lo, hi = n.split("-")
        return f"{lo} to {hi}"
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
    relations = [(t, list(p)) for t, p in relations]
    undisplayed = set(undisplayed)
    small, hidden = _protect(cells, relations, log.threshold, undisplayed=undisplayed)
    thr = log.threshold
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


def _protect(
    cells: Mapping[Hashable, float | None],
    relations: Sequence[tuple[Hashable, Sequence[Hashable]]],
    threshold: int,
    *,
    undisplayed: Collection[Hashable] = (),
    links: Sequence[tuple[str, Sequence[Hashable], Sequence[Hashable]]] = (),
) -> tuple[set[Hashable], set[Hashable]]:
    """The small cells, and every cell to hide (small or complementary), of a set of cells.

    ``links`` are ``(trigger, leaders, followers)``: with trigger ``"small"`` the followers
    are hidden when a leader is small, with ``"hidden"`` when a leader is hidden for any
    reason. Relations and links are checked again whenever one of their cells is hidden,
    until nothing changes (a worklist, in the order they were given).
    """
    thr = threshold
    small = {k for k, v in cells.items() if v is not None and is_small(v, thr)}
    # an undisplayed zero is guessable (nobody missing at session 1, two models on the same
    # rows): it is treated as shown; any other undisplayed cell is unknown to a reader
    hidden = small | {k for k in undisplayed if cells.get(k) not in (0, None)}
    harmless = {k for k in undisplayed if k in hidden and k not in small}
    items: list[tuple[str, Any]] = [("rel", r) for r in relations] + [("link", lk) for lk in links]
    member_of: dict[Hashable, list[int]] = {}
    for i, (kind, item) in enumerate(items):
        members = [item[0], *item[1]] if kind == "rel" else [*item[1]]
        for m in members:
            member_of.setdefault(m, []).append(i)
    queue = list(range(len(items)))
    heapq.heapify(queue)
    queued = set(queue)

    def hide(key: Hashable) -> None:
        hidden.add(key)
        for j in member_of.get(key, ()):
            if j not in queued:
                heapq.heappush(queue, j)
                queued.add(j)

    def value(key: Hashable) -> float:
        return cells.get(key) or 0

    while queue:
        i = heapq.heappop(queue)
        queued.discard(i)
        kind, item = items[i]
        if kind == "link":
            trigger, leaders, followers = item
            fired = any(m in (small if trigger == "small" else hidden - harmless) for m in leaders)
            if fired:
                for f in followers:
                    if f not in hidden and value(f) != 0:
                        hide(f)
            continue
        total, parts = item
        sup = [m for m in [total, *parts] if m in hidden]
        if not sup or (len(sup) == 1 and sup[0] in harmless):
            continue
        sup_parts = [m for m in parts if m in hidden]
        derivable_sum = total not in hidden and len(sup_parts) >= 2 and is_small(sum(value(m) for m in sup_parts), thr)
        if len(sup) == 1 or derivable_sum:
            candidates = sorted((value(m), j, m) for j, m in enumerate(parts) if m not in hidden and value(m) > 0)
            pick = candidates[0][2] if candidates else (total if total not in hidden else None)
            if pick is not None:
                hide(pick)
    return small, hidden


class _Later:
    """A value computed once the layer has decided (see :meth:`Disclosure.later`)."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[Disclosure], Any]):
        self.fn = fn


class _Cell:
    """A registered count, replaced by its shown value (see :meth:`Disclosure.fill`)."""

    __slots__ = ("key",)

    def __init__(self, key: Hashable):
        self.key = key


class Disclosure:
    """The release's disclosure layer: every count, how the counts relate, one decision.

    Sections register their counts (:meth:`count`), the additive relations among them
    (:meth:`relate`, :meth:`same`), blocks of counts with unknown relations (:meth:`link`) and
    values computed from counts (:meth:`later`), and build their output with the placeholders
    these return. :meth:`resolve` decides, for the whole release at once, which counts are
    small (shown as ``"<{threshold+1}"``) and which must be hidden so that no small count can
    be derived (``"suppressed"``), and logs them; :meth:`fill` then puts the shown values in
    place of the placeholders.

    A key registered twice is one cell (its value must be the same): the group sizes of
    Table 1, the illness section and the trajectories are one set of cells.

    Parameters
    ----------
    threshold : int
        Counts from 1 to ``threshold`` are small (0: nothing is suppressed).
    log : SuppressionLog, optional
        Receives the suppressed cells (a new one by default).

    Examples
    --------
    >>> layer = Disclosure(10)
    >>> table = {"all": layer.count("all", 120, where="T"), "ill": layer.count("ill", 4, where="T"),
    ...          "well": layer.count("well", 116, where="T")}
    >>> layer.relate("all", ["ill", "well"])
    >>> share = layer.later(lambda d: 100 * 4 / 120 if d.shown_all(["ill", "all"]) else None)
    >>> layer.resolve()
    >>> layer.fill({**table, "ill_pct": share})
    {'all': 120, 'ill': '<11', 'well': '110-119', 'ill_pct': None}
    """

    def __init__(self, threshold: int, *, log: SuppressionLog | None = None):
        self.threshold = int(threshold)
        self.log = log if log is not None else SuppressionLog(self.threshold)
        self._cells: dict[Hashable, float | None] = {}
        self._label: dict[Hashable, tuple[str, str]] = {}
        self._undisplayed: set[Hashable] = set()
        self._relations: list[tuple[Hashable, list[Hashable]]] = []
        self._links: list[tuple[str, tuple[Hashable, ...], tuple[Hashable, ...]]] = []
        self._small: set[Hashable] | None = None
        self._hidden: set[Hashable] = set()
        self._range_cache: dict[Hashable, tuple[float, float]] | None = None

    # ---------------------------------------------------------- register
    def count(
        self,
        key: Hashable,
        n: float | None,
        *,
        where: str = "",
        label: str | None = None,
        display: bool = True,
    ) -> _Cell:
        """Register a count (or a mean of counts); returns its placeholder.

        ``display=False`` registers a cell that is never shown but could be derived (the
        patients not rated at a session, the rows one model has and another has not).
        """
        if self._small is not None:
            raise RuntimeError("the disclosure layer has decided already; register before resolve()")
        if key in self._cells:
            if self._cells[key] != n:
                raise ValueError(f"count {_label(key)!r} registered twice with different values")
        else:
            self._cells[key] = n
            if not display:
                self._undisplayed.add(key)
        if display:
            self._undisplayed.discard(key)
            self._label.setdefault(key, (where, label if label is not None else _label(key)))
        return _Cell(key)

    def known(self, key: Hashable) -> bool:
        """Whether ``key`` has been registered."""
        return key in self._cells

    def relate(self, total: Hashable, parts: Sequence[Hashable]) -> None:
        """``total = sum(parts)`` (registered keys)."""
        self._relations.append((total, list(parts)))

    def same(self, a: Hashable, b: Hashable) -> None:
        """Two registered cells hold the same count (one is shown only if the other is)."""
        self.relate(a, [b])

    def link(self, keys: Iterable[Hashable]) -> None:
        """A block of counts whose relations are unknown: if one is small, all are hidden."""
        keys = tuple(keys)
        if len(keys) > 1:
            self._links.append(("small", keys, keys))

    def follow(self, leader: Hashable, followers: Iterable[Hashable]) -> None:
        """The followers are hidden whenever ``leader`` is hidden, for whatever reason."""
        self._links.append(("hidden", (leader,), tuple(followers)))

    def later(self, fn: Callable[[Disclosure], Any]) -> _Later:
        """A placeholder for ``fn(layer)``, called by :meth:`fill` (after :meth:`resolve`)."""
        return _Later(fn)

    # ------------------------------------------------------------ decide
    def resolve(self) -> None:
        """Decide which registered counts are shown, for the whole release; log the others."""
        if self._small is not None:
            return
        self._small, self._hidden = _protect(
            self._cells, self._relations, self.threshold, undisplayed=self._undisplayed, links=self._links
        )
        for key in self._cells:
            if key in self._undisplayed:
                continue
            where, label = self._label[key]
            if key in self._small:
                self.log.add(where, label, "small")
            elif key in self._hidden:
                self.log.add(where, label, "complementary")

    def _decided(self) -> None:
        if self._small is None:
            raise RuntimeError("call resolve() before reading the shown values")

    def _ranges(self) -> dict[Hashable, tuple[float, float]]:
        """The interval of each count that a reader of the release can derive.

        A shown count is itself; a small one is 1 to ``threshold``; a complementary one is above
        ``threshold`` (a hidden cell is never 0, and never small unless it is shown as small);
        a count never displayed is 0 if it is 0 (the layer treats those as guessable) and
        unknown otherwise. Each additive relation ``total = sum(parts)`` narrows the intervals
        of its members, until nothing changes.
        """
        if self._range_cache is not None:
            return self._range_cache
        inf = float("inf")
        thr = self.threshold
        iv: dict[Hashable, tuple[float, float]] = {}
        for k, v in self._cells.items():
            if k in self._undisplayed:
                iv[k] = (0.0, 0.0) if v == 0 else (0.0, inf)
            elif k in self._small:
                iv[k] = (1.0, float(thr))
            elif k in self._hidden:
                iv[k] = (float(thr + 1), inf)
            else:
                iv[k] = (float(v or 0), float(v or 0))
        # a fixed order (not the order sections registered in) and iteration to the fixpoint: the
        # same release gives the same ranges in every process
        relations = sorted(self._relations, key=repr)
        for _ in range(10_000):
            changed = False
            for total, parts in relations:
                lo_sum = sum(iv[m][0] for m in parts)
                hi_sum = sum(iv[m][1] for m in parts)
                t_lo, t_hi = iv[total]
                new_t = (max(t_lo, lo_sum), min(t_hi, hi_sum))
                if new_t != iv[total]:
                    iv[total], changed = new_t, True
                t_lo, t_hi = iv[total]
                for m in parts:
                    o_lo = lo_sum - iv[m][0]
                    o_hi = hi_sum - iv[m][1]
                    new = (max(iv[m][0], t_lo - o_hi), min(iv[m][1], t_hi - o_lo))
                    if new != iv[m]:
                        iv[m], changed = new, True
                        lo_sum = sum(iv[x][0] for x in parts)
                        hi_sum = sum(iv[x][1] for x in parts)
            if not changed:
                break
        self._range_cache = iv
        return iv

    def range_of(self, key: Hashable) -> tuple[int, int] | None:
        """The derivable interval of a complementary-suppressed count (None when unbounded)."""
        self._decided()
        lo, hi = self._ranges()[key]
        if hi == float("inf") or lo >= hi:
            return None
        return int(lo), int(hi)

    def value(self, key: Hashable) -> int | float | str | None:
        """The shown value of a registered count: itself, ``"<{threshold+1}"``, the range a
        reader can derive anyway (``"190-199"``), or ``"suppressed"`` when that is unbounded."""
        self._decided()
        if key in self._small:
            return small_label(self.threshold)
        if key in self._hidden:
            bounds = None if isinstance(self._cells[key], float) else self.range_of(key)
            return SUPPRESSED if bounds is None else f"{bounds[0]}-{bounds[1]}"
        v = self._cells[key]
        return v if v is None or isinstance(v, float) else int(v)

    def hidden(self, key: Hashable) -> bool:
        """Whether a registered count is not shown (small or complementary)."""
        self._decided()
        return key in self._hidden

    def shown_all(self, keys: Iterable[Hashable]) -> bool:
        """Whether every one of ``keys`` is registered and shown."""
        self._decided()
        return all(k in self._cells and k not in self._hidden for k in keys)

    def fill(self, obj: Any) -> Any:
        """``obj`` with every placeholder replaced by its shown value (dicts and lists copied)."""
        self._decided()
        if isinstance(obj, _Cell):
            return self.value(obj.key)
        if isinstance(obj, _Later):
            return self.fill(obj.fn(self))
        if isinstance(obj, Mapping):
            return {k: self.fill(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [self.fill(v) for v in obj]
        return obj

    def raw(self, key: Hashable) -> float | None:
        """The registered (true) value of ``key``: for the layer's callers, never for the release."""
        return self._cells[key]
