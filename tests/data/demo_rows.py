#!/usr/bin/env python
"""Write the rows each model of the shipped config analyses on the frozen demo cohort.

    PYTHONPATH=src python tests/data/demo_rows.py      # then: cd tests/data && Rscript demo_reference.R

The demo cohort (``tests/data/demo_sessions.csv``) is read, typed and prepared by the package's
own steps; each model below is then run by its own kind, with the kind's fitter replaced by a
recorder that writes the exact response, design and grouping the fitter receives (so the rows,
the centring and the estimands are the package's, not a re-implementation). Output, for
``demo_reference.R``: ``demo_rows/<model>.csv.gz`` (``part``, ``group``, ``y``, ``x0..`` the
fixed-effects design, and ``cens``/``wave``/``mask`` where the model has them) and
``demo_rows/manifest.csv`` (one line per fit: model, fit number, the block it uses, engine
kind, the design's term names, which design columns have random effects, REML or ML, the GEE's
working correlation, the delta). The multiple-imputation kinds are recorded with 3
imputations and deltas 0 and 6 (``demo_cohort.MI_OVERRIDE``): the reference checks the analysis and the
pooling of given completed data sets, not the imputation draws.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/, for demo_cohort

from demo_cohort import MODELS, demo_sessions, shipped_estimands, spec_for  # noqa: E402

from ketastats.models import fitting, run_model  # noqa: E402
from ketastats.models.engines import mice  # noqa: E402
from ketastats.models.engines.lmm import design_matrices  # noqa: E402
from ketastats.models.kinds import cytokine_illness, gee, gee_binary, glmm_binary  # noqa: E402
from ketastats.models.kinds import mmrm as mmrm_kind  # noqa: E402
from ketastats.models.rows import binary_rows  # noqa: E402


class Recorder:
    """Replaces the kinds' fitters by wrappers that record what they are given."""

    def __init__(self):
        self.fits: list[dict] = []
        self.model = ""

    def add(self, engine, y, X, groups, xnames, *, z_idx=(), reml=None, **extra):
        self.fits.append(
            {
                "model": self.model,
                "engine": engine,
                "y": np.asarray(y, float),
                "X": np.asarray(X, float),
                "group": np.asarray(groups).astype(str),
                "xnames": list(xnames),
                "z_idx": list(z_idx),
                "reml": reml,
                **extra,
            }
        )

    def install(self):
        rec = self
        orig = {
            "fit_mixed": fitting.fit_mixed,
            "tobit": cytokine_illness.fit_tobit_lmm,
            "glmm": glmm_binary.fit_logistic_glmm,
            "gee_logistic": gee_binary.gee_logistic,
            "GEE": gee.GEE,
            "fit_one": mice._fit_one,
            "fit_mmrm": mmrm_kind.fit_mmrm,
        }
        self.orig = orig
        seen: set = set()

        def fit_mixed(data, formula, group, re_formula=None, *, reml=True, **kw):
            key = (rec.model, formula, re_formula, len(data))
            if key not in seen:  # one record per model, whichever engine attempt runs
                seen.add(key)
                y, X, Z, g, xn, zn, _ = design_matrices(data, formula, group, re_formula)
                rec.add("lmer", y, X, g, xn, z_idx=[xn.index(z) for z in zn], reml=reml, formula=formula)
            return orig["fit_mixed"](data, formula, group, re_formula, reml=reml, **kw)

        def tobit(y, cens, X, g, **kw):
            rec.add(
                "tobit", y, X, g, ["Intercept"] + rec.spec["fixed"], z_idx=[0], cens=np.asarray(cens, int)
            )
            return orig["tobit"](y, cens, X, g, **kw)

        def glmm(y, X, g, **kw):
            rec.add("glmer", y, X, g, rec.xnames(), z_idx=[0])
            return orig["glmm"](y, X, g, **kw)

        def gee_logistic(y, X, g, **kw):
            rec.add(
                "geeglm_binomial", y, X, g, rec.xnames(), correlation=kw.get("correlation", "exchangeable")
            )
            return orig["gee_logistic"](y, X, g, **kw)

        def GEE(endog, exog, groups, family, cov_struct, time=None, **kw):
            rec.add("geeglm_gaussian", endog, exog, groups, list(exog.columns), wave=np.asarray(time) + 1)
            return orig["GEE"](
                endog, exog, groups=groups, family=family, cov_struct=cov_struct, time=time, **kw
            )

        def fit_one(design, spec, prep, shift=None):
            rec.add(
                "lmer",
                design.y,
                design.X,
                design.groups,
                design.xnames,
                z_idx=[design.xnames.index(z) for z in design.znames],
                reml=spec["method"] == "REML",
                shift=np.zeros(len(design.y)) if shift is None else np.asarray(shift, float),
            )
            return orig["fit_one"](design, spec, prep, shift)

        def fit_mmrm(y, X, subject, visit, *, covariance="us", visit_levels=None, reml=True, names=None, **kw):
            levels = list(visit_levels)
            rec.add(
                "gls",
                y,
                X,
                subject,
                names,
                reml=reml,
                wave=np.array([levels.index(v) + 1 for v in visit]),
                correlation=covariance,
            )
            return orig["fit_mmrm"](
                y, X, subject, visit, covariance=covariance, visit_levels=visit_levels, reml=reml, names=names, **kw
            )

        mmrm_kind.fit_mmrm = fit_mmrm
        fitting.fit_mixed = fit_mixed
        cytokine_illness.fit_tobit_lmm = tobit
        glmm_binary.fit_logistic_glmm = glmm
        gee_binary.gee_logistic = gee_logistic
        gee.GEE = GEE
        mice._fit_one = fit_one

    def uninstall(self):
        fitting.fit_mixed = self.orig["fit_mixed"]
        cytokine_illness.fit_tobit_lmm = self.orig["tobit"]
        glmm_binary.fit_logistic_glmm = self.orig["glmm"]
        gee_binary.gee_logistic = self.orig["gee_logistic"]
        gee.GEE = self.orig["GEE"]
        mice._fit_one = self.orig["fit_one"]
        mmrm_kind.fit_mmrm = self.orig["fit_mmrm"]

    def xnames(self):
        """Design names of a binary model (the kind builds its design with patsy from binary_rows)."""
        import patsy

        df, formula, *_ = binary_rows(self.data, self.spec, self.estimands, self.spec["label"])
        return list(patsy.dmatrices(formula, df, return_type="dataframe")[1].columns)


