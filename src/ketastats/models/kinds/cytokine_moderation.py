"""Kind ``cytokine_moderation``: does a patient's baseline inflammation moderate the illness effect?

Per moderator (baseline log IL-6, baseline log CRP; the session-1 draw, centred at the
grand mean over patients): the primary model plus ``ill_within x moderator`` and the
moderator's main effect, with a random slope for ``ill_within`` (a cross-level
interaction without it is anti-conservative; Heisig & Schaeffer 2019). Each moderator's
test is listed under ``"tests"`` for the family-wide Benjamini-Hochberg adjustment
(:mod:`ketastats.models.multiplicity`). The marker handling is :mod:`ketastats.models.markers`.

References
----------
Heisig, J. P., & Schaeffer, M. (2019). Why you should always include a random slope for
the lower-level variable involved in a cross-level interaction. *European Sociological
Review*, 35(2), 258-279.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pandas as pd

from ..common import illness_effect, mcid_for, num, require_illness
from ..counted import CountedText
from ..fitting import fit_spec_lmm, formulas_for, lmm_block
from ..markers import baseline_log_marker, check_marker, finish_blocks
from ..retries import SkipModel
from ..rows import model_rows

__all__ = ["fit"]

log = logging.getLogger(__name__)


def fit(data: pd.DataFrame, spec: Mapping[str, Any], estimands: Mapping[str, str], alpha):
    """Kind ``cytokine_moderation``: illness x baseline log marker on the score."""
    blocks: dict[str, dict[str, Any]] = {}
    skipped: dict[str, CountedText] = {}
    tests = []
    flags: dict[str, Any] = {}
    record_all: dict[str, Any] = {}
    ill = spec["illness_term"]
    for marker in spec["moderators"]:
        mod = f"{marker}_base_c"
        try:
            if marker not in data.columns:
                raise SkipModel(f"{marker}: not in the data (no draws)")
            base = data[data["session"] == data.groupby(spec["group"])["session"].transform("min")]
            summ = check_marker(base, marker, {**spec, "min_draws": spec.get("min_patients", 10)}, flags)
            blm = baseline_log_marker(data, marker, spec["censoring"], spec["group"])

            def derive(df, blm=blm, mod=mod):
                v = df[spec["group"]].map(blm)
                return df.assign(**{mod: v})

            formula, re_formula = formulas_for(spec, extra_fixed=[mod, f"{ill}:{mod}"])
            df, record = model_rows(
                data,
                spec,
                estimands,
                outcome=spec["outcome"],
                terms=[formula.split("~", 1)[1], re_formula or ""],
                what=f"{spec['label']} ({marker})",
                derive=derive,
            )
            # centre the moderator at the grand mean over the analysed patients
            per_patient = df.groupby(spec["group"])[mod].first()
            df = df.assign(**{mod: df[mod] - per_patient.mean()})
            require_illness(df, f"{spec['label']} ({marker})", min_sessions=2)
        except SkipModel as exc:
            skipped[marker] = exc.counted
            continue
        fit = fit_spec_lmm(df, formula, re_formula, spec, alpha, prefix=f"{marker}: ")
        block = lmm_block(fit)
        block["baseline_draws"] = summ
        block["moderator"] = {"column": mod, "centred_at": num(per_patient.mean()), "scale": "log"}
        term = f"{marker}: {ill}:{mod}"
        row = next(c for c in fit.coefficients if c["term"] == term)
        block["interaction"] = row
        tests.append(
            {
                "id": f"{marker}:moderation",
                "label": f"illness x baseline log {marker}",
                "term": term,
                "estimate": row["estimate"],
                "p_value": row["p_value"],
            }
        )
        block["illness_effect"] = illness_effect(
            fit.coefficients, f"{marker}: {ill}", scale="points", mcid=mcid_for(spec["outcome"])
        )
        blocks[marker] = block
        record_all = record
    return finish_blocks(blocks, skipped, spec, record_all, flags, tests)
