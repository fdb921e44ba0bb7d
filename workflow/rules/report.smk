# results.json (every number the report shows) and the self-contained report.html.
rule report:
    input:
        sessions="data/processed/{cohort}/sessions.parquet",
        info="data/processed/{cohort}/input.json",
        models=expand("data/processed/{{cohort}}/models/{model}.json", model=MODELS),
    output:
        results="reports/{cohort}/results.json",
        html="reports/{cohort}/report.html",
    log:
        "logs/{cohort}/report.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    script:
        "../scripts/report.py"
