# Shared helpers: config check, cohort lists, input functions.
import os
import shlex
import sys

from ketastats.config import check_config

# The config is checked against config/schema.yaml (and cross-field rules) before any job
# runs; every problem is listed with the key that has it.
config.update(check_config(config, source="config/config.yaml"))

COHORTS = sorted(config["cohorts"])
MODELS = sorted(config["models"])
SIMULATED = sorted(
    name
    for name, c in config["cohorts"].items()
    if c.get("simulate") and c["input"] == f"data/raw/{name}/sessions.csv"
)

# The command line goes to the report's provenance section through the environment, not
# through params, so that a different command (--cores, --profile) does not force a rerun.
os.environ.setdefault("KETASTATS_COMMAND", shlex.join(["snakemake", *sys.argv[1:]]))


wildcard_constraints:
    cohort="|".join(COHORTS) or "^$",
    model="|".join(MODELS) or "^$",


def cohort_input(wildcards):
    return config["cohorts"][wildcards.cohort]["input"]


def cohort_extra_inputs(wildcards):
    c = config["cohorts"][wildcards.cohort]
    return [c["redcap_dictionary"]] if c.get("redcap_dictionary") else []


def cohort_checksums(wildcards):
    """SHA-256 of each raw input file of the cohort, as a param of the rule that reads them.

    Snakemake reruns a job whose params changed, so a raw file replaced by another with an
    older time stamp (``cp -p``, unzip, a restored backup) still reruns validate and all
    that follows; time stamps alone would miss it. (A param function must take only
    ``wildcards``: Snakemake leaves functions of ``input`` out of its params check.) A file
    that does not exist yet (a simulated cohort before its first run) is "absent": its job
    runs anyway, because its output is missing.
    """
    from ketastats.io import input_checksum

    paths = [cohort_input(wildcards), *cohort_extra_inputs(wildcards)]
    return {path: input_checksum(path) for path in paths}


def available(check, what):
    """Whether ``check()`` passes; if not, say on stderr that ``what`` is left out, and why."""
    from ketastats.exceptions import KetastatsError

    try:
        check()
    except KetastatsError as exc:
        print(f"ketastats: skipping {what} ({exc})", file=sys.stderr)
        return False
    return True


def want_pdf():
    """report.pdf when config report.pdf is true, or auto and Chromium is installed."""
    from ketastats.report import find_chromium

    setting = config["report"]["pdf"]
    return bool(setting) if setting != "auto" else available(find_chromium, "report.pdf")


def want_notebooks():
    """The executed notebooks when the 'notebooks' extra (papermill, nbconvert...) is installed;
    asked for explicitly without it, the notebook rule fails saying what to install."""
    from ketastats.notebooks import require_notebook_packages

    return available(require_notebook_packages, "the notebooks")


def all_outputs():
    finals = ["reports/{cohort}/results.json", "reports/{cohort}/report.html"]
    if want_pdf():
        finals.append("reports/{cohort}/report.pdf")
    out = expand(finals, cohort=COHORTS)
    out += expand("reports/{cohort}/recovery/summary.json", cohort=sorted(config.get("recovery", {})))
    if want_notebooks():
        out += expand(
            "reports/{cohort}/notebooks/{nb}.{ext}", cohort=COHORTS, nb=NOTEBOOKS, ext=["ipynb", "html"]
        )
    return out


def recovery_batches(cohort):
    """Batch numbers of cohort's recovery study (config recovery.<cohort>): replicates / batch_size, rounded up."""
    r = config["recovery"][cohort]
    return list(range(-(-int(r["replicates"]) // int(r["batch_size"]))))


def report_extras(wildcards):
    """Simulation summaries shown in the report: those the config asks for for this cohort
    (config ``recovery.<cohort>``, ``power.<cohort>``), and any that already exist."""
    out = {}
    for kind in ("recovery", "power"):
        path = f"reports/{wildcards.cohort}/{kind}/summary.json"
        if wildcards.cohort in (config.get(kind) or {}) or os.path.exists(path):
            out[kind] = path
    return out


onerror:
    # keep-going (profiles/default) has let every other branch finish: say where each cohort stands
    from ketastats.pipeline import run_summary

    print(run_summary(COHORTS), file=sys.stderr)
