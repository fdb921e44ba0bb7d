"""The reviewer's report: results.json, Table 1, figures, suppression, methods, HTML and PDF.

Modules: :mod:`.results` (every number, suppressed), :mod:`.tables` (Table 1),
:mod:`.suppression` (small cells), :mod:`.diagnostics` (residuals and BLUPs from the model
files), :mod:`.figures`, :mod:`.methods` (generated Methods text), :mod:`.render` (HTML, PDF,
PNG/SVG figures, CSV tables).
"""

from .diagnostics import ModelDiagnostics, model_diagnostics
from .figures import FIGURES
from .methods import methods_section
from .render import TABLES, find_chromium, render_html, render_pdf, write_tables
from .results import build_results, model_illness_effect, summary_sentences
from .suppression import SuppressionLog, is_small, suppress_count, suppress_related
from .tables import patient_level, table_one

__all__ = [
    "FIGURES",
    "TABLES",
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
