"""The ``ketastats`` command: argument parsing and calls into the package, nothing more."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .exceptions import ConfigError, KetastatsError

log = logging.getLogger("ketastats")

EPILOG = """\
Typical use: run the whole workflow with `snakemake --cores 2` (see README.md); the
subcommands below are its steps, for use on their own or from scripts.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ketastats",
        description="Illness effects on IV ketamine outcomes: simulate, validate, fit, report.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    p.add_argument("-v", "--verbose", action="store_true", help="log debugging detail")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("simulate", help="generate a synthetic cohort with known truth")
    s.add_argument("--patients", type=int, default=200, help="number of patients (default 200)")
    s.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    s.add_argument("--scenario", default="sickness", help="true-effect scenario (default sickness)")
    s.add_argument("--params", type=Path, help="YAML file overriding generator parameters")
    s.add_argument("--out", type=Path, required=True, help="output folder (sessions.csv, truth.json)")

    v = sub.add_parser("validate", help="check a session file against the data contract")
    v.add_argument("file", type=Path, help="CSV, TSV, Parquet, Excel or REDCap export")
    v.add_argument("--config", type=Path, help="config file holding the cohort's column mapping")
    v.add_argument("--cohort", help="cohort name in --config")
    v.add_argument("--problems", type=Path, help="write the problems table to this CSV")

    f = sub.add_parser(
        "fit",
        help="fit a linear mixed model to a long-format CSV or Parquet file",
        description="Fit a linear mixed model (random effects for one grouping column). "
        "Rows with a missing outcome, predictor or group are dropped.",
    )
    f.add_argument("data", type=Path, help="long-format CSV or Parquet file")
    f.add_argument("--formula", required=True, help='fixed effects, patsy syntax: "y ~ x1 + x2"')
    f.add_argument("--group", required=True, help="grouping column (e.g. patient id)")
    f.add_argument(
        "--re", dest="re_formula", default=None, help='random effects, e.g. "~x1" (default: intercept)'
    )
    f.add_argument("--ml", action="store_true", help="maximum likelihood instead of REML")
    f.add_argument("--engine", choices=["auto", "fast", "statsmodels"], default="auto")
    f.add_argument(
        "--df",
        dest="df_method",
        choices=["satterthwaite", "kenward_roger", "normal"],
        default="satterthwaite",
        help="degrees of freedom of the fixed effects (default satterthwaite, as lmerTest and SAS; "
        "kenward_roger: with --mmrm, Kenward-Roger adjusted covariance and df)",
    )
    f.add_argument(
        "--mmrm",
        metavar="VISIT_COLUMN",
        default=None,
        help="fit a mixed model for repeated measures instead: a covariance across the levels of this "
        "column per --group (no random effects; SAS PROC MIXED's REPEATED statement)",
    )
    f.add_argument(
        "--covariance",
        choices=["us", "cs", "csh", "ar1", "ar1h", "toeph", "adh"],
        default="us",
        help="with --mmrm: covariance structure across visits (default us, unstructured)",
    )
    f.add_argument("--covariance-group", default=None, help="with --mmrm: one covariance per level of this column")
    f.add_argument(
        "--se",
        choices=["model", "empirical"],
        default="model",
        help="with --mmrm: model-based or empirical (sandwich) standard errors",
    )
    f.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="COL=LEVEL",
        help="reference level of a categorical column (repeatable), e.g. treatment=TAU",
    )
    f.add_argument("--json", dest="json_out", type=Path, required=True, help="write results as JSON here")

    rc = sub.add_parser("recovery", help="recovery study: fit the primary model to simulated cohorts")
    rc.add_argument("--scenario", default="sickness", help="simulation scenario (default sickness)")
    rc.add_argument("--replicates", type=int, default=100, help="number of simulated cohorts")
    rc.add_argument("--patients", type=int, default=200, help="patients per cohort")
    rc.add_argument("--seed", type=int, default=0)
    rc.add_argument("--config", type=Path, help="take the model spec from this config (default: built-in)")
    rc.add_argument(
        "--model",
        default="primary",
        help="model name in --config (default primary); a model of kind decision (or 'decision' without "
        "--config) runs the decision estimators' recovery (use --scenario decisions)",
    )
    rc.add_argument("--alpha", type=float, default=0.05)
    rc.add_argument(
        "--se",
        choices=("model", "robust", "bias_reduced", "cr2"),
        help="standard errors of a kind-lmm model: model-based, or cluster-robust over patients "
        "(default: the model spec's own; cr2, the CR2 sandwich with its df, for the built-in primary model)",
    )
    rc.add_argument(
        "--variants",
        nargs="+",
        help="kind decision: the estimators (and misspecified variants) to score, e.g. aipw "
        "(default: every one of ketastats.decisions.recovery.VARIANTS)",
    )
    rc.add_argument("--out", type=Path, required=True, help="output folder")

    pw = sub.add_parser("power", help="power by simulation over a grid of cohort sizes")
    pw.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200, 400])
    pw.add_argument("--effect", type=float, help="true within-person illness effect, MADRS points")
    pw.add_argument("--scenario", default="sickness")
    pw.add_argument("--replicates", type=int, default=100)
    pw.add_argument("--seed", type=int, default=0)
    pw.add_argument("--config", type=Path)
    pw.add_argument("--model", default="primary")
    pw.add_argument("--alpha", type=float, default=0.05)
    pw.add_argument("--out", type=Path, required=True)

    r = sub.add_parser("report", help="render results.json and report.html for a cohort already run")
    r.add_argument("--cohort", required=True)
    r.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    r.add_argument("--root", type=Path, default=Path("."), help="project folder (default: here)")
    r.add_argument("--pdf", action="store_true", help="also print report.pdf (needs Chromium)")

    sub.add_parser(
        "config-doc",
        help="print the configuration reference (config/README.md) made from the config schema",
        description="Print config/README.md, generated from the config schema's descriptions: "
        "ketastats config-doc > config/README.md",
    )
    return p


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("ketastats")
    except metadata.PackageNotFoundError:
        return "unknown"


