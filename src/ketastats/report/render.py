"""Render the report: self-contained HTML, PDF, figures (PNG + SVG) and tables (CSV).

:func:`render_html` draws the figures from ``results.json`` (the numbers), the processed
data (individual trajectories, the swimmer plot, cytokine histograms) and the model files
(diagnostics from the stored estimates and BLUPs), embeds them as ``data:`` URIs and writes
one HTML file that needs no network. :func:`render_pdf` prints that file with headless
Chromium.
"""

from __future__ import annotations

import datetime as _dt
import logging
import re
import subprocess
import tempfile
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from .._atomic import atomic_path, write_text_atomic
from ..exceptions import KetastatsError, ModelError
from ..models.counted import mask_numbers
from ..tablecsv import write_csv
from .catalog import TABLES
from .chromium import CHROMIUM_ARGS, find_chromium
from .decision_figures import by_illness_figure, love_figure, overlap_figure
from .diagnostics import model_diagnostics
from .figures import (
    FIGURES,
    caterpillar_figure,
    cytokine_figure,
    forest_figure,
    illness_timeline_figure,
    message_figure,
    qq_figure,
    residuals_figure,
    save_figure,
    trajectory_figure,
)
from .flow import flow_figure
from .labels import term_label
from .suppression import say_count
from .tables import table_one_frame

__all__ = ["TABLES", "render_html", "render_pdf", "write_tables", "find_chromium", "CHROMIUM_ARGS", "PDF_OFFLINE_ARGS", "PRINT_POLICY"]

log = logging.getLogger(__name__)

#: What the PDF printer adds to CHROMIUM_ARGS: every host name resolves to nothing and any
#: proxied request fails, so a reference the report should never hold cannot reach the network.
PDF_OFFLINE_ARGS = [
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
]

#: The policy the command-line printer puts in front of the page it prints: no script, no
#: request; images from data: URIs and the inline style sheet only. (Playwright's printer
#: switches JavaScript off instead; `--blink-settings=scriptEnabled=false` makes Chromium's
#: --print-to-pdf write an empty file, so on the command line the policy does it.)
PRINT_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; base-uri 'none'"

_DOCTYPE = re.compile(r"^\s*<!doctype[^>]*>", re.IGNORECASE)


def _with_print_policy(html: str) -> str:
    """``html`` with a Content-Security-Policy ``<meta>`` ahead of everything but the doctype
    (so that it governs every element after it and the page keeps its rendering mode)."""
    meta = f'<meta http-equiv="Content-Security-Policy" content="{PRINT_POLICY}">'
    m = _DOCTYPE.match(html)
    cut = m.end() if m else 0
    return html[:cut] + meta + html[cut:]


def _num(x: Any, d: int = 2) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{d}f}"
    return str(x)


def _pval(p: float | None) -> str:
    return "n/a" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


def _env() -> jinja2.Template:
    text = resources.files("ketastats.report").joinpath("templates/report.html.j2").read_text("utf-8")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["num"] = _num
    env.filters["pval"] = _pval
    env.filters["say"] = say_count
    env.filters["term"] = term_label
    return env.from_string(text)


