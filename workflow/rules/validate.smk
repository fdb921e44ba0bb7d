# First rule: read the raw export, check everything (all problems at once, identifier
# guard), record its checksum. Writes the typed table only when the input passes.
rule validate:
    input:
        raw=cohort_input,
        extra=cohort_extra_inputs,
    output:
        table="data/processed/{cohort}/validated.parquet",
        info="data/processed/{cohort}/input.json",
    params:
        cohort=lambda wc: config["cohorts"][wc.cohort],
        sha256=cohort_checksums,
    log:
        log="logs/{cohort}/validate.log",
        problems="logs/{cohort}/validation_problems.csv",
    conda:
        "../envs/ketastats.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, input: 1000 + 60 * int(input.size_mb),
        runtime=20,
    script:
        "../scripts/validate.py"
