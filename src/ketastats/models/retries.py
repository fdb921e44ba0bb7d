"""Robust fitting: try optimizers in turn, detect bad fits, record every attempt.

A fit is *good* when the optimizer converged, no variance parameter sits at its boundary
(a singular fit) and the Hessian at the optimum is positive definite. :func:`fit_with_retries`
runs the attempts it is given in order, stops at the first good one and otherwise keeps
the attempt with the highest log-likelihood, flagged as it is: a failed or singular fit is
reported, never silently used as if it were fine.

:class:`SkipModel` is raised by a model whose data lack what it needs (no ill sessions, no
cytokine draws, too few events); the model's JSON then says ``status: "skipped"`` with
the reason.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

from ..exceptions import KetastatsError, ModelError
from .counted import CountedText, escape

__all__ = ["SkipModel", "Attempt", "RetryOutcome", "fit_with_retries", "hessian_is_pd"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class SkipModel(KetastatsError):
    """The data cannot support this model (the message says why); it is skipped, not failed.

    A reason that quotes counts of patients, sessions, draws or events gives them as keyword
    arguments and names them in the message as ``{name}`` (other braces doubled, see
    :func:`~ketastats.models.counted.escape`), so that the report can suppress small ones::

        raise SkipModel(escape(label) + ": {n} patient(s)", n=3)

    Without counts the message is plain text. ``counted`` is the reason as a
    :class:`~ketastats.models.counted.CountedText`.
    """

    def __init__(self, message: str, **counts: int):
        self.counted = CountedText(message if counts else escape(message), {k: int(v) for k, v in counts.items()})
        super().__init__(str(self.counted))


@dataclass
class Attempt:
    """One try at fitting a model: what was tried and how it ended."""

    label: str
    ok: bool = False
    converged: bool = False
    singular: bool = False
    hessian_pd: bool | None = None
    loglik: float | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["loglik"] is not None and not math.isfinite(d["loglik"]):
            d["loglik"] = None
        return d


@dataclass
class Diagnosis:
    """What an assessor says about a fitted result."""

    converged: bool
    singular: bool
    hessian_pd: bool | None
    loglik: float | None
    messages: list[str] = field(default_factory=list)


@dataclass
class RetryOutcome(Generic[T]):
    """The chosen result and every attempt made."""

    result: T
    chosen: Attempt
    attempts: list[Attempt]

    @property
    def converged(self) -> bool:
        return self.chosen.converged

    @property
    def singular(self) -> bool:
        return self.chosen.singular or self.chosen.hessian_pd is False

    def attempts_dicts(self) -> list[dict[str, Any]]:
        return [a.to_dict() for a in self.attempts]


def hessian_is_pd(h: np.ndarray, rtol: float = 1e-8) -> bool:
    """True when the symmetric matrix ``h`` is finite and positive definite (relative tolerance)."""
    h = np.asarray(h, dtype=float)
    if h.size == 0:
        return True
    if not np.all(np.isfinite(h)):
        return False
    eig = np.linalg.eigvalsh((h + h.T) / 2)
    return bool(eig.min() > rtol * max(abs(eig).max(), 1e-300))


def fit_with_retries(
    attempts: Sequence[tuple[str, Callable[[], T]]],
    assess: Callable[[T], Diagnosis],
) -> RetryOutcome[T]:
    """Run fitting attempts in order until one is good; keep the best otherwise.

    Parameters
    ----------
    attempts : sequence of (label, callable)
        Each callable fits the model one way (an optimizer, an engine) and returns a result.
        Exceptions of type :class:`ModelError`, :class:`numpy.linalg.LinAlgError`,
        :class:`ValueError`, :class:`ArithmeticError` count as a failed attempt; others
        propagate.
    assess : callable
        Result -> :class:`Diagnosis` (converged, singular, Hessian positive definite, loglik).

    Returns
    -------
    RetryOutcome
        ``result`` is the first good fit, else the converged fit with the highest
        log-likelihood, else the fit with the highest log-likelihood.

    Raises
    ------
    ModelError
        When every attempt raised; the message lists each attempt's error.

    Examples
    --------
    >>> def bad(): raise ValueError("diverged")
    >>> out = fit_with_retries([("a", bad), ("b", lambda: 1.0)],
    ...                        lambda r: Diagnosis(True, False, True, -r))
    >>> out.result, [a.ok for a in out.attempts]
    (1.0, [False, True])
    """
    done: list[tuple[Attempt, Any]] = []
    records: list[Attempt] = []
    for label, fn in attempts:
        rec = Attempt(label=label)
        records.append(rec)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = fn()
            diag = assess(result)
        except SkipModel:
            raise
        except (ModelError, np.linalg.LinAlgError, ValueError, ArithmeticError) as exc:
            rec.message = f"{type(exc).__name__}: {exc}"
            log.info("attempt %s failed: %s", label, rec.message)
            continue
        rec.converged, rec.singular, rec.hessian_pd = diag.converged, diag.singular, diag.hessian_pd
        rec.loglik = diag.loglik
        rec.message = "; ".join(diag.messages)
        rec.ok = bool(diag.converged and not diag.singular and diag.hessian_pd is not False)
        done.append((rec, result))
        log.info(
            "attempt %s: converged=%s singular=%s hessian_pd=%s loglik=%s",
            label,
            rec.converged,
            rec.singular,
            rec.hessian_pd,
            rec.loglik,
        )
        if rec.ok:
            return RetryOutcome(result, rec, records)
    if not done:
        raise ModelError(
            "every fitting attempt failed: " + " | ".join(f"{a.label}: {a.message}" for a in records)
        )

    def key(item):
        rec = item[0]
        ll = rec.loglik if rec.loglik is not None and math.isfinite(rec.loglik) else -math.inf
        return (rec.converged, ll)

    rec, result = max(done, key=key)
    return RetryOutcome(result, rec, records)
