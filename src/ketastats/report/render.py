"""Render the self-contained HTML report from ``results.json`` and the processed data."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from .._atomic import write_text_atomic
from .figures import coefficient_figure, figure_to_data_uri, trajectory_figure

__all__ = ["render_html"]


def _env() -> jinja2.Environment:
    text = resources.files("ketastats.report").joinpath("templates/report.html.j2").read_text("utf-8")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["num"] = lambda x, d=2: "n/a" if x is None else (f"{x:.{d}f}" if isinstance(x, float) else x)
    env.filters["pval"] = lambda p: "n/a" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")
    return env.from_string(text)


def render_html(
    results: Mapping[str, Any],
    sessions: pd.DataFrame,
    out_html: str | Path,
    *,
    run_date: str | None = None,
) -> Path:
    """Write ``report.html``: one file, every image embedded, no network needed.

    Parameters
    ----------
    results : mapping
        The dictionary written to ``results.json`` (see :func:`build_results`).
    sessions : pandas.DataFrame
        The prepared session table, for the figures.
    out_html : path
        Where to write the report (atomically).
    run_date : str, optional
        Shown in the provenance section; defaults to now (UTC).
    """
    figures = {"trajectories": figure_to_data_uri(trajectory_figure(sessions))}
    for name, model in results["models"].items():
        figures[f"coef_{name}"] = figure_to_data_uri(
            coefficient_figure(model["coefficients"], f"Model '{name}': fixed effects")
        )
    run_date = run_date or _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    html = _env().render(r=results, figures=figures, run_date=run_date)
    out = Path(out_html)
    write_text_atomic(out, html)
    return out