# ------------------------------------------------------------------ tables
def _tables(results: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    flow = results["data_flow"]
    flow_rows = [
        {"step": "received", "records": flow["records_received"], "patients": flow["patients_received"]}
    ]
    flow_rows += [
        {"step": f"excluded: {e['reason']}", "records": e["records"], "patients": ""}
        for e in flow["excluded"]
    ]
    flow_rows += [
        {
            "step": "patients without any analysed record",
            "records": "",
            "patients": flow["patients_excluded"],
        },
        {
            "step": "analysed (primary model)",
            "records": flow["records_analysed"],
            "patients": flow["patients_analysed"],
        },
    ]
    coefs = [
        {
            "model": name,
            "label": m["label"],
            "status": m["status"],
            **{k: c.get(k) for k in ("term", "estimate", "se", "ci_low", "ci_high", "p_value", "df_method")},
        }
        for name, m in results["models"].items()
        for c in m["coefficients"]
    ]
    eff_cols = ["model", "label", "term", "scale", "estimate", "se", "ci_low", "ci_high", "p_value"]
    cyto_cols = ["marker", "label", "measured", "detected", "below_lod", "below_lod_pct", "lod"]
    cyto = [{**c, "lod": ";".join(f"{v:g}" for v in c["lod"])} for c in results["cytokines"]]
    return {
        "table1": table_one_frame(results["table1"]),
        "data_flow": pd.DataFrame(flow_rows),
        "coefficients": pd.DataFrame(
            coefs,
            columns=[
                "model",
                "label",
                "status",
                "term",
                "estimate",
                "se",
                "ci_low",
                "ci_high",
                "p_value",
                "df_method",
            ],
        ),
        "illness_effects": pd.DataFrame(
            [
                {k: e.get(k) for k in eff_cols}
                for e in [*results["illness_effects"], *results.get("illness_effects_other_scales", [])]
            ],
            columns=eff_cols,
        ),
        "trajectories_session": pd.DataFrame(
            results["trajectories"]["by_session"],
            columns=["ever_ill", "session", "n", "mean", "ci_low", "ci_high"],
        ),
        "trajectories_day": pd.DataFrame(
            results["trajectories"]["by_day"], columns=["ever_ill", "day", "n", "mean", "ci_low", "ci_high"]
        ),
        "cytokines": pd.DataFrame([{k: c.get(k) for k in cyto_cols} for c in cyto], columns=cyto_cols),
        "suppression": pd.DataFrame(results["suppression"]["entries"], columns=["where", "cell", "reason"]),
    }


def write_tables(results: Mapping[str, Any], tables_dir: str | Path) -> dict[str, Path]:
    """Write every report table as CSV under ``tables_dir`` (names: :data:`TABLES`)."""
    out = {}
    for name, df in _tables(results).items():
        path = Path(tables_dir) / f"{name}.csv"
        write_csv(df, path)
        out[name] = path
    return out


# ------------------------------------------------------------------ figures
def _figures(
    results: Mapping[str, Any],
    sessions: pd.DataFrame,
    models: Mapping[str, Mapping[str, Any]] | None,
    figures_dir: str | Path | None,
) -> tuple[dict[str, str], dict[str, str]]:
    """All report figures as data URIs (and PNG/SVG files); plus notes on missing ones."""
    level = results["settings"]["confidence_level"]
    traj = results["trajectories"]
    group_n = results["table1"]["n"]
    primary_eff = (results["models"].get("primary") or {}).get("illness_effect") or {}
    primary_mcid = primary_eff.get("mcid") or results["settings"]["mcid"]
    ins = results["settings"]["instrument"]
    if "ever_ill" not in sessions.columns:
        sessions = sessions.assign(ever_ill=0)
    figs: dict[str, Any] = {
        "flow": lambda: flow_figure(results["data_flow"]),
        "trajectories_session": lambda: trajectory_figure(
            sessions, traj["by_session"], by="session", level=level, group_n=group_n,
            score=ins["name"], score_label=ins["short"], unit=ins["unit"],
        ),
        "trajectories_day": lambda: trajectory_figure(
            sessions, traj["by_day"], by="day", level=level, day_bin=traj.get("day_bin", 7), group_n=group_n,
            score=ins["name"], score_label=ins["short"], unit=ins["unit"],
        ),
        "illness_timeline": lambda: illness_timeline_figure(sessions, results.get("illness")),
        "decision_overlap": lambda: overlap_figure(results.get("decisions")),
        "decision_balance": lambda: love_figure(results.get("decisions")),
        "by_illness": lambda: by_illness_figure(
            results.get("decisions"), mcid=primary_mcid, score=ins["short"], level=level
        ),
        "cytokines": lambda: cytokine_figure(sessions, results["cytokines"]),
        "forest": lambda: forest_figure(
            results["illness_effects"],
            mcid=None if primary_mcid is None else float(primary_mcid),
            level=level,
            score_label=ins["short"],
        ),
    }
    notes: dict[str, str] = {}
    primary = (models or {}).get("primary")
    diag = None
    if primary is None:
        notes["diagnostics"] = "No primary model: diagnostics are not available."
    elif primary.get("status", "ok") != "ok":
        notes["diagnostics"] = f"The primary model was {primary['status']}: no diagnostics."
    else:
        try:
            diag = model_diagnostics(primary, sessions)
        except (ModelError, KeyError, ValueError) as exc:
            # the error may quote a count (rows used, rows selected): its numbers are withheld
            notes["diagnostics"] = f"Diagnostics could not be computed from the model file: {mask_numbers(exc)}"
            log.warning("%s", notes["diagnostics"])
    # one point per session (residuals) or per patient (caterpillar): not drawn when that
    # number is itself a small, suppressed count
    counts = (results["models"].get("primary") or {}) if diag is not None else {}
    small = (
        "Not shown: one point per {0} would reveal the number of {0}, which is suppressed "
        "(small-cell rule: it would let a small count be derived)."
    )
    if diag is not None and not isinstance(counts.get("nobs"), str):
        figs["residuals_fitted"] = lambda: residuals_figure(diag.frame)
        figs["qq"] = lambda: qq_figure(diag.frame)
    else:
        for name in ("residuals_fitted", "qq"):
            figs[name] = lambda: message_figure(notes.get("diagnostics") or small.format("session"))
    if diag is not None and not isinstance(counts.get("ngroups"), str):
        figs["caterpillar"] = lambda: caterpillar_figure(diag.blups)
    else:
        figs["caterpillar"] = lambda: message_figure(notes.get("diagnostics") or small.format("patient"))
    uris = {name: save_figure(figs[name](), figures_dir, name) for name in FIGURES}
    return uris, notes


# ------------------------------------------------------------------- render
def render_html(
    results: Mapping[str, Any],
    sessions: pd.DataFrame,
    out_html: str | Path,
    *,
    models: Mapping[str, Mapping[str, Any]] | None = None,
    figures_dir: str | Path | None = None,
    tables_dir: str | Path | None = None,
    run_date: str | None = None,
) -> Path:
    """Write ``report.html``: one file, every image embedded, no network needed.

    Parameters
    ----------
    results : mapping
        The dictionary written to ``results.json`` (see :func:`build_results`), with
        ``provenance["command"]`` added (the command is shown in the report only).
    sessions : pandas.DataFrame
        The prepared session table, for the figures.
    out_html : path
        Where to write the report (atomically).
    models : mapping, optional
        Model name -> model JSON, for the diagnostics (fitted values and residuals from
        the stored estimates and BLUPs). Without it the diagnostics say so.
    figures_dir, tables_dir : path, optional
        Also write each figure as PNG and SVG, and each table as CSV, there.
    run_date : str, optional
        Shown in the provenance section; defaults to now (UTC). The only part of the
        report that changes between runs of the same inputs.

    Examples
    --------
    With ``results`` from :func:`ketastats.report.build_results` and the cohort's sessions and
    model JSON (as rule ``report`` does):

    .. code-block:: python

        render_html(results, sessions, "reports/demo/report.html", models=models)
    """
    figures, notes = _figures(results, sessions, models, figures_dir)
    if results.get("recovery") or results.get("power"):
        from .figures import figure_to_data_uri, simulation_figure

        figures["simulation"] = figure_to_data_uri(
            simulation_figure(results.get("recovery"), results.get("power"))
        )
    if tables_dir is not None:
        write_tables(results, tables_dir)
    run_date = run_date or _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    html = _env().render(
        r=results, figures=figures, titles=FIGURES, notes=notes, run_date=run_date, tables=TABLES
    )
    out = Path(out_html)
    write_text_atomic(out, html)
    return out


# ---------------------------------------------------------------------- pdf


def _local_only(route) -> None:
    """Playwright route handler: let ``file:``/``data:`` through, abort anything else."""
    if route.request.url.startswith(("file:", "data:")):
        route.continue_()
    else:
        route.abort()


#: the page header of an internal report's PDF (Chromium's header template: inline style only)
INTERNAL_HEADER = (
    '<div style="width:100%;text-align:center;font-size:9px;font-weight:700;color:#b00020;'
    'font-family:sans-serif">INTERNAL REPORT: NOT FOR RELEASE. Must not leave the study team.</div>'
)


def _opened(text: str) -> str:
    """The page with every ``<details>`` open, for print.

    Examples
    --------
    >>> _opened('<details class="model"><summary>m</summary>x</details>')
    '<details open class="model"><summary>m</summary>x</details>'
    """
    return re.sub(r"<details(?![^>]*\bopen\b)", "<details open", text)


def render_pdf(html: str | Path, out_pdf: str | Path, *, chromium: str | None = None) -> Path:
    """Print ``html`` to ``out_pdf`` (A4) with headless Chromium, offline, scripts off.

    Uses Playwright's ``page.pdf`` when Playwright is installed (it drives the system's
    Chromium; it never downloads a browser), with JavaScript disabled and only ``file:``
    and ``data:`` URLs let through; else ``chromium --print-to-pdf`` on a copy of the page
    behind :data:`PRINT_POLICY` (no script, no request). Either way host names resolve to
    nothing: a report is printed as its text says, whatever a page might try to run or fetch.
    """
    chromium = chromium or find_chromium()
    html = Path(html).resolve()
    out = Path(out_pdf)
    with tempfile.TemporaryDirectory(prefix="ketastats-chromium-") as profile, atomic_path(out) as tmp:
        # the printed copy: the appendix's collapsed <details> open (a PDF has no clicks);
        # every image is a data: URI, so the copy needs nothing beside it
        printed = Path(profile) / "print.html"
        text = _opened(html.read_text(encoding="utf-8"))
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            page = printed
            page.write_text(_with_print_policy(text), encoding="utf-8")
            cmd = [
                chromium,
                *CHROMIUM_ARGS,
                *PDF_OFFLINE_ARGS,
                f"--user-data-dir={profile}/chromium",
                "--no-pdf-header-footer",
                f"--print-to-pdf={tmp}",
                page.as_uri(),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
            if proc.returncode != 0 or not Path(tmp).exists() or Path(tmp).stat().st_size == 0:
                raise KetastatsError(
                    f"chromium could not print {html} to PDF: {proc.stderr[-2000:]}"
                ) from None
        else:
            with sync_playwright() as p:
                browser = p.chromium.launch(
                    executable_path=chromium,
                    # Playwright makes its own fresh profile (and adds --headless itself)
                    args=[a for a in (*CHROMIUM_ARGS, *PDF_OFFLINE_ARGS) if a != "--headless"],
                )
                try:
                    printed.write_text(text, encoding="utf-8")
                    page = browser.new_page(java_script_enabled=False)
                    page.route("**/*", _local_only)
                    page.goto(printed.as_uri(), wait_until="load")
                    internal = 'class="every-page"' in text
                    page.pdf(
                        path=str(tmp),
                        format="A4",
                        print_background=True,
                        margin={"top": "14mm" if internal else "12mm", "bottom": "12mm", "left": "10mm", "right": "10mm"},
                        # an internal report's banner in the top margin of every page
                        display_header_footer=internal,
                        header_template=INTERNAL_HEADER if internal else "<span></span>",
                        footer_template="<span></span>",
                    )
                finally:
                    browser.close()
    return out
