"""Identifier guard: refuse input that looks like it carries direct identifiers.

ketastats works on de-identified session records only. Following the HIPAA Safe Harbor
method (45 CFR 164.514(b)(2)), :func:`scan_identifiers` looks at every column's *name* and
*values* for names, e-mail addresses, phone and fax numbers, social security numbers,
medical-record, health-plan and account numbers, licence and vehicle numbers, street
addresses and ZIP codes, full calendar dates (and month/season columns), URLs, IP
addresses, device serial numbers, free-text notes and ages over 89 that are not top-coded as
``"90+"``. Each finding becomes an error row of the problems table with rule
``identifier:<kind>``; the values themselves are never echoed (they show as
``[redacted]``), so the problems table and logs do not leak what they report.

A researcher who has checked a flagged column and knows it is safe (for example a column
``clinic_name`` holding "Site A", "Site B") lists it in the cohort's ``safe_columns``; the
guard then skips that column entirely. The override is per cohort and is documented in
``docs/data_contract.md``.

The checks are heuristics tuned not to fire on legitimate contract data (tokens such as
``P3A9F0C``, integer days, ``"<0.15"``, ages 18-89 or ``"90+"``); they are a safety net, not
a de-identification procedure.

References
----------
.. [1] 45 CFR 164.514(b)(2), Safe Harbor: the 18 identifiers.
.. [2] HHS (2012) Guidance regarding methods for de-identification of protected health
   information.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import re
from collections.abc import Iterable

import numpy as np
import pandas as pd

from .censoring import as_text, to_float
from .contract import AGE_TOP_CODE, COLUMNS

__all__ = ["IDENTIFIER_KINDS", "PROBLEM_COLUMNS", "cap_problems", "scan_identifiers"]

#: Columns of every problems table.
PROBLEM_COLUMNS: tuple[str, ...] = (
    "file", "row", "column", "value", "rule", "severity", "message",
)

#: Kind -> plain-language description used in messages.
IDENTIFIER_KINDS: dict[str, str] = {
    "name": "personal names (Safe Harbor identifier 1)",
    "address": "street addresses or places smaller than a state (identifier 2)",
    "zip": "ZIP or postal codes (identifier 2)",
    "date": "calendar dates or date elements other than the year (identifier 3)",
    "age": "ages over 89 that are not top-coded as '90+' (identifier 3)",
    "phone": "telephone numbers (identifier 4)",
    "fax": "fax numbers (identifier 5)",
    "email": "e-mail addresses (identifier 6)",
    "ssn": "social security numbers (identifier 7)",
    "medical_record": "medical record numbers (identifier 8)",
    "health_plan": "health-plan beneficiary numbers (identifier 9)",
    "account": "account numbers (identifier 10)",
    "license": "certificate or licence numbers (identifier 11)",
    "vehicle": "vehicle identifiers or licence plates (identifier 12)",
    "device": "device identifiers or serial numbers (identifier 13)",
    "url": "web addresses (URLs, identifier 14)",
    "ip": "IP addresses (identifier 15)",
    "biometric": "biometric identifiers or photographs (identifiers 16-17)",
    "free_text": "free text, which can hold names, dates and places (identifier 18)",
    "declared": "a field the source system marks as an identifier",
}

# Column-name rules: kind -> tokens (matched against the snake_case tokens of the name).
_NAME_TOKENS: dict[str, tuple[str, ...]] = {
    "name": ("name", "names", "surname", "forename", "firstname", "lastname", "fullname",
             "initials", "maiden"),
    "email": ("email", "mail", "emailaddress"),
    "phone": ("phone", "telephone", "tel", "mobile", "cellphone", "phonenumber"),
    "fax": ("fax",),
    "ssn": ("ssn", "socialsecurity", "sin", "nino"),
    "medical_record": ("mrn", "medicalrecord", "chart", "hospitalnumber", "nhs", "emr",
                       "ehr"),
    "health_plan": ("insurance", "insurer", "medicaid", "medicare", "beneficiary", "policy",
                    "healthplan", "memberid", "payer"),
    "account": ("account", "acct", "iban", "billing", "bank"),
    "license": ("licence", "license", "certificate", "passport", "driver"),
    "vehicle": ("vehicle", "plate", "vin"),
    "device": ("serial", "serialnumber", "imei", "udi", "mac", "deviceid", "pumpid"),
    "address": ("address", "addr", "street", "city", "town", "county", "residence",
                "village", "geolocation", "latitude", "longitude"),
    "zip": ("zip", "zipcode", "postcode", "postal", "postalcode", "plz"),
    "date": ("date", "dob", "birthday", "birthdate", "datetime", "timestamp", "month",
             "season", "weekday", "admission", "discharge", "death"),
    "url": ("url", "website", "homepage", "webpage"),
    "ip": ("ip", "ipaddress", "ipv4", "ipv6"),
    "biometric": ("photo", "photograph", "image", "fingerprint", "biometric", "voiceprint",
                  "face"),
    "free_text": ("note", "notes", "comment", "comments", "remark", "remarks", "freetext",
                  "narrative"),
}
# Compound names (two tokens) that mean one of the kinds above.
_NAME_PAIRS: dict[tuple[str, str], str] = {
    ("first", "name"): "name", ("last", "name"): "name", ("e", "mail"): "email",
    ("social", "security"): "ssn", ("medical", "record"): "medical_record",
    ("record", "number"): "medical_record", ("member", "id"): "health_plan",
    ("health", "plan"): "health_plan", ("device", "id"): "device",
    ("serial", "number"): "device", ("ip", "address"): "ip", ("ip", "addr"): "ip",
    ("free", "text"): "free_text",
    ("date", "of"): "date", ("zip", "code"): "zip", ("post", "code"): "zip",
    ("pump", "id"): "device",
}
# Tokens that make a "name" column harmless (the name of a form, drug, site, ...).
_NAME_EXEMPT = frozenset({
    "event", "form", "instrument", "drug", "medication", "med", "file", "field",
    "variable", "study", "test", "assay", "kit", "scale", "arm", "group", "redcap",
    "item", "column", "lab", "marker", "analyte", "brand", "product",
})
_SYSTEM_COLUMNS = frozenset({
    "redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance",
    "redcap_data_access_group", "_source_row",
})

_MONTHS = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_VALUE_PATTERNS: dict[str, str] = {
    "email": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
    "url": r"(?i)(?:\b(?:https?|ftp)://\S+|\bwww\.[A-Za-z0-9-]+\.\S+)",
    "ip": r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b"
          r"|\b(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}\b",
    "ssn": r"\b\d{3}-\d{2}-\d{4}\b",
    "date": (r"\b(?:19|20)\d{2}[-/.](?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12]\d|3[01])\b"
             r"|\b(?:0?[1-9]|[12]\d|3[01])[-/.](?:0?[1-9]|[12]\d|3[01])[-/.](?:19|20)\d{2}\b"
             r"|\b(?:0?[1-9]|1[0-2])/(?:0?[1-9]|[12]\d|3[01])/\d{2}\b"
             rf"|(?i:\b\d{{1,2}}(?:st|nd|rd|th)?[\s-]+{_MONTHS}[\s,-]+\d{{2,4}}\b)"
             rf"|(?i:\b{_MONTHS}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}\b)"),
    "phone": r"(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)\s?|\b\d{3,4}[\s.-])\d{3,4}[\s.-]\d{3,4}\b"
             r"|\+\d{1,3}(?:[\s.-]\d{2,5}){2,5}\b",
    "address": (r"(?i)\b\d{1,6}[a-z]?\s+(?:[A-Za-z0-9.'-]+\s+){0,4}(?:street|st|avenue|ave|"
                r"road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl|terrace|"
                r"highway|hwy|strasse|straße|weg|gasse)\b\.?(?!\d)|\bp\.?\s?o\.?\s+box\s+\d+"),
    "zip": r"^\d{5}-\d{4}$",
    "medical_record": r"(?i)\b(?:mrn|medical\s+record|chart)\s*(?:no\.?|number|#)?\s*[:#]?\s*"
                      r"[A-Z0-9-]*\d{4,}",
    "health_plan": r"(?i)\b(?:member|policy|insurance)\s*(?:id|no\.?|number|#)\s*[:#]?\s*"
                   r"[A-Z0-9-]{4,}",
    "account": r"(?i)\b(?:acct|account)\s*(?:id|no\.?|number|#)?\s*[:#]?\s*[A-Z0-9-]*\d{4,}",
    "device": r"(?i)\b(?:s/?n|serial)\s*(?:no\.?|number|#)?\s*[:#]?\s*[A-Z0-9-]*\d[A-Z0-9-]{3,}",
}
_COMPILED = {k: re.compile(v) for k, v in _VALUE_PATTERNS.items()}
_ANY = re.compile("|".join(f"(?:{v})" for v in _VALUE_PATTERNS.values()).replace(
    "(?i)", "").replace("(?i:", "(?:"), re.IGNORECASE)
_PERSON_NAME = re.compile(
    r"^(?:(?:[Mm]r|[Mm]rs|[Mm]s|[Mm]iss|[Dd]r|[Pp]rof)\.?\s+[A-Z][a-z]+.*"
    r"|[A-Z][a-z]+(?:[-'][A-Z][a-z]+)?(?:,\s*|\s+)(?:[A-Z]\.?\s+)?[A-Z][a-z]+(?:[-'][A-Z][a-z]+)?)$",
)
_NUMBER = re.compile(r"^\s*[<>]?=?\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*$")
_REDACTED = "[redacted]"
_CAP = 50


def _tokens(name: str) -> list[str]:
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(name))
    return [t for t in re.split(r"[^a-z0-9]+", s.lower()) if t]


def _name_kind(column: str) -> str | None:
    """Kind of identifier a column's name suggests, or None."""
    if column in COLUMNS or column in _SYSTEM_COLUMNS:
        return None
    toks = _tokens(column)
    if not toks:
        return None
    joined = "".join(toks)
    for pair, kind in _NAME_PAIRS.items():
        for a, b in itertools.pairwise(toks):
            if (a, b) == pair:
                if kind == "name" and _NAME_EXEMPT & set(toks):
                    continue
                return kind
    for kind, words in _NAME_TOKENS.items():
        if set(words) & set(toks) or joined in words:
            if kind == "name" and _NAME_EXEMPT & set(toks):
                continue
            if kind == "date" and ("year" in toks and "date" not in toks):
                continue
            return kind
    if toks[-1] in ("dt",) or joined.endswith("date"):
        return "date"
    return None


