# One job per model specification (config models.<name>) and cohort.
rule fit_model:
    input:
        "data/processed/{cohort}/sessions.parquet",
    output:
        "data/processed/{cohort}/models/{model}.json",
    params:
        spec=lambda wc: config["models"][wc.model],
        alpha=1 - config["report"]["confidence_level"],
    log:
        "logs/{cohort}/fit_{model}.log",
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    script:
        "../scripts/fit_model.py"
