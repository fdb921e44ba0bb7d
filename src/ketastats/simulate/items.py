"""MADRS item-level generation: split integer totals over the 10 items (0-6 each).

The core depressive score is spread over all ten items with a patient-specific item profile
(multinomial draw), and the sickness-behaviour shift is spread over items 2 and 4-8
(docs/simulation.md, "Illness effects"). Items never exceed 6; points that would overflow an
item move to the next item with room in a stated preference order, so the item sum always
equals the integer total that was allocated (totals are capped at 60 beforehand).
"""

from __future__ import annotations

import numpy as np

__all__ = ["ITEM_MAX", "N_ITEMS", "allocate_items", "fill_overflow", "stochastic_round"]

ITEM_MAX = 6
N_ITEMS = 10


def stochastic_round(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Round to an integer up or down with probability given by the fraction.

    Unlike ``np.round`` this keeps the expectation: ``E[stochastic_round(1.5)] == 1.5``,
    so a +1.5 point sickness shift is +1.5 on average in the integer items too.
    """
    x = np.asarray(x, dtype=float)
    lo = np.floor(x)
    return (lo + (rng.random(x.shape) < (x - lo))).astype(np.int64)


def fill_overflow(items: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Move points above ``ITEM_MAX`` to other items with room, in ``order`` of preference.

    Parameters
    ----------
    items : ndarray of int, shape (..., 10)
        Item scores, possibly above the maximum; the row sums must be <= 60.
    order : ndarray of int, shape (10,) or broadcastable to ``items``
        Item indices, most preferred receiver first.

    Returns
    -------
    ndarray of int
        Items in 0..6 with unchanged row sums.
    """
    items = np.array(items, dtype=np.int64, copy=True)
    over = np.maximum(items - ITEM_MAX, 0)
    items -= over
    excess = over.sum(axis=-1)
    if not excess.any():
        return items
    order = np.broadcast_to(order, items.shape)
    room = np.take_along_axis(ITEM_MAX - items, order, axis=-1)
    before = np.cumsum(room, axis=-1) - room
    add = np.clip(excess[..., None] - before, 0, room)
    np.put_along_axis(items, order, np.take_along_axis(items, order, axis=-1) + add, axis=-1)
    return items


def allocate_items(
    core_total: np.ndarray,
    sick_total: np.ndarray,
    profile: np.ndarray,
    sick_weights: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Return MADRS items (shape ``core_total.shape + (10,)``) summing to the totals.

    Parameters
    ----------
    core_total, sick_total : ndarray of int
        Integer core (depressive) and sickness points; ``core + sick <= 60``.
    profile : ndarray, shape broadcastable to ``core_total.shape + (10,)``
        Item probabilities of the core score (rows sum to 1).
    sick_weights : ndarray, shape (10,)
        Item probabilities of the sickness points (zero outside items 2 and 4-8).
    rng : numpy.random.Generator

    Returns
    -------
    ndarray of int
        Items 0-6 whose sum over the last axis is ``core_total + sick_total``.
    """
    core_total = np.asarray(core_total, dtype=np.int64)
    sick_total = np.asarray(sick_total, dtype=np.int64)
    profile = np.broadcast_to(profile, (*core_total.shape, N_ITEMS))
    core_order = np.argsort(-profile, axis=-1, kind="stable")
    items = fill_overflow(rng.multinomial(core_total, profile), core_order)
    if sick_total.any():
        sick = rng.multinomial(sick_total, np.broadcast_to(sick_weights, profile.shape))
        sick_first = np.argsort(-sick_weights, kind="stable")
        items = fill_overflow(items + sick, sick_first)
    return items
