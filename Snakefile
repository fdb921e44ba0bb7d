# ketastats workflow: raw session records -> validated data -> mixed models -> report.
# Run: snakemake --cores 2        (config: config/config.yaml, checked by config/schema.yaml)
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/validate.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/recovery.smk"
include: "workflow/rules/notebooks.smk"


rule all:
    input:
        all_outputs(),
    default_target: True
