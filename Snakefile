# ketastats workflow: raw session records -> validated data -> mixed models -> report.
# Run: snakemake --cores 2        (config: config/config.yaml, checked by config/schema.yaml)
from snakemake.utils import min_version

min_version("9.0")

# Config is data. Snakemake's own loader keeps the last of two equal keys, follows alias
# bombs, and evaluates Python written in a file that sets __use_yte__ (YTE templating); so
# every config file is first read here as ketastats reads it, and refused on any of these,
# before the configfile: line below hands it to Snakemake. Files given with --configfile
# are read by Snakemake before this Snakefile runs (see "Config is data" in README.md).
from ketastats.config import check_config_files

check_config_files(["config/config.yaml", *workflow.overwrite_configfiles])


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
