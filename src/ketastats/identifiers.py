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
:func:`find_identifiers` also returns the set of values that tripped the guard, so that the
validator hides them in every other problem row too.

It looks where identifiers hide: ``patient_id`` must look like an opaque token (no spaces or
name-like words, no embedded date, no record-number shape unless the cohort declares its
``id_pattern``); ``site`` must be a declared code (``sites``) or a short one; numbers in
extra columns are scanned for date, phone, ZIP, record-number and Excel-date-serial shapes;
dates are caught in any common format. :func:`redact_provenance` puts config text, paths and
the command through the same guard before a report or ``results.json`` shows them.

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
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ._given_names import GIVEN_NAMES
from .censoring import as_text, to_float
from .contract import AGE_TOP_CODE, COLUMNS
from .exceptions import ConfigError

__all__ = [
    "IDENTIFIER_KINDS",
    "PROBLEM_COLUMNS",
    "IdentifierScan",
    "cap_problems",
    "find_identifiers",
    "redact_config",
    "redact_provenance",
    "scan_identifiers",
    "text_kind",
]

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
    "site": "place or hospital names rather than a declared site code (identifier 2)",
    "id_scheme": "ids outside the cohort's declared id scheme (id_pattern), which may be "
                 "record numbers (identifier 8)",
}

