"""The all-problems validator of session tables, and the typed canonical table.

:func:`validate_sessions` checks a table against :mod:`ketastats.contract` and collects
*every* problem (not just the first) into a :class:`ValidationReport`: one row per problem
with the file, the line in the file, the column, the offending value, a stable rule name,
a severity and a plain-language message that says how to fix it. Errors stop the workflow;
warnings do not. :func:`validate_file` reads a file (optionally through the cohort's config)
and validates it, turning unreadable files into problem rows too. After validation passes,
:func:`coerce_sessions` returns the typed canonical table.

Rules (stable names, used in tests and documented in ``docs/data_contract.md``):

- errors: ``read``, ``mapping``, ``checksum`` (the file cannot be read, the mapping does not
  fit, the file changed while read); ``empty``; ``duplicate_column``; ``required``; ``type``;
  ``range``; ``level``; ``lod_string`` (malformed below-detection-limit value);
  ``duplicate`` (same patient_id and session twice); ``day_order`` (day does not increase
  with session); ``items_total`` (MADRS items do not add up to the total);
  ``cross_field:<name>`` (see :data:`CROSS_FIELD_RULES`); ``identifier:<kind>`` (see
  :mod:`ketastats.identifiers`).
- warnings: ``items_incomplete``, ``lod_fraction`` (more than 30% of a marker's measured
  values below the detection limit), ``cross_field:below_lod``,
  ``cross_field:ill_type_missing``, ``cross_field:first_session_missing``,
  ``unknown_column``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .censoring import as_text, on_uniques, parse_censored, to_float
from .contract import (
    AGE_TOP_CODE,
    BASELINE_COLUMNS,
    COLUMNS,
    CYTOKINES,
    INSTRUMENTS,
    LOD_SUFFIX,
    MADRS_ITEMS,
    REQUIRED,
    SCORE_COLUMNS,
    SEVERITIES,
)
from .exceptions import ConfigError, DataValidationError, IdentifierError, KetastatsError
from .identifiers import PROBLEM_COLUMNS, find_identifiers, source_rows
from .io import read_cohort, read_table, resolve_input, sha256_file
from .tablecsv import write_csv

__all__ = [
    "CROSS_FIELD_RULES",
    "ValidationReport",
    "coerce_sessions",
    "normalize_level",
    "validate_file",
    "validate_sessions",
]

log = logging.getLogger(__name__)

#: Cross-field rules and what they check.
CROSS_FIELD_RULES: dict[str, str] = {
    "cross_field:first_day": "session 1 must be on day 0 (day counts from the first infusion)",
    "cross_field:not_ill_details": "illness type, severity or days since onset given while "
                                   "ill = 0",
    "cross_field:postponed_delay": "postponed = 1 needs delay_days > 0",
    "cross_field:delay_not_postponed": "delay_days > 0 needs postponed = 1",
    "cross_field:lod_mismatch": "'<L' disagrees with the <marker>_lod column",
    "cross_field:baseline_varies": "a pre-treatment value (age, sex, ...) differs between "
                                   "sessions of one patient",
    "cross_field:no_session_1": "no patient has session 1 (the baseline); sessions are numbered "
                                "from 1",
    "cross_field:planned_not_postponed": "a planned_* column given on a row that is not a "
                                         "postponed infusion (postponed = 0 or empty)",
    "cross_field:planned_not_ill_details": "planned illness type, severity, days since onset or "
                                           "medication given while planned_ill = 0 or empty",
    "cross_field:below_lod": "(warning) a measured value below its own detection limit",
    "cross_field:ill_type_missing": "(warning) ill = 1 but no illness_type",
    "cross_field:planned_ill_missing": "(warning) postponed = 1 but planned_ill is empty, "
                                       "where the column is given",
    "cross_field:planned_severity_missing": "(warning) planned_ill = 1 but no "
                                            "planned_illness_severity",
    "cross_field:first_session_missing": "(warning) a patient has no session 1: the baseline "
                                         "comes from a later session",
}

_CAP = 50
#: the illness on the planned day of a postponed infusion (contract section "Treatment")
_PLANNED_COLUMNS = ("planned_ill", "planned_illness_type", "planned_illness_severity",
                    "planned_days_since_onset", "planned_illness_medication")
_TRUE = {"true": 1.0, "false": 0.0, "yes": 1.0, "no": 0.0}


def normalize_level(text: pd.Series) -> pd.Series:
    """Canonical spelling of category values: lower case, spaces/hyphens to underscores.

    ``"Influenza-like"`` becomes ``"influenza_like"``; ``" Mild "`` becomes ``"mild"``.
    """
    return on_uniques(text, lambda u: u.str.lower().str.replace(r"[\s\-]+", "_", regex=True)
                      .str.strip("_")).astype("string")


def _empty_problems() -> pd.DataFrame:
    out = pd.DataFrame({c: pd.Series(dtype=object) for c in PROBLEM_COLUMNS})
    out["row"] = out["row"].astype("Int64")
    return out


@dataclass
class ValidationReport:
    """All problems found in one session table.

    Attributes
    ----------
    problems : pandas.DataFrame
        One row per problem, columns ``file, row, column, value, rule, severity, message``.
        ``row`` is the line in the file (header = 1), missing for whole-column problems
        and for summary rows ("... and 120 more rows").
    source : str
        The file (or ``"<data>"``).
    sha256 : str or None
        Checksum of the raw file when it was read (``validate_file`` only).
    n_rows : int
        Number of rows checked.
    """

    problems: pd.DataFrame = field(default_factory=_empty_problems)
    source: str = "<data>"
    sha256: str | None = None
    n_rows: int = 0

    @property
    def errors(self) -> pd.DataFrame:
        """The problems with severity ``error``."""
        return self.problems[self.problems["severity"] == "error"]

    @property
    def warnings(self) -> pd.DataFrame:
        """The problems with severity ``warning``."""
        return self.problems[self.problems["severity"] == "warning"]

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return self.errors.empty

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write the problems table as CSV, atomically (header only when there are none).

        Values quoted from the input that a spreadsheet would run as formulas (``=...``,
        ``@...``) are written with a leading ``'`` (:func:`ketastats.tablecsv.write_csv`).
        """
        write_csv(self.problems, path)

    def format_text(self, max_rows: int = 500, rerun: str = "run 'ketastats validate' again") -> str:
        """The problems as readable text, one problem per line, errors first.

        ``rerun`` completes the closing line "Fix the errors above and ...": what to run once
        they are fixed (the workflow says to run the workflow).
        """
        n_err, n_warn = len(self.errors), len(self.warnings)
        head = (f"{self.source}: {self.n_rows} rows checked: {n_err} error"
                f"{'' if n_err == 1 else 's'}, {n_warn} warning{'' if n_warn == 1 else 's'}.")
        lines = [head]
        for rec in self.problems.head(max_rows).itertuples(index=False):
            where = "" if pd.isna(rec.row) else f"row {int(rec.row)}"
            if rec.column:
                where = f"{where}, column '{rec.column}'" if where else f"column '{rec.column}'"
            value = f" (value: {rec.value!r})" if rec.value not in ("", None) and not (
                isinstance(rec.value, float) and np.isnan(rec.value)) else ""
            lines.append(f"  {rec.severity.upper():7s} {where or '(file)'} [{rec.rule}]: "
                         f"{rec.message}{value}")
        if len(self.problems) > max_rows:
            lines.append(f"  ... {len(self.problems) - max_rows} more problems in the CSV.")
        if n_err:
            lines.append(f"Fix the errors above and {rerun}; nothing was "
                         "written to data/processed/ or reports/.")
        return "\n".join(lines)

    def raise_for_errors(self) -> None:
        """Raise if there is any error.

        Raises
        ------
        IdentifierError
            If any error is an ``identifier:*`` rule.
        DataValidationError
            For any other error; ``.problems`` holds the full table.
        """
        if self.ok:
            return
        text = self.format_text()
        if self.errors["rule"].astype(str).str.startswith("identifier:").any():
            raise IdentifierError(text, self.problems)
        raise DataValidationError(text, self.problems)


