"""Within-person mediation: illness -> log marker (IL-6) -> score (kind ``mediation``).

A 1-1-1 multilevel mediation model (Krull & MacKinnon 2001; Bauer, Preacher & Gil 2006)
on the post-baseline sessions with a draw of the mediator, both variables split into
within-person (person-mean centred) and between-person parts:

a path
    ``log M_ij = a0 + a ill_within_ij + a_B ill_between_i + covariates + u_i + e_ij``
b path
    ``score_ij = b0 + b M_within_ij + c' ill_within_ij + b_B M_between_i + ill_between_i
    + covariates + v_i + e_ij``

The within-person indirect effect is ``a b`` (score points per ill session through the
marker); the total within-person effect is ``c' + a b``. Its confidence interval is the
Monte Carlo interval of Preacher & Selig (2012): quantiles of ``a* b*`` with ``a*, b*``
drawn from their estimated sampling distributions (independent, as the two equations are
fitted separately), with a fixed seed so the result is reproducible. The a and b paths
have fixed slopes here: the ``cov(a_i, b_i)`` term of Bauer et al. (2006) is assumed zero,
which the JSON states. IL-6 and the MADRS are drawn at the same session, so this is
cross-sectional mediation: temporal order is assumed, not observed.

References
----------
Bauer, D. J., Preacher, K. J., & Gil, K. M. (2006). Conceptualizing and testing random
indirect effects and moderated mediation in multilevel models. *Psychological Methods*,
11(2), 142-163.

Preacher, K. J., & Selig, J. P. (2012). Advantages of Monte Carlo confidence intervals for
indirect effects. *Communication Methods and Measures*, 6(2), 77-98.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..common import illness_effect, mcid_for, num, require_illness
from ..counted import remember
from ..fitting import fit_lmm_robust, lmm_block
from ..markers import check_marker, log_marker
from ..multiplicity import adjust_tests
from ..retries import SkipModel
from ..rows import centre_within, model_rows

__all__ = ["monte_carlo_indirect", "fit"]


def monte_carlo_indirect(
    a: float, se_a: float, b: float, se_b: float, *, alpha: float = 0.05, n_draws: int = 100000, seed: int = 0
) -> dict[str, float]:
    """Monte Carlo CI and two-sided p-value of the product ``a b`` (Preacher & Selig 2012).

    Also returns the Sobel (first-order delta) SE ``sqrt(a^2 se_b^2 + b^2 se_a^2)``.

    Examples
    --------
    With ``se_b = 0`` the product is normal: the interval is ``b (a -/+ 1.96 se_a)``.

    >>> r = monte_carlo_indirect(1.0, 0.1, 2.0, 0.0, n_draws=200000, seed=1)
    >>> round(r["ci_low"], 2), round(r["ci_high"], 2)
    (1.61, 2.39)
    """
    rng = np.random.default_rng(seed)
    ab = rng.normal(a, se_a, n_draws) * rng.normal(b, se_b, n_draws)
    lo, hi = np.quantile(ab, [alpha / 2, 1 - alpha / 2])
    p = 2 * min((ab <= 0).mean(), (ab >= 0).mean())
    return {
        "estimate": a * b,
        "ci_low": float(lo),
        "ci_high": float(hi),
        "p_value": float(max(min(p, 1.0), 1.0 / n_draws)),
        "sobel_se": float(np.sqrt(a**2 * se_b**2 + b**2 * se_a**2)),
        "n_draws": n_draws,
        "seed": seed,
    }


def _row(coefs, term):
    return next(c for c in coefs if c["term"] == term)


def fit(data: pd.DataFrame, spec: Mapping[str, Any], estimands: Mapping[str, str], alpha):
    """Kind ``mediation``: within-person illness -> log mediator -> score."""
    marker = spec["mediator"]
    what = spec["label"]
    if marker not in data.columns:
        raise SkipModel(f"{what}: mediator {marker} is not in the data (no draws)")
    med = f"log_{marker}"
    ill = spec["illness_term"]
    if ill != "ill_within":
        raise SkipModel(f"{what}: the within-person decomposition needs illness_term ill_within")
    covars = [t for t in spec["fixed"] if t not in ("ill_within", "ill_between")]

    def derive(df):
        return df.assign(**{med: log_marker(df, marker, spec["censoring"])})

    df, record = model_rows(
        data,
        spec,
        estimands,
        outcome=spec["outcome"],
        terms=[*covars, "ill_within", med],
        cytokines=[marker],
        what=what,
        derive=derive,
    )
    flags: dict[str, Any] = {}
    summ = check_marker(df, marker, spec, flags)
    require_illness(df, what, min_sessions=2)
    df = centre_within(df, [med], spec["group"])
    reml = spec["method"] == "REML"
    a_formula = f"{med} ~ " + " + ".join(["ill_within", "ill_between", *covars])
    b_formula = f"{spec['outcome']} ~ " + " + ".join(
        [f"{med}_within", "ill_within", f"{med}_between", "ill_between", *covars]
    )
    common = dict(reml=reml, engine=spec["engine"], df_method=spec["df_method"], alpha=alpha)
    fa = fit_lmm_robust(df, a_formula, spec["group"], None, prefix="a path: ", **common)
    fb = fit_lmm_robust(df, b_formula, spec["group"], None, prefix="b path: ", **common)
    ra = _row(fa.coefficients, "a path: ill_within")
    rb = _row(fb.coefficients, f"b path: {med}_within")
    rc = _row(fb.coefficients, "b path: ill_within")
    ind = monte_carlo_indirect(
        ra["estimate"],
        ra["se"],
        rb["estimate"],
        rb["se"],
        alpha=alpha,
        n_draws=int(spec.get("n_draws", 100000)),
        seed=int(spec.get("seed", 0)),
    )
    total = rc["estimate"] + ind["estimate"]
    block_a, block_b = lmm_block(fa), lmm_block(fb)
    tests = [
        {
            "id": f"{marker}:mediation",
            "label": f"indirect effect of illness through log {marker}",
            "term": "indirect",
            "estimate": ind["estimate"],
            "p_value": ind["p_value"],
        }
    ]
    direct = illness_effect(
        fb.coefficients, "b path: ill_within", scale="points", mcid=mcid_for(spec["outcome"])
    )
    out: dict[str, Any] = {}
    flags = {m: {**f, "message": remember(out, f["message"])} for m, f in flags.items()}
    return out | {
        "converged": block_a["converged"] and block_b["converged"],
        "singular": block_a["singular"] or block_b["singular"],
        "attempts": [{**a, "label": f"a path: {a['label']}"} for a in block_a["attempts"]]
        + [{**a, "label": f"b path: {a['label']}"} for a in block_b["attempts"]],
        "engine": block_b["engine"],
        "optimizer": block_b["optimizer"],
        "method": block_b["method"],
        "nobs": block_b["nobs"],
        "ngroups": block_b["ngroups"],
        "df_method": fb.df_method,
        "coefficients": fa.coefficients + fb.coefficients,
        "fits": {"a_path": block_a, "b_path": block_b},
        "illness_effect": direct,
        "indirect_effect": {
            "term": "indirect (a x b)",
            "estimate": num(ind["estimate"]),
            "ci_low": num(ind["ci_low"]),
            "ci_high": num(ind["ci_high"]),
            "p_value": num(ind["p_value"]),
            "ci_method": "Monte Carlo (Preacher & Selig 2012)",
            "sobel_se": num(ind["sobel_se"]),
            "n_draws": ind["n_draws"],
            "seed": ind["seed"],
            "scale": "points",
        },
        "paths": {"a": ra, "b": rb, "c_prime": rc},
        "total_effect": num(total),
        "proportion_mediated": num(ind["estimate"] / total) if abs(total) > 1e-12 else None,
        "assumptions": [
            "fixed a and b paths: cov(a_i, b_i) (Bauer et al. 2006) assumed zero",
            "mediator and outcome measured at the same session: temporal order assumed",
            "no unmeasured within-person confounding of mediator and outcome",
        ],
        "mediator_draws": summ,
        "censoring_flags": flags,
        "censoring": spec["censoring"],
        "estimands": record,
        "family": spec.get("family", "cytokine"),
        "tests": tests,
        "bh_adjusted": adjust_tests(tests),
        "messages": block_a["messages"] + block_b["messages"] + [f["message"] for f in flags.values()],
    }