def record_all() -> tuple[list[dict], dict]:
    """Run every model in :data:`MODELS` on the demo with the recorder installed."""
    data, estimands = demo_sessions(), shipped_estimands()
    rec = Recorder()
    rec.data, rec.estimands = data, estimands
    rec.install()
    outputs = {}
    try:
        for name in MODELS:
            spec = spec_for(name)
            rec.model, rec.spec = name, spec
            outputs[name] = run_model(name, spec, data, estimands)
            assert outputs[name]["status"] == "ok", (name, outputs[name].get("reason"))
    finally:
        rec.uninstall()
    return rec.fits, outputs


def write(fits: list[dict], out: Path) -> None:
    """The data blocks (each distinct set of rows once) and the manifest of fits.

    ``demo_rows/<model>.csv.gz`` stacks the blocks first recorded for ``model`` (told apart by
    ``part``); a fit on rows recorded before (the reduced model of illness_slopes, the mixed
    logistic model on the GEE's rows, the tipping point on the imputations of primary_mi) points
    at that block. A delta-adjusted fit adds ``delta`` times the block's ``mask`` (1 at imputed
    ratings of ill sessions) to ``y``.
    """
    out.mkdir(exist_ok=True)
    blocks: dict[bytes, tuple[str, int]] = {}
    frames: dict[str, list[pd.DataFrame]] = {}
    manifest = []
    for f in fits:
        key = b"".join(np.ascontiguousarray(a).tobytes() for a in (f["y"], f["X"], f["group"].astype("U")))
        delta, mask = 0.0, None
        if "shift" in f and np.any(f["shift"]):
            delta = float(np.max(np.abs(f["shift"])))
            mask = f["shift"] / delta
        if key not in blocks:
            model = f["model"]
            part = len(frames.setdefault(model, []))
            frame = {"part": part, "group": f["group"], "y": f["y"]}
            for extra in ("cens", "wave"):
                if extra in f:
                    frame[extra] = f[extra]
            if "shift" in f:
                frame["mask"] = np.zeros(len(f["y"]))
            for j in range(f["X"].shape[1]):
                frame[f"x{j}"] = f["X"][:, j]
            frames[model].append(pd.DataFrame(frame))
            blocks[key] = (model, part)
        file_model, part = blocks[key]
        if mask is not None:
            block = frames[file_model][part]
            if block["mask"].any() and not np.array_equal(block["mask"].to_numpy(), mask):
                raise AssertionError(f"{f['model']}: two different delta masks on one block")
            block["mask"] = mask
        manifest.append(
            {
                "model": f["model"],
                "fit": sum(m["model"] == f["model"] for m in manifest),
                "file": f"{file_model}.csv.gz",
                "part": part,
                "engine": f["engine"],
                "nobs": len(f["y"]),
                "terms": ";".join(f["xnames"]),
                "random": ";".join(str(i) for i in f["z_idx"]),
                "reml": "" if f["reml"] is None else str(bool(f["reml"])).upper(),
                "correlation": f.get(
                    "correlation", "unstructured" if f["engine"] == "geeglm_gaussian" else ""
                ),
                "delta": delta,
            }
        )
    for model, parts in frames.items():
        # gzip without a time stamp: the same rows give the same bytes
        pd.concat(parts, ignore_index=True).to_csv(
            out / f"{model}.csv.gz", index=False, compression={"method": "gzip", "mtime": 0}
        )
    pd.DataFrame(manifest).to_csv(out / "manifest.csv", index=False)


if __name__ == "__main__":
    recorded, _ = record_all()
    write(recorded, HERE / "demo_rows")
    print(f"{len(recorded)} fits recorded in {HERE / 'demo_rows'}")