class _Collector:
    """Builds problem rows from boolean masks, capped per (column, rule)."""

    def __init__(self, source: str, rows: np.ndarray):
        self.source = source
        self.rows = rows
        self.records: list[dict] = []

    def add(self, column: str, rule: str, message: str, *, severity: str = "error",
            row: int | None = None, value: object = "") -> None:
        self.records.append({"file": self.source, "row": pd.NA if row is None else int(row),
                             "column": column, "value": _show(value), "rule": rule,
                             "severity": severity, "message": message})

    def add_mask(self, column: str, rule: str, mask: np.ndarray | pd.Series,
                 message: Callable[[int], str] | str, *, values: pd.Series | None = None,
                 severity: str = "error") -> int:
        m = np.asarray(mask, dtype=bool)
        idx = np.flatnonzero(m)
        for i in idx[:_CAP]:
            msg = message(int(i)) if callable(message) else message
            val = values.iloc[i] if values is not None else ""
            r = self.rows[i]
            self.add(column, rule, msg, severity=severity,
                     row=None if np.isnan(r) else int(r), value=val)
        if len(idx) > _CAP:
            self.add(column, rule, f"... and {len(idx) - _CAP} more rows with the same problem "
                     f"({len(idx)} in total; only the first {_CAP} are listed).",
                     severity=severity)
        return len(idx)

    def frame(self) -> pd.DataFrame:
        if not self.records:
            return _empty_problems()
        out = pd.DataFrame(self.records, columns=list(PROBLEM_COLUMNS))
        out["row"] = out["row"].astype("Int64")
        return out


def _show(value: object) -> str:
    if value is None or value is pd.NA:
        return ""
    if isinstance(value, float) and np.isnan(value):
        return ""
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _plain_numbers(values: pd.Series) -> bool:
    """Whether ``values`` hold numbers already (a numeric dtype that is not boolean)."""
    dtype = values.dtype
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


def _numeric(text: pd.Series, kind: str) -> pd.Series:
    """Numbers from text; booleans spelt out are accepted for 0/1 columns."""
    num = to_float(text)
    if kind == "binary" and (num.isna() & text.notna()).any():
        words = on_uniques(text, lambda u: pd.to_numeric(
            u.str.lower().map(_TRUE, na_action="ignore"), errors="coerce").astype("float64"))
        num = num.where(num.notna(), words.astype("float64"))
    return num.astype("float64")


def _unique_columns(df: pd.DataFrame, col: _Collector) -> pd.DataFrame:
    names = [str(c) for c in df.columns]
    seen: set[str] = set()
    keep = []
    for i, name in enumerate(names):
        if name in seen:
            col.add(name, "duplicate_column", f"the column '{name}' appears more than once; "
                    "keep one (ketastats checks the first) or rename the others.")
            continue
        seen.add(name)
        keep.append(i)
    out = df.iloc[:, keep].reset_index(drop=True)
    out.columns = [names[i] for i in keep]
    out.attrs = dict(getattr(df, "attrs", {}) or {})
    return out


def _at_row(row: float) -> str:
    """" (row N)" for a known file line, "" otherwise."""
    return "" if pd.isna(row) else f" (row {_fmt_num(row)})"


def _redact(problems: pd.DataFrame, tripped: set[str]) -> pd.DataFrame:
    """Hide every value that tripped the identifier guard, whichever rule shows it.

    A cell refused as an identifier may break other rules too (an e-mail address where the
    sex belongs is also not a level); those rows show ``[redacted]`` instead of the value,
    and no message repeats it.
    """
    if problems.empty or not tripped:
        return problems
    shown = {_show(v) for v in tripped} | set(tripped)
    out = problems.copy()
    values = out["value"].astype(str)
    out.loc[values.isin(shown).to_numpy(), "value"] = "[redacted]"
    long = sorted((v for v in tripped if len(v) >= 3), key=len, reverse=True)
    if long:
        pattern = re.compile("|".join(re.escape(v) for v in long))
        out["message"] = out["message"].astype(str).map(lambda m: pattern.sub("[redacted]", m))
    return out


