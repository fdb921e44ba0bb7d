"""Numerical second derivatives from an exact gradient: the one helper every engine uses.

The engines have analytic gradients (the fast LMM's profiled REML criterion, the quadrature
likelihoods of the logistic GLMM and the Tobit model); their Hessians, from which standard
errors and the positive-definiteness verdicts come, are differences of those gradients.
:func:`gradient_hessian` takes central (default) or forward differences on all or some
coordinates; :func:`central_hessian` is its default step; :func:`richardson_hessian` the
extrapolated check the tests compare against; :func:`newton_polish` takes an optimizer's
answer to full precision with a Hessian held fixed.

Examples
--------
>>> import numpy as np
>>> grad = lambda x: np.array([2 * x[0] + x[1], x[0] + 6 * x[1]])   # f = x0^2 + x0 x1 + 3 x1^2
>>> np.round(central_hessian(grad, np.array([1.0, 2.0])), 6)
array([[2., 1.],
       [1., 6.]])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["gradient_hessian", "central_hessian", "richardson_hessian", "newton_polish"]

Gradient = Callable[[np.ndarray], np.ndarray]


def gradient_hessian(
    grad: Gradient,
    x: np.ndarray,
    step: np.ndarray,
    *,
    coords: Sequence[int] | np.ndarray | None = None,
    scheme: str = "central",
    g0: np.ndarray | None = None,
) -> np.ndarray:
    """Hessian by differences of the gradient ``grad`` at ``x`` (symmetrised).

    Parameters
    ----------
    grad : callable
        The exact gradient.
    x : ndarray
        Where the Hessian is taken.
    step : ndarray
        The step per coordinate (the full length of ``x``).
    coords : sequence of int, optional
        Only these coordinates (rows and columns of the result); all by default.
    scheme : {"central", "forward"}
        Central differences (error of order ``h^2``, two gradients per coordinate) or
        forward differences (order ``h``, one gradient per coordinate plus ``g0``).
    g0 : ndarray, optional
        ``grad(x)``, if known (forward differences only).
    """
    idx = np.arange(len(x)) if coords is None else np.asarray(coords, dtype=int)
    k = idx.size
    H = np.empty((k, k))
    if scheme == "forward" and g0 is None:
        g0 = grad(x)
    for col, j in enumerate(idx):
        e = np.zeros(len(x))
        e[j] = step[j]
        if scheme == "central":
            H[:, col] = (grad(x + e)[idx] - grad(x - e)[idx]) / (2 * step[j])
        elif scheme == "forward":
            H[:, col] = (grad(x + e)[idx] - g0[idx]) / step[j]
        else:
            raise ValueError(f"scheme {scheme!r}: use central or forward")
    return (H + H.T) / 2


def central_hessian(grad: Gradient, x: np.ndarray) -> np.ndarray:
    """Hessian by central differences of an exact gradient (symmetrised).

    The step is 1e-4 (relative above 1). With an exact gradient the truncation error is of
    order ``h^2`` (about 1e-8 relative) and rounding adds ``eps |g| / h``, far below it: the
    Hessian, the standard errors and the positive-definiteness verdict do not depend on the
    step (the tests check it against Richardson extrapolation, :func:`richardson_hessian`).
    """
    return gradient_hessian(grad, x, 1e-4 * np.maximum(np.abs(x), 1.0))


def richardson_hessian(grad: Gradient, x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Hessian from central differences of a gradient, Richardson-extrapolated.

    ``(4 D(h/2) - D(h)) / 3`` removes the ``h^2`` error term of the central difference ``D``.
    """
    return (4 * gradient_hessian(grad, x, h / 2) - gradient_hessian(grad, x, h)) / 3


def newton_polish(
    nll: Callable[[np.ndarray], float],
    grad: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    *,
    hessian: np.ndarray | None = None,
    max_iter: int = 30,
) -> tuple[np.ndarray, float, np.ndarray]:
    """Newton steps on ``nll`` from ``x`` to full precision; returns ``x, nll(x)`` and the Hessian used.

    The Hessian of ``nll`` (differences of the exact gradient) is taken once, at the start,
    unless one is given, and reused (a chord method: near an optimum the Hessian hardly
    changes, so the steps still converge, if linearly). Steps are halved until ``nll`` does
    not rise; the iteration stops when a step moves no coordinate by more than 1e-10
    (relative).
    """
    fx = nll(x)
    H = central_hessian(grad, x) if hessian is None else hessian
    for _ in range(max_iter):
        g = grad(x)
        try:
            step = np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            break
        if not np.all(np.isfinite(step)):
            break
        t, improved = 1.0, False
        while t > 1e-6:
            cand = x - t * step
            fc = nll(cand)
            if fc <= fx:
                x, fx, improved = cand, fc, True
                break
            t /= 2
        if not improved or np.max(np.abs(t * step) / np.maximum(np.abs(x), 1.0)) < 1e-10:
            break
    return x, fx, H
