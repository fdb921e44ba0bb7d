# One job per model specification (config models.<name>) and cohort. The spec is resolved for
# the cohort (project spec + cohorts.<cohort>.models.<name> overrides) by ketastats.config, as
# the command line does; a model switched off for a cohort still writes its JSON (status skipped).
from ketastats.config import cohort_estimands, model_spec


rule fit_model:
    input:
        "data/processed/{cohort}/sessions.parquet",
    output:
        "data/processed/{cohort}/models/{model}.json",
    params:
        spec=lambda wc: model_spec(config, wc.cohort, wc.model),
        estimands=lambda wc: cohort_estimands(config, wc.cohort),
        alpha=1 - config["report"]["confidence_level"],
    log:
        "logs/{cohort}/fit_{model}.log",
    conda:
        "../envs/ketastats.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, input: 1500 + 300 * int(input.size_mb),
        runtime=60,
    script:
        "../scripts/fit_model.py"
