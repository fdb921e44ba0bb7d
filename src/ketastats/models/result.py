"""One result type for every model: :class:`ModelResult`, its JSON, and its predictions.

Every kind's fit becomes a :class:`ModelResult` (:func:`ketastats.models.fit_model`); the
workflow writes it with :meth:`ModelResult.to_json` to
``data/processed/<cohort>/models/<name>.json``, ``ketastats fit`` writes the same schema, and
the report, the notebooks (:mod:`ketastats.explore`) and the recovery study read it back with
:meth:`ModelResult.from_json`. Nothing downstream rebuilds a model's design by itself: a
model that analysed one table of rows (kinds ``lmm``, ``illness_slopes``, ``gee``,
``gee_binary``, ``glmm_binary``) carries its :class:`Design` - the formulas, the design's
column names, and the analysed rows' keys and variables *as analysed* (after the estimand
strategies, the session selection and the within-patient centring of that model) - so that
:meth:`ModelResult.fitted` and :meth:`ModelResult.residuals` are the model's own, and
:meth:`ModelResult.predict` applies the model's formulas (and, for rows of the analysed
patients, its centring) to new rows.

The JSON schema (version :data:`SCHEMA_VERSION`) is documented in ``docs/statistics.md``
("The model result"). Its keys:

``schema_version``, ``name``, ``kind``, ``label``, ``role``, ``spec``, ``estimands``,
``status`` (``ok``/``unreliable``/``skipped``/``failed``), ``reason``, ``messages``,
``counted_text``, ``converged``, ``singular``, ``attempts``, ``engine``, ``optimizer``,
``method``, ``nobs``, ``ngroups``, ``df_method``, ``coefficients`` (``term``, ``estimate``,
``se``, ``df``, ``ci_low``, ``ci_high``, ``p_value``, ``df_method``; binary kinds add odds
ratios), ``fixed``, ``illness_effect``, ``random`` (``group``, ``names``, ``cov``, ``sd``,
``corr``), ``residual_variance``, ``loglik``, ``blups``, ``row_filters``, ``design`` (or
null), and the kind's own blocks (e.g. ``working_correlation``, ``quadrature``,
``markers``, ``imputation``), kept as they are.

Examples
--------
>>> r = ModelResult.from_json({"name": "m", "kind": "lmm", "status": "skipped", "reason": "no data"})
>>> r.ok, r.to_json()["schema_version"], r.coefficient("ill_within")
(False, 1, None)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import ModelError

__all__ = ["SCHEMA_VERSION", "Coefficient", "Design", "ModelResult", "design_of"]

#: version of the model JSON schema; a reader refuses a newer one
SCHEMA_VERSION = 1

_COEF_KEYS = ("term", "estimate", "se", "df", "ci_low", "ci_high", "p_value", "df_method")

#: the envelope's keys, in the order the JSON writes them (the kind's own blocks follow)
_CORE = (
    "name", "kind", "label", "role", "spec", "estimands", "status", "reason", "converged", "singular",
    "attempts", "engine", "optimizer", "method", "nobs", "ngroups", "df_method", "coefficients", "fixed",
    "illness_effect", "random", "residual_variance", "loglik", "blups", "messages",
)  # fmt: skip


def _f(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class Coefficient:
    """One fixed effect: estimate, SE, df, CI, p-value, and how the df were obtained."""

    term: str
    estimate: float | None
    se: float | None = None
    df: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    df_method: str | None = None
    #: kind-specific columns (odds ratios of the binary kinds, ...)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Coefficient:
        """From one entry of ``coefficients``."""
        return cls(
            term=str(d["term"]),
            **{k: d.get(k) for k in _COEF_KEYS[1:]},
            extra={k: v for k, v in d.items() if k not in _COEF_KEYS},
        )

    def to_json(self) -> dict[str, Any]:
        """The ``coefficients`` entry."""
        out = {k: getattr(self, k) for k in _COEF_KEYS}
        out.update(self.extra)
        return out


@dataclass
class Design:
    """The rows a model analysed and how its design is built from them.

    Attributes
    ----------
    formula : str
        The fixed-effects formula (patsy), outcome on the left.
    re_formula : str or None
        The random-effects formula (``None``: none, or a random intercept where the kind has one).
    group : str
        The patient column.
    columns : list of str
        The fixed-effects design's column names, in the order of the coefficients.
    random_columns : list of str
        The random-effects design's column names (empty for a marginal model).
    rows : pandas.DataFrame
        One row per analysed observation, in the model's order: ``group``, ``session`` and
        every variable the formulas read, as the model analysed them.
    link : str
        ``identity`` or ``logit``: how the linear predictor maps to the outcome's mean.

    In the JSON, ``rows`` is column-wise; a categorical column's levels, in the order that
    sets its reference level, are kept under ``levels``.
    """

    formula: str
    re_formula: str | None
    group: str
    columns: list[str]
    random_columns: list[str]
    rows: pd.DataFrame
    link: str = "identity"

    def to_json(self) -> dict[str, Any]:
        """The ``design`` block (rows column-wise)."""
        rows, levels = {}, {}
        for c in self.rows.columns:
            v = self.rows[c]
            if isinstance(v.dtype, pd.CategoricalDtype):
                levels[str(c)] = [str(x) for x in v.cat.categories]
                rows[str(c)] = [None if pd.isna(x) else str(x) for x in v]
            elif pd.api.types.is_integer_dtype(v) or pd.api.types.is_bool_dtype(v):
                rows[str(c)] = [int(x) for x in v]
            elif pd.api.types.is_numeric_dtype(v):
                rows[str(c)] = [_f(x) for x in v.to_numpy(dtype=float)]
            else:
                rows[str(c)] = [None if pd.isna(x) else str(x) for x in v]
        return {
            "formula": self.formula,
            "re_formula": self.re_formula,
            "group": self.group,
            "columns": list(self.columns),
            "random_columns": list(self.random_columns),
            "link": self.link,
            "levels": levels,
            "rows": rows,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Design:
        """From the ``design`` block."""
        rows = pd.DataFrame({k: pd.Series(v, dtype=None if v else float) for k, v in (d.get("rows") or {}).items()})
        for c, cats in (d.get("levels") or {}).items():
            rows[c] = pd.Categorical(rows[c], categories=cats)
        return cls(
            formula=d["formula"],
            re_formula=d.get("re_formula"),
            group=d["group"],
            columns=list(d.get("columns") or []),
            random_columns=list(d.get("random_columns") or []),
            rows=rows,
            link=d.get("link", "identity"),
        )

    def matrices(self, data: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``y``, ``X`` and ``Z`` of ``data`` (default: the analysed rows) by the model's formulas.

        ``y`` is NaN where ``data`` lacks the outcome; ``X``'s columns are :attr:`columns`.
        """
        import patsy

        data = self.rows if data is None else data
        lhs, rhs = (s.strip() for s in self.formula.split("~", 1))
        x_df = patsy.dmatrix(rhs, data, return_type="dataframe", NA_action="raise")
        if list(x_df.columns) != list(self.columns):
            raise ModelError(
                f"the formula {self.formula!r} builds the columns {list(x_df.columns)} from these rows, "
                f"but the model estimated {self.columns}: the rows are not coded as the model's were"
            )
        if self.random_columns:
            z_df = patsy.dmatrix(
                (self.re_formula or "~1").lstrip("~").strip() or "1", data, return_type="dataframe", NA_action="raise"
            )
            if list(z_df.columns) != list(self.random_columns):
                raise ModelError(f"random-effects design {list(z_df.columns)} is not the model's {self.random_columns}")
            Z = z_df.to_numpy(float)
        else:
            Z = np.zeros((len(data), 0))
        y = pd.to_numeric(data[lhs], errors="coerce").to_numpy(float) if lhs in data.columns else np.full(len(data), np.nan)
        return y, x_df.to_numpy(float), Z


