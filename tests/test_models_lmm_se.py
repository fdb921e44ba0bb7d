"""Cluster-robust SEs of kind lmm (``se: robust | bias_reduced``): the sandwich, the option, its checks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from ketastats.models import resolve_estimands, resolve_spec, run_model
from ketastats.models.descriptions import describe_method
from ketastats.models.engines.satterthwaite import cluster_robust_cov
from ketastats.models.specs import spec_problems
from ketastats.prepare import prepare_sessions
from ketastats.simulate import simulate_cohort
from ketastats.validate import coerce_sessions


def _dense_sandwich(y, X, Z, g, G, s2, bias_reduced):
    """The sandwich written out with the full n x n V (the definition, no Woodbury, no chunks)."""
    n = len(y)
    V = np.zeros((n, n))
    for p in np.unique(g):
        i = np.flatnonzero(g == p)
        V[np.ix_(i, i)] = Z[i] @ G @ Z[i].T + s2 * np.eye(len(i))
    W = np.linalg.inv(V)
    A = np.linalg.inv(X.T @ W @ X)
    r = y - X @ (A @ X.T @ W @ y)
    meat = np.zeros((X.shape[1], X.shape[1]))
    for p in np.unique(g):
        i = np.flatnonzero(g == p)
        Wi, ri = W[np.ix_(i, i)], r[i]
        if bias_reduced:
            ri = np.linalg.solve(np.eye(len(i)) - X[i] @ A @ X[i].T @ Wi, ri)
        u = X[i].T @ Wi @ ri
        meat += np.outer(u, u)
    return A @ meat @ A


@pytest.mark.parametrize("bias_reduced", [False, True])
def test_sandwich_equals_its_definition(bias_reduced):
    rng = np.random.default_rng(4)
    sizes = rng.integers(1, 7, 40)
    g = rng.permutation(np.repeat(np.arange(40), sizes))  # patients' rows interleaved
    n = len(g)
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.integers(0, 2, n)])
    Z = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = X @ [1.0, 2.0, -1.0] + rng.normal(size=40)[g] + rng.standard_t(3, size=n)
    G, s2 = np.array([[1.0, 0.3], [0.3, 0.5]]), 0.8
    want = _dense_sandwich(y, X, Z, g, G, s2, bias_reduced)
    got = cluster_robust_cov(y, X, Z, g, G, s2, bias_reduced=bias_reduced, chunk=3)
    assert got == pytest.approx(want, rel=1e-9, abs=1e-14)


def test_bias_reduction_enlarges_the_sandwich():
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(15), 4)
    X = np.column_stack([np.ones(60), rng.normal(size=60)])
    y = X @ [0.0, 1.0] + rng.normal(size=15)[g] + rng.normal(size=60)
    Z = np.ones((60, 1))
    plain = cluster_robust_cov(y, X, Z, g, np.array([[1.0]]), 1.0)
    reduced = cluster_robust_cov(y, X, Z, g, np.array([[1.0]]), 1.0, bias_reduced=True)
    assert np.all(np.diag(reduced) > np.diag(plain))


@pytest.fixture(scope="module")
def fits():
    c = simulate_cohort(150, seed=31)
    data = prepare_sessions(coerce_sessions(c.sessions))
    est = resolve_estimands(None)
    out = {}
    for se in ("model", "robust", "bias_reduced"):
        spec = resolve_spec("primary", {"kind": "lmm", "role": "primary", "se": se})
        out[se] = run_model("primary", spec, data, est)
    return out


def test_robust_se_changes_the_ses_not_the_estimates(fits):
    model, robust, reduced = (fits[k] for k in ("model", "robust", "bias_reduced"))
    assert model["status"] == robust["status"] == reduced["status"] == "ok"
    assert "se_type" not in model and model["df_method"] == "satterthwaite"  # the JSON as before the option
    assert robust["se_type"] == "cluster-robust (sandwich)"
    assert reduced["se_type"].startswith("bias-reduced")
    for out in (robust, reduced):
        assert out["df_method"] == "normal"
        for term, v in out["fixed"].items():
            assert v["estimate"] == pytest.approx(model["fixed"][term]["estimate"], rel=1e-12)
    se = {k: fits[k]["illness_effect"]["se"] for k in fits}
    assert se["robust"] != pytest.approx(se["model"], rel=1e-3)
    assert se["bias_reduced"] > se["robust"]
    eff = reduced["illness_effect"]
    z = stats.norm.ppf(0.975)
    assert eff["df_method"] == "normal" and eff["df"] is None
    assert eff["ci_low"] == pytest.approx(eff["estimate"] - z * eff["se"])
    assert eff["p_value"] == pytest.approx(2 * stats.norm.sf(abs(eff["estimate"] / eff["se"])))


def test_methods_text_names_the_se(fits):
    assert "σ²(X'V⁻¹X)⁻¹" in describe_method(fits["model"]).se_method
    text = describe_method(fits["bias_reduced"]).se_method
    assert "Mancl-DeRouen" in text and "over patients" in text


def test_se_option_is_checked_per_kind():
    lmm = resolve_spec("m", {"kind": "lmm"})
    assert lmm["se"] == "model" and spec_problems("models.m", lmm) == []
    assert spec_problems("models.m", {**lmm, "se": "bias_reduced"}) == []
    problems = " ".join(spec_problems("models.m", {**lmm, "se": "hc3"}))
    assert "kind lmm takes model, robust or bias_reduced" in problems
    gee = resolve_spec("g", {"kind": "gee"})
    assert spec_problems("models.g", gee) == []
    assert "sandwich SEs only" in " ".join(spec_problems("models.g", {**gee, "se": "model"}))
    glmm = resolve_spec("b", {"kind": "glmm_binary"})
    assert "kinds lmm and gee" in " ".join(spec_problems("models.b", {**glmm, "se": "robust"}))