# Column-name rules: kind -> tokens (matched against the snake_case tokens of the name).
_NAME_TOKENS: dict[str, tuple[str, ...]] = {
    "name": ("name", "names", "surname", "forename", "firstname", "lastname", "fullname",
             "initials", "maiden"),
    "email": ("email", "mail", "emailaddress"),
    "phone": ("phone", "telephone", "tel", "mobile", "cellphone", "phonenumber"),
    "fax": ("fax",),
    "ssn": ("ssn", "socialsecurity", "sin", "nino"),
    "medical_record": ("mrn", "medicalrecord", "hospitalnumber", "nhs", "emr", "ehr"),
    "health_plan": ("insurance", "insurer", "medicaid", "medicare", "beneficiary",
                    "healthplan", "memberid", "payer"),
    "account": ("account", "acct", "iban", "billing", "bank"),
    "license": ("licence", "license", "certificate", "passport", "driver"),
    "vehicle": ("vehicle", "plate", "vin"),
    "device": ("serial", "serialnumber", "imei", "udi", "deviceid", "pumpid"),
    "address": ("address", "addr", "street", "city", "town", "county", "residence",
                "village", "geolocation", "latitude", "longitude"),
    "zip": ("zip", "zipcode", "postcode", "postal", "postalcode", "plz"),
    "date": ("date", "dob", "birthday", "birthdate", "datetime", "timestamp", "month",
             "weekday", "admission", "discharge", "death"),
    "url": ("url", "website", "homepage", "webpage"),
    "ip": ("ipaddress", "ipv4", "ipv6"),
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
# Words that name an identifier only alone or beside a partner word: "chart" is a record
# number in "chart_no" but not in "chart_reviewed"; "ip" an address in "ip" or "ip_address"
# but a route in "ip_dose"; "mac" a device address in "mac_address" but a minimum alveolar
# concentration in "mac_score"; "policy" a health plan in "policy_number", not in "policy_arm".
_ALONE_OR_PAIRED: dict[str, tuple[str, frozenset[str]]] = {
    "chart": ("medical_record", frozenset({"no", "nr", "num", "number", "id"})),
    "policy": ("health_plan", frozenset({"no", "nr", "num", "number", "id", "holder"})),
    "mac": ("device", frozenset({"address", "addr"})),
    "ip": ("ip", frozenset({"address", "addr", "v4", "v6"})),
}
# A date-named column with one of these words holds a duration or a shifted date (a study-day
# offset), not a calendar date: it is not refused by its name, but its values are scanned and
# Excel date serials and calendar dates in it are refused.
_DATE_QUALIFIERS = frozenset({
    "offset", "shift", "shifted", "diff", "difference", "delta", "days", "interval", "lag",
    "relative", "rel",
})
# Column-name words of id-like columns: their long numbers are record numbers.
_ID_WORDS = frozenset({"id", "no", "nr", "num", "number", "code", "ref", "record", "identifier"})
# Column-name words of version columns: "1.2.3.4" there is a version, not an IP address.
_VERSION_WORDS = frozenset({"version", "ver", "release", "build", "revision", "firmware"})
# Tokens that make a "name" column harmless (the name of a form, drug, site, ...).
_NAME_EXEMPT = frozenset({
    "event", "form", "instrument", "drug", "medication", "med", "file", "field",
    "variable", "study", "test", "assay", "kit", "scale", "arm", "group", "redcap",
    "item", "column", "lab", "marker", "analyte", "brand", "product", "illness", "disease",
    "diagnosis", "condition", "symptom", "pathogen", "organism", "virus", "vaccine",
    "procedure",
})
_SYSTEM_COLUMNS = frozenset({
    "redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance",
    "redcap_data_access_group", "_source_row",
})

# Month names as written in dates: whole names and the usual abbreviations only (a bare
# prefix such as "mar" would match "marker" and "decrease").
_MONTHS = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
           r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\b\.?")
_DAY = r"(?:0?[1-9]|[12]\d|3[01])"
_MONTH = r"(?:0?[1-9]|1[0-2])"
_YEAR = r"(?:19|20)\d{2}"
_DOT_WORD = r"(?:\s*(?:\[dot\]|\(dot\)|\{dot\}|<dot>)\s*|\s+dot\s+)"
_VALUE_PATTERNS: dict[str, str] = {
    "email": r"[A-Za-z0-9._%+-]+\s*@\s*[A-Za-z0-9-]+(?:\s*\.\s*[A-Za-z0-9-]+)*\s*\.\s*[A-Za-z]{2,}"
             # obfuscated: "ann at example dot com", "ann [at] example [dot] org", "ann(at)x.org"
             r"|(?i:\b[a-z0-9._%+-]+(?:\s*(?:\[at\]|\(at\)|\{at\}|<at>)\s*|\s+at\s+)[a-z0-9-]+"
             rf"(?:(?:{_DOT_WORD}|\.)[a-z0-9-]+)*(?:{_DOT_WORD}|\.)[a-z]{{2,6}}\b)",
    "url": r"(?i)(?:\b(?:https?|ftp)://\S+|\bwww\.[A-Za-z0-9-]+\.\S+)",
    "ip": r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b"
          r"|\b(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}\b",
    "ssn": r"\b\d{3}-\d{2}-\d{4}\b",
    "date": (
        # year-month-day, also as the start of a date-time ("2024-03-05T14:30:00")
        rf"(?<!\d){_YEAR}[-/.]{_MONTH}[-/.]{_DAY}(?!\d)"
        # day-month-year and month-day-year
        rf"|(?<!\d){_DAY}[-/.]{_DAY}[-/.]{_YEAR}(?!\d)"
        rf"|(?<![\d/]){_MONTH}/{_DAY}/\d{{2}}(?![\d/])"
        # year and month ("2024-03", "2024/03", "03/2024", "3-2024")
        rf"|(?<![\d.]){_YEAR}[-/](?:0[1-9]|1[0-2])(?![\d.])"
        rf"|(?<![\d/.:-]){_MONTH}[/-]{_YEAR}(?![\d/.-])"
        # with the month's name: "5 March 2024", "March 5, 2024", "March 2024", "Mar-2024",
        # "March 5", "5th of April", "12-Mar"
        rf"|(?i:\b{_DAY}(?:st|nd|rd|th)?[\s-]+(?:of\s+)?{_MONTHS}(?:[\s,-]+\d{{2,4}}\b)?)"
        rf"|(?i:\b{_MONTHS}[\s,'-]*{_YEAR}(?!\d))"
        rf"|(?i:\b{_MONTHS}\s+{_DAY}(?:st|nd|rd|th)?\b(?![.,]?\d)(?:,?\s+\d{{4}}\b)?)"
    ),
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
# Two or three words in one case ("ann lee", "LEE, ANN", "mary j smith"): a name only when one
# word is a common given name (see ketastats._given_names).
_CASED_WORDS = re.compile(r"^[A-Za-z]+(?:[-'][A-Za-z]+)?(?:,?\s+[A-Za-z]\.?)?(?:,?\s+[A-Za-z]+"
                          r"(?:[-'][A-Za-z]+)?){1,2}$")
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
    kind = _raw_name_kind(toks)
    if kind == "date" and _DATE_QUALIFIERS & set(toks):
        return None  # a study-day offset or a duration: its values are scanned instead
    return kind


def _raw_name_kind(toks: list[str]) -> str | None:
    joined = "".join(toks)
    for pair, kind in _NAME_PAIRS.items():
        for a, b in itertools.pairwise(toks):
            if (a, b) == pair:
                if kind == "name" and _NAME_EXEMPT & set(toks):
                    continue
                return kind
    for word, (kind, partners) in _ALONE_OR_PAIRED.items():
        if toks == [word] or any(
            (a == word and b in partners) or (b == word and a in partners)
            for a, b in itertools.pairwise(toks)
        ):
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


_FIXES: dict[str, str] = {
    "patient_id": (
        "replace the ids by random study tokens (e.g. 'P3A9F0C'; keep the key at the clinic). If "
        "the ids are study numbers assigned by the study and derived from nothing else, declare "
        "their scheme under 'id_pattern' for this cohort (a regular expression every id must "
        "match, e.g. 'S\\d{6}')."
    ),
    "site": (
        "give each site a short code (e.g. 'A', '07', 'MGH'; map names to codes under 'recode') "
        "and list the codes under 'sites' for this cohort."
    ),
}


def _message(column: str, kind: str, how: str) -> str:
    if column not in _FIXES and column in COLUMNS:
        fix = (f"correct these values of '{column}' in the export: a name, date or contact "
               "detail does not belong in a data-contract column.")
        return (f"Column '{column}' {how} {IDENTIFIER_KINDS[kind]}. ketastats only accepts "
                f"de-identified data (HIPAA Safe Harbor): {fix}")
    fix = _FIXES.get(column) or (
        "remove the column from the export (or replace the values, e.g. dates by study days, "
        f"ages over 89 by '90+'). If you have checked that '{column}' is safe, list it under "
        "'safe_columns' for this cohort."
    )
    return (
        f"Column '{column}' {how} {IDENTIFIER_KINDS[kind]}. ketastats only accepts "
        f"de-identified data (HIPAA Safe Harbor): {fix}"
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


def _value_kinds(text: pd.Series, skip: frozenset[str] = frozenset()) -> dict[str, set[str]]:
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
            if kind not in skip and pattern.search(value):
                found.setdefault(kind, set()).add(value)
                break
    return found


def _plain_text(col: pd.Series) -> pd.Series:
    """The values as stripped text; whole numbers of a numeric column without a ``.0``."""
    text = as_text(col)
    if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        f = pd.Series(col, copy=False).astype("float64")
        whole = (f.notna() & np.isfinite(f) & (f == np.floor(f)) & (f.abs() < 1e15)).to_numpy()
        if whole.any():
            text = text.copy()
            text[whole] = f[whole].astype("int64").astype(str).to_numpy()
    return text


def _calendar_digits(run: str) -> bool:
    """Whether 8 digits read as a date 1900-2099: YYYYMMDD, DDMMYYYY or MMDDYYYY."""
    for y, m, d in ((run[:4], run[4:6], run[6:]), (run[4:], run[2:4], run[:2]),
                    (run[4:], run[:2], run[2:4])):
        if 1900 <= int(y) <= 2099:
            try:
                _dt.date(int(y), int(m), int(d))
            except ValueError:
                continue
            return True
    return False


def _embedded_date(value: str) -> bool:
    """Whether ``value`` holds a run of exactly 8 digits that reads as a calendar date."""
    return any(len(run) == 8 and _calendar_digits(run) for run in re.findall(r"\d+", value))


_SEGMENT = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")


def _words(value: str) -> list[str]:
    """Word-like letter runs: two or more letters with a vowel and a letter outside a-f.

    Hexadecimal tokens hold no such run except their prefix ("P" of ``PACE12``), so these
    runs are what names leave in an id ("Ann" and "Lee" of ``AnnLee42``, ``ann.lee``).
    """
    out = []
    for seg in re.findall(r"[A-Za-z]+", value):
        for w in _SEGMENT.findall(seg):
            low = w.lower()
            if len(w) >= 2 and re.search(r"[aeiouy]", low) and re.search(r"[g-z]", low):
                out.append(w)
    return out


def _word_like(value: str) -> bool:
    """Two word-like runs, or one of three or more letters not all in upper case."""
    words = _words(value)
    return len(words) >= 2 or any(len(w) >= 3 and not w.isupper() for w in words)


def _given_name(value: str) -> bool:
    """Two or three words in one case with a common given name among them ("ann lee")."""
    if not _CASED_WORDS.fullmatch(value):
        return False
    return any(w in GIVEN_NAMES for w in re.findall(r"[a-z]+(?:[-'][a-z]+)?", value.lower()))


def _person_name(value: str) -> bool:
    return bool(_PERSON_NAME.fullmatch(value)) or _given_name(value)


def _binom_tail(x: int, n: int, p: float) -> float:
    """P(X >= x) for X ~ Binomial(n, p)."""
    if x <= 0:
        return 1.0
    logs = [math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
            + k * math.log(p) + (n - k) * math.log1p(-p) for k in range(x, n + 1)]
    top = max(logs)
    return math.exp(top) * sum(math.exp(v - top) for v in logs)


_RECORD_SHAPE = re.compile(r"([A-Za-z]{0,4})([-_]?)(\d{6,})")
_HEX = re.compile(r"[0-9A-Fa-f]{6,}")


def _record_numbers(ids: Iterable[str]) -> set[str]:
    """Ids of record-number shape: six or more digits, alone or after up to four letters.

    Random hexadecimal tokens (``P3A9F0C``, as ketastats' generator makes them) are all
    digits now and then (``P221195``, 6% of six-digit tokens). Such an id is kept when other
    ids of its shape (same prefix, same length) hold hexadecimal letters there and the share
    of all-digit ones is not improbably large for random tokens (binomial tail >= 0.001). A
    shape with no lettered ids, or far too many all-digit ones, is a record numbering.
    """
    ids = list(ids)
    shapes: dict[tuple[str, str, int], list[int]] = {}
    for v in ids:
        for k in range(5):
            head, rest = v[:k], v[k:]
            if k and not head.isalpha():
                break
            sep = ""
            if rest[:1] in ("-", "_"):
                sep, rest = rest[0], rest[1:]
            if _HEX.fullmatch(rest):
                count = shapes.setdefault((head.upper(), sep, len(rest)), [0, 0])
                count[0] += 1
                count[1] += bool(re.search(r"[A-Fa-f]", rest))
    out = set()
    by_shape: dict[tuple[str, str, int], list[str]] = {}
    for v in ids:
        m = _RECORD_SHAPE.fullmatch(v)
        if m:
            by_shape.setdefault((m[1].upper(), m[2], len(m[3])), []).append(v)
    for shape, values in by_shape.items():
        total, lettered = shapes.get(shape, (len(values), 0))
        if lettered and _binom_tail(len(values), total, (10 / 16) ** shape[2]) >= 1e-3:
            continue
        out.update(values)
    return out


def _norm(value: str) -> str:
    """A site code as the validator compares category levels (case, spaces, hyphens)."""
    return re.sub(r"[\s\-]+", "_", str(value).strip().lower()).strip("_")


_SITE_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,3}")


def _bad_sites(uniq: pd.Series, sites: Iterable[str] | None) -> set[str]:
    """Site values that are not a declared code (or, with no list, not a short code)."""
    if sites is not None:
        allowed = {_norm(s) for s in sites}
        return {v for v in uniq if _norm(v) not in allowed}
    return {v for v in uniq if not _SITE_CODE.fullmatch(v)
            or any(len(w) >= 3 and not w.isupper() for w in _words(v))}


def _number_kinds(toks: list[str], uniq: pd.Series) -> dict[str, set[str]]:
    """Numbers (as digits) of extra columns that look like dates, phones, ZIPs or records."""
    digits = uniq[uniq.str.fullmatch(r"\d+").fillna(False).astype(bool)]
    date_named = _raw_name_kind(toks) == "date" if toks else False
    found: dict[str, set[str]] = {}
    for v in digits:
        kind = None
        if len(v) == 8 and _calendar_digits(v):
            kind = "date"
        elif 10 <= len(v) <= 15:
            kind = "date" if date_named else "phone"  # a Unix time, or a phone number
        elif len(v) == 5 and v.startswith("0"):
            kind = "zip"
        if kind:
            found.setdefault(kind, set()).add(v)
    if len(digits) and len(digits) == len(uniq) and digits.str.len().eq(5).all():
        found.setdefault("zip", set()).update(digits)  # five digits throughout: ZIP codes
    if _ID_WORDS & set(toks):
        records = _record_numbers(uniq)
        if records:
            found.setdefault("medical_record", set()).update(records)
    if date_named:  # Excel date serials 1940-01-01 .. 2100-12-31 in a date-offset column
        num = to_float(uniq)
        serial = uniq[((num >= 14611) & (num <= 73415)).fillna(False).to_numpy(dtype=bool)]
        if len(serial):
            found.setdefault("date", set()).update(serial)
    return found


def _invalid_contract_values(column: str, text: pd.Series) -> pd.Series:
    """Values a contract column cannot hold (not a number, not one of its levels)."""
    spec = COLUMNS[column]
    if spec.kind == "category":
        return ~text.map(_norm, na_action="ignore").isin(spec.levels)
    num = to_float(text)
    return num.isna() & ~text.str.startswith("<").fillna(False) & (text != AGE_TOP_CODE)


@dataclass
class IdentifierScan:
    """What :func:`find_identifiers` found.

    Attributes
    ----------
    problems : pandas.DataFrame
        Problem rows (columns :data:`PROBLEM_COLUMNS`), rule ``identifier:<kind>``, severity
        ``error``; values shown as ``[redacted]``. Empty when nothing was found.
    values : set of str
        Every value (as stripped text) that tripped the guard, including all values of a
        column refused by its name; no other problem row or message may show them.
    """

    problems: pd.DataFrame
    values: set[str] = field(default_factory=set)


def find_identifiers(
    df: pd.DataFrame,
    *,
    source: str = "<data>",
    safe_columns: Iterable[str] = (),
    id_pattern: str | None = None,
    sites: Iterable[str] | None = None,
) -> IdentifierScan:
    """Find columns and values that look like direct identifiers, and the values that did.

    Parameters are those of :func:`scan_identifiers`.

    Returns
    -------
    IdentifierScan
        The problem rows and the set of values that tripped the guard.
    """
    if isinstance(safe_columns, str):
        safe_columns = (safe_columns,)
    safe = {str(c) for c in (safe_columns or ())}
    if isinstance(sites, str):
        sites = (sites,)
    pattern = None
    if id_pattern is not None:
        try:
            pattern = re.compile(str(id_pattern))
        except re.error as exc:
            raise ConfigError(f"id_pattern is not a valid regular expression ({exc}); write "
                              "the scheme of the cohort's ids, e.g. 'S\\d{6}'.") from exc
    rows: list[dict] = []
    tripped: set[str] = set()

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

    def add_values(column: str, kind: str, how: str, text: pd.Series, values: set[str]) -> None:
        if values:
            tripped.update(values)
            add(column, kind, how, text.isin(list(values)).fillna(False).to_numpy(dtype=bool))

    def whole_column(col: pd.Series) -> None:
        tripped.update(str(v) for v in _plain_text(col).dropna().unique())

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
            whole_column(col)
            add(column, "declared", "is marked as an identifier in the data dictionary and "
                "holds")
            continue
        kind = _name_kind(column)
        if kind is not None:
            whole_column(col)
            add(column, kind, "is named like a column of")
            continue
        if pd.api.types.is_datetime64_any_dtype(col.dtype):
            whole_column(col)
            add(column, "date", "holds")
            continue
        toks = _tokens(column)
        if column == "age" or (toks and ("age" in (toks[0], toks[-1]))):
            text = as_text(col)
            num = to_float(text)
            over = (num > 89).fillna(False).to_numpy(dtype=bool) & (text != AGE_TOP_CODE).fillna(
                True).to_numpy(dtype=bool)
            if over.any():
                tripped.update(text[over].dropna().astype(str))
                add(column, "age", "holds", over)
        if pd.api.types.is_bool_dtype(col.dtype):
            continue
        is_dateobj = np.zeros(len(col), dtype=bool)
        if col.dtype == object:
            is_dateobj = col.map(lambda v: isinstance(v, (_dt.date, _dt.time, pd.Timestamp)))
            is_dateobj = is_dateobj.fillna(False).to_numpy(dtype=bool)
        if is_dateobj.any():
            whole_column(col)
            add(column, "date", "holds", is_dateobj)
            continue
        text = _plain_text(col)
        contract = column in COLUMNS
        if contract and column not in ("patient_id", "site") and _plain_numbers(col):
            continue  # numbers in a contract column: its range check applies
        skip = frozenset({"ip"}) if _VERSION_WORDS & set(toks) else frozenset()
        for kind, values in _value_kinds(text, skip).items():
            add_values(column, kind, "holds values that look like", text, values)
        uniq = pd.Series(text.dropna().unique(), dtype="string")
        if uniq.empty:
            continue
        if column == "patient_id":
            _scan_ids(uniq, text, pattern, add_values)
            continue
        if column == "site":
            add_values(column, "site", "holds", text, _bad_sites(uniq, sites))
            continue
        if contract:  # a name where a number or a level belongs
            bad = uniq[_invalid_contract_values(column, uniq).fillna(False).to_numpy(dtype=bool)]
            add_values(column, "name", "holds values that look like", text,
                       {v for v in bad if _person_name(v)})
            continue
        for kind, values in _number_kinds(toks, uniq).items():
            add_values(column, kind, "holds values that look like", text, values)
        dated = {v for v in uniq if not v.isdigit() and _embedded_date(v)}
        add_values(column, "date", "holds values with", text, dated)
        if not (_NAME_EXEMPT & set(toks)):
            shaped = uniq.str.fullmatch(_PERSON_NAME.pattern).fillna(False).astype(bool)
            given = uniq.map(_given_name).astype(bool)
            if given.any() or shaped.mean() >= 0.5:
                names = set(uniq[shaped | given])
                add_values(column, "name", "holds values that look like", text, names)
                continue
        words = uniq.str.count(r"\S+").fillna(0)
        if (words >= 8).any():
            add_values(column, "free_text", "holds", text, set(uniq[words >= 8]))
    capped = cap_problems(rows)
    out = pd.DataFrame(capped, columns=list(PROBLEM_COLUMNS))
    out["row"] = out["row"].astype("Int64")
    return IdentifierScan(out, tripped)


def _plain_numbers(col: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype)


def _scan_ids(uniq: pd.Series, text: pd.Series, pattern: re.Pattern | None, add_values) -> None:
    """The opaque-token checks of ``patient_id`` (values already scanned for patterns)."""
    column = "patient_id"
    names = {v for v in uniq if re.search(r"\s", v) or _PERSON_NAME.fullmatch(v)
             or (pattern is None and _word_like(v))}
    add_values(column, "name", "holds values that look like", text, names)
    add_values(column, "date", "holds ids with", text,
               {v for v in uniq if v not in names and _embedded_date(v)})
    if pattern is not None:
        add_values(column, "id_scheme", "holds", text,
                   {v for v in uniq if not pattern.fullmatch(v)})
        return
    add_values(column, "medical_record", "holds ids that look like", text,
               _record_numbers(uniq) - names)


def scan_identifiers(
    df: pd.DataFrame,
    *,
    source: str = "<data>",
    safe_columns: Iterable[str] = (),
    id_pattern: str | None = None,
    sites: Iterable[str] | None = None,
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
    id_pattern : str, optional
        The cohort's declared id scheme, a regular expression every ``patient_id`` must match
        in full. Declared, it replaces the record-number and word checks of the ids (names
        with spaces and embedded dates are still refused).
    sites : iterable of str, optional
        The cohort's site codes; ``site`` values must be one of them (compared like category
        levels: case, spaces and hyphens do not matter). Without a list, a site must be a
        short code: 1 to 4 letters, digits, ``-`` or ``_``, and not a word ("Bonn").

    Returns
    -------
    pandas.DataFrame
        Problem rows (columns :data:`PROBLEM_COLUMNS`), rule ``identifier:<kind>``, severity
        ``error``; values shown as ``[redacted]``. Empty when nothing was found.

    Raises
    ------
    ConfigError
        If ``id_pattern`` is not a valid regular expression.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"patient_id": ["P3A9F0C"], "contact": ["a.b@example.org"]})
    >>> scan_identifiers(df)[["column", "rule"]].to_dict("records")
    [{'column': 'contact', 'rule': 'identifier:email'}]
    """
    return find_identifiers(df, source=source, safe_columns=safe_columns,
                            id_pattern=id_pattern, sites=sites).problems


# ------------------------------------------------------------------ config text
def text_kind(text: str) -> str | None:
    """Kind of identifier a piece of free text (config text, a path, a command) looks like.

    The value patterns of the guard (e-mail addresses, phones, dates in any common format,
    ...), 8-digit runs that read as dates, runs of 10 or more digits, and names: a
    capitalised "First Last", or any word that is a common given name. Path separators,
    ``_``, ``-`` and ``.`` count as spaces, so ``data/raw/ann_lee.csv`` is a name too.

    Examples
    --------
    >>> text_kind("data/raw/demo/sessions.csv") is None
    True
    >>> text_kind("Ann Lee 555-0100"), text_kind("exports/ann_lee.xlsx")
    ('name', 'name')
    """
    t = str(text)
    spaced = re.sub(r"[/\\_.\-]+", " ", t).strip()
    for kind, pattern in _COMPILED.items():
        if pattern.search(t):
            return kind
    if _embedded_date(t):
        return "date"
    if re.search(r"\d{10,}", t):
        return "phone"
    if _PERSON_NAME.fullmatch(t.strip()) or _PERSON_NAME.fullmatch(spaced):
        return "name"
    if any(w in GIVEN_NAMES for w in re.findall(r"[a-z]+(?:[-'][a-z]+)?", spaced.lower())):
        return "name"
    return None


def _redacted(value: object) -> bool:
    return isinstance(value, str) and value.startswith("[redacted")


def redact_config(config: object) -> object:
    """A copy of a config tree in which every string that looks like an identifier is hidden.

    Keys and values are checked with :func:`text_kind`; the raw values that ``recode`` maps
    (``recode.<column>.<raw value>``) are data and are checked too, those of ``recode.site``
    also as site codes (a place name is refused). A hidden value becomes ``"[redacted]"``,
    a hidden key ``"[redacted N]"``. Nothing is hashed: a checksum of a name or a phone
    number is reversed by trying the likely ones.
    """
    count = itertools.count(1)

    def walk(obj: object, path: tuple) -> object:
        if isinstance(obj, dict):
            out = {}
            for key, value in obj.items():
                new = key
                if isinstance(key, str) and not _redacted(key):
                    raw = len(path) >= 2 and path[-2] == "recode"
                    site = raw and path[-1] == "site" and bool(_bad_sites(pd.Series([key]), None))
                    if text_kind(key) or site:
                        new = f"[redacted {next(count)}]"
                out[new] = walk(value, (*path, key))
            return out
        if isinstance(obj, list):
            return [walk(v, (*path, "[]")) for v in obj]
        if isinstance(obj, str) and not _redacted(obj) and text_kind(obj):
            return "[redacted]"
        return obj

    return walk(config, ())


def redact_provenance(provenance: dict) -> dict:
    """The provenance of a result with identifier-like config text, paths and command hidden.

    ``config_yaml`` (the config as YAML) goes through :func:`redact_config`; the input and
    derived file paths and the command through :func:`text_kind`. Checksums, versions and
    the commit are kept. Applying it twice changes nothing more.

    Parameters
    ----------
    provenance : dict
        ``input`` ({file, sha256}), ``config_yaml``, ``derived``, ``command``, ... as built
        by :func:`ketastats.pipeline.provenance`.

    Returns
    -------
    dict
        A copy; parts without anything to hide are the same objects.
    """
    import yaml

    def path(p: object) -> object:
        return "[redacted]" if isinstance(p, str) and not _redacted(p) and text_kind(p) else p

    out = dict(provenance)
    text = out.get("config_yaml")
    if isinstance(text, str):
        tree = yaml.safe_load(text)
        clean = redact_config(tree)
        if clean != tree:
            out["config_yaml"] = yaml.safe_dump(clean, sort_keys=False)
    if isinstance(out.get("input"), dict) and "file" in out["input"]:
        out["input"] = {**out["input"], "file": path(out["input"]["file"])}
    if isinstance(out.get("derived"), dict):
        out["derived"] = {
            what: ({**f, "file": path(f["file"])} if isinstance(f, dict) and "file" in f else f)
            for what, f in out["derived"].items()
        }
    if isinstance(out.get("command"), str):
        out["command"] = " ".join(str(path(arg)) for arg in out["command"].split(" "))
    return out
