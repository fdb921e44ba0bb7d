"""Generate a synthetic IV-ketamine cohort with acute illness episodes and known truth.

The generator follows ``docs/simulation.md`` (its parameters, their sources, the calibration
and the scenarios). It is vectorized across patients (one pass per visit), and every random
stream is drawn from a :class:`numpy.random.SeedSequence` of the seed, one child stream per
component, so the same seed gives the same cohort, and two scenarios run with the same seed
share the patients, schedules and illness episodes (common random numbers).

Conventions
-----------
Sessions and ratings
    ``session`` is the 1-based infusion number. The MADRS (and PHQ-9, QIDS-SR16) at session
    *n* is rated **before** infusion *n*, so the session-1 rating is the pre-treatment
    baseline and the rating at session *n* reflects *n - 1* infusions received.
"after n infusions"
    means the rating at session *n + 1*. With the default course of six infusions, an
    end-of-course rating-only visit is added as session 7 (``schedule.end_of_course_visit``;
    ``dose_mg_kg`` and ``infusion_minutes`` are empty on that row because no infusion is
    given), so "after one infusion" is session 2 and "after six infusions" is session 7.
    This matches the research calibration of the trajectory (docs/simulation.md,
    "Calibration"), where ``mu_i(n)`` is the expected MADRS after *n* infusions:
    ``mu_i(n) = B_i * (1 - f_i * (1 - exp(-k_i * n)))``.
Response and remission
    response = MADRS at least 50% below the session-1 rating; remission = MADRS <= 10.
Days
    ``day`` counts days since the first infusion (session 1 is day 0). Illness onsets live
    in the same calendar (onsets up to ``illness.onset_window_before_days`` before day 0
    are allowed); a session postponed because of illness happens ``delay_days`` later
    than planned, and later sessions keep their planned spacing from it.
Illness at a session
    A session is *truly ill* when a symptomatic episode (onset <= day < onset + duration)
    is active on its day; the dominant episode (most severe, then latest onset) gives the
    type, severity and ``days_since_onset``. The written ``ill`` flag is the *reported* flag:
    true illness is reported with probability ``illness.report_sensitivity``, and a
    session without illness is falsely flagged with ``illness.false_positive_rate``.
MADRS generation (the truth)
    For patient *i* at visit *v* with *P_iv* the drug progress after the infusions received,
    ``core = B_i - B_i f_i P_iv + waning_iv + e_iv`` (AR(1) residual *e*), and
    ``MADRS = core + direct_iv + carry_iv + b * log IL-6 pulse_iv`` where
    ``direct`` is the sickness shift of the dominant episode's severity (items 2, 4-8),
    ``carry`` is ``carryover_fraction`` times the previous session's direct shift when the
    current session is within ``carryover_window_days`` of that episode's onset (additive to
    any current direct shift), and ``b = effects.il6_to_madrs_per_log``. Drug progress adds
    ``w_j (exp(-k(j-1)) - exp(-k j))`` per infusion *j*; ``w_j`` is
    ``effects.efficacy_multiplier_when_ill`` when the patient is truly ill at that infusion,
    so attenuation/amplification show at the **next** rating (the infusion follows the
    rating), and a lost increment is never made up.

The true within-person effect
    ``truth["effects"]["within_person_effect_reported_illness"]`` is the mean, over rated
    sessions (attended, MADRS observed) whose reported ``ill`` flag is 1, of the expected
    same-session shift in the MADRS total caused by illness at that session:
    ``direct + b * log IL-6 pulse`` (false-positive flags contribute 0). It excludes the
    lagged parts (carry-over from an earlier session and drug-efficacy changes from earlier
    ill infusions), which are reported separately as ``lagged_effect_after_reported_illness``.
    It is a sample (cohort-specific) average: the severity mix of attended ill sessions is
    thinned by postponement. Under the ``null`` scenario every component is exactly 0.
    It is a *descriptive* number, not what a model's within-person coefficient estimates: the
    coefficient of ``ill_within`` contrasts flagged with unflagged sessions (missed illness
    and false flags dilute it; carry-over that lands on flagged sessions adds to it), so the
    recovery study scores the model against the
    projection of :meth:`SimulatedCohort.illness_shift` on the model's own design and weights
    (:func:`ketastats.recovery.target_effect`; ``docs/statistics.md``).
    Per patient and visit the truth also lists each part (``direct_shift``,
    ``carryover_shift``, ``mediated_shift`` - which persists while the IL-6 pulse decays
    after an episode - and ``efficacy_shift``), the noise-free ``expected_madrs`` and the
    complete-data ``complete_madrs`` (also for visits lost to dropout or missing ratings).
Baseline
    ``B_i`` is the true baseline (truncated normal, e.g. >= 20 in the trial profile); the
    session-1 rating adds the residual, so an observed baseline can fall a little below the
    inclusion threshold, as screening-to-baseline drift does in trials.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit, ndtr, ndtri

from ketastats.exceptions import ConfigError
from ketastats.simulate.items import allocate_items, stochastic_round
from ketastats.simulate.params import CYTOKINES, ILLNESS_TYPES, SEVERITIES, resolve_params

__all__ = ["SESSION_COLUMNS", "SimulatedCohort", "simulate_cohort"]

logger = logging.getLogger(__name__)

MED_CLASSES = ("antipyretic", "nsaid", "antibiotic", "steroid")
_FEBRILE = np.array([t in ("influenza_like", "other_febrile") for t in ILLNESS_TYPES])

#: Output columns of the session table, in order (the data contract).
SESSION_COLUMNS: tuple[str, ...] = (
    "patient_id",
    "session",
    "day",
    "age",
    "sex",
    "bmi",
    *(f"madrs_{j}" for j in range(1, 11)),
    "madrs",
    "phq9",
    "qids_sr16",
    "ill",
    "illness_type",
    "illness_severity",
    "days_since_onset",
    "il6_pg_ml",
    "tnfa_pg_ml",
    "il1b_pg_ml",
    "crp_mg_l",
    "dose_mg_kg",
    "infusion_minutes",
    "postponed",
    "delay_days",
    "dose_changed",
    "benzodiazepine",
    "antidepressant",
    "nsaid",
    "antibiotic",
    "steroid",
    "antipyretic",
)
_CYTO_COLUMN = {"il6": "il6_pg_ml", "tnfa": "tnfa_pg_ml", "il1b": "il1b_pg_ml", "crp": "crp_mg_l"}

_STREAMS = (
    "ids",
    "baseline",
    "response",
    "episodes",
    "schedule",
    "residual",
    "items",
    "report",
    "cytokines",
    "missing",
    "dropout",
    "scales",
    "decisions",  # last: the earlier streams are the same with or without it (SeedSequence.spawn)
)


@dataclass
class SimulatedCohort:
    """A simulated cohort and its ground truth.

    Attributes
    ----------
    sessions : pandas.DataFrame
        One row per attended session, columns :data:`SESSION_COLUMNS` (the data contract).
        Cytokine columns hold the written strings (a number with 3 decimals, or ``"<LOD"``
        such as ``"<0.15"``); ``age`` holds strings (``"90+"`` when top-coded).
    truth : dict
        Everything needed to score an analysis (see :func:`simulate_cohort`).
    params : dict
        The complete parameter tree used.
    seed : int
    scenario : str
    """

    sessions: pd.DataFrame
    truth: dict
    params: dict
    seed: int
    scenario: str

    @property
    def n_patients(self) -> int:
        """Number of simulated patients (including any who attended only session 1)."""
        if "n_patients" in self.truth:
            return int(self.truth["n_patients"])
        return int(self.sessions["patient_id"].nunique())

    def illness_shift(self) -> pd.DataFrame:
        """The true shift of the expected MADRS caused by illness, per patient and planned visit.

        Unobserved in real data: the generator's own parts of the MADRS (``truth["patients"]``,
        3 decimals), one row per patient and planned visit (complete data, also for visits lost
        to dropout or missing ratings), with ``direct`` (same-session sickness shift),
        ``carryover`` (from an ill previous session), ``mediated`` (through the IL-6 pulse, which
        outlasts the episode), ``efficacy`` (drug effect lost or gained at earlier ill infusions)
        and their sum ``total``: the expected MADRS at that visit minus the expected MADRS on the
        same days without any effect of illness. The recovery study's truth projects ``total`` on
        the analysed model's design (:func:`ketastats.recovery.target_effect`).

        Examples
        --------
        >>> c = simulate_cohort(20, seed=1)
        >>> s = c.illness_shift()
        >>> list(s.columns)
        ['patient_id', 'session', 'direct', 'carryover', 'mediated', 'efficacy', 'total']
        >>> bool((s["total"] == s[["direct", "carryover", "mediated", "efficacy"]].sum(axis=1)).all())
        True
        """
        parts = {
            "direct": "direct_shift",
            "carryover": "carryover_shift",
            "mediated": "mediated_shift",
            "efficacy": "efficacy_shift",
        }
        patients = self.truth["patients"]
        n_vis = [len(p["direct_shift"]) for p in patients]
        out = pd.DataFrame(
            {
                "patient_id": np.repeat([str(p["patient_id"]) for p in patients], n_vis),
                "session": np.concatenate([np.arange(1, k + 1) for k in n_vis]).astype(np.int64),
            }
        )
        for col, key in parts.items():
            out[col] = np.concatenate([np.asarray(p[key], dtype=float) for p in patients])
        out["total"] = out["direct"] + out["carryover"] + out["mediated"] + out["efficacy"]
        return out


def _truncnorm(rng: np.random.Generator, n: int, mean, sd, lo, hi) -> np.ndarray:
    """Truncated normal by inversion (one uniform per value, so streams stay aligned)."""
    a = ndtr((lo - mean) / sd)
    b = ndtr((hi - mean) / sd)
    u = rng.random(n)
    return mean + sd * ndtri(a + u * (b - a))


def _schedule_days(thrice: np.ndarray, n_visits: int) -> np.ndarray:
    """Planned days (N, V): thrice weekly Mon-Wed-Fri (0,2,4,7,...), else twice (0,3,7,...)."""
    j = np.arange(n_visits)
    three = 7 * (j // 3) + np.array([0, 2, 4])[j % 3]
    two = 7 * (j // 2) + np.array([0, 3])[j % 2]
    return np.where(thrice[:, None], three[None, :], two[None, :])


class _Episodes:
    """Illness episodes of all patients as flat arrays (sorted by patient, then onset)."""

    def __init__(self, rng: np.random.Generator, n: int, p: dict, horizon: float):
        ill = p["illness"]
        window = float(ill["onset_window_before_days"])
        span = (horizon + window) / 365.25
        resp = float(ill["respiratory_rate_per_year"])
        share_flu = float(ill["influenza_like_share"])
        rates = np.array(
            [
                resp * (1.0 - share_flu),
                resp * share_flu,
                float(ill["gastrointestinal_rate_per_year"]),
                float(ill["other_febrile_rate_per_year"]),
            ]
        )
        counts = rng.poisson(rates[None, :] * span, size=(n, len(ILLNESS_TYPES)))
        pid = np.repeat(np.repeat(np.arange(n), len(ILLNESS_TYPES)), counts.ravel())
        etype = np.repeat(np.tile(np.arange(len(ILLNESS_TYPES)), n), counts.ravel())
        m = pid.size
        onset = -window + rng.random(m) * (horizon + window)
        shape = float(ill["duration_gamma_shape"])
        mean_dur = np.array([float(ill["duration_mean_days"][t]) for t in ILLNESS_TYPES])
        dur = rng.gamma(shape, 1.0, size=m) * mean_dur[etype] / shape
        sev_p = np.array([float(ill["severity_probs"][s]) for s in SEVERITIES])
        sev = np.searchsorted(np.cumsum(sev_p)[:-1], rng.random(m), side="right")
        med_any = (
            rng.random(m) < np.array([float(ill["medication_prob"][s]) for s in SEVERITIES])[sev]
        )
        cls_p = ill["medication_class_probs"]
        meds = {}
        u_cls = rng.random((m, len(MED_CLASSES)))
        for c, name in enumerate(MED_CLASSES):
            prob = np.full(m, float(cls_p[name]))
            if name == "antibiotic":
                other = etype == ILLNESS_TYPES.index("other_febrile")
                prob[other] = float(ill["antibiotic_prob_other_febrile"])
            meds[name] = med_any & (u_cls[:, c] < prob)
        none = med_any & ~np.any(np.column_stack([meds[c] for c in MED_CLASSES]), axis=1)
        meds["antipyretic"] = meds["antipyretic"] | none  # a medicated episode has a class
        order = np.lexsort((onset, pid))
        # one sentinel episode at the end (never active, no pulse) keeps `array[max(e, 0)]`
        # lookups valid when a cohort has no episodes at all; `self.m` excludes it
        self.m = m

        def pad(a, fill):
            return np.append(a[order], np.asarray(fill, dtype=a.dtype))

        self.pid = pad(pid, 0)
        self.type = pad(etype, 0)
        self.onset = pad(onset, np.inf)
        self.dur = pad(dur, 0.0)
        self.sev = pad(sev, 0)
        self.febrile = _FEBRILE[self.type]
        self.meds = {k: pad(v, False) for k, v in meds.items()}
        self.anti_inflammatory = self.meds["nsaid"] | self.meds["steroid"]
        # dominance rank: most severe wins, then the latest onset
        rank_order = np.lexsort((self.onset, self.sev))
        self.rank = np.empty(m + 1, dtype=np.int64)
        self.rank[rank_order] = np.arange(m + 1)
        self.by_rank = rank_order
        self.n = n

    def dominant(self, t: np.ndarray) -> np.ndarray:
        """Index of the dominant active episode per patient at days ``t`` (-1 if none)."""
        tt = t[self.pid]
        active = (self.onset <= tt) & (tt < self.onset + self.dur)
        best = np.full(self.n, -1, dtype=np.int64)
        np.maximum.at(best, self.pid[active], self.rank[active])
        return np.where(best >= 0, self.by_rank[np.maximum(best, 0)], -1)

    def log_pulse(self, t: np.ndarray, log_peak: np.ndarray, rise: float, half: float):
        """Sum over episodes of the log fold change of a marker at days ``t`` (per patient)."""
        tau = t[self.pid] - self.onset
        during = np.minimum(1.0, (np.maximum(tau, 0.0) + 1.0) / (rise + 1.0))
        at_end = np.minimum(1.0, (self.dur + 1.0) / (rise + 1.0))
        after = at_end * 0.5 ** (np.maximum(tau - self.dur, 0.0) / half)
        with np.errstate(invalid="ignore"):
            shape = np.where(tau < 0, 0.0, np.where(tau < self.dur, during, after))
        shape[self.m :] = 0.0
        return np.bincount(self.pid, weights=log_peak * shape, minlength=self.n)


def _calibrate_intercept(x: np.ndarray, beta: float, target: float) -> float:
    """Intercept *a* with mean_i P(drop out) = target for hazards expit(a + beta x_iv)."""
    if target <= 0:
        return -np.inf

    def share(a: float) -> float:
        h = expit(a + beta * x)
        return float(np.mean(1.0 - np.prod(1.0 - h, axis=1)))

    lo, hi = -30.0, 30.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if share(mid) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def simulate_cohort(
    n_patients: int = 200,
    *,
    seed: int = 0,
    scenario: str = "sickness",
    overrides: dict | None = None,
) -> SimulatedCohort:
    """Simulate a cohort of IV ketamine courses with acute illness and known truth.

    Parameters
    ----------
    n_patients : int
        Number of patients (>= 1).
    seed : int
        Seed of the PCG64 streams; the same seed gives identical output.
    scenario : str
        A key of :data:`~ketastats.simulate.params.SCENARIOS` (``null``, ``sickness``,
        ``attenuation``, ``amplification``, ``mnar``, ...).
    overrides : dict, optional
        Sparse parameter overrides applied on top of the scenario (e.g. from
        :func:`~ketastats.simulate.params.load_params`).

    Returns
    -------
    SimulatedCohort
        ``sessions`` in the data-contract layout and ``truth`` with the parameters used,
        the true effects on the MADRS scale (see the module docstring for their exact
        definitions) and per-patient true values.

    Raises
    ------
    ConfigError
        If ``n_patients`` or ``seed`` is invalid, the scenario is unknown or an override is.

    References
    ----------
    Parameters and their sources: ``docs/simulation.md``.

    Examples
    --------
    >>> cohort = simulate_cohort(50, seed=1, scenario="null")
    >>> cohort.truth["effects"]["within_person_effect_reported_illness"]["value"]
    0.0
    """
    if isinstance(n_patients, bool) or not isinstance(n_patients, (int, np.integer)):
        raise ConfigError(f"n_patients must be an integer, got {n_patients!r}.")
    if n_patients < 1:
        raise ConfigError(f"n_patients must be at least 1, got {n_patients}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}.")
    if n_patients > 16**6 // 4:
        raise ConfigError(f"n_patients={n_patients} is too large for 6-hex-digit patient ids.")
    p = resolve_params(scenario, overrides)
    n = int(n_patients)
    logger.info("simulating %d patients, scenario %s, seed %d", n, scenario, seed)

    sim = _simulate(n, p, _streams(int(seed)))
    sessions = _session_table(sim, p)
    truth = _truth(sim, p, scenario=scenario, seed=int(seed), n=n)
    if p["decisions"]["policy"] != "rule" or p["decisions"]["record_planned_illness"]:
        from ketastats.simulate.decisions import decision_truth, planned_illness_columns

        def resimulate(force: tuple) -> dict:
            """The same cohort (same random numbers) with one visit's decisions forced."""
            return _simulate(n, p, _streams(int(seed)), force=force)

        truth["effects"]["decisions"] = decision_truth(sim, p, resimulate=resimulate)
        if p["decisions"]["record_planned_illness"]:
            sessions = planned_illness_columns(sessions, sim)
    return SimulatedCohort(
        sessions=sessions, truth=truth, params=p, seed=int(seed), scenario=scenario
    )


