"""The report in headless Chromium: loads offline, no console errors, every image decodes,
every section present; a screenshot is kept in tests/artifacts/. And its PDF print."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pytest
import report_cohort as rc
from test_report_results import SECTIONS

from ketastats.report import find_chromium, render_pdf
from ketastats.report.render import CHROMIUM_ARGS

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@pytest.fixture(scope="module")
def page_report():
    from playwright.sync_api import sync_playwright

    rep = rc.rendered()
    html = rep["dir"] / "report.html"
    console, errors, requests = [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=find_chromium(), args=[a for a in CHROMIUM_ARGS if a != "--headless"]
        )
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda m: console.append((m.type, m.text)))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(html.as_uri(), wait_until="load")
            images = page.eval_on_selector_all(
                "img",
                "els => els.map(e => ({alt: e.alt, ok: e.complete && e.naturalWidth > 0, w: e.naturalWidth}))",
            )
            present = {sid: page.locator(f"#{sid}").count() == 1 for sid in SECTIONS}
            visible_text = page.inner_text("body")
            ARTIFACTS.mkdir(exist_ok=True)
            shot = ARTIFACTS / "report_synth.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    return {
        "console": console,
        "errors": errors,
        "requests": requests,
        "images": images,
        "present": present,
        "text": visible_text,
        "shot": shot,
        "rep": rep,
    }


def test_no_console_errors_and_no_network(page_report):
    assert page_report["errors"] == []
    assert [m for m in page_report["console"] if m[0] in ("error", "warning")] == []
    assert page_report["requests"], "the page load was not observed"
    for url in page_report["requests"]:
        assert url.startswith(("file:", "data:")), url


def test_every_image_decodes(page_report):
    imgs = page_report["images"]
    assert len(imgs) >= 8
    assert all(i["ok"] for i in imgs), [i["alt"] for i in imgs if not i["ok"]]


def test_every_section_is_present_and_the_screenshot_saved(page_report):
    assert all(page_report["present"].values()), page_report["present"]
    shot = page_report["shot"]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    text = page_report["text"]
    for heading in ("Summary of findings", "Table 1", "Diagnostics", "Methods", "Suppression", "Provenance"):
        assert heading in text


def test_no_small_count_is_visible_on_the_page(page_report):
    # every number printed before a "patients"/"sessions" word is 0 or above the threshold
    for m in re.finditer(r"\b(\d+) (?:of \d+ )?(?:patients|sessions|session records)\b", page_report["text"]):
        n = int(m.group(1))
        assert n == 0 or n > 10, m.group(0)


def test_pdf_print_of_the_report(tmp_path):
    rep = rc.rendered()
    pdf = render_pdf(rep["dir"] / "report.html", tmp_path / "report.pdf")
    data = pdf.read_bytes()
    assert data[:5] == b"%PDF-"
    pages = len(re.findall(rb"/Type\s*/Page[^s]", data))
    assert pages >= 5, pages  # a dozen sections with figures cannot fit on fewer pages


def test_pdf_through_the_chromium_command_line(tmp_path, monkeypatch):
    """Without Playwright, the PDF is printed by ``chromium --print-to-pdf``."""
    import builtins

    real_import = builtins.__import__

    def no_playwright(name, *args, **kwargs):
        if name.startswith("playwright"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    html = tmp_path / "small.html"
    html.write_text("<!DOCTYPE html><html><body><h1>ketastats</h1></body></html>")
    monkeypatch.setattr(builtins, "__import__", no_playwright)
    pdf = render_pdf(html, tmp_path / "small.pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-"


def test_missing_chromium_is_named(monkeypatch):
    from ketastats.exceptions import KetastatsError

    monkeypatch.delenv("KETASTATS_CHROMIUM", raising=False)
    monkeypatch.setenv("PATH", tempfile.gettempdir())
    assert shutil.which("chromium") is None
    with pytest.raises(KetastatsError, match="apt-get install chromium"):
        find_chromium()


# ------------------------------------------------------------------ layout
#: A4 at 96 px/inch less the PDF's 10 mm side margins: the width a printed page lays out to
PRINT_WIDTH_PX = round((210 - 20) / 25.4 * 96)


def layout_of(html: Path, name: str) -> dict:
    """Page widths at 1280 and 800 px windows and in print layout; first-screen screenshots."""
    from playwright.sync_api import sync_playwright

    out = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=find_chromium(), args=[a for a in CHROMIUM_ARGS if a != "--headless"]
        )
        try:
            for width in (1280, 800):
                page = browser.new_page(viewport={"width": width, "height": 900})
                page.goto(html.as_uri(), wait_until="load")
                out[width] = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / f"report_{name}_first_screen_{width}.png"))
                page.close()
            page = browser.new_page(viewport={"width": PRINT_WIDTH_PX, "height": 1100})
            page.emulate_media(media="print")
            page.goto(html.as_uri(), wait_until="load")
            # the widest right edge of any element, against the printable width
            out["print"] = page.evaluate(
                "[Math.max(...Array.from(document.querySelectorAll('body *')).map(e => e.getBoundingClientRect().right)),"
                " window.innerWidth]"
            )
        finally:
            browser.close()
    return out


def assert_layout_holds(html: Path, name: str) -> None:
    got = layout_of(html, name)
    for width in (1280, 800):
        scroll, inner = got[width]
        assert scroll <= inner, f"horizontal overflow at {width} px: page is {scroll} px wide"
        shot = ARTIFACTS / f"report_{name}_first_screen_{width}.png"
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    right, inner = got["print"]
    assert right <= inner + 0.5, f"in print, an element reaches {right:.0f} px of {inner} px: it would be clipped"


def assert_pdf_pages_inside_margins(pdf: Path, tmp: Path) -> int:
    """Every page image of the PDF has content, and nothing in its 10 mm side margins."""
    import subprocess

    import numpy as np
    from PIL import Image

    subprocess.run(["pdftoppm", "-r", "40", "-png", str(pdf), str(tmp / "page")], check=True)
    pages = sorted(tmp.glob("page-*.png"))
    assert pages
    for page in pages:
        img = np.asarray(Image.open(page).convert("L"), dtype=int)
        margin = int(img.shape[1] * 9 / 210)  # a little inside the 10 mm margin
        assert (img < 250).any(), f"{page.name} is blank"
        for side in (img[:, :margin], img[:, -margin:]):
            assert (side >= 250).all(), f"{page.name}: something is drawn in the side margin"
    return len(pages)


def test_layout_holds_at_1280_and_800_px_and_on_a4(tmp_path):
    rep = rc.rendered()
    assert_layout_holds(rep["dir"] / "report.html", "synth")
    pdf = render_pdf(rep["dir"] / "report.html", tmp_path / "report.pdf")
    assert assert_pdf_pages_inside_margins(pdf, tmp_path) >= 5


@pytest.mark.workflow
def test_layout_of_the_demo_report_holds(demo_run, tmp_path):
    """The tiny demo run's report has every kind of model, the sensitivity table and the appendix."""
    html = demo_run / "reports" / "demo" / "report.html"
    text = html.read_text()
    assert 'id="sensitivity"' in text and "<details" in text
    assert_layout_holds(html, "demo")
    pdf = render_pdf(html, tmp_path / "report.pdf")
    assert assert_pdf_pages_inside_margins(pdf, tmp_path) >= 8


