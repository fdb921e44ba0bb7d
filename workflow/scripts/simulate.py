"""Rule simulate: generate a synthetic cohort's raw input."""

from ketastats.pipeline import log_to, step_simulate

with log_to(snakemake.log[0]):  # noqa: F821 (injected by Snakemake)
    step_simulate(snakemake.params.cohort)  # noqa: F821