def _streams(seed: int) -> dict:
    """The generator's independent PCG64 streams for ``seed`` (one per name in :data:`_STREAMS`)."""
    children = np.random.SeedSequence(seed).spawn(len(_STREAMS))
    return {name: np.random.Generator(np.random.PCG64(s)) for name, s in zip(_STREAMS, children, strict=True)}


def _simulate(n: int, p: dict, rng: dict, force: tuple | None = None) -> dict:
    """The cohort's latent course, visit by visit.

    ``force`` = ``(visit, postpone, reduce)`` replaces the decisions at that 0-based infusion visit
    for every patient (``postpone`` a bool array; ``reduce`` a bool array, or None for the
    policy's own dose decision), everything else as drawn: the counterfactual course behind the
    decisions' end-of-course truth (:func:`ketastats.simulate.decisions.decision_truth`). Every
    random number is drawn before the per-visit pass, so a forced decision moves no draw.
    """
    co, sc, rs, il, ef, bm, ms, scl = (
        p["cohort"],
        p["schedule"],
        p["response"],
        p["illness"],
        p["effects"],
        p["biomarkers"],
        p["missingness"],
        p["scales"],
    )
    n_inf = int(sc["planned_infusions"])
    n_vis = n_inf + (1 if sc["end_of_course_visit"] else 0)
    out: dict = {"n": n, "n_inf": n_inf, "n_vis": n_vis}

    # ---- identifiers: "P" + 6 uppercase hex digits, unique, from the seed
    codes = rng["ids"].choice(16**6, size=n, replace=False)
    out["patient_id"] = np.array([f"P{c:06X}" for c in codes])

    # ---- baseline covariates
    r = rng["baseline"]
    out["age"] = np.floor(
        _truncnorm(r, n, co["age_mean"], co["age_sd"], co["age_min"], co["age_max"] + 1)
    ).astype(int)
    out["female"] = r.random(n) < co["female_share"]
    out["bmi"] = np.clip(r.normal(co["bmi_mean"], co["bmi_sd"], n), co["bmi_min"], co["bmi_max"])
    prof = co["baseline_madrs"][co["baseline_profile"]]
    base = _truncnorm(r, n, prof["mean"], prof["sd"], prof["min"], prof["max"])
    out["baseline"] = base
    z_b = (base - base.mean()) / max(base.std(), 1e-9)
    rho_m = float(bm["corr_il6_baseline_madrs"])
    z_il6 = rho_m * z_b + np.sqrt(1 - rho_m**2) * r.standard_normal(n)
    rho_c = float(bm["corr_il6_crp"])
    z_crp = rho_c * z_il6 + np.sqrt(1 - rho_c**2) * r.standard_normal(n)
    z = {"il6": z_il6, "crp": z_crp, "tnfa": r.standard_normal(n), "il1b": r.standard_normal(n)}
    base_log = {
        m: np.log(float(bm["median"][m])) + float(bm["log_sd"][m]) * z[m] for m in CYTOKINES
    }
    out["base_log"] = base_log
    out["bzd"] = r.random(n) < co["benzodiazepine_share"]
    out["bzd_high"] = out["bzd"] & (r.random(n) < co["benzodiazepine_high_dose_share"])
    out["antidepressant"] = r.random(n) < co["antidepressant_share"]
    out["thrice"] = r.random(n) < sc["thrice_weekly_share"]
    weights = np.asarray(scl["item_profile"], dtype=float)
    out["item_profile"] = r.dirichlet(
        weights / weights.sum() * scl["item_profile_concentration"], n
    )

    # ---- ketamine response: class, f (asymptotic fraction), k (rate)
    r = rng["response"]
    responder = r.random(n) < rs["responder_share"]
    f = np.where(
        responder,
        r.normal(rs["f_responder_mean"], rs["f_responder_sd"], n),
        r.normal(rs["f_minimal_mean"], rs["f_minimal_sd"], n),
    )
    f = np.where(out["bzd_high"], f * rs["benzodiazepine_high_f_multiplier"], f)
    f = f + float(rs["inflammation_moderation_per_sd"]) * z_il6
    out["responder"] = responder
    out["f"] = np.clip(f, rs["f_min"], rs["f_max"])
    out["k"] = float(rs["k_median"]) * np.exp(float(rs["k_sigma"]) * r.standard_normal(n))

    # ---- illness episodes in calendar time
    planned = _schedule_days(out["thrice"], n_vis)
    horizon = float(planned.max() + n_vis * int(il["postpone_days_max"]) + 1)
    ep = _Episodes(rng["episodes"], n, p, horizon)
    out["episodes"] = ep

    # ---- per-visit pass: schedule, postponement, dose, illness, MADRS
    r = rng["schedule"]
    u_post = r.random((n, n_vis))
    post_len = r.integers(
        int(il["postpone_days_min"]), int(il["postpone_days_max"]) + 1, (n, n_vis)
    )
    u_esc = r.random(n)
    u_ht = r.random((n, n_vis))
    rr = rng["residual"]
    innov = rr.standard_normal((n, n_vis)) * float(rs["residual_sd"])
    dc = p["decisions"]
    logistic = dc["policy"] == "logistic"
    u_reduce = rng["decisions"].random((n, n_vis)) if logistic else None
    reduced = np.zeros((n, n_vis), dtype=bool)
    ep_plan = np.full((n, n_vis), -1, dtype=np.int64)
    decision_shift = np.zeros((n, n_vis))
    resid = np.zeros((n, n_vis))
    rho = float(rs["residual_ar1"])

    sev_shift = np.array([float(ef["sickness_shift"][s]) for s in SEVERITIES])
    pp_sev = np.array([float(il["postpone_prob"][s]) for s in SEVERITIES])
    pp_feb = float(il["postpone_prob"]["febrile"])
    il6_peak = np.log(np.array([float(bm["il6_pulse"][s]) for s in SEVERITIES]))[ep.sev]
    il6_peak = np.where(
        ep.febrile, np.maximum(il6_peak, np.log(bm["il6_pulse"]["febrile"])), il6_peak
    )
    crp_type = np.log(np.array([float(bm["crp_pulse_by_type"][t]) for t in ILLNESS_TYPES]))
    crp_exp = np.array([float(bm["crp_severity_exponent"][s]) for s in SEVERITIES])
    anti = np.where(ep.anti_inflammatory, float(il["anti_inflammatory_pulse_multiplier"]), 1.0)
    log_peak = {
        "il6": il6_peak * anti,
        "crp": crp_type[ep.type] * crp_exp[ep.sev] * anti,
        "tnfa": np.full(ep.pid.size, np.log(float(bm["tnfa_pulse"]))),
        "il1b": np.full(ep.pid.size, np.log(float(bm["il1b_pulse"]))),
    }

    shape = (n, n_vis)
    day = np.zeros(shape, dtype=np.int64)
    postponed = np.zeros(shape, dtype=bool)
    delay = np.zeros(shape, dtype=np.int64)
    ep_at = np.full(shape, -1, dtype=np.int64)
    dose = np.full(shape, np.nan)
    minutes = np.full(shape, np.nan)
    direct = np.zeros(shape)
    carry = np.zeros(shape)
    mediated = np.zeros(shape)
    waning = np.zeros(shape)
    prog = np.zeros(shape)  # drug progress P before the rating at each visit
    prog0 = np.zeros(shape)  # the same without any illness modification
    pulses = {m: np.zeros(shape) for m in CYTOKINES}
    core = np.zeros(shape)
    esc = np.zeros(n, dtype=bool)
    ht_event = np.zeros(shape, dtype=bool)

    k = out["k"]
    bf = base * out["f"]
    eps = np.zeros(n)
    cur_dose = np.full(n, float(sc["dose_mg_kg"]))
    p_cur = np.zeros(n)
    p0_cur = np.zeros(n)
    ill_mult = float(ef["efficacy_multiplier_when_ill"])
    esc_mult = float(sc["escalation_efficacy_multiplier"])
    b_med = float(ef["il6_to_madrs_per_log"])
    age_factor = float(sc["hypertension_age_or"]) ** (out["age"] - float(co["age_mean"]))
    for v in range(n_vis):
        t_plan = planned[:, 0] if v == 0 else day[:, v - 1] + (planned[:, v] - planned[:, v - 1])
        infusion = v < n_inf
        if infusion:
            e0 = ep.dominant(t_plan.astype(float))
            ep_plan[:, v] = e0
            sick0 = e0 >= 0
            pprob = np.where(
                sick0,
                np.where(ep.febrile[np.maximum(e0, 0)], pp_feb, pp_sev[ep.sev[np.maximum(e0, 0)]]),
                0.0,
            )
            if logistic:
                from ketastats.simulate.decisions import decision_probability, observed_rating

                previous = base if v == 0 else observed_rating(
                    core[:, v - 1], direct[:, v - 1] + carry[:, v - 1] + mediated[:, v - 1]
                )
                pprob = np.where(sick0, decision_probability(dc, "postpone", ep, e0, previous), 0.0)
                rprob = np.where(sick0, decision_probability(dc, "reduce", ep, e0, previous), 0.0)
            postponed[:, v] = sick0 & (u_post[:, v] < pprob)
            forced = force is not None and v == force[0]
            if forced:
                postponed[:, v] = np.asarray(force[1], dtype=bool)
            delay[:, v] = np.where(postponed[:, v], post_len[:, v], 0)
            if logistic and v > 0:  # the first infusion has no usual dose to reduce from
                reduced[:, v] = sick0 & ~postponed[:, v] & (u_reduce[:, v] < rprob)
            if forced and force[2] is not None:
                reduced[:, v] = np.asarray(force[2], dtype=bool) & ~postponed[:, v]
        day[:, v] = t_plan + delay[:, v]
        t = day[:, v].astype(float)
        e = ep.dominant(t)
        ep_at[:, v] = e
        ill = e >= 0
        ei = np.maximum(e, 0)
        direct[:, v] = np.where(ill, sev_shift[ep.sev[ei]], 0.0)
        if v > 0:
            prev = ep_at[:, v - 1]
            within = (prev >= 0) & (
                t - ep.onset[np.maximum(prev, 0)] <= float(ef["carryover_window_days"])
            )
            carry[:, v] = np.where(within, float(ef["carryover_fraction"]) * direct[:, v - 1], 0.0)
            gap = day[:, v] - day[:, v - 1]
            gain = bf * p_cur
            waning[:, v] = np.minimum(
                float(rs["waning_per_day"]) * np.maximum(gap - float(rs["waning_grace_days"]), 0),
                float(rs["waning_cap_fraction"]) * np.maximum(gain, 0.0),
            )
        for m in CYTOKINES:
            pulses[m][:, v] = ep.log_pulse(
                t, log_peak[m], float(bm["rise_days"][m]), float(bm["decay_half_life_days"][m])
            )
        mediated[:, v] = b_med * pulses["il6"][:, v]
        prog[:, v] = p_cur
        prog0[:, v] = p0_cur
        eps = innov[:, 0] if v == 0 else rho * eps + np.sqrt(1 - rho**2) * innov[:, v]
        resid[:, v] = eps
        core[:, v] = base - bf * p_cur + waning[:, v] + eps
        if logistic and v > 0:
            decision_shift[:, v] = float(dc["postpone_shift_next"]) * postponed[:, v - 1] + float(
                dc["reduced_dose_shift_next"]
            ) * reduced[:, v - 1]
            core[:, v] = core[:, v] + decision_shift[:, v]
        if infusion:
            # escalation is decided on the rating after `escalation_after_infusions` infusions
            if v == int(sc["escalation_after_infusions"]) and v > 0:
                first = core[:, 0] + direct[:, 0] + mediated[:, 0]
                now = core[:, v] + direct[:, v] + carry[:, v] + mediated[:, v]
                improvement = (first - now) / np.maximum(first, 1.0)
                esc = (improvement < float(sc["escalation_improvement_below"])) & (
                    u_esc < float(sc["escalation_prob"])
                )
                cur_dose = np.where(esc, float(sc["escalated_dose_mg_kg"]), cur_dose)
            dose[:, v] = cur_dose
            if logistic:
                dose[:, v] = np.where(
                    reduced[:, v], np.round(cur_dose * float(dc["reduced_dose_factor"]), 2), cur_dose
                )
            p_ht = float(sc["hypertension_event_prob"]) * age_factor
            if v < 3:
                p_ht = p_ht * float(sc["hypertension_early_multiplier"])
            ht_event[:, v] = u_ht[:, v] < p_ht
            minutes[:, v] = np.where(
                ht_event[:, v],
                float(sc["hypertension_slowed_minutes"]),
                float(sc["infusion_minutes"]),
            )
            cur_dose = np.where(
                ht_event[:, v],
                np.maximum(
                    cur_dose - float(sc["hypertension_dose_reduction"]), sc["min_dose_mg_kg"]
                ),
                cur_dose,
            )
            incr = np.exp(-k * v) - np.exp(-k * (v + 1))
            w0 = np.where(esc, esc_mult, 1.0)
            p0_cur = p0_cur + w0 * incr
            p_cur = p_cur + w0 * np.where(ill, ill_mult, 1.0) * incr

    out.update(
        post_len=post_len,
        u_post=u_post,
        u_esc=u_esc,
        u_reduce=u_reduce,
        reduced=reduced,
        ep_plan=ep_plan,
        decision_shift=decision_shift,
        resid=resid,
        log_peak=log_peak,
        planned=planned,
        day=day,
        postponed=postponed,
        delay=delay,
        ep_at=ep_at,
        dose=dose,
        minutes=minutes,
        escalated=esc,
        ht_event=ht_event,
        direct=direct,
        carry=carry,
        mediated=mediated,
        waning=waning,
        prog=prog,
        prog0=prog0,
        pulses=pulses,
        core=core,
    )
    out["expected"] = base[:, None] - bf[:, None] * prog + waning + direct + carry + mediated
    if logistic:
        out["expected"] = out["expected"] + decision_shift
    out["efficacy_shift"] = bf[:, None] * (prog0 - prog)
    if force is not None:  # a counterfactual course: the latent ratings are all the truth needs
        return out

    # ---- MADRS items and totals (complete data, before missingness)
    r = rng["items"]
    sick = np.maximum(direct + carry + mediated, 0.0)
    core_int = stochastic_round(np.clip(core, 0.0, 60.0), r)
    sick_int = np.minimum(stochastic_round(sick, r), 60 - core_int)
    sick_w = np.zeros(10)
    for key, wgt in ef["sickness_item_weights"].items():
        sick_w[int(key.split("_")[1]) - 1] = float(wgt)
    if sick_w.sum() <= 0:
        raise ConfigError("effects.sickness_item_weights must have a positive sum.")
    sick_w = sick_w / sick_w.sum()
    items = allocate_items(core_int, sick_int, out["item_profile"][:, None, :], sick_w, r)
    out["items"] = items
    out["madrs_complete"] = items.sum(axis=-1)

    r = rng["scales"]
    latent = np.clip(core + sick, 0.0, 60.0)
    out["phq9"] = np.clip(
        np.rint(27 * latent / 60 + r.normal(0, scl["phq9_noise_sd"], shape)), 0, 27
    )
    out["qids"] = np.clip(
        np.rint(27 * latent / 60 + r.normal(0, scl["qids_noise_sd"], shape)), 0, 27
    )

    # ---- reported illness flags
    r = rng["report"]
    ill = ep_at >= 0
    u_rep = r.random(shape)
    reported = np.where(ill, u_rep < il["report_sensitivity"], u_rep < il["false_positive_rate"])
    fp = reported & ~ill
    rates = np.array(
        [
            il["respiratory_rate_per_year"] * (1 - il["influenza_like_share"]),
            il["respiratory_rate_per_year"] * il["influenza_like_share"],
            il["gastrointestinal_rate_per_year"],
            il["other_febrile_rate_per_year"],
        ],
        dtype=float,
    )
    type_p = rates / rates.sum() if rates.sum() > 0 else np.full(rates.size, 1.0 / rates.size)
    fp_type = np.searchsorted(np.cumsum(type_p)[:-1], r.random(shape), side="right")
    fp_days = r.integers(0, 4, shape)
    eidx = np.maximum(ep_at, 0)
    out["ill_true"] = ill
    out["reported"] = reported
    out["rep_type"] = np.where(ill, ep.type[eidx], fp_type)
    out["rep_sev"] = np.where(ill, ep.sev[eidx], 0)
    since = np.floor(np.where(ill, day - ep.onset[eidx], 0.0)).astype(np.int64)
    out["rep_days"] = np.where(ill, since, fp_days)
    out["fp"] = fp
    out["meds"] = {c: ill & ep.meds[c][eidx] for c in MED_CLASSES}

    # ---- missingness: intermittent, then dropout (MAR or MNAR)
    r = rng["missing"]
    miss = r.random(shape) < ms["intermittent_missing"]
    miss[:, 0] = False
    self_miss = r.random(shape) < ms["self_report_missing"]
    self_miss[:, 0] = False
    total = out["madrs_complete"].astype(float)
    beta = np.log(float(ms["dropout_or_per_10_points"])) / 10.0
    if n_vis > 1:
        if ms["dropout_mechanism"] == "mnar":
            x = total[:, 1:] - total[:, [0]]
        else:
            obs = np.where(miss, np.nan, total)
            last = pd.DataFrame(obs).ffill(axis=1).to_numpy()
            x = last[:, :-1] - total[:, [0]]
        a = _calibrate_intercept(x, beta, float(ms["dropout_share"]))
        hazard = expit(a + beta * x)
        u_drop = rng["dropout"].random((n, n_vis - 1))
        leaves = u_drop < hazard
        any_leave = leaves.any(axis=1)
        last_visit = np.where(any_leave, leaves.argmax(axis=1), n_vis - 1)
    else:
        last_visit = np.zeros(n, dtype=np.int64)
    out["last_visit"] = last_visit
    out["dropped_out"] = last_visit < n_vis - 1
    attended = np.arange(n_vis)[None, :] <= last_visit[:, None]
    out["attended"] = attended
    out["madrs_missing"] = miss
    out["self_missing"] = self_miss

    # ---- cytokines: log level, sampling, censoring at the LOD
    r = rng["cytokines"]
    sp = bm["sampling_prob"]
    prob = np.full(shape, float(sp["other"]))
    prob = np.where(reported, np.maximum(prob, float(sp["ill"])), prob)
    prob[:, 0] = max(float(sp["baseline"]), 0.0)
    prob[:, n_vis - 1] = np.maximum(prob[:, n_vis - 1], float(sp["end"]))
    sampled = r.random(shape) < prob
    drift = (
        np.log1p(float(bm["il6_drift_responders"]))
        * np.minimum(np.arange(n_vis), n_inf)[None, :]
        / n_inf
    )
    lod = bm["lod"][bm["platform"]]
    values = {}
    for m in CYTOKINES:
        lv = base_log[m][:, None] + pulses[m] + r.normal(0.0, float(bm["noise_sd"][m]), shape)
        if m == "il6":
            lv = lv + np.where(responder[:, None], drift, 0.0)
        values[m] = np.exp(lv)
    out["cyto_values"] = values
    out["sampled"] = sampled
    out["lod"] = {m: float(lod[m]) for m in CYTOKINES}
    return out


