"""Cluster-robust SEs of kind lmm (``se: cr2 | robust | bias_reduced``): the sandwich, its df, the option, its checks.

The CR0, CR2 (with its Satterthwaite df) and CR3 sandwiches are checked against their dense definitions and
against R's clubSandwich on the demo's primary and complete-case fits and on sleepstudy
(``tests/data/lmm_sandwich_reference.R``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ketastats.models import resolve_estimands, resolve_spec, run_model
from ketastats.models.descriptions import describe_method
from ketastats.models.engines.lmm import fit_mixed
from ketastats.models.engines.sandwich import cluster_robust, cluster_robust_cov
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


def _dense_cr2(y, X, Z, g, G, s2):
    """CR2 and its Satterthwaite df as Pustejovsky & Tipton (2018) write them: N x N matrices, no shortcuts."""
    n, p = X.shape
    V = np.zeros((n, n))
    for k in np.unique(g):
        i = np.flatnonzero(g == k)
        V[np.ix_(i, i)] = Z[i] @ G @ Z[i].T + s2 * np.eye(len(i))
    W = np.linalg.inv(V)
    M = np.linalg.inv(X.T @ W @ X)
    IH = np.eye(n) - X @ M @ X.T @ W
    r = IH @ y
    meat = np.zeros((p, p))
    P = []  # p_i (N x p) per patient: column j for coefficient j
    for k in np.unique(g):
        i = np.flatnonzero(g == k)
        D = np.linalg.cholesky(V[np.ix_(i, i)]).T
        val, vec = np.linalg.eigh(D @ IH[i] @ V @ IH[i].T @ D.T)
        Ai = D.T @ vec @ np.diag(val**-0.5) @ vec.T @ D
        u = X[i].T @ W[np.ix_(i, i)] @ Ai @ r[i]
        meat += np.outer(u, u)
        P.append(IH[i].T @ Ai.T @ W[np.ix_(i, i)] @ X[i] @ M)
    df = []
    for j in range(p):
        Pj = np.column_stack([q[:, j] for q in P])
        omega = Pj.T @ V @ Pj
        df.append(np.trace(omega) ** 2 / (omega**2).sum())
    return M @ meat @ M, np.array(df)


def test_cr2_and_its_df_equal_their_definition():
    rng = np.random.default_rng(4)
    sizes = rng.integers(1, 7, 40)
    g = rng.permutation(np.repeat(np.arange(40), sizes))
    n = len(g)
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.integers(0, 2, n)])
    Z = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = X @ [1.0, 2.0, -1.0] + rng.normal(size=40)[g] + rng.standard_t(3, size=n)
    G, s2 = np.array([[1.0, 0.3], [0.3, 0.5]]), 0.8
    cov, df = _dense_cr2(y, X, Z, g, G, s2)
    got = cluster_robust(y, X, Z, g, G, s2, adjust="cr2", chunk=3)
    assert got.cov == pytest.approx(cov, rel=1e-9, abs=1e-14)
    assert got.df == pytest.approx(df, rel=1e-9)
    assert np.all(got.df < 40)  # fewer than the patients: the df are a small-sample correction


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


REFERENCE = Path(__file__).parent / "data" / "lmm_sandwich_reference.csv"
_TYPES = {"CR0": "none", "CR2": "cr2", "CR3": "mancl_derouen"}


def _reference_fit(data: str):
    """(y, X, Z, groups, fit) of a fit that clubSandwich's reference made."""
    d = Path(__file__).parent / "data"
    if data == "sleepstudy":
        rows = pd.read_csv(d / "sleepstudy.csv")
        res = fit_mixed(rows, "Reaction ~ Days", "Subject", "~Days", reml=True, engine="fast")
        X = np.column_stack([np.ones(len(rows)), rows["Days"]])
        return rows["Reaction"].to_numpy(), X, X.copy(), rows["Subject"].to_numpy(), res
    man = pd.read_csv(d / "demo_rows" / "manifest.csv").set_index("model").loc[data]
    rows = pd.read_csv(d / "demo_rows" / man["file"])
    rows = rows[rows.part == man["part"]].reset_index(drop=True)
    p = len(man["terms"].split(";"))
    random = [int(k) for k in str(man["random"]).split(";")]
    xs = [f"x{k}" for k in range(1, p)]
    zs = [f"x{k}" for k in random if k > 0]
    res = fit_mixed(rows, "y ~ " + " + ".join(xs), "group", "~" + " + ".join(zs), reml=True, engine="fast")
    X = rows[[f"x{k}" for k in range(p)]].to_numpy(float)
    return rows["y"].to_numpy(), X, X[:, random], rows["group"].to_numpy(), res


