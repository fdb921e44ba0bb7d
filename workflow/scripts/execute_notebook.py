"""Rule notebook: execute one analyst notebook for one cohort; keep it and its HTML export."""

from ketastats.notebooks import run_notebook
from ketastats.pipeline import log_to

with log_to(snakemake.log[0]):  # noqa: F821 (injected by Snakemake)
    run_notebook(
        snakemake.input.notebook,  # noqa: F821
        snakemake.output.ipynb,  # noqa: F821
        snakemake.output.html,  # noqa: F821
        # the kernel runs in the project folder, so root="." finds the cohort's files
        parameters={"cohort": snakemake.wildcards.cohort, "root": "."},  # noqa: F821
        failed_copy=snakemake.params.failed,  # noqa: F821
    )