def _fmt_cytokine(values: np.ndarray, lod: float) -> np.ndarray:
    text = np.char.mod("%.3f", values)
    return np.where(values < lod, f"<{lod:g}", text)


def _session_table(sim: dict, p: dict) -> pd.DataFrame:
    n_inf = sim["n_inf"]
    att = sim["attended"]
    rows_p, rows_v = np.nonzero(att)  # patient-major, visit-minor

    def per_visit(a):
        return np.asarray(a)[rows_p, rows_v]

    def per_patient(a):
        return np.asarray(a)[rows_p]

    def ints(a, mask=None):
        s = pd.array(np.asarray(a, dtype=np.int64), dtype="Int64")
        if mask is not None:
            s[np.asarray(mask)] = pd.NA
        return s

    def strs(a, mask=None):
        s = pd.array(np.asarray(a, dtype=object), dtype="string")
        if mask is not None:
            s[np.asarray(mask)] = pd.NA
        return s

    cols: dict = {}
    cols["patient_id"] = strs(per_patient(sim["patient_id"]))
    cols["session"] = ints(rows_v + 1)
    cols["day"] = ints(per_visit(sim["day"]) - per_patient(sim["day"][:, 0]))
    age = per_patient(sim["age"])
    cols["age"] = strs(np.where(age >= 90, "90+", age.astype(str)))
    cols["sex"] = strs(np.where(per_patient(sim["female"]), "female", "male"))
    cols["bmi"] = pd.array(np.round(per_patient(sim["bmi"]), 1), dtype="Float64")
    miss = per_visit(sim["madrs_missing"])
    items = sim["items"][rows_p, rows_v]
    for j in range(10):
        cols[f"madrs_{j + 1}"] = ints(items[:, j], miss)
    cols["madrs"] = ints(items.sum(axis=1), miss)
    smiss = per_visit(sim["self_missing"])
    if p["scales"]["phq9"]:
        cols["phq9"] = ints(per_visit(sim["phq9"]), smiss)
    if p["scales"]["qids_sr16"]:
        cols["qids_sr16"] = ints(per_visit(sim["qids"]), smiss)
    rep = per_visit(sim["reported"])
    cols["ill"] = ints(rep.astype(int))
    cols["illness_type"] = strs(
        np.array(ILLNESS_TYPES, dtype=object)[per_visit(sim["rep_type"])], ~rep
    )
    cols["illness_severity"] = strs(
        np.array(SEVERITIES, dtype=object)[per_visit(sim["rep_sev"])], ~rep
    )
    cols["days_since_onset"] = ints(per_visit(sim["rep_days"]), ~rep)
    sampled = per_visit(sim["sampled"])
    for m in CYTOKINES:
        cols[_CYTO_COLUMN[m]] = strs(
            _fmt_cytokine(per_visit(sim["cyto_values"][m]), sim["lod"][m]), ~sampled
        )
    no_inf = rows_v >= n_inf
    dose = np.round(per_visit(sim["dose"]), 2)
    cols["dose_mg_kg"] = pd.array(np.where(no_inf, np.nan, dose), dtype="Float64")
    cols["dose_mg_kg"][no_inf] = pd.NA
    cols["infusion_minutes"] = ints(np.nan_to_num(per_visit(sim["minutes"])), no_inf)
    cols["postponed"] = ints(per_visit(sim["postponed"]).astype(int))
    cols["delay_days"] = ints(per_visit(sim["delay"]))
    prev_dose = np.full_like(sim["dose"], np.nan)
    prev_dose[:, 1:] = sim["dose"][:, :-1]
    changed = (
        (~np.isnan(sim["dose"])) & (~np.isnan(prev_dose)) & (np.abs(sim["dose"] - prev_dose) > 1e-9)
    )
    cols["dose_changed"] = ints(per_visit(changed).astype(int))
    cols["benzodiazepine"] = ints(per_patient(sim["bzd"]).astype(int))
    cols["antidepressant"] = ints(per_patient(sim["antidepressant"]).astype(int))
    for c in ("nsaid", "antibiotic", "steroid", "antipyretic"):
        cols[c] = ints(per_visit(sim["meds"][c]).astype(int))
    order = [c for c in SESSION_COLUMNS if c in cols]

    return pd.DataFrame({c: cols[c] for c in order})


