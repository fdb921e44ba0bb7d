"""Rule validate: check the raw input; write the typed table only if it passes."""

from ketastats.pipeline import log_to, step_validate

with log_to(snakemake.log.log):  # noqa: F821 (injected by Snakemake)
    step_validate(
        snakemake.wildcards.cohort,  # noqa: F821
        snakemake.params.cohort,  # noqa: F821
        out_table=snakemake.output.table,  # noqa: F821
        out_input=snakemake.output.info,  # noqa: F821
        problems_csv=snakemake.log.problems,  # noqa: F821
    )