# ----------------------------------------------------------------- commands
def cmd_simulate(a: argparse.Namespace) -> int:
    from .simulate import load_params, simulate_cohort, write_cohort

    overrides = load_params(a.params) if a.params else None
    cohort = simulate_cohort(a.patients, seed=a.seed, scenario=a.scenario, overrides=overrides)
    paths = write_cohort(cohort, a.out)
    for kind, path in paths.items():
        log.info("wrote %s: %s", kind, path)
    return 0


def cmd_validate(a: argparse.Namespace) -> int:
    from .config import cohort_config, load_config
    from .validate import validate_file

    cohort = None
    if a.config or a.cohort:
        if not (a.config and a.cohort):
            raise KetastatsError("give both --config and --cohort, or neither")
        cohort = cohort_config(load_config(a.config), a.cohort)
    report = validate_file(a.file, cohort, problems_csv=a.problems)
    print(report.format_text())
    return 0 if report.ok else 1


def _parse_refs(items: Sequence[str]) -> dict[str, str]:
    refs = {}
    for item in items:
        if "=" not in item:
            raise KetastatsError(f"--reference {item!r}: write it as COLUMN=LEVEL, e.g. treatment=TAU")
        col, level = item.split("=", 1)
        refs[col.strip()] = level.strip()
    return refs