def source_rows(df: pd.DataFrame) -> np.ndarray:
    """File line number of each row (header = line 1) as floats, NaN where unknown.

    Taken from the reader's ``_source_row`` column when present; a value that is not a
    whole number from 1 to 2**53 cannot be a line number and becomes NaN.
    """
    if "_source_row" in df.columns:
        col = df["_source_row"]
        if isinstance(col, pd.DataFrame):  # duplicate column names: the first one counts
            col = col.iloc[:, 0]
        rows = pd.to_numeric(col.astype("string"), errors="coerce").astype("float64")
        rows = rows.where((rows >= 1) & (rows < 2.0**53) & (rows == np.floor(rows)))
        return rows.to_numpy(dtype="float64", na_value=np.nan)
    return np.arange(2, len(df) + 2, dtype="float64")


def _rows(df: pd.DataFrame, mask: np.ndarray) -> np.ndarray:
    return source_rows(df)[mask]


def _message(column: str, kind: str, how: str) -> str:
    return (
        f"Column '{column}' {how} {IDENTIFIER_KINDS[kind]}. ketastats only accepts "
        "de-identified data (HIPAA Safe Harbor): remove the column from the export (or "
        "replace the values, e.g. dates by study days, ages over 89 by '90+'). If you have "
        f"checked that '{column}' is safe, list it under 'safe_columns' for this cohort."
    )


