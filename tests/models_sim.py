"""Synthetic prepared cohorts with known truth, for the model tests (no simulator needed).

The score is generated from the primary model's own form, so the true coefficients are
known exactly: ``madrs = 4 + 0.85 baseline - 6 log1p(progress) - 0.5 progress
+ 0.3 days_since_prev + (beta_ill + s_i) ill + gamma ill_mean + b_il6 (log IL-6 - mu_i)
+ u0 + u1 progress + e`` with ``log IL-6 = mu_i + a_il6 ill + noise``: the within-person
indirect effect of illness through IL-6 is ``a_il6 b_il6`` and the direct one ``beta_ill``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ketastats.prepare import prepare_sessions

MARKERS = {"il6_pg_ml": (np.log(1.8), 0.6, 0.15), "crp_mg_l": (np.log(1.3), 1.0, 0.15)}


def prepared_cohort(
    n: int = 150,
    *,
    seed: int = 0,
    sessions: int = 6,
    p_ill_patient: float = 0.4,
    beta_ill: float = 3.0,
    gamma_between: float = 2.0,
    slope_sd: float = 0.0,
    a_il6: float = 0.9,
    b_il6: float = 0.0,
    sd_u0: float = 4.0,
    sd_u1: float = 0.8,
    sd_e: float = 2.5,
    draw_prob: float = 0.7,
) -> tuple[pd.DataFrame, dict]:
    rng = np.random.default_rng(seed)
    rows = []
    slopes = rng.normal(0, slope_sd, n)
    for i in range(n):
        base = rng.normal(30, 5)
        u0, u1 = rng.normal(0, sd_u0), rng.normal(0, sd_u1)
        ill = np.zeros(sessions)
        if rng.random() < p_ill_patient:
            start = rng.integers(1, sessions)
            ill[start : start + rng.integers(1, 3)] = 1
        gaps = rng.choice([2, 3, 4], size=sessions)
        gaps[0] = 0
        day = np.cumsum(gaps)
        postponed = (ill > 0) & (rng.random(sessions) < 0.3)
        gaps = np.where(postponed, gaps + 4, gaps)
        day = np.cumsum(gaps)
        mu_il6 = rng.normal(MARKERS["il6_pg_ml"][0], MARKERS["il6_pg_ml"][1])
        mu_crp = rng.normal(MARKERS["crp_mg_l"][0], MARKERS["crp_mg_l"][1])
        for s in range(sessions):
            prog = s
            log_il6 = mu_il6 + a_il6 * ill[s] + rng.normal(0, 0.3)
            log_crp = mu_crp + 1.5 * ill[s] + rng.normal(0, 0.35)
            within_il6 = log_il6 - mu_il6
            if s == 0:
                y = base + rng.normal(0, 1.0)
            else:
                y = (
                    4
                    + 0.85 * base
                    - 6 * np.log1p(prog)
                    - 0.5 * prog
                    + 0.3 * (gaps[s])
                    + (beta_ill + slopes[i]) * ill[s]
                    + u0
                    + u1 * prog
                    + b_il6 * within_il6
                    + rng.normal(0, sd_e)
                )
            rows.append(
                {
                    "patient_id": f"P{i:04d}",
                    "session": s + 1,
                    "day": int(day[s]),
                    "madrs": float(np.clip(np.round(y), 0, 60)),
                    "ill": int(ill[s]),
                    "postponed": bool(postponed[s]),
                    "dose_changed": bool(s >= 3 and rng.random() < 0.05),
                    "nsaid": bool(ill[s] and rng.random() < 0.3),
                    "antipyretic": False,
                    "steroid": False,
                    "antibiotic": False,
                    "_log_il6": log_il6,
                    "_log_crp": log_crp,
                    "_draw": rng.random() < draw_prob,
                }
            )
    df = pd.DataFrame(rows)
    # gamma_between: extra effect of the person mean of ill (between-person confounding)
    post = df["session"] > 1
    ill_mean = df.loc[post].groupby("patient_id")["ill"].mean()
    df.loc[post, "madrs"] = df.loc[post, "madrs"] + gamma_between * df.loc[post, "patient_id"].map(ill_mean)
    for marker, col in (("il6_pg_ml", "_log_il6"), ("crp_mg_l", "_log_crp")):
        lod = MARKERS[marker][2]
        val = np.exp(df[col])
        cens = val < lod
        df[marker] = np.where(df["_draw"] & ~cens, val, np.nan)
        df[f"{marker}_lod"] = lod
        df[f"{marker}_censored"] = df["_draw"] & cens
    df = df.drop(columns=["_log_il6", "_log_crp", "_draw"])
    # total within-person illness effect = direct + indirect (through IL-6)
    total = beta_ill + a_il6 * b_il6
    truth = {
        "ill_within": total,
        "ill_between": total + gamma_between,
        "direct": beta_ill,
        "days_since_prev": 0.3,
        "madrs_baseline": 0.85,
        "a_il6": a_il6,
        "b_il6": b_il6,
        "slope_sd": slope_sd,
    }
    return prepare_sessions(df), truth