@pytest.mark.parametrize("data", ["primary", "complete_case", "sleepstudy"])
def test_sandwiches_equal_clubsandwich(data):
    ref = pd.read_csv(REFERENCE)
    ref = ref[ref.data == data]
    y, X, Z, g, res = _reference_fit(data)
    for rtype, adjust in _TYPES.items():
        want = ref[ref.type == rtype]
        got = cluster_robust(y, X, Z, g, res.re_cov, res.residual_variance, adjust=adjust)
        assert res.fixed["estimate"].to_numpy() == pytest.approx(want["estimate"].to_numpy(), rel=1e-5)
        assert np.sqrt(np.diag(got.cov)) == pytest.approx(want["se"].to_numpy(), rel=1e-5)
        if rtype == "CR2":
            assert got.df == pytest.approx(want["df"].to_numpy(), rel=1e-5)
        else:
            assert got.df is None


@pytest.fixture(scope="module")
def fits():
    c = simulate_cohort(150, seed=31)
    data = prepare_sessions(coerce_sessions(c.sessions))
    est = resolve_estimands(None)
    out = {}
    for se in ("model", "robust", "bias_reduced", "cr2"):
        spec = resolve_spec("primary", {"kind": "lmm", "role": "primary", "se": se})
        out[se] = run_model("primary", spec, data, est)
    return out


def test_robust_se_changes_the_ses_not_the_estimates(fits):
    model, robust, reduced = (fits[k] for k in ("model", "robust", "bias_reduced"))
    assert model["status"] == robust["status"] == reduced["status"] == "ok"
    assert model["se_type"] == "model-based" and model["df_method"] == "satterthwaite"
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


def test_cr2_uses_its_own_df(fits):
    cr2, model = fits["cr2"], fits["model"]
    assert cr2["status"] == "ok" and cr2["se_type"].startswith("small-sample cluster-robust sandwich (CR2")
    assert cr2["df_method"] == "bell_mccaffrey"
    eff = cr2["illness_effect"]
    assert eff["estimate"] == pytest.approx(model["illness_effect"]["estimate"], rel=1e-12)
    # the df of a within-patient effect are far below the number of sessions (Satterthwaite's)
    assert eff["df_method"] == "bell_mccaffrey" and 1 < eff["df"] < model["illness_effect"]["df"]
    t = stats.t.ppf(0.975, eff["df"])
    assert eff["ci_high"] == pytest.approx(eff["estimate"] + t * eff["se"])
    assert eff["p_value"] == pytest.approx(2 * stats.t.sf(abs(eff["estimate"] / eff["se"]), eff["df"]))


def test_methods_text_names_the_se(fits):
    assert "σ²(X'V⁻¹X)⁻¹" in describe_method(fits["model"]).se_method
    text = describe_method(fits["bias_reduced"]).se_method
    assert "Mancl-DeRouen" in text and "over patients" in text
    d = describe_method(fits["cr2"])
    assert "CR2" in d.se_method and "bell2002]" in d.se_method
    assert "Satterthwaite degrees of freedom of the CR2 sandwich" in d.inference


def test_se_option_is_checked_per_kind():
    lmm = resolve_spec("m", {"kind": "lmm"})
    assert lmm["se"] == "cr2" and spec_problems("models.m", lmm) == []
    assert spec_problems("models.m", {**lmm, "se": "bias_reduced"}) == []
    problems = " ".join(spec_problems("models.m", {**lmm, "se": "hc3"}))
    assert "kind lmm takes model, robust, bias_reduced or cr2" in problems
    gee = resolve_spec("g", {"kind": "gee"})
    assert spec_problems("models.g", gee) == []
    assert "sandwich SEs only" in " ".join(spec_problems("models.g", {**gee, "se": "model"}))
    glmm = resolve_spec("b", {"kind": "glmm_binary"})
    assert "kinds lmm and gee" in " ".join(spec_problems("models.b", {**glmm, "se": "robust"}))
    assert "cr2 is an option of kinds lmm, lmm_mi and tipping_point" in " ".join(spec_problems("models.g", {**gee, "se": "cr2"}))