#: How a whole number may be written in text: digits, an optional minus, an optional ".0".
_WHOLE_NUMBER_TEXT = r"-?[0-9]+(?:\.0*)?"


def _odd_whole_number(text: pd.Series, kind: str) -> np.ndarray:
    """Where ``text`` holds a whole number spelt otherwise than in plain digits.

    ``1e1`` and ``+3`` parse as 10 and 3, but a session or score written so is more likely
    a spreadsheet's doing or a typing slip than what was meant; 0/1 columns also take
    ``true``/``false``/``yes``/``no``.
    """
    def odd(u: pd.Series) -> pd.Series:
        plain = u.str.fullmatch(_WHOLE_NUMBER_TEXT)
        if kind == "binary":
            plain |= u.str.lower().isin(list(_TRUE))
        return ~plain.fillna(False).astype(bool)

    return on_uniques(text, odd).fillna(False).to_numpy(dtype=bool)


def _hint(value: object) -> str:
    text = "" if value is None or value is pd.NA else str(value)
    if re.fullmatch(r"-?\d+,\d+", text):
        return " Use a decimal point, not a comma (e.g. 27.5)."
    if re.fullmatch(r"[<>]=?\s*\d+(\.\d+)?", text):
        return " Only cytokine columns may hold '<' values."
    return ""


def _fmt_num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def _range_text(spec) -> str:
    lo, hi = spec.min, spec.max
    unit = f" {spec.unit}" if spec.unit else ""
    if lo is not None and hi is not None:
        return f"between {_fmt_num(lo)} and {_fmt_num(hi)}{unit}"
    if lo is not None:
        return f"at least {_fmt_num(lo)}{unit}"
    return f"at most {_fmt_num(hi)}{unit}"


