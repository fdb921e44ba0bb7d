"""Rule recovery_summary: combine the batches and summarize."""

from ketastats.pipeline import log_to, step_recovery_summary

with log_to(snakemake.log[0]):  # noqa: F821 (injected by Snakemake)
    step_recovery_summary(list(snakemake.input), snakemake.output.replicates)  # noqa: F821