def _r(x, nd: int = 4):
    """Round floats for JSON (stable bytes); pass through ints/bools/str."""
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        v = round(float(x), nd)
        return 0.0 if v == 0 else v
    return x


def _mean_or_none(values: np.ndarray) -> float | None:
    return _r(float(np.mean(values))) if values.size else None


def _truth(sim: dict, p: dict, *, scenario: str, seed: int, n: int) -> dict:
    ef = p["effects"]
    att = sim["attended"]
    rated = att & ~sim["madrs_missing"]
    rep = sim["reported"]
    same = sim["direct"] + sim["mediated"]
    ill = sim["ill_true"]
    lag_parts = sim["carry"] + sim["efficacy_shift"]
    prev_rep = np.zeros_like(rep)
    prev_rep[:, 1:] = rep[:, :-1]
    sev_p = p["illness"]["severity_probs"]
    nominal = sum(float(sev_p[s]) * float(ef["sickness_shift"][s]) for s in SEVERITIES)
    sel_rep = rated & rep
    sel_ill = rated & ill
    sel_lag = rated & prev_rep
    att_ill_sev = sim["episodes"].sev[np.maximum(sim["ep_at"], 0)][att & ill]
    ep = sim["episodes"]
    lost = (
        sim["f"][:, None]
        * sim["baseline"][:, None]
        * (1.0 - float(ef["efficacy_multiplier_when_ill"]))
    )
    incr_ill = []
    k = sim["k"]
    for v in range(sim["n_inf"]):
        incr = np.exp(-k * v) - np.exp(-k * (v + 1))
        incr_ill.append(np.where(att[:, v] & ill[:, v], lost[:, 0] * incr, np.nan))
    incr_ill = np.array(incr_ill)
    effects = {
        "units": "MADRS total points (0-60); positive = more depressive symptoms",
        "sickness_shift_by_severity": {s: _r(ef["sickness_shift"][s]) for s in SEVERITIES},
        "carryover_fraction": _r(ef["carryover_fraction"]),
        "carryover_window_days": _r(ef["carryover_window_days"]),
        "efficacy_multiplier_when_ill": _r(ef["efficacy_multiplier_when_ill"]),
        "il6_to_madrs_per_log": _r(ef["il6_to_madrs_per_log"]),
        "nominal_direct_effect_onset_severity_mix": _r(nominal),
        "within_person_effect_reported_illness": {
            "value": _mean_or_none(same[sel_rep]) if sel_rep.any() else 0.0,
            "n_sessions": int(sel_rep.sum()),
            "definition": (
                "mean over rated sessions (attended, MADRS observed) with reported ill=1 of the "
                "expected same-session shift in the MADRS total caused by illness at that "
                "session: direct sickness shift + il6_to_madrs_per_log * log IL-6 illness "
                "pulse; false-positive flags contribute 0; excludes carry-over and "
                "drug-efficacy changes from earlier sessions (see lagged_effect_...)"
            ),
        },
        "within_person_effect_true_illness": {
            "value": _mean_or_none(same[sel_ill]) if sel_ill.any() else 0.0,
            "n_sessions": int(sel_ill.sum()),
            "definition": "as within_person_effect_reported_illness, over truly ill rated sessions",
        },
        "lagged_effect_after_reported_illness": {
            "value": _mean_or_none(lag_parts[sel_lag]) if sel_lag.any() else 0.0,
            "n_sessions": int(sel_lag.sum()),
            "definition": (
                "mean over rated sessions whose previous session had reported ill=1 of "
                "carry-over + drug-efficacy shift (B_i f_i (P_no_illness - P)) at that session"
            ),
        },
        "mean_efficacy_change_per_ill_infusion": {
            "value": _r(float(np.nanmean(incr_ill))) if np.isfinite(incr_ill).any() else 0.0,
            "definition": (
                "mean over truly ill infusions of B_i f_i (1 - efficacy_multiplier_when_ill) "
                "times that infusion's progress increment: MADRS points of drug effect lost "
                "(positive) or gained (negative) at all later ratings"
            ),
        },
        "attended_ill_severity_mix": {
            s: _r(float(np.mean(att_ill_sev == i))) if att_ill_sev.size else 0.0
            for i, s in enumerate(SEVERITIES)
        },
    }
    patients = []
    pid = sim["patient_id"]
    day0 = sim["day"][:, 0]
    ep_ranges = np.searchsorted(ep.pid[: ep.m], np.arange(n + 1))
    for i in range(n):
        lo, hi = ep_ranges[i], ep_ranges[i + 1]
        last = int(sim["last_visit"][i])
        patients.append(
            {
                "patient_id": str(pid[i]),
                "response_class": "responder" if sim["responder"][i] else "minimal_improver",
                "f": _r(sim["f"][i]),
                "k": _r(sim["k"][i]),
                "baseline_madrs_true": _r(sim["baseline"][i]),
                "log_il6_baseline": _r(sim["base_log"]["il6"][i]),
                "log_crp_baseline": _r(sim["base_log"]["crp"][i]),
                "schedule": "thrice_weekly" if sim["thrice"][i] else "twice_weekly",
                "benzodiazepine_high_dose": bool(sim["bzd_high"][i]),
                "escalated": bool(sim["escalated"][i]),
                "last_session": last + 1,
                "dropped_out": bool(sim["dropped_out"][i]),
                "true_ill_sessions": [
                    int(v + 1) for v in np.nonzero(sim["ill_true"][i])[0] if v <= last
                ],
                "episodes": [
                    {
                        "type": ILLNESS_TYPES[ep.type[j]],
                        "severity": SEVERITIES[ep.sev[j]],
                        "onset_day": _r(ep.onset[j] - day0[i], 2),
                        "duration_days": _r(ep.dur[j], 2),
                    }
                    for j in range(lo, hi)
                ],
                "expected_madrs": [_r(x, 2) for x in sim["expected"][i]],
                "complete_madrs": [int(x) for x in sim["madrs_complete"][i]],
                "direct_shift": [_r(x, 3) for x in sim["direct"][i]],
                "carryover_shift": [_r(x, 3) for x in sim["carry"][i]],
                "mediated_shift": [_r(x, 3) for x in sim["mediated"][i]],
                "efficacy_shift": [_r(x, 3) for x in sim["efficacy_shift"][i]],
            }
        )
    return {
        "format": "ketastats-simulation-truth",
        "version": 1,
        "scenario": scenario,
        "seed": seed,
        "n_patients": n,
        "n_sessions_written": int(att.sum()),
        "conventions": {
            "session": "1-based infusion number; the rating is taken before that infusion",
            "after_n_infusions": "rating at session n+1; session 1 = pre-treatment baseline",
            "end_of_course_visit": bool(p["schedule"]["end_of_course_visit"]),
            "response": "MADRS >= 50% below the session-1 rating",
            "remission": "MADRS <= 10",
            "per_patient_arrays": "one value per planned visit (session 1..), complete data",
        },
        "params": p,
        "effects": effects,
        "patients": patients,
    }
