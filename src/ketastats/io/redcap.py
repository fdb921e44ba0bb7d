"""Read REDCap raw CSV exports (with their data dictionary) as one row per session.

REDCap's "CSV / Microsoft Excel (raw data)" export has one row per record, per event
(longitudinal projects, column ``redcap_event_name``) and per instance of a repeating
instrument or event (``redcap_repeat_instrument``, ``redcap_repeat_instance``). Fields
appear in data-dictionary order, checkbox fields are expanded into one 0/1 column per
choice (``<field>___<code>``), multiple-choice fields hold their raw codes and every
instrument is followed by ``<form>_complete`` (0/1/2).

:func:`read_redcap` turns such an export into the long session table:

1. session rows are the rows that hold data of a *session form*: a repeating instrument,
   or, in longitudinal projects, a form filled in more than one event of a record (or the
   forms named in ``session_forms``);
2. every other field (demographics, baseline covariates) is taken from the record's first
   row that has it and copied onto each of the record's session rows;
3. radio/dropdown codes become their labels (``1`` -> ``"Respiratory"``) so that the
   cohort's ``recode`` map and the category checks see words, not codes;
4. if the export has no ``session`` field, a ``session`` column is derived so that a missed
   visit stays a missing session and never renumbers the later ones: in longitudinal projects
   session *k* is the *k*-th event that holds session data (the project's event order, as
   the export lists it), so ``infusion_6`` stays session 6 for a record that missed
   ``infusion_5``; a repeating instrument or event uses its ``redcap_repeat_instance``;
   only a project that repeats within several session events is numbered 1, 2, ... per
   record in export order (with a warning, as gaps cannot be seen there);
5. ``<form>_complete`` bookkeeping columns are dropped, and fields the dictionary marks as
   identifiers (``Identifier? = y``) are listed in ``df.attrs["identifier_columns"]`` so that
   the identifier guard refuses them.

References
----------
.. [1] REDCap data dictionary and data export documentation (Vanderbilt University):
   columns ``Variable / Field Name``, ``Form Name``, ``Field Type``,
   ``Choices, Calculations, OR Slider Labels``, ``Identifier?``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import pandas as pd

from ..exceptions import DataValidationError
from .readers import read_table

__all__ = ["REDCAP_SYSTEM_COLUMNS", "parse_choices", "read_redcap"]

log = logging.getLogger(__name__)

#: Columns REDCap adds to exports (not project fields).
REDCAP_SYSTEM_COLUMNS: tuple[str, ...] = (
    "redcap_event_name",
    "redcap_repeat_instrument",
    "redcap_repeat_instance",
    "redcap_data_access_group",
    "redcap_survey_identifier",
)

# Data dictionary headers: the CSV download (first) and the API metadata export (second).
_DD_COLUMNS = {
    "field": ("Variable / Field Name", "field_name"),
    "form": ("Form Name", "form_name"),
    "type": ("Field Type", "field_type"),
    "choices": ("Choices, Calculations, OR Slider Labels", "select_choices_or_calculations"),
    "identifier": ("Identifier?", "identifier"),
}


def parse_choices(text: object) -> dict[str, str]:
    """Parse a REDCap choices string ``"1, Mild | 2, Moderate"`` into ``{"1": "Mild", ...}``.

    Examples
    --------
    >>> parse_choices("1, Mild | 2, Moderate, or worse")
    {'1': 'Mild', '2': 'Moderate, or worse'}
    """
    if not isinstance(text, str):
        return {}
    out: dict[str, str] = {}
    for part in text.split("|"):
        code, sep, label = part.partition(",")
        if sep:
            out[code.strip()] = label.strip()
    return out


def _dictionary(dictionary_csv: str | os.PathLike, encoding: str) -> pd.DataFrame:
    dd = read_table(dictionary_csv, format="csv", encoding=encoding)
    cols: dict[str, str] = {}
    for key, names in _DD_COLUMNS.items():
        found = next((n for n in names if n in dd.columns), None)
        if found is None and key in ("field", "form", "type"):
            raise DataValidationError(
                f"{dictionary_csv}: this is not a REDCap data dictionary (no column "
                f"{names[0]!r}). Download it from REDCap: Project Setup > Data Dictionary > "
                "Download the current Data Dictionary.",
                pd.DataFrame([{"file": str(dictionary_csv), "row": pd.NA, "column": names[0],
                               "value": "", "rule": "read", "severity": "error",
                               "message": f"missing data dictionary column {names[0]!r}"}]),
            )
        if found is not None:
            cols[found] = key
    dd = dd.rename(columns=cols)[list(cols.values())]
    dd = dd[dd["field"].notna()].copy()
    dd["field"] = dd["field"].astype(str).str.strip()
    return dd


def _nonempty(df: pd.DataFrame) -> pd.DataFrame:
    return df.notna() & df.astype("string").apply(lambda s: s.str.strip() != "").fillna(False)


def read_redcap(
    export_csv: str | os.PathLike,
    dictionary_csv: str | os.PathLike,
    *,
    session_forms: Sequence[str] | None = None,
    labels: bool = True,
    encoding: str = "utf-8-sig",
) -> pd.DataFrame:
    """Read a REDCap raw CSV export into one row per patient and session.

    Parameters
    ----------
    export_csv : str or os.PathLike
        The raw-data CSV export (``Export Data > CSV / Microsoft Excel (raw data)``).
    dictionary_csv : str or os.PathLike
        The project's data dictionary CSV.
    session_forms : sequence of str, optional
        Forms (instrument names) holding per-session data. Default: repeating instruments,
        plus, in longitudinal projects, forms filled in more than one event of a record.
    labels : bool, default True
        Replace radio/dropdown codes by their labels.
    encoding : str, default "utf-8-sig"
        Text encoding of both files.

    Returns
    -------
    pandas.DataFrame
        One row per session, all values as text; the record id column keeps its REDCap
        name (map it to ``patient_id`` in the cohort config); ``_source_row`` gives the line
        in the export (header = 1) each session came from.

    Raises
    ------
    DataValidationError
        If either file cannot be read or the dictionary is not a REDCap dictionary.
    """
    raw = read_table(export_csv, format="csv", encoding=encoding)
    dd = _dictionary(dictionary_csv, encoding)
    raw["_source_row"] = raw.index + 2
    fields = list(dd["field"])
    record_id = fields[0] if fields and fields[0] in raw.columns else str(raw.columns[0])

    forms = [str(f) for f in dd["form"].dropna().unique()]
    complete = [f"{f}_complete" for f in forms if f"{f}_complete" in raw.columns]
    raw = raw.drop(columns=complete)

    # Map every export column to its dictionary field (checkboxes: field___code).
    field_of: dict[str, str] = {}
    for col in raw.columns:
        base = col.split("___", 1)[0] if "___" in col else col
        if base in set(fields):
            field_of[col] = base
    form_of_field = dict(zip(dd["field"], dd["form"], strict=True))

    if labels and "choices" in dd.columns:
        for fld, ftype, choices in zip(dd["field"], dd["type"], dd["choices"], strict=True):
            if str(ftype).strip().lower() in ("radio", "dropdown") and fld in raw.columns:
                mapping = parse_choices(choices)
                if mapping:
                    col = raw[fld]
                    raw[fld] = col.map(lambda v, m=mapping: m.get(str(v).strip(), v)
                                       if pd.notna(v) else v)

    data_cols = [c for c in raw.columns
                 if c not in (record_id, "_source_row", *REDCAP_SYSTEM_COLUMNS)]
    filled = _nonempty(raw[data_cols]) if data_cols else pd.DataFrame(index=raw.index)

    repeat = raw.get("redcap_repeat_instrument")
    if repeat is not None:
        is_repeat = (repeat.notna() & (repeat.astype("string").str.strip() != ""))
        is_repeat = is_repeat.fillna(False).astype(bool)
    else:
        is_repeat = pd.Series(False, index=raw.index)
    if session_forms is not None:
        sforms = {str(f) for f in session_forms}
        unknown = sforms - set(forms)
        if unknown:
            raise DataValidationError(
                f"{dictionary_csv}: session_forms {sorted(unknown)} are not forms of this "
                f"project; its forms are {forms}.")
    else:
        sforms = set(repeat[is_repeat].astype(str).str.strip()) if repeat is not None else set()
        if "redcap_event_name" in raw.columns or "redcap_repeat_instance" in raw.columns:
            plain = raw[~is_repeat]
            for form in forms:
                cols = [c for c in data_cols if form_of_field.get(field_of.get(c, "")) == form]
                if not cols:
                    continue
                rows_with = filled.loc[plain.index, cols].any(axis=1)
                per_record = rows_with.groupby(plain[record_id]).sum()
                if (per_record > 1).any():
                    sforms.add(form)
    session_cols = [c for c in data_cols if form_of_field.get(field_of.get(c, "")) in sforms]
    baseline_cols = [c for c in data_cols if c not in session_cols]

    # Unchecked checkboxes export as 0 even where a form was never opened: they do not
    # make a row a session unless a form holds nothing else.
    markers = [c for c in session_cols if "___" not in c] or session_cols
    if session_cols:
        is_session = filled[markers].any(axis=1)
    else:  # a flat project: every row is a session
        is_session = pd.Series(True, index=raw.index)
    sessions = raw.loc[is_session, [record_id, *[c for c in REDCAP_SYSTEM_COLUMNS
                                                if c in raw.columns], *session_cols,
                                    "_source_row"]]
    if baseline_cols and session_cols:
        base = raw[[record_id, *baseline_cols]].groupby(record_id, sort=False).first()
        sessions = sessions.join(base, on=record_id)
    elif baseline_cols:
        sessions = raw.loc[is_session, [record_id, *[c for c in REDCAP_SYSTEM_COLUMNS
                                                    if c in raw.columns], *baseline_cols,
                                        "_source_row"]]
    sessions = sessions.sort_values("_source_row", kind="stable").reset_index(drop=True)
    if "session" not in sessions.columns:
        sessions["session"] = _session_numbers(sessions, record_id, export_csv)
        sessions.attrs["derived_session"] = True
    ident: set[str] = set()
    if "identifier" in dd.columns:
        flag = dd["identifier"].astype("string").str.strip().str.lower().eq("y")
        ident = set(dd.loc[flag.fillna(False).astype(bool), "field"])
    sessions.attrs["identifier_columns"] = sorted(
        c for c in sessions.columns if field_of.get(c) in ident)
    order = [record_id, *[c for c in sessions.columns if c not in (record_id, "_source_row")],
             "_source_row"]
    sessions = sessions[order]
    log.info("read REDCap export %s: %d rows -> %d sessions of %d records (session forms: %s)",
             export_csv, len(raw), len(sessions), sessions[record_id].nunique(),
             ", ".join(sorted(sforms)) or "none")
    return sessions


def _event_order(events: pd.Series, records: pd.Series) -> list[str]:
    """The project's event order, merged from each record's rows (REDCap lists them in it).

    Records list different subsets of the events (a missed visit has no row); their orders are
    merged topologically, ties broken by first appearance in the export.
    """
    first: dict[str, int] = {}
    after: dict[str, set[str]] = {}
    for _, evs in events.groupby(records, sort=False):
        seq = list(dict.fromkeys(evs))
        for e in seq:
            first.setdefault(e, len(first))
            after.setdefault(e, set())
        for a, b in zip(seq, seq[1:], strict=False):
            after[a].add(b)
    indegree = {e: 0 for e in first}
    for a in after:
        for b in after[a]:
            indegree[b] += 1
    ready = sorted((e for e, d in indegree.items() if d == 0), key=first.__getitem__)
    order: list[str] = []
    while ready:
        e = ready.pop(0)
        order.append(e)
        for b in after[e]:
            indegree[b] -= 1
            if indegree[b] == 0:
                ready.append(b)
        ready.sort(key=first.__getitem__)
    if len(order) < len(first):  # records disagree on the order: keep first appearance
        log.warning("records list events in different orders; sessions follow the order in "
                    "which events first appear in the export")
        order = sorted(first, key=first.__getitem__)
    return order


def _session_numbers(sessions: pd.DataFrame, record_id: str, source: str | os.PathLike) -> pd.Series:
    """Session numbers for an export without a ``session`` field; gaps stay gaps."""
    def present(col: str) -> pd.Series | None:
        if col not in sessions.columns:
            return None
        v = sessions[col].astype("string").str.strip()
        return v.where(v != "") if v.notna().any() and (v != "").any() else None

    events = present("redcap_event_name")
    instance = present("redcap_repeat_instance")
    n_events = 0 if events is None else events.nunique()
    if instance is not None and n_events <= 1 and instance.notna().all():
        number = pd.to_numeric(instance, errors="coerce")
        if number.notna().all() and (number % 1 == 0).all() and (number >= 1).all():
            log.info("%s: no 'session' field; sessions are the repeat instances", source)
            return number.astype(int).astype(str)
    if events is not None and events.notna().all() and instance is None and (
            ~sessions.duplicated([record_id, "redcap_event_name"])).all():
        order = _event_order(events, sessions[record_id])
        number = events.map({e: i + 1 for i, e in enumerate(order)})
        per_record = number.groupby(sessions[record_id], sort=False)
        missing = int((per_record.max() - per_record.count()).sum())
        log.info("%s: no 'session' field; session k is the k-th session event (%s); %d "
                 "missed visit(s) before a record's last session stay missing sessions",
                 source, ", ".join(order), missing)
        return number.astype(int).astype(str)
    log.warning("%s: no 'session' field and sessions repeat within several events: numbered "
                "1, 2, ... per record in export order, so a missed visit cannot be seen; add a "
                "session field to the project to keep gaps", source)
    return (sessions.groupby(record_id, sort=False).cumcount() + 1).astype(str)
