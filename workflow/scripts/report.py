"""Rule report: results.json, report.html, figures (PNG, SVG) and tables (CSV)."""

import os
from pathlib import Path

from ketastats.pipeline import log_to, step_report

with log_to(snakemake.log[0]):  # noqa: F821 (injected by Snakemake)
    models = {os.path.splitext(os.path.basename(p))[0]: p for p in snakemake.input.models}  # noqa: F821
    html = Path(snakemake.output.html)  # noqa: F821
    step_report(
        snakemake.wildcards.cohort,  # noqa: F821
        snakemake.config,  # noqa: F821
        sessions=snakemake.input.sessions,  # noqa: F821
        input_json=snakemake.input.info,  # noqa: F821
        model_jsons=models,
        out_results=snakemake.output.results,  # noqa: F821
        out_html=html,
        figures_dir=html.parent / "figures",
        tables_dir=html.parent / "tables",
        recovery_json=snakemake.input.get("recovery"),  # noqa: F821
        power_json=snakemake.input.get("power"),  # noqa: F821
        command=os.environ.get("KETASTATS_COMMAND"),
    )
