# Synthetic cohorts (config cohorts.<name>.simulate): generated when their input is absent.
if SIMULATED:

    rule simulate:
        output:
            sessions="data/raw/{cohort}/sessions.csv",
            truth="data/raw/{cohort}/truth.json",
        params:
            cohort=lambda wc: config["cohorts"][wc.cohort],
        log:
            "logs/{cohort}/simulate.log",
        wildcard_constraints:
            cohort="|".join(SIMULATED),
        conda:
            "../envs/ketastats.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        script:
            "../scripts/simulate.py"
