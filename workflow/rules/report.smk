# The reviewer's report: results.json (every number, small cells suppressed), report.html
# (self-contained), figures (PNG + SVG) and tables (CSV) for papers, and a PDF print.
# Outputs marked with report() appear in Snakemake's own report:
#   snakemake --report reports/<cohort>/workflow_report.zip
# Input function report_extras is in common.smk.
from ketastats.report import FIGURES, TABLES


rule report:
    input:
        unpack(report_extras),
        sessions="data/processed/{cohort}/sessions.parquet",
        info="data/processed/{cohort}/input.json",
        models=expand("data/processed/{{cohort}}/models/{model}.json", model=MODELS),
    output:
        results=report(
            "reports/{cohort}/results.json",
            caption="../report/results_json.rst",
            category="1. Report",
            labels={"cohort": "{cohort}", "file": "results.json"},
        ),
        html=report(
            "reports/{cohort}/report.html",
            caption="../report/report_html.rst",
            category="1. Report",
            labels={"cohort": "{cohort}", "file": "report.html"},
        ),
        **{
            f"png_{name}": report(
                f"reports/{{cohort}}/figures/{name}.png",
                caption=f"../report/figure_{name}.rst",
                category="2. Figures",
                subcategory="{cohort}",
                labels={"cohort": "{cohort}", "figure": title.split(":")[0]},
            )
            for name, title in FIGURES.items()
        },
        **{f"svg_{name}": f"reports/{{cohort}}/figures/{name}.svg" for name in FIGURES},
        **{
            f"csv_{name}": report(
                f"reports/{{cohort}}/tables/{name}.csv",
                caption=f"../report/table_{name}.rst",
                category="3. Tables",
                subcategory="{cohort}",
                labels={"cohort": "{cohort}", "table": name},
            )
            for name in TABLES
        },
    params:
        # the disclosure settings shape every count of the report: a change reruns it
        small_cell_threshold=config["report"]["small_cell_threshold"],
        disclosure=config["report"]["disclosure"],
        confidence_level=config["report"]["confidence_level"],
        # the instrument names, thresholds and axes of every sentence and figure
        outcome=lambda wc: config["cohorts"][wc.cohort].get("outcome", "madrs"),
        schedule_unit=lambda wc: config["cohorts"][wc.cohort].get("schedule_unit", "infusion"),
    log:
        "logs/{cohort}/report.log",
    conda:
        "../envs/ketastats.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, input: 1500 + 200 * int(input.size_mb),
        runtime=20,
    script:
        "../scripts/report.py"


# The same report as PDF, printed by headless Chromium (Debian's chromium package).
rule report_pdf:
    input:
        "reports/{cohort}/report.html",
    output:
        report(
            "reports/{cohort}/report.pdf",
            caption="../report/report_pdf.rst",
            category="1. Report",
            labels={"cohort": "{cohort}", "file": "report.pdf"},
        ),
    log:
        "logs/{cohort}/report_pdf.log",
    conda:
        "../envs/ketastats.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/report_pdf.py"
