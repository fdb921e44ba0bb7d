"""Multiple imputation (kind lmm_mi) and the delta-adjusted tipping point (kind tipping_point):
Rubin's rules against the textbook formulas, predictive mean matching, recovery of a known
illness effect under MAR where the available-case and completers analyses are biased, the
tipping point on data that really are MNAR, and both kinds end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from models_sim import prepared_cohort
from scipy import stats

from ketastats.config import load_config, model_spec
from ketastats.models import resolve_estimands, resolve_spec, run_model
from ketastats.models.engines.mice import build_wide, complete_long, mice_pmm, pool_rubin
from ketastats.models.kinds.tipping_point import conclusion_of
from ketastats.prepare import prepare_sessions

DEFAULT_EST = resolve_estimands(None)
TRUE_B = 3.0


# ----------------------------------------------------------------------------- Rubin's rules
def test_rubin_rules_match_a_hand_computation():
    # m = 5 imputations, two parameters
    q = np.array([[1.0, 10.0], [1.2, 10.5], [0.9, 9.0], [1.1, 11.0], [1.3, 9.5]])
    u = np.array([[0.04, 1.0], [0.05, 1.2], [0.04, 0.8], [0.06, 1.0], [0.05, 1.0]])
    nu_com = 50.0
    r = pool_rubin(q, u, nu_com)
    # parameter 1 by hand: Q-bar = 5.5 / 5 = 1.1; U-bar = 0.24 / 5 = 0.048
    # B = sum((q - 1.1)^2) / 4 = (0.01 + 0.01 + 0.04 + 0 + 0.04) / 4 = 0.025
    # T = 0.048 + 1.2 * 0.025 = 0.078; r = 0.03 / 0.048 = 0.625; lambda = 0.03 / 0.078
    # nu_old = 4 / lambda^2; nu_obs = 51/53 * 50 * (1 - lambda); nu = nu_old nu_obs / (nu_old + nu_obs)
    # fmi = (r + 2 / (nu + 3)) / (1 + r)
    lam = 0.03 / 0.078
    nu_old = 4 / lam**2
    nu_obs = 51 / 53 * 50 * (1 - lam)
    nu = nu_old * nu_obs / (nu_old + nu_obs)
    assert r.estimate[0] == pytest.approx(1.1)
    assert r.within[0] == pytest.approx(0.048)
    assert r.between[0] == pytest.approx(0.025)
    assert r.total[0] == pytest.approx(0.078)
    assert r.riv[0] == pytest.approx(0.625)
    assert r.lam[0] == pytest.approx(lam)
    assert r.df[0] == pytest.approx(nu)
    assert nu == pytest.approx(14.1329, abs=1e-3)  # the number, written out once
    assert r.fmi[0] == pytest.approx((0.625 + 2 / (nu + 3)) / 1.625)
    # parameter 2: Q-bar = 10; B = (0 + 0.25 + 1 + 1 + 0.25) / 4 = 0.625; U-bar = 1.0
    assert r.estimate[1] == pytest.approx(10.0)
    assert r.total[1] == pytest.approx(1.0 + 1.2 * 0.625)
    assert r.se[1] == pytest.approx(math.sqrt(1.75))


def test_rubin_without_between_variance_has_the_complete_data_df():
    q = np.full((4, 1), 2.0)
    r = pool_rubin(q, np.full((4, 1), 0.5), 30.0)
    assert r.between[0] == 0 and r.total[0] == 0.5 and r.fmi[0] == pytest.approx(2 / (r.df[0] + 3))
    assert r.df[0] == pytest.approx(31 / 33 * 30)
    # no complete-data df: Rubin's (1987) large-sample df (m - 1) / lambda^2
    q2 = np.array([[0.0], [1.0], [2.0]])
    r2 = pool_rubin(q2, np.ones((3, 1)))
    lam = (4 / 3) / (1 + 4 / 3)
    assert r2.df[0] == pytest.approx(2 / lam**2)


# ----------------------------------------------------------------------------- PMM basics
@pytest.fixture(scope="module")
def gappy():
    """A small prepared cohort with intermittent missing ratings and two dropouts."""
    df, _ = prepared_cohort(60, seed=5, sessions=6)
    rng = np.random.default_rng(2)
    post = df["session"] > 1
    df.loc[post & (rng.random(len(df)) < 0.15), "madrs"] = np.nan
    drop = df["patient_id"].isin(["P0003", "P0007"]) & (df["session"] >= 4)
    return df.loc[~drop].reset_index(drop=True)


def _wide(df):
    return build_wide(
        df,
        outcome="madrs",
        analysis_session=["ill", "days_since_prev"],
        auxiliary_patient=["il6_pg_ml", "crp_mg_l"],
    )


def test_pmm_keeps_observed_cells_and_donates_observed_values(gappy):
    wide = _wide(gappy)
    frame = wide.frame.to_numpy()
    miss = np.isnan(frame)
    assert miss.any() and wide.attended.sum() == len(gappy)
    done, info = mice_pmm(wide, m=3, iterations=4, donors=5, seed=7)
    assert info["cells_imputed"] == int(miss.sum())
    for x in done:
        assert not np.isnan(x).any()
        assert np.array_equal(x[~miss], frame[~miss])  # observed cells unchanged
        for j, col in enumerate(wide.frame.columns):
            observed = set(frame[~miss[:, j], j])
            assert set(x[miss[:, j], j]) <= observed, col  # imputed values are observed values
            if col.startswith("ill@"):
                assert set(np.unique(x[:, j])) <= {0.0, 1.0}
    # the dropouts' sessions 4-6 are rows of the completed long data, flagged as not attended
    long = complete_long(wide, done[0])
    added = long.loc[~long["_attended"]]
    assert len(added) == 2 * 3 and set(added["session"]) == {4, 5, 6}
    assert added["_imputed_madrs"].all() and long.loc[long["_attended"], "madrs"].notna().all()
    assert (long.groupby("patient_id")["madrs_baseline"].nunique() == 1).all()
    lag = long.groupby("patient_id")["ill"].shift(1).fillna(0.0)
    assert np.array_equal(long["ill_lag1"].to_numpy(), lag.to_numpy())


def test_imputations_are_byte_identical_per_seed(gappy):
    wide = _wide(gappy)
    a, _ = mice_pmm(wide, m=3, iterations=3, seed=11)
    b, _ = mice_pmm(wide, m=3, iterations=3, seed=11)
    c, _ = mice_pmm(wide, m=3, iterations=3, seed=12)
    assert all(x.tobytes() == y.tobytes() for x, y in zip(a, b))
    assert any(x.tobytes() != y.tobytes() for x, y in zip(a, c))
    # the m chains are different draws, not copies
    assert a[0].tobytes() != a[1].tobytes()


# ----------------------------------------------------------------------------- MAR recovery
def mar_cohort(n: int, seed: int, *, b: float = TRUE_B, sessions: int = 7, shift: float = 0.0,
               mechanism: str = "auxiliary"):  # fmt: skip
    """Long data with a known illness effect ``b`` and missing ratings.

    ``madrs = 4 + 0.85 base - 6 log1p(progress) - 0.5 progress + 0.3 gap + b ill + u0 + e`` and a
    self-report ``qids_sr16 = 0.5 madrs + noise`` (correlation about 0.95 with the rating).

    ``mechanism="auxiliary"``: a rating is missing with a probability that rises steeply with
    the observed ``qids_sr16`` at ill sessions (MAR given the auxiliary, MNAR for a model
    without it). ``mechanism="ill"``: half of the ill sessions' ratings and 5% of the others are
    missing at random; the missing ill ratings are then made ``shift`` points worse (MNAR).
    Returns ``(observed, complete)`` prepared tables.
    """
    rng = np.random.default_rng(seed)
    pid = np.repeat(np.arange(n), sessions)
    ses = np.tile(np.arange(1, sessions + 1), n)
    prog = ses - 1
    ill = (rng.random(n * sessions) < 0.15) & (ses > 1)
    gap = np.where(ses == 1, 0, rng.choice([2, 3, 4], n * sessions))
    base = rng.normal(30, 5, n)[pid]
    u0 = rng.normal(0, 3, n)[pid]
    y = 4 + 0.85 * base - 6 * np.log1p(prog) - 0.5 * prog + 0.3 * gap + b * ill + u0
    y = y + rng.normal(0, 2.5, n * sessions)
    y = np.where(ses == 1, base + rng.normal(0, 1, n * sessions), y)
    qids = 0.5 * y + rng.normal(0, 0.6, n * sessions)
    df = pd.DataFrame(
        {
            "patient_id": [f"P{i:04d}" for i in pid],
            "session": ses,
            "day": pd.Series(gap).groupby(pid).cumsum().to_numpy(),
            "madrs": np.round(y, 1),
            "qids_sr16": np.round(qids, 1),
            "ill": ill.astype(int),
        }
    )
    if mechanism == "auxiliary":
        z = (qids - qids[ses > 1].mean()) / qids[ses > 1].std()
        p = 1 / (1 + np.exp(-(-3.0 + ill * (2.5 + 2.5 * z))))
        missing = (rng.random(len(df)) < p) & (ses > 1)
    else:
        p = np.where(ill, 0.5, 0.05)
        missing = (rng.random(len(df)) < p) & (ses > 1)
        df.loc[missing & ill, "madrs"] += shift
    complete = prepare_sessions(df)
    obs = df.copy()
    obs.loc[missing, "madrs"] = np.nan
    obs.loc[(rng.random(len(df)) < 0.05) & (ses > 1), "qids_sr16"] = np.nan
    return prepare_sessions(obs), complete


def _ill(out):
    return next(c for c in out["coefficients"] if c["term"] == "ill_within")


def _covers(row, b):
    return row["ci_low"] <= b <= row["ci_high"]


MI_FIELDS = {"imputations": 10, "iterations": 5, "auxiliary": ["qids_sr16"], "auxiliary_patient": []}


@pytest.fixture(scope="module")
def mar():
    return mar_cohort(500, seed=21)


def test_mi_with_the_auxiliary_recovers_the_effect_where_complete_case_is_biased(mar):
    obs, _ = mar
    assert obs["madrs"].isna().sum() > 150
    lmm = run_model("lmm", resolve_spec("lmm", {"kind": "lmm"}), obs, DEFAULT_EST)
    complete_ids = obs.groupby("patient_id")["madrs"].apply(lambda s: s.notna().all())
    completers = obs[obs["patient_id"].map(complete_ids)]
    comp = run_model("c", resolve_spec("c", {"kind": "lmm"}), completers, DEFAULT_EST)
    mi = run_model("mi", resolve_spec("mi", {"kind": "lmm_mi", **MI_FIELDS}), obs, DEFAULT_EST)
    assert lmm["status"] == comp["status"] == mi["status"] == "ok"
    # the high self-reports at ill sessions went missing: both complete-case analyses are biased down
    assert _ill(lmm)["ci_high"] < TRUE_B and _ill(comp)["ci_high"] < TRUE_B
    assert _covers(_ill(mi), TRUE_B)
    assert abs(_ill(mi)["estimate"] - TRUE_B) < 0.3
    assert abs(_ill(mi)["estimate"] - TRUE_B) < abs(_ill(lmm)["estimate"] - TRUE_B) / 2
    assert mi["df_method"] == "barnard_rubin" and mi["imputation"]["m"] == 10
    assert 0 < mi["imputation"]["fmi"]["ill_within"] < 1
    assert mi["illness_effect"]["estimate"] == _ill(mi)["estimate"]


# ----------------------------------------------------------------------------- tipping point
TP_FIELDS = {"imputations": 6, "iterations": 5, "auxiliary": [], "auxiliary_patient": []}
DELTA0 = 8.0


@pytest.fixture(scope="module")
def mnar():
    return mar_cohort(400, seed=4, b=2.0, mechanism="ill", shift=DELTA0)


def _tipping(obs, deltas):
    spec = resolve_spec("tp", {"kind": "tipping_point", **TP_FIELDS, "deltas": deltas})
    out = run_model("tp", spec, obs, DEFAULT_EST)
    assert out["status"] == "ok", out["reason"]
    return out


def test_delta_adjustment_at_the_true_shift_recovers_the_oracle(mnar):
    obs, complete = mnar
    oracle = _ill(run_model("o", resolve_spec("o", {"kind": "lmm"}), complete, DEFAULT_EST))
    out = _tipping(obs, [0, DELTA0])
    rows = {r["delta"]: r for r in out["tipping"]["rows"]}
    assert abs(rows[DELTA0]["estimate"] - oracle["estimate"]) < 2 * rows[DELTA0]["se"]
    assert abs(rows[0.0]["estimate"] - oracle["estimate"]) > 4 * rows[0.0]["se"]
    assert out["tipping"]["imputed_ill_ratings"] > 100


def test_tipping_delta_is_where_the_conclusion_flips(mnar):
    obs, _ = mnar
    out = _tipping(obs, [-8, -6, -4, -2, 0, 2])
    tip = out["tipping"]
    assert tip["conclusion_at_zero"] == "worse when ill"
    grid, x = tip["tipping_grid"]["negative"], tip["tipping_delta"]["negative"]
    assert grid is not None and grid < x < grid + 2  # interpolated between the grid neighbours
    assert tip["tipping_grid"]["positive"] is None and any("not reached" in m for m in out["messages"])
    by = {r["delta"]: r for r in tip["rows"]}
    assert by[grid]["conclusion"] != "worse when ill" and by[grid + 2]["conclusion"] == "worse when ill"
    # the forest-plot entry is the pooled effect at that grid delta
    assert out["illness_effect"]["delta"] == grid
    assert out["illness_effect"]["estimate"] == pytest.approx(by[grid]["estimate"])
    # refit (same seed, same imputations) just inside and just outside the interpolated delta
    near = _tipping(obs, [0, round(x + 0.4, 3), round(x - 0.4, 3)])
    near_by = {r["delta"]: r["conclusion"] for r in near["tipping"]["rows"]}
    assert near_by[round(x + 0.4, 3)] == "worse when ill"
    assert near_by[round(x - 0.4, 3)] == "no difference shown"
    for r in tip["rows"]:
        assert r["conclusion"] == conclusion_of(r["ci_low"], r["ci_high"])


# ----------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def demo_like():
    """A demo-like cohort: intermittent missing ratings, self-reports, dropouts."""
    df, _ = prepared_cohort(120, seed=8, sessions=7)
    rng = np.random.default_rng(3)
    df["qids_sr16"] = (0.5 * df["madrs"] + rng.normal(0, 1.5, len(df))).round()
    df["age"] = df["patient_id"].map({p: 20 + i % 50 for i, p in enumerate(df["patient_id"].unique())})
    df["sex"] = np.where(df["patient_id"].str[-1].isin(list("02468")), "female", "male")
    post = df["session"] > 1
    df.loc[post & (rng.random(len(df)) < 0.05), "madrs"] = np.nan
    last = df["patient_id"].map(
        {p: (4 if i % 10 == 0 else 7) for i, p in enumerate(df["patient_id"].unique())}
    )
    return df.loc[df["session"] <= last].reset_index(drop=True)


@pytest.fixture(scope="module")
def shipped(project_root):
    cfg = load_config(project_root / "config/config.yaml")
    return {n: model_spec(cfg, "demo", n) for n in ("primary_mi", "tipping_point")}


def test_shipped_config_has_at_least_20_imputations(shipped):
    assert shipped["primary_mi"]["kind"] == "lmm_mi" and shipped["tipping_point"]["kind"] == "tipping_point"
    for spec in shipped.values():
        assert spec["imputations"] >= 20 and spec["role"] == "sensitivity"
    assert 0 in shipped["tipping_point"]["deltas"]


def test_both_kinds_end_to_end(demo_like, shipped):
    mi = run_model("primary_mi", shipped["primary_mi"], demo_like, DEFAULT_EST)
    tp_spec = {**shipped["tipping_point"], "imputations": 5, "deltas": [-6, -3, 0, 3, 6]}
    tp = run_model("tipping_point", tp_spec, demo_like, DEFAULT_EST)
    for out in (mi, tp):
        assert out["status"] == "ok", out["reason"]
        json.dumps(out, allow_nan=False)
        assert out["nobs"] == 120 * 6 and out["ngroups"] == 120  # every planned post-baseline session
        imp = out["imputation"]
        names = {(v["name"], v["level"], v["role"]) for v in imp["variables"]}
        assert {("madrs", "session", "analysis"), ("ill", "session", "analysis"),
                ("qids_sr16", "session", "auxiliary"), ("age", "patient", "auxiliary"),
                ("sex", "patient", "auxiliary"), ("il6_pg_ml", "patient", "auxiliary")} <= names  # fmt: skip
        assert imp["rows_added"] == 12 * 3 and imp["rows_observed"] == len(demo_like)
        assert set(imp["fmi"]) == {c["term"] for c in out["coefficients"]}
        assert out["estimands"]["discontinuation"]["strategy"] == "hypothetical"
        assert out["estimands"]["discontinuation"]["rows_added_after_dropout"] == 36
        assert out["illness_effect"]["outcome"] == "madrs" and out["illness_effect"]["mcid"] == 2.0
        assert all(c["df_method"] == "barnard_rubin" and c["df"] > 0 for c in out["coefficients"])
    assert mi["imputation"]["m"] == 20
    assert [r["delta"] for r in tp["tipping"]["rows"]] == [-6.0, -3.0, 0.0, 3.0, 6.0]
    assert "delta" in tp["illness_effect"]
    # the CI uses the t quantile at the Barnard-Rubin df
    row = _ill(mi)
    crit = stats.t.ppf(0.975, row["df"])
    assert row["ci_high"] == pytest.approx(row["estimate"] + crit * row["se"])


def test_model_json_is_byte_identical_across_runs(demo_like, shipped):
    """The same data, spec and seed give the same JSON bytes (no timings or run state in it)."""
    for name, extra in (("primary_mi", {"imputations": 3}), ("tipping_point", {"imputations": 3, "deltas": [0, 4]})):
        spec = {**shipped[name], **extra}
        a, b = (json.dumps(run_model(name, spec, demo_like, DEFAULT_EST), sort_keys=True) for _ in range(2))
        assert a == b, name
        other = json.dumps(run_model(name, {**spec, "seed": 7}, demo_like, DEFAULT_EST), sort_keys=True)
        assert other != a, name