def cap_problems(rows: list[dict], cap: int = _CAP) -> list[dict]:
    """Keep at most ``cap`` rows per (column, rule) and add a summary row for the rest.

    Parameters
    ----------
    rows : list of dict
        Problem rows with the keys of :data:`PROBLEM_COLUMNS`.
    cap : int, default 50
        Rows to keep per (column, rule).

    Returns
    -------
    list of dict
        The kept rows in input order, each group followed by a summary row (``row``
        missing) saying how many more there were.
    """
    counts: dict[tuple, int] = {}
    out: list[dict] = []
    last: dict[tuple, int] = {}
    for r in rows:
        key = (r["column"], r["rule"], r["severity"])
        counts[key] = counts.get(key, 0) + 1
        if counts[key] <= cap:
            out.append(r)
            last[key] = len(out) - 1
    extra = []
    for key, n in counts.items():
        if n > cap:
            first = next(r for r in out if (r["column"], r["rule"], r["severity"]) == key)
            extra.append((last[key], {
                "file": first["file"], "row": pd.NA, "column": key[0], "value": "",
                "rule": key[1], "severity": key[2],
                "message": f"... and {n - cap} more rows with the same problem "
                           f"({n} in total; only the first {cap} are listed).",
            }))
    for pos, row in sorted(extra, key=lambda t: t[0], reverse=True):
        out.insert(pos + 1, row)
    return out


def _value_kinds(text: pd.Series) -> dict[str, set[str]]:
    """Map kind -> set of unique values (of ``text``) that look like that identifier."""
    uniq = pd.Series(text.dropna().unique(), dtype="string")
    if uniq.empty:
        return {}
    uniq = uniq[~uniq.str.fullmatch(_NUMBER.pattern).fillna(False).astype(bool)]
    hits = uniq[uniq.str.contains(_ANY.pattern, regex=True, flags=re.IGNORECASE)
                .fillna(False).astype(bool)]
    found: dict[str, set[str]] = {}
    for value in hits:
        for kind, pattern in _COMPILED.items():
            if pattern.search(value):
                found.setdefault(kind, set()).add(value)
                break
    return found


