"""Load the workflow configuration, check it against its schema, resolve defaults.

The schema (``config/schema.yaml``, JSON Schema draft 2020-12) checks shape and types;
:func:`check_config` adds the cross-field rules a schema cannot express. Every problem is
reported at once, each naming the offending key by its dotted path.

Snakemake checks the config every time it parses the Snakefile (every ``snakemake`` call,
every cluster job), so a valid config must be cheap to check: fastjsonschema's generated
code decides whether the config is valid, and only an invalid one goes to jsonschema, whose
errors name what is wrong. ``import jsonschema`` imports every optional format library that
is installed (``jsonschema/_format.py``: rfc3987_syntax alone compiles lark grammars for
~2 s CPU), and the schema uses no ``format``.
"""

from __future__ import annotations

import copy
import difflib
import functools
import os
import re
from collections.abc import Callable, Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .exceptions import ConfigError
from .safeyaml import load_yaml_file

__all__ = [
    "load_config",
    "check_config_files",
    "check_config",
    "schema",
    "cohort_config",
    "model_specs",
    "model_spec",
    "cohort_estimands",
]

_DEFAULT_REPORT = {"small_cell_threshold": 10, "disclosure": "public", "confidence_level": 0.95, "pdf": "auto"}


def schema() -> dict[str, Any]:
    """The configuration's JSON schema (shipped with the package, mirrored in config/)."""
    return copy.deepcopy(_schema())


@functools.cache
def _schema() -> dict[str, Any]:
    """The schema, read once per process (not to be modified)."""
    text = resources.files("ketastats").joinpath("data/config.schema.yaml").read_text("utf-8")
    # libyaml's loader when PyYAML has it: the pure-Python one takes ~70 ms for this file
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


#: Keywords on which fastjsonschema and jsonschema (draft 2020-12) agree; a schema with any
#: other keyword, or with a ``$ref`` beside validating keywords (fastjsonschema ignores those
#: siblings), is checked by jsonschema alone.
_FAST_KEYWORDS = frozenset(
    {
        "$schema", "$defs", "$ref", "$comment", "title", "description", "default", "examples",
        "type", "enum", "properties", "additionalProperties", "required", "propertyNames",
        "items", "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
        "minProperties", "maxProperties", "minLength", "maxLength", "minItems", "maxItems",
    }
)  # fmt: skip
_ANNOTATIONS = frozenset({"$comment", "title", "description", "default", "examples"})


def _fast_checkable(node: Any) -> bool:
    """Whether every (sub)schema of ``node`` uses only :data:`_FAST_KEYWORDS`."""
    if isinstance(node, bool):
        return True
    if not isinstance(node, Mapping) or not _FAST_KEYWORDS.issuperset(node):
        return False
    if "$ref" in node and not _ANNOTATIONS.issuperset(set(node) - {"$ref"}):
        return False
    subschemas = [node[k] for k in ("additionalProperties", "items", "propertyNames") if k in node]
    for key in ("properties", "$defs"):
        subschemas += list(node.get(key, {}).values())
    return all(_fast_checkable(s) for s in subschemas)


@functools.cache
def _fast_validator() -> Callable[[Any], Any] | None:
    """fastjsonschema's compiled check of the schema (None if the schema is outside its reach)."""
    import fastjsonschema

    sch = _schema()
    if not _fast_checkable(sch):
        return None
    # use_default=False: the check must not fill in defaults (check_config does, in a copy)
    return fastjsonschema.compile(sch, use_default=False, use_formats=False)


def _schema_errors(config: Mapping[str, Any], sch: Mapping[str, Any]) -> list:
    """jsonschema's errors in ``config``, sorted by key path; [] without importing it when valid."""
    fast = _fast_validator()
    if fast is not None:
        try:
            fast(config)
        except Exception:  # JsonSchemaValueException, or data its generated code did not expect
            pass
        else:
            return []
    from jsonschema import Draft202012Validator

    return sorted(Draft202012Validator(sch).iter_errors(config), key=lambda e: list(e.absolute_path))


def _path(err) -> str:
    parts = [str(p) for p in err.absolute_path]
    return ".".join(parts) if parts else "(top level)"


