# Recovery studies (config recovery.<cohort>): replicates scattered over batch jobs, so a
# cluster runs them in parallel; the summary goes into that cohort's report.
# Helpers (recovery_batches) are in common.smk.
RECOVERY = config.get("recovery", {})


rule recovery_batch:
    output:
        "data/processed/{cohort}/recovery/batch_{batch}.csv",
    params:
        study=lambda wc: RECOVERY[wc.cohort],
        spec=lambda wc: model_spec(config, wc.cohort, RECOVERY[wc.cohort]["model"]),
        estimands=lambda wc: cohort_estimands(config, wc.cohort),
    log:
        "logs/{cohort}/recovery_batch_{batch}.log",
    wildcard_constraints:
        batch=r"\d+",
    conda:
        "../envs/ketastats.yaml"
    threads: 1
    resources:
        mem_mb=1500,
        runtime=60,
    script:
        "../scripts/recovery_batch.py"


rule recovery_summary:
    input:
        lambda wc: expand(
            "data/processed/{cohort}/recovery/batch_{batch}.csv",
            cohort=wc.cohort,
            batch=recovery_batches(wc.cohort),
        ),
    output:
        replicates="reports/{cohort}/recovery/replicates.csv",
        summary="reports/{cohort}/recovery/summary.json",
        table="reports/{cohort}/recovery/summary.csv",
    log:
        "logs/{cohort}/recovery_summary.log",
    conda:
        "../envs/ketastats.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/recovery_summary.py"