def validate_sessions(
    df: pd.DataFrame,
    *,
    source: str = "<data>",
    safe_columns: Iterable[str] = (),
    lod_warn_fraction: float = 0.30,
    id_pattern: str | None = None,
    sites: Iterable[str] | None = None,
) -> ValidationReport:
    """Check a session table against the contract and collect every problem.

    Parameters
    ----------
    df : pandas.DataFrame
        The table as read and mapped (e.g. by :func:`ketastats.io.read_cohort`); values may
        be strings. A ``_source_row`` column gives file lines for the ``row`` field; without
        it, ``row`` is the 0-based position + 2 (as if the table were a CSV with a header).
    source : str, default "<data>"
        File name for the ``file`` column.
    safe_columns : iterable of str
        Columns the identifier guard skips (the cohort's documented override).
    lod_warn_fraction : float, default 0.30
        Warn when more than this fraction of a marker's measured values are below the
        detection limit (the ">30% below LOD" analyst rule).
    id_pattern : str, optional
        The cohort's declared id scheme (a regular expression every ``patient_id`` matches
        in full); see :func:`ketastats.identifiers.scan_identifiers`.
    sites : iterable of str, optional
        The cohort's site codes; without them a ``site`` must be a short code.

    Returns
    -------
    ValidationReport
        ``.ok`` is False if any error was found; nothing is raised for bad data.

    Raises
    ------
    KetastatsError
        Only ketastats errors, never anything else, whatever the input.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"patient_id": ["P3A9F0C"] * 2, "session": ["1", "2"],
    ...                    "day": ["0", "2"], "madrs": ["31", "75"]})
    >>> rep = validate_sessions(df)
    >>> rep.errors[["row", "column", "rule"]].to_dict("records")
    [{'row': 3, 'column': 'madrs', 'rule': 'range'}]
    """
    if not isinstance(df, pd.DataFrame):
        try:
            df = pd.DataFrame(df)
        except Exception as exc:  # noqa: BLE001 - anything not table-like is reported
            c = _Collector(source, np.zeros(0))
            c.add("", "read", f"the input is not a table ({type(exc).__name__}); pass a "
                  "pandas DataFrame or a file.")
            return ValidationReport(c.frame(), source=source)
    try:
        lod_warn_fraction = float(lod_warn_fraction)
    except (TypeError, ValueError) as exc:
        raise DataValidationError(f"lod_warn_fraction must be a number, got "
                                  f"{lod_warn_fraction!r}") from exc
    pre = _Collector(source, np.zeros(0))
    work = _unique_columns(df, pre)
    rows = source_rows(work)
    c = _Collector(source, rows)
    c.records = pre.records
    n = len(work)
    if n == 0 or work.shape[1] == 0:
        c.add("", "empty", "the table has no rows" if work.shape[1] else "the table has no "
              "columns; check the file, the separator and the sheet.")
        return ValidationReport(c.frame(), source=source, n_rows=n)

    safe = {safe_columns} if isinstance(safe_columns, str) else set(safe_columns or ())
    scan = find_identifiers(work, source=source, safe_columns=safe, id_pattern=id_pattern,
                            sites=sites)
    if not scan.problems.empty:
        c.records.extend(scan.problems.to_dict("records"))

    # --- required columns -------------------------------------------------------------
    for name in REQUIRED:
        if name not in work.columns:
            c.add(name, "required", f"the required column '{name}' is missing "
                  f"({COLUMNS[name].description}). Add it, or map the file's column onto it "
                  f"under 'columns' in the cohort config (e.g. {name}: <column in file>).")
    totals = [s for s in SCORE_COLUMNS if s in work.columns]
    items = [i for i in MADRS_ITEMS if i in work.columns]
    if items and len(items) < len(MADRS_ITEMS):
        missing = [i for i in MADRS_ITEMS if i not in work.columns]
        c.add(missing[0], "required", f"MADRS items are incomplete: {', '.join(missing)} "
              f"missing. Give all ten items (madrs_1..madrs_10) or none.")
    if not totals and len(items) < len(MADRS_ITEMS):
        c.add("madrs", "required", "no depression score: give at least one of "
              f"{', '.join(SCORE_COLUMNS)}, or all ten MADRS items madrs_1..madrs_10.")

    # --- per-column checks --------------------------------------------------------------
    raw_text: dict[str, pd.Series] = {}

    def raw(name: str) -> pd.Series:
        """The column as stripped text (cached: computed once per column)."""
        if name not in raw_text:
            raw_text[name] = as_text(work[name])
        return raw_text[name]

    text: dict[str, pd.Series] = {}
    num: dict[str, pd.Series] = {}
    for name in work.columns:
        if name == "_source_row":
            continue
        spec = COLUMNS.get(name)
        if spec is None:
            if not name.startswith("redcap_"):
                c.add(name, "unknown_column", f"'{name}' is not a contract column and will be "
                      "dropped after validation. If it is one, map it under 'columns' in the "
                      "cohort config.", severity="warning")
            continue
        t = raw(name)
        text[name] = t
        present = t.notna().to_numpy()
        if spec.required:
            c.add_mask(name, "required", ~present,
                       f"'{name}' is empty; every row needs a {name}.")
        if spec.kind == "id":
            continue
        if spec.kind == "category":
            norm = normalize_level(t)
            text[name] = norm
            if spec.levels:
                bad = present & ~norm.isin(spec.levels).fillna(False).to_numpy(dtype=bool)
                c.add_mask(name, "level", bad,
                           f"'{name}' must be one of {', '.join(spec.levels)}; map other "
                           f"spellings under 'recode' in the cohort config.", values=t)
            continue
        if spec.kind == "cytokine":
            continue  # checked below with its _lod column
        if spec.kind == "age":
            top = (t == AGE_TOP_CODE).fillna(False).to_numpy(dtype=bool)
            x = to_float(t.mask(pd.Series(top, index=t.index)))
            bad = present & ~top & x.isna().to_numpy()
            c.add_mask(name, "type", bad, f"'{name}' must be a whole number of years or "
                       f"'{AGE_TOP_CODE}' for ages over 89.", values=t)
            xv = x.to_numpy()
            with np.errstate(invalid="ignore"):
                frac = present & ~np.isnan(xv) & (np.mod(xv, 1) != 0)
                low = present & ~np.isnan(xv) & (xv < 0)
            c.add_mask(name, "type", frac, f"'{name}' must be a whole number of years.",
                       values=t)
            odd = present & ~top & ~np.isnan(xv) & ~frac & _odd_whole_number(t, "int")
            c.add_mask(name, "type", odd, f"'{name}' must be written in plain digits (e.g. 45, "
                       "not 4.5e1 or +45).", values=t)
            c.add_mask(name, "range", low, f"'{name}' cannot be negative.", values=t)
            if name in safe:  # the guard skipped it, but the contract still needs '90+'
                with np.errstate(invalid="ignore"):
                    old_age = present & ~np.isnan(xv) & (xv > 89)
                c.add_mask(name, "range", old_age, f"'{name}' over 89 must be written "
                           f"'{AGE_TOP_CODE}' (HIPAA Safe Harbor top-coding).", values=t)
            num[name] = x.where(~pd.Series(top, index=x.index), 90.0)
            continue
        x = _numeric(t, spec.kind)
        xv = x.to_numpy(dtype="float64", na_value=np.nan)
        finite = np.isfinite(xv)
        bad = present & ~finite
        what = {"binary": "0 or 1", "int": "a whole number"}.get(spec.kind, "a number")
        base = f"'{name}' must be {what}" + (f" ({spec.unit})" if spec.unit else "") + "."
        c.add_mask(name, "type", bad, lambda i, t=t, base=base: base + _hint(t.iloc[i]),
                   values=t)
        ok = present & finite
        if spec.kind in ("int", "binary"):
            with np.errstate(invalid="ignore"):
                frac = ok & (np.mod(np.where(finite, xv, 0.0), 1) != 0)
            c.add_mask(name, "type", frac, f"'{name}' must be {what}.", values=t)
            ok &= ~frac
            odd = ok & _odd_whole_number(t, spec.kind)
            eg = "1, not 1e0 or +1" if spec.kind == "binary" else "10, not 1e1 or +10"
            c.add_mask(name, "type", odd, f"'{name}' must be {what} written in plain digits "
                       f"(e.g. {eg}).", values=t)
            ok &= ~odd
        lo = -np.inf if spec.min is None else spec.min
        hi = np.inf if spec.max is None else spec.max
        with np.errstate(invalid="ignore"):
            out = ok & ((xv < lo) | (xv > hi))
        label = INSTRUMENTS[name].label + " total" if name in INSTRUMENTS else f"'{name}'"
        c.add_mask(name, "range", out, f"{label} must be {_range_text(spec)}.", values=t)
        num[name] = pd.Series(np.where(ok & ~out, xv, np.nan), index=x.index)

    # --- cytokines and detection limits ---------------------------------------------------
    for marker in CYTOKINES:
        if marker not in work.columns:
            continue
        lod_name = marker + LOD_SUFFIX
        p = parse_censored(work[marker], work[lod_name] if lod_name in work.columns else None)
        marker_text = raw(marker)
        c.add_mask(marker, "lod_string", p["invalid"].to_numpy(),
                   f"'{marker}' must be a number, '<L' for a value below the detection limit L "
                   f"(e.g. '<0.15'), or '<LOD' with the limit in '{lod_name}'; do not write "
                   "'ND', '>x' or text.", values=marker_text)
        val = p["value"].to_numpy()
        with np.errstate(invalid="ignore"):
            neg = ~np.isnan(val) & (val < 0)
        c.add_mask(marker, "range", neg, f"'{marker}' cannot be negative.", values=marker_text)
        c.add_mask(marker, "cross_field:lod_mismatch", p["lod_conflict"].to_numpy(),
                   f"the limit in '{marker}' ('<L') differs from '{lod_name}'; make them agree.",
                   values=marker_text)
        if lod_name in work.columns:
            lodv = num.get(lod_name, pd.Series(np.nan, index=work.index)).to_numpy()
            with np.errstate(invalid="ignore"):
                below = ~np.isnan(val) & ~np.isnan(lodv) & (val < lodv)
            c.add_mask(marker, "cross_field:below_lod", below,
                       f"a measured '{marker}' below its own detection limit ('{lod_name}'); "
                       "it is kept as measured. If the lab meant 'not detected', write "
                       "'<LOD'.", values=marker_text, severity="warning")
        measured = int((p["censored"] | p["value"].notna()).sum())
        n_cens = int(p["censored"].sum())
        if measured and n_cens / measured > lod_warn_fraction:
            c.add(marker, "lod_fraction",
                  f"{n_cens} of {measured} measured '{marker}' values "
                  f"({100 * n_cens / measured:.0f}%) are below the detection limit, more than "
                  f"{100 * lod_warn_fraction:.0f}%; the usual rule is to drop the analyte or "
                  "use a censored model only.", severity="warning")

    # --- keys: duplicates, day order --------------------------------------------------------
    if "patient_id" in text and "session" in num:
        pid = text["patient_id"]
        sess = num["session"]
        key_ok = pid.notna() & sess.notna()
        keys = pd.DataFrame({"pid": pid, "sess": sess, "row": rows}, index=work.index)[key_ok]
        dup = keys.duplicated(["pid", "sess"], keep="first")
        if dup.any():
            first = keys.groupby(["pid", "sess"], sort=False)["row"].transform("first")
            mask = pd.Series(False, index=work.index)
            mask[keys.index[dup.to_numpy()]] = True
            firsts = pd.Series(np.nan, index=work.index)
            firsts[keys.index] = first.to_numpy()
            c.add_mask("session", "duplicate", mask.to_numpy(),
                       lambda i: f"this row repeats the patient_id and session "
                       f"{_fmt_num(sess.iloc[i])} of row {_fmt_num(firsts.iloc[i])}; each "
                       "(patient_id, session) pair must be unique.", values=raw("session"))
        if "day" in num:
            day = num["day"]
            k = pd.DataFrame({"pid": pid, "sess": sess, "day": day, "row": rows},
                             index=work.index)
            k = k[key_ok & day.notna()]
            k = k[~k.duplicated(["pid", "sess"], keep="first")]
            k = k.sort_values(["pid", "sess"], kind="stable")
            prev_day = k.groupby("pid", sort=False)["day"].shift()
            prev_sess = k.groupby("pid", sort=False)["sess"].shift()
            prev_row = k.groupby("pid", sort=False)["row"].shift()
            bad = (k["day"] <= prev_day).fillna(False)
            mask = pd.Series(False, index=work.index)
            mask[k.index[bad.to_numpy()]] = True
            pd_prev = pd.Series(np.nan, index=work.index)
            ps_prev = pd.Series(np.nan, index=work.index)
            pr_prev = pd.Series(np.nan, index=work.index)
            pd_prev[k.index] = prev_day.to_numpy()
            ps_prev[k.index] = prev_sess.to_numpy()
            pr_prev[k.index] = prev_row.to_numpy()
            c.add_mask("day", "day_order", mask.to_numpy(),
                       lambda i: f"day {_fmt_num(day.iloc[i])} of session "
                       f"{_fmt_num(sess.iloc[i])} is not after day {_fmt_num(pd_prev.iloc[i])} "
                       f"of session {_fmt_num(ps_prev.iloc[i])} of the same patient"
                       f"{_at_row(pr_prev.iloc[i])}; day must increase with session.",
                       values=raw("day"))
            first_bad = ((sess == 1) & day.notna() & (day != 0)).to_numpy(dtype=bool)
            c.add_mask("day", "cross_field:first_day", first_bad,
                       "session 1 must be on day 0: day counts days since the first infusion.",
                       values=raw("day"))
        _check_first_sessions(keys, work.index, raw("session"), c)

    # --- MADRS items against the total ------------------------------------------------------
    if len(items) == len(MADRS_ITEMS):
        item_num = pd.concat([num.get(i, pd.Series(np.nan, index=work.index))
                              for i in MADRS_ITEMS], axis=1)
        item_text = pd.concat([text[i] for i in MADRS_ITEMS], axis=1)
        n_given = item_text.notna().sum(axis=1).to_numpy()
        n_valid = item_num.notna().sum(axis=1).to_numpy()
        c.add_mask("madrs_1", "items_incomplete", (n_given > 0) & (n_given < 10),
                   lambda i: f"only {n_given[i]} of the 10 MADRS items are given; the total "
                   "cannot be derived or checked from the items.", severity="warning")
        if "madrs" in num:
            total = item_num.sum(axis=1).to_numpy()
            madrs = num["madrs"].to_numpy()
            with np.errstate(invalid="ignore"):
                mism = (n_valid == 10) & ~np.isnan(madrs) & (total != madrs)
            c.add_mask("madrs", "items_total", mism,
                       lambda i: f"the MADRS items add up to {_fmt_num(total[i])} but madrs is "
                       f"{_fmt_num(madrs[i])}; correct the items or the total.",
                       values=raw("madrs"))

    # --- illness cross-field rules ---------------------------------------------------------
    if "ill" in num:
        ill = num["ill"].to_numpy()
        for name in ("illness_type", "illness_severity", "days_since_onset"):
            if name in text:
                m = (ill == 0) & text[name].notna().to_numpy()
                c.add_mask(name, "cross_field:not_ill_details", m,
                           f"'{name}' is given but ill = 0; clear it or set ill = 1.",
                           values=raw(name))
        if "illness_type" in text:
            m = (ill == 1) & text["illness_type"].isna().to_numpy()
            c.add_mask("illness_type", "cross_field:ill_type_missing", m,
                       "ill = 1 but illness_type is empty; illness-type analyses will leave "
                       "this session out.", severity="warning")

    # --- postponement -----------------------------------------------------------------------
    if "postponed" in num:
        post = num["postponed"].to_numpy()
        present = text["postponed"].notna().to_numpy()
        delay = num.get("delay_days")
        if delay is not None:
            dv = delay.to_numpy()
            dtext = raw("delay_days")
            given = dtext.notna().to_numpy()
            with np.errstate(invalid="ignore"):
                m1 = (post == 1) & (~given | (dv == 0))
                m2 = present & (post == 0) & (dv > 0)
            c.add_mask("delay_days", "cross_field:postponed_delay", m1,
                       "postponed = 1 but delay_days is empty or 0; give the days of "
                       "postponement.", values=dtext)
            c.add_mask("delay_days", "cross_field:delay_not_postponed", m2,
                       "delay_days > 0 but postponed = 0; set postponed = 1 or clear "
                       "delay_days.", values=dtext)
        else:
            c.add_mask("delay_days", "cross_field:postponed_delay", post == 1,
                       "postponed = 1 but there is no delay_days column; add it.")

    # --- the illness on the planned day of a postponed infusion ---------------------------------
    _check_planned_illness(c, text, num, raw)

    # --- baseline values constant within a patient -------------------------------------------
    if "patient_id" in text:
        pid = text["patient_id"]
        for name in BASELINE_COLUMNS:
            if name not in text:
                continue
            vals = num[name].astype("string") if name in num else text[name]
            frame = pd.DataFrame({"pid": pid, "v": vals}).dropna()
            if frame.empty:
                continue
            frame["row"] = rows[frame.index.to_numpy()] if len(frame) else []
            first = frame.groupby("pid", sort=False)["v"].transform("first")
            first_row = frame.groupby("pid", sort=False)["row"].transform("first")
            differs = frame["v"] != first
            if differs.any():
                mask = pd.Series(False, index=work.index)
                mask[frame.index[differs.to_numpy()]] = True
                firsts = pd.Series(np.nan, index=work.index)
                firsts[frame.index] = first_row.to_numpy()
                c.add_mask(name, "cross_field:baseline_varies", mask.to_numpy(),
                           lambda i, f=firsts, nm=name: f"'{nm}' is a pre-treatment value and "
                           f"must be the same in every session of a patient; it differs from "
                           f"the patient's first value{_at_row(f.iloc[i])}.", values=raw(name))

    problems = _redact(c.frame(), scan.values)
    mapping = work.attrs.get("column_mapping") or {}
    if mapping and not problems.empty:
        src = problems["column"].map(lambda col: mapping.get(col) if isinstance(col, str)
                                     else None)
        has = src.notna()
        problems.loc[has, "message"] = (problems.loc[has, "message"] + " [file column '"
                                        + src[has].astype(str) + "']")
    order = problems["severity"].map({"error": 0, "warning": 1}).fillna(2)
    problems = problems.iloc[np.argsort(order.to_numpy(), kind="stable")].reset_index(drop=True)
    return ValidationReport(problems, source=source, n_rows=n)


