# Derived variables (baseline, change, response/remission, within/between illness, lags).
rule prepare:
    input:
        "data/processed/{cohort}/validated.parquet",
    output:
        "data/processed/{cohort}/sessions.parquet",
    log:
        "logs/{cohort}/prepare.log",
    conda:
        "../envs/ketastats.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, input: 1000 + 200 * int(input.size_mb),
        runtime=20,
    script:
        "../scripts/prepare.py"
