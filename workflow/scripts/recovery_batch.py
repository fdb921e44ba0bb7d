"""Rule recovery_batch: one batch of a recovery study's replicates."""

from ketastats.pipeline import log_to, step_recovery_batch

with log_to(snakemake.log[0]):  # noqa: F821 (injected by Snakemake)
    step_recovery_batch(
        snakemake.params.study,  # noqa: F821
        snakemake.params.spec,  # noqa: F821
        int(snakemake.wildcards.batch),  # noqa: F821
        snakemake.output[0],  # noqa: F821
        estimands=snakemake.params.estimands,  # noqa: F821
    )