def _check_planned_illness(c: _Collector, text: dict[str, pd.Series], num: dict[str, pd.Series],
                           raw: Callable[[str], pd.Series]) -> None:
    """The ``planned_*`` columns: set on postponed rows only, the details only where planned_ill = 1.

    They describe the illness on the planned day of a postponed infusion (what the decision to
    postpone saw); on any other row they mean nothing, and a value there is a mix-up the decision
    analysis would otherwise read as a confounder.
    """
    given = [name for name in _PLANNED_COLUMNS if name in text]
    if not given:
        return
    if "postponed" in num:
        post = num["postponed"].to_numpy()
        not_post = (post == 0) | text["postponed"].isna().to_numpy()
        for name in given:
            m = not_post & text[name].notna().to_numpy()
            c.add_mask(name, "cross_field:planned_not_postponed", m,
                       lambda i, nm=name, p=post: f"'{nm}' is given but postponed = "
                       f"{'0' if p[i] == 0 else 'empty'}; the planned_* columns describe the planned "
                       "day of a postponed infusion only: clear it, or set postponed = 1 (and "
                       "delay_days).", values=raw(name))
    else:
        for name in given:
            c.add_mask(name, "cross_field:planned_not_postponed", text[name].notna().to_numpy(),
                       f"'{name}' is given but there is no postponed column; the planned_* columns "
                       "describe the planned day of a postponed infusion: add postponed (0/1).",
                       values=raw(name))
    details = [name for name in given if name != "planned_ill"]
    if "planned_ill" in text:
        pill = num["planned_ill"].to_numpy()
        not_ill = (pill == 0) | text["planned_ill"].isna().to_numpy()
        # on rows that are not postponed infusions planned_not_postponed has said it already
        not_ill &= num["postponed"].to_numpy() == 1 if "postponed" in num else False
        for name in details:
            m = not_ill & text[name].notna().to_numpy()
            c.add_mask(name, "cross_field:planned_not_ill_details", m,
                       lambda i, nm=name, p=pill: f"'{nm}' is given but planned_ill = "
                       f"{'0' if p[i] == 0 else 'empty'}; clear it, or set planned_ill = 1 if the "
                       "patient was ill on the planned day.", values=raw(name))
        if "postponed" in num:
            m = (num["postponed"].to_numpy() == 1) & text["planned_ill"].isna().to_numpy()
            c.add_mask("planned_ill", "cross_field:planned_ill_missing", m,
                       "postponed = 1 but planned_ill is empty; the decision analysis leaves this "
                       "postponement out (it cannot tell whether the patient was ill on the planned "
                       "day). Give 1 (ill) or 0 (postponed for another reason).", severity="warning")
        if "planned_illness_severity" in text:
            m = (pill == 1) & text["planned_illness_severity"].isna().to_numpy()
            c.add_mask("planned_illness_severity", "cross_field:planned_severity_missing", m,
                       "planned_ill = 1 but planned_illness_severity is empty; the decision analysis "
                       "needs the severity at the decision and leaves this point out.",
                       severity="warning")
    else:
        on_post = num["postponed"].to_numpy() == 1 if "postponed" in num else np.zeros(len(c.rows), bool)
        for name in details:
            c.add_mask(name, "cross_field:planned_not_ill_details", on_post & text[name].notna().to_numpy(),
                       f"'{name}' is given but there is no planned_ill column; add planned_ill "
                       "(1 where the patient was ill on the planned day).", values=raw(name))


