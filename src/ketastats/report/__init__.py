"""The reviewer's report: results.json, figures, HTML."""

from .render import render_html
from .results import build_results, summary_sentences
from .suppression import is_small, suppress_count

__all__ = ["build_results", "render_html", "summary_sentences", "suppress_count", "is_small"]
