"""Rule prepare: derive the analysis variables."""

from ketastats.pipeline import log_to, step_prepare

with log_to(snakemake.log[0]):  # noqa: F821 (injected by Snakemake)
    step_prepare(snakemake.input[0], snakemake.output[0])  # noqa: F821
