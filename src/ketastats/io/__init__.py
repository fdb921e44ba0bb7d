"""Readers for session files (CSV/TSV, Parquet, Excel, REDCap) and the column mapping.

Public functions: :func:`read_table`, :func:`read_redcap`, :func:`read_cohort`,
:func:`sha256_file` and :func:`verify_checksum`.
"""

from __future__ import annotations

from .mapping import SOURCE_ROW, apply_mapping, apply_recode, read_cohort, resolve_input
from .readers import FORMATS, detect_format, input_checksum, read_table, sha256_file, verify_checksum
from .redcap import parse_choices, read_redcap

__all__ = [
    "FORMATS",
    "SOURCE_ROW",
    "apply_mapping",
    "apply_recode",
    "detect_format",
    "input_checksum",
    "parse_choices",
    "read_cohort",
    "read_redcap",
    "read_table",
    "resolve_input",
    "sha256_file",
    "verify_checksum",
]
