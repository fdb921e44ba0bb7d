"""Rule report_pdf: print report.html to PDF with headless Chromium."""

from ketastats.pipeline import log_to
from ketastats.report import render_pdf

with log_to(snakemake.log[0]):  # noqa: F821 (injected by Snakemake)
    render_pdf(snakemake.input[0], snakemake.output[0])  # noqa: F821