def _check_first_sessions(keys: pd.DataFrame, index: pd.Index, session_text: pd.Series,
                          c: _Collector) -> None:
    """Session 1 is the baseline: an error if no patient has it, a warning per patient without.

    ``keys`` holds the rows with a patient and a session (columns ``pid``, ``sess``).
    """
    if keys.empty:
        return
    first = keys.groupby("pid", sort=False)["sess"].transform("min")
    if (first > 1).all():
        c.add("session", "cross_field:no_session_1",
              f"no patient has session 1 (the lowest session is {_fmt_num(first.min())}): session "
              "counts infusions from 1, and each patient's baseline score is the session-1 rating. "
              "Number the sessions from 1, or check that the export holds the first infusions.")
        return
    late = (first > 1) & (keys["sess"] == first)
    if late.any():
        mask = pd.Series(False, index=index)
        mask[keys.index[late.to_numpy()]] = True
        c.add_mask("session", "cross_field:first_session_missing", mask.to_numpy(),
                   "this row is its patient's first session but not session 1; the baseline "
                   "(and change, response) of this patient is taken from here, after earlier "
                   "infusions. Check that the export holds the patient's first infusion.",
                   values=session_text, severity="warning")


def _problems_from_exception(exc: KetastatsError, source: str, rule: str) -> pd.DataFrame:
    probs = getattr(exc, "problems", None)
    if isinstance(probs, pd.DataFrame) and set(PROBLEM_COLUMNS) <= set(probs.columns):
        out = probs[list(PROBLEM_COLUMNS)].copy()
        out["file"] = source
        out["row"] = out["row"].astype("Int64")
        return out
    c = _Collector(source, np.zeros(0))
    message = str(exc)
    for line in [s.strip(" -") for s in message.splitlines()[1:]] or [message]:
        m = re.match(r"(?:columns|recode)\.([^:]+):", line)
        c.add(m.group(1) if m else "", rule, line if len(message.splitlines()) > 1 else message)
    return c.frame()