def _describe(err, sch: Mapping[str, Any]) -> str:
    where = _path(err)
    if err.validator == "additionalProperties":
        allowed = sorted((err.schema.get("properties") or {}).keys())
        extra = [k for k in err.instance if k not in allowed]
        msgs = []
        for key in extra:
            full = f"{where}.{key}" if where != "(top level)" else key
            hint = difflib.get_close_matches(key, allowed, n=1)
            did = f" Did you mean {hint[0]!r}?" if hint else ""
            msgs.append(f"{full}: unknown key {key!r}.{did} Allowed here: {', '.join(allowed) or '(none)'}.")
        if msgs:
            return "\n".join(msgs)
    if err.validator == "required":
        return f"{where}: {err.message}; add it (see config/config.yaml for an example)."
    if err.validator == "enum":
        return (
            f"{where}: {err.instance!r} is not allowed; "
            f"use one of: {', '.join(map(str, err.validator_value))}."
        )
    if err.validator == "pattern" and err.validator_value.startswith("^[A-Za-z0-9]"):
        return f"{where}: name {err.instance!r} must consist of letters, digits, '_' or '-'."
    return f"{where}: {err.message}."


def check_config(config: Mapping[str, Any], *, source: str = "config") -> dict[str, Any]:
    """Check ``config`` and return a copy with defaults filled in.

    Raises
    ------
    ConfigError
        Listing every problem, each with the dotted path of the key, what is wrong and how
        to fix it.
    """
    sch = _schema()
    problems = [_describe(e, sch) for e in _schema_errors(config, sch)]
    cfg = copy.deepcopy(dict(config))
    if not problems:
        for name, cohort in cfg["cohorts"].items():
            fmt = cohort.get("format") or _format_from_suffix(cohort["input"])
            if fmt is None:
                problems.append(
                    f"cohorts.{name}.input: cannot tell the format of {cohort['input']!r} from its "
                    "extension; add cohorts.{name}.format (csv, tsv, parquet, excel or redcap)."
                )
            if fmt == "redcap" and not cohort.get("redcap_dictionary"):
                problems.append(
                    f"cohorts.{name}.redcap_dictionary: required when format is redcap; give the path "
                    "of the project's data dictionary CSV."
                )
            cohort.setdefault("columns", {})
            cohort.setdefault("recode", {})
            cohort.setdefault("safe_columns", [])
            cohort.setdefault("outcome", "madrs")
            cohort.setdefault("schedule_unit", "infusion")
            if cohort.get("id_pattern") is not None:
                try:
                    re.compile(cohort["id_pattern"])
                except re.error as exc:
                    problems.append(
                        f"cohorts.{name}.id_pattern: not a valid regular expression ({exc}); write the "
                        "scheme every patient_id matches, e.g. 'S\\d{6}'."
                    )
            cohort["format"] = fmt
        problems += _resolve_models(cfg)
        for name, study in cfg.get("recovery", {}).items():
            study.setdefault("batch_size", 10)
            study.setdefault("model", "primary")
            if name not in cfg["cohorts"]:
                problems.append(
                    f"recovery.{name}: {name!r} is not a cohort; recovery studies are keyed by the cohort "
                    f"whose report shows them ({', '.join(sorted(cfg['cohorts']))})."
                )
            if study["model"] not in cfg["models"]:
                problems.append(
                    f"recovery.{name}.model: no model named {study['model']!r} in models: "
                    f"({', '.join(sorted(cfg['models']))})."
                )
        rep = cfg.setdefault("report", {})
        for key, value in _DEFAULT_REPORT.items():
            rep.setdefault(key, value)
        from .report.suppression import PUBLIC_MIN_THRESHOLD, threshold_message

        if rep["small_cell_threshold"] < PUBLIC_MIN_THRESHOLD and rep["disclosure"] != "internal":
            problems.append(threshold_message(rep["small_cell_threshold"]))
    if problems:
        raise ConfigError(
            f"{source} has {len(problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in problems)
        )
    return cfg


def _format_from_suffix(path: str) -> str | None:
    from .contract import INPUT_EXTENSIONS

    return INPUT_EXTENSIONS.get(Path(path).suffix.lower())


