"""The reviewer's report: results.json, Table 1, figures, suppression, methods, HTML and PDF.

Modules: :mod:`.results` (every number, suppressed), :mod:`.tables` (Table 1),
:mod:`.suppression` (small cells), :mod:`.diagnostics` (residuals and BLUPs from the model
files), :mod:`.figures`, :mod:`.methods` (generated Methods text), :mod:`.render` (HTML, PDF,
PNG/SVG figures, CSV tables), :mod:`.catalog` (figure and table names), :mod:`.chromium`.
"""

from __future__ import annotations

from .._lazy import attach

# Output names and the Chromium lookup are read while Snakemake parses the Snakefile: they
# come from modules without matplotlib or pandas. Everything else is imported on first use.
from .catalog import FIGURES, TABLES
from .chromium import find_chromium

_LAZY = {
    "ModelDiagnostics": "diagnostics",
    "model_diagnostics": "diagnostics",
    "methods_section": "methods",
    "render_html": "render",
    "render_pdf": "render",
    "write_tables": "render",
    "build_results": "results",
    "model_illness_effect": "results",
    "summary_sentences": "results",
    "Disclosure": "suppression",
    "SuppressionLog": "suppression",
    "is_small": "suppression",
    "suppress_count": "suppression",
    "suppress_related": "suppression",
    "patient_level": "tables",
    "table_one": "tables",
}

__all__ = [
    "FIGURES",
    "TABLES",
    "Disclosure",
    "ModelDiagnostics",
    "SuppressionLog",
    "build_results",
    "find_chromium",
    "is_small",
    "methods_section",
    "model_diagnostics",
    "model_illness_effect",
    "patient_level",
    "render_html",
    "render_pdf",
    "summary_sentences",
    "suppress_count",
    "suppress_related",
    "table_one",
    "write_tables",
]


__getattr__, __dir__ = attach(__name__, _LAZY)