#: Folders of a project that the problems table may never be written into: the raw data
#: (never modified) and the workflow's outputs (written only by their rules, atomically).
_PROTECTED_FOLDERS = (("data", "raw"), ("data", "processed"), ("reports",))


def _check_problems_path(problems: Path, input_file: Path, root: Path) -> None:
    """Refuse a problems table that would overwrite the input or land among raw data or outputs."""
    target = problems.resolve()
    if target == input_file.resolve() or (target.exists() and target.samefile(input_file)):
        raise ConfigError(
            f"the problems table {problems} is the input file itself: writing it would overwrite "
            "your data. Give another path, e.g. --problems problems.csv."
        )
    try:
        parts = target.relative_to(root.resolve()).parts
    except ValueError:
        return
    for folder in _PROTECTED_FOLDERS:
        if parts[: len(folder)] == folder:
            raise ConfigError(
                f"the problems table {problems} would be written under {'/'.join(folder)}/, which holds "
                "raw data or workflow outputs; give a path elsewhere, e.g. logs/<cohort>/problems.csv."
            )


def validate_file(
    path: str | os.PathLike,
    cohort: Mapping | None = None,
    *,
    root: Path = Path("."),
    problems_csv: str | os.PathLike | None = None,
) -> ValidationReport:
    """Read a session file, validate it and optionally write the problems CSV.

    Parameters
    ----------
    path : str or os.PathLike
        The raw file; relative paths are relative to ``root``.
    cohort : mapping, optional
        The cohort's config entry (format, sheet, redcap_dictionary, columns, recode,
        safe_columns, encoding). Its ``input`` is replaced by ``path``. Without it the file
        is read by extension with its column names taken as contract names.
    root : pathlib.Path, default Path(".")
        Project root.
    problems_csv : str or os.PathLike, optional
        Where to write the problems table (atomically). Do not put it under
        ``data/processed/`` or ``reports/``: those must stay empty on failure.

    Returns
    -------
    ValidationReport
        With ``sha256`` set to the raw file's checksum. A file that cannot be read (missing,
        wrong format, bad encoding, mapping that does not fit) gives a report with one or
        more ``read``/``mapping`` errors instead of an exception. If the file's checksum
        changes while it is read, a ``checksum`` error is added.
    """
    source = str(path)
    full = resolve_input(path, root)
    if problems_csv is not None:
        _check_problems_path(Path(problems_csv), Path(full), Path(root))
    digest: str | None = None
    try:
        digest = sha256_file(full)
        if cohort is not None:
            cfg = dict(cohort)
            cfg["input"] = str(Path(full).resolve())
            df = read_cohort(cfg, root=root)
            safe = cfg.get("safe_columns") or ()
            ids = {"id_pattern": cfg.get("id_pattern"), "sites": cfg.get("sites")}
        else:
            df = read_table(full)
            df["_source_row"] = df.index + 2
            safe, ids = (), {}
        if isinstance(safe, str):
            safe = (safe,)
        report = validate_sessions(df, source=source, safe_columns=safe, **ids)
        after = sha256_file(full)
        if after != digest:
            extra = _Collector(source, np.zeros(0))
            extra.add("", "checksum", "the raw file changed while it was being read; raw files "
                      "must not be modified. Restore the original and rerun.")
            report.problems = pd.concat([extra.frame(), report.problems], ignore_index=True)
    except KetastatsError as exc:
        rule = "mapping" if type(exc).__name__ == "ConfigError" else "read"
        report = ValidationReport(_problems_from_exception(exc, source, rule), source=source)
    except Exception as exc:  # a reader library failing on a malformed file
        log.debug("reading %s failed", source, exc_info=True)
        c = _Collector(source, np.zeros(0))
        c.add("", "read", f"cannot read the file ({type(exc).__name__}: {exc}). Check the format "
              "and export settings.")
        report = ValidationReport(c.frame(), source=source)
    report.sha256 = digest
    if problems_csv is not None:
        report.to_csv(problems_csv)
    log.info("validated %s: %d errors, %d warnings", source, len(report.errors),
             len(report.warnings))
    return report