def design_of(
    rows: pd.DataFrame,
    formula: str,
    re_formula: str | None,
    group: str,
    columns: Sequence[str],
    random_columns: Sequence[str] = (),
    *,
    centre: Sequence[str] = (),
    link: str = "identity",
) -> Design:
    """The :class:`Design` of a model fitted to ``rows`` (a kind calls it with the rows it analysed).

    Keeps the keys (``group``, ``session``), the variables the formulas read, and for each
    column the model centred within patient (``centre``) the column and its within and
    between parts, in the rows' order.
    """
    from .common import term_columns

    lhs, rhs = (s.strip() for s in formula.split("~", 1))
    names = term_columns([rhs, re_formula or ""])
    centred = [n for c in centre for n in (c, f"{c}_within", f"{c}_between")]
    keep = [c for c in dict.fromkeys([group, "session", lhs, *names, *centred]) if c in rows.columns]
    return Design(
        formula=formula,
        re_formula=re_formula,
        group=group,
        columns=[str(c) for c in columns],
        random_columns=[str(c) for c in random_columns],
        rows=rows.loc[:, keep].reset_index(drop=True),
        link=link,
    )


@dataclass
class ModelResult:
    """A fitted (or skipped, or failed) model: what every kind returns.

    The attributes are the JSON's keys (module docstring); :attr:`extra` holds the kind's
    own blocks. Read a model JSON with :meth:`from_json`, write it with :meth:`to_json`.
    """

    name: str
    kind: str
    label: str | None = None
    role: str = "secondary"
    spec: dict[str, Any] = field(default_factory=dict)
    estimands: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"
    reason: str | None = None
    converged: bool | None = None
    singular: bool | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    engine: str | None = None
    optimizer: str | None = None
    method: str | None = None
    nobs: int | None = None
    ngroups: int | None = None
    df_method: str | None = None
    coefficients: list[Coefficient] = field(default_factory=list)
    fixed: dict[str, Any] = field(default_factory=dict)
    illness_effect: dict[str, Any] | None = None
    random: dict[str, Any] | None = None
    residual_variance: float | None = None
    loglik: float | None = None
    blups: dict[str, list] | None = None
    messages: list[str] = field(default_factory=list)
    design: Design | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------ JSON
    @classmethod
    def from_json(cls, d: Mapping[str, Any] | str | Any) -> ModelResult:
        """From a model JSON (a mapping, or the path of a JSON file).

        Raises
        ------
        ModelError
            If the JSON was written by a newer schema than this code reads.
        """
        if not isinstance(d, Mapping):
            from ..outputs import read_json

            d = read_json(d)
        version = int(d.get("schema_version") or 1)
        if version > SCHEMA_VERSION:
            raise ModelError(
                f"model {d.get('name', '?')!r} was written with model-result schema {version}; this ketastats "
                f"reads up to {SCHEMA_VERSION}. Update ketastats, or refit the model with this version"
            )
        core = {k: d[k] for k in _CORE if k in d}
        core["role"] = d.get("role") or "secondary"
        core["name"] = str(d.get("name") or "model")
        core["kind"] = str(d.get("kind") or (d.get("spec") or {}).get("kind") or "lmm")
        core["coefficients"] = [Coefficient.from_json(c) for c in d.get("coefficients") or []]
        for k in ("attempts", "messages"):
            core[k] = list(d.get(k) or [])
        for k in ("spec", "estimands", "fixed"):
            core[k] = dict(d.get(k) or {})
        design = d.get("design")
        extra = {k: v for k, v in d.items() if k not in _CORE and k not in ("design", "schema_version")}
        return cls(
            **core,
            design=None if not design else Design.from_json(design),
            extra=extra,
        )

    def to_json(self) -> dict[str, Any]:
        """The model JSON: the envelope's keys, the kind's blocks, ``design`` and ``schema_version``."""
        out: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
        for k in _CORE:
            v = getattr(self, k)
            out[k] = [c.to_json() for c in v] if k == "coefficients" else v
        out.update(self.extra)
        out["design"] = None if self.design is None else self.design.to_json()
        return out

    # ------------------------------------------------------------ reading
    @property
    def ok(self) -> bool:
        """Fitted and trustworthy (status ``ok``)."""
        return self.status == "ok"

    @property
    def estimated(self) -> bool:
        """Has estimates (``ok`` or ``unreliable``)."""
        return self.status in ("ok", "unreliable") and bool(self.coefficients)

    def coefficient(self, term: str) -> Coefficient | None:
        """The coefficient of ``term`` (None if the model has none)."""
        for c in self.coefficients:
            if c.term == term:
                return c
        return None

    def coefficient_table(self) -> pd.DataFrame:
        """The coefficients as a table, one row per term."""
        return pd.DataFrame([c.to_json() for c in self.coefficients])

    def get(self, key: str, default: Any = None) -> Any:
        """A key of the model JSON (an attribute, or a block of the kind's own)."""
        if key in _CORE or key == "design":
            v = getattr(self, key)
            return default if v is None else v
        return self.extra.get(key, default)

    # ------------------------------------------------------------ predictions
    def _needs_design(self) -> Design:
        if self.design is None:
            raise ModelError(
                f"model {self.name!r} (kind {self.kind}) has no single design (status {self.status}); "
                "fitted values and predictions exist for kinds lmm, illness_slopes, gee, gee_binary and glmm_binary"
            )
        return self.design

    def _beta(self, design: Design) -> np.ndarray:
        est = {c.term: c.estimate for c in self.coefficients}
        missing = [c for c in design.columns if est.get(c) is None]
        if missing:
            raise ModelError(f"model {self.name!r}: no estimate for design columns {missing}")
        return np.array([est[c] for c in design.columns], dtype=float)

    def blup_table(self) -> pd.DataFrame:
        """One row per patient (index: patient as text), one column per random effect."""
        if not self.blups:
            return pd.DataFrame()
        names = [n for n in self.blups if n != "group"]
        return pd.DataFrame(
            {n: np.asarray(self.blups[n], dtype=float) for n in names}, index=[str(g) for g in self.blups["group"]]
        )

    def _linear(self, design: Design, rows: pd.DataFrame, conditional: bool) -> tuple[np.ndarray, np.ndarray]:
        y, X, Z = design.matrices(rows)
        eta = X @ self._beta(design)
        if conditional and design.random_columns and self.blups:
            b = self.blup_table().reindex(rows[design.group].astype(str).to_numpy())
            B = b[[c for c in design.random_columns]].to_numpy(float)
            eta = eta + np.nansum(Z * np.nan_to_num(B), axis=1)
        return y, eta

    def _mean(self, eta: np.ndarray, link: str) -> np.ndarray:
        return 1 / (1 + np.exp(-eta)) if link == "logit" else eta

    def fitted(self, conditional: bool = True) -> pd.DataFrame:
        """The model's fitted values on the rows it analysed.

        Parameters
        ----------
        conditional : bool
            Include the patient's BLUPs (``X beta + Z b_i``; a mixed model's usual fitted
            values) or not (``X beta``, the population-average patient).

        Returns
        -------
        pandas.DataFrame
            The design's key columns (``group``, ``session``) with ``observed``, ``fitted``,
            ``fitted_marginal`` and ``residual`` (observed minus fitted; on the outcome's
            scale, a probability for the logistic kinds).
        """
        design = self._needs_design()
        y, eta = self._linear(design, design.rows, conditional)
        _, eta_m = self._linear(design, design.rows, False)
        fitted = self._mean(eta, design.link)
        keys = [c for c in (design.group, "session") if c in design.rows.columns]
        out = design.rows.loc[:, keys].copy()
        out["observed"] = y
        out["fitted"] = fitted
        out["fitted_marginal"] = self._mean(eta_m, design.link)
        out["residual"] = y - fitted
        return out

    def residuals(self, conditional: bool = True) -> pd.Series:
        """Observed minus fitted on the analysed rows (:meth:`fitted`)."""
        return self.fitted(conditional)["residual"]

    def predict(self, data: pd.DataFrame, conditional: bool = True) -> pd.Series:
        """The model's mean of the outcome for new rows of ``data``.

        Columns the model centred within patient (``centre`` in its spec, e.g. ``ill`` into
        ``ill_within`` and ``ill_between``) are centred as the model centred them: on each
        analysed patient's mean over the rows the model analysed (a new patient's over the
        given rows). With ``conditional`` the analysed patients' BLUPs are added (a new
        patient's are 0).
        """
        design = self._needs_design()
        rows = data.copy()
        centre = [c for c in self.spec.get("centre") or [] if c in rows.columns]
        group = design.group
        for c in centre:
            means = design.rows.groupby(design.rows[group].astype(str))[f"{c}_between"].first() \
                if f"{c}_between" in design.rows.columns else None
            own = pd.to_numeric(rows[c], errors="coerce").groupby(rows[group].astype(str)).transform("mean")
            between = own if means is None else rows[group].astype(str).map(means).fillna(own)
            rows[f"{c}_between"] = between.to_numpy(float)
            rows[f"{c}_within"] = pd.to_numeric(rows[c], errors="coerce").to_numpy(float) - rows[f"{c}_between"]
        _, eta = self._linear(design, rows, conditional)
        return pd.Series(self._mean(eta, design.link), index=data.index, name="predicted")