def read_long(path: Path):
    """Read a long-format CSV or Parquet file for ``ketastats fit``.

    Raises
    ------
    KetastatsError
        If the file is missing, of another type, empty, unreadable as its type, or holds
        no data rows; the message names the file and what to do.
    """
    import pandas as pd

    if not path.exists():
        raise KetastatsError(f"data file {path} does not exist")
    if path.is_dir():
        raise KetastatsError(f"{path} is a folder; give the data file")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        kind, read = "Parquet", pd.read_parquet
    elif suffix in (".csv", ".txt", ".tsv"):
        kind = "TSV" if suffix == ".tsv" else "CSV"
        sep = "\t" if suffix == ".tsv" else ","
        read = lambda p: pd.read_csv(p, sep=sep)  # noqa: E731
    else:
        raise KetastatsError(f"{path}: unsupported file type {suffix!r}; use .csv, .tsv or .parquet")
    try:
        data = read(path)
    except pd.errors.EmptyDataError:
        raise KetastatsError(f"{path} is empty; it needs a header line and one row per observation") from None
    except UnicodeDecodeError as exc:
        raise KetastatsError(f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8 {kind}") from None
    except Exception as exc:  # the reader's own error on a damaged or mislabelled file
        raise KetastatsError(
            f"cannot read {path} as {kind} ({type(exc).__name__}: {str(exc)[:200]}); is it really a "
            f"{kind} file?"
        ) from None
    if data.empty:
        raise KetastatsError(f"{path} has a header but no data rows; nothing to fit")
    return data


def _fit_mmrm_cli(a: argparse.Namespace, data, t_read: float) -> int:
    from .models.engines.mmrm import fit_mmrm, mmrm_design
    from .models.kinds.mmrm import result_fields
    from .models.result import ModelResult
    from .outputs import write_json

    if a.re_formula is not None:
        raise KetastatsError("--mmrm models the covariance across visits; it takes no random effects (--re)")
    if a.df_method == "kenward_roger" and a.se == "empirical":
        raise KetastatsError("--df kenward_roger adjusts the model-based covariance; use it without --se empirical")
    t0 = time.perf_counter()
    refs = _parse_refs(a.reference)
    try:
        y, X, names, subj, visit, grp, rows = mmrm_design(
            data, a.formula, subject=a.group, visit=a.mmrm, group=a.covariance_group, references=refs,
            return_rows=True,
        )
        res = fit_mmrm(y, X, subj, visit, covariance=a.covariance, group=grp, reml=not a.ml, names=names)
        fields = result_fields(res, formula=a.formula, rows=rows, group=a.group, df_method=a.df_method, se_type=a.se)
    except KetastatsError as exc:
        raise KetastatsError(f"{a.data}: {exc}") from exc
    design = fields.pop("design")
    name = Path(a.json_out).stem
    spec = {
        "kind": "mmrm", "formula": a.formula, "group": a.group, "visit": a.mmrm, "covariance": a.covariance,
        "covariance_group": a.covariance_group, "method": "ML" if a.ml else "REML", "df_method": a.df_method,
        "se": a.se, "references": refs,
    }
    result = ModelResult.from_json(
        {"name": name, "kind": "mmrm", "label": name, "spec": spec,
         "status": "ok" if res.converged else "unreliable",
         "reason": None if res.converged else "the fit did not converge", **fields}
    )
    result.design = design
    result.extra["seconds"] = {"read": t_read, "fit": time.perf_counter() - t0}
    out = result.to_json()
    write_json(a.json_out, out)
    log.info(
        "MMRM %s (%s covariance): %d observations, %d patients, -2 log L %.4f, converged=%s -> %s",
        out["method"], a.covariance, out["nobs"], out["ngroups"], out["m2loglik"], out["converged"], a.json_out,
    )
    return 0


def cmd_fit(a: argparse.Namespace) -> int:
    from .models import design_matrices, fit_mixed
    from .models.engines.lmm import apply_references
    from .outputs import write_json

    t0 = time.perf_counter()
    data = read_long(a.data)
    t_read = time.perf_counter() - t0
    if a.mmrm is not None:
        return _fit_mmrm_cli(a, data, t_read)
    if a.df_method == "kenward_roger" or a.se != "model" or a.covariance_group or a.covariance != "us":
        raise KetastatsError("--df kenward_roger, --se, --covariance and --covariance-group need --mmrm VISIT_COLUMN")
    try:
        res = fit_mixed(
            data,
            a.formula,
            a.group,
            a.re_formula,
            reml=not a.ml,
            engine=a.engine,
            references=_parse_refs(a.reference),
            df_method=a.df_method,
        )
    except KetastatsError as exc:
        raise KetastatsError(f"{a.data}: {exc}") from exc
    refs = _parse_refs(a.reference)
    used = design_matrices(apply_references(data, refs), a.formula, a.group, a.re_formula)[-1]
    result = res.as_model_result(
        Path(a.json_out).stem,
        used,
        spec={
            "formula": a.formula, "re_formula": a.re_formula, "group": a.group, "method": "ML" if a.ml else "REML",
            "engine": a.engine, "df_method": a.df_method, "references": refs,
        },
    )
    result.extra["seconds"] = {"read": t_read, "fit": res.seconds_fit}
    out = result.to_json()
    write_json(a.json_out, out)
    log.info(
        "%s fit (%s engine): %d observations, %d groups, loglik %.4f, converged=%s -> %s",
        out["method"],
        out["engine"],
        out["nobs"],
        out["ngroups"],
        out["loglik"],
        out["converged"],
        a.json_out,
    )
    return 0


def cmd_report(a: argparse.Namespace) -> int:
    from .config import cohort_config, load_config
    from .pipeline import step_report

    config = load_config(a.config)
    cohort_config(config, a.cohort)
    proc = a.root / "data" / "processed" / a.cohort
    out = a.root / "reports" / a.cohort
    models = {name: proc / "models" / f"{name}.json" for name in config["models"]}
    missing = [
        str(p) for p in [proc / "sessions.parquet", proc / "input.json", *models.values()] if not p.exists()
    ]
    if missing:
        raise KetastatsError(
            f"cohort {a.cohort!r} has not been run yet (missing: {', '.join(missing)}); "
            "run `snakemake --cores 2` first"
        )
    step_report(
        a.cohort,
        config,
        sessions=proc / "sessions.parquet",
        input_json=proc / "input.json",
        model_jsons=models,
        out_results=out / "results.json",
        out_html=out / "report.html",
        root=a.root,
        command=shlex.join(["ketastats", *a.argv]),
        figures_dir=out / "figures",
        tables_dir=out / "tables",
        out_pdf=out / "report.pdf" if a.pdf else None,
    )
    log.info("wrote %s, %s, figures/ and tables/", out / "results.json", out / "report.html")
    return 0


def _spec_from(a: argparse.Namespace):
    if not a.config:
        return None
    from .config import load_config

    models = load_config(a.config)["models"]
    if a.model not in models:
        raise KetastatsError(f"model {a.model!r} is not in {a.config}; models: {', '.join(models)}")
    from .models import resolve_spec

    return resolve_spec(a.model, models[a.model])  # the simulator rates MADRS: the default instrument


def cmd_recovery(a: argparse.Namespace) -> int:
    from .recovery import default_spec, run_recovery, write_recovery

    spec = _spec_from(a)
    if spec is None and a.model.startswith("decision"):  # the built-in spec of kind decision
        from .models import resolve_spec

        spec = resolve_spec(a.model, {"kind": "decision"})
    if spec is not None and spec.get("kind") == "decision":
        return _decision_recovery(a, spec)
    if a.se:
        spec = dict(spec or default_spec())
        if spec["kind"] != "lmm":
            raise KetastatsError(f"--se is an option of kind lmm; model {a.model!r} is of kind {spec['kind']}")
        spec["se"] = a.se
    table, summary = run_recovery(a.scenario, a.replicates, a.patients, a.seed, spec=spec, alpha=a.alpha)
    paths = write_recovery(table, summary, a.out)
    log.info(
        "recovery %s: bias %.3f (MCSE %.3f; %.3f empirical SE), coverage %.3f (MCSE %.3f), "
        "rejection rate %.3f -> %s",
        a.scenario,
        summary["bias"],
        summary["bias_mcse"],
        summary["bias_over_emp_se"],
        summary["coverage"],
        summary["coverage_mcse"],
        summary["rejection_rate"],
        paths["summary_json"],
    )
    return 0


def _decision_recovery(a: argparse.Namespace, spec) -> int:
    """Recovery of the decision estimators (kind decision): every estimator, both decisions."""
    from .decisions.recovery import VARIANTS, run_decision_recovery, write_decision_recovery

    unknown = sorted(set(a.variants or ()) - set(VARIANTS))
    if unknown:
        raise ConfigError(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}.")
    table, summary = run_decision_recovery(a.scenario, a.replicates, a.patients, a.seed, spec, alpha=a.alpha,
                                           variants=a.variants)
    paths = write_decision_recovery(table, summary, a.out)
    for r in summary.itertuples():
        if r.replicates_with_estimate < 2:
            log.info("recovery %s %s %s %s: %d of %d replicates skipped (positivity)", a.scenario, r.decision,
                     r.outcome, r.variant, r.replicates_skipped, r.replicates)
            continue
        log.info(
            "recovery %s %s %s %s: bias %.3f (MCSE %.3f, %.2f emp SE), emp SE %.3f, mean SE %.3f, coverage %.3f; "
            "%d of %d replicates skipped (positivity)",
            a.scenario, r.decision, r.outcome, r.variant, r.bias, r.bias_mcse, r.bias_over_emp_se, r.emp_se,
            r.mean_se, r.coverage, r.replicates_skipped, r.replicates,
        )
    log.info("wrote %s", paths["summary_csv"])
    return 0


def cmd_power(a: argparse.Namespace) -> int:
    from .power import run_power, write_power

    table = run_power(
        a.sizes,
        a.replicates,
        effect=a.effect,
        scenario=a.scenario,
        seed=a.seed,
        spec=_spec_from(a),
        alpha=a.alpha,
    )
    paths = write_power(table, a.out, a.alpha)
    print(table.to_string(index=False))
    log.info("wrote %s", ", ".join(map(str, paths.values())))
    return 0


def cmd_config_doc(a: argparse.Namespace) -> int:
    from .configdoc import schema_markdown

    sys.stdout.write(schema_markdown())
    return 0


COMMANDS = {
    "simulate": cmd_simulate,
    "recovery": cmd_recovery,
    "power": cmd_power,
    "validate": cmd_validate,
    "fit": cmd_fit,
    "report": cmd_report,
    "config-doc": cmd_config_doc,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ketastats`` console script."""
    args = _parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command, for the report's provenance
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return COMMANDS[args.command](args)
    except KetastatsError as exc:
        print(f"ketastats {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