def test_an_internal_report_says_so_on_every_printed_page(tmp_path):
    """``report.disclosure: internal`` (exact counts) prints its banner on every PDF page."""
    import subprocess

    b = rc.built()
    out = tmp_path / "internal"
    from ketastats.pipeline import step_report

    cfg = {**rc.CONFIG, "report": {"small_cell_threshold": 0, "disclosure": "internal", "confidence_level": 0.95}}
    out.mkdir()
    step_report("synth", cfg, sessions=b["sessions"], input_json=b["input"], model_jsons=b["models"],
                out_results=out / "results.json", out_html=out / "report.html", root=b["root"], command="pytest",
                figures_dir=out / "figures", tables_dir=out / "tables", out_pdf=out / "report.pdf",
                run_date="2026-01-01 00:00 UTC")
    text = subprocess.run(["pdftotext", "-layout", str(out / "report.pdf"), "-"], capture_output=True, text=True,
                          check=True).stdout
    pages = [pg for pg in text.split("\f") if pg.strip()]
    assert len(pages) >= 5
    assert all("INTERNAL REPORT: NOT FOR RELEASE" in pg for pg in pages)
    public = subprocess.run(["pdftotext", str(render_pdf(rc.rendered()["dir"] / "report.html", tmp_path / "p.pdf")),
                             "-"], capture_output=True, text=True, check=True).stdout
    assert "NOT FOR RELEASE" not in public