def scan_identifiers(
    df: pd.DataFrame,
    *,
    source: str = "<data>",
    safe_columns: Iterable[str] = (),
) -> pd.DataFrame:
    """Find columns and values that look like direct identifiers.

    Parameters
    ----------
    df : pandas.DataFrame
        The table as read (all columns, before coercion). A ``_source_row`` column, if
        present, gives the file line of each row; ``df.attrs["identifier_columns"]`` (set by
        the REDCap reader from the data dictionary) lists declared identifier fields.
    source : str, default "<data>"
        File name for the ``file`` column of the problems.
    safe_columns : iterable of str
        Columns the researcher declares safe; they are not scanned.

    Returns
    -------
    pandas.DataFrame
        Problem rows (columns :data:`PROBLEM_COLUMNS`), rule ``identifier:<kind>``, severity
        ``error``; values shown as ``[redacted]``. Empty when nothing was found.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"patient_id": ["P3A9F0C"], "contact": ["a.b@example.org"]})
    >>> scan_identifiers(df)[["column", "rule"]].to_dict("records")
    [{'column': 'contact', 'rule': 'identifier:email'}]
    """
    if isinstance(safe_columns, str):
        safe_columns = (safe_columns,)
    safe = {str(c) for c in (safe_columns or ())}
    rows: list[dict] = []

    def add(column: str, kind: str, how: str, mask: np.ndarray | None = None) -> None:
        msg = _message(column, kind, how)
        if mask is None:
            rows.append({"file": source, "row": pd.NA, "column": column, "value": "",
                         "rule": f"identifier:{kind}", "severity": "error", "message": msg})
            return
        for r in _rows(df, mask):
            rows.append({"file": source, "row": pd.NA if np.isnan(r) else int(r),
                         "column": column, "value": _REDACTED,
                         "rule": f"identifier:{kind}", "severity": "error", "message": msg})

    declared = set(df.attrs.get("identifier_columns", []) or []) if hasattr(df, "attrs") else set()
    seen: set[str] = set()
    for position in range(df.shape[1]):
        column = str(df.columns[position])
        if column in safe or column in seen or column == "_source_row":
            continue
        seen.add(column)
        col = df.iloc[:, position]
        present = col.notna().to_numpy()
        if not present.any():
            continue
        if column in declared:
            add(column, "declared", "is marked as an identifier in the data dictionary and "
                "holds")
            continue
        kind = _name_kind(column)
        if kind is not None:
            add(column, kind, "is named like a column of")
            continue
        if pd.api.types.is_datetime64_any_dtype(col.dtype):
            add(column, "date", "holds")
            continue
        toks = _tokens(column)
        if column == "age" or (toks and ("age" in (toks[0], toks[-1]))):
            text = as_text(col)
            num = to_float(text)
            over = (num > 89).fillna(False).to_numpy(dtype=bool) & (text != AGE_TOP_CODE).fillna(
                True).to_numpy(dtype=bool)
            if over.any():
                add(column, "age", "holds", over)
            continue
        if pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype):
            continue
        is_dateobj = np.zeros(len(col), dtype=bool)
        if col.dtype == object:
            is_dateobj = col.map(lambda v: isinstance(v, (_dt.date, _dt.time, pd.Timestamp)))
            is_dateobj = is_dateobj.fillna(False).to_numpy(dtype=bool)
        if is_dateobj.any():
            add(column, "date", "holds", is_dateobj)
            continue
        text = as_text(col)
        for kind, values in _value_kinds(text).items():
            add(column, kind, "holds values that look like",
                text.isin(list(values)).fillna(False).to_numpy(dtype=bool))
        if column == "patient_id":
            mrn = text.str.fullmatch(r"\d{7,}").fillna(False).to_numpy(dtype=bool)
            if mrn.any():
                add(column, "medical_record", "holds long all-digit ids that look like", mrn)
        elif column in COLUMNS:
            continue
        uniq = pd.Series(text.dropna().unique(), dtype="string")
        if uniq.empty:
            continue
        names = uniq.str.fullmatch(_PERSON_NAME.pattern).fillna(False).astype(bool)
        if names.any() and (column == "patient_id" or names.mean() >= 0.5):
            add(column, "name", "holds values that look like",
                text.isin(list(uniq[names])).fillna(False).to_numpy(dtype=bool))
            continue
        if column == "patient_id":
            continue
        words = uniq.str.count(r"\S+").fillna(0)
        if (words >= 8).any():
            add(column, "free_text", "holds",
                text.isin(list(uniq[words >= 8])).fillna(False).to_numpy(dtype=bool))
    capped = cap_problems(rows)
    out = pd.DataFrame(capped, columns=list(PROBLEM_COLUMNS))
    out["row"] = out["row"].astype("Int64")
    return out
