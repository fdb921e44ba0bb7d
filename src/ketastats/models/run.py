"""Run one model specification on a cohort's prepared table: the model JSON.

:func:`run_model` dispatches on the spec's ``kind`` (its code is
``ketastats/models/kinds/<kind>.py``, declared in :mod:`ketastats.models.registry`) and wraps the result in the envelope
every model JSON shares (``data/processed/<cohort>/models/<name>.json``)::

    {"name", "kind", "label", "role", "spec", "estimands", "status": "ok"|"unreliable"|"skipped"|"failed",
     "reason", "converged", "singular", "attempts", "engine", "method", "nobs", "ngroups",
     "df_method", "coefficients": [{"term", "estimate", "se", "ci_low", "ci_high", "p_value",
     "df", "df_method"}], "illness_effect", "random", "residual_variance", "loglik", "blups",
     "messages", "counted_text", ...kind-specific blocks}

``counted_text`` maps each reason or message that quotes counts to its template and counts
(:mod:`ketastats.models.counted`): the report renders those texts again after small-cell
suppression, and withholds the numbers of any other text (an error message, say).

A model switched off in config, or whose data lack what it needs, is ``"skipped"`` with the
reason; a fit the data do not identify (separation, every attempt failing its Hessian check,
no convergence; :mod:`ketastats.models.identification`) is ``"unreliable"`` with the reasons
in words; an error is ``"failed"`` with a message for people (the exception itself goes to
the job log), unless the spec says ``required: true``, in which case the error propagates
and the workflow stops.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import pandas as pd

from ..exceptions import KetastatsError
from .counted import remember
from .identification import fit_reasons
from .registry import REGISTRY
from .result import Design, ModelResult
from .retries import SkipModel
from .specs import without_illness

__all__ = ["fit_model", "run_model", "empty_result"]

log = logging.getLogger(__name__)


def empty_result(name: str, spec: Mapping[str, Any], estimands: Mapping[str, str]) -> dict[str, Any]:
    """The envelope with every key present and no estimates."""
    return {
        "name": name,
        "kind": spec.get("kind", "lmm"),
        "label": spec.get("label") or name,
        "role": spec.get("role", "secondary"),
        "spec": dict(spec),
        "estimands": {k: {"strategy": v} for k, v in estimands.items()},
        "status": "ok",
        "reason": None,
        "converged": None,
        "singular": None,
        "attempts": [],
        "engine": None,
        "optimizer": None,
        "method": spec.get("method"),
        "nobs": None,
        "ngroups": None,
        "df_method": None,
        "coefficients": [],
        "fixed": {},
        "illness_effect": None,
        "random": None,
        "residual_variance": None,
        "loglik": None,
        "blups": None,
        "messages": [],
    }


def fit_model(
    name: str,
    spec: Mapping[str, Any],
    data: pd.DataFrame,
    estimands: Mapping[str, str],
    *,
    alpha: float = 0.05,
) -> ModelResult:
    """Fit model ``name`` as specified: its :class:`~ketastats.models.result.ModelResult`.

    Parameters
    ----------
    name : str
        The model's name in config.
    spec : mapping
        The resolved specification (:func:`ketastats.config.model_spec`).
    data : pandas.DataFrame
        The cohort's prepared session table.
    estimands : mapping
        Strategy per intercurrent event (:func:`ketastats.config.cohort_estimands`).
    alpha : float
        1 - confidence level of every interval.

    Raises
    ------
    KetastatsError
        Only when the spec says ``required: true`` and the model failed or was skipped.
    """
    out = _fields(name, spec, data, estimands, alpha=alpha)
    design = out.pop("design", None)
    result = ModelResult.from_json(out)
    result.design = design if isinstance(design, Design) or design is None else Design.from_json(design)
    return result


def run_model(
    name: str,
    spec: Mapping[str, Any],
    data: pd.DataFrame,
    estimands: Mapping[str, str],
    *,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """:func:`fit_model`'s result as the model JSON (:meth:`ModelResult.to_json`), as the workflow writes it."""
    return fit_model(name, spec, data, estimands, alpha=alpha).to_json()


def _fields(
    name: str,
    spec: Mapping[str, Any],
    data: pd.DataFrame,
    estimands: Mapping[str, str],
    *,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """The model's fields: the envelope, the kind's fields and the status."""
    out = empty_result(name, spec, estimands)
    if not spec.get("enabled", True):
        out.update(status="skipped", reason="switched off in config (enabled: false)")
        log.info("model %s: skipped (switched off in config)", name)
        return out
    no_illness = "ill" not in data.columns or data["ill"].isna().all()
    if no_illness and spec.get("role") == "primary" and spec["kind"] == "lmm" and spec.get("formula") is None:
        # a cohort without illness data still gets its outcome model: the course of the score
        spec = without_illness(spec)
        out["spec"] = dict(spec)
        log.info("model %s: no illness data; fitted without illness terms", name)
    t0 = time.perf_counter()
    try:
        fields = REGISTRY[spec["kind"]].fit(data.copy(), spec, estimands, alpha)
    except SkipModel as exc:
        if spec.get("required"):
            raise KetastatsError(f"model {name!r} is required but cannot be fitted: {exc}") from exc
        out.update(status="skipped", reason=remember(out, exc.counted))
        log.warning("model %s: skipped: %s", name, exc)
        return out
    except KetastatsError as exc:  # the package's own errors are written for people
        if spec.get("required"):
            raise
        out.update(status="failed", reason=str(exc))
        log.exception("model %s failed", name)
        return out
    except Exception as exc:  # noqa: BLE001 - reported in the JSON, never hidden
        if spec.get("required"):
            raise
        out.update(
            status="failed",
            reason=(
                "the fit stopped on an unexpected error; the full error is in this model's job log "
                f"(logs/<cohort>/fit_{name}.log). Please report it with that log"
            ),
        )
        log.exception("model %s failed (%s)", name, type(exc).__name__)
        return out
    out.update(fields)
    if no_illness and out["spec"].get("illness_term") is None and spec.get("role") == "primary":
        out["messages"] = [
            "no illness data in this cohort: fitted without illness terms (the course of the score only)",
            *out.get("messages", []),
        ]
    log.info("model %s fitted in %.1f s", name, time.perf_counter() - t0)
    hessian_se = REGISTRY[spec["kind"]].hessian_se or (
        spec["kind"] == "cytokine_illness" and out.get("censoring") == "tobit"
    )
    reasons = [*(out.get("identification") or []), *fit_reasons(out, hessian_se=hessian_se)]
    if reasons:
        out.update(status="unreliable", reason="; ".join(reasons))
        log.warning("model %s: unreliable: %s", name, out["reason"])
    if out.get("converged") is False:
        out["messages"] = [*out.get("messages", []), "did not converge: estimates are unreliable"]
    if out.get("singular"):
        out["messages"] = [
            *out.get("messages", []),
            "singular fit: a variance parameter is at its boundary or the Hessian is not positive definite",
        ]
    log.info(
        "model %s: %s (converged=%s, singular=%s)", name, out["status"], out["converged"], out["singular"]
    )
    return out
