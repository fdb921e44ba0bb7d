"""Rule fit_model: fit one model specification to one cohort."""

from ketastats.pipeline import log_to, step_fit

with log_to(snakemake.log[0]):  # noqa: F821 (injected by Snakemake)
    step_fit(
        snakemake.input[0],  # noqa: F821
        snakemake.params.spec,  # noqa: F821
        snakemake.output[0],  # noqa: F821
        alpha=snakemake.params.alpha,  # noqa: F821
        name=snakemake.wildcards.model,  # noqa: F821
        estimands=snakemake.params.estimands,  # noqa: F821
    )
