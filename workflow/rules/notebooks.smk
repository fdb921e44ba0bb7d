# Analyst notebooks (notebooks/NN_*.ipynb), executed for each cohort with papermill: the
# executed copies and their self-contained HTML exports go to reports/<cohort>/notebooks/.
# A failing cell fails the job with that cell's error; the executed notebook with the
# traceback is kept at logs/<cohort>/notebooks/<notebook>.failed.ipynb.
# The Jupyter stack is the 'notebooks' extra (pip install -e ".[notebooks]"; dev includes it): without
# it the default target leaves the notebooks out and this rule fails saying what to install.
import glob
import re

NOTEBOOKS = sorted(os.path.basename(p)[: -len(".ipynb")] for p in glob.glob("notebooks/[0-9]*.ipynb"))


rule notebook:
    input:
        notebook="notebooks/{notebook}.ipynb",
        sessions="data/processed/{cohort}/sessions.parquet",
        models=expand("data/processed/{{cohort}}/models/{model}.json", model=MODELS),
    output:
        ipynb="reports/{cohort}/notebooks/{notebook}.ipynb",
        html="reports/{cohort}/notebooks/{notebook}.html",
    params:
        failed="logs/{cohort}/notebooks/{notebook}.failed.ipynb",
    log:
        "logs/{cohort}/notebook_{notebook}.log",
    wildcard_constraints:
        notebook="|".join(re.escape(n) for n in NOTEBOOKS) or "^$",
    conda:
        "../envs/ketastats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    script:
        "../scripts/execute_notebook.py"