def load_config(path: str | Path = "config/config.yaml") -> dict[str, Any]:
    """Read a YAML config file as data (:func:`ketastats.safeyaml.load_yaml`) and
    :func:`check_config` it.

    Raises
    ------
    ConfigError
        If the file is missing, is not YAML, has a key twice in one mapping, expands
        through aliases beyond any config's size, asks for code evaluation
        (``__use_yte__``), or fails :func:`check_config`.
    """
    path = Path(path)
    raw = load_yaml_file(path, missing_hint="pass --config PATH")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping with at least 'cohorts' and 'models'")
    return check_config(raw, source=str(path))


def check_config_files(paths: Iterable[str | os.PathLike]) -> None:
    """Read each existing config file the way :func:`load_config` does, before Snakemake uses it.

    The Snakefile calls this with its ``configfile:`` and the files given with
    ``--configfile``, so that the workflow refuses what the command line refuses: a key
    given twice (Snakemake's loader keeps the last), alias bombs, and ``__use_yte__``
    (which makes Snakemake evaluate code in the file). Files that do not exist are left to
    Snakemake, which names them.

    Raises
    ------
    ConfigError
        Naming the file and line of the first problem.
    """
    for path in paths:
        p = Path(path)
        if p.is_file():
            load_yaml_file(p)


def cohort_config(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The settings of cohort ``name`` (raises ConfigError naming the known cohorts)."""
    try:
        return dict(config["cohorts"][name])
    except KeyError:
        known = ", ".join(sorted(config.get("cohorts", {})))
        raise ConfigError(f"cohort {name!r} is not in the config; known cohorts: {known}") from None


def _resolve_models(cfg: dict[str, Any]) -> list[str]:
    """Fill model specs and estimands with their defaults in place; cross-field problems."""
    from .models.specs import resolve_estimands, resolve_spec, spec_problems

    problems: list[str] = []
    models = cfg["models"]
    for name in list(models):
        models[name] = resolve_spec(name, models[name], instrument=None)  # placeholders stay: per cohort
        problems += spec_problems(f"models.{name}", resolve_spec(name, models[name]))
    cfg["estimands"] = resolve_estimands(cfg.get("estimands"))
    for cname, cohort in cfg["cohorts"].items():
        for name, override in (cohort.get("models") or {}).items():
            where = f"cohorts.{cname}.models.{name}"
            if name not in models:
                hint = difflib.get_close_matches(name, list(models), n=1)
                did = f" Did you mean {hint[0]!r}?" if hint else ""
                problems.append(
                    f"{where}: there is no model {name!r} under models:.{did} Known: {', '.join(models)}."
                )
                continue
            if "kind" in override and override["kind"] != models[name]["kind"]:
                problems.append(
                    f"{where}.kind: a cohort cannot change a model's kind ({models[name]['kind']}); "
                    "define a new model under models: instead."
                )
                continue
            problems += spec_problems(
                where, resolve_spec(name, models[name], override, instrument=cohort.get("outcome", "madrs"))
            )
    return problems


def model_spec(config: Mapping[str, Any], cohort: str, name: str) -> dict[str, Any]:
    """The full specification of model ``name`` for ``cohort`` (project spec + cohort overrides).

    The Snakemake rule ``fit_model`` and the command line both call this, so they fit the
    same model.
    """
    from .models.specs import resolve_spec

    if name not in config["models"]:
        raise ConfigError(f"model {name!r} is not in the config; known models: {', '.join(config['models'])}")
    c = cohort_config(config, cohort)
    override = (c.get("models") or {}).get(name)
    return resolve_spec(name, config["models"][name], override, instrument=c.get("outcome", "madrs"))


def cohort_estimands(config: Mapping[str, Any], cohort: str) -> dict[str, str]:
    """Strategy per intercurrent event for ``cohort`` (defaults <- project <- cohort)."""
    from .models.specs import resolve_estimands

    c = cohort_config(config, cohort)
    return resolve_estimands(config.get("estimands"), c.get("estimands"))


def model_specs(config: Mapping[str, Any], cohort: str | None = None) -> dict[str, dict[str, Any]]:
    """Model specifications by name, defaults filled in (with ``cohort``'s overrides if given)."""
    from .models.specs import resolve_spec

    if cohort is None:  # the default instrument (MADRS)
        return {k: resolve_spec(k, v) for k, v in config["models"].items()}
    return {k: model_spec(config, cohort, k) for k in config["models"]}
