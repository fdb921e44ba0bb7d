"""Robust fitting: every attempt recorded, bad fits detected and reported, never hidden."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ketastats.exceptions import ModelError
from ketastats.models import fit_with_retries, resolve_estimands, resolve_spec, run_model
from ketastats.models.retries import Diagnosis, hessian_is_pd


def test_retries_until_a_good_fit_and_records_each_attempt():
    def boom():
        raise np.linalg.LinAlgError("singular matrix")

    calls = []

    def fit(value, converged):
        def run():
            calls.append(value)
            return value, converged

        return run

    out = fit_with_retries(
        [("a", boom), ("b", fit(1.0, False)), ("c", fit(2.0, True)), ("d", fit(3.0, True))],
        lambda r: Diagnosis(r[1], False, True, -r[0]),
    )
    assert out.result == (2.0, True) and out.chosen.label == "c"
    assert calls == [1.0, 2.0]  # stops at the first good fit
    assert [a.label for a in out.attempts] == ["a", "b", "c"]
    assert "LinAlgError: singular matrix" in out.attempts[0].message
    assert out.attempts[1].ok is False and out.attempts[2].ok is True


def test_without_a_good_fit_the_best_converged_one_is_kept_and_flagged():
    out = fit_with_retries(
        [
            ("a", lambda: (-5.0, True, True)),
            ("b", lambda: (-1.0, False, False)),
            ("c", lambda: (-3.0, True, True)),
        ],
        lambda r: Diagnosis(r[1], r[2], True, r[0]),
    )
    assert out.chosen.label == "c" and out.singular and out.converged
    assert all(not a.ok for a in out.attempts)


def test_every_attempt_failing_is_an_error_listing_them():
    def bad():
        raise ValueError("diverged")

    with pytest.raises(ModelError, match="a: ValueError: diverged | b: ValueError: diverged"):
        fit_with_retries([("a", bad), ("b", bad)], lambda r: Diagnosis(True, False, True, 0.0))


def test_hessian_check():
    assert hessian_is_pd(np.array([[2.0, 0.5], [0.5, 1.0]]))
    assert not hessian_is_pd(np.array([[1.0, 2.0], [2.0, 1.0]]))  # indefinite
    assert not hessian_is_pd(np.array([[1.0, np.nan], [np.nan, 1.0]]))


def test_boundary_fit_is_reported_as_singular():
    """Group means pulled together (less spread than the residual noise implies): the
    random-intercept variance's REML estimate is zero, and the model JSON says so."""
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(40), 5)
    e = rng.normal(size=200)
    e = e - 0.9 * (np.bincount(g, e) / 5)[g]
    df = pd.DataFrame({"patient_id": [f"P{i:02d}" for i in g], "session": np.tile(np.arange(1, 6), 40)})
    df["x"] = rng.normal(size=200)
    df["y"] = 1.0 + 0.5 * df["x"] + e
    spec = resolve_spec("b", {"kind": "lmm", "formula": "y ~ x", "sessions": "all", "centre": []})
    out = run_model("b", spec, df, resolve_estimands(None))
    assert out["status"] == "ok"
    assert out["singular"] is True
    assert out["random"]["cov"][0][0] < 1e-6 * out["residual_variance"]
    assert any("singular" in m for m in out["messages"])
    assert all(not a["ok"] for a in out["attempts"])  # no attempt was clean
    assert {"label", "ok", "converged", "singular", "hessian_pd", "loglik", "message"} <= set(
        out["attempts"][0]
    )