def coerce_sessions(df: pd.DataFrame) -> pd.DataFrame:
    """Return the typed canonical session table (call after validation passed).

    Parameters
    ----------
    df : pandas.DataFrame
        A table that :func:`validate_sessions` found free of errors.

    Returns
    -------
    pandas.DataFrame
        Contract columns only, in contract order, sorted by ``patient_id`` and ``session``,
        index reset. ``patient_id`` string; ``session``, ``day`` int64; other whole-number
        and 0/1 columns ``Int64`` (nullable); measurements float64; categories pandas
        ``category`` (``illness_severity`` ordered mild < moderate < severe); ``age`` Int64
        with ``"90+"`` as 90 (meaning "90 or older"); each cytokine split into ``<marker>``
        (float, NaN when censored), ``<marker>_lod`` (float) and ``<marker>_censored``
        (bool). ``madrs`` is filled from the ten items where the total is missing and all
        items are present (created if absent).

    Raises
    ------
    DataValidationError
        If a value cannot be converted (the table was not validated).
    """
    if not isinstance(df, pd.DataFrame):
        raise DataValidationError("coerce_sessions needs a pandas DataFrame.")
    if df.columns.duplicated().any():
        raise DataValidationError("duplicate column names; run validate_sessions first.")
    df = df.reset_index(drop=True)
    out: dict[str, pd.Series] = {}
    bad: list[str] = []
    for name, spec in COLUMNS.items():
        if name not in df.columns or spec.kind == "cytokine":
            continue
        col = df[name]
        if spec.kind not in ("id", "category") and _plain_numbers(col):
            # already numbers (a Parquet file, the simulator): the same floats as the text
            # round trip below (str of a float64 parses back to it), at a tenth of the cost
            x = col.astype("float64")
            present = x.notna()
        else:
            t = as_text(col)
            present = t.notna()
            if spec.kind == "id":
                out[name] = t.astype(str).where(present, None)
                continue
            if spec.kind == "category":
                norm = normalize_level(t)
                cats = list(spec.levels) or sorted(norm.dropna().unique())
                if not norm.dropna().isin(cats).all():
                    bad.append(name)
                    continue
                out[name] = pd.Series(pd.Categorical(norm.astype(object).where(present, None),
                                                     categories=cats,
                                                     ordered=spec.levels == SEVERITIES),
                                      index=df.index)
                continue
            if spec.kind == "age":
                t = t.mask(t == AGE_TOP_CODE, "90")
            x = _numeric(t, spec.kind)
        xv = x.to_numpy(dtype="float64", na_value=np.nan)
        finite = np.isfinite(xv)
        if (present.to_numpy() & ~finite).any():
            bad.append(name)
            continue
        if spec.kind in ("int", "binary", "age"):
            vals = xv[finite]
            if (np.mod(vals, 1) != 0).any() or (np.abs(vals) > 2**53).any():
                bad.append(name)
                continue
            out[name] = x.round().astype("Int64")
        else:
            out[name] = x.astype("float64")
    for marker in CYTOKINES:
        if marker not in df.columns:
            continue
        lod_col = marker + LOD_SUFFIX
        p = parse_censored(df[marker], df[lod_col] if lod_col in df.columns else None)
        if p["invalid"].any():
            bad.append(marker)
        out[marker] = p["value"]
        out[lod_col] = p["lod"]
        out[marker + "_censored"] = p["censored"]
    if bad:
        raise DataValidationError(
            f"cannot convert column(s) {', '.join(sorted(set(bad)))} to contract types; run "
            "validate_sessions (or 'ketastats validate') and fix the errors first.")
    missing_keys = [k for k in REQUIRED if k not in out]
    if missing_keys:
        raise DataValidationError(f"required column(s) missing: {', '.join(missing_keys)}; "
                                  "run validate_sessions first.")
    if all(i in out for i in MADRS_ITEMS):
        items = pd.concat([out[i] for i in MADRS_ITEMS], axis=1)
        derived = items.sum(axis=1, min_count=10).where(items.notna().all(axis=1))
        derived = derived.astype("Int64")
        out["madrs"] = out["madrs"].fillna(derived) if "madrs" in out else derived
    for key in ("session", "day"):
        if out[key].isna().any():
            raise DataValidationError(f"'{key}' has missing values; run validate_sessions "
                                      "first.")
        out[key] = out[key].astype("int64")
    order = []
    for name in COLUMNS:
        if name in out:
            order.append(name)
        if name.endswith(LOD_SUFFIX) and name[: -len(LOD_SUFFIX)] in CYTOKINES:
            flag = name[: -len(LOD_SUFFIX)] + "_censored"
            if flag in out:
                order.append(flag)
    table = pd.DataFrame({name: out[name] for name in order}, index=df.index)
    table["patient_id"] = table["patient_id"].astype(str)
    table = table.sort_values(["patient_id", "session"], kind="stable").reset_index(drop=True)
    return table
